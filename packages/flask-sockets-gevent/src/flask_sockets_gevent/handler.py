"""gevent-websocket's ``WebSocketHandler``, hardened.

It answers the WebSocket handshake for gevent (the checks themselves are
in :mod:`flask_sockets.handshake`, shared with the development server).
Differences from gevent-websocket 0.10.1:

- The Flask app runs *before* the upgrade is answered. ``101 Switching
  Protocols`` is sent when the handler first uses the socket (or calls
  ``ws.accept()``); if the app answers without doing so (``abort(403)``, a
  ``before_request`` returning a response, a 404), the client gets that
  HTTP response.
- Only version 13 (RFC 6455) is spoken; a missing or other
  ``Sec-WebSocket-Version`` gets ``426`` with ``Sec-WebSocket-Version: 13``.
- A missing, badly encoded or wrong-length ``Sec-WebSocket-Key``, an
  HTTP/1.0 upgrade (0.10.1 answered ``402``) or a non-GET upgrade gets
  ``400`` with a bytes body (0.10.1 crashed writing ``str`` bodies and let
  ``binascii.Error`` escape on bad base64).
- Upgrades are recognised exactly as Werkzeug's router does
  (:func:`flask_sockets.is_websocket_upgrade`).
- Oversized request headers get ``431`` and a one-line log entry instead
  of gevent's ``400`` with a traceback.
- Access-log lines are written for WebSocket requests too, from the
  numeric status code (the original Flask-Sockets worker compared ``str``
  with ``bytes`` there and raised ``TypeError``).
"""

from __future__ import annotations

import http.client
import typing as t

from gevent import pywsgi
from geventwebsocket.handler import WebSocketHandler as _BaseHandler
from geventwebsocket.websocket import Stream

from flask_sockets import WSGI_WEBSOCKET_KEY
from flask_sockets import is_websocket_upgrade
from flask_sockets.handshake import check_handshake
from flask_sockets.handshake import handshake_response_headers

from .websocket import WebSocket

__all__ = ["WebSocketHandler"]


class _HeadersTooLarge(ValueError):
    """The request headers are over gevent's limits."""


_HEADERS_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class WebSocketHandler(_BaseHandler):  # type: ignore[misc]
    """A gevent ``pywsgi`` handler that serves WebSocket upgrades.

    Pass it as ``handler_class`` to :class:`gevent.pywsgi.WSGIServer`, or let
    :func:`flask_sockets_gevent.make_server` do it.
    """

    SUPPORTED_VERSIONS = ("13",)
    #: The socket class put in ``environ['wsgi.websocket']``.
    websocket_class = WebSocket

    websocket: WebSocket | None

    def run_application(self) -> None:
        if not is_websocket_upgrade(self.environ):
            # Plain HTTP: pywsgi's own path (skipping gevent-websocket's).
            super(_BaseHandler, self).run_application()
            return None
        rejection = check_handshake(self.environ)
        if rejection is not None:
            self._send_plain_response(*rejection)
            return None
        self.websocket = self.websocket_class(self.environ, Stream(self), self)
        self.environ[WSGI_WEBSOCKET_KEY] = self.websocket
        self.environ["wsgi.websocket_version"] = "13"
        try:
            self.result = self.application(self.environ, self._start_response_for_websocket)
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
        """Answer the upgrade with ``101 Switching Protocols``."""
        response_headers = handshake_response_headers(self.environ, subprotocol, headers)
        super(_BaseHandler, self).start_response("101 Switching Protocols", response_headers)
        # The connection now belongs to the WebSocket: no length, no chunking,
        # no keep-alive after it.
        self.provided_content_length = False
        self.response_use_chunked = False
        self.close_connection = True
        self.provided_date = True
        self.write(b"")

    def read_requestline(self) -> str:
        # While a keep-alive connection waits for its next request, a stopping
        # server may cut it (see GracefulShutdownMixin): nothing is lost.
        idle = getattr(self.server, "idle_connections", None)
        if idle is None:
            return super().read_requestline()  # type: ignore[no-any-return]
        idle.add(self.socket)
        try:
            return super().read_requestline()  # type: ignore[no-any-return]
        finally:
            idle.discard(self.socket)

    def MessageClass(self, *args: t.Any) -> t.Any:  # noqa: N802 - gevent's name
        # gevent turns a header line over 64 KiB into an empty message with a
        # status, and lets http.client's "more than 100 headers" error escape.
        try:
            message = super().MessageClass(*args)
        except http.client.HTTPException as e:
            raise _HeadersTooLarge(str(e)) from e
        if getattr(message, "status", None):
            raise _HeadersTooLarge(message.status)
        return message

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
        # gevent's hook for unparsable requests: answer oversized headers with
        # 431 and a one-line log (gevent: 400, sometimes with a traceback).
        if isinstance(ex, _HeadersTooLarge):
            self.log_error("Request headers too large (from %s): %s", self.client_address, ex)
            return "431", _HEADERS_TOO_LARGE
        return super()._handle_client_error(ex)  # type: ignore[no-any-return]

    def log_request(self) -> None:
        # pywsgi's own access log line (gevent-websocket's skips upgrades by
        # searching the status for '101'). With ``log=None`` pywsgi would
        # still format the line, then drop it.
        if isinstance(self.server.log, pywsgi._NoopLog):  # type: ignore[attr-defined]
            return
        super(_BaseHandler, self).log_request()


def _discard(data: bytes) -> None:
    """A ``write`` callable for a response nobody will read."""
