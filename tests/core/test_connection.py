"""The sans-I/O connection (:mod:`flask_sockets.connection`), in the
wsproto/websockets style: client frames are serialised by ``websockets`` (an
independent implementation) or by hand for what no library sends, fed as
bytes; the events, the state and the bytes to send are checked, the frames
we send parsed back by ``websockets``. No sockets, no clock: time is a
number the test moves.
"""

from __future__ import annotations

import struct
import typing as t

import pytest
from websockets.frames import Close as WsClose
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

from flask_sockets import ConnectionClosed
from flask_sockets.compression import DEFAULT_COMPRESSION
from flask_sockets.compression import Compression
from flask_sockets.compression import negotiate
from flask_sockets.connection import EXPIRED_CODE
from flask_sockets.connection import KEEPALIVE_REASON
from flask_sockets.connection import SINGLE_WRITE_LIMIT
from flask_sockets.connection import Connection
from flask_sockets.connection import State
from flask_sockets.protocol import PAUSE
from flask_sockets.protocol import Close
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from flask_sockets.protocol import Ping
from flask_sockets.protocol import Pong
from tests.core.test_compression import client_for
from tests.core.test_compression import client_frames


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def client(opcode: WsOpcode, data: bytes = b"", fin: bool = True) -> bytes:
    """A masked client frame, serialised by websockets."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def client_close(code: int | None = None, reason: str = "") -> bytes:
    payload = b"" if code is None else WsClose(code, reason).serialize()
    return client(WsOpcode.CLOSE, payload)


def sent(conn: Connection) -> list[tuple[int, bytes]]:
    """What the connection queued, parsed by websockets as a client would:
    ``(opcode, payload)`` per frame (unmasked, final)."""
    data = b"".join(conn.data_to_send())
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None, extensions=None)
        try:
            next(parser)
        except StopIteration as done:
            frame = t.cast(Frame, done.value)
            assert frame.fin
            frames.append((int(frame.opcode), frame.data))
        else:
            raise AssertionError(f"incomplete frame in {data!r}")
    return frames


def close_of(payload: bytes) -> tuple[int, str]:
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode()


def events(conn: Connection) -> list[object]:
    out = []
    while (event := conn.next_event()) is not None:
        if event is not PAUSE:
            out.append(event)
    return out


def opened(**kwargs: t.Any) -> Connection:
    conn = Connection(**kwargs)
    conn.accept()
    return conn


# -- opening ------------------------------------------------------------------------------


def test_connecting_until_accepted() -> None:
    conn = Connection()
    assert conn.state is State.CONNECTING
    conn.receive_data(client(WsOpcode.TEXT, b"early"))
    assert conn.next_event() is None, "nothing is parsed before the 101"
    with pytest.raises(ConnectionClosed):
        conn.send_text(b"too soon")
    conn.accept()
    assert conn.state is State.OPEN
    assert conn.next_event() == "early"
    conn.accept()  # a second time: nothing
    assert conn.state is State.OPEN


# -- messages -----------------------------------------------------------------------------


def test_messages_in_and_out() -> None:
    conn = opened()
    conn.receive_data(client(WsOpcode.TEXT, "héllo".encode()) + client(WsOpcode.BINARY, b"\x00\xff"))
    assert events(conn) == ["héllo", b"\x00\xff"]
    conn.send_text("héllo".encode())
    conn.send_binary(b"\x00\xff")
    assert sent(conn) == [(Opcode.TEXT, "héllo".encode()), (Opcode.BINARY, b"\x00\xff")]
    assert conn.data_to_send() == []


def test_fragmented_message_and_a_ping_between_its_fragments() -> None:
    conn = opened()
    conn.receive_data(client(WsOpcode.TEXT, b"hel", fin=False) + client(WsOpcode.PING, b"?"))
    conn.receive_data(client(WsOpcode.CONT, b"lo"))
    got = events(conn)
    assert [type(e) for e in got] == [Ping, str] and got[1] == "hello"
    assert sent(conn) == [(Opcode.PONG, b"?")], "the ping was answered"


def test_pong_from_the_peer_is_an_event_and_needs_no_answer() -> None:
    conn = opened()
    conn.receive_data(client(WsOpcode.PONG, b"x"))
    (event,) = events(conn)
    assert isinstance(event, Pong) and event.payload == b"x"
    assert conn.data_to_send() == []


def test_a_small_frame_is_one_chunk_a_big_one_two_without_copying_the_payload() -> None:
    conn = opened()
    conn.send_binary(b"x" * SINGLE_WRITE_LIMIT)
    assert len(conn.data_to_send()) == 1
    big = b"y" * (SINGLE_WRITE_LIMIT + 1)
    conn.send_binary(big)
    header, payload = conn.data_to_send()
    assert payload is big
    assert header == b"\x82\x7e" + struct.pack("!H", len(big))


def test_send_frame_takes_data_ping_and_pong_only() -> None:
    conn = opened()
    for opcode in (Opcode.CLOSE, Opcode.CONTINUATION, 0x3):
        with pytest.raises(ValueError, match="send_close"):
            conn.send_frame(opcode, b"")
    conn.send_frame(Opcode.PONG, b"unsolicited")
    conn.send_frame(Opcode.TEXT, b"t")
    assert sent(conn) == [(Opcode.PONG, b"unsolicited"), (Opcode.TEXT, b"t")]
    with pytest.raises(ValueError, match="125"):
        conn.send_ping(b"p" * 126)
    conn.send_ping(b"p" * 125)
    assert sent(conn) == [(Opcode.PING, b"p" * 125)]


def test_compressed_when_negotiated() -> None:
    agreed = negotiate("permessage-deflate; client_max_window_bits", DEFAULT_COMPRESSION)
    assert agreed is not None
    conn = opened(deflate=agreed[1])
    message = b"compress me " * 100
    conn.send_text(message)
    (chunk,) = conn.data_to_send()
    assert chunk[0] & 0x40, "RSV1: compressed"
    assert len(chunk) < len(message)
    conn.send_text(message, compress=False)
    (chunk,) = conn.data_to_send()
    assert not chunk[0] & 0x40


def test_frame_now() -> None:
    """A message framed for an immediate write (send_nowait): one frame, nothing queued;
    None when a queued frame must go first or the message is over one write."""
    conn = opened()
    frame = conn.frame_now(b"hi", True, "hi")
    assert frame == b"\x81\x02hi" and not conn.has_data_to_send
    assert conn.frame_now(b"\x00", False) == b"\x82\x01\x00"
    conn.receive_data(client(WsOpcode.PING, b"p"))
    events(conn)
    assert conn.has_data_to_send, "the ping's answer is queued"
    assert conn.frame_now(b"hi", True) is None, "the pong goes first"
    assert sent(conn) == [(Opcode.PONG, b"p")]
    assert conn.frame_now(b"x" * (SINGLE_WRITE_LIMIT + 1), False) is None
    assert not conn.has_data_to_send


def test_frame_now_compresses_only_without_context() -> None:
    """The shared compressor (no context, the default) compresses an immediate frame;
    a compressor with context never does (its state would change for a frame not sent)."""
    offer = "permessage-deflate; client_max_window_bits"
    agreed = negotiate(offer, DEFAULT_COMPRESSION)
    assert agreed is not None and agreed[1].shared is not None
    frame = opened(deflate=agreed[1]).frame_now(b"compress me " * 100, True)
    assert frame is not None and frame[0] & 0x40, "compressed (RSV1)"
    agreed = negotiate(offer, Compression(server_no_context_takeover=False))
    assert agreed is not None and agreed[1].shared is None
    conn = opened(deflate=agreed[1])
    assert conn.frame_now(b"compress me " * 100, True) is None, "compressing changes the context"
    assert conn.frame_now(b"tiny", True) == b"\x81\x04tiny", "under the threshold: sent as is"


# -- the close handshake ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "echo"),
    [
        (CloseCode.GOING_AWAY, "bye", CloseCode.GOING_AWAY),
        (4000, "app", 4000),
        (None, "", CloseCode.NORMAL_CLOSURE),  # 1005 is answered with 1000
    ],
)
def test_client_closes_first(code: int | None, reason: str, echo: int) -> None:
    """The peer's close frame is an event; its code is echoed (without the
    reason), the connection is closed and the server closes the transport."""
    conn = opened()
    conn.receive_data(client_close(code, reason) + client(WsOpcode.TEXT, b"after the close"))
    (event,) = events(conn)
    assert isinstance(event, Close)
    assert conn.state is State.CLOSED
    expected_code = CloseCode.NO_STATUS_RCVD if code is None else code
    assert (conn.close_code, conn.close_reason) == (expected_code, reason)
    assert type(conn.close_code) is int
    ((opcode, payload),) = sent(conn)
    assert opcode == Opcode.CLOSE and close_of(payload) == (echo, "")
    with pytest.raises(ConnectionClosed):
        conn.send_text(b"no more")
    conn.receive_data(client(WsOpcode.TEXT, b"still talking"))
    assert conn.next_event() is None


def test_server_closes_first_and_the_client_answers() -> None:
    clock = Clock()
    conn = opened(close_timeout=3.0, clock=clock)
    conn.send_close(CloseCode.NORMAL_CLOSURE, "done")
    assert conn.state is State.CLOSING
    assert conn.close_deadline == clock.now + 3.0
    ((opcode, payload),) = sent(conn)
    assert opcode == Opcode.CLOSE and close_of(payload) == (1000, "done")
    with pytest.raises(ConnectionClosed):
        conn.send_text(b"too late")
    # What the client sent before it saw our close frame is dropped, pings are not answered.
    conn.receive_data(client(WsOpcode.TEXT, b"in flight") + client(WsOpcode.PING, b"?"))
    assert events(conn) == []
    assert conn.data_to_send() == []
    conn.receive_data(client_close(CloseCode.NORMAL_CLOSURE, "ok"))
    (event,) = events(conn)
    assert isinstance(event, Close)
    assert conn.state is State.CLOSED and conn.close_deadline is None
    assert (conn.close_code, conn.close_reason) == (1000, "ok")
    assert conn.data_to_send() == [], "no second close frame"


def test_both_close_at_once() -> None:
    """Our close frame and the client's cross: each side's close frame
    answers the other's; nothing more is sent."""
    conn = opened()
    conn.send_close(CloseCode.GOING_AWAY, "shutting down")
    conn.receive_data(client_close(4001, "leaving"))
    ((opcode, payload),) = sent(conn)
    assert close_of(payload) == (CloseCode.GOING_AWAY, "shutting down")
    (event,) = events(conn)
    assert isinstance(event, Close)
    assert conn.state is State.CLOSED
    assert (conn.close_code, conn.close_reason) == (4001, "leaving")
    assert conn.data_to_send() == []


