"""gevent-websocket's ``WebSocketHandler``, hardened.

It answers the WebSocket handshake for gevent (the checks themselves are
in :mod:`flask_sockets.handshake`, shared with the development server).
Differences from gevent-websocket 0.10.1:

- The Flask app runs *before* the upgrade is answered. ``101 Switching
  Protocols`` is sent when the socket is accepted: by Flask-Sockets as the
  socket route's handler starts, or, on a route with ``defer_accept=True``,
  when the handler first uses the socket (or calls ``ws.accept()``). If the
  app answers without accepting (a ``before_request`` hook returning a
  response, the origin check, a 404, ``abort(403)`` in a deferred handler),
  the client gets that HTTP response.
- gevent-websocket's ``handler.active_client`` and ``handler.server.clients``
  are there, as ``Client(address, ws)`` objects made when asked for (see
  :class:`~flask_sockets_gevent.websocket.Clients`).
- Only version 13 (RFC 6455) is spoken; a missing or other
  ``Sec-WebSocket-Version`` gets ``426`` with ``Sec-WebSocket-Version: 13``.
- A missing, badly encoded or wrong-length ``Sec-WebSocket-Key``, an
  HTTP/1.0 upgrade (0.10.1 answered ``402``) or a non-GET upgrade gets
  ``400`` with a bytes body (0.10.1 crashed writing ``str`` bodies and let
  ``binascii.Error`` escape on bad base64).
- Upgrades are recognised exactly as Werkzeug's router does
  (:func:`flask_sockets.is_websocket_upgrade`).
- Oversized request headers get ``431`` (gevent: ``400``, sometimes with a
  traceback).
- Access-log lines are written for WebSocket requests too, from the
  numeric status code (the original Flask-Sockets worker compared ``str``
  with ``bytes`` there and raised ``TypeError``). A client that leaves
  before the ``101`` could be written is logged with status ``499`` (the
  upgrade was not completed), not as an error.
- Access-log lines show the values of query parameters named like
  credentials (``token``, ``access_token``, ``auth``, ``jwt``, ``key``,
  ``password``, ...) as ``[REDACTED]`` (see :mod:`flask_sockets.redaction`).
- Every request head is read strictly (:mod:`flask_sockets_gevent._http`,
  RFC 9112): malformed request lines and header lines, folded lines,
  control characters, ambiguous body framing and a connection that ends
  inside the head get ``400`` and are never dispatched; a peer that resets
  meanwhile ends the connection quietly. Client errors are logged at DEBUG
  on the ``flask_sockets_gevent`` logger, never in the server's error log.
- The request line and headers must arrive within the server's
  ``handshake_timeout`` (``408``, then close), and an idle keep-alive
  connection is closed after ``keepalive_timeout``.
- A request body the client cuts short (it closes or resets before
  sending what it announced, or its chunks do not parse) closes the
  connection, logged at DEBUG; a Flask app that reads it gets Werkzeug's
  ``ClientDisconnected`` (``400``) instead of an ``OSError`` (a ``500``
  and a traceback).
"""

from __future__ import annotations

import logging
import socket
import time
import typing as t

from flask import Flask
from gevent import get_hub as _get_hub
from gevent import getcurrent as _getcurrent
from gevent import pywsgi
from geventwebsocket.handler import Client
from geventwebsocket.handler import WebSocketHandler as _BaseHandler

from flask_sockets import WSGI_WEBSOCKET_KEY
from flask_sockets import is_websocket_upgrade
from flask_sockets.handshake import check_handshake
from flask_sockets.handshake import handshake_response_headers
from flask_sockets.metrics import count_early_refusal
from flask_sockets.redaction import redact_request_line

from ._http import HeadersTooLarge
from ._http import RequestBody
from ._http import check_framing
from ._http import check_request_line
from ._http import read_head
from .websocket import GeventWebSocket

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "HANDSHAKE_NOT_SENT_STATUS",
    "WebSocketHandler",
]

logger = logging.getLogger("flask_sockets_gevent")

#: Seconds a client has to send its request line and headers, when the
#: server does not say (``server.handshake_timeout``).
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection is kept, when the server does not
#: say (``server.keepalive_timeout``).
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
#: The status the access log shows for an upgrade whose ``101`` could not be
#: written because the client had gone (nginx's "client closed request").
HANDSHAKE_NOT_SENT_STATUS = "499 Client Closed Request"


