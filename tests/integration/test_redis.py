"""Fan-out through a real Redis server: two gunicorn workers, two separate
server processes (standing in for two hosts) and a process that only
publishes, all on one Redis; then Redis stopped and started again under
running servers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect

from tests.conftest import ROOT
from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.conftest import free_port
from tests.conftest import wait_until
from tests.integration.gunicorn import gunicorn_argv
from tests.redisserver import RedisServer

pytestmark = pytest.mark.slow

APP = "tests.integration.fanout_app"


def http(url: str, body: str | None = None) -> tuple[int, str]:
    """``(status, body)`` of a GET (or a POST of ``body``); error statuses are returned."""
    data = None if body is None else body.encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data), timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        with contextlib.closing(e):
            return e.code, e.read().decode()


def stats(process: Process) -> dict[str, t.Any]:
    status, body = http(process.server.http_url + "/stats")
    assert status == 200, body
    return t.cast("dict[str, t.Any]", json.loads(body))


def host(spawn: t.Callable[..., Process], redis: RedisServer) -> Process:
    """A server process of its own (``flask_sockets_gevent.run``), as on another host."""
    port = free_port()
    return spawn([sys.executable, "-m", APP, str(port)], port=port, env={"REDIS_URL": redis.url})


def gunicorn_workers(spawn: t.Callable[..., Process], redis: RedisServer) -> Process:
    """Two gunicorn workers of the app."""
    port = free_port()
    argv = gunicorn_argv(port, f"{APP}:app", workers=2)
    return spawn(argv, port=port, env={"REDIS_URL": redis.url, "GUNICORN_CMD_ARGS": ""})


def join(stack: contextlib.ExitStack, process: Process, room: str) -> tuple[ClientConnection, int]:
    """A client in ``room`` on ``process``, and the pid of the process that serves it."""
    ws = stack.enter_context(connect(f"{process.server.ws_url}/rooms/{room}", open_timeout=TIMEOUT))
    hello = json.loads(t.cast(str, ws.recv(TIMEOUT)))
    assert hello["joined"] == room
    return ws, int(hello["pid"])


def receive_all(clients: list[ClientConnection], count: int) -> list[list[str | bytes]]:
    return [[ws.recv(TIMEOUT) for _ in range(count)] for ws in clients]


def test_fan_out_across_workers_hosts_and_a_publishing_job(
    redis_server: RedisServer, spawn: t.Callable[..., Process]
) -> None:
    workers = gunicorn_workers(spawn, redis_server)
    host_one, host_two = host(spawn, redis_server), host(spawn, redis_server)
    with contextlib.ExitStack() as stack:
        # gunicorn's workers share the listening socket: connect until both serve a client.
        clients: list[ClientConnection] = []
        pids: set[int] = set()
        for _ in range(40):
            ws, pid = join(stack, workers, "a")
            clients.append(ws)
            pids.add(pid)
            if len(pids) == 2:
                break
        assert len(pids) == 2, "gunicorn served every connection from one worker"
        on_hosts = [join(stack, host_one, "a")[0], join(stack, host_two, "a")[0]]
        bystander, _ = join(stack, host_one, "b")
        everyone = clients + on_hosts

        # From a socket handler in one worker: every worker and host.
        clients[0].send("say from a worker")
        assert receive_all(everyone, 1) == [["from a worker"]] * len(everyone)
        # From an HTTP view on a host.
        assert http(host_two.server.http_url + "/publish/a", "from a view") == (200, "ok")
        assert receive_all(everyone, 1) == [["from a view"]] * len(everyone)
        # From a process that serves no sockets at all.
        job = subprocess.run(
            [sys.executable, "-c", f"from {APP} import sockets; sockets.publish('a', 'from a job')"],
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": redis_server.url},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert job.returncode == 0, job.stderr
        assert receive_all(everyone, 1) == [["from a job"]] * len(everyone)
        # One publisher's messages arrive everywhere in order.
        for i in range(50):
            on_hosts[0].send(f"say {i}")
        assert receive_all(everyone, 50) == [[str(i) for i in range(50)]] * len(everyone)
        # Another room heard none of it.
        with pytest.raises(TimeoutError):
            bystander.recv(0.2)


def test_redis_outage_and_recovery(redis_server: RedisServer, spawn: t.Callable[..., Process]) -> None:
    hosts = [host(spawn, redis_server), host(spawn, redis_server)]
    with contextlib.ExitStack() as stack:
        clients = [join(stack, process, "a")[0] for process in hosts]
        clients[0].send("say before")
        assert receive_all(clients, 1) == [["before"], ["before"]]
        before = [stats(process) for process in hosts]
        assert all(s["connected"] and s["sockets"] == 1 for s in before)

        redis_server.stop()
        wait_until(lambda: not any(stats(process)["connected"] for process in hosts))
        for process in hosts:
            # HTTP and the open sockets keep working; publishing fails clearly.
            assert http(process.server.http_url + "/") == (200, "hello over http")
            status, body = http(process.server.http_url + "/publish/a", "lost")
            assert status == 503
            assert f"the message queue at {redis_server.url} is unavailable" in body
        clients[1].send("say lost")
        reply = t.cast(str, clients[1].recv(TIMEOUT))
        assert reply.startswith("error Could not publish to room 'a'"), reply
        clients[0].send("echo still here")
        assert clients[0].recv(TIMEOUT) == "echo still here"
        time.sleep(1)  # a few reconnection attempts fail

        redis_server.start()
        wait_until(lambda: all(stats(process)["connected"] for process in hosts))
        for i in range(20):
            clients[1].send(f"say after {i}")
        assert receive_all(clients, 20) == [[f"after {i}" for i in range(20)]] * 2
        after = [stats(process) for process in hosts]
        for old, new in zip(before, after):
            assert new["sockets"] == old["sockets"] == 1
            assert new["greenlets"] <= old["greenlets"], "greenlets leaked during the outage"
    for process in hosts:
        assert process.popen.poll() is None, "a server died"
        assert process.stop() == 0
        log = process.output()
        assert "cannot receive messages" in log and "reconnected; receiving messages again" in log
        assert "Traceback" not in log, log
