"""Room history and recovery (issue 21): on the local broker (in-process),
on a real Redis server and on a real Redis Cluster, with the same tests.

A client that resumes a room from its last position gets every message
after it, in order, then the live ones, with no gap and no duplicate; or
``recovered=False`` and nothing (never a partial replay) when the history
cannot honour it: another epoch (FLUSHALL), trimmed, expired, too long,
Redis down.
"""

from __future__ import annotations

import json
import threading
import time
import typing as t

import pytest
from flask import Flask
from flask import request

from flask_sockets import Recovery
from flask_sockets import Sockets
from flask_sockets.rooms import Rooms
from flask_sockets.testing import SocketTestClient
from flask_sockets.testing import TestSocket
from tests.conftest import TIMEOUT
from tests.redisserver import RedisClusterServer
from tests.redisserver import RedisServer
from tests.redisserver import command

pytestmark = pytest.mark.slow

BACKENDS = ["local", "redis", "cluster"]


class Backend:
    """Where the history lives, and how to lose it."""

    def __init__(self, name: str, request: pytest.FixtureRequest) -> None:
        self.name = name
        self.server: RedisServer | None = None
        self.cluster: RedisClusterServer | None = None
        if name == "redis":
            self.server = request.getfixturevalue("redis_server")
        elif name == "cluster":
            self.cluster = request.getfixturevalue("redis_cluster")
            for port in self.cluster.master_ports():
                command(port, "FLUSHALL")
        self.apps: list[Flask] = []

    @property
    def url(self) -> str | None:
        if self.server is not None:
            return self.server.url
        if self.cluster is not None:
            return self.cluster.url
        return None

    def app(self, **config: t.Any) -> tuple[Flask, Sockets]:
        app = Flask(__name__)
        app.config.update({"SOCKETS_MESSAGE_QUEUE": self.url, "SOCKETS_HISTORY_SIZE": 100, **config})
        sockets = Sockets(app)

        def announce(recovery: Recovery) -> str:
            return json.dumps({"recovered": recovery.recovered, "position": recovery.position})

        @sockets.route("/h/<room>")
        def history(ws: t.Any, room: str) -> None:
            offset, epoch = request.args.get("offset"), request.args.get("epoch")
            position = (int(offset), epoch) if offset is not None and epoch is not None else None
            sockets.resume(ws, room, position, reply=announce)
            while ws.receive() is not None:
                pass

        self.apps.append(app)
        return app, sockets

    def flush(self, app: Flask) -> None:
        """Lose every history (Redis: FLUSHALL)."""
        if self.server is not None:
            command(self.server.port, "FLUSHALL")
        elif self.cluster is not None:
            for port in self.cluster.master_ports():
                command(port, "FLUSHALL")
        else:
            Rooms.of(app).broker.history.clear()  # type: ignore[attr-defined]

    def close(self) -> None:
        for app in self.apps:
            Rooms.of(app).close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> t.Iterator[Backend]:
    backend = Backend(request.param, request)
    try:
        yield backend
    finally:
        backend.close()


def resume(
    client: SocketTestClient, room: str, position: t.Sequence[t.Any] | None = None
) -> tuple[TestSocket, dict[str, t.Any], list[str]]:
    """Connect and resume ``room``: the socket, the recovery reply and the
    replay (the reply comes first)."""
    query = f"?offset={position[0]}&epoch={position[1]}" if position is not None else ""
    ws = client.connect(f"/h/{room}{query}")
    ws.__enter__()
    frame = ws.receive(timeout=TIMEOUT)
    assert isinstance(frame, str) and frame.startswith("{"), frame
    reply = json.loads(frame)
    offset = position[0] if reply["recovered"] and position is not None else 0
    missed = reply["position"][0] - offset if reply["recovered"] else 0
    return ws, reply, receive_n(ws, missed)


def receive_n(ws: TestSocket, n: int) -> list[str]:
    got = []
    for _ in range(n):
        frame = ws.receive(timeout=TIMEOUT)
        assert isinstance(frame, str), (frame, got)
        got.append(frame)
    return got


