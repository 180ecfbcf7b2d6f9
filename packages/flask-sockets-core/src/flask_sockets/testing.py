"""Test socket routes without a server.

:class:`SocketTestClient` opens a socket route the way a WebSocket client
would, in-process: no server and no port, but a real connection. The
request goes through the real Flask dispatch (routing, ``before_request``,
error handlers, sessions, teardown) in a thread of its own, as a threaded
server runs it, and the handler gets the socket the development server and
gunicorn's ``gthread`` worker give it,
:class:`~flask_sockets.threaded.ThreadedWebSocket`, over one end of a
:func:`socket.socketpair`. The test's end, :class:`TestSocket`, speaks the
protocol over the other end with ``websockets``' client
(:class:`websockets.client.ClientProtocol`, its sans-I/O core), in a reader
thread that answers pings and close frames as a browser does. So what a
test sees is what a client of a real server sees:

- the handshake is answered when Flask-Sockets accepts the socket, as
  the handler starts (with ``defer_accept=True``: at the handler's first
  ``send``, ``receive`` or ``close``, or at ``ws.accept()``); an app that
  answers without accepting (a ``before_request`` refusal, a 404, the
  origin check, ``abort(403)`` in a ``defer_accept=True`` handler, an
  invalid handshake) makes :meth:`SocketTestClient.connect` raise
  :exc:`SocketRejected` with that HTTP response;
- the app's limits apply as on the servers: a message over
  ``SOCKETS_MAX_MESSAGE_SIZE`` is refused at its frame header (1009);
  permessage-deflate is negotiated (the test client offers it, as browsers
  do) and messages are compressed on the wire; the keepalive pings the
  test's end, which answers;
- close codes and reasons travel in close frames, both ways; after the
  peer closes, ``receive()`` returns ``None`` and ``close_code`` and
  ``close_reason`` hold the peer's code and reason; using a closed socket
  raises :exc:`flask_sockets.ConnectionClosed`.

.. code-block:: python

    from flask_sockets.testing import SocketTestClient

    def test_echo():
        client = SocketTestClient(app)
        with client.connect("/echo") as ws:
            ws.send("hello")
            assert ws.receive() == "hello"

Every wait is bounded (5 seconds by default), so a handler that hangs fails
the test instead of blocking it, and every thread a socket started has
ended when its ``with`` block does.
"""

from __future__ import annotations

import collections
import select
import socket
import threading
import time
import typing as t
from urllib.parse import urlsplit

from flask.testing import EnvironBuilder
from websockets.client import ClientProtocol
from websockets.exceptions import ProtocolError as WebSocketsProtocolError
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Close
from websockets.frames import CloseCode
from websockets.frames import Frame
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri
from werkzeug.datastructures import Headers
from werkzeug.exceptions import InternalServerError
from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_current_url

from .base import to_payload
from .exceptions import ConnectionClosed
from .threaded import CONNECTIONS_KEY
from .threaded import WERKZEUG_SOCKET_KEY
from .threaded import Connections
from .threaded import ThreadedWebSocket

if t.TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

    from flask import Flask
    from flask.testing import FlaskClient
    from websockets.typing import Subprotocol
    from werkzeug.test import TestResponse

    from .typing import Message

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ServerSocket",
    "SocketRejected",
    "SocketTestClient",
    "TestSocket",
]

#: Seconds any wait of the test client may take: for the handshake, for a
#: message, for the handler to finish after its socket closed.
DEFAULT_TIMEOUT = 5.0
#: Seconds :meth:`TestSocket.close` waits for the handler's close frame
#: before it hangs up, as a real client gives up on a server that does not
#: answer (a handler that only sends never reads the close frame: it then
#: gets :exc:`~flask_sockets.ConnectionClosed` with close code 1006).
DEFAULT_CLOSE_TIMEOUT = 1.0

#: The socket a handler receives under :class:`SocketTestClient`: the
#: threaded socket of the development server and gunicorn ``gthread``,
#: :class:`~flask_sockets.threaded.ThreadedWebSocket`. (The test client
#: used to have a socket class of its own under this name.)
ServerSocket = ThreadedWebSocket

