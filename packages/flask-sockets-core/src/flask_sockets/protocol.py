"""The server side of the WebSocket protocol (RFC 6455, with RFC 7692's
permessage-deflate), sans I/O: bytes in, messages and control frames out,
frames to send. Every server of Flask-Sockets wraps its I/O around it (the
gevent socket, the development server's); none parses frames itself.

The connection's I/O layer appends what it reads to :attr:`ServerProtocol.buffer`
(or calls :meth:`~ServerProtocol.receive_data`) and calls
:meth:`~ServerProtocol.next_event` until it returns ``None`` (more bytes
needed). Events are a message (``str`` for text, ``bytes`` for binary),
:class:`Ping`, :class:`Pong`, :class:`Close` or :data:`PAUSE` (many frames
were handled without a whole message: an I/O layer serving many connections
may let the others run, then call again). A peer breaking the protocol
raises a :exc:`ProtocolError` whose ``code`` is the close code to fail the
connection with: 1002 (protocol), 1007 (invalid UTF-8, found as soon as the
bad bytes arrive, also inside a frame still arriving) or 1009 (over the
message size limit, or a message in too many fragments).

Limits: a frame's announced length is checked against the size limit
before its payload arrives; a compressed message is checked while it is
inflated (at most ``limit + 1`` bytes are produced); a message may have at
most :func:`~flask_sockets.options.max_fragments` fragments. What the
buffer holds is bounded by the limit: text and compressed frames are
consumed as they arrive, an uncompressed binary frame once it is whole.

Payloads are unmasked with ``websockets``' C ``apply_mask`` (its pure-Python
version where the C extension is missing).
"""

from __future__ import annotations

import codecs
import enum
import io
import struct
import typing as t
import zlib

from .compression import Deflate
from .compression import TooBig
from .options import max_fragments

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "PAUSE",
    "Close",
    "CloseCode",
    "InvalidData",
    "MessageTooBig",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "ServerProtocol",
    "apply_mask",
    "close_payload",
    "frame_header",
    "is_valid_close_code",
]


class Opcode(enum.IntEnum):
    """The opcode of a frame (RFC 6455, 5.2)."""

    #: A frame that continues a fragmented message.
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """The close codes of RFC 6455 (7.4.1) that Flask-Sockets sends or
    reports (the names are those of ``websockets.frames.CloseCode``). A
    socket's ``close(code)`` takes any valid code, these or 3000-4999."""

    #: The handler returned, or closed the socket.
    NORMAL_CLOSURE = 1000
    #: The server is shutting down.
    GOING_AWAY = 1001
    #: The peer broke the protocol.
    PROTOCOL_ERROR = 1002
    #: The peer sent a kind of data the endpoint cannot take.
    UNSUPPORTED_DATA = 1003
    #: Reported (never sent) for a close frame without a code (7.1.5).
    NO_STATUS_RCVD = 1005
    #: Reported (never sent) when the connection ended without a close frame.
    ABNORMAL_CLOSURE = 1006
    #: Invalid UTF-8 in a text message or a close reason.
    INVALID_DATA = 1007
    #: The app refused the peer (an ``abort()`` with a 4xx status, a slow consumer).
    POLICY_VIOLATION = 1008
    #: A message over the size limit, or in too many fragments.
    MESSAGE_TOO_BIG = 1009
    #: The client needs an extension the server did not agree to.
    MANDATORY_EXTENSION = 1010
    #: The handler raised, or the peer did not answer a keepalive ping.
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    #: Reported (never sent) when the TLS handshake failed.
    TLS_HANDSHAKE = 1015


# The former names, kept importable (the enums above are the definitions).
#: :attr:`Opcode.CONTINUATION`, by its former name.
OP_CONTINUATION = Opcode.CONTINUATION
#: :attr:`Opcode.TEXT`, by its former name.
OP_TEXT = Opcode.TEXT
#: :attr:`Opcode.BINARY`, by its former name.
OP_BINARY = Opcode.BINARY
#: :attr:`Opcode.CLOSE`, by its former name.
OP_CLOSE = Opcode.CLOSE
#: :attr:`Opcode.PING`, by its former name.
OP_PING = Opcode.PING
#: :attr:`Opcode.PONG`, by its former name.
OP_PONG = Opcode.PONG

