"""Types of the public API."""

from __future__ import annotations

import typing as t

from .protocol import CloseCode

if t.TYPE_CHECKING:  # pragma: no cover
    from .compression import Deflate

__all__ = ["BasicWebSocket", "Message", "SocketHandler", "WebSocket", "WebSocketHandler"]

#: A WebSocket message: text arrives as ``str``, binary as ``bytes``.
Message = t.Union[str, bytes]


@t.runtime_checkable
class WebSocket(t.Protocol):
    """The socket a handler receives: what the documentation tells you to
    call, on every server.

    Every socket class of Flask-Sockets satisfies it (mypy checks it in
    CI): :mod:`flask_sockets_gevent`'s, the threaded socket of
    :mod:`flask_sockets.threaded` (the development server, gunicorn
    ``gthread``) and the test client's. Under a server of another kind (the
    0.2 snippet's ``pywsgi`` with gevent-websocket's handler) the handler
    gets that server's own socket, of which only :class:`BasicWebSocket` is
    promised.
    """

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closed or closing."""
        ...

    @property
    def accepted(self) -> bool:
        """``True`` once the handshake was answered (``101``)."""
        ...

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, or ``None``."""
        ...

    @property
    def compression(self) -> Deflate | None:
        """The permessage-deflate codec agreed in the handshake, or ``None``."""
        ...

    @property
    def close_code(self) -> int | None:
        """Once closed: the close code (the peer's, 1005 if it sent none,
        1006 if it vanished); ``None`` before."""
        ...

    @property
    def close_reason(self) -> str | None:
        """Once closed: the close reason, if any."""
        ...

    def accept(self, subprotocol: str | None = None, headers: t.Sequence[tuple[str, str]] = ()) -> None:
        """Answer the handshake now (with a subprotocol and extra headers).
        Receiving, sending or closing accepts; a second call does nothing."""
        ...

    def receive(self, timeout: float | None = None) -> Message | None:
        """Block until a message arrives (at most ``timeout`` seconds, then
        :exc:`TimeoutError`); ``None`` once the peer has closed."""
        ...

    def send(self, message: Message, binary: bool | None = None, *, compress: bool = True) -> None:
        """Send a message: text for ``str``, binary for ``bytes`` (see
        :meth:`flask_sockets.base.SocketBase.send`)."""
        ...

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        """Send one frame with the given opcode."""
        ...

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping frame."""
        ...

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close the connection with a close code and reason."""
        ...

    def abort(self) -> None:
        """End the connection at once, without a close handshake: a blocked
        ``receive()`` returns ``None``, the close code is 1006."""
        ...

    def count_error(self) -> bool:
        """Count an error (a message the app rejects) against the error
        budget; over it, the socket is closed with 1008 and this returns
        ``False`` (see :meth:`flask_sockets.base.EngineSocket.count_error`)."""
        ...

    @property
    def expires_at(self) -> float | None:
        """When the session ends (a Unix timestamp), or ``None``."""
        ...

    def expire_at(self, when: float | None) -> None:
        """End the session at ``when`` (a Unix timestamp; ``None``: never):
        the server then closes with 4401 ``session expired`` (see
        :meth:`flask_sockets.base.EngineSocket.expire_at`)."""
        ...

    def expire_in(self, seconds: float | None) -> None:
        """End the session ``seconds`` from now (``None``: never)."""
        ...


@t.runtime_checkable
class BasicWebSocket(t.Protocol):
    """What Flask-Sockets needs of a socket another server puts in
    ``environ['wsgi.websocket']`` (the interface of gevent-websocket's
    ``WebSocket``, which Flask-Sockets 0.2 handlers were written against).
    Flask-Sockets adapts such a socket to :class:`WebSocket` for its own
    use (rooms, closing with the right code); the handler gets it as is."""

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closed or closing."""
        ...

    def receive(self) -> Message | bytearray | None:
        """Block until a message arrives; ``None`` once the peer has closed."""
        ...

    def send(self, message: Message, binary: bool | None = None) -> None:
        """Send a message: text for ``str``, binary for ``bytes``."""
        ...

    def send_frame(self, message: t.Any, opcode: int) -> None:
        """Send one raw frame with the given opcode."""
        ...

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close the connection with a close code and reason."""
        ...


#: A socket route's handler: called with the socket and the URL variables.
SocketHandler = t.Callable[..., object]
#: The former name of :data:`SocketHandler` (it read like
#: :class:`flask_sockets_gevent.WebSocketHandler`, a pywsgi handler class).
WebSocketHandler = SocketHandler


if t.TYPE_CHECKING:  # pragma: no cover
    # mypy checks here that the core's socket classes satisfy WebSocket
    # (flask_sockets_gevent checks its own).
    # (The test client's handlers get ThreadedWebSocket too.)
    from .foreign import ForeignSocket
    from .threaded import ThreadedWebSocket

    _SOCKET_CLASSES: tuple[type[WebSocket], ...] = (ThreadedWebSocket, ForeignSocket)
