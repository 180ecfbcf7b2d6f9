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
from tests.scrape import scrape
from tests.scrape import value

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


def until_both_workers(connect_one: t.Callable[[int], tuple[ClientConnection, int]]) -> dict[int, list[int]]:
    """Call ``connect_one(i)`` (a client, and the pid of the gunicorn worker
    that serves it) for i = 0, 1, ... until both workers serve one: they
    share the listening socket, and one may still be starting (a loaded
    machine). Bounded: 100 clients, ``TIMEOUT`` seconds. Returns the
    indexes of the clients by pid."""
    by_pid: dict[int, list[int]] = {}
    deadline = time.monotonic() + TIMEOUT
    for i in range(100):
        _, pid = connect_one(i)
        by_pid.setdefault(pid, []).append(i)
        if len(by_pid) == 2:
            return by_pid
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)  # let the other worker (still starting?) take the next one
    pytest.fail(f"gunicorn served every connection from one worker ({i + 1} in {TIMEOUT} s)")


def on_both_workers(stack: contextlib.ExitStack, workers: Process, room: str) -> list[ClientConnection]:
    """Clients in ``room`` on the two gunicorn workers of ``workers``."""
    clients: list[ClientConnection] = []

    def connect_one(i: int) -> tuple[ClientConnection, int]:
        ws, pid = join(stack, workers, room)
        clients.append(ws)
        return ws, pid

    until_both_workers(connect_one)
    return clients


