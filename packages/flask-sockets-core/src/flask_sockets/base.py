"""What every socket class of Flask-Sockets shares (the gevent socket, the
development server's and the test client's): the opcodes (gevent-websocket's
``OPCODE_*`` names), and ``send`` and
``ping`` on top of each class's ``send_frame``."""

from __future__ import annotations

import time
import typing as t

from .compression import Deflate
from .compression import negotiate
from .exceptions import ConnectionClosed
from .protocol import CloseCode
from .protocol import Opcode
from .ratelimit import ERROR_LIMIT_REASON

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

    def count_error(self) -> bool:
        """Count an error against the error budget (see
        :meth:`EngineSocket.count_error`). This base (a server's own socket,
        adapted) has no flood control: ``True``."""
        return True

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

    @property
    def ping_interval(self) -> float | None:
        """Seconds of peer silence before a keepalive ping, or ``None`` to
        never ping (the connection decides when; see
        :meth:`~flask_sockets.connection.Connection.handle_timer`)."""
        return self._protocol.ping_interval

    @ping_interval.setter
    def ping_interval(self, value: float | None) -> None:
        self._protocol.ping_interval = value

    @property
    def ping_timeout(self) -> float:
        """Seconds a pinged peer has to be heard from before the connection
        is closed with 1011 (``keepalive ping timeout``)."""
        return self._protocol.ping_timeout

    @ping_timeout.setter
    def ping_timeout(self, value: float) -> None:
        self._protocol.ping_timeout = value

    def configure(self, options: SocketOptions) -> None:
        """Apply an app's :class:`~flask_sockets.options.SocketOptions`.
        Flask-Sockets calls it before the handler runs."""
        self._configure_engine(options)
        self.ping_interval = options.ping_interval
        self.ping_timeout = options.ping_timeout
        # (These are slots of the subclasses: this mixin has none.)
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

    def count_error(self) -> bool:
        """Count one error against the connection's error budget: call it
        when the app rejects what the peer sent (a malformed or unknown
        command, a failed validation). More than ``SOCKETS_MAX_ERRORS``
        within about ``SOCKETS_ERROR_WINDOW`` seconds close the socket with
        1008 and the reason ``'error limit exceeded'``; ``receive()`` then
        returns ``None``. Returns ``False`` once the socket is closed for
        it (at once: this call sends the close frame), ``True`` otherwise."""
        if self._protocol.count_error():
            return True
        sock = t.cast(SocketBase, self)  # (the socket class's close(); this mixin has none)
        if not sock.closed:
            try:
                sock.close(CloseCode.POLICY_VIOLATION, ERROR_LIMIT_REASON)
            except (ConnectionClosed, OSError):  # the peer is gone already
                pass
        return False

    @property
    def dropped(self) -> int:
        """Messages (and pings) discarded for being over a flood control
        rate, with ``SOCKETS_FLOOD_ACTION = 'drop'``."""
        return self._protocol.dropped

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
        """The engine's ``expires_at`` changed: re-arm the socket's timer at
        the connection's :meth:`~flask_sockets.connection.Connection.next_deadline`
        (each I/O layer its own way; once accepted)."""
        raise NotImplementedError

    def _configure_engine(self, options: SocketOptions) -> None:
        """Apply the size limit, and answer the client's offer of
        compression (before the ``101`` only)."""
        self._protocol.max_message_size = options.max_message_size
        self._protocol.limit_flood(options.flood_control)
        if not self.accepted:
            agreed = negotiate(self.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS"), options.compression)
            self._protocol.deflate = None if agreed is None else agreed[1]

    def _handshake_headers(self, headers: t.Sequence[tuple[str, str]]) -> t.Sequence[tuple[str, str]]:
        """``headers`` plus ``Sec-WebSocket-Extensions`` if compression was negotiated."""
        deflate = self._protocol.deflate
        return headers if deflate is None else [*headers, ("Sec-WebSocket-Extensions", deflate.header)]