def test_client_vanishes_while_open() -> None:
    conn = opened()
    conn.receive_data(client(WsOpcode.TEXT, b"last"))
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert (conn.close_code, conn.close_reason) == (CloseCode.ABNORMAL_CLOSURE, "")
    assert conn.next_event() is None, "what was buffered is not handed over after the end"
    assert conn.data_to_send() == []


def test_client_vanishes_during_the_close_handshake() -> None:
    conn = opened()
    conn.send_close()
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_code == CloseCode.ABNORMAL_CLOSURE


def test_close_handshake_times_out() -> None:
    clock = Clock()
    conn = opened(close_timeout=2.0, clock=clock)
    conn.send_close()
    clock.now += 1.9
    conn.handle_timer()
    assert conn.state is State.CLOSING, "not yet"
    conn.handle_timer(clock.now + 0.1)
    assert conn.state is State.CLOSED
    assert conn.close_code == CloseCode.ABNORMAL_CLOSURE
    conn.handle_timer()  # again: nothing
    assert conn.state is State.CLOSED


def test_the_timer_does_nothing_while_open() -> None:
    clock = Clock()
    conn = opened(close_timeout=1.0, clock=clock)
    assert conn.close_deadline is None
    conn.handle_timer(clock.now + 1000)
    assert conn.state is State.OPEN


