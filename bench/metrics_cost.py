"""The cost of flask_sockets.metrics' flushes, in isolation:
``hatch run bench:metrics`` (~10 s).

Messages and bytes are counted by each socket's engine (plain integer
additions, turned on by metrics: ``hatch run bench:metrics-instructions``
measures them in a whole round trip, and in the engine alone). What metrics add is the flush: every
``FLUSH_INTERVAL`` seconds (and before each scrape), a pass over the
process's open sockets that moves each one's new counts into the
Prometheus counters. This times :meth:`SocketMetrics.flush_open` over
10,000 open sockets (real :class:`~flask_sockets.connection.Connection`
engines, best of 9 rounds): idle (nothing new since the last pass: a
tuple comparison per socket) and busy (every socket has new messages
both ways: six counter updates per socket)."""

from __future__ import annotations

import time

import prometheus_client

from flask_sockets.connection import Connection
from flask_sockets.metrics import FLUSH_INTERVAL
from flask_sockets.metrics import SocketMetrics

N = 10_000
ROUNDS = 9


class Socket:
    """What a tap reads from a socket: its engine (and a close it wraps)."""

    closed = False
    accepted = True

    def __init__(self) -> None:
        self._protocol = Connection()
        self._protocol.accept()

    def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        pass


def main() -> None:
    metrics = SocketMetrics(prometheus_client.CollectorRegistry())
    metrics.flush_interval = 3600.0  # (its flusher sleeps: the passes here are timed one by one)
    sockets = [Socket() for _ in range(N)]
    for ws in sockets:
        metrics.tap(ws, "/echo")
    best = {"idle": float("inf"), "busy": float("inf")}
    for _ in range(ROUNDS):
        for name in best:
            if name == "busy":
                for ws in sockets:
                    conn = ws._protocol
                    conn.messages_in += 1
                    conn.payload_bytes_in += 32
                    conn.wire_bytes_in += 38
                    conn.messages_out += 1
                    conn.payload_bytes_out += 32
                    conn.wire_bytes_out += 34
            start = time.perf_counter()
            metrics.flush_open()
            best[name] = min(best[name], time.perf_counter() - start)
    idle, busy = (best[k] / N * 1e9 for k in ("idle", "busy"))
    print(f"flush_open over {N:,} open sockets, best of {ROUNDS}:")
    print(f"  idle {idle:,.0f} ns per socket ({best['idle'] * 1e3:.1f} ms per pass)")
    print(f"  busy {busy:,.0f} ns per socket ({best['busy'] * 1e3:.1f} ms per pass)")
    print(
        f"  every {FLUSH_INTERVAL:g} s: {best['idle'] / FLUSH_INTERVAL * 100:.3f}% (idle) to"
        f" {best['busy'] / FLUSH_INTERVAL * 100:.3f}% (busy) of one CPU for {N:,} sockets"
    )


if __name__ == "__main__":
    main()
