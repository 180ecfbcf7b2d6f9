"""Floods of valid messages against real servers (our gevent server and
the gunicorn worker; every transport runs the short rows of
tests/transports/test_behaviour.py): flood control is on by default, cuts
the flooding connections with 1008 and leaves a client at a normal rate
alone. Every flood is bounded in count and time."""

from __future__ import annotations

import select
import threading
import time
import typing as t

from websockets.sync.client import connect

from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from flask_sockets.ratelimit import MESSAGE_RATE_REASON
from tests.conftest import TIMEOUT
from tests.gevent.rawclient import RawClient
from tests.gevent.rawclient import encode_frame

from .servers import get
from .test_frames import kind  # noqa: F401 (fixture)
from .test_frames import start  # noqa: F401 (fixture)

#: Seconds an attacker floods at most.
FLOOD_SECONDS = 4.0
#: Frames an attacker sends at most.
FLOOD_FRAMES = 2_000_000


class Attacker(threading.Thread):
    """Floods ``/sink`` with complete 8-byte binary messages as fast as the
    server reads them, until the server's close frame, ``FLOOD_SECONDS`` or
    ``FLOOD_FRAMES``."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.client = RawClient(host, port, "/sink")
        self.sent = 0
        self.close: tuple[int, str] | None = None
        self.closed_after: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        batch = encode_frame(Opcode.BINARY, b"12345678") * 1000
        sock = self.client.sock
        began = time.monotonic()
        try:
            while time.monotonic() - began < FLOOD_SECONDS and self.sent < FLOOD_FRAMES:
                if select.select([sock], [], [], 0)[0]:
                    self.close = self.client.read_close()
                    self.closed_after = time.monotonic() - began
                    return
                sock.sendall(batch)
                self.sent += 1000
            # The flood ended by its bound: a close frame may be on its way.
            sock.settimeout(2.0)
            self.close = self.client.read_close()
            self.closed_after = time.monotonic() - began
        except (OSError, EOFError) as e:
            self.error = repr(e)
        finally:
            self.client.close()


def test_floods_are_cut_1008_and_a_client_at_a_normal_rate_is_untouched(start, kind):  # noqa: F811
    """Four connections flood small valid messages while a client sends one
    message every 20 ms (50 a second, half the default rate) for 5 s: 250
    messages, more than the burst of 200, so only the refill lets them all
    through. Each attacker gets 1008 "message rate limit exceeded" and its
    handler saw a few hundred messages of the hundreds of thousands sent; the
    calm client gets every echo and closes normally."""
    process = start(kind)
    with connect(process.server.ws_url + "/echo", open_timeout=TIMEOUT) as calm:
        calm.send("warm-up")
        assert calm.recv(timeout=TIMEOUT) == "warm-up"
        attackers = [Attacker(process.server.host, process.server.port) for _ in range(4)]
        for attacker in attackers:
            attacker.start()
        began = time.monotonic()
        for i in range(250):
            time.sleep(max(0.0, began + i * 0.02 - time.monotonic()))
            calm.send(f"calm {i}")
            assert calm.recv(timeout=TIMEOUT) == f"calm {i}"
        for attacker in attackers:
            attacker.join(FLOOD_SECONDS + 2 * TIMEOUT)
    assert calm.close_code == CloseCode.NORMAL_CLOSURE
    for attacker in attackers:
        print(f"\n{kind}: sent {attacker.sent} frames, closed {attacker.close} after {attacker.closed_after} s")
        assert attacker.error is None, attacker.error
        assert attacker.close == (CloseCode.POLICY_VIOLATION, MESSAGE_RATE_REASON)
    # The handlers of /sink saw the burst and what the rate added, not the flood.
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        sinks = [e for e in t.cast("list[dict[str, t.Any]]", get(process, "/events")) if e["route"] == "sink"]
        if len(sinks) == 4:
            break
        time.sleep(0.1)
    assert [e["code"] for e in sinks] == [CloseCode.POLICY_VIOLATION] * 4
    for event in sinks:
        assert 200 <= event["messages"] <= 200 + 100 * (FLOOD_SECONDS + 1)
    assert sum(a.sent for a in attackers) > 4 * 1000 > sum(e["messages"] for e in sinks), "no flood was cut"


def test_with_drop_the_flood_is_thinned_and_the_connection_stays_open(start, kind):  # noqa: F811
    """``SOCKETS_FLOOD_ACTION = 'drop'``: 5,000 messages sent at once; the
    burst and what the rate adds are echoed, the rest dropped, and the
    connection stays open: a message sent after a pause comes back."""
    process = start(kind, SOCKETS_FLOOD_ACTION="drop")
    with connect(process.server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        for i in range(5000):
            ws.send(f"{i}")
        echoes = []
        # What was not dropped comes back; then, after a pause (the bucket
        # refills), one more message, which must come back too.
        while True:
            try:
                echoes.append(ws.recv(timeout=1.0))
            except TimeoutError:
                break
        time.sleep(0.1)
        ws.send("after")
        assert ws.recv(timeout=TIMEOUT) == "after"
    assert 200 <= len(echoes) < 5000
    assert echoes[:200] == [f"{i}" for i in range(200)], "the burst passes in order"
