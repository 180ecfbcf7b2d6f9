"""One WebSocket connection, server side, sans I/O: the rules of the
connection (RFC 6455) over the frame parser of :mod:`flask_sockets.protocol`.

Every socket class of Flask-Sockets is a thin I/O layer around a
:class:`Connection`: it moves bytes between its transport and the
connection, and keeps what belongs to its kind of I/O (timers, locks, send
timeouts, yielding). Everything about the protocol is decided here, once:
answering pings, echoing the peer's close frame (a close frame without a
code is answered with 1000), failing the connection on a protocol error
with the right close code and then waiting for the peer to finish, 1006 for
a peer that vanished, when the close handshake has timed out, which close
codes may be sent, and cutting a close reason to 123 bytes.

States (:class:`State`)::

    CONNECTING --accept()--> OPEN --send_close() / fail() / peer's close frame--> CLOSING or CLOSED
    CLOSING --peer's close frame / receive_eof() / handle_timer() past close_deadline / abort()--> CLOSED

- ``CONNECTING``: the handshake is not answered yet (the I/O layer sends
  the ``101`` itself, then calls :meth:`~Connection.accept`).
- ``OPEN``: messages flow both ways.
- ``CLOSING``: our close frame is queued or sent; we wait for the peer's
  close frame (after :meth:`~Connection.send_close`) or for the end of the
  transport (after :meth:`~Connection.fail`), at most until
  :attr:`~Connection.close_deadline`. Messages arriving meanwhile are
  discarded; pings are no longer answered.
- ``CLOSED``: the close handshake is over, or the transport ended, or the
  connection was aborted. The I/O layer writes what :meth:`~Connection.data_to_send`
  still holds (an echoed close frame) and closes the transport.

How an I/O layer drives it:

- **Reading.** Feed what the transport reads to :meth:`~Connection.receive_data`
  (or append it to :attr:`~flask_sockets.protocol.ServerProtocol.buffer`
  yourself: one call less per read; what must be discarded is dropped at
  the next :meth:`~Connection.next_event`), the end of the stream to
  :meth:`~Connection.receive_eof`, and call
  :meth:`~Connection.next_event` until it returns ``None``. Events are a
  message (``str`` for text, ``bytes`` for binary), :class:`~flask_sockets.protocol.Ping`
  (its pong is queued: write :meth:`~Connection.data_to_send`),
  :class:`~flask_sockets.protocol.Pong`, :class:`~flask_sockets.protocol.Close`
  (the peer's close frame; the state is ``CLOSED`` and the echo, if any, is
  queued) or :data:`~flask_sockets.protocol.PAUSE` (many frames without an
  event: an I/O layer serving many connections lets the others run). ``None``
  means nothing more can be handed over now: write :meth:`~Connection.data_to_send`
  if it holds anything; then, if the state is ``OPEN``, read more; if it is
  ``CLOSING``, read more until the state is ``CLOSED`` or the deadline
  passes; if it is ``CLOSED``, close the transport. A protocol error is not
  raised: the connection fails itself (:meth:`~Connection.fail`) and
  ``next_event`` returns ``None``.
- **Writing.** :meth:`~Connection.send_text`, :meth:`~Connection.send_binary`,
  :meth:`~Connection.send_frame`, :meth:`~Connection.send_ping`,
  :meth:`~Connection.send_pong`, :meth:`~Connection.send_close` and
  :meth:`~Connection.fail` queue frames; :meth:`~Connection.data_to_send`
  returns the queued bytes, in order, as chunks to write one after the other
  (a frame with up to 16 KiB of payload is one chunk, header and payload; a
  bigger one is two, so that its payload is never copied). Compression (when
  negotiated) happens as a frame is queued, so frames must be written in the
  order they were queued.
- **Half-closing.** Once :attr:`~Connection.failed` is true, nothing more will
  be queued: after writing :meth:`~Connection.data_to_send`, shut down the
  writing side of the transport (RFC 6455, 7.1.1: the peer then knows we are
  done) and keep reading; what arrives is discarded until the end of the
  stream.
- **Time.** :meth:`~Connection.next_deadline` (in the connection's clock,
  :func:`time.monotonic` by default) says when to call
  :meth:`~Connection.handle_timer` next; an I/O layer only sleeps until
  then and calls it, then writes :meth:`~Connection.data_to_send` (what the
  timer queued: a ping, or a close frame). While ``CLOSING`` it is
  :attr:`~Connection.close_deadline`, when the close handshake times out:
  past it, the connection is ``CLOSED`` and the I/O layer cuts the
  transport. While ``OPEN`` it is the earliest of the keepalive's next step
  and the session's end.
- **Keepalive.** While ``OPEN`` with :attr:`~Connection.ping_interval` set,
  the connection decides when to ping and when a missed pong is fatal: the
  I/O layer stores the time in :attr:`~Connection.last_heard` whenever it
  hears from the peer (bytes read, or a send that had to wait making
  progress); :meth:`~Connection.handle_timer` queues a ping once the peer
  has been silent for ``ping_interval`` seconds, and fails the connection
  (1011, :data:`KEEPALIVE_REASON`) if nothing was heard within
  ``ping_timeout`` seconds of it. The I/O layer then writes
  :meth:`~Connection.data_to_send` (the ping, or the close frame) as it
  would after a send; a ping it cannot write without waiting may stay
  queued for the next writer (the peer still has ``ping_timeout`` to be
  heard from).
- **Session expiry.** While ``OPEN``, :attr:`~Connection.expires_at`
  (``None`` unless the app gave the session an end) is when the connection
  must be closed with 4401 (:data:`EXPIRED_CODE`, :data:`EXPIRED_REASON`):
  :meth:`~Connection.next_deadline` includes it, and
  :meth:`~Connection.handle_timer` past it starts the close handshake (the
  close frame is queued as after :meth:`~Connection.send_close`). The app
  may move it at any time before; the I/O layer then re-arms its timer at
  :meth:`~Connection.next_deadline`.
- **Flood control.** After :meth:`~Connection.limit_flood`, every message,
  ping and pong is checked against the peer's rates as it is handed over
  (:mod:`flask_sockets.ratelimit`): over one, the connection fails with 1008
  and a reason naming the limit (``next_event`` returns ``None``, as for a
  protocol error), or, in drop mode, the event is skipped and counted in
  :attr:`~Connection.dropped`. :meth:`~Connection.count_error` spends the
  error budget. Nothing changes for the I/O layer.
- **Counters.** Plain integers, kept once :attr:`~flask_sockets.protocol.ServerProtocol.counting`
  is true (:mod:`flask_sockets.metrics` sets it for each socket it counts;
  off by default, they cost one test per frame instead of three integer
  additions per message and direction), for anyone to read:
  :attr:`~flask_sockets.protocol.ServerProtocol.messages_in`,
  :attr:`~flask_sockets.protocol.ServerProtocol.payload_bytes_in` and
  :attr:`~flask_sockets.protocol.ServerProtocol.wire_bytes_in` count what
  the parser took from the peer: data messages parsed whole (also those
  discarded while ``CLOSING`` or dropped by flood control), their payload
  after decompression, and every byte of every frame parsed, headers,
  masking keys and control frames included (not the handshake, nor bytes
  discarded unparsed after a failure). :attr:`messages_out`,
  :attr:`payload_bytes_out` and :attr:`wire_bytes_out` count the frames
  queued to send (or handed over by :meth:`frame_now`, unless
  :meth:`not_sent` takes one back): data messages, their payload before
  compression, and every byte of every frame, control frames (pongs, pings,
  close frames) included. A frame is counted when it is queued: one the
  transport could not finish writing (the peer vanished) still counts.
- **Threads.** A connection is not thread-safe: an I/O layer serialises the
  calls into it (greenlets need nothing: they only switch on I/O; threads
  hold one lock around each call into the connection, not around blocking
  I/O, and write what ``data_to_send()`` returns in the order it was
  returned).

After the connection ends, :attr:`~Connection.close_code` and
:attr:`~Connection.close_reason` say how: the peer's close frame (1005 and
``''`` if it had no code), or, when we failed the connection, our code and
reason (1002, 1007, 1008, 1009, 1011), or 1006 and ``''`` when it ended with
neither (the peer vanished, the close handshake timed out, an abort).
"""

