"""gevent-websocket's ``WebSocketHandler``, hardened.

This is the one place where the server side of the WebSocket handshake
lives. Differences from gevent-websocket 0.10.1:

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
- Access-log lines are written for WebSocket requests too, from the
  numeric status code (the original Flask-Sockets worker compared ``str``
  with ``bytes`` there and raised ``TypeError``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import typing as t

from geventwebsocket.handler import WebSocketHandler as _BaseHandler
from geventwebsocket.websocket import Stream

from flask_sockets import WSGI_WEBSOCKET_KEY
from flask_sockets import is_websocket_upgrade

from .websocket import WebSocket

__all__ = ["WebSocketHandler"]

#: RFC 6455 section 1.3.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_Rejection = tuple[str, list[tuple[str, str]], bytes]


def accept_token(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()).decode("ascii")


def check_handshake(environ: t.Mapping[str, t.Any]) -> _Rejection | None:
    """Validate a WebSocket upgrade request (RFC 6455, 4.2.1).

    :returns: ``None`` if the request is a valid version-13 handshake, else
        the ``(status, headers, body)`` to answer it with.
    """

    def reject(status: str, body: str, headers: list[tuple[str, str]] | None = None) -> _Rejection:
        return status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])], body.encode()

    if environ.get("REQUEST_METHOD") != "GET":
        return reject("400 Bad Request", "A WebSocket upgrade must use GET.")
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return reject("400 Bad Request", "A WebSocket upgrade needs HTTP/1.1.")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != "13":
        return reject(
            "426 Upgrade Required",
            "Unsupported or missing Sec-WebSocket-Version; this server speaks version 13.",
            [("Sec-WebSocket-Version", "13")],
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return reject("400 Bad Request", "Missing or invalid Sec-WebSocket-Key.")
    return None


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
        response_headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_token(self.environ["HTTP_SEC_WEBSOCKET_KEY"].strip())),
        ]
        if subprotocol:
            response_headers.append(("Sec-WebSocket-Protocol", subprotocol))
        response_headers.extend(headers)
        super(_BaseHandler, self).start_response("101 Switching Protocols", response_headers)
        # The connection now belongs to the WebSocket: no length, no chunking,
        # no keep-alive after it.
        self.provided_content_length = False
        self.response_use_chunked = False
        self.close_connection = True
        self.provided_date = True
        self.write(b"")

    def log_request(self) -> None:
        # pywsgi's own access log line (gevent-websocket's skips upgrades by
        # searching the status for '101').
        super(_BaseHandler, self).log_request()


def _discard(data: bytes) -> None:
    """A ``write`` callable for a response nobody will read."""