# The codes a peer may send in a close frame, besides 3000-4999 (RFC 6455, 7.4).
_SENDABLE_CLOSE_CODES = frozenset(
    int(code)
    for code in CloseCode
    if code not in (CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE, CloseCode.TLS_HANDSHAKE)
)
# Plain ints for the frame parser's hot path (an IntEnum compares slower than an int).
_CONTINUATION, _TEXT, _BINARY, _PING, _PONG = (
    int(opcode) for opcode in (Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG)
)

#: Frames handled in one :meth:`ServerProtocol.next_event` call before it
#: returns :data:`PAUSE`.
FRAMES_PER_CALL = 32


class ProtocolError(Exception):
    """The peer broke the protocol; fail the connection with :attr:`code`."""

    #: The close code to fail the connection with.
    code: int = CloseCode.PROTOCOL_ERROR


class InvalidData(ProtocolError):
    """A text message (or close reason) that is not UTF-8."""

    code = CloseCode.INVALID_DATA


class MessageTooBig(ProtocolError):
    """A message over the size limit, or in too many fragments."""

    code = CloseCode.MESSAGE_TOO_BIG


class Ping:
    """A ping from the peer: answer it with a pong carrying ``payload``."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Pong:
    """A pong from the peer."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Close:
    """The peer's close frame: ``code`` (1005 if it had none) and ``reason``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"


class _Pause:
    def __repr__(self) -> str:
        return "PAUSE"


#: Returned by :meth:`ServerProtocol.next_event` after
#: :data:`FRAMES_PER_CALL` frames without an event.
PAUSE: t.Final = _Pause()

Event = t.Union[str, bytes, Ping, Pong, Close, _Pause]


def frame_header(opcode: int, length: int, rsv1: bool = False) -> bytes:
    """The header of an unmasked, final server frame (RSV1 marks a
    compressed message)."""
    first = (0xC0 if rsv1 else 0x80) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def close_payload(code: int, reason: bytes | str = b"") -> bytes:
    """The payload of a close frame: the code, then the reason cut to 123
    bytes (never in the middle of a character)."""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    if len(reason) > 123:
        reason = reason[:123].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + reason


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455, 7.4)."""
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


def _rotate(mask: bytes, offset: int) -> bytes:
    shift = offset & 3
    return mask[shift:] + mask[:shift] if shift else mask