def test_session_expiry_closes_4401_at_its_end_and_can_be_moved() -> None:
    """expires_at: next_deadline() names it; before it nothing happens;
    moved later, the old end does nothing; past the new one handle_timer
    starts the close handshake with 4401 "session expired", which then
    times out like any close."""
    clock = Clock()
    conn = opened(close_timeout=2.0, clock=clock)
    assert conn.next_deadline() is None
    conn.expires_at = clock.now + 10
    assert conn.next_deadline() == clock.now + 10
    clock.now += 9.9
    conn.handle_timer()
    assert conn.state is State.OPEN and sent(conn) == []
    conn.expires_at = clock.now + 5  # extended before its end
    assert conn.next_deadline() == clock.now + 5
    clock.now += 1
    conn.handle_timer()
    assert conn.state is State.OPEN and sent(conn) == []
    clock.now += 4
    conn.handle_timer()
    assert conn.state is State.CLOSING
    assert sent(conn) == [(Opcode.CLOSE, WsClose(EXPIRED_CODE, "session expired").serialize())]
    assert conn.next_deadline() == conn.close_deadline == clock.now + 2.0
    conn.handle_timer()
    assert sent(conn) == [], "closing: not expired again"
    conn.receive_data(client_close(EXPIRED_CODE, "session expired"))
    assert isinstance(events(conn)[0], Close)
    assert (conn.state, conn.close_code, conn.next_deadline()) == (State.CLOSED, EXPIRED_CODE, None)


