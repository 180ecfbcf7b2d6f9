"""The app of the acceptance test of reliable rooms (issue 21,
tests/browser/test_reliable.py): envelope sockets fanned out through the
Redis (or Redis Cluster) at ``$REDIS_URL``, served by its own gevent
process (``python -m tests.browser.reliable_app PORT``); the test imports
:func:`make_app` too, to publish from its own process as a cron job would.

- ``/`` (page): ``?ids=a,b,c`` makes one :class:`SocketClient` of
  flask-sockets.js per id, each with its own WebSocket, subscribed to the
  rooms ``?rooms=r1,r2``; each keeps what it got in ``window.clients[id]``.
- ``/live?id=X`` (socket): the envelope; the socket is known by ``X``.
- ``POST /cut?id=X&how=abort|1012``: cuts the socket of ``X`` (a random
  live one without ``id``): ``abort`` drops the TCP connection without a
  close frame (as a network drop looks to the browser, 1006), ``1012``
  closes it as a restarting server does. Answers the id cut, or 404.
- ``POST /hold?on=1|0``: while on, every new socket is closed at once with
  1013 (try again later): the clients keep retrying with their backoff.

Rooms: ``SOCKETS_HISTORY_SIZE`` is ``$HISTORY_SIZE`` (0: history off);
rooms named ``small-*`` keep 5 messages, ``short-*`` keep theirs 1 second.
"""

from __future__ import annotations

import os
import random
import sys
import typing as t

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

from flask import Flask  # noqa: E402
from flask import abort  # noqa: E402
from flask import request  # noqa: E402
from flask import url_for  # noqa: E402

from flask_sockets import Sockets  # noqa: E402

#: The TTL of the ``short-*`` rooms, in seconds.
SHORT_TTL = 1.0

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>reliable rooms</title>
<script type="module">
import { SocketClient } from "%(client_url)s";
const ids = %(ids)s, rooms = %(rooms)s;
window.clients = {};
for (const id of ids) {
  const rec = (window.clients[id] = { got: {}, events: [], opens: 0 });
  const client = (rec.client = new SocketClient("/live?id=" + id));
  client.on("open", () => rec.opens++);
  for (const type of ["close", "subscribed", "recovered", "unrecovered", "error"]) {
    client.on(type, (d) => rec.events.push([type, type == "error" ? String(d.reason ?? d.event?.type) : d]));
  }
  for (const room of rooms) {
    const got = (rec.got[room] = []);
    client.subscribe(room, (data, m) => got.push([m.offset, m.epoch, data.n]));
  }
  client.connect();
}
window.loaded = true;
</script>
"""


def make_app(redis_url: str, history_size: int) -> tuple[Flask, Sockets]:
    app = Flask(__name__)
    app.config["SOCKETS_MESSAGE_QUEUE"] = redis_url
    app.config["SOCKETS_HISTORY_SIZE"] = history_size
    sockets = Sockets(app)
    sockets.history("small-*", size=5)
    sockets.history("short-*", size=100, ttl=SHORT_TTL)
    return app, sockets


def serving_app(redis_url: str, history_size: int) -> Flask:
    import json

    app, sockets = make_app(redis_url, history_size)
    live: dict[str, t.Any] = {}
    held = [False]

    @app.get("/")
    def page() -> str:
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        rooms = [r for r in request.args.get("rooms", "").split(",") if r]
        return PAGE % {"client_url": url_for("sockets_client"), "ids": json.dumps(ids), "rooms": json.dumps(rooms)}

    @sockets.route("/live")
    def live_socket(ws: t.Any) -> None:
        if held[0]:
            ws.close(1013, "try again later")
            return
        key = request.args.get("id", "")
        live[key] = ws
        try:
            for _ in sockets.envelope(ws):
                pass
        finally:
            if live.get(key) is ws:
                del live[key]

    @app.post("/cut")
    def cut() -> str:
        key = request.args.get("id") or (random.choice(sorted(live)) if live else None)
        ws = live.pop(key, None) if key is not None else None
        if ws is None:
            abort(404)
        if request.args.get("how") == "abort":
            ws.abort()  # no close frame: the browser sees 1006
        else:
            ws.close(1012, "service restart")
        return str(key)

    @app.post("/hold")
    def hold() -> str:
        held[0] = request.args.get("on") == "1"
        return str(held[0])

    return app


if __name__ == "__main__":
    import flask_sockets_gevent

    application = serving_app(os.environ["REDIS_URL"], int(os.environ["HISTORY_SIZE"]))
    flask_sockets_gevent.run(application, host="127.0.0.1", port=int(sys.argv[1]))