class ServerProtocol:
    """One connection's protocol state, server side (see the module docstring).

    :param max_message_size: Largest incoming message in bytes (``None``: no limit).
    :param deflate: The connection's permessage-deflate codec, if negotiated.
    """

    __slots__ = (
        "_compressed",
        "_decoder",
        "_fragments",
        "_frame_fin",
        "_frame_left",
        "_mask",
        "_mask_offset",
        "_message",
        "_opcode",
        "_size",
        "_wire_size",
        "buffer",
        "counting",
        "deflate",
        "max_message_size",
        "messages_in",
        "payload_bytes_in",
        "wire_bytes_in",
    )

    def __init__(self, max_message_size: int | None = None, deflate: Deflate | None = None) -> None:
        #: Bytes read from the peer and not handled yet.
        self.buffer = bytearray()
        self.max_message_size = max_message_size
        self.deflate = deflate
        # The data frame whose payload is coming: bytes still to come, its
        # mask and how far into it we are, whether it ends its message.
        self._frame_left = 0
        self._mask = b""
        self._mask_offset = 0
        self._frame_fin = False
        # The message coming in: its opcode (None between messages, and for
        # a whole message in one whole frame, which needs no assembly),
        # whether it is compressed, its payload so far (text is decoded into
        # a StringIO as it comes, binary goes into a BytesIO), its size, its
        # fragments and its size on the wire (compressed).
        self._opcode: int | None = None
        self._compressed = False
        self._message: t.Any = None
        self._decoder: t.Any = None
        self._size = 0
        self._fragments = 0
        self._wire_size = 0
        #: Whether the counters below (and a connection's ``*_out`` ones)
        #: count: ``False`` unless turned on (metrics turn it on for each
        #: socket they count). Off, they cost one test per frame; on, a few
        #: integer additions per message.
        self.counting = False
        #: Data messages (text and binary) parsed whole.
        self.messages_in = 0
        #: Their payload bytes, after decompression (UTF-8 for text).
        self.payload_bytes_in = 0
        #: Bytes of the frames parsed, as they came over the wire: headers,
        #: masking keys, payloads (compressed, when they were) and control
        #: frames (ping, pong, close). Bytes still in :attr:`buffer` count
        #: once parsed; bytes a failed connection discards unparsed do not.
        self.wire_bytes_in = 0

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer."""
        self.buffer += data

    # -- receiving ------------------------------------------------------------

    def next_event(self) -> Event | None:
        """Handle what the buffer holds: return the next event, or ``None``
        when more bytes are needed.

        :raises ProtocolError: When the peer broke the protocol (see ``code``).
        """
        if not self.buffer:  # (nothing can come of an empty buffer)
            return None
        try:
            for _ in range(FRAMES_PER_CALL):
                if self._frame_left:
                    event = self._payload()
                else:
                    event = self._frame()
                if event is not _MORE:
                    return event  # type: ignore[no-any-return]
        except ProtocolError:
            # The connection fails: what it had of a message is garbage.
            self.reset_message()
            raise
        return PAUSE

    def _frame(self) -> t.Any:
        """Parse the next frame header (handling a whole frame when it can)."""
        buffer = self.buffer
        available = len(buffer)
        if available < 2:
            return None
        first, second = buffer[0], buffer[1]
        opcode, length = first & 0x0F, second & 0x7F
        rsv1 = first & 0x40
        if first & 0x30 or (rsv1 and self.deflate is None):
            raise ProtocolError("Reserved bits set without a negotiated extension")
        if not second & 0x80:
            raise ProtocolError("Client frames must be masked")
        fin = first & 0x80
        if opcode >= 0x8:
            if opcode > 0xA:
                raise ProtocolError(f"Reserved opcode {opcode:#x}")
            if not fin:
                raise ProtocolError("Fragmented control frame")
            if length > 125:
                raise ProtocolError("Control frame payload over 125 bytes")
            if rsv1:
                raise ProtocolError("Compressed control frame")
            end = 6 + length
            if available < end:
                return None
            payload = apply_mask(buffer[6:end], buffer[2:6])
            del buffer[:end]
            if self.counting:
                self.wire_bytes_in += end
            return self._control(opcode, payload)
        if opcode > 0x2:
            raise ProtocolError(f"Reserved opcode {opcode:#x}")
        start = 2
        if length == 126:
            if available < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            start = 4
        elif length == 127:
            if available < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            start = 10
            if length >> 63:
                raise ProtocolError("Frame length has the most significant bit set")
        if available < start + 4:
            return None
        # The message this frame belongs to.
        if opcode == _CONTINUATION:
            if self._opcode is None:
                raise ProtocolError("Continuation frame without a message to continue")
            if rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
            self._fragments += 1
            most = max_fragments(self.max_message_size)
            if most is not None and self._fragments > most:
                raise MessageTooBig(f"Message in over {most} fragments")
        elif self._opcode is not None:
            raise ProtocolError("New message started before the previous one ended")
        compressed = bool(rsv1) if self._opcode is None else self._compressed
        limit = self.max_message_size
        if limit is not None:
            if not compressed:
                if self._size + length > limit:
                    raise MessageTooBig(f"Message over {limit} bytes")
            # A compressed message is checked as it is inflated; its size on
            # the wire is bounded too (deflate expands by a few bytes per block at most).
            elif self._wire_size + length > limit + (limit >> 8) + 64:
                raise MessageTooBig(f"Message over {limit} bytes")
        header = start + 4
        end = header + length
        if fin and self._opcode is None and not rsv1 and available >= end:
            # A whole message in one whole frame, the usual case: no assembly.
            payload = self._unmask(header, end, buffer[start:header]) if length else b""
            del buffer[:end]
            if self.counting:
                self.messages_in += 1
                self.payload_bytes_in += length
                self.wire_bytes_in += end
            if opcode == _TEXT:
                try:
                    return payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidData("Invalid UTF-8 in text") from None
            return payload
        if self._opcode is None:
            self._opcode, self._compressed, self._fragments = opcode, compressed, 1
            if opcode == _TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
                self._message = io.StringIO()
            else:
                # BytesIO, not a bytearray: its getvalue() hands its buffer
                # over without a copy, so a big message is in memory once.
                self._message = io.BytesIO()
        self._wire_size += length
        self._mask = bytes(buffer[start:header])
        self._mask_offset = 0
        self._frame_fin = bool(fin)
        del buffer[:header]
        if self.counting:
            self.wire_bytes_in += header
        if not length:
            self._feed(b"", self._frame_fin)
            return self._end_of_frame()
        self._frame_left = length
        return self._payload()

    def _unmask(self, start: int, end: int, mask: bytes | bytearray) -> bytes:
        """The buffer's bytes ``start:end``, unmasked, without copying them first."""
        buffer = self.buffer
        try:
            return apply_mask(memoryview(buffer)[start:end], mask)
        except BaseException:
            # Such as gunicorn's SystemExit on a worker timeout, inside the
            # pure-Python apply_mask: the slice lives on in the traceback and
            # keeps the buffer exported, so it could not be resized. Go on
            # with a copy.
            self.buffer = bytearray(buffer)
            raise

    def _piece(self) -> int:
        """The fewest payload bytes worth taking now. Text is decoded (and
        compressed data inflated) as it comes, to fail as early as it can;
        an uncompressed binary frame is taken whole, unmasked in one pass
        into the one object the message becomes (pieces would cost a second
        copy and, for big messages, fresh memory the kernel must map: that
        measured 0.84x of websockets' 1 MiB echo per CPU-second, against
        1.13x whole; bench/RESULTS.md)."""
        if self._opcode == _BINARY and not self._compressed:
            return self._frame_left
        return 1

    def _payload(self) -> t.Any:
        """Take what has arrived of the current data frame's payload."""
        buffer = self.buffer
        left = self._frame_left
        available = len(buffer)
        if available < self._piece():
            return None
        n = min(available, left)
        data = self._unmask(0, n, _rotate(self._mask, self._mask_offset))
        del buffer[:n]
        if self.counting:
            self.wire_bytes_in += n
        self._frame_left = left - n
        self._mask_offset += n
        self._feed(data, self._frame_fin and not self._frame_left)
        if self._frame_left:
            return None  # the buffer is empty: the rest has not arrived
        return self._end_of_frame()

    def _feed(self, data: bytes, final: bool) -> None:
        """Add a piece of payload to the message (inflated if compressed,
        decoded if text: invalid UTF-8 fails as soon as it arrives)."""
        if self._compressed:
            limit = self.max_message_size
            try:
                data = t.cast(Deflate, self.deflate).inflate(data, None if limit is None else limit - self._size, final)
            except TooBig:
                raise MessageTooBig(f"Message over {limit} bytes") from None
            except zlib.error:
                raise ProtocolError("Invalid compressed data") from None
        self._size += len(data)
        decoder = self._decoder
        if decoder is not None:
            try:
                self._message.write(decoder.decode(data, False))
            except UnicodeDecodeError:
                raise InvalidData("Invalid UTF-8 in text") from None
        else:
            self._message.write(data)

    def _end_of_frame(self) -> t.Any:
        if not self._frame_fin:
            return _MORE
        message = self._message
        if self._decoder is not None:
            try:
                message.write(self._decoder.decode(b"", True))
            except UnicodeDecodeError:
                raise InvalidData("Invalid UTF-8 in text") from None
        result: str | bytes = message.getvalue()
        if self.counting:
            self.messages_in += 1
            self.payload_bytes_in += self._size
        self._opcode, self._message, self._decoder = None, None, None
        self._size = self._fragments = self._wire_size = 0
        return result

    def _control(self, opcode: int, payload: bytes) -> Ping | Pong | Close:
        if opcode == _PING:
            return Ping(payload)
        if opcode == _PONG:
            return Pong(payload)
        if not payload:
            return Close(CloseCode.NO_STATUS_RCVD, "")
        if len(payload) == 1:
            raise ProtocolError("Close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not is_valid_close_code(code):
            raise ProtocolError(f"Invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidData("Invalid UTF-8 in the close reason") from None
        return Close(code, reason)

    def reset_message(self) -> None:
        """Drop a message half received (done by :meth:`next_event` when it
        raises :exc:`ProtocolError`)."""
        self._opcode = self._message = self._decoder = None
        self._frame_left = self._size = self._fragments = self._wire_size = 0
        if self.deflate is not None:
            self.deflate.reset()

    # -- sending --------------------------------------------------------------

    def data_frame(
        self, opcode: int, payload: bytes, compress: bool = True, message: object = None
    ) -> tuple[bytes, bytes]:
        """The header and payload of a final frame carrying a whole message,
        compressed if permessage-deflate was negotiated, ``compress`` is true
        and the payload reaches the threshold. ``message`` is the object
        ``payload`` was made from (see :meth:`Deflate.compress`)."""
        deflate = self.deflate
        if compress and deflate is not None and len(payload) >= deflate.settings.threshold:
            payload = deflate.compress(payload, message)
            return frame_header(opcode, len(payload), True), payload
        return frame_header(opcode, len(payload)), payload


class _More:
    pass


# A frame was handled without an event: go on.
_MORE = _More()