def test_one_deadline_for_keepalive_and_session_expiry() -> None:
    """next_deadline() is the earliest of the keepalive's next step and the
    session's end; handle_timer() does whichever is due: a ping before the
    end, and at the end the 4401 close even with a ping out (not 1011)."""
    clock = Clock()
    conn = opened(clock=clock, ping_interval=10.0, ping_timeout=4.0)
    conn.last_heard = clock.now
    conn.expires_at = clock.now + 25
    assert conn.next_deadline() == clock.now + 10.0, "the ping comes first"
    conn.expires_at = clock.now + 5
    assert conn.next_deadline() == clock.now + 5, "the end comes first"
    conn.expires_at = clock.now + 12
    clock.now += 10.0
    conn.handle_timer()
    ((opcode, _),) = sent(conn)
    assert opcode == Opcode.PING
    assert conn.next_deadline() == clock.now + 2.0, "the end, before the pong is due"
    clock.now += 2.0
    conn.handle_timer()
    ((opcode, payload),) = sent(conn)
    assert opcode == Opcode.CLOSE
    assert close_of(payload) == (EXPIRED_CODE, "session expired")
    assert conn.state is State.CLOSING and not conn.failed


def test_session_expiry_removed_or_while_closing_does_nothing() -> None:
    clock = Clock()
    conn = opened(clock=clock)
    conn.expires_at = clock.now + 1
    conn.expires_at = None
    conn.handle_timer(clock.now + 100)
    assert conn.state is State.OPEN
    conn.expires_at = clock.now + 1
    conn.send_close(4000)
    sent(conn)
    conn.handle_timer(clock.now + 1.5)
    assert conn.state is State.CLOSING and sent(conn) == [], "no second close frame"


