"""Joins while a real Redis server is down do not wait for it."""

from __future__ import annotations

import time

from flask import Flask

from flask_sockets import Sockets
from flask_sockets.testing import SocketTestClient
from tests.conftest import TIMEOUT
from tests.conftest import wait_until
from tests.redisserver import RedisServer

#: Generous bound for "at once" on a busy machine: far under the 5 s a
#: join waits for a subscription Redis has not confirmed.
PROMPTLY = 2.0


def rooms_app(url: str) -> tuple[Flask, Sockets]:
    app = Flask(__name__)
    app.config.update(SOCKETS_MESSAGE_QUEUE=url, TESTING=True)
    sockets = Sockets(app)

    @sockets.route("/rooms/<room>")
    def in_room(ws, room):
        started = time.monotonic()
        sockets.join(ws, room)
        ws.send(f"{time.monotonic() - started:.3f}")
        while ws.receive() is not None:
            pass

    return app, sockets


def test_a_join_while_redis_is_down_does_not_wait(redis_server: RedisServer) -> None:
    app, sockets = rooms_app(redis_server.url)
    client = SocketTestClient(app, timeout=TIMEOUT)
    try:
        with client.connect("/rooms/up") as ws:
            assert float(ws.receive()) < TIMEOUT  # subscribed: Redis confirmed it
            assert sockets.stats(app=app)["broker_connected"]
            redis_server.stop()
            wait_until(lambda: not sockets.stats(app=app)["broker_connected"])
            for i in range(3):  # every join, not only the first
                with client.connect(f"/rooms/down-{i}") as other:
                    assert float(other.receive()) < PROMPTLY, "a join waited for a Redis known to be down"
            assert sockets.count("up", app=app) == 1
    finally:
        sockets.rooms_for(app).close()