_READ_SIZE = 64 * 1024
#: What ``compression`` may be in :meth:`SocketTestClient.connect`.
_COMPRESSIONS = ("deflate", None)


class _Request:
    """The request's side of a connection: run by a handler thread, as a
    threaded server runs it; its outcome."""

    def __init__(self) -> None:
        #: Set when the request has ended.
        self.done = threading.Event()
        #: ``(app_iter, status, headers)`` of the app's response.
        self.result: tuple[t.Iterable[bytes], str, Headers] | None = None
        #: What escaped the app (with ``PROPAGATE_EXCEPTIONS``).
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None


class _ClientEnd:
    """The test's end of the connection: ``websockets``' sans-I/O client
    over one end of the socket pair, and the thread that reads it.

    The reader feeds what arrives to the protocol, which answers pings and
    close frames at once (what the reader writes back), and queues whole
    messages for :meth:`TestSocket.receive`. One lock (``cond``) guards the
    protocol and the writes, as ``websockets``' threaded client does; each
    write is bounded by ``send_timeout``. The socket stays blocking: the
    reader reads until the connection ends.
    """

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, name: str, send_timeout: float) -> None:
        self.sock = sock
        self.protocol = protocol
        self.send_timeout = send_timeout
        self.cond = threading.Condition()
        #: Messages not received yet.
        self.messages: collections.deque[str | bytes] = collections.deque()
        #: The handshake response (``101``), once it came.
        self.response: Response | None = None
        #: ``True`` once the handler's close frame came.
        self.closed_by_server = False
        #: ``True`` once the connection ended (the reader stopped).
        self.eof = False
        #: ``True`` once the test sent its close frame.
        self.closed_by_test = False
        self._fragments: list[bytes] = []
        self._fragmented_text = False
        self.thread = threading.Thread(target=self._read, name=name, daemon=True)
        self.thread.start()

    # -- the reader thread ----------------------------------------------------

    def _read(self) -> None:
        sock, protocol = self.sock, self.protocol
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except OSError:
                data = b""
            with self.cond:
                try:
                    if data:
                        protocol.receive_data(data)
                    else:
                        protocol.receive_eof()
                    for event in protocol.events_received():
                        self._on_event(event)
                    self._flush()
                except OSError:  # the answer could not be written: the connection is gone
                    self.hang_up()
                    data = b""
                if not data:
                    self.eof = True
                self.cond.notify_all()
            if not data:
                return

    def _on_event(self, event: object) -> None:
        if isinstance(event, Frame):
            opcode = event.opcode
            # (websockets may hand a bytearray over; bytes(bytes) is no copy.)
            data = bytes(event.data)
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self._deliver(opcode is Opcode.TEXT, data)
                else:
                    self._fragments = [data]
                    self._fragmented_text = opcode is Opcode.TEXT
            elif opcode is Opcode.CONT:
                self._fragments.append(data)
                if event.fin:
                    data = b"".join(self._fragments)
                    self._fragments = []
                    self._deliver(self._fragmented_text, data)
            elif opcode is Opcode.CLOSE:
                self.closed_by_server = True
            # (Pings are answered by the protocol; pongs need nothing.)
        elif isinstance(event, Response):
            self.response = event

    def _deliver(self, text: bool, data: bytes) -> None:
        if self.closed_by_test:
            return  # the test closed: what comes before the handler's close frame is discarded
        if not text:
            self.messages.append(data)
            return
        try:
            self.messages.append(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            self.protocol.fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {e.start}")

    # -- used under ``cond`` --------------------------------------------------

    def _flush(self) -> None:
        """Write what the protocol has to send (``b""``: half-close).

        :raises OSError: If the connection is gone, or the handler read
            nothing for ``send_timeout`` seconds (:exc:`TimeoutError`).
        """
        for data in self.protocol.data_to_send():
            if data:
                self._send_all(data)
            else:
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def _send_all(self, data: bytes) -> None:
        sock = self.sock
        try:
            sent = sock.send(data, socket.MSG_DONTWAIT)  # nearly always all of it
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        rest = memoryview(data)[sent:]
        deadline = time.monotonic() + self.send_timeout
        while rest:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _writable(sock, remaining):
                raise TimeoutError("the handler read nothing")
            try:
                rest = rest[sock.send(rest, socket.MSG_DONTWAIT) :]
            except BlockingIOError:
                continue

    def send(self, text: bool, data: bytes) -> None:
        """Send a message; lost if the connection is closing or gone (as on
        a network).

        :raises TimeoutError: If the handler read nothing for ``send_timeout`` seconds.
        """
        with self.cond:
            protocol = self.protocol
            if protocol.state is not State.OPEN:
                return
            if text:
                protocol.send_text(data)
            else:
                protocol.send_binary(data)
            try:
                self._flush()
            except TimeoutError:
                self.hang_up()  # part of a frame may be out: nothing else can follow
                raise
            except OSError:
                self.hang_up()

    def send_close(self, code: int, reason: str) -> None:
        """Send a close frame, unless the connection is already closing."""
        with self.cond:
            if self.protocol.state is not State.OPEN:
                return
            self.protocol.send_close(code, reason)
            self.closed_by_test = True
            try:
                self._flush()
            except OSError:
                self.hang_up()

    def close_frame(self) -> tuple[int, str]:
        """The handler's close code and reason (1006 if no close frame came)."""
        with self.cond:
            close = self.protocol.close_rcvd
        if close is None:  # the connection ended without one (RFC 6455, 7.1.5)
            return int(CloseCode.ABNORMAL_CLOSURE), ""
        return int(close.code), close.reason

    def hang_up(self) -> None:
        """End the connection from this side (the reader then stops)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def end(self, timeout: float) -> None:
        """Hang up, stop the reader (bounded) and close the socket."""
        self.hang_up()
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.sock.close()


class SocketRejected(Exception):
    """The app answered the WebSocket request with an HTTP response instead
    of accepting it: a ``before_request`` refusal, ``abort(403)``, a 404,
    Flask's 500 for an error before the handshake, ...

    :param response: The HTTP response, as Flask's test client returns it.
    """

    def __init__(self, response: TestResponse) -> None:
        #: The HTTP response the client got (status, headers, body).
        self.response = response
        body = response.get_data(as_text=True)
        if len(body) > 200:
            body = body[:200] + "..."
        super().__init__(
            f"The app refused the WebSocket connection to {response.request.path}: {response.status}\n{body}"
        )

    @property
    def status_code(self) -> int:
        """The HTTP status code of the response."""
        return self.response.status_code


class TestSocket:
    """The test's end of a socket opened by :meth:`SocketTestClient.connect`.

    Use it as a context manager: leaving the ``with`` block closes the socket
    (1000) if it is still open and waits for the handler to finish. Safe to
    use from several threads.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        client_end: _ClientEnd,
        request: _Request,
        connections: Connections,
        path: str,
        timeout: float,
        close_timeout: float,
        raise_server_exceptions: bool,
    ) -> None:
        self._end = client_end
        self._request = request
        self._connections = connections
        self._timeout = timeout
        self._close_timeout = close_timeout
        self._raise_server_exceptions = raise_server_exceptions
        self._client_closed = False
        self._server_closed = False
        self._finished = False
        self._error_reported = False
        response = client_end.response
        assert response is not None
        #: The path the socket was opened at.
        self.path = path
        #: The subprotocol the handler accepted, or ``None``.
        self.subprotocol: str | None = client_end.protocol.subprotocol
        #: The headers of the handshake response (``101 Switching
        #: Protocols``), among them those the handler gave to
        #: ``ws.accept(headers=...)`` and ``Sec-WebSocket-Extensions`` if
        #: compression was negotiated.
        self.response_headers = Headers(list(response.headers.raw_items()))
        #: The close code the handler closed with, once known: after
        #: :meth:`receive` returned ``None``, or after :meth:`close`
        #: (1006 if the connection ended without a close frame).
        self.close_code: int | None = None
        #: The close reason the handler closed with.
        self.close_reason: str | None = None

    @property
    def closed(self) -> bool:
        """``True`` once the test closed the socket or :meth:`receive` saw the handler close it."""
        return self._client_closed or self._server_closed

    def send(self, message: Message) -> None:
        """Send a message to the handler: text for ``str``, binary for ``bytes``.

        A message sent after the handler closed (and before :meth:`receive`
        noticed) is lost, as on a network.

        :raises ~flask_sockets.ConnectionClosed: If this socket is closed.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        :raises TimeoutError: If the handler read nothing for the timeout
            while the message went out (the connection is then cut).
        """
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        try:
            self._end.send(isinstance(message, str), payload)
        except TimeoutError:
            raise TimeoutError(
                f"The handler of {self.path} read nothing for {self._timeout} seconds while a message was sent."
            ) from None

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Return the next message from the handler (``str`` for text,
        ``bytes`` for binary), or ``None`` once the handler closed the
        socket; ``close_code`` and ``close_reason`` then say how.

        If the handler raised, and the app propagates exceptions (it does
        when ``app.testing`` is true), that exception is raised here once
        the socket closed.

        :param timeout: Seconds to wait, by default the client's timeout.
        :raises TimeoutError: If no message came in time.
        :raises ~flask_sockets.ConnectionClosed: If the test closed this socket.
        """
        if self._client_closed:
            raise ConnectionClosed("Connection is already closed")
        if self._server_closed:
            self._raise_server_exception()
            return None
        wait = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        end = self._end
        with end.cond:
            if not end.messages and not end.cond.wait_for(
                lambda: end.messages or end.closed_by_server or end.eof, wait
            ):
                raise TimeoutError(f"No message from the handler of {self.path} within {wait} seconds.")
            if end.messages:
                return end.messages.popleft()
        # The handler closed (or the connection ended): the handler is
        # ending; wait for it, to report its exception here.
        self._server_closed = True
        self.close_code, self.close_reason = end.close_frame()
        self._request.done.wait(max(0.0, deadline - time.monotonic()))
        self._raise_server_exception()
        return None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket, then wait for the handler to finish.

        Afterwards ``close_code`` and ``close_reason`` hold the handler's
        close frame (its echo of this one if it was reading). If no close
        frame comes within the client's ``close_timeout`` (a handler that
        is not reading), the test hangs up, as a real client does: the
        handler's next send raises :exc:`~flask_sockets.ConnectionClosed`
        (close code 1006). Closing a closed socket only waits for the
        handler.

        :raises TimeoutError: If the handler is still running after the timeout.
        :raises ValueError: If ``code`` is not a close code a client may
            send, or ``reason`` is over 123 bytes.
        """
        if not self._client_closed:
            try:
                Close(code, reason).check()
            except WebSocketsProtocolError:
                raise ValueError(f"{code} is not a close code a client may send (RFC 6455, 7.4)") from None
            if len(reason.encode("utf-8")) > 123:
                raise ValueError("A close reason is at most 123 bytes (RFC 6455, 5.5)")
            self._client_closed = True
            end = self._end
            end.send_close(code, reason)
            # The handler's close frame, then its end of the connection.
            with end.cond:
                ended = end.cond.wait_for(lambda: end.eof, self._close_timeout)
            if not ended:
                end.hang_up()
        self._finish()

    def __enter__(self) -> TestSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _finish(self) -> None:
        """Wait for the handler to end once, then end the connection and its
        threads; report the handler's exception, or that it hangs."""
        if self._finished:
            return
        self._finished = True
        request = self._request
        try:
            if not request.done.wait(self._timeout):
                raise TimeoutError(
                    f"The handler of {self.path} is still running {self._timeout} seconds after its socket closed."
                    " A handler should return once ws.receive() returns None or ConnectionClosed is raised."
                )
        finally:
            _end_connection(self._end, request, self._connections, self._timeout)
        if not self._server_closed:
            self.close_code, self.close_reason = self._end.close_frame()
        self._raise_server_exception()

    def _raise_server_exception(self) -> None:
        request = self._request
        error = request.error
        if self._raise_server_exceptions and not self._error_reported and request.done.is_set() and error is not None:
            self._error_reported = True
            raise error


