"""The envelope (flask_sockets.envelope): the wire format of the browser
client, against a real gevent server with the ``websockets`` client, and
against the test client."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import typing as t

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets.concurrency import current_runner
from flask_sockets.envelope import publish
from flask_sockets.rooms import Rooms
from flask_sockets.testing import SocketTestClient
from tests.conftest import TIMEOUT
from tests.conftest import Server
from tests.conftest import wait_until

#: The name of the thread that sends the envelope's heartbeats on threaded
#: servers (the process's timer: :mod:`flask_sockets.timers`).
HEARTBEAT_THREAD = "flask-sockets timer"


def make_app(**config: t.Any) -> tuple[Flask, Sockets]:
    app = Flask(__name__)
    app.config.update({"SOCKETS_HISTORY_SIZE": 100, **config})
    sockets = Sockets(app)

    @sockets.route("/env")
    def env(ws: t.Any) -> None:
        envelope = sockets.envelope(ws, authorize=lambda room: not room.startswith("secret"))
        for data in envelope:
            envelope.send({"echo": data})

    @sockets.route("/raw/<room>")
    def raw(ws: t.Any, room: str) -> None:
        sockets.join(ws, room)
        ws.send("joined")
        while ws.receive() is not None:
            pass

    return app, sockets


@pytest.fixture
def app_server(serve: t.Callable[..., Server]) -> t.Iterator[tuple[Flask, Sockets, Server]]:
    app, sockets = make_app()
    server = serve(app)
    yield app, sockets, server
    Rooms.of(app).close()


def frame(ws: ClientConnection) -> dict[str, t.Any]:
    """The next frame that is not a heartbeat."""
    while True:
        data = json.loads(t.cast(str, ws.recv(TIMEOUT)))
        if data.get("t") != "ping":
            return t.cast("dict[str, t.Any]", data)


def test_hello_sub_and_room_messages(app_server: tuple[Flask, Sockets, Server]) -> None:
    app, sockets, server = app_server
    with connect(server.ws_url + "/env") as ws:
        assert json.loads(ws.recv(TIMEOUT)) == {"t": "hello", "ping": 25}
        ws.send(json.dumps({"t": "sub", "room": "r"}))
        reply = frame(ws)
        assert reply["t"] == "sub" and reply["room"] == "r" and reply["recovered"] is False
        assert reply["offset"] == 0 and isinstance(reply["epoch"], str)
        epoch = reply["epoch"]
        with app.app_context():
            publish("r", {"n": 1, "text": "héllo"})
        sockets.publish("r", "plain text", app=app)
        sockets.publish("r", b"\x00\x01", app=app)
        assert frame(ws) == {"t": "msg", "room": "r", "offset": 1, "epoch": epoch, "data": {"n": 1, "text": "héllo"}}
        assert frame(ws) == {"t": "msg", "room": "r", "offset": 2, "epoch": epoch, "data": "plain text"}
        assert frame(ws) == {"t": "msg", "room": "r", "offset": 3, "epoch": epoch, "data": "AAE="}
        # Application messages both ways.
        ws.send(json.dumps({"t": "msg", "data": [1, 2]}))
        assert frame(ws) == {"t": "msg", "data": {"echo": [1, 2]}}
        # Unknown frames and pongs are ignored.
        ws.send(json.dumps({"t": "future", "x": 1}))
        ws.send(json.dumps({"t": "pong"}))
        ws.send(json.dumps({"t": "unsub", "room": "r"}))
        ws.send(json.dumps({"t": "msg", "data": "after"}))
        assert frame(ws) == {"t": "msg", "data": {"echo": "after"}}
        sockets.publish("r", "not for me", app=app)
        ws.send(json.dumps({"t": "msg", "data": "last"}))
        assert frame(ws) == {"t": "msg", "data": {"echo": "last"}}


def test_resubscribe_from_a_position_replays_then_goes_live(app_server: tuple[Flask, Sockets, Server]) -> None:
    app, sockets, server = app_server
    first = sockets.publish("r", "m1", app=app)
    assert first is not None
    for i in range(2, 6):
        sockets.publish("r", f"m{i}", app=app)
    with connect(server.ws_url + "/env") as ws:
        frame(ws)  # hello
        ws.send(json.dumps({"t": "sub", "room": "r", "offset": 2, "epoch": first.epoch}))
        assert frame(ws) == {"t": "sub", "room": "r", "recovered": True, "offset": 5, "epoch": first.epoch}
        assert [frame(ws)["data"] for _ in range(3)] == ["m3", "m4", "m5"]
        sockets.publish("r", "m6", app=app)
        assert frame(ws) == {"t": "msg", "room": "r", "offset": 6, "epoch": first.epoch, "data": "m6"}
        # Another epoch: not recovered, nothing replayed, the current position.
        ws.send(json.dumps({"t": "sub", "room": "q", "offset": 2, "epoch": "gone"}))
        reply = frame(ws)
        assert reply["recovered"] is False and reply["offset"] == 0


def test_refused_and_too_many_rooms_get_an_error(serve: t.Callable[..., Server]) -> None:
    app, sockets = make_app(SOCKETS_ENVELOPE_MAX_ROOMS=3)
    server = serve(app)
    try:
        with connect(server.ws_url + "/env") as ws:
            frame(ws)
            ws.send(json.dumps({"t": "sub", "room": "secret:1"}))
            assert frame(ws) == {"t": "error", "room": "secret:1", "reason": "refused"}
            for i in range(6):  # the attack: more rooms than allowed
                ws.send(json.dumps({"t": "sub", "room": f"r{i}"}))
            replies = [frame(ws) for _ in range(6)]
            assert [r["t"] for r in replies] == ["sub"] * 3 + ["error"] * 3
            assert replies[-1] == {"t": "error", "room": "r5", "reason": "too many rooms"}
            ws.send(json.dumps({"t": "sub", "room": 42}))
            assert frame(ws) == {"t": "error", "reason": "bad room"}
            assert sockets.rooms(Rooms.of(app).members("r0")[0], app=app) == frozenset({"r0", "r1", "r2"})
    finally:
        Rooms.of(app).close()


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"\x01\x02", 1003), ("not json", 1007), ("[1, 2]", 1007)],
)
def test_a_client_breaking_the_format_is_closed(
    app_server: tuple[Flask, Sockets, Server], payload: str | bytes, code: int
) -> None:
    _, _, server = app_server
    with connect(server.ws_url + "/env") as ws:
        frame(ws)
        ws.send(payload)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_heartbeats_and_history_off(serve: t.Callable[..., Server]) -> None:
    app, sockets = make_app(SOCKETS_ENVELOPE_PING=0.2, SOCKETS_HISTORY_SIZE=0)
    server = serve(app)
    try:
        with connect(server.ws_url + "/env") as ws:
            assert json.loads(ws.recv(TIMEOUT)) == {"t": "hello", "ping": 0.2}
            assert json.loads(ws.recv(TIMEOUT)) == {"t": "ping"}
            assert json.loads(ws.recv(TIMEOUT)) == {"t": "ping"}
            ws.send(json.dumps({"t": "sub", "room": "r"}))
            assert frame(ws) == {"t": "sub", "room": "r", "recovered": False, "offset": None, "epoch": None}
            assert sockets.publish("r", "x", app=app) is None
            assert frame(ws) == {"t": "msg", "room": "r", "offset": None, "epoch": None, "data": "x"}
    finally:
        Rooms.of(app).close()


def test_raw_sockets_in_the_same_room_are_untouched(app_server: tuple[Flask, Sockets, Server]) -> None:
    app, sockets, server = app_server
    with connect(server.ws_url + "/raw/r") as raw, connect(server.ws_url + "/env") as env:
        assert raw.recv(TIMEOUT) == "joined"
        frame(env)
        env.send(json.dumps({"t": "sub", "room": "r"}))
        frame(env)
        sockets.publish("r", "hello", app=app)
        assert raw.recv(TIMEOUT) == "hello"
        assert frame(env)["data"] == "hello"
        sockets.broadcast("everyone", app=app)
        assert raw.recv(TIMEOUT) == "everyone"
        assert frame(env) == {"t": "msg", "room": None, "offset": None, "epoch": None, "data": "everyone"}
        # Envelope data (any JSON value): the envelope socket gets the value,
        # the raw one its JSON text, as if published with json.dumps.
        publish("r", {"n": 1, "text": "héllo"}, app=app)
        assert json.loads(t.cast(str, raw.recv(TIMEOUT))) == {"n": 1, "text": "héllo"}
        assert frame(env)["data"] == {"n": 1, "text": "héllo"}
        publish("r", "a string", app=app)
        assert raw.recv(TIMEOUT) == '"a string"'
        assert frame(env)["data"] == "a string"


def test_raw_sockets_resuming_get_envelope_data_as_json_text() -> None:
    """The replay of a raw socket's resume, and the messages held back
    meanwhile, are without the envelope's mark too."""
    app, sockets = make_app()

    @sockets.route("/resume/<room>/<int:offset>/<epoch>")
    def resume(ws: t.Any, room: str, offset: int, epoch: str) -> None:
        sockets.resume(ws, room, (offset, epoch))
        while ws.receive() is not None:
            pass

    try:
        first = publish("r", {"n": 1}, app=app)
        assert first is not None
        publish("r", [2], app=app)
        with SocketTestClient(app).connect(f"/resume/r/{first.offset}/{first.epoch}") as ws:
            assert ws.receive(timeout=TIMEOUT) == "[2]"
            publish("r", "three", app=app)
            assert ws.receive(timeout=TIMEOUT) == '"three"'
    finally:
        Rooms.of(app).close()


