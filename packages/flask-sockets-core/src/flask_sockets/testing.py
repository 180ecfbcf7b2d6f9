"""Test socket routes without a server.

:class:`SocketTestClient` opens a socket route the way a WebSocket client
would, but in-process: no server, no sockets, no ports. The request goes
through the real Flask dispatch (routing, ``before_request``, error
handlers, sessions, teardown) in a background thread, with a socket object
in ``environ['wsgi.websocket']`` that behaves like the one of
:mod:`flask_sockets_gevent`:

- the handshake is answered when Flask-Sockets accepts the socket, as
  the handler starts (with ``defer_accept=True``: at the handler's first
  ``send``, ``receive`` or ``close``, or at ``ws.accept()``); an app that
  answers without accepting (a ``before_request`` refusal, a 404, the
  origin check, ``abort(403)`` in a ``defer_accept=True`` handler) makes
  :meth:`SocketTestClient.connect` raise :exc:`SocketRejected` with that
  HTTP response;
- using a closed socket raises :exc:`flask_sockets.ConnectionClosed`;
- after the peer closes, ``receive()`` returns ``None`` and ``close_code``
  and ``close_reason`` hold the peer's code and reason.

.. code-block:: python

    from flask_sockets.testing import SocketTestClient

    def test_echo():
        client = SocketTestClient(app)
        with client.connect("/echo") as ws:
            ws.send("hello")
            assert ws.receive() == "hello"

Every wait is bounded (5 seconds by default), so a handler that hangs fails
the test instead of blocking it.
"""

from __future__ import annotations

import base64
import os
import queue
import threading
import time
import typing as t
from urllib.parse import urlsplit

from flask.testing import EnvironBuilder
from werkzeug.datastructures import Headers
from werkzeug.exceptions import InternalServerError
from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_current_url

from .base import SocketBase
from .base import to_payload
from .exceptions import ConnectionClosed
from .protocol import CloseCode
from .protocol import is_valid_close_code
from .wsgi import WSGI_WEBSOCKET_KEY

if t.TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from .compression import Deflate
    from .options import SocketOptions
    from .typing import Message

__all__ = ["DEFAULT_TIMEOUT", "ServerSocket", "SocketRejected", "SocketTestClient", "TestSocket"]

#: Seconds any wait of the test client may take: for the handshake, for a
#: message, for the handler to finish after its socket closed.
DEFAULT_TIMEOUT = 5.0


class _Close(t.NamedTuple):
    """A close frame travelling between the two ends."""

    code: int
    reason: str


class _Connection:
    """What the two ends share: a queue each way and the request's outcome."""

    def __init__(self) -> None:
        self.to_server: queue.Queue[str | bytes | _Close] = queue.Queue()
        self.to_client: queue.Queue[str | bytes | _Close] = queue.Queue()
        self.lock = threading.Lock()
        #: Data messages the client has sent.
        self.client_sent = 0
        #: The client's close frame (or a 1006 drop), once it closed.
        self.client_close: _Close | None = None
        #: How many data messages precede ``client_close`` in ``to_server``.
        self.sent_before_close = 0
        #: Set when the handler accepts or the request ends, whichever is first.
        self.handshake = threading.Event()
        #: Set when the request has ended.
        self.done = threading.Event()
        #: ``(app_iter, status, headers)`` of the app's response.
        self.result: tuple[t.Iterable[bytes], str, Headers] | None = None
        #: What escaped the app (with ``PROPAGATE_EXCEPTIONS``).
        self.error: BaseException | None = None

    def client_closes(self, close: _Close) -> None:
        with self.lock:
            if self.client_close is not None:
                return
            self.client_close = close
            self.sent_before_close = self.client_sent
        self.to_server.put(close)

    def client_has_hung_up(self, received: int) -> bool:
        """Whether the client closed and only its close frame is left unread
        by a server that has read ``received`` data messages."""
        with self.lock:
            return self.client_close is not None and received >= self.sent_before_close


