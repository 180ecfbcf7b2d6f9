"""Fan-out and presence through a real Redis Cluster (3 masters, 1 replica
each) with sharded pub/sub: two gunicorn workers and two server processes
standing in for hosts; then the master that owns a busy room's slot is
stopped under them, and its replica takes over."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import typing as t

import pytest
from websockets.sync.client import ClientConnection

from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.conftest import free_port
from tests.conftest import wait_until
from tests.integration.gunicorn import gunicorn_argv
from tests.integration.test_redis import APP
from tests.integration.test_redis import http
from tests.integration.test_redis import join
from tests.integration.test_redis import on_both_workers
from tests.integration.test_redis import publish_from_a_job
from tests.integration.test_redis import receive_all
from tests.integration.test_redis import stats
from tests.redisserver import RedisClusterServer

pytestmark = pytest.mark.slow


def host(spawn: t.Callable[..., Process], cluster: RedisClusterServer) -> Process:
    port = free_port()
    return spawn([sys.executable, "-m", APP, str(port)], port=port, env={"REDIS_URL": cluster.url})


def room_channel(room: str) -> str:
    return f"flask-sockets:room:{room}"


def test_sharded_fan_out_reaches_only_the_processes_with_members(
    redis_cluster: RedisClusterServer, spawn: t.Callable[..., Process]
) -> None:
    port = free_port()
    workers = spawn(
        gunicorn_argv(port, f"{APP}:app", workers=2),
        port=port,
        env={"REDIS_URL": redis_cluster.url, "GUNICORN_CMD_ARGS": ""},
    )
    hosts = [host(spawn, redis_cluster), host(spawn, redis_cluster)]
    with contextlib.ExitStack() as stack:
        clients = on_both_workers(stack, workers, "a")
        clients.append(join(stack, hosts[0], "a")[0])
        in_b, _ = join(stack, hosts[1], "b")
        # The owner of each room's slot says who is subscribed (PUBSUB
        # SHARDNUMSUB): the two workers and the first host for "a", only the
        # second host for "b".
        assert redis_cluster.shard_numsub(room_channel("a")) == 3
        assert redis_cluster.shard_numsub(room_channel("b")) == 1
        clients[0].send("say from a worker")
        assert receive_all(clients, 1) == [["from a worker"]] * len(clients)
        publish_from_a_job(redis_cluster.url, "a", "from a job")
        for i in range(30):
            clients[-1].send(f"say {i}")
        assert receive_all(clients, 31) == [["from a job"] + [str(i) for i in range(30)]] * len(clients)
        assert stats(hosts[1])["rooms"]["broker_received"] == 0, "a process got messages of a room it has no member in"
        with pytest.raises(TimeoutError):
            in_b.recv(0.2)
        # Room channels spread over the masters (no hash tag pins them to one).
        owners = {redis_cluster.master_for_channel(room_channel(f"room {i}")) for i in range(30)}
        assert owners == set(redis_cluster.master_ports())
        # Presence is the same from every process.
        stack.enter_context(connect_named(hosts[0], "p", "ada"))
        bob = stack.enter_context(connect_named(hosts[1], "p", "bob"))
        assert presence(bob) == ["ada", "bob"]
        # The last member of "b" leaves: its process unsubscribes.
        in_b.close()
        wait_until(lambda: redis_cluster.shard_numsub(room_channel("b")) == 0)
    for process in (workers, *hosts):
        assert process.stop() == 0
        assert "Traceback" not in process.output(), process.output()


@contextlib.contextmanager
def connect_named(process: Process, room: str, name: str) -> t.Iterator[ClientConnection]:
    from websockets.sync.client import connect

    with connect(f"{process.server.ws_url}/rooms/{room}?name={name}", open_timeout=TIMEOUT) as ws:
        while not t.cast(str, ws.recv(TIMEOUT)).startswith("{"):  # skip announcements before the hello
            pass
        yield ws


def presence(ws: ClientConnection) -> list[str]:
    ws.send("presence")
    while True:
        reply = t.cast(str, ws.recv(TIMEOUT))
        if reply.startswith("["):
            return t.cast("list[str]", json.loads(reply))


def test_a_failed_over_master_is_followed(redis_cluster: RedisClusterServer, spawn: t.Callable[..., Process]) -> None:
    hosts = [host(spawn, redis_cluster), host(spawn, redis_cluster)]
    with contextlib.ExitStack() as stack:
        clients = [join(stack, process, "busy")[0] for process in hosts]
        clients[0].send("say before")
        assert receive_all(clients, 1) == [["before"], ["before"]]
        before = [stats(process) for process in hosts]
        master = redis_cluster.master_for_channel(room_channel("busy"))
        replicas = redis_cluster.replica_ports(master)
        redis_cluster.stop_node(master, kill=True)
        stopped = time.monotonic()

        def promoted() -> bool:
            """A replica of the stopped master owns the room's slot now."""
            try:
                return redis_cluster.master_for_channel(room_channel("busy")) in replicas
            except Exception:  # no live master owns it (yet), or the node asked is busy
                return False

        # While no master owns the slot, publishing fails clearly (or, once a
        # replica took over, works): never a hang or a crash.
        while not promoted():
            status, body = http(hosts[1].server.http_url + "/publish/busy", "during")
            assert status in (200, 503), (status, body)
            if status == 503:
                assert "the message queue at redis+cluster://127.0.0.1" in body and "unavailable" in body, body
            assert time.monotonic() - stopped < 40, "no failover"
            time.sleep(0.1)
        # Messages flow again, to both processes, without restarting them.
        deadline = time.monotonic() + 30
        while True:
            status, _ = http(hosts[1].server.http_url + "/publish/busy", "after")
            if status == 200:
                got = [_drain_until(ws, "after", deadline) for ws in clients]
                if all(got):
                    break
            assert time.monotonic() < deadline, "delivery did not resume after the failover"
            time.sleep(0.2)
        wait_until(lambda: all(stats(process)["connected"] for process in hosts), timeout=30)
        assert redis_cluster.shard_numsub(room_channel("busy")) == 2
        for i in range(20):
            clients[0].send(f"say {i}")
        numbers = [str(i) for i in range(20)]
        for ws in clients:  # in order, after any late "during"/"after"
            got: list[str] = []
            while len(got) < 20:
                message = t.cast(str, ws.recv(TIMEOUT))
                if message not in ("during", "after"):
                    got.append(message)
            assert got == numbers
        after = [stats(process) for process in hosts]
        for old, new in zip(before, after):
            assert new["greenlets"] <= old["greenlets"] + 2, "greenlets leaked during the failover"
    for process in hosts:
        assert process.popen.poll() is None, "a server died"
        assert process.stop() == 0
        assert "Traceback" not in process.output(), process.output()


