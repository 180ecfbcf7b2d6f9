"""What room history costs on Redis: publish latency and Redis CPU per
message, history on against off, on one ``redis-server`` started on a free
loopback port.

    python bench/history.py [--messages N] [--repeat R]

Each round publishes N 64-byte messages, one at a time (each waits for its
answer, as ``sockets.publish`` does), to 50 rooms in turn, through a
``RedisBroker`` whose subscriber (a thread of the same process) holds the 50
rooms, so every message is also delivered. History on: each room keeps 100
messages for 300 s (one Lua script per message: HINCRBY, XADD MAXLEN ~,
two PEXPIREs, PUBLISH); off: one PUBLISH. Rounds alternate, best of R each.
Prints the median and 99th percentile publish latency and Redis' CPU
(``INFO cpu``, user + system) per message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

import redis

from flask_sockets.fanout.history import HistorySettings
from flask_sockets.fanout.redis_pubsub import RedisBroker

ROOMS = [f"room {i}" for i in range(50)]
MESSAGE = "x" * 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def round_(url: str, messages: int, history: HistorySettings | None) -> tuple[float, float, float]:
    received = threading.Event()
    count = [0]

    def deliver(room: str | None, message: object, position: object = None) -> None:
        count[0] += 1
        if count[0] == messages:
            received.set()

    subscriber, publisher = RedisBroker(url, "bench"), RedisBroker(url, "bench")
    client = redis.Redis.from_url(url)
    try:
        subscriber.start(deliver)
        for room in ROOMS:
            subscriber.subscribe(room)
        for room in ROOMS:
            assert subscriber.wait_until_ready(10, room)
        publisher.publish(ROOMS[0], "warm", history)  # loads the script
        deadline = time.monotonic() + 10
        while count[0] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        count[0] = 0
        latencies = []
        cpu0 = redis_cpu(client)
        for i in range(messages):
            started = time.perf_counter()
            publisher.publish(ROOMS[i % len(ROOMS)], MESSAGE, history)
            latencies.append(time.perf_counter() - started)
        assert received.wait(30), "not every message arrived"
        cpu = redis_cpu(client) - cpu0
        latencies.sort()
        client.flushall()
        return (
            statistics.median(latencies) * 1e6,
            latencies[int(len(latencies) * 0.99)] * 1e6,
            cpu / messages * 1e6,
        )
    finally:
        subscriber.close()
        publisher.close()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    directory = tempfile.mkdtemp()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        settings = HistorySettings(100, 300.0, 86400.0)
        results: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
        for _ in range(args.repeat):
            results["off"].append(round_(url, args.messages, None))
            results["on"].append(round_(url, args.messages, settings))
        print(f"{args.messages} messages of 64 B to 50 rooms, one subscriber, best of {args.repeat}")
        print(f"({os.cpu_count()} cores)")
        print(f"{'history':8} {'p50 publish us':>15} {'p99 publish us':>15} {'Redis CPU us/msg':>17}")
        best = {}
        for name, rows in results.items():
            best[name] = min(rows, key=lambda r: r[0])
            p50, p99, cpu = best[name]
            print(f"{name:8} {p50:15.1f} {p99:15.1f} {min(r[2] for r in rows):17.1f}")
        print(
            f"on/off: p50 x{best['on'][0] / best['off'][0]:.2f},"
            f" Redis CPU x{min(r[2] for r in results['on']) / min(r[2] for r in results['off']):.2f}"
        )
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