def test_close_reason_is_cut_to_123_bytes_never_inside_a_character() -> None:
    conn = opened()
    conn.send_close(CloseCode.NORMAL_CLOSURE, "a" + "é" * 100)
    ((_, payload),) = sent(conn)
    reason = payload[2:]
    assert len(reason) == 123  # 'a' and 61 two-byte characters
    assert reason.decode() == "a" + "é" * 61


@pytest.mark.parametrize("code", [0, 999, 1004, CloseCode.ABNORMAL_CLOSURE, 1015, 2999, 5000])
def test_close_codes_an_endpoint_may_not_send(code: int) -> None:
    conn = opened()
    with pytest.raises(ValueError, match="close code"):
        conn.send_close(code)
    assert conn.state is State.OPEN
    assert conn.data_to_send() == []


def test_close_without_a_code() -> None:
    """1005 ("no status") is sent as a close frame without a payload."""
    conn = opened()
    conn.send_close(CloseCode.NO_STATUS_RCVD)
    assert sent(conn) == [(Opcode.CLOSE, b"")]


def test_close_twice_and_sending_after_close() -> None:
    conn = opened()
    conn.send_close()
    for call in (conn.send_close, lambda: conn.send_binary(b"x"), conn.send_ping, conn.send_pong):
        with pytest.raises(ConnectionClosed):
            call()


# -- failing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(Frame(WsOpcode.TEXT, b"abc").serialize(mask=False), CloseCode.PROTOCOL_ERROR, id="unmasked"),
        pytest.param(client(WsOpcode.CONT, b"x"), CloseCode.PROTOCOL_ERROR, id="continuation-first"),
        pytest.param(client(WsOpcode.CLOSE, struct.pack("!H", 1006)), CloseCode.PROTOCOL_ERROR, id="close-1006"),
        pytest.param(client(WsOpcode.TEXT, b"\xff"), CloseCode.INVALID_DATA, id="invalid-utf8"),
        pytest.param(client(WsOpcode.CLOSE, b"\x03\xe8\xff"), CloseCode.INVALID_DATA, id="invalid-utf8-reason"),
    ],
)
def test_protocol_error_fails_with_its_code_then_waits_for_the_end(data: bytes, code: int) -> None:
    """The connection fails itself: a close frame with the code, nothing
    more; then everything is discarded (the client's close frame too: frames
    may no longer make sense) until the end of the stream."""
    clock = Clock()
    conn = opened(close_timeout=5.0, clock=clock)
    conn.receive_data(client(WsOpcode.TEXT, b"fine") + data + client(WsOpcode.TEXT, b"never seen"))
    assert conn.next_event() == "fine"
    assert conn.next_event() is None
    assert conn.state is State.CLOSING and conn.failed
    assert conn.close_deadline == clock.now + 5.0
    ((opcode, payload),) = sent(conn)
    assert opcode == Opcode.CLOSE and close_of(payload)[0] == code
    assert conn.close_code == code
    conn.receive_data(client_close(CloseCode.NORMAL_CLOSURE))
    assert conn.next_event() is None
    assert conn.data_to_send() == []
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_code == code, "the connection ended for our reason"


def test_oversized_message_fails_1009_from_its_header() -> None:
    """A frame announcing more than the limit fails the connection before
    its payload arrives: only the header (and mask) is fed."""
    conn = opened(max_message_size=1000)
    header = client(WsOpcode.BINARY, b"x" * 1001)[:8]  # 2 + 2 (length) + 4 (mask)
    conn.receive_data(header)
    assert conn.next_event() is None
    assert conn.state is State.CLOSING and conn.failed
    ((_, payload),) = sent(conn)
    assert close_of(payload) == (CloseCode.MESSAGE_TOO_BIG, "Message over 1000 bytes")
    assert (conn.close_code, conn.close_reason) == (CloseCode.MESSAGE_TOO_BIG, "Message over 1000 bytes")


def test_message_at_the_limit_passes() -> None:
    conn = opened(max_message_size=1000)
    conn.receive_data(client(WsOpcode.BINARY, b"x" * 1000))
    assert conn.next_event() == b"x" * 1000
    assert conn.state is State.OPEN


