"""The Redis broker's receiving side alone: what a message costs the process
that receives it, on one ``redis-server`` started on a free loopback port.

    hatch run bench:brokers [--messages N] [--repeat R] [--variant [NAME=]REV|DIR ...]

Each run, in a fresh process, subscribes a ``RedisBroker`` to 50 rooms,
publishes N 64-byte messages to them in turn from a pipelined client in the
same process, and times the process's CPU (user + system, publisher
included: the same for every broker) until the subscriber handed the last
one to a no-op ``deliver``. No gevent: the subscriber is a thread.

``--variant`` runs the same with our packages as they are at another commit
(or in another checkout), interleaved with this tree's, best of R each: the
one-channel broker of before issue #13 is ``--variant 7041bdd`` (every
process subscribes to one channel and receives every message). Prints
microseconds of CPU per message, writes bench/results/brokers.json and the
table between RESULTS.md's ``brokers:`` markers (unless --no-markdown).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import threading
import time
import typing as t

import harness
import report

ROOMS = [f"room {i}" for i in range(50)]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(url: str, messages: int) -> float:
    """CPU seconds per message for the ``RedisBroker`` on the path, the one
    of today (a channel per room, ``flask_sockets.redis_broker``) or of
    before #13 (one channel, ``flask_sockets.brokers``)."""
    import redis

    from flask_sockets import brokers

    try:
        from flask_sockets import redis_broker as module
    except ImportError:  # before #13: one channel
        module = brokers  # type: ignore[assignment]
    received = 0
    done = threading.Event()

    def deliver(room: str | None, message: t.Any) -> None:
        nonlocal received
        received += 1
        if received == messages:
            done.set()

    broker = module.RedisBroker(url)
    per_room = hasattr(module, "room_channel")
    try:
        broker.start(deliver)
        for room in ROOMS:
            if per_room:
                broker.subscribe(room)
        ready = broker.wait_until_ready(10, ROOMS[-1]) if per_room else broker.wait_until_ready(10)
        if not ready:
            raise RuntimeError(f"{broker!r} did not subscribe")
        time.sleep(0.2)
        with redis.Redis.from_url(url) as client:
            pipe = client.pipeline(transaction=False)
            for i in range(messages):
                room = ROOMS[i % len(ROOMS)]
                channel = module.room_channel(broker.channel, room) if per_room else broker.channel
                pipe.publish(channel, brokers.encode_message(room, "x" * 64))
            start = cpu()
            pipe.execute()
            if not done.wait(120):
                raise RuntimeError(f"{received} of {messages} messages arrived")
            return (cpu() - start) / messages
    finally:
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], metavar="[NAME=]REV|DIR")
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite bench/RESULTS.md")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(args.child, args.messages))
        return
    try:
        trees = {"this tree": "", **dict(harness.variant(spec) for spec in args.variant)}
    except ValueError as e:
        parser.error(str(e))
    harness.handle_signals()
    log = harness.RESULTS / "logs" / "brokers-redis-server.log"
    log.unlink(missing_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    redis = harness.start_redis(None, log)
    if redis is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    best: dict[str, float] = {}
    try:
        for _ in range(args.repeat):  # interleaved, so that noise hits every tree alike
            for name, path in trees.items():
                command = [harness.PY, __file__, "--child", redis[1], "--messages", str(args.messages)]
                env = harness.with_pythonpath(dict(os.environ), path)
                out = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, check=True)
                value = float(out.stdout.strip().splitlines()[-1])
                best[name] = min(best.get(name, value), value)
    finally:
        harness.stop_all()
    base = best["this tree"]
    rows = [["Broker", "us of CPU per message", "vs this tree"]]
    rows += [[name, f"{value * 1e6:.1f}", f"{value / base:.2f}x"] for name, value in best.items()]
    text = "\n".join([
        f"Latest run: {started.isoformat(timespec='seconds')}, `{harness.command_line('brokers')}`,"
        f" {harness.machine()['git_commit']}: {len(ROOMS)} rooms, {args.messages:,} messages published pipelined,"
        f" best of {args.repeat}, interleaved. A shared machine: the figures are noisy, the ratio less so.",
        "", *report.md_table(rows),
    ])  # fmt: skip
    print(text)
    out = harness.RESULTS / "brokers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"messages": args.messages, "repeat": args.repeat, "cpu_per_message_s": best}, indent=2))
    if not args.no_markdown:
        print(f"table: {report.write_block('brokers', text, 'The Redis broker alone').relative_to(harness.ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