def test_envelope_with_the_test_client() -> None:
    app, sockets = make_app()
    try:
        with SocketTestClient(app).connect("/env") as ws:
            assert json.loads(t.cast(str, ws.receive(timeout=TIMEOUT))) == {"t": "hello", "ping": 25}
            ws.send(json.dumps({"t": "sub", "room": "r"}))
            reply = json.loads(t.cast(str, ws.receive(timeout=TIMEOUT)))
            assert reply["t"] == "sub" and reply["offset"] == 0
            with app.app_context():
                publish("r", None)
            assert json.loads(t.cast(str, ws.receive(timeout=TIMEOUT)))["data"] is None
            ws.send(json.dumps({"t": "msg", "data": 7}))
            assert json.loads(t.cast(str, ws.receive(timeout=TIMEOUT))) == {"t": "msg", "data": {"echo": 7}}
        with pytest.raises(TypeError, match="JSON"), app.app_context():
            publish("r", object())
    finally:
        Rooms.of(app).close()


def busy_app() -> tuple[Flask, Sockets]:
    """An envelope route whose loop body takes ``data["busy"]`` seconds per
    message (a slow query, in the server's own way of waiting), and one that
    stops iterating after the first message and keeps the socket a while."""
    app, sockets = make_app(SOCKETS_ENVELOPE_PING=0.1, SOCKETS_HISTORY_SIZE=0)

    @sockets.route("/busy")
    def busy(ws: t.Any) -> None:
        envelope = sockets.envelope(ws)
        for data in envelope:
            current_runner().sleep(data["busy"])
            envelope.send({"done": data["busy"]})

    @sockets.route("/once")
    def once(ws: t.Any) -> None:
        envelope = sockets.envelope(ws)
        for _ in envelope:
            break
        envelope.send("stopped")
        current_runner().sleep(0.6)
        envelope.send("bye")
        while ws.receive() is not None:
            pass

    return app, sockets