class _PhaseExpired(BaseException):
    """A connection's phase timer fired (raised in its handler's greenlet,
    like gevent.Timeout; not an Exception, so nothing on the way catches it)."""


class _HandshakeExpired(_PhaseExpired):
    """The request line and headers did not arrive in time."""


class _KeepaliveExpired(_PhaseExpired):
    """No next request on a keep-alive connection in time."""


class _BodyExpired(_PhaseExpired):
    """The rest of a request body the app did not read did not arrive in time."""


def _error_response(status: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode("ascii")


_BAD_REQUEST = _error_response("400 Bad Request")
_HEADERS_TOO_LARGE = _error_response("431 Request Header Fields Too Large")
_REQUEST_TIMEOUT = _error_response("408 Request Timeout")


class _Slots:
    # The handler's own state, in slots rather than in the instance's
    # __dict__ (see WebSocketHandler.handle).
    __slots__ = ("_timer", "websocket")


class WebSocketHandler(_Slots, _BaseHandler):  # type: ignore[misc]
    """A gevent ``pywsgi`` handler that serves WebSocket upgrades.

    Pass it as ``handler_class`` to :class:`gevent.pywsgi.WSGIServer`, or let
    :func:`flask_sockets_gevent.make_server` do it.
    """

    # gevent-websocket's attribute, for code that reads it: only version 13
    # is spoken (flask_sockets.handshake checks it; gevent-websocket's own
    # upgrade code, which read this, is never called).
    SUPPORTED_VERSIONS = ("13",)
    #: The socket class put in ``environ['wsgi.websocket']``.
    websocket_class = GeventWebSocket

    #: The socket of the request being served, if it is an upgrade.
    websocket: GeventWebSocket | None
    # The timer of the current phase (handshake, keep-alive wait, body
    # drain), if any.
    _timer: t.Any
    # pywsgi's per-request state (its defaults are WSGIHandler's class
    # attributes), for the type checker.
    time_start: float
    time_finish: float
    requestline: str | None
    command: str | None
    path: str | None
    request_version: str | None
    status: bytes | None
    _orig_status: str | None
    environ: t.Any

    @property
    def active_client(self) -> Client:
        """``Client(address, ws)`` for this connection's socket, as
        gevent-websocket's handler had (without a search of ``server.clients``).

        :raises KeyError: If this connection has no socket (any more).
        """
        ws = self.websocket
        if ws is None:
            raise KeyError(self.client_address)
        return Client(self.client_address, ws)

    def run_application(self) -> None:
        if not is_websocket_upgrade(self.environ):
            # Plain HTTP: pywsgi's own path (skipping gevent-websocket's).
            try:
                super(_BaseHandler, self).run_application()
            finally:
                self._drain_body()
            return None
        # The connection closes after an upgrade, answered or refused: pywsgi
        # must not wait to drain a body (one announced by a refused upgrade
        # may never come).
        self.wsgi_input = pywsgi.Input(self.rfile, 0)
        rejection = check_handshake(self.environ)
        if rejection is not None:
            # Counted first: a client that got the answer finds it counted.
            self._count_refusal(rejection[0])
            self._send_plain_response(*rejection)
            return None
        self.websocket = self.websocket_class(self.environ, self)
        self.environ[WSGI_WEBSOCKET_KEY] = self.websocket
        self.environ["wsgi.websocket_version"] = "13"
        try:
            self.result = _wsgi_callable(self.application)(self.environ, self._start_response_for_websocket)
            if not self.websocket.accepted:
                # The app answered without taking the socket: a real HTTP response.
                self.close_connection = True
                self.process_result()
        finally:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
            self.result = None
            if self.websocket.accepted and not self.websocket.closed:
                self.websocket.close()
            self.environ[WSGI_WEBSOCKET_KEY] = None
            self.websocket = None
        return None

    def _start_response_for_websocket(
        self, status: str, headers: list[tuple[str, str]], exc_info: t.Any = None
    ) -> t.Callable[[bytes], None]:
        ws = self.websocket
        if ws is not None and ws.accepted:
            # The 101 already answered the request; the app's response is moot.
            return _discard
        return super(_BaseHandler, self).start_response(status, headers, exc_info)  # type: ignore[no-any-return]

    def _send_plain_response(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.close_connection = True
        headers = [*headers, ("Content-Length", str(len(body)))]
        super(_BaseHandler, self).start_response(status, headers)
        self.write(body)

    def send_handshake(self, subprotocol: str | None, headers: t.Sequence[tuple[str, str]]) -> None:
        """Answer the upgrade with ``101 Switching Protocols``.

        :raises OSError: If the client is gone (reset, broken pipe); the
            access log then shows :data:`HANDSHAKE_NOT_SENT_STATUS`.
        """
        response_headers = handshake_response_headers(self.environ, subprotocol, headers)
        super(_BaseHandler, self).start_response("101 Switching Protocols", response_headers)
        # The connection now belongs to the WebSocket: no length, no chunking,
        # no keep-alive after it.
        self.provided_content_length = False
        self.response_use_chunked = False
        self.close_connection = True
        self.provided_date = True
        try:
            self.write(b"")
        except OSError as e:
            # pywsgi's own marker ('socket error: ...') would read as a status
            # of 'socket' (gunicorn) or still 101 (pywsgi).
            self._orig_status = HANDSHAKE_NOT_SENT_STATUS
            self.status = HANDSHAKE_NOT_SENT_STATUS.encode("latin-1")
            self.code = int(HANDSHAKE_NOT_SENT_STATUS[:3])
            logger.debug("%s left before the handshake was answered: %r", self._client(), e)
            raise

    def upgrade(self, subprotocol: str | None, headers: t.Sequence[tuple[str, str]]) -> tuple[t.Any, bytes]:
        """Answer the upgrade (:meth:`send_handshake`) and hand the
        connection over to the WebSocket: return the TCP socket (with
        ``TCP_NODELAY`` set) and the bytes the client sent after its
        request that the HTTP reader has already read. The reader is closed,
        which frees its 8 KiB buffer (the socket stays open, and this
        handler closes it when the request is over).

        :raises OSError: If the client is gone (see :meth:`send_handshake`).
        """
        self.send_handshake(subprotocol, headers)
        # Neither the parsed request head (the environ has it) nor the 101's
        # encoded headers are read again (~1.2 KB per open socket); the
        # class's defaults stand in, as between two requests. (gunicorn's
        # access log reads both: its handler rebuilds the request headers
        # from the environ; the response headers it got from pywsgi were
        # bytes, which no ``%({name}o)s`` could name.)
        state = self.__dict__
        state.pop("headers", None)
        state.pop("response_headers", None)
        rfile, sock = self.rfile, self.socket
        timeout = sock.gettimeout()
        sock.settimeout(0.0)  # peek() must not wait for more
        try:
            pending = rfile.peek()
        except OSError:
            pending = b""
        finally:
            sock.settimeout(timeout)
        if pending:
            pending = rfile.read1(len(pending))
        rfile.close()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # pragma: no cover - not a TCP socket
            pass
        return sock, pending

    # -- reading requests: strict, bounded in time, quiet about bad clients ---

    def handle(self) -> None:
        # pywsgi's request loop (WSGIHandler.handle), with the phase timers.
        # It replaces pywsgi's rather than wrapping it: whatever frames sit
        # under handle_one_request stay on the saved stack of the greenlet
        # for the whole life of a WebSocket, and each costs memory per
        # connection. For the same reason this class keeps its state in
        # slots: pywsgi's handler already puts 27 entries in the instance's
        # __dict__, and CPython 3.11 gives an instance a 1.5 KiB dict of its
        # own past 29 (instead of sharing the class's keys).
        handshake_timeout = self._setting("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)
        served = False
        # The first request line and headers must arrive within the
        # handshake timeout, counted from the connection's start.
        self._arm(handshake_timeout, _HandshakeExpired)
        try:
            while self.socket is not None:
                self.time_start = time.time()
                self.time_finish = 0
                if served:
                    # Nothing of the previous request on this connection may
                    # show in the log line of this one (pywsgi keeps them for
                    # error responses).
                    self.requestline = self.command = self.path = self.request_version = None
                    self.status = self._orig_status = self.environ = None
                    self.__dict__.pop("headers", None)  # back to the class's empty message
                    if not self._await_request():
                        break
                    self._arm(handshake_timeout, _HandshakeExpired)
                served = True
                try:
                    result = self.handle_one_request()
                except _HandshakeExpired:
                    self._timed_out()
                    break
                finally:
                    self._disarm()
                if result is None:
                    break
                if result is True:
                    continue
                self.status, response_body = result
                self.socket.sendall(response_body)
                if self.time_finish == 0:
                    self.time_finish = time.time()
                self.log_request()
                break
        except OSError as e:
            # The peer reset while an error response was written: not an error.
            logger.debug("%s: connection lost: %r", self._client(), e)
        finally:
            self._disarm()
            self._close()

    def _await_request(self) -> bool:
        """Wait up to the keep-alive timeout for the first byte of the next
        request on this connection; ``False``: close it."""
        keepalive_timeout = self._setting("keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT)
        # While it waits, a stopping server may cut it (see
        # GracefulShutdownMixin): nothing is lost.
        idle = getattr(self.server, "idle_connections", None)
        if idle is not None:
            idle.add(self.socket)
        self._arm(keepalive_timeout, _KeepaliveExpired)
        try:
            return not self.rfile.closed and bool(self.rfile.peek(1))  # b'': the client closed it
        except _KeepaliveExpired:
            logger.debug("%s: idle keep-alive connection closed", self._client())
            return False
        except OSError:
            return False
        finally:
            self._disarm()
            if idle is not None:
                idle.discard(self.socket)

    def _close(self) -> None:
        # pywsgi's cleanup at the end of WSGIHandler.handle.
        sock = self.socket
        if sock is not None:
            raw = getattr(sock, "_sock", None)
            try:
                # Read what the client still sent, so that closing does not reset.
                if raw:
                    try:
                        raw.recv(16384)
                    finally:
                        raw.close()
                sock.close()
            except OSError:
                pass
        state = self.__dict__
        state.pop("socket", None)
        state.pop("rfile", None)
        state.pop("wsgi_input", None)

    def read_requestline(self) -> str:
        # While a connection waits for its request line, a stopping server
        # may cut it (see GracefulShutdownMixin): nothing is lost.
        idle = getattr(self.server, "idle_connections", None)
        if idle is not None:
            idle.add(self.socket)
        try:
            line: str = super().read_requestline()
            if line in ("\r\n", "\n"):
                # RFC 9112 2.2: ignore an empty line before a request line.
                line = super().read_requestline()
            return line
        finally:
            if idle is not None:
                idle.discard(self.socket)

    def read_request(self, raw_requestline: str) -> bool:
        check_request_line(raw_requestline)
        super().read_request(raw_requestline)
        # The request head is in: the app's time is its own.
        self._disarm()
        if self._setting("keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT) == 0:
            self.close_connection = True
        return True

    def MessageClass(self, *args: t.Any) -> t.Any:  # noqa: N802 - gevent's name
        # Header lines are checked (and bounded) as they are read; the
        # message is the type pywsgi and gunicorn expect.
        message = read_head(args[0])
        check_framing(message, self.request_version)
        return message

    def get_environ(self) -> dict[str, t.Any]:
        env: dict[str, t.Any] = super().get_environ()
        body = self.wsgi_input
        if env.get("wsgi.input") is body:  # not an upgrade: pywsgi reads the body
            # The same body, raising BodyCutShort (a 400 for Flask) if it ends early.
            self.wsgi_input = env["wsgi.input"] = RequestBody(
                body.rfile, body.content_length, socket=body.socket, chunked_input=body.chunked_input
            )
        return env

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes] | None:
        # gevent's hook for unparsable requests: answer with a status and log
        # at DEBUG (gevent writes to the error log, and a traceback to stderr
        # for anything but a ValueError).
        if isinstance(ex, OSError):
            logger.debug("%s: connection lost while reading the request: %r", self._client(), ex)
            return None
        logger.debug("Bad request from %s: %s", self._client(), str(ex) or type(ex).__name__)
        if isinstance(ex, HeadersTooLarge):
            self._count_refusal("431")
            return "431", _HEADERS_TOO_LARGE
        self._count_refusal("400")
        return "400", _BAD_REQUEST

    def _count_refusal(self, status: str) -> None:
        """Count a request refused before the app ran in the app's metrics
        (:func:`flask_sockets.metrics.count_early_refusal`), if they are on."""
        try:
            count_early_refusal(self.application, int(status.split(None, 1)[0]))
        except Exception:  # pragma: no cover - counting never breaks the answer
            logger.exception("Counting a refused request failed")

    def _drain_body(self) -> None:
        """Read what is left of a request body the app did not read, as
        pywsgi does to keep the connection, but for at most the handshake
        timeout: a body that was announced and never comes closes the
        connection instead of holding it forever. A body cut short (the
        client closed or reset before sending all it announced, or its
        chunks do not parse) closes the connection too: a client event,
        logged at DEBUG."""
        body: t.Any = self.wsgi_input
        if getattr(body, "cut_short", False):  # the app read it, and it ended early
            self.close_connection = True
            self.wsgi_input = pywsgi.Input(self.rfile, 0)
            return
        if body is None or (not body.chunked_input and body.position >= (body.content_length or 0)):
            return  # nothing left (pywsgi's own test in Input._discard)
        limit = self._setting("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)
        if limit is None:
            return
        self._arm(limit, _BodyExpired)
        try:
            body._discard()
        except (_BodyExpired, OSError) as e:
            reason = "not received in time" if isinstance(e, _BodyExpired) else f"cut short ({e})"
            logger.debug("%s: request body %s", self._client(), reason)
            self.close_connection = True
            # Nothing is left for pywsgi to discard after us.
            self.wsgi_input = pywsgi.Input(self.rfile, 0)
        finally:
            self._disarm()

    def _timed_out(self) -> None:
        """The handshake timer fired: close the connection, with a ``408``
        if the answer can be written without waiting."""
        logger.debug("%s: request head not received in time", self._client())
        sock = self.socket
        try:
            sock.settimeout(0.0)
            sock.send(_REQUEST_TIMEOUT)
        except OSError:
            return None
        self._orig_status = "408 Request Timeout"
        self.status = b"408 Request Timeout"
        self.time_finish = time.time()
        self.log_request()
        return None

    def _setting(self, name: str, default: float) -> float | None:
        value: float | None = getattr(self.server, name, default)
        return value

    def _arm(self, seconds: float | None, expired: type[BaseException]) -> None:
        """Start the timer of a new phase (``None``: no limit): when it
        fires, ``expired`` is raised in this greenlet. One hub timer, not a
        ``gevent.Timeout`` (an exception object and a timer per phase)."""
        self._disarm()
        if seconds is not None:
            timer = _get_hub().loop.timer(seconds)
            timer.start(_getcurrent().throw, expired)
            self._timer = timer

    def _disarm(self) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            self._timer = None
            timer.close()

    def _client(self) -> str:
        address = self.client_address
        return str(address[0] if isinstance(address, tuple) and address else address)

    def log_request(self) -> None:
        # pywsgi's own access log line (gevent-websocket's skips upgrades by
        # searching the status for '101'). With ``log=None`` pywsgi would
        # still format the line, then drop it.
        if isinstance(self.server.log, pywsgi._NoopLog):  # type: ignore[attr-defined]
            return
        super(_BaseHandler, self).log_request()

    def format_request(self) -> str:
        # pywsgi's line, with credentials in the query redacted (nothing
        # switches greenlets in between: the request line is put back at once).
        line = self.requestline
        if not line or "?" not in line:
            return str(super().format_request())
        self.requestline = redact_request_line(line)
        try:
            return str(super().format_request())
        finally:
            self.requestline = line


_FLASK_CALL = Flask.__call__


def _wsgi_callable(app: t.Any) -> t.Any:
    """What to call for ``app``: a Flask app's ``wsgi_app`` (which is what
    ``Flask.__call__`` calls, so middleware set as ``app.wsgi_app`` still
    runs), unless its class overrides ``__call__``; any other app itself.
    The handler's greenlet keeps the C stack of the call for the life of a
    WebSocket, and calling an instance costs ~750 bytes of it more than
    calling a method."""
    if isinstance(app, Flask) and type(app).__call__ is _FLASK_CALL:
        return app.wsgi_app
    return app


def _discard(data: bytes) -> None:
    """A ``write`` callable for a response nobody will read."""