def test_publish_tells_the_position_and_history_off_tells_none(backend: Backend) -> None:
    app, sockets = backend.app()
    sockets.history("quiet:*", size=0)
    first = sockets.publish("r", "m1", app=app)
    second = sockets.publish("r", "m2", app=app)
    assert first is not None and second is not None
    assert (second.offset, second.epoch) == (first.offset + 1, first.epoch)
    assert sockets.publish("quiet:1", "x", app=app) is None
    client = SocketTestClient(app)
    ws, reply, replay = resume(client, "quiet:1", (0, first.epoch))
    assert reply == {"recovered": False, "position": None} and replay == []
    ws.close()


def test_exact_replay_after_a_gap(backend: Backend) -> None:
    app, sockets = backend.app()
    client = SocketTestClient(app)
    ws, reply, replay = resume(client, "r")
    assert reply["recovered"] is False and replay == []
    offset, epoch = reply["position"]
    assert offset == 0
    for i in range(1, 4):
        sockets.publish("r", f"m{i}", app=app)
    assert receive_n(ws, 3) == ["m1", "m2", "m3"]
    ws.close()
    for i in range(4, 9):  # published while the client is away
        sockets.publish("r", f"m{i}", app=app)
    ws, reply, replay = resume(client, "r", (3, epoch))
    assert reply == {"recovered": True, "position": [8, epoch]}
    assert replay == [f"m{i}" for i in range(4, 9)]
    sockets.publish("r", "m9", app=app)
    assert receive_n(ws, 1) == ["m9"]
    ws.close()
    # Resuming from the top: recovered, nothing to replay.
    ws, reply, replay = resume(client, "r", (9, epoch))
    assert reply == {"recovered": True, "position": [9, epoch]} and replay == []
    ws.close()


def test_no_gap_and_no_duplicate_at_the_seam_under_concurrent_publishing(backend: Backend) -> None:
    """A publisher sends 400 messages while the client drops and resumes
    its connection 6 times: it ends with every message exactly once, in
    order."""
    app, sockets = backend.app(SOCKETS_HISTORY_SIZE=1000)
    client = SocketTestClient(app)
    total = 400
    done = threading.Event()

    def publish() -> None:
        try:
            for i in range(1, total + 1):
                sockets.publish("seam", str(i), app=app)
                if i % 20 == 0:
                    time.sleep(0.005)  # let the client get in between
        finally:
            done.set()

    ws, reply, _ = resume(client, "seam")
    epoch = reply["position"][1]
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    got: list[int] = []
    for cut in range(7):
        # Read some live messages, then drop the connection (the last time: read to the end).
        for _ in range(30 if cut < 6 else total):
            if got and got[-1] == total:
                break
            frame = ws.receive(timeout=TIMEOUT)
            assert isinstance(frame, str)
            got.append(int(frame))
        ws.close()
        if got and got[-1] == total:
            break
        ws, reply, replay = resume(client, "seam", [got[-1] if got else 0, epoch])
        assert reply["recovered"] is True, reply
        got += [int(m) for m in replay]
    publisher.join(TIMEOUT)
    assert done.is_set()
    assert got == list(range(1, total + 1))


def test_a_lost_history_is_a_new_epoch(backend: Backend) -> None:
    app, sockets = backend.app()
    client = SocketTestClient(app)
    before = sockets.publish("r", "m1", app=app)
    assert before is not None
    backend.flush(app)
    ws, reply, replay = resume(client, "r", (before.offset, before.epoch))
    assert reply["recovered"] is False and replay == []
    offset, epoch = reply["position"]
    assert epoch != before.epoch and offset == 0
    after = sockets.publish("r", "m2", app=app)
    assert after is not None and (after.offset, after.epoch) == (1, epoch)
    assert receive_n(ws, 1) == ["m2"]
    ws.close()


def test_a_position_trimmed_away_is_not_recovered(backend: Backend) -> None:
    app, sockets = backend.app()
    sockets.history("small", size=5)
    client = SocketTestClient(app)
    first = sockets.publish("small", "m1", app=app)
    assert first is not None
    for i in range(2, 200):  # MAXLEN ~ trims whole stream nodes: well past 5
        sockets.publish("small", f"m{i}", app=app)
    ws, reply, replay = resume(client, "small", (first.offset, first.epoch))
    assert reply == {"recovered": False, "position": [199, first.epoch]} and replay == []
    ws.close()
    # The last messages are still there.
    ws, reply, replay = resume(client, "small", (197, first.epoch))
    assert reply["recovered"] is True and replay == ["m198", "m199"]
    ws.close()