def test_frames_that_stop_making_sense_while_closing() -> None:
    """After our close frame a protocol error sends nothing more (one close
    frame only), discards the rest and ends with 1006 at the end of the stream."""
    conn = opened()
    conn.send_close()
    conn.data_to_send()
    conn.receive_data(client(WsOpcode.TEXT, b"\xff") + client_close(CloseCode.NORMAL_CLOSURE))
    assert conn.next_event() is None
    assert conn.failed and conn.state is State.CLOSING
    assert conn.data_to_send() == []
    conn.receive_eof()
    assert conn.close_code == CloseCode.ABNORMAL_CLOSURE


def test_keepalive_failure() -> None:
    conn = opened()
    conn.fail_keepalive()
    ((_, payload),) = sent(conn)
    assert close_of(payload) == (CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON)
    assert (conn.close_code, conn.close_reason) == (CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON)
    assert conn.failed and conn.state is State.CLOSING


def test_keepalive_pings_a_silent_peer_and_fails_it_without_an_answer() -> None:
    """The connection decides the keepalive: next_deadline() says when to
    look, handle_timer() queues a ping after ping_interval of silence and
    fails the connection (1011) ping_timeout after it, unanswered."""
    clock = Clock()
    conn = opened(clock=clock, ping_interval=10.0, ping_timeout=4.0)
    conn.last_heard = clock.now
    assert conn.next_deadline() == clock.now + 10.0
    clock.now += 9.9
    conn.handle_timer()
    assert conn.data_to_send() == []  # not silent long enough
    clock.now += 0.1
    conn.handle_timer()
    ((opcode, _),) = sent(conn)
    assert opcode == Opcode.PING
    assert conn.next_deadline() == clock.now + 4.0  # the answer is due
    clock.now += 3.9
    conn.handle_timer()
    assert conn.state is State.OPEN and conn.data_to_send() == []
    clock.now += 0.1
    conn.handle_timer()
    ((opcode, payload),) = sent(conn)
    assert opcode == Opcode.CLOSE
    assert close_of(payload) == (CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON)
    assert conn.failed and conn.state is State.CLOSING
    assert conn.next_deadline() == conn.close_deadline


def test_keepalive_leaves_a_peer_that_answers_alone() -> None:
    """Hearing from the peer after the ping (its pong, any bytes, a send
    making progress: the I/O layer sets last_heard) cancels the failure and
    starts a new interval."""
    clock = Clock()
    conn = opened(clock=clock, ping_interval=10.0, ping_timeout=4.0)
    conn.last_heard = clock.now
    for _ in range(3):
        clock.now += 10.0
        conn.handle_timer()
        ((opcode, payload),) = sent(conn)
        assert opcode == Opcode.PING
        clock.now += 1.0
        conn.receive_data(client(WsOpcode.PONG, payload))
        conn.last_heard = clock.now
        assert [type(event) for event in events(conn)] == [Pong]
        assert conn.next_deadline() == clock.now + 10.0
        clock.now += 4.0  # past the ping's timeout: answered, so nothing happens
        conn.handle_timer()
        assert conn.state is State.OPEN and conn.data_to_send() == []
        clock.now = conn.last_heard


def test_keepalive_pong_sets_the_round_trip_time() -> None:
    """The pong answering a keepalive ping sets ping_rtt (seconds since the
    ping was queued, in the connection's clock); a pong with no ping out
    (unsolicited) does not."""
    clock = Clock()
    conn = opened(clock=clock, ping_interval=10.0, ping_timeout=4.0)
    conn.last_heard = clock.now
    conn.receive_data(client(WsOpcode.PONG, b"unasked"))
    assert [type(event) for event in events(conn)] == [Pong]
    assert conn.ping_rtt is None
    clock.now += 10.0
    conn.handle_timer()
    ((opcode, payload),) = sent(conn)
    assert opcode == Opcode.PING and conn.ping_rtt is None
    clock.now += 0.25
    conn.receive_data(client(WsOpcode.PONG, payload))
    assert [type(event) for event in events(conn)] == [Pong]
    assert conn.ping_rtt == 0.25