from __future__ import annotations

import enum
import os
import time
import typing as t

from .exceptions import ConnectionClosed
from .protocol import _MORE
from .protocol import FRAMES_PER_CALL
from .protocol import PAUSE
from .protocol import Close
from .protocol import CloseCode
from .protocol import Opcode
from .protocol import Ping
from .protocol import Pong
from .protocol import ProtocolError
from .protocol import ServerProtocol
from .protocol import close_payload
from .protocol import frame_header
from .protocol import is_valid_close_code
from .ratelimit import Limiter

if t.TYPE_CHECKING:  # pragma: no cover
    from .compression import Deflate
    from .protocol import Event
    from .ratelimit import FloodControl

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_PING_TIMEOUT",
    "EXPIRED_CODE",
    "EXPIRED_REASON",
    "KEEPALIVE_REASON",
    "SINGLE_WRITE_LIMIT",
    "Connection",
    "State",
]

#: Seconds the close handshake may take, unless told otherwise
#: (``SOCKETS_CLOSE_TIMEOUT``'s default).
DEFAULT_CLOSE_TIMEOUT = 5.0
#: Seconds a pinged peer has to answer, unless told otherwise.
DEFAULT_PING_TIMEOUT = 20.0
#: A frame whose payload is up to this size is queued as one chunk (header
#: and payload), to go out in one write; a bigger one as two, so that its
#: payload is not copied.
SINGLE_WRITE_LIMIT = 16 * 1024
#: The close reason when a peer did not answer a keepalive ping in time.
KEEPALIVE_REASON = "keepalive ping timeout"
#: The close code when a connection's session expired (:attr:`Connection.expires_at`):
#: 4401, "unauthorized": a client should not reconnect until it has new
#: credentials (the 4000-4999 range is the application's; 4401 mirrors HTTP 401).
EXPIRED_CODE = 4401
#: The close reason that goes with :data:`EXPIRED_CODE`.
EXPIRED_REASON = "session expired"