class ServerSocket(SocketBase):
    """The socket a handler receives from :class:`SocketTestClient`.

    It has the interface and the semantics of :mod:`flask_sockets_gevent`'s
    socket: ``accept``, ``send``, ``send_frame``, ``receive``, ``close``,
    ``closed``, ``accepted``, ``subprotocol``, ``close_code`` and
    ``close_reason``. Text arrives as ``str``, binary as ``bytes``.

    One deliberate shortcut: once the test has closed its end and the
    handler has read everything sent before that, the handler's next
    ``send`` raises :exc:`~flask_sockets.ConnectionClosed` at once (close
    code 1006), as it eventually would against a real client that hung up.
    A handler that only sends therefore ends when the test closes.
    """

    def __init__(self, environ: dict[str, t.Any], connection: _Connection) -> None:
        #: The WSGI environ of the request.
        self.environ = environ
        #: ``True`` once the connection is closed or closing.
        self.closed = False
        #: ``True`` once the handshake has been answered.
        self.accepted = False
        #: The subprotocol sent in the handshake, if any.
        self.subprotocol: str | None = None
        #: The extra headers given to :meth:`accept`.
        self.response_headers: list[tuple[str, str]] = []
        #: The close code the peer sent (1006 if it went away without one), or ``None``.
        self.close_code: int | None = None
        #: The close reason the peer sent.
        self.close_reason: str | None = None
        #: Largest incoming message in bytes, or ``None`` for no limit.
        self.max_message_size: int | None = None
        self._connection = connection
        self._received = 0

    @property
    def origin(self) -> str | None:
        """The request's ``Origin`` header."""
        return t.cast("str | None", self.environ.get("HTTP_ORIGIN"))

    @property
    def protocol(self) -> str | None:
        """The subprotocols the client offered, as sent."""
        return t.cast("str | None", self.environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL"))

    @property
    def path(self) -> str | None:
        """The request's path."""
        return t.cast("str | None", self.environ.get("PATH_INFO"))

    def configure(self, options: SocketOptions) -> None:
        """Apply an app's socket options (called by Flask-Sockets before the
        handler runs). The message size limit and the route's subprotocol
        apply; pings and timeouts have no meaning without a network."""
        self.max_message_size = options.max_message_size
        if options.subprotocol is not None:
            self.subprotocol = options.subprotocol

    def accept(self, subprotocol: str | None = None, headers: t.Sequence[tuple[str, str]] = ()) -> None:
        """Answer the handshake now, with the optional subprotocol and extra
        response headers. Sending, receiving or closing accepts implicitly.
        A second call does nothing."""
        if self.accepted:
            return
        if subprotocol is not None:
            self.subprotocol = subprotocol
        self.response_headers = list(headers)
        self.accepted = True
        self._connection.handshake.set()

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Return the next message from the test, or ``None`` once the test
        closed the connection.

        :param timeout: Seconds to wait; on expiry :exc:`TimeoutError` is
            raised and the socket stays usable.
        :raises ~flask_sockets.ConnectionClosed: If the socket was already closed.
        """
        self.accept()
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        try:
            item = self._connection.to_server.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message within {timeout} seconds") from None
        if isinstance(item, _Close):
            self.close_code, self.close_reason = item.code, item.reason
            if item.code != CloseCode.ABNORMAL_CLOSURE:
                # Echo the peer's code (RFC 6455, 5.5.1).
                self._connection.to_client.put(_Close(item.code, ""))
            self.closed = True
            return None
        self._received += 1
        limit = self.max_message_size
        size = len(item.encode("utf-8")) if isinstance(item, str) else len(item)
        if limit is not None and size > limit:
            # Fail the connection: a close frame, and no waiting for the peer's.
            self._send_close(CloseCode.MESSAGE_TOO_BIG, f"Message over {limit} bytes")
            return None
        return item

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        """Send one frame with ``opcode``: a text or binary message, a ping
        or pong (which a client answers by itself: nothing for the test to
        receive) or a close frame. (Messages go to the test in-process:
        ``compress`` changes nothing here.)

        :raises ~flask_sockets.ConnectionClosed: If the socket is closed.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        """
        self.accept()
        if self.closed:
            # First: the classic loop sends receive()'s None once the peer closed.
            raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        connection = self._connection
        if connection.client_has_hung_up(self._received):
            self._drop(CloseCode.ABNORMAL_CLOSURE)
            raise ConnectionClosed("Socket is dead: the client closed the connection")
        if opcode == self.OPCODE_TEXT:
            connection.to_client.put(message if isinstance(message, str) else payload.decode("utf-8"))
        elif opcode == self.OPCODE_BINARY:
            connection.to_client.put(payload)
        elif opcode == self.OPCODE_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else CloseCode.NORMAL_CLOSURE
            self._send_close(code, payload[2:].decode("utf-8", "replace"))
        elif opcode not in (self.OPCODE_PING, self.OPCODE_PONG):
            raise ValueError(f"Cannot send a frame with opcode {opcode:#x}")

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close the connection with ``code`` and ``message`` (the reason, at
        most 123 bytes). Closing a closed socket does nothing.

        The test client answers at once: afterwards ``close_code`` and
        ``close_reason`` hold its close frame, which echoes this one unless
        the test had closed first."""
        if self.closed:
            return
        self.accept()
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        # Never cut a character in half.
        reason = message.encode("utf-8")[:123].decode("utf-8", "ignore")
        self._send_close(code, reason)
        peer = self._connection.client_close
        if peer is None:
            self.close_code, self.close_reason = code, reason  # the client's echo
        elif peer.code == CloseCode.ABNORMAL_CLOSURE:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        else:
            self.close_code, self.close_reason = peer  # its unread close frame

    def abort(self) -> None:
        """End the connection at once, as a server cuts a TCP connection:
        no close frame, close code 1006 on both ends; a ``receive()``
        blocked in the handler returns ``None``."""
        if self.closed:
            return
        self._drop(CloseCode.ABNORMAL_CLOSURE)
        self._connection.to_client.put(_Close(CloseCode.ABNORMAL_CLOSURE, ""))
        self._connection.to_server.put(_Close(CloseCode.ABNORMAL_CLOSURE, ""))

    @property
    def compression(self) -> Deflate | None:
        """``None``: messages go to the test in-process, uncompressed."""
        return None

    def _send_close(self, code: int, reason: str) -> None:
        self.closed = True
        self._connection.to_client.put(_Close(int(code), reason))  # a number, as off the wire

    def _drop(self, close_code: int) -> None:
        if self.close_code is None:
            self.close_code = close_code
        self.closed = True


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
    (1000) if it is still open and waits for the handler to finish.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        connection: _Connection,
        server_socket: ServerSocket,
        path: str,
        timeout: float,
        raise_server_exceptions: bool,
    ) -> None:
        self._connection = connection
        self._timeout = timeout
        self._raise_server_exceptions = raise_server_exceptions
        self._client_closed = False
        self._server_closed = False
        self._finished = False
        self._error_reported = False
        #: The path the socket was opened at.
        self.path = path
        #: The subprotocol the handler accepted, or ``None``.
        self.subprotocol = server_socket.subprotocol
        #: The extra headers the handler gave to ``ws.accept(headers=...)``.
        self.response_headers = Headers(server_socket.response_headers)
        #: The close code the handler closed with, once known: after
        #: :meth:`receive` returned ``None``, or after :meth:`close`.
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
        """
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        with self._connection.lock:
            self._connection.client_sent += 1
            self._connection.to_server.put(message if isinstance(message, str) else payload)

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
        try:
            item = self._connection.to_client.get(timeout=wait)
        except queue.Empty:
            raise TimeoutError(f"No message from the handler of {self.path} within {wait} seconds.") from None
        if isinstance(item, _Close):
            self._on_server_close(item)
            # The handler is ending: wait for it, to report its exception here.
            self._connection.done.wait(max(0.0, deadline - time.monotonic()))
            self._raise_server_exception()
            return None
        return item

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the socket, then wait for the handler to finish.

        Afterwards ``close_code`` and ``close_reason`` hold the handler's
        close frame (its echo of this one if it was reading). Closing a
        closed socket only waits for the handler.

        :raises TimeoutError: If the handler is still running after the timeout.
        :raises ValueError: If ``code`` is not a close code a client may send.
        """
        if not self._client_closed:
            if not is_valid_close_code(code):
                raise ValueError(f"{code} is not a close code a client may send (RFC 6455, 7.4)")
            self._client_closed = True
            if not self._server_closed:
                self._connection.client_closes(_Close(int(code), reason))
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

    def _on_server_close(self, close: _Close) -> None:
        self._server_closed = True
        self.close_code, self.close_reason = close.code, close.reason

    def _finish(self) -> None:
        """Wait for the handler to end once; report its exception or that it hangs."""
        if self._finished:
            return
        self._finished = True
        if not self._connection.done.wait(self._timeout):
            raise TimeoutError(
                f"The handler of {self.path} is still running {self._timeout} seconds after its socket closed."
                " A handler should return once ws.receive() returns None or ConnectionClosed is raised."
            )
        while not self._server_closed:
            try:
                item = self._connection.to_client.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Close):
                self._on_server_close(item)
        self._raise_server_exception()

    def _raise_server_exception(self) -> None:
        error = self._connection.error
        if (
            self._raise_server_exceptions
            and not self._error_reported
            and self._connection.done.is_set()
            and error is not None
        ):
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
    """

    def __init__(
        self,
        app: Flask,
        client: FlaskClient | None = None,
        *,
        raise_server_exceptions: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if client is None:
            client = app.test_client()
        elif client.application is not app:
            raise ValueError("'client' is a test client of another app.")
        self.app = app
        self._http = client
        self.raise_server_exceptions = raise_server_exceptions
        self.timeout = timeout

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
        :raises SocketRejected: If the app answered with an HTTP response instead.
        :raises TimeoutError: If the handler neither accepted nor finished in time.
        """
        wait = self.timeout if timeout is None else timeout
        propagate = self.raise_server_exceptions if raise_server_exceptions is None else raise_server_exceptions
        offered = list(subprotocols or ())
        request_headers = Headers(headers)
        request_headers.setdefault("Upgrade", "websocket")
        request_headers.setdefault("Connection", "Upgrade")
        request_headers.setdefault("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode("ascii"))
        request_headers.setdefault("Sec-WebSocket-Version", "13")
        if offered:
            request_headers.setdefault("Sec-WebSocket-Protocol", ", ".join(offered))
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
        request = Request(environ)
        connection = _Connection()
        server_socket = ServerSocket(environ, connection)
        environ[WSGI_WEBSOCKET_KEY] = server_socket
        environ["wsgi.websocket_version"] = "13"
        thread = threading.Thread(
            target=_serve,
            args=(self.app, environ, server_socket, connection),
            name=f"flask-sockets test handler {request.path}",
            daemon=True,
        )
        thread.start()
        if not connection.handshake.wait(wait):
            connection.client_closes(_Close(CloseCode.ABNORMAL_CLOSURE, ""))
            raise TimeoutError(
                f"The handler of {request.path} neither accepted the socket nor returned within {wait} seconds."
            )
        if server_socket.accepted:
            subprotocol = server_socket.subprotocol
            if subprotocol is not None and subprotocol not in offered:
                # A real client fails the handshake and hangs up.
                connection.client_closes(_Close(CloseCode.ABNORMAL_CLOSURE, ""))
                connection.done.wait(wait)
                raise RuntimeError(
                    f"The handler of {request.path} accepted subprotocol {subprotocol!r},"
                    f" which the client did not offer (it offered {offered})."
                )
            self._store_cookies(environ, Headers(server_socket.response_headers))
            return TestSocket(connection, server_socket, request.path, wait, propagate)
        if connection.error is not None:
            if propagate:
                raise connection.error
            error = InternalServerError(original_exception=connection.error).get_response(environ)
            connection.result = ([error.get_data()], error.status, error.headers)
        assert connection.result is not None
        response = self._http.response_wrapper(*connection.result, request=request)
        response.json_module = self.app.json  # type: ignore[assignment]
        self._store_cookies(environ, response.headers)
        raise SocketRejected(response)

    def _store_cookies(self, environ: dict[str, t.Any], headers: Headers) -> None:
        """Keep the cookies of the response the client got: the HTTP
        response of a refusal, or the headers given to ``accept()``. (Cookies
        the app sets once the socket is open never reach a real client.)"""
        url = urlsplit(get_current_url(environ))
        self._http._update_cookies_from_response(url.hostname or "localhost", url.path, headers.getlist("Set-Cookie"))


def _serve(app: Flask, environ: dict[str, t.Any], server_socket: ServerSocket, connection: _Connection) -> None:
    """Run the request, as a WebSocket server's handler does (in its own thread)."""
    try:
        connection.result = run_wsgi_app(app, environ, buffered=True)
    except BaseException as e:
        connection.error = e
    finally:
        if server_socket.accepted and not server_socket.closed:
            server_socket.close()
        connection.done.set()
        connection.handshake.set()


def _http_url(path: str) -> str:
    """``path`` with a ``ws``/``wss`` scheme turned into ``http``/``https``."""
    scheme, sep, rest = path.partition("://")
    if sep and scheme.lower() in ("ws", "wss"):
        return f"{'https' if scheme.lower() == 'wss' else 'http'}://{rest}"
    return path