def publish_from_a_job(url: str, room: str, text: str) -> None:
    """Publish from a process of its own that serves no sockets (a cron job)."""
    job = subprocess.run(
        [sys.executable, "-c", f"from {APP} import sockets; sockets.publish({room!r}, {text!r})"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert job.returncode == 0, job.stderr


def receive_all(clients: list[ClientConnection], count: int) -> list[list[str | bytes]]:
    return [[ws.recv(TIMEOUT) for _ in range(count)] for ws in clients]


def test_fan_out_across_workers_hosts_and_a_publishing_job(
    redis_server: RedisServer, spawn: t.Callable[..., Process]
) -> None:
    workers = gunicorn_workers(spawn, redis_server)
    host_one, host_two = host(spawn, redis_server), host(spawn, redis_server)
    with contextlib.ExitStack() as stack:
        clients = on_both_workers(stack, workers, "a")
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
        publish_from_a_job(redis_server.url, "a", "from a job")
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
            assert (old["rooms"]["broker_reconnects"], new["rooms"]["broker_reconnects"]) == (0, 1)
            assert new["greenlets"] <= old["greenlets"], "greenlets leaked during the outage"
    for process in hosts:
        assert process.popen.poll() is None, "a server died"
        assert process.stop() == 0
        log = process.output()
        assert "cannot receive messages" in log and "reconnected; receiving messages again" in log
        assert "Traceback" not in log, log


# -- one channel per room ---------------------------------------------------------


def numsub(redis_server: RedisServer, *channels: str) -> list[int]:
    """How many connections Redis has subscribed to each channel."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        return [count for _, count in client.pubsub_numsub(*channels)]


ROOM_A, ROOM_B, BROADCAST = "flask-sockets:room:a", "flask-sockets:room:b", "flask-sockets:broadcast"


def test_each_process_subscribes_only_to_its_own_rooms(
    redis_server: RedisServer, spawn: t.Callable[..., Process]
) -> None:
    hosts = [host(spawn, redis_server), host(spawn, redis_server)]
    with contextlib.ExitStack() as stack:
        in_a, _ = join(stack, hosts[0], "a")
        in_b, _ = join(stack, hosts[1], "b")
        # Redis itself says who holds which channel: a process with no member
        # in a room is not subscribed to it; every process serving sockets
        # holds the broadcast channel.
        assert numsub(redis_server, ROOM_A, ROOM_B, BROADCAST) == [1, 1, 2]
        for i in range(20):
            assert http(hosts[1].server.http_url + "/publish/a", f"m{i}") == (200, "ok")
        assert receive_all([in_a], 20) == [[f"m{i}" for i in range(20)]]
        one, two = (stats(process)["rooms"] for process in hosts)
        assert (one["broker_received"], one["deliveries"], one["subscriptions"], one["rooms"]) == (20, 20, 2, 1)
        # The other process published them all and received none.
        assert (two["broker_received"], two["broker_published"]) == (0, 20)
        assert one["broker_connected"] and one["broker_last_error"] is None and one["sockets"] == 1
        # The last member leaves: the process unsubscribes.
        in_a.close()
        wait_until(lambda: numsub(redis_server, ROOM_A, BROADCAST) == [0, 2])
        wait_until(lambda: stats(hosts[0])["rooms"]["subscriptions"] == 1)
        in_b.send("say still here")
        assert in_b.recv(TIMEOUT) == "still here"


def test_subscriptions_are_batched(redis_server: RedisServer) -> None:
    """10,000 joins at start-up are a few SUBSCRIBE commands, not 10,000."""
    import redis

    from flask_sockets.redis_broker import RedisBroker

    received: list[tuple[str | None, t.Any]] = []
    broker, publisher = RedisBroker(redis_server.url, "batch"), RedisBroker(redis_server.url, "batch")
    try:
        broker.start(lambda room, message: received.append((room, message)))
        rooms = [f"room {i}" for i in range(10_000)]
        for room in rooms:
            broker.subscribe(room)
        assert broker.wait_until_ready(TIMEOUT, rooms[-1])
        wait_until(lambda: broker.subscriptions == 10_001)
        with redis.Redis.from_url(redis_server.url) as client:
            calls = client.info("commandstats")["cmdstat_subscribe"]["calls"]
            assert calls <= 15, f"{calls} SUBSCRIBE commands for 10,001 channels"
            publisher.publish("room 9999", "hello")
            wait_until(lambda: received == [("room 9999", "hello")])
            for room in rooms:
                broker.unsubscribe(room)
            wait_until(lambda: broker.subscriptions == 1)
            assert client.info("commandstats")["cmdstat_unsubscribe"]["calls"] <= 15
            assert client.pubsub_numsub("batch:room:room 1") == [(b"batch:room:room 1", 0)]
    finally:
        broker.close()
        publisher.close()


# -- presence ---------------------------------------------------------------------


def first_json(ws: ClientConnection) -> str:
    """The first message that is a JSON object (skipping announcements)."""
    while True:
        message = t.cast(str, ws.recv(TIMEOUT))
        if message.startswith("{"):
            return message


def test_presence_across_workers_and_a_killed_one(redis_server: RedisServer, spawn: t.Callable[..., Process]) -> None:
    ttl = 2.0
    port = free_port()
    argv = gunicorn_argv(port, f"{APP}:app", workers=2)
    env = {"REDIS_URL": redis_server.url, "GUNICORN_CMD_ARGS": "", "PRESENCE_TTL": str(ttl)}
    workers = spawn(argv, port=port, env=env)
    with contextlib.ExitStack() as stack:
        clients: dict[int, list[tuple[ClientConnection, str]]] = {}

        def connect_one(i: int) -> tuple[ClientConnection, int]:
            ws = stack.enter_context(connect(f"{workers.server.ws_url}/rooms/p?name=n{i}", open_timeout=TIMEOUT))
            pid = int(json.loads(first_json(ws))["pid"])
            clients.setdefault(pid, []).append((ws, f"n{i}"))
            return ws, pid

        until_both_workers(connect_one)
        everyone = sorted(name for pairs in clients.values() for _, name in pairs)

        def presence(ws: ClientConnection) -> list[str]:
            ws.send("presence")
            while True:  # skip the join/leave announcements
                reply = t.cast(str, ws.recv(TIMEOUT))
                if reply.startswith("["):
                    return t.cast("list[str]", json.loads(reply))

        # Every worker sees every worker's sockets.
        for pairs in clients.values():
            assert presence(pairs[0][0]) == everyone
        victim, survivor = list(clients)
        gone = sorted(name for _, name in clients[victim])
        left = sorted(name for _, name in clients[survivor])
        watcher = clients[survivor][0][0]
        os.kill(victim, 9)
        killed = time.monotonic()
        # Its entries vanish within the TTL...
        while presence(watcher) != left:
            assert time.monotonic() - killed < ttl + 2, "a killed worker's entries outlived the TTL"
            time.sleep(0.1)
        # ... and their leave is announced once, within TTL * 4/3.
        announced: list[str] = []
        deadline = time.monotonic() + ttl * 4 / 3 + 3
        while sorted(announced) != gone and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                message = t.cast(str, watcher.recv(0.2))
                if message.startswith("leave "):
                    announced.append(message[6:])
        assert sorted(announced) == gone
        assert time.monotonic() - killed < ttl * 4 / 3 + 2
        with contextlib.suppress(TimeoutError):
            while True:  # no second announcement of the same entries
                message = t.cast(str, watcher.recv(ttl))
                assert not message.startswith("leave "), message
    assert workers.stop() == 0
    assert "Traceback" not in workers.output(), workers.output()


class MetricsServer(t.NamedTuple):
    """A gevent server of an app with metrics and a room socket route, on a real Redis."""

    server: t.Any
    sockets: t.Any
    app: t.Any


@pytest.fixture
def metrics_server(redis_server: RedisServer, serve: t.Callable[..., t.Any]) -> t.Iterator[MetricsServer]:
    """The server of an app whose ``/room`` sockets join ``lobby`` and say
    ``joined``, with metrics (its own registry) at ``/metrics``."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from flask import Flask

    from flask_sockets import Sockets
    from flask_sockets.metrics import metrics_view

    app = Flask("server")
    app.config["SOCKETS_MESSAGE_QUEUE"] = redis_server.url
    sockets = Sockets(app)
    sockets.enable_metrics(registry=prometheus_client.CollectorRegistry())
    app.add_url_rule("/metrics", view_func=metrics_view)

    @sockets.route("/room")
    def room(ws: t.Any) -> None:
        sockets.join(ws, "lobby")
        ws.send("joined")
        while ws.receive() is not None:
            pass

    try:
        yield MetricsServer(serve(app), sockets, app)
    finally:
        sockets.rooms_for(app).close()


def test_metrics_publish_to_delivery_lag_through_redis(
    redis_server: RedisServer, metrics_server: MetricsServer
) -> None:
    """A message published by another process (here: another app, as a job
    would) reaches the server through a real Redis; the server's
    flask_sockets_broker_lag_seconds counts it, with a plausible lag."""
    from flask import Flask

    from flask_sockets import Sockets
    job = Flask("job")
    job.config["SOCKETS_MESSAGE_QUEUE"] = redis_server.url
    job_sockets = Sockets(job)
    server = metrics_server.server
    try:
        with connect(server.ws_url + "/room", open_timeout=TIMEOUT) as ws:
            assert ws.recv(timeout=TIMEOUT) == "joined"
            for i in range(5):
                job_sockets.publish("lobby", f"m{i}", app=job)
            assert [ws.recv(timeout=TIMEOUT) for _ in range(5)] == [f"m{i}" for i in range(5)]
            samples = scrape(server.http_url)
            assert value(samples, "flask_sockets_broker_lag_seconds_count") == 5
            assert 0 < value(samples, "flask_sockets_broker_lag_seconds_sum") < 5 * TIMEOUT
            assert value(samples, "flask_sockets_broker_received_total") == 5
            assert value(samples, "flask_sockets_deliveries_total") == 5
    finally:
        job_sockets.rooms_for(job).close()


def test_metrics_count_broker_reconnects(redis_server: RedisServer, metrics_server: MetricsServer) -> None:
    """Redis goes away and comes back: the subscriber's reconnect is counted
    in Rooms.stats()['broker_reconnects'] and flask_sockets_broker_reconnects_total."""
    server = metrics_server.server
    rooms = metrics_server.sockets.rooms_for(metrics_server.app)

    def reconnects() -> float:
        return value(scrape(server.http_url), "flask_sockets_broker_reconnects_total")

    with connect(server.ws_url + "/room", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "joined"
        assert rooms.broker.connected and reconnects() == 0
        redis_server.stop()
        wait_until(lambda: not rooms.broker.connected)
        redis_server.start()
        wait_until(lambda: rooms.broker.connected)
        assert rooms.stats()["broker_reconnects"] == 1
        assert reconnects() == 1