def _drain_until(ws: ClientConnection, wanted: str, deadline: float) -> bool:
    """Read until ``wanted`` arrives (``True``) or nothing more comes for a moment."""
    while time.monotonic() < deadline:
        try:
            if ws.recv(1.0) == wanted:
                return True
        except TimeoutError:
            return False
    return False


def test_cluster_broker_in_process(redis_cluster: RedisClusterServer) -> None:
    """Many rooms at once over every shard; a broker closed leaves no thread."""
    import threading

    from flask_sockets.redis_broker import RedisClusterBroker

    received: list[tuple[str | None, t.Any]] = []
    broker = RedisClusterBroker(redis_cluster.url, "inproc")
    publisher = RedisClusterBroker(redis_cluster.url, "inproc")
    try:
        broker.start(lambda room, message: received.append((room, message)))
        rooms = [f"room {i}" for i in range(2000)]
        for room in rooms:
            broker.subscribe(room)
        assert broker.wait_until_ready(TIMEOUT, rooms[-1])
        wait_until(lambda: broker.subscriptions == 2001)
        assert broker.connected and len(broker._workers) == 3  # one subscriber per master
        assert redis_cluster.shard_numsub("inproc:room:room 7") == 1
        for room in ("room 0", "room 1999", None):
            if room is None:
                publisher.publish(None, "everyone")
            else:
                publisher.publish(room, room)
        expected = [("room 0", "room 0"), ("room 1999", "room 1999"), (None, "everyone")]
        wait_until(lambda: sorted(received, key=str) == sorted(expected, key=str))
        for room in rooms:
            broker.unsubscribe(room)
        wait_until(lambda: broker.subscriptions == 1)
        assert redis_cluster.shard_numsub("inproc:room:room 7") == 0
        # Presence entries on the cluster: stored, refreshed (pipelined over
        # the shards), read, swept.
        store = broker.presence_store()
        entries = {f"room {i}": [f"id{i}\n{i}"] for i in range(20)}
        for room, [entry] in entries.items():
            store.add(room, entry)
        assert store.refresh(entries, list(entries)) == ([], [])
        assert all(store.read(room) == [entry] for room, [entry] in entries.items())
        assert store.remove("room 3", "id3\n3") and not store.remove("room 3", "id3\n3")
        # A room name Redis cannot carry is refused clearly.
        with pytest.raises(ValueError, match="valid Unicode"):
            broker.subscribe("\ud800")
    finally:
        broker.close()
        publisher.close()
    wait_until(lambda: not [th for th in threading.enumerate() if th.name.startswith("flask-sockets")])


def test_cluster_url_forms() -> None:
    from flask_sockets.brokers import broker_from_config
    from flask_sockets.redis_broker import RedisClusterBroker

    broker = broker_from_config({"SOCKETS_MESSAGE_QUEUE": "rediss+cluster://u:pw@h1:7000,[::1]:7001/?ssl_cert_reqs=none"})
    assert isinstance(broker, RedisClusterBroker)
    assert broker.startup_nodes == ["h1:7000", "[::1]:7001"]
    assert broker._node_url("[::1]:7001") == "rediss://u:pw@[::1]:7001?ssl_cert_reqs=none"
    assert "pw" not in repr(broker)
    with pytest.raises(ValueError, match="names at least one node"):
        RedisClusterBroker("redis+cluster:///")
    with pytest.raises(ValueError, match="host:port"):
        RedisClusterBroker("redis+cluster://h1/")._node_url("h1")