class SocketTestClient:
    """Open a Flask app's socket routes without a server.

    :param app: The Flask app.
    :param client: A Flask test client for ``app`` whose cookies the sockets
        share (log in with it, then connect); by default a new one. It is
        :attr:`http`.
    :param raise_server_exceptions: Re-raise an exception that escaped the
        app (which Flask does when ``app.testing`` or
        ``PROPAGATE_EXCEPTIONS`` is true) in the test: from
        :meth:`connect` before the handshake, or else from the socket's
        next ``receive``, ``close`` or the end of its ``with`` block. If
        false, such an exception is dropped; the handler's socket is still
        closed with 1011, or, before the handshake, :meth:`connect` raises
        :exc:`SocketRejected` with a 500.
    :param timeout: Seconds each wait may take (:data:`DEFAULT_TIMEOUT`).
    :param close_timeout: Seconds :meth:`TestSocket.close` waits for the
        handler's close frame before hanging up
        (:data:`DEFAULT_CLOSE_TIMEOUT`).
    """

    def __init__(
        self,
        app: Flask,
        client: FlaskClient | None = None,
        *,
        raise_server_exceptions: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        if client is None:
            client = app.test_client()
        elif client.application is not app:
            raise ValueError("'client' is a test client of another app.")
        self.app = app
        self._http = client
        self.raise_server_exceptions = raise_server_exceptions
        self.timeout = timeout
        self.close_timeout = close_timeout

    @property
    def http(self) -> FlaskClient:
        """The Flask test client for plain HTTP requests; its cookies are the sockets' cookies."""
        return self._http

    def connect(
        self,
        path: str = "/",
        *,
        headers: Headers | t.Mapping[str, str] | t.Iterable[tuple[str, str]] | None = None,
        subprotocols: t.Sequence[str] | None = None,
        query_string: str | t.Mapping[str, t.Any] | None = None,
        timeout: float | None = None,
        raise_server_exceptions: bool | None = None,
        compression: t.Literal["deflate"] | None = "deflate",
    ) -> TestSocket:
        """Open a WebSocket to ``path`` and wait until the handler accepts it.

        :param path: The path, with an optional query string, or a full
            ``ws://`` / ``wss://`` URL such as ``url_for(..., _external=True)`` builds.
        :param headers: Extra request headers (``Origin``, ``Authorization``, ...).
            The client's cookies are sent too, unless ``headers`` has a ``Cookie``.
        :param subprotocols: The subprotocols to offer, in order of preference.
        :param query_string: The query string, as a string or a mapping.
        :param timeout: Overrides the client's timeout for this socket.
        :param raise_server_exceptions: Overrides the client's setting for this socket.
        :param compression: ``"deflate"`` offers permessage-deflate, as
            browsers and ``websockets`` do; ``None`` offers no compression.
        :raises SocketRejected: If the app answered with an HTTP response instead.
        :raises TimeoutError: If the handler neither accepted nor finished in time.
        :raises RuntimeError: If the handshake response is one a client
            refuses (a subprotocol the client did not offer).
        """
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression is 'deflate' or None, not {compression!r}")
        wait = self.timeout if timeout is None else timeout
        propagate = self.raise_server_exceptions if raise_server_exceptions is None else raise_server_exceptions
        offered = list(subprotocols or ())
        request_headers = Headers(headers)
        protocol = ClientProtocol(
            parse_uri("ws://localhost/"),
            extensions=enable_client_permessage_deflate(None) if compression else None,
            subprotocols=t.cast("list[Subprotocol]", offered) or None,
            max_size=None,
        )
        # The handshake request goes to the app as a WSGI environ, as a
        # server parses it; the client protocol only checks the response.
        for name, value in protocol.connect().headers.raw_items():
            if name.lower() not in ("host", "sec-websocket-protocol"):
                request_headers.setdefault(name, value)
        if offered:
            request_headers.setdefault("Sec-WebSocket-Protocol", ", ".join(offered))
        # The test's own key, if it gave one: the answer is checked against it.
        protocol.key = request_headers["Sec-WebSocket-Key"]
        builder = EnvironBuilder(
            self.app,
            _http_url(path),
            headers=request_headers,
            query_string=query_string,
            environ_base=dict(self._http.environ_base),
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        if "Cookie" not in request_headers:
            # The jar is Werkzeug's; this (and _update_cookies_from_response)
            # is how its own client uses it.
            self._http._add_cookies_to_wsgi(environ)
        request_path = Request(environ).path
        server_sock, client_sock = socket.socketpair()
        connections = Connections()
        environ[WERKZEUG_SOCKET_KEY] = server_sock
        environ[CONNECTIONS_KEY] = connections
        request = _Request()
        end = _ClientEnd(client_sock, protocol, f"flask-sockets test client {request_path}", wait)
        request.thread = threading.Thread(
            target=_serve,
            args=(self.app, environ, server_sock, request),
            name=f"flask-sockets test handler {request_path}",
            daemon=True,
        )
        request.thread.start()
        with end.cond:
            answered = end.cond.wait_for(lambda: end.response is not None or end.eof, wait)
        response = end.response
        if response is not None and protocol.handshake_exc is None:
            self._store_cookies(environ, Headers(list(response.headers.raw_items())))
            return TestSocket(end, request, connections, request_path, wait, self.close_timeout, propagate)
        if not answered or response is not None:
            # A handler slow to accept, or a handshake answer no client takes: hang up.
            end.hang_up()
            if response is None:
                _end_connection(end, request, connections, wait)
                raise TimeoutError(
                    f"The handler of {request_path} neither accepted the socket nor returned within {wait} seconds."
                )
            request.done.wait(wait)  # the handler finds the connection gone
            _end_connection(end, request, connections, wait)
            accepted = response.headers.get("Sec-WebSocket-Protocol")
            if accepted is not None and accepted not in offered:
                raise RuntimeError(
                    f"The handler of {request_path} accepted subprotocol {accepted!r},"
                    f" which the client did not offer (it offered {offered})."
                )
            raise RuntimeError(f"The handshake of {request_path} failed: {protocol.handshake_exc}")
        # The request ended without a 101: the app's HTTP response is the answer.
        done = request.done.wait(wait)
        _end_connection(end, request, connections, wait)
        if not done:  # pragma: no cover - the connection ends when the request does
            raise TimeoutError(f"The handler of {request_path} did not return within {wait} seconds.")
        if request.error is not None:
            if propagate:
                raise request.error
            error = InternalServerError(original_exception=request.error).get_response(environ)
            request.result = ([error.get_data()], error.status, error.headers)
        assert request.result is not None
        refusal = self._http.response_wrapper(*request.result, request=Request(environ))
        refusal.json_module = self.app.json  # type: ignore[assignment]
        self._store_cookies(environ, refusal.headers)
        raise SocketRejected(refusal)

    def _store_cookies(self, environ: dict[str, t.Any], headers: Headers) -> None:
        """Keep the cookies of the response the client got: the HTTP
        response of a refusal, or the handshake's ``101`` (headers given to
        ``accept()``). (Cookies the app sets once the socket is open never
        reach a real client.)"""
        url = urlsplit(get_current_url(environ))
        self._http._update_cookies_from_response(url.hostname or "localhost", url.path, headers.getlist("Set-Cookie"))


def _serve(app: Flask, environ: dict[str, t.Any], sock: socket.socket, request: _Request) -> None:
    """Run the request in its own thread, as a threaded server does, then
    end the server's end of the connection (a refusal's HTTP response goes
    to the test as a :class:`SocketRejected`)."""
    try:
        request.result = run_wsgi_app(app, environ, buffered=True)
    except BaseException as e:
        request.error = e
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        request.done.set()


def _end_connection(end: _ClientEnd, request: _Request, connections: Connections, timeout: float) -> None:
    """End the test's end of the connection and join the threads that
    served it: its reader, the keepalive timer and (if it ended) the
    handler's thread."""
    end.end(timeout)
    connections.stop()
    if request.done.is_set() and request.thread is not None:
        request.thread.join(timeout)


def _writable(sock: socket.socket, timeout: float) -> bool:
    """Wait until ``sock`` can take more, at most ``timeout`` seconds."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(max(0, int(timeout * 1000 + 0.999))))
    return bool(select.select([], [sock], [], timeout)[1])  # pragma: no cover - Windows


def _http_url(path: str) -> str:
    """``path`` with a ``ws``/``wss`` scheme turned into ``http``/``https``."""
    scheme, sep, rest = path.partition("://")
    if sep and scheme.lower() in ("ws", "wss"):
        return f"{'https' if scheme.lower() == 'wss' else 'http'}://{rest}"
    return path
