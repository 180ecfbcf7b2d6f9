"""Presence (flask_sockets.presence): in one process, and across "processes"
(apps sharing a fakeredis server; tests/integration has the real ones), with
the heartbeat, the TTL and the once-per-deployment changes."""

from __future__ import annotations

import json
import threading
import time
import typing as t

import fakeredis
import pytest
from flask import Flask

from flask_sockets import PresenceChange
from flask_sockets import Sockets
from flask_sockets.presence import RedisPresence
from flask_sockets.presence import decode_entry
from flask_sockets.presence import encode_entry
from flask_sockets.redis_broker import RedisBroker
from flask_sockets.rooms import Rooms
from flask_sockets.testing import SocketTestClient
from tests.conftest import wait_until


def make_app(**config: t.Any) -> tuple[Flask, Sockets, list[PresenceChange]]:
    """``/rooms/<room>?name=N`` joins ``room`` present as ``{"name": N}``,
    says ``joined``, then answers ``presence`` with the sorted names and
    obeys ``leave``; every change reported to this app is recorded."""
    app = Flask(__name__)
    app.config.update(config)
    sockets = Sockets(app)
    changes: list[PresenceChange] = []

    @sockets.route("/rooms/<room>")
    def in_room(ws: t.Any, room: str) -> None:
        from flask import request

        presence_id = sockets.join(ws, room, presence={"name": request.args["name"]})
        assert presence_id in sockets.presence(room) and presence_id == changes[-1].id
        assert sockets.join(ws, "no presence") is None
        ws.send("joined")
        while True:
            message = ws.receive()
            if message is None:
                return
            if message == "presence":
                ws.send(json.dumps(sorted(p["name"] for p in sockets.presence(room).values())))
            elif message == "leave":
                sockets.leave(ws, room)
                ws.send("left")
            elif message.startswith("rejoin "):
                again = sockets.join(ws, room, presence={"name": message[7:]})
                assert again == changes[-1].id  # the id it returns is the one reported
                ws.send("joined")

    @sockets.on_presence
    def record(change: PresenceChange) -> None:
        from flask import current_app

        assert current_app._get_current_object() is app  # type: ignore[attr-defined]
        changes.append(change)

    return app, sockets, changes


def names(sockets: Sockets, app: Flask, room: str = "r") -> list[str]:
    return sorted(p["name"] for p in sockets.presence(room, app=app).values())


def kinds(changes: list[PresenceChange]) -> list[tuple[str, str]]:
    return [(c.kind, c.data["name"]) for c in changes]


def test_entry_encoding() -> None:
    entry = encode_entry("abc", json.dumps({"name": "Ada\nLovelace"}))
    assert decode_entry(entry) == ("abc", {"name": "Ada\nLovelace"})
    assert decode_entry(entry.encode()) == decode_entry(entry)


def test_presence_in_one_process() -> None:
    app, sockets, changes = make_app()
    client = SocketTestClient(app)
    with client.connect("/rooms/r?name=ada") as ada:
        assert ada.receive() == "joined"
        with client.connect("/rooms/r?name=bob") as bob:
            assert bob.receive() == "joined"
            assert names(sockets, app) == ["ada", "bob"]
            ada.send("presence")
            assert ada.receive() == '["ada", "bob"]'
            # The ids are the keys, unique; the changes carry them.
            ids = set(sockets.presence("r", app=app))
            assert ids == {c.id for c in changes} and len(ids) == 2
            assert kinds(changes) == [("join", "ada"), ("join", "bob")]
            assert all(c.room == "r" for c in changes)
            bob.send("leave")
            assert bob.receive() == "left"
            assert names(sockets, app) == ["ada"]
            assert kinds(changes)[-1] == ("leave", "bob")
            bob.send("rejoin robert")
            assert bob.receive() == "joined"
            assert names(sockets, app) == ["ada", "robert"]
            # Joining again with another payload replaces the entry, same id.
            bob.send("rejoin bobby")
            assert bob.receive() == "joined"
            assert names(sockets, app) == ["ada", "bobby"]
            assert changes[-1].id == changes[-2].id and kinds(changes)[-2:] == [("join", "robert"), ("join", "bobby")]
        # The handler ended: its entry went, once.
        wait_until(lambda: names(sockets, app) == ["ada"])
        assert kinds(changes).count(("leave", "bobby")) == 1
    wait_until(lambda: names(sockets, app) == [])
    assert Rooms.of(app).stats()["presence_entries"] == 0
    assert Rooms.of(app).presence_keeper.heartbeat is None  # in-process entries need no heartbeat