def frames_until(receive: t.Callable[[], t.Any], last: t.Any) -> list[dict[str, t.Any]]:
    """The frames received up to the ``msg`` frame whose data is ``last`` (not included)."""
    frames = []
    while True:
        data = json.loads(t.cast(str, receive()))
        if data == {"t": "msg", "data": last}:
            return frames
        frames.append(data)


def test_heartbeats_go_on_while_the_loop_body_is_busy(serve: t.Callable[..., Server]) -> None:
    """The heartbeat comes from a timer of its own, not from the receive
    loop: a handler busy for ten ping intervals with one message still
    sends pings meanwhile (before, none: a handler busy for longer than the
    client's liveness window, ping + 5 s, made every client reconnect), on
    the gevent server. Once the iteration ends, so do the heartbeats."""
    app, _ = busy_app()
    server = serve(app)
    try:
        with connect(server.ws_url + "/busy") as ws:
            assert json.loads(ws.recv(TIMEOUT)) == {"t": "hello", "ping": 0.1}
            ws.send(json.dumps({"t": "msg", "data": {"busy": 1.0}}))
            during = frames_until(lambda: ws.recv(TIMEOUT), {"done": 1.0})
            assert during and all(frame == {"t": "ping"} for frame in during), during
            assert len(during) >= 3, f"{len(during)} pings in 1 s of a busy loop body at ping 0.1 s"
        with connect(server.ws_url + "/once") as ws:
            assert json.loads(ws.recv(TIMEOUT)) == {"t": "hello", "ping": 0.1}
            ws.send(json.dumps({"t": "msg", "data": 1}))
            frames_until(lambda: ws.recv(TIMEOUT), "stopped")
            # The iteration has ended: so have the heartbeats.
            assert frames_until(lambda: ws.recv(TIMEOUT), "bye") == []
    finally:
        Rooms.of(app).close()


