"""What every socket class of Flask-Sockets shares (the gevent socket, the
development server's and the test client's): the opcodes (gevent-websocket's
``OPCODE_*`` names), and ``send`` and
``ping`` on top of each class's ``send_frame``."""

from __future__ import annotations

import time
import typing as t

from .compression import Deflate
from .compression import negotiate
from .protocol import CloseCode
from .protocol import Opcode

if t.TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .options import SocketOptions

__all__ = ["EngineSocket", "SocketBase", "to_payload"]

# Plain ints for send() (an IntEnum compares slower than an int).
_TEXT, _BINARY, _PING = int(Opcode.TEXT), int(Opcode.BINARY), int(Opcode.PING)


def to_payload(message: object) -> bytes:
    """The bytes a message is sent as: ``str`` encoded as UTF-8, ``bytes``
    as is, ``bytearray`` and ``memoryview`` copied. Every socket class's
    ``send_frame``, :meth:`~flask_sockets.Sockets.publish` and the test
    client check messages here.

    :raises TypeError: For anything else (an ``int`` would otherwise be sent
        as that many NUL bytes, a ``dict`` fail deep in the send).
    """
    cls = type(message)
    if cls is bytes:  # the usual cases first: two type tests
        return t.cast(bytes, message)
    if cls is str:
        return t.cast(str, message).encode("utf-8")
    if isinstance(message, str):
        return message.encode("utf-8")
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"A message is str or bytes (or bytearray, memoryview), not {cls.__name__}")


