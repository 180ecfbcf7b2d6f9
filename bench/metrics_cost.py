"""The cost of flask_sockets.metrics per echoed message, in isolation:
``hatch run bench:metrics`` (~5 s).

A socket whose ``receive`` and ``send_frame`` do nothing, echoed 200,000
times, with and without a :class:`~flask_sockets.metrics.SocketTap` (the
counting wrappers that metrics put on each socket), best of 9 interleaved
rounds. What the tap adds to a round trip is then compared with the server
CPU time of a real 32-byte echo round trip (``hatch run bench:all --servers
ours-gevent,ours-gevent-metrics --workloads small`` measures that side by
side, end to end)."""

from __future__ import annotations

import time
import typing as t

import prometheus_client

from flask_sockets.metrics import SocketMetrics

N = 200_000
ROUNDS = 9


class NullSocket:
    """The socket methods the tap wraps, doing nothing."""

    closed = False
    accepted = True

    def receive(self, timeout: float | None = None) -> str:
        return "x" * 32

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        pass

    def send(self, message: t.Any) -> None:  # SocketBase.send: one call to send_frame
        self.send_frame(message, 1, True)

    def send_nowait(self, message: t.Any) -> bool:
        return True

    def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        pass


def echo(ws: NullSocket, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        ws.send(ws.receive())
    return time.perf_counter() - start


def main() -> None:
    metrics = SocketMetrics(prometheus_client.CollectorRegistry())
    best = {"off": float("inf"), "on": float("inf")}
    for _ in range(ROUNDS):
        for name in best:
            ws = NullSocket()
            if name == "on":
                metrics.tap(ws, "/echo")
            best[name] = min(best[name], echo(ws, N))
    off, on = (best[k] / N * 1e9 for k in ("off", "on"))
    print(f"null echo round trip (receive + send), best of {ROUNDS} x {N:,}:")
    print(f"  metrics off {off:.0f} ns, on {on:.0f} ns: the tap adds {on - off:.0f} ns per round trip")


if __name__ == "__main__":
    main()
