"""``sockets.disconnect(room, code, reason)`` across processes and hosts
through a real Redis server and a real Redis Cluster: a user's sockets on
two gunicorn workers and on another host are closed with the code and
reason by a process that serves no sockets, and the other sockets stay
open."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import typing as t

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import ClientConnection

from flask_sockets import Sockets
from flask_sockets.rooms import Rooms
from flask_sockets.testing import SocketTestClient
from tests.conftest import ROOT
from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.integration.test_redis import APP
from tests.integration.test_redis import gunicorn_workers
from tests.integration.test_redis import host
from tests.integration.test_redis import join
from tests.integration.test_redis import on_both_workers
from tests.integration.test_redis_cluster import host as cluster_host
from tests.redisserver import RedisClusterServer
from tests.redisserver import RedisServer

pytestmark = pytest.mark.slow


def disconnect_from_a_job(url: str, room: str, code: int, reason: str) -> None:
    """``sockets.disconnect`` from a process of its own that serves no
    sockets (an admin script, or the worker that handled a logout)."""
    job = subprocess.run(
        [sys.executable, "-c", f"from {APP} import sockets; sockets.disconnect({room!r}, {code!r}, {reason!r})"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert job.returncode == 0, job.stderr


def assert_closed(ws: ClientConnection, code: int, reason: str) -> None:
    with pytest.raises(ClientClosed) as closed:
        while True:  # presence announcements of the room may come first
            ws.recv(TIMEOUT)
    assert closed.value.rcvd is not None, closed.value
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, reason)


def assert_open(ws: ClientConnection) -> None:
    ws.send("echo still here")
    assert ws.recv(TIMEOUT) == "echo still here"


def test_a_users_sockets_are_closed_on_every_worker_and_host(
    redis_server: RedisServer, spawn: t.Callable[..., Process]
) -> None:
    workers = gunicorn_workers(spawn, redis_server)
    elsewhere = host(spawn, redis_server)
    with contextlib.ExitStack() as stack:
        users = on_both_workers(stack, workers, "user:42")  # one socket on each worker, at least
        users.append(join(stack, elsewhere, "user:42")[0])
        others = [join(stack, workers, "user:7")[0], join(stack, elsewhere, "user:7")[0]]

        disconnect_from_a_job(redis_server.url, "user:42", 4403, "Session revoked")
        for ws in users:
            assert_closed(ws, 4403, "Session revoked")
        for ws in others:
            assert_open(ws)
        # The user logs in again: the room works as before.
        again, _ = join(stack, elsewhere, "user:42")
        again.send("say welcome back")
        assert again.recv(TIMEOUT) == "welcome back"
        assert_open(again)


def test_a_disconnect_through_redis_takes_no_place_in_the_history(redis_server: RedisServer) -> None:
    app = Flask(__name__)
    app.config["SOCKETS_MESSAGE_QUEUE"] = redis_server.url
    sockets = Sockets(app)
    sockets.history("kept", size=10)

    @sockets.route("/kept")
    def kept(ws: t.Any) -> None:
        sockets.join(ws, "kept")
        ws.send("joined")
        while ws.receive() is not None:
            pass

    try:
        with SocketTestClient(app).connect("/kept") as ws:
            assert ws.receive(timeout=TIMEOUT) == "joined"
            first = sockets.publish("kept", "one", app=app)
            assert ws.receive(timeout=TIMEOUT) == "one"
            sockets.disconnect("kept", 4401, "token expired", app=app)
            assert ws.receive(timeout=TIMEOUT) is None
            assert (ws.close_code, ws.close_reason) == (4401, "token expired")
        second = sockets.publish("kept", "two", app=app)
        assert first is not None and second is not None
        assert (second.offset, second.epoch) == (first.offset + 1, first.epoch)
        assert sockets.stats(app=app)["disconnected"] == 1
    finally:
        Rooms.of(app).close()


def test_a_users_sockets_are_closed_on_every_host_of_a_redis_cluster(
    redis_cluster: RedisClusterServer, spawn: t.Callable[..., Process]
) -> None:
    hosts = [cluster_host(spawn, redis_cluster), cluster_host(spawn, redis_cluster)]
    with contextlib.ExitStack() as stack:
        users = [join(stack, process, "user:42")[0] for process in hosts]
        others = [join(stack, process, "user:7")[0] for process in hosts]
        disconnect_from_a_job(redis_cluster.url, "user:42", 4401, "Logged out")
        for ws in users:
            assert_closed(ws, 4401, "Logged out")
        for ws in others:
            assert_open(ws)
