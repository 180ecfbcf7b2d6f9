"""The Redis brokers' receiving side alone: what a message costs the process
that receives it, with today's channel per room
(``flask_sockets.redis_broker.RedisBroker``) and with the one channel of
before #13 (``bench/servers/onechannel.py``), side by side on one
``redis-server`` started on a free loopback port.

    hatch run bench:brokers [--messages N] [--repeat R]

Each run subscribes to 50 rooms, publishes N 64-byte messages to them in
turn from a pipelined client in the same process, and times the process's
CPU (user + system, publisher included: the same for both) until the
subscriber handed the last one to a no-op ``deliver``. Prints microseconds
of CPU per message for each broker, the best of R runs, and writes
bench/results/brokers.json. No gevent here: the subscriber is a thread.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.servers.onechannel import OneChannelBroker  # noqa: E402
from flask_sockets.brokers import encode_message  # noqa: E402
from flask_sockets.redis_broker import RedisBroker  # noqa: E402
from flask_sockets.redis_broker import room_channel  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.conftest import wait_for_port  # noqa: E402

ROOMS = [f"room {i}" for i in range(50)]
DESIGNS: dict[str, t.Callable[[str], t.Any]] = {
    "one channel (before #13)": OneChannelBroker,
    "channel per room": RedisBroker,
}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(make: t.Callable[[str], t.Any], url: str, messages: int) -> float:
    """CPU seconds per message for one broker."""
    received = 0
    done = threading.Event()

    def deliver(room: str | None, message: t.Any) -> None:
        nonlocal received
        received += 1
        if received == messages:
            done.set()

    broker = make(url)
    try:
        broker.start(deliver)
        for room in ROOMS:
            broker.subscribe(room)
        if not broker.wait_until_ready(10, ROOMS[-1]):
            raise RuntimeError(f"{broker!r} did not subscribe")
        time.sleep(0.2)
        one = isinstance(broker, OneChannelBroker)
        with redis.Redis.from_url(url) as client:
            pipe = client.pipeline(transaction=False)
            for i in range(messages):
                room = ROOMS[i % len(ROOMS)]
                channel = "flask-sockets" if one else room_channel("flask-sockets", room)
                pipe.publish(channel, encode_message(room, "x" * 64))
            start = cpu()
            pipe.execute()
            if not done.wait(120):
                raise RuntimeError(f"{received} of {messages} messages arrived")
            return (cpu() - start) / messages
    finally:
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port)
        url = f"redis://127.0.0.1:{port}/0"
        best: dict[str, float] = {}
        for _ in range(args.repeat):  # interleaved, so that noise hits both alike
            for name, make in DESIGNS.items():
                per_message = run(make, url, args.messages)
                best[name] = min(best.get(name, per_message), per_message)
    finally:
        process.terminate()
        process.wait(10)
    base = best["one channel (before #13)"]
    print(f"{'broker':<28} {'us of CPU per message':>22} {'ratio':>7}")
    for name, value in best.items():
        print(f"{name:<28} {value * 1e6:>22.1f} {value / base:>7.2f}")
    out = ROOT / "bench" / "results" / "brokers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"messages": args.messages, "repeat": args.repeat, "cpu_per_message_s": best}, indent=2))


if __name__ == "__main__":
    main()