_TEXT, _BINARY, _PING, _PONG, _CLOSE = (
    int(opcode) for opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG, Opcode.CLOSE)
)
_NO_STATUS = int(CloseCode.NO_STATUS_RCVD)
_POLICY_VIOLATION = int(CloseCode.POLICY_VIOLATION)
_ABNORMAL = int(CloseCode.ABNORMAL_CLOSURE)


class State(enum.Enum):
    """The state of a :class:`Connection` (see the module docstring)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED


class Connection(ServerProtocol):
    """One server-side WebSocket connection, sans I/O (see the module docstring).

    It is its own frame parser and builder (a :class:`~flask_sockets.protocol.ServerProtocol`:
    one object, no layer between them on the per-message path); use only
    the methods documented here.

    :param max_message_size: Largest incoming message in bytes (``None``: no
        limit). A frame announcing more fails the connection with 1009 from
        its header alone.
    :param deflate: The permessage-deflate codec, if negotiated.
    :param close_timeout: Seconds the close handshake may take.
    :param clock: The clock of :attr:`close_deadline`, :attr:`last_heard`
        and :meth:`handle_timer`.
    :param ping_interval: Seconds of peer silence before a keepalive ping
        (``None``: never ping).
    :param ping_timeout: Seconds a pinged peer has to be heard from.
    """

    __slots__ = (
        "_clock",
        "_limiter",
        "_out",
        "close_code",
        "close_deadline",
        "close_reason",
        "close_timeout",
        "expires_at",
        "failed",
        "last_heard",
        "local_close_code",
        "messages_out",
        "payload_bytes_out",
        "ping_interval",
        "ping_rtt",
        "ping_sent_at",
        "ping_timeout",
        "state",
        "wire_bytes_out",
    )

    def __init__(
        self,
        max_message_size: int | None = None,
        deflate: Deflate | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        clock: t.Callable[[], float] = time.monotonic,
        ping_interval: float | None = None,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
    ) -> None:
        super().__init__(max_message_size, deflate)
        #: The connection's :class:`State`.
        self.state = CONNECTING
        #: Seconds the close handshake may take (from the moment our close
        #: frame is queued, or the peer's arrives).
        self.close_timeout = close_timeout
        #: When the close handshake times out (in the connection's clock),
        #: once ``CLOSING``; otherwise ``None``.
        self.close_deadline: float | None = None
        #: ``True`` once the connection failed: nothing more will be queued,
        #: and what arrives is discarded until the end of the stream (see the
        #: module docstring, "Half-closing").
        self.failed = False
        #: How the connection ended (see the module docstring): ``None``
        #: until then.
        self.close_code: int | None = None
        #: The reason that goes with :attr:`close_code`.
        self.close_reason: str | None = None
        #: The code of the close frame with which this side started the
        #: close handshake (:meth:`send_close`, :meth:`fail`, the session's
        #: end), or ``None``: the peer started it, or the connection ended
        #: without one. (:attr:`close_code` is the peer's answer, if it came.)
        self.local_close_code: int | None = None
        #: Seconds of peer silence before a keepalive ping, or ``None``.
        self.ping_interval = ping_interval
        #: Seconds a pinged peer has to be heard from before the connection fails (1011).
        self.ping_timeout = ping_timeout
        #: When the peer was last heard from (the I/O layer sets it; see
        #: the module docstring, "Keepalive").
        self.last_heard = clock()
        #: When the outstanding keepalive ping was queued, or ``None``.
        self.ping_sent_at: float | None = None
        #: Seconds from the last keepalive ping to the pong that answered
        #: it, or ``None`` (set when the pong arrives; a reader such as
        #: :mod:`flask_sockets.metrics` takes it and sets it back to ``None``).
        self.ping_rtt: float | None = None
        #: When the session of an open connection ends (in the connection's
        #: clock), or ``None``: from then on :meth:`handle_timer` closes with
        #: :data:`EXPIRED_CODE`. The app may move it (later after a token
        #: refresh, or ``None``) at any time before; :meth:`next_deadline`
        #: includes it.
        self.expires_at: float | None = None
        self._clock = clock
        # What is queued to send, or None (nothing: no list held by an idle connection).
        self._out: list[bytes] | None = None
        # Flood control (limit_flood()), or None: no limits.
        self._limiter: Limiter | None = None
        #: Data messages (text and binary) queued to send (see the module
        #: docstring, "Counters").
        self.messages_out = 0
        #: Their payload bytes, before compression (UTF-8 for text).
        self.payload_bytes_out = 0
        #: Bytes of the frames queued to send, as they go over the wire:
        #: headers, payloads (compressed, when they are) and control frames.
        self.wire_bytes_out = 0

    # Also: ``max_message_size`` (largest incoming message in bytes, or
    # ``None``) and ``deflate`` (the permessage-deflate codec, set before
    # accept()), attributes of the frame parser.

    def accept(self) -> None:
        """The handshake was answered (``101`` sent): the connection is open.
        Does nothing unless ``CONNECTING``."""
        if self.state is CONNECTING:
            self.state = OPEN

    # -- receiving ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer (discarded once the connection has
        failed or is closed)."""
        if self.failed or self.state is CLOSED:
            return
        self.buffer += data

    def receive_eof(self) -> None:
        """The peer ended the stream (or the transport broke): the
        connection is ``CLOSED``, with close code 1006 unless it already
        had one."""
        self._closed()

    def next_event(self) -> Event | None:
        """The next event (see the module docstring, "Reading"), or ``None``
        when nothing more can be handed over until more bytes arrive, or at
        all once the connection is no longer open."""
        if self.state is not OPEN:
            return self._next_event_closing() if self.state is CLOSING else None
        if not self.buffer:  # (nothing can come of an empty buffer)
            return None
        # ServerProtocol.next_event, inlined (the per-message path).
        limiter = self._limiter
        try:
            for _ in range(FRAMES_PER_CALL):
                event = self._payload() if self._frame_left else self._frame()
                if event is not _MORE:
                    if limiter is None or event is None or event.__class__ is Close:
                        break
                    reason = limiter.check(event)
                    if reason is None:
                        break
                    # Over a limit: None (the connection failed) or _MORE (dropped: go on).
                    event = self._over_limit(limiter, reason)
                    if event is not _MORE:
                        break
            else:
                return PAUSE
        except ProtocolError as e:
            self.fail(e.code, str(e))
            return None
        cls = event.__class__
        if cls is str or cls is bytes or event is None:
            return event  # type: ignore[no-any-return]
        if cls is Ping:
            self.send_pong(t.cast(Ping, event).payload)
        elif cls is Close:
            close = t.cast(Close, event)
            self.close_code, self.close_reason = int(close.code), close.reason
            # Echo the peer's code (RFC 6455, 5.5.1); the server closes the transport next.
            self._queue_close(CloseCode.NORMAL_CLOSURE if close.code == _NO_STATUS else close.code)
            self.state = CLOSED
            self.close_deadline = None
        elif cls is Pong and self.ping_sent_at is not None:
            self.ping_rtt = self._clock() - self.ping_sent_at
        return event  # type: ignore[no-any-return]

    # -- flood control ----------------------------------------------------------

    def limit_flood(self, settings: FloodControl | None) -> None:
        """Hold the peer to the rates of ``settings`` (``None``: no limits,
        the default) from now on, with fresh buckets: a message or control
        frame over a rate fails the connection with 1008 and the limit's
        reason (:mod:`flask_sockets.ratelimit`), or, with
        ``action='drop'``, is discarded (a ping is not answered) and counted
        in :attr:`dropped`. Set :attr:`max_message_size` first: the byte
        bucket holds at least one message of that size."""
        self._limiter = None if settings is None else Limiter(settings, self.max_message_size, self._clock)

    @property
    def dropped(self) -> int:
        """Messages and control frames flood control dropped (``action='drop'``)."""
        limiter = self._limiter
        return 0 if limiter is None else limiter.dropped

    def count_error(self) -> bool:
        """Count one error against the error budget (the app rejected what
        the peer sent): ``False`` once over it (the caller closes the
        connection with 1008 and :data:`~flask_sockets.ratelimit.ERROR_LIMIT_REASON`),
        ``True`` while within it or without flood control."""
        limiter = self._limiter
        return limiter is None or limiter.error() is None

    def _over_limit(self, limiter: Limiter, reason: str) -> t.Any:
        """What arrived is over a flood control limit: drop it (``_MORE``:
        go on), or fail the connection (``None``)."""
        if limiter.drop:
            limiter.dropped += 1
            return _MORE
        self.fail(_POLICY_VIOLATION, reason)
        return None

    def _next_event_closing(self) -> Event | None:
        """While ``CLOSING``: messages and pings are dropped, the peer's
        close frame ends the connection."""
        if self.failed:
            # Everything is discarded until the end of the stream (also what
            # an I/O layer appended to the buffer itself).
            self.buffer.clear()
            return None
        while True:
            try:
                event = ServerProtocol.next_event(self)
            except ProtocolError:
                # Frames stopped making sense: discard the rest.
                self._discard()
                return None
            cls = event.__class__
            if event is None or event is PAUSE:
                return event
            if cls is Close:
                close = t.cast(Close, event)
                self.close_code, self.close_reason = int(close.code), close.reason
                self.state = CLOSED
                self.close_deadline = None
                return event

    # -- sending --------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes, compress: bool = True, message: object = None) -> None:
        """Queue one final frame: a text or binary message (compressed if
        permessage-deflate was negotiated, ``compress`` is true and the
        payload reaches the threshold; ``message`` is the object ``payload``
        was made from, see :meth:`~flask_sockets.compression.Deflate.compress`),
        a ping or a pong.

        :raises ~flask_sockets.ConnectionClosed: Unless the connection is ``OPEN``.
        :raises ValueError: For another opcode (close with :meth:`send_close`),
            or a ping or pong over 125 bytes.
        """
        if self.state is not OPEN:
            raise ConnectionClosed("Connection is already closed" if self.state is not CONNECTING else "Not accepted")
        if opcode == _TEXT or opcode == _BINARY:
            # ServerProtocol.data_frame, inlined (the per-message path).
            size = length = len(payload)
            deflate = self.deflate
            if compress and deflate is not None and length >= deflate.settings.threshold:
                payload = deflate.compress(payload, message)
                length = len(payload)
                header = frame_header(opcode, length, True)
            else:
                header = frame_header(opcode, length)
            if length <= SINGLE_WRITE_LIMIT:
                out = self._out  # (self._queue, inlined: the per-message path)
                if out is None:
                    self._out = [header + payload]
                else:
                    out.append(header + payload)
            else:
                self._queue(header)
                self._queue(payload)
            if self.counting:
                self.messages_out += 1
                self.payload_bytes_out += size
                self.wire_bytes_out += len(header) + length
        elif opcode == _PING or opcode == _PONG:
            self._send_control(opcode, payload)
        else:
            raise ValueError(f"Cannot send a frame with opcode {opcode:#x} this way (close with send_close())")

    def send_text(self, payload: bytes, compress: bool = True, message: object = None) -> None:
        """Queue a text message (``payload`` is its UTF-8); see :meth:`send_frame`."""
        self.send_frame(_TEXT, payload, compress, message)

    def send_binary(self, payload: bytes, compress: bool = True, message: object = None) -> None:
        """Queue a binary message; see :meth:`send_frame`."""
        self.send_frame(_BINARY, payload, compress, message)

    def frame_now(self, payload: bytes, text: bool, message: object = None) -> bytes | None:
        """The frame of a message for a sender that writes it at once,
        without waiting (``send_nowait``), or ``None`` if it must take the
        usual way: frames are queued (a pong goes first), compressing would
        change the compressor's context (only for a frame sure to go out),
        or the message is over one write (nothing was sent, and dropping its
        frame changed nothing). The caller writes the frame whole, or not at
        all (then it calls :meth:`not_sent`), or cuts the connection."""
        if self._out is not None:
            return None
        deflate = self.deflate
        if deflate is not None and deflate.shared is None and len(payload) >= deflate.settings.threshold:
            return None
        self.send_frame(_TEXT if text else _BINARY, payload, True, message)
        chunks = self.data_to_send()
        if len(chunks) == 1:
            return chunks[0]
        self.not_sent(len(chunks[0]) + len(chunks[1]), len(payload))
        return None

    def not_sent(self, frame_size: int, payload_size: int) -> None:
        """A frame of ``frame_size`` bytes that :meth:`frame_now` returned
        for a payload of ``payload_size`` bytes was not written at all (the
        transport would have had to wait): take it back out of the counters
        (see the module docstring, "Counters")."""
        if self.counting:
            self.messages_out -= 1
            self.payload_bytes_out -= payload_size
            self.wire_bytes_out -= frame_size

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a ping (at most 125 bytes of payload).

        :raises ~flask_sockets.ConnectionClosed: Unless the connection is ``OPEN``.
        :raises ValueError: If ``payload`` is over 125 bytes.
        """
        self._send_control(_PING, payload)

    def send_pong(self, payload: bytes = b"") -> None:
        """Queue a pong (at most 125 bytes of payload); pings are answered
        without it.

        :raises ~flask_sockets.ConnectionClosed: Unless the connection is ``OPEN``.
        :raises ValueError: If ``payload`` is over 125 bytes.
        """
        self._send_control(_PONG, payload)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        if self.state is not OPEN:
            raise ConnectionClosed("Connection is already closed")
        if len(payload) > 125:
            raise ValueError("A control frame carries at most 125 bytes")
        frame = frame_header(opcode, len(payload)) + payload
        self._queue(frame)
        if self.counting:
            self.wire_bytes_out += len(frame)

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: bytes | str = b"") -> None:
        """Start the close handshake: queue a close frame with ``code`` and
        ``reason`` (cut to 123 bytes, never inside a character; 1005 sends
        a close frame without a code), then wait for the peer's (``CLOSING``,
        until :attr:`close_deadline`).

        :raises ~flask_sockets.ConnectionClosed: Unless the connection is ``OPEN``.
        :raises ValueError: If an endpoint may not send ``code`` (RFC 6455,
            7.4: 1000-1003, 1007-1014 and 3000-4999; or 1005 for none).
        """
        if code != _NO_STATUS and not is_valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send (RFC 6455, 7.4)")
        if self.state is not OPEN:
            raise ConnectionClosed("Connection is already closed")
        self._queue_close(code, reason)
        self.local_close_code = int(code)
        self._closing()

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455, 7.1.7) with ``code`` and
        ``reason``, which become :attr:`close_code` and :attr:`close_reason`:
        queue a close frame, then send nothing more (:attr:`failed`), and
        discard what arrives until the end of the stream or
        :attr:`close_deadline`. Already closing: only stop reading frames.
        Closed: nothing."""
        if self.state is OPEN:
            self.close_code = self.local_close_code = int(code)
            self.close_reason = reason
            self._queue_close(code, reason)
            self._closing()
        elif self.state is CONNECTING:
            self.abort()
            return
        elif self.state is CLOSED:
            return
        self._discard()

    def fail_keepalive(self) -> None:
        """The peer did not answer a keepalive ping in time: fail the
        connection with 1011 and :data:`KEEPALIVE_REASON`."""
        self.fail(CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON)

    def _queue_close(self, code: int, reason: bytes | str = b"") -> None:
        payload = b"" if code == _NO_STATUS else close_payload(code, reason)
        frame = frame_header(_CLOSE, len(payload)) + payload
        self._queue(frame)
        if self.counting:
            self.wire_bytes_out += len(frame)

    def _closing(self) -> None:
        self.state = CLOSING
        self.close_deadline = self._clock() + self.close_timeout

    def _discard(self) -> None:
        self.failed = True
        self.buffer.clear()
        self.reset_message()

    def _queue(self, chunk: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [chunk]
        else:
            out.append(chunk)

    @property
    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return anything."""
        return self._out is not None

    def data_to_send(self) -> list[bytes]:
        """The bytes queued since the last call, as chunks to write in this
        order (see the module docstring, "Writing")."""
        out = self._out
        if out is None:
            return []
        self._out = None
        return out

    # -- ending -----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has something to decide next (in the
        connection's clock), or ``None``: the close deadline while
        ``CLOSING``; while ``OPEN``, the earliest of :attr:`expires_at` (the
        session's end) and, with keepalive, when the peer will have been
        silent for ``ping_interval`` or, with a ping out, when its answer is
        due. The peer being heard from meanwhile only makes it later: a
        timer that fires early just asks again. The app moving
        :attr:`expires_at` changes it: the I/O layer re-arms its timer."""
        state = self.state
        if state is CLOSING:
            return self.close_deadline
        if state is not OPEN:
            return None
        deadline = self.expires_at
        interval = self.ping_interval
        if not interval:
            return deadline
        sent_at = self.ping_sent_at
        if sent_at is not None and self.last_heard < sent_at:
            keepalive = sent_at + self.ping_timeout
        else:
            keepalive = self.last_heard + interval
        return keepalive if deadline is None or keepalive < deadline else deadline

    def handle_timer(self, now: float | None = None) -> None:
        """Tell the connection the time (by default, its clock's) and let it
        act on it:

        - ``CLOSING`` past :attr:`close_deadline`: the close handshake has
          timed out; the connection is ``CLOSED`` (1006 unless it already
          had a code) and the I/O layer cuts the transport.
        - ``OPEN`` past :attr:`expires_at`: the session has expired; the
          close handshake starts with :data:`EXPIRED_CODE` and
          :data:`EXPIRED_REASON` (write :meth:`data_to_send`, as after
          :meth:`send_close`).
        - ``OPEN``, a keepalive ping out and nothing heard within
          ``ping_timeout`` of it: the connection fails
          (:meth:`fail_keepalive`: 1011; write :meth:`data_to_send`, then
          half-close as after any failure).
        - ``OPEN`` and the peer silent for ``ping_interval``: a ping is
          queued (write :meth:`data_to_send`).
        """
        if now is None:
            now = self._clock()
        state = self.state
        if state is CLOSING:
            deadline = self.close_deadline
            if deadline is not None and now >= deadline:
                self._closed()
            return
        if state is not OPEN:
            return
        expires_at = self.expires_at
        if expires_at is not None and now >= expires_at:
            self.ping_sent_at = None
            self.send_close(EXPIRED_CODE, EXPIRED_REASON)
            return
        interval = self.ping_interval
        if not interval:
            return
        sent_at = self.ping_sent_at
        if sent_at is not None:
            if self.last_heard < sent_at:
                if now >= sent_at + self.ping_timeout:
                    self.ping_sent_at = None
                    self.fail_keepalive()
                return
            self.ping_sent_at = None  # answered (or the peer sent or read something)
        if now >= self.last_heard + interval:
            self.ping_sent_at = now
            self._send_control(_PING, os.urandom(4))

    def abort(self) -> None:
        """Give the connection up without a close frame (the transport broke,
        the handshake could not be answered): ``CLOSED``, 1006 unless it
        already had a code, and nothing left to send."""
        self._out = None
        self._closed()

    def _closed(self) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = _ABNORMAL, ""
        self.state = CLOSED
        self.close_deadline = None
        if self.buffer:
            self.buffer.clear()

    def __repr__(self) -> str:
        return f"<Connection {self.state.name} close_code={self.close_code}>"
