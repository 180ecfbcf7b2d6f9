"""Sockets of other servers behind the interface of Flask-Sockets' own.

A server that is not one of ours may put its own socket in
``environ['wsgi.websocket']``: gevent-websocket's handler under ``pywsgi``
(the 0.2 README's snippet) is the one met in practice. Its socket has the
0.2 interface (:class:`~flask_sockets.typing.BasicWebSocket`): no
``accept`` (it answered the handshake before the app ran), no ``abort``,
and its ``close(code, message)`` sends ``message`` without the code. What
Flask-Sockets does with a socket (rooms, closing with 1011 after an
exception) goes through :func:`as_socket`, so that this knowledge lives
here only; the handler still gets the server's socket itself.
"""

from __future__ import annotations

import socket
import typing as t

from .base import SocketBase
from .protocol import CloseCode
from .protocol import close_payload

if t.TYPE_CHECKING:  # pragma: no cover
    from .compression import Deflate
    from .options import SocketOptions
    from .typing import BasicWebSocket
    from .typing import Message

__all__ = ["ForeignSocket", "as_socket"]


def as_socket(ws: BasicWebSocket | SocketBase) -> SocketBase:
    """``ws`` itself if it is one of Flask-Sockets' sockets, else ``ws``
    wrapped in a :class:`ForeignSocket`."""
    if isinstance(ws, SocketBase):
        return ws
    return ForeignSocket(ws)


def is_gevent_websocket_socket(ws: object) -> bool:
    """Whether ``ws`` is (or derives from) gevent-websocket's ``WebSocket``,
    told without importing it (the core imports no server)."""
    return any(c.__name__ == "WebSocket" and c.__module__ == "geventwebsocket.websocket" for c in type(ws).__mro__)


class ForeignSocket(SocketBase):
    """Another server's socket with the interface of Flask-Sockets' own
    (:class:`~flask_sockets.typing.WebSocket`). The handshake was answered
    by that server: :attr:`accepted` is always true, and :meth:`accept` and
    :meth:`configure` change nothing (its server applies no Flask-Sockets
    limits)."""

    accepted = True
    subprotocol = None
    compression: Deflate | None = None

    def __init__(self, ws: BasicWebSocket) -> None:
        #: The server's socket.
        self.ws = ws
        self._gevent_websocket = is_gevent_websocket_socket(ws)
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def __repr__(self) -> str:
        return f"<ForeignSocket {self.ws!r}>"

    @property
    def closed(self) -> bool:
        return bool(self.ws.closed)

    @closed.setter
    def closed(self, value: bool) -> None:
        raw: t.Any = self.ws
        raw.closed = value

    def configure(self, options: SocketOptions) -> None:
        pass

    def accept(self, subprotocol: str | None = None, headers: t.Sequence[tuple[str, str]] = ()) -> None:
        pass

    def receive(self, timeout: float | None = None) -> Message | None:
        """The server socket's ``receive()``; it takes no timeout."""
        if timeout is not None:
            raise TypeError(f"{type(self.ws).__name__}.receive() takes no timeout")
        message = self.ws.receive()
        return bytes(message) if isinstance(message, bytearray) else message

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        self.ws.send_frame(message, opcode)

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close with ``code`` and ``message``; gevent-websocket's socket is
        given a well-formed close frame (its own ``close`` would send the
        message without the code), then marked closed so that it sends no
        second one."""
        if self.closed:
            return
        reason = message if isinstance(message, str) else message.decode("utf-8", "replace")
        self.close_code, self.close_reason = code, reason
        if not self._gevent_websocket:
            self.ws.close(code, message)
            return
        try:
            self.ws.send_frame(close_payload(code, reason), self.OPCODE_CLOSE)
        finally:
            self.closed = True

    expires_at = None

    def expire_at(self, when: float | None) -> None:
        """Another server's socket has no session expiry.

        :raises NotImplementedError: Unless ``when`` is ``None``."""
        if when is not None:
            raise NotImplementedError(
                f"{type(self.ws).__name__} has no session expiry: serve the app with a Flask-Sockets server"
            )

    def expire_in(self, seconds: float | None) -> None:
        """Another server's socket has no session expiry (see :meth:`expire_at`)."""
        self.expire_at(seconds)

    def abort(self) -> None:
        """End the TCP connection under gevent-websocket's socket (its
        handler's socket), which wakes a blocked ``receive()``. Another
        server's socket offers no way to: nothing is done."""
        if not self._gevent_websocket:
            return
        raw: t.Any = self.ws
        self.close_code = CloseCode.ABNORMAL_CLOSURE
        try:
            raw.handler.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