class SocketBase:
    """The base of every socket class of Flask-Sockets: ``send`` and
    ``ping`` on top of the class's ``send_frame``, and the methods the
    extension calls (``configure``, ``accept``, ``abort``, ``send_nowait``).
    Its subclasses satisfy :class:`flask_sockets.typing.WebSocket`."""

    __slots__ = ()  # adds no instance state (a subclass may use __slots__)

    #: ``True`` once the connection is closed or closing.
    closed: bool
    #: ``True`` once the handshake was answered.
    accepted: bool

    # gevent-websocket's names for the opcodes (:class:`~flask_sockets.protocol.Opcode`).
    OPCODE_CONTINUATION = Opcode.CONTINUATION
    OPCODE_TEXT = Opcode.TEXT
    OPCODE_BINARY = Opcode.BINARY
    OPCODE_CLOSE = Opcode.CLOSE
    OPCODE_PING = Opcode.PING
    OPCODE_PONG = Opcode.PONG

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def configure(self, options: SocketOptions) -> None:  # pragma: no cover - abstract
        """Apply an app's socket options (called by Flask-Sockets before the
        handler runs)."""
        raise NotImplementedError

    def accept(
        self, subprotocol: str | None = None, headers: t.Sequence[tuple[str, str]] = ()
    ) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def receive(self, timeout: float | None = None) -> str | bytes | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(
        self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b""
    ) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def send_nowait(self, message: str | bytes) -> bool:
        """Send ``message`` now if that cannot block, and say whether it was
        sent (the rooms' fast path). This base never can: ``False``.

        :raises TypeError: As :meth:`send` does."""
        to_payload(message)
        return False

    def send(self, message: t.Any, binary: bool | None = None, *, compress: bool = True) -> None:
        """Send a message: text for ``str``, binary for ``bytes`` (or as ``binary`` says).

        :param compress: ``False`` sends this message uncompressed even if
            the connection negotiated permessage-deflate. Use it for a
            message that puts a secret (a token, a session id) next to text
            an attacker can choose: an attacker who sees the compressed
            sizes can guess the secret byte by byte (CRIME/BREACH, RFC 7692
            section 9).
        :raises ~flask_sockets.ConnectionClosed: If the socket is closed.
        :raises TypeError: If ``message`` is not ``str``, ``bytes``,
            ``bytearray`` or ``memoryview`` (see :func:`to_payload`).
        """
        if binary is None:
            binary = not isinstance(message, str)
        self.send_frame(message, _BINARY if binary else _TEXT, compress)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping frame."""
        self.send_frame(payload, _PING)


class EngineSocket:
    """Mixin for the sockets that move bytes around the engine's
    :class:`~flask_sockets.connection.Connection` (the gevent socket, the
    threaded one): the close state read from it, configuring it, and
    negotiating compression."""

    __slots__ = ()

    _protocol: Connection
    environ: dict[str, t.Any]
    accepted: bool
    subprotocol: str | None
    ping_interval: float | None
    ping_timeout: float
    send_timeout: float | None

    @property
    def close_code(self) -> int | None:
        """The close code the peer sent (1005 if its close frame had none),
        ours if the server failed the connection (1002, 1007, 1009, 1011),
        1006 if it ended without either; ``None`` while open."""
        return self._protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The reason that goes with :attr:`close_code`."""
        return self._protocol.close_reason

    @property
    def close_timeout(self) -> float:
        """Seconds :meth:`close` waits for the peer's close frame (and a
        failed connection goes on discarding what the peer sends)."""
        return self._protocol.close_timeout

    @close_timeout.setter
    def close_timeout(self, value: float) -> None:
        self._protocol.close_timeout = value

    def configure(self, options: SocketOptions) -> None:
        """Apply an app's :class:`~flask_sockets.options.SocketOptions`.
        Flask-Sockets calls it before the handler runs."""
        self._configure_engine(options)
        # (These are slots of the subclasses: this mixin has none.)
        self.ping_interval = options.ping_interval  # type: ignore[misc]
        self.ping_timeout = options.ping_timeout  # type: ignore[misc]
        self.close_timeout = options.close_timeout
        self.send_timeout = options.send_timeout  # type: ignore[misc]
        if options.subprotocol is not None:
            self.subprotocol = options.subprotocol  # type: ignore[misc]

    @property
    def max_message_size(self) -> int | None:
        """Largest incoming message in bytes, or ``None`` for no limit."""
        return self._protocol.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int | None) -> None:
        self._protocol.max_message_size = value

    @property
    def compression(self) -> Deflate | None:
        """The permessage-deflate codec negotiated with the client
        (``compression.parameters()``), or ``None``. Known once the socket
        was configured; sent with the ``101``."""
        return self._protocol.deflate

    # -- sessions that end ----------------------------------------------------

    @property
    def expires_at(self) -> float | None:
        """When the session of this connection ends, as a Unix timestamp
        (:func:`time.time`), or ``None`` (never: the default)."""
        expires_at = self._protocol.expires_at
        return None if expires_at is None else expires_at - time.monotonic() + time.time()

    def expire_at(self, when: float | None) -> None:
        """End the session at ``when``, a Unix timestamp (:func:`time.time`;
        a JWT's ``exp`` claim is one): then the server closes the connection
        with 4401 ``session expired``
        (:data:`~flask_sockets.connection.EXPIRED_CODE`), a code that tells
        a client not to reconnect before it has new credentials; the
        handler's ``receive()`` returns ``None``. Call it again before then
        to move the end (after the client sent a fresh token, say); ``None``
        removes it. A time already past closes the connection at once.
        Only the server's clock counts: a change of the wall clock after the
        call moves nothing."""
        protocol = self._protocol
        protocol.expires_at = None if when is None else time.monotonic() + (when - time.time())
        self._expiry_changed()

    def expire_in(self, seconds: float | None) -> None:
        """End the session ``seconds`` from now (see :meth:`expire_at`);
        ``None`` removes the end."""
        self._protocol.expires_at = None if seconds is None else time.monotonic() + seconds
        self._expiry_changed()

    def _expiry_changed(self) -> None:  # pragma: no cover - abstract
        """The engine's ``expires_at`` changed: have the socket's timer call
        on the connection by then (each I/O layer its own way)."""
        raise NotImplementedError

    def _configure_engine(self, options: SocketOptions) -> None:
        """Apply the size limit, and answer the client's offer of
        compression (before the ``101`` only)."""
        self._protocol.max_message_size = options.max_message_size
        if not self.accepted:
            agreed = negotiate(self.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS"), options.compression)
            self._protocol.deflate = None if agreed is None else agreed[1]

    def _handshake_headers(self, headers: t.Sequence[tuple[str, str]]) -> t.Sequence[tuple[str, str]]:
        """``headers`` plus ``Sec-WebSocket-Extensions`` if compression was negotiated."""
        deflate = self._protocol.deflate
        return headers if deflate is None else [*headers, ("Sec-WebSocket-Extensions", deflate.header)]
