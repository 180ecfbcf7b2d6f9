"""Types of the public API."""

from __future__ import annotations

import typing as t

from .protocol import CloseCode

__all__ = ["Message", "WebSocket", "WebSocketHandler"]

#: A WebSocket message: text arrives as ``str``, binary as ``bytes``.
Message = t.Union[str, bytes]


@t.runtime_checkable
class WebSocket(t.Protocol):
    """The socket object a handler receives.

    Any server that puts such an object in ``environ['wsgi.websocket']``
    works with Flask-Sockets. gevent-websocket's ``WebSocket`` and the one
    from :mod:`flask_sockets_gevent` both satisfy it.
    """

    #: ``True`` once the connection is closed or closing.
    closed: bool

    def receive(self) -> Message | bytearray | None:
        """Block until a message arrives; ``None`` once the peer has closed."""
        ...

    def send(self, message: Message, binary: bool | None = None) -> None:
        """Send a message: text for ``str``, binary for ``bytes``. (The
        sockets of Flask-Sockets' servers also take ``compress=False``: see
        :meth:`flask_sockets.base.SocketBase.send`.)"""
        ...

    def send_frame(self, message: Message, opcode: int) -> None:
        """Send one raw frame with the given opcode."""
        ...

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close the connection with a close code and reason."""
        ...


#: A socket route's handler: called with the socket and the URL variables.
WebSocketHandler = t.Callable[..., object]
