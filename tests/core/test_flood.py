"""Flood control in the sans-I/O connection (:mod:`flask_sockets.ratelimit`,
:meth:`flask_sockets.connection.Connection.limit_flood`): client frames
serialised by ``websockets`` fed as bytes, time a number the test moves,
what the connection sends parsed back (the helpers of test_connection).
The same limits against real servers: tests/transports (every transport)
and tests/hostile/test_flood.py."""

from __future__ import annotations

import dataclasses

import pytest
from websockets.frames import Opcode as WsOpcode

from flask_sockets.connection import Connection
from flask_sockets.connection import State
from flask_sockets.options import DEFAULTS
from flask_sockets.options import SocketOptions
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from flask_sockets.protocol import Ping
from flask_sockets.ratelimit import BYTE_RATE_REASON
from flask_sockets.ratelimit import CONFIG_KEYS
from flask_sockets.ratelimit import CONTROL_RATE_REASON
from flask_sockets.ratelimit import MESSAGE_RATE_REASON
from flask_sockets.ratelimit import FloodControl
from flask_sockets.ratelimit import Limiter
from flask_sockets.ratelimit import TokenBucket
from flask_sockets.ratelimit import flood_control_from_config
from tests.core.test_connection import Clock
from tests.core.test_connection import client
from tests.core.test_connection import close_of
from tests.core.test_connection import events
from tests.core.test_connection import sent

#: Only the message rate (10 a second, 20 at once).
MESSAGES = FloodControl(
    message_rate=10, message_burst=20, byte_rate=None, control_rate=None, max_errors=None, error_window=5.0
)


def limited(settings: FloodControl | None, max_message_size: int | None = None) -> tuple[Connection, Clock]:
    clock = Clock()
    conn = Connection(max_message_size, clock=clock)
    conn.limit_flood(settings)
    conn.accept()
    return conn, clock


def feed(conn: Connection, n: int, data: bytes = b"x", opcode: WsOpcode = WsOpcode.TEXT) -> list[object]:
    conn.receive_data(client(opcode, data) * n)
    return events(conn)


def assert_closed_1008(conn: Connection, reason: str) -> None:
    assert conn.state is State.CLOSING and conn.failed
    ((opcode, payload),) = sent(conn)
    assert opcode == Opcode.CLOSE
    assert close_of(payload) == (CloseCode.POLICY_VIOLATION, reason)
    assert (conn.close_code, conn.close_reason) == (CloseCode.POLICY_VIOLATION, reason)


def test_under_the_rate_nothing_happens() -> None:
    """A message every 0.1 s (the rate) for a long time, and the whole
    burst at once after a pause: all handed over, nothing sent."""
    conn, clock = limited(MESSAGES)
    for _ in range(500):
        assert feed(conn, 1) == ["x"]
        clock.now += 0.1
    clock.now += 10
    assert feed(conn, 20) == ["x"] * 20
    assert conn.state is State.OPEN and conn.data_to_send() == []


def test_over_the_burst_closes_1008_and_discards_the_rest() -> None:
    conn, _ = limited(MESSAGES)
    assert feed(conn, 25) == ["x"] * 20, "the burst passes, then nothing"
    assert_closed_1008(conn, MESSAGE_RATE_REASON)
    assert feed(conn, 5) == [], "what follows is discarded"


def test_the_bucket_refills_at_the_rate() -> None:
    conn, clock = limited(MESSAGES)
    assert feed(conn, 20) == ["x"] * 20
    clock.now += 0.5  # 5 tokens back
    assert feed(conn, 5) == ["x"] * 5
    assert conn.state is State.OPEN
    clock.now += 0.09  # not yet one
    assert feed(conn, 1) == []
    assert_closed_1008(conn, MESSAGE_RATE_REASON)


def test_a_long_silence_banks_no_more_than_the_burst() -> None:
    """After 100 s of silence (1,000 tokens' worth at the rate) the bucket
    holds its burst, 20, not more."""
    conn, clock = limited(MESSAGES)
    assert feed(conn, 1) == ["x"]
    clock.now += 100
    assert feed(conn, 25) == ["x"] * 20
    assert_closed_1008(conn, MESSAGE_RATE_REASON)