def test_keepalive_off() -> None:
    """Without ping_interval (the default of a bare Connection), there is no deadline and no ping."""
    clock = Clock()
    conn = opened(clock=clock)
    clock.now += 1e6
    conn.handle_timer()
    assert conn.next_deadline() is None
    assert conn.data_to_send() == [] and conn.state is State.OPEN


def test_fail_after_the_close_handshake_does_nothing() -> None:
    conn = opened()
    conn.receive_data(client_close(CloseCode.NORMAL_CLOSURE))
    events(conn)
    conn.data_to_send()
    conn.fail(CloseCode.INTERNAL_ERROR, "late")
    assert conn.data_to_send() == []
    assert conn.close_code == CloseCode.NORMAL_CLOSURE


def test_abort_drops_what_was_queued() -> None:
    conn = opened()
    conn.send_text(b"never sent")
    conn.abort()
    assert conn.state is State.CLOSED
    assert conn.close_code == CloseCode.ABNORMAL_CLOSURE
    assert conn.data_to_send() == []


def test_abort_before_the_handshake_was_answered() -> None:
    conn = Connection()
    conn.fail(CloseCode.INTERNAL_ERROR)  # nothing can be sent yet: aborted
    assert conn.state is State.CLOSED
    assert conn.close_code == CloseCode.ABNORMAL_CLOSURE
    assert conn.data_to_send() == []


def test_bytes_appended_to_the_buffer_directly_are_discarded_after_a_failure() -> None:
    """An I/O layer may append to ``buffer`` itself (one call less per read):
    once the connection has failed, the next next_event() drops it."""
    conn = opened()
    conn.buffer += client(WsOpcode.TEXT, b"direct")
    assert conn.next_event() == "direct"
    conn.fail(CloseCode.POLICY_VIOLATION, "go away")
    conn.buffer += client(WsOpcode.TEXT, b"x" * 1000)
    assert conn.next_event() is None
    assert not conn.buffer


# -- counters ---------------------------------------------------------------------------


def counters(conn: Connection) -> dict[str, int]:
    names = ("messages", "payload_bytes", "wire_bytes")
    return {f"{name}_{way}": getattr(conn, f"{name}_{way}") for name in names for way in ("in", "out")}


def counting(**kwargs: t.Any) -> Connection:
    conn = opened(**kwargs)
    conn.counting = True
    return conn


def test_counters_count_only_when_turned_on() -> None:
    conn = opened()
    assert not conn.counting, "off by default"
    conn.receive_data(client(WsOpcode.TEXT, b"in") + client(WsOpcode.PING) + client(WsOpcode.BINARY, b"x", fin=False))
    conn.receive_data(client(WsOpcode.CONT, b"y"))
    events(conn)
    conn.send_text(b"out")
    conn.send_close()
    assert set(counters(conn).values()) == {0}


