"""The app of the Redis integration tests, fanned out through the Redis at
``$REDIS_URL``.

Served by gunicorn (``tests.integration.fanout_app:app``), or as its own
gevent server process standing in for a host
(``python -m tests.integration.fanout_app PORT``); imported without serving
by a process that only publishes (a cron job).

- ``/rooms/<room>[?name=N]`` (socket): joins ``room`` (present as
  ``{"name": N}`` if a name is given), sends ``{"pid": ..., "joined":
  room}``, then obeys ``say TEXT`` (publish to the room; ``error ...`` back
  if Redis is down), ``echo TEXT`` and ``presence`` (the sorted names
  present in the room, as JSON).
- Each presence change is published to its room as ``join N`` / ``leave N``.
- ``POST /publish/<room>``: publishes the body (503 and the error if Redis is down).
- ``GET /stats``: this process's pid, subscriber state, sockets, live
  greenlets, and ``sockets.stats()`` as ``rooms``.

``$PRESENCE_TTL`` sets ``SOCKETS_PRESENCE_TTL``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import typing as t

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

from flask import Flask  # noqa: E402
from flask import request  # noqa: E402

from flask_sockets import MessageQueueUnavailable  # noqa: E402
from flask_sockets import Sockets  # noqa: E402

app = Flask(__name__)
app.config["SOCKETS_MESSAGE_QUEUE"] = os.environ["REDIS_URL"]
app.config["SOCKETS_PRESENCE_TTL"] = float(os.environ.get("PRESENCE_TTL", 15))
sockets = Sockets(app)


@sockets.route("/rooms/<room>")
def in_room(ws: t.Any, room: str) -> None:
    name = request.args.get("name")
    sockets.join(ws, room, presence=None if name is None else {"name": name})
    ws.send(json.dumps({"pid": os.getpid(), "joined": room}))
    while True:
        message = ws.receive()
        if message is None:
            return
        command, _, argument = message.partition(" ")
        if command == "say":
            try:
                sockets.publish(room, argument)
            except MessageQueueUnavailable as e:
                ws.send(f"error {e}")
        elif command == "echo":
            ws.send(f"echo {argument}")
        elif command == "presence":
            ws.send(json.dumps(sorted(p["name"] for p in sockets.presence(room).values())))


@sockets.on_presence
def announce(change: t.Any) -> None:
    sockets.publish(change.room, f"{change.kind} {change.data['name']}")


@app.get("/")
def index() -> str:
    return "hello over http"


@app.post("/publish/<room>")
def publish(room: str) -> tuple[str, int]:
    try:
        sockets.publish(room, request.get_data(as_text=True))
    except MessageQueueUnavailable as e:
        return str(e), 503
    return "ok", 200


@app.get("/stats")
def stats() -> dict[str, t.Any]:
    import greenlet

    rooms = sockets.rooms_for()
    return {
        "pid": os.getpid(),
        "connected": rooms.broker.connected,
        "sockets": rooms.sockets,
        "greenlets": sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead),
        "rooms": sockets.stats(),
    }


if __name__ == "__main__":
    import flask_sockets_gevent

    flask_sockets_gevent.run(app, port=int(sys.argv[1]), shutdown_timeout=2)