def test_too_much_to_replay_is_not_recovered(backend: Backend) -> None:
    app, sockets = backend.app(SOCKETS_HISTORY_MAX_REPLAY=10)
    client = SocketTestClient(app)
    positions = [sockets.publish("r", f"m{i}", app=app) for i in range(1, 21)]
    epoch = positions[0].epoch  # type: ignore[union-attr]
    ws, reply, replay = resume(client, "r", (5, epoch))
    assert reply == {"recovered": False, "position": [20, epoch]} and replay == []
    ws.close()
    ws, reply, replay = resume(client, "r", (10, epoch))
    assert reply["recovered"] is True and len(replay) == 10
    ws.close()


def test_expired_messages_are_not_recovered(backend: Backend) -> None:
    app, sockets = backend.app()
    sockets.history("brief", ttl=0.3)
    client = SocketTestClient(app)
    first = sockets.publish("brief", "m1", app=app)
    sockets.publish("brief", "m2", app=app)
    assert first is not None
    time.sleep(0.8)  # the messages expired; the position lives on (SOCKETS_HISTORY_META_TTL)
    ws, reply, replay = resume(client, "brief", (first.offset, first.epoch))
    assert reply == {"recovered": False, "position": [2, first.epoch]} and replay == []
    ws.close()
    # A client that missed nothing still recovers.
    ws, reply, replay = resume(client, "brief", (2, first.epoch))
    assert reply == {"recovered": True, "position": [2, first.epoch]} and replay == []
    ws.close()


def test_resume_while_redis_is_down_answers_at_once(request: pytest.FixtureRequest) -> None:
    backend = Backend("redis", request)
    try:
        app, sockets = backend.app()
        client = SocketTestClient(app)
        position = sockets.publish("r", "m1", app=app)
        assert position is not None
        with client.connect("/h/other") as other:  # the process serves sockets: its subscriber runs
            assert json.loads(t.cast(str, other.receive(timeout=TIMEOUT)))["recovered"] is False
            assert backend.server is not None
            backend.server.stop()
            started = time.monotonic()
            ws, reply, replay = resume(client, "r", (position.offset, position.epoch))
            # The subscription wait ends as soon as the subscriber knows Redis is down (at most 5 s).
            assert time.monotonic() - started < 6
            assert reply == {"recovered": False, "position": None} and replay == []
            ws.close()
    finally:
        backend.close()


def test_bad_positions_and_rooms_are_refused(backend: Backend) -> None:
    app, sockets = backend.app()
    with pytest.raises(ValueError, match="size"):
        sockets.history("x", size=-1)
    with pytest.raises(ValueError, match="TTL"):
        sockets.history("x", ttl=0)
    with pytest.raises(TypeError):
        sockets.history(3)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    @sockets.route("/bad")
    def bad(ws: t.Any) -> None:
        try:
            sockets.resume(ws, "r", ("1", "e"))  # type: ignore[arg-type]
        except TypeError as e:
            errors.append(e)
        ws.send("done")

    with SocketTestClient(app).connect("/bad") as ws:
        assert ws.receive(timeout=TIMEOUT) == "done"
    assert len(errors) == 1 and "position" in str(errors[0])
    if backend.url is not None:
        with pytest.raises(ValueError, match="braces"):
            sockets.publish("a{b}", "m", app=app)


def test_position_tells_where_a_room_is(backend: Backend) -> None:
    """``sockets.position(room)``: (0, epoch) before the first message, then
    the last message's position; ``None`` without history; after the history
    is lost, another epoch."""
    app, sockets = backend.app()
    sockets.history("quiet:*", size=0)
    start = sockets.position("p", app=app)
    assert start is not None and start.offset == 0
    sockets.publish("p", "m1", app=app)
    last = sockets.publish("p", "m2", app=app)
    assert last is not None and last.epoch == start.epoch
    assert sockets.position("p", app=app) == last
    assert sockets.position("quiet:1", app=app) is None
    backend.flush(app)
    after = sockets.position("p", app=app)
    assert after is not None and after.epoch != last.epoch and after.offset == 0