def test_presence_payload_is_checked() -> None:
    app, sockets = Flask(__name__), None
    app.config["SOCKETS_PRESENCE_MAX_SIZE"] = 20
    sockets = Sockets(app)
    seen: list[str] = []

    @sockets.route("/p")
    def p(ws: t.Any) -> None:
        for payload in ({"x": object()}, {"name": "x" * 20}, {"name": "ok"}):
            try:
                sockets.join(ws, "r", presence=payload)
            except (TypeError, ValueError) as e:
                seen.append(f"{type(e).__name__}: {e}")
            else:
                seen.append("joined")
        ws.send("done")

    with SocketTestClient(app).connect("/p") as ws:
        assert ws.receive() == "done"
    assert seen[0].startswith("TypeError: A presence payload must be JSON-serialisable")
    assert seen[1] == "ValueError: A presence payload is at most SOCKETS_PRESENCE_MAX_SIZE (20) bytes of JSON"
    assert seen[2] == "joined"


def test_a_failing_callback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    app, sockets, _ = make_app()

    @sockets.on_presence
    def broken(change: PresenceChange) -> None:
        raise RuntimeError("callback bug")

    with SocketTestClient(app).connect("/rooms/r?name=ada") as ws:
        assert ws.receive() == "joined"
        ws.send("presence")
        assert ws.receive() == '["ada"]'
    assert "An on_presence callback failed" in caplog.text and "callback bug" in caplog.text


# -- across processes, through (fake) Redis ------------------------------------------


def redis_app(server: fakeredis.FakeServer, ttl: float) -> tuple[Flask, Sockets, list[PresenceChange]]:
    broker = RedisBroker(
        "redis://fake:6379/0",
        "test",
        client_factory=lambda: fakeredis.FakeRedis(server=server),
        reconnect_delay=(0.05, 0.2),
        presence_ttl=ttl,
    )
    return make_app(SOCKETS_MESSAGE_QUEUE=broker)


def test_presence_across_processes_and_a_dead_one() -> None:
    server = fakeredis.FakeServer()
    ttl = 0.6
    (app1, sockets1, changes1), (app2, sockets2, changes2) = redis_app(server, ttl), redis_app(server, ttl)
    c1, c2 = SocketTestClient(app1), SocketTestClient(app2)
    try:
        with c1.connect("/rooms/r?name=ada") as ada, c2.connect("/rooms/r?name=bob") as bob:
            assert ada.receive() == bob.receive() == "joined"
            assert names(sockets1, app1) == names(sockets2, app2) == ["ada", "bob"]
            assert kinds(changes1) == [("join", "ada")] and kinds(changes2) == [("join", "bob")]
            # Heartbeats keep the entries alive well past the TTL.
            time.sleep(ttl * 2)
            assert names(sockets1, app1) == ["ada", "bob"]
            assert Rooms.of(app2).stats()["presence_entries"] == 1
            # Process 2 "dies": its heartbeat stops and it never removes its entry.
            Rooms.of(app2).presence_keeper._stopping.set()
            heartbeat = Rooms.of(app2).presence_keeper.heartbeat
            assert heartbeat is not None
            heartbeat.join(5)
            died = time.monotonic()
            wait_until(lambda: names(sockets1, app1) == ["ada"], timeout=5)
            assert time.monotonic() - died <= ttl + 0.5
            # The survivor reports the dead entry's leave, once, within TTL * 4/3.
            wait_until(lambda: ("leave", "bob") in kinds(changes1), timeout=5)
            assert time.monotonic() - died <= ttl * 4 / 3 + 0.5
            time.sleep(ttl)
            assert kinds(changes1).count(("leave", "bob")) == 1
            assert ("leave", "bob") not in kinds(changes2)
    finally:
        for app in (app1, app2):
            Rooms.of(app).close()