def test_byte_rate_counts_text_as_utf8() -> None:
    """100 bytes a second, 300 at once: three 100-byte messages pass; a
    fourth does not. 50 'é' are 100 bytes of UTF-8 (50 characters)."""
    settings = FloodControl(message_rate=None, byte_rate=100, byte_burst=300, control_rate=None, max_errors=None)
    conn, clock = limited(settings)
    assert feed(conn, 3, "é".encode() * 50) == ["é" * 50] * 3
    clock.now += 0.5
    assert feed(conn, 1, b"y" * 50, WsOpcode.BINARY) == [b"y" * 50]
    assert feed(conn, 1, b"z", WsOpcode.BINARY) == []
    assert_closed_1008(conn, BYTE_RATE_REASON)


def test_one_message_of_the_largest_size_always_fits() -> None:
    """The byte bucket holds at least one message of the size limit, even
    with a smaller burst."""
    settings = FloodControl(message_rate=None, byte_rate=100, byte_burst=100, control_rate=None, max_errors=None)
    conn, clock = limited(settings, max_message_size=5000)
    assert feed(conn, 1, b"x" * 5000, WsOpcode.BINARY) == [b"x" * 5000]
    clock.now += 49  # 4900 bytes back: not enough for the next
    assert feed(conn, 1, b"x" * 5000, WsOpcode.BINARY) == []
    assert_closed_1008(conn, BYTE_RATE_REASON)


def test_drop_mode_discards_and_counts() -> None:
    conn, clock = limited(dataclasses.replace(MESSAGES, action="drop"))
    assert feed(conn, 30) == ["x"] * 20
    assert conn.dropped == 10
    assert conn.state is State.OPEN and conn.data_to_send() == []
    clock.now += 0.3
    conn.receive_data(client(WsOpcode.TEXT, b"a") * 5 + client(WsOpcode.TEXT, b"b"))
    assert events(conn) == ["a"] * 3
    assert conn.dropped == 13
    clock.now += 0.1
    assert feed(conn, 1, b"c") == ["c"], "a message within the rate passes again"


def test_ping_flood_closes_1008_after_the_pongs_of_the_burst() -> None:
    settings = FloodControl(message_rate=None, byte_rate=None, control_rate=10, control_burst=20, max_errors=None)
    conn, clock = limited(settings)
    got = feed(conn, 30, b"p", WsOpcode.PING)
    assert len(got) == 20 and all(isinstance(e, Ping) for e in got)
    frames = sent(conn)
    assert frames[:20] == [(Opcode.PONG, b"p")] * 20, "the pings within the burst are answered"
    assert frames[20][0] == Opcode.CLOSE
    assert close_of(frames[20][1]) == (CloseCode.POLICY_VIOLATION, CONTROL_RATE_REASON)
    assert len(frames) == 21


def test_keepalive_pongs_and_an_occasional_ping_pass() -> None:
    settings = FloodControl(message_rate=None, byte_rate=None, control_rate=10, control_burst=20, max_errors=None)
    conn, clock = limited(settings)
    for _ in range(100):
        conn.receive_data(client(WsOpcode.PING, b"k") + client(WsOpcode.PONG, b"k"))
        assert len(events(conn)) == 2
        clock.now += 1.0
    assert sent(conn) == [(Opcode.PONG, b"k")] * 100


def test_drop_mode_leaves_excess_pings_unanswered() -> None:
    settings = FloodControl(
        message_rate=None, byte_rate=None, control_rate=10, control_burst=20, max_errors=None, action="drop"
    )
    conn, _ = limited(settings)
    conn.receive_data(client(WsOpcode.PING) * 30 + client(WsOpcode.TEXT, b"after"))
    got = events(conn)
    assert got[-1] == "after" and len(got) == 21
    assert sent(conn) == [(Opcode.PONG, b"")] * 20
    assert conn.dropped == 10 and conn.state is State.OPEN


def test_error_budget() -> None:
    """20 errors within 5 s pass; the 21st does not. The budget comes back
    at 4 errors a second."""
    conn, clock = limited(FloodControl())
    assert all(conn.count_error() for _ in range(20))
    clock.now += 1.0
    assert all(conn.count_error() for _ in range(4))
    assert not conn.count_error()