def test_counters_of_messages_and_bytes_each_way() -> None:
    """Messages and their payload (decoded size, UTF-8 for text), and every
    byte of every frame parsed or queued: headers in each length form,
    masking keys, fragments, control frames. The wire counts are the
    lengths of the bytes fed and of those to send, measured, not computed."""
    conn = counting()
    assert set(counters(conn).values()) == {0}
    incoming = [
        client(WsOpcode.TEXT, "héllo".encode()),  # one whole frame
        client(WsOpcode.BINARY, b"b" * 126),  # a 16-bit length
        client(WsOpcode.BINARY, b"B" * 65536),  # a 64-bit length
        client(WsOpcode.TEXT, b"frag", fin=False),  # a message in two fragments, a ping between them
        client(WsOpcode.PING, b"?"),
        client(WsOpcode.CONT, b"ment"),
        client(WsOpcode.PONG, b"!"),
    ]
    fed = b"".join(incoming)
    for i in range(0, len(fed), 1000):  # in pieces, as reads come
        conn.receive_data(fed[i : i + 1000])
        events(conn)
    conn.send_text("héllo".encode())
    conn.send_binary(b"y" * (SINGLE_WRITE_LIMIT + 1))  # two chunks
    conn.send_ping(b"abc")
    out = b"".join(conn.data_to_send())  # the pong, the two messages, the ping
    assert counters(conn) == {
        "messages_in": 4,
        "messages_out": 2,
        "payload_bytes_in": 6 + 126 + 65536 + 8,
        "payload_bytes_out": 6 + SINGLE_WRITE_LIMIT + 1,
        "wire_bytes_in": len(fed),
        "wire_bytes_out": len(out),
    }
    conn.send_close(1000)
    close = b"".join(conn.data_to_send())
    conn.receive_data(client_close(1000))
    events(conn)
    assert conn.state is State.CLOSED
    assert conn.wire_bytes_out == len(out) + len(close)
    assert conn.wire_bytes_in == len(fed) + len(client_close(1000))
    assert (conn.messages_in, conn.messages_out) == (4, 2), "control frames are no messages"


def test_counters_with_compression() -> None:
    """Compressed: the payload counts are the messages' sizes, the wire counts
    what went over it, compressed."""
    offer = "permessage-deflate; client_max_window_bits"
    agreed = negotiate(offer, DEFAULT_COMPRESSION)
    assert agreed is not None
    conn = counting(deflate=agreed[1])
    message = b"compress me " * 100
    conn.send_text(message)
    (chunk,) = conn.data_to_send()
    assert (conn.messages_out, conn.payload_bytes_out, conn.wire_bytes_out) == (1, len(message), len(chunk))
    assert len(chunk) < len(message)
    # A compressed message from the peer, in two fragments, by websockets' own permessage-deflate.
    data = client_frames(client_for(offer, agreed[0]), WsOpcode.TEXT, [message[:500], message[500:]])
    conn.receive_data(data)
    assert events(conn) == [message.decode()]
    assert (conn.messages_in, conn.payload_bytes_in, conn.wire_bytes_in) == (1, len(message), len(data))
    assert len(data) < len(message)


def test_counters_leave_out_what_frame_now_did_not_send_and_count_the_close() -> None:
    """A frame frame_now dropped (over one write) or the caller could not
    write (not_sent) is taken back; close frames count, ours and the
    echo of the peer's; who started the close is kept (local_close_code)."""
    conn = counting()
    assert conn.frame_now(b"x" * (SINGLE_WRITE_LIMIT + 1), False) is None
    frame = conn.frame_now(b"hi", True)
    assert frame is not None
    conn.not_sent(len(frame), 2)
    assert (conn.messages_out, conn.payload_bytes_out, conn.wire_bytes_out) == (0, 0, 0)
    assert conn.frame_now(b"hi", True) == b"\x81\x02hi"
    assert (conn.messages_out, conn.payload_bytes_out, conn.wire_bytes_out) == (1, 2, 4)
    conn.receive_data(client_close(4000, "bye"))
    events(conn)
    echo = b"".join(conn.data_to_send())
    assert conn.wire_bytes_out == 4 + len(echo) and conn.wire_bytes_in == len(client_close(4000, "bye"))
    assert conn.local_close_code is None, "the peer started the close"
    ours = counting()
    ours.send_close(4001, "server")
    assert ours.local_close_code == 4001 and ours.wire_bytes_out == len(b"".join(ours.data_to_send()))
    failed = counting()
    failed.receive_data(b"\x83\x80\x00\x00\x00\x00")  # a reserved opcode: 1002
    events(failed)
    assert failed.local_close_code == 1002
    assert failed.wire_bytes_in == 0, "a header that broke the protocol was not parsed"