def test_expired_entries_of_a_live_process_come_back() -> None:
    """A process that could not reach Redis for longer than the TTL puts
    its entries back, and reports them as joins."""
    server = fakeredis.FakeServer()
    app, sockets, changes = redis_app(server, 0.6)
    try:
        with SocketTestClient(app).connect("/rooms/r?name=ada") as ada:
            assert ada.receive() == "joined"
            fakeredis.FakeRedis(server=server).delete("test:presence:r")  # as if it expired
            assert names(sockets, app) == []
            wait_until(lambda: names(sockets, app) == ["ada"], timeout=5)
            assert kinds(changes) == [("join", "ada"), ("join", "ada")]
    finally:
        Rooms.of(app).close()


def test_redis_presence_store_sweeps_once() -> None:
    server = fakeredis.FakeServer()
    clients = [fakeredis.FakeRedis(server=server) for _ in range(2)]

    stores = [RedisPresence(lambda c=c: c, "p", 0.5) for c in clients]  # type: ignore[misc]
    stores[0].add("r", "a\n1")
    stores[1].add("r", "b\n2")
    assert sorted(stores[1].read("r")) == ["a\n1", "b\n2"]
    time.sleep(0.7)
    assert stores[1].read("r") == []
    # Both sweep at once: both read the expired entries before either
    # removes them; each entry is still reported by exactly one.
    both_read = threading.Barrier(2, timeout=5)

    class Racing:
        def __init__(self, client: fakeredis.FakeRedis) -> None:
            self.client = client

        def pipeline(self, transaction: bool = False) -> t.Any:
            pipe = self.client.pipeline(transaction=transaction)
            execute = pipe.execute

            def execute_then_wait() -> t.Any:
                results = execute()
                if any(isinstance(result, list) for result in results):  # the ZRANGEBYSCOREs
                    both_read.wait()
                return results

            pipe.execute = execute_then_wait  # type: ignore[method-assign]
            return pipe

        def time(self) -> t.Any:
            return self.client.time()

    racing = [RedisPresence(lambda c=c: Racing(c), "p", 0.5) for c in clients]  # type: ignore[misc]
    results: list[list[tuple[str, str]]] = []
    errors: list[BaseException] = []

    def sweep(store: RedisPresence) -> None:
        try:
            results.append(store.refresh({}, ["r"])[1])
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=sweep, args=(store,)) for store in racing]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2, (errors, results)
    assert sorted(pair for result in results for pair in result) == [("r", "a\n1"), ("r", "b\n2")]
    assert clients[0].exists("p:presence:r") == 0
    with pytest.raises(ValueError, match="SOCKETS_PRESENCE_TTL must be positive"):
        RedisPresence(lambda: None, "p", 0)


def test_a_heartbeat_racing_a_leave_leaves_no_entry_behind() -> None:
    """The heartbeat read this process's entries, then the socket left
    (its entry removed), then the heartbeat's refresh reached Redis and put
    the entry back: it is taken out again, and not reported twice."""
    server = fakeredis.FakeServer()
    app, sockets, changes = redis_app(server, ttl=60)  # no heartbeat of its own during the test
    rooms = Rooms.of(app)
    try:
        with SocketTestClient(app).connect("/rooms/r?name=ada") as ada:
            assert ada.receive() == "joined"
            store = rooms.presence_store
            refresh = store.refresh

            def late_refresh(mine: t.Any, rooms_in: t.Any) -> t.Any:
                rooms.leave(rooms.members("r")[0], "r")  # the leave wins the race to Redis
                return refresh(mine, rooms_in)

            store.refresh = late_refresh  # type: ignore[method-assign]
            rooms.presence_keeper.beat_once(store, ["r"])
            assert names(sockets, app) == []
            assert kinds(changes) == [("join", "ada"), ("leave", "ada")]
    finally:
        rooms.close()
