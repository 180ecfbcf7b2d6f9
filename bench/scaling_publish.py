"""The publisher of the scaling workload (bench/scaling.py):

    python bench/scaling_publish.py DESIGN URL --groups P --rooms R --rate N \
        --start NS --window NS NS --end NS

Publishes from ``--start`` to ``--end`` (``time.perf_counter_ns()``, the
clock the load generator reads too) at a fixed total rate, one message at a
time, to the rooms ``p<i>-r<j>`` (i < P, j < R) in turn, interleaving the
processes, with each library's own publishing API, as a process that only
publishes (a cron job, a task queue worker) would:

- ``one-channel``: ``sockets.publish`` of an app whose ``SOCKETS_MESSAGE_QUEUE``
  is the frozen one-channel broker (bench/servers/onechannel.py);
- ``per-room``, ``cluster``: ``sockets.publish`` with ``SOCKETS_MESSAGE_QUEUE = URL``;
- ``flask-socketio``: ``SocketIO(message_queue=URL).emit('fanout', text, to=room)``.

Each message is ``<send time in ns>:<filler>`` (``--size`` bytes): the load
generator takes the latency from it. Prints one JSON object: messages sent
in the window per process group, the achieved rate, how far it fell behind
its schedule, errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "servers"))


def publisher(design: str, url: str):  # type: ignore[no-untyped-def]
    if design == "flask-socketio":
        from flask_socketio import SocketIO

        socketio = SocketIO(message_queue=url)
        return lambda room, text: socketio.emit("fanout", text, to=room)
    from flask import Flask

    from flask_sockets import Sockets

    app = Flask("publisher")
    if design == "one-channel":
        from onechannel import OneChannelBroker

        app.config["SOCKETS_MESSAGE_QUEUE"] = OneChannelBroker(url)
    else:
        app.config["SOCKETS_MESSAGE_QUEUE"] = url
    sockets = Sockets(app)
    app.app_context().push()
    return sockets.publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("design", choices=("one-channel", "per-room", "cluster", "flask-socketio"))
    parser.add_argument("url")
    parser.add_argument("--groups", type=int, required=True)
    parser.add_argument("--rooms", type=int, required=True, help="rooms per group")
    parser.add_argument("--rate", type=float, required=True, help="messages per second, all rooms together")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--start", type=int, required=True)
    parser.add_argument("--window", type=int, nargs=2, required=True)
    parser.add_argument("--end", type=int, required=True)
    args = parser.parse_args()
    publish = publisher(args.design, args.url)
    rooms = [(g, f"p{g}-r{r}") for r in range(args.rooms) for g in range(args.groups)]
    interval = int(1e9 / args.rate)
    t0, t1 = args.window
    in_window = [0] * args.groups
    sent = errors = 0
    first_error = ""
    behind = 0
    pause = max(0, args.start - time.perf_counter_ns())
    time.sleep(pause / 1e9)
    due = args.start
    # Bounded by --end (and by the message count it implies, in case the clock jumps).
    limit = int((args.end - args.start) / 1e9 * args.rate) + 1
    for number in range(limit):
        now = time.perf_counter_ns()
        if now >= args.end:
            break
        if due > now:
            time.sleep((due - now) / 1e9)
            now = time.perf_counter_ns()
        behind = max(behind, now - due)
        group, room = rooms[number % len(rooms)]
        text = f"{now}:".ljust(args.size, "x")
        try:
            publish(room, text)
        except Exception as e:  # MessageQueueUnavailable, redis errors: counted
            errors += 1
            first_error = first_error or repr(e)
        else:
            sent += 1
            if t0 <= now < t1:
                in_window[group] += 1
        due += interval
    seconds = (time.perf_counter_ns() - args.start) / 1e9
    result = {
        "sent": sent,
        "sent_in_window": in_window,
        "rate": sent / seconds if seconds > 0 else 0.0,
        "behind_max_ms": behind / 1e6,
        "errors": errors,
        "first_error": first_error,
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