@pytest.mark.parametrize("settings", [None, MESSAGES.__class__(None, None, None, None, None, None, None)])
def test_off(settings: FloodControl | None) -> None:
    conn, _ = limited(settings)
    assert feed(conn, 10_000) == ["x"] * 10_000
    assert feed(conn, 100, b"p", WsOpcode.PING) != []
    assert all(conn.count_error() for _ in range(1000))
    assert conn.state is State.OPEN and conn.dropped == 0


def test_token_bucket_never_loses_a_token_to_float_sums() -> None:
    bucket = TokenBucket(1024 * 1024, 4 * 1024 * 1024)
    assert all(bucket.take(0.0, 1024) for _ in range(4096))
    assert not bucket.take(0.0, 1)



def test_a_connection_keeps_only_its_full_again_times() -> None:
    # Idle memory per socket (issue 20): the rates of one FloodControl are
    # shared by its connections; an idle socket's limiter is one small object
    # whose untouched buckets hold one shared float.
    settings = FloodControl(message_rate=5, action="drop")
    first, second = Limiter(settings, 1000), Limiter(settings, 1000)
    assert first._rates is second._rates
    assert Limiter(settings, 2000)._rates is not first._rates  # the byte bucket holds the size limit
    assert first._message_full_at is second._control_full_at is second._error_full_at
    assert (first.settings, first.drop, first.dropped) == (settings, True, 0)
    assert not hasattr(first, "__dict__")
    # Each bucket is still its own.
    clock = iter([0.0] * 10).__next__
    settings = FloodControl(message_rate=1, message_burst=1, control_rate=1, control_burst=1, max_errors=1)
    limiter = Limiter(settings, None, clock)
    assert limiter.check("a") is None and limiter.check("b") == MESSAGE_RATE_REASON
    assert limiter.check(Ping(b"")) is None and limiter.check(Ping(b"")) == CONTROL_RATE_REASON
    assert limiter.error() is None and limiter.error() is not None

# -- configuration ------------------------------------------------------------------------


def test_the_defaults_are_on_and_the_config_keys_match_the_fields() -> None:
    assert SocketOptions().flood_control == FloodControl()
    for key, name in CONFIG_KEYS.items():
        assert DEFAULTS[key] == getattr(FloodControl(), name), key
    settings = flood_control_from_config(DEFAULTS)
    assert settings == FloodControl(100, 200, 1024 * 1024, 4 * 1024 * 1024, 10, 20, 20, 5.0, "close")
    assert SocketOptions.from_config(DEFAULTS).flood_control is settings, "built once"


def test_zero_or_none_turns_a_limit_off_and_all_off_is_none() -> None:
    config = {**DEFAULTS, "SOCKETS_MESSAGE_RATE": 0, "SOCKETS_BYTE_RATE": None}
    settings = flood_control_from_config(config)
    assert settings is not None and settings.control_rate == 10
    conn, _ = limited(settings)
    assert len(feed(conn, 1000)) == 1000
    off = {**config, "SOCKETS_CONTROL_RATE": 0, "SOCKETS_MAX_ERRORS": None}
    assert flood_control_from_config(off) is None
    assert SocketOptions.from_config(off).flood_control is None


def test_a_route_overrides_the_app() -> None:
    assert flood_control_from_config(DEFAULTS, False) is None
    assert flood_control_from_config(DEFAULTS, True) == FloodControl()
    route = flood_control_from_config(DEFAULTS, {"message_rate": 1000, "action": "drop"})
    assert route == FloodControl(message_rate=1000, action="drop")
    own = FloodControl(byte_rate=1)
    assert flood_control_from_config(DEFAULTS, own) is own
    with pytest.raises(TypeError, match="message_rat"):
        flood_control_from_config(DEFAULTS, {"message_rat": 1})
    with pytest.raises(ValueError, match="'close' or 'drop'"):
        flood_control_from_config({**DEFAULTS, "SOCKETS_FLOOD_ACTION": "kick"})
    with pytest.raises(ValueError, match=">= 0"):
        FloodControl(message_rate=-1)