def test_heartbeats_go_on_while_the_loop_body_is_busy_with_the_test_client() -> None:
    """The same in threads (the test client; the development server): the
    timer thread ends with the iteration."""
    app, _ = busy_app()
    try:
        with SocketTestClient(app).connect("/busy") as ws:
            receive = lambda: ws.receive(timeout=TIMEOUT)  # noqa: E731
            assert json.loads(t.cast(str, receive())) == {"t": "hello", "ping": 0.1}
            ws.send(json.dumps({"t": "msg", "data": {"busy": 1.0}}))
            during = frames_until(receive, {"done": 1.0})
            assert during and all(frame == {"t": "ping"} for frame in during), during
            assert len(during) >= 3, f"{len(during)} pings in 1 s of a busy loop body at ping 0.1 s"
        deadline = time.monotonic() + TIMEOUT
        while any(thread.name == HEARTBEAT_THREAD for thread in threading.enumerate()):
            assert time.monotonic() < deadline, "the heartbeat thread outlived its socket"
            time.sleep(0.01)
    finally:
        Rooms.of(app).close()


def test_heartbeats_go_on_while_the_loop_body_is_busy_on_the_development_server(
    devserve: t.Callable[..., Server],
) -> None:
    """The same on Werkzeug's threaded development server (the threaded
    socket of gunicorn ``gthread`` too): the heartbeats come from the
    process's timer thread while the handler's thread sleeps."""
    app, _ = busy_app()
    server = devserve(app)
    try:
        with connect(server.ws_url + "/busy") as ws:
            assert json.loads(ws.recv(TIMEOUT)) == {"t": "hello", "ping": 0.1}
            ws.send(json.dumps({"t": "msg", "data": {"busy": 1.0}}))
            during = frames_until(lambda: ws.recv(TIMEOUT), {"done": 1.0})
            assert during and all(frame == {"t": "ping"} for frame in during), during
            assert len(during) >= 3, f"{len(during)} pings in 1 s of a busy loop body at ping 0.1 s"
    finally:
        Rooms.of(app).close()


def test_envelope_sockets_on_a_threaded_server_share_one_timer_thread(
    devserve: t.Callable[..., Server],
) -> None:
    """N envelope sockets on the development server (in this process) take
    their N handler threads and no more: their heartbeats come from ONE
    timer thread (before: a thread per socket, twice the threads and
    their memory). Each still gets its pings."""
    n = 20
    app, _ = busy_app()
    server = devserve(app)

    def timers() -> int:
        return sum(thread.name == HEARTBEAT_THREAD for thread in threading.enumerate())

    def server_threads() -> int:
        # All but the clients' (websockets' sync client: a reader, and in newer versions a keepalive thread).
        client = {getattr(ws, name, None) for ws in clients for name in ("recv_events_thread", "keepalive_thread")}
        return sum(thread not in client for thread in threading.enumerate())

    clients: list[ClientConnection] = []
    try:
        with contextlib.ExitStack() as stack:
            # One socket first: the server's own threads (its keepalive timer among them) are up.
            clients.append(stack.enter_context(connect(server.ws_url + "/busy")))
            assert json.loads(clients[0].recv(TIMEOUT)) == {"t": "hello", "ping": 0.1}
            assert json.loads(clients[0].recv(TIMEOUT)) == {"t": "ping"}
            before = server_threads()
            for _ in range(n):
                ws = stack.enter_context(connect(server.ws_url + "/busy"))
                clients.append(ws)
                assert json.loads(ws.recv(TIMEOUT)) == {"t": "hello", "ping": 0.1}
            for ws in clients:
                for _ in range(3):
                    assert json.loads(ws.recv(TIMEOUT)) == {"t": "ping"}
            # Per socket: the server's handler thread, no more.
            added = server_threads() - before
            assert added <= n + 1, f"{added} server threads for {n} envelope sockets (1 each expected, +1 at most)"
            # The app's keepalive timer (Connections) and the process's timer: not one per socket.
            assert timers() <= 2, f"{timers()} timer threads for {n + 1} envelope sockets"
    finally:
        Rooms.of(app).close()
    wait_until(lambda: timers() == 0)
