"""Rooms and broadcast in one process: membership, publishing from anywhere,
order, back-pressure (slow consumers) on the test client, the gevent server
and the development server; the Redis broker against fakeredis (the real
Redis server is in tests/integration)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import typing as t

import fakeredis
import pytest
from flask import Flask
from flask import request
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect

from flask_sockets import CLOSE_SLOW_CONSUMER
from flask_sockets import MessageQueueUnavailable
from flask_sockets import Sockets
from flask_sockets.base import SocketBase
from flask_sockets.brokers import LocalBroker
from flask_sockets.brokers import decode_message
from flask_sockets.brokers import encode_message
from flask_sockets.brokers import redacted
from flask_sockets.concurrency import current_runner
from flask_sockets.protocol import CloseCode
from flask_sockets.redis_broker import RedisBroker
from flask_sockets.rooms import SLOW_CONSUMER_REASON
from flask_sockets.rooms import Rooms
from flask_sockets.testing import SocketTestClient
from tests.conftest import Server
from tests.conftest import wait_until

#: Threads the rooms start in a process without gevent: writers and closers.
ROOM_THREADS = ("flask-sockets writer", "flask-sockets closer", "flask-sockets test handler")


@pytest.fixture(autouse=True)
def no_thread_left_running() -> t.Iterator[None]:
    """Every writer, closer and handler thread a test started has ended."""
    yield
    deadline = time.monotonic() + 5
    while any(thread.name.startswith(ROOM_THREADS) for thread in threading.enumerate()):
        assert time.monotonic() < deadline, [thread.name for thread in threading.enumerate()]
        time.sleep(0.01)


def make_app(**config: t.Any) -> tuple[Flask, Sockets]:
    """An app whose socket route ``/rooms/<room>`` joins ``room``, says
    ``joined <room>`` and then obeys commands: ``say TEXT`` publishes to the
    room, ``join R`` / ``leave R``, ``rooms``, ``count R``, ``boom`` raises."""
    app = Flask(__name__)
    app.config.update(config)
    sockets = Sockets(app)

    @sockets.route("/rooms/<room>")
    def in_room(ws: t.Any, room: str) -> None:
        sockets.join(ws, room)
        ws.send(f"joined {room}")
        while True:
            message = ws.receive()
            if message is None:
                return
            command, _, argument = message.partition(" ")
            if command == "say":
                sockets.publish(room, argument)
            elif command == "join":
                sockets.join(ws, argument)
                ws.send(f"joined {argument}")
            elif command == "leave":
                sockets.leave(ws, argument)
                ws.send(f"left {argument}")
            elif command == "rooms":
                ws.send(json.dumps(sorted(sockets.rooms(ws))))
            elif command == "count":
                ws.send(str(sockets.count(argument)))
            elif command == "boom":
                raise RuntimeError("boom")

    @sockets.route("/lobby")
    def lobby(ws: t.Any) -> None:
        ws.send("hello")
        while ws.receive() is not None:
            pass

    @sockets.route("/later")
    def later(ws: t.Any) -> None:
        # Joins without having sent or received: joining accepts the socket.
        sockets.join(ws, "later")
        while ws.receive() is not None:
            pass

    @app.post("/publish/<room>")
    def publish(room: str) -> str:
        sockets.publish(room, request.get_data(as_text=True))
        return "ok"

    @app.post("/broadcast")
    def broadcast() -> str:
        sockets.broadcast(request.get_data(as_text=True))
        return "ok"

    @app.get("/count/<room>")
    def count(room: str) -> str:
        return str(sockets.count(room))

    @app.post("/flood/<room>")
    def flood(room: str) -> str:
        """Publish numbered 16 KiB messages to ``room`` from the server's own
        greenlet (or thread) while the room has 2 members (at most 1,500):
        how many, and the slowest publish."""
        published, slowest = publish_while_two(sockets, room, current_runner().sleep)
        return json.dumps({"published": published, "slowest": slowest})

    return app, sockets


def publish_while_two(
    sockets: Sockets, room: str, sleep: t.Callable[[float], object], **options: t.Any
) -> tuple[int, float]:
    """Publish ``"<number> <time> <16 KiB>"`` to ``room`` every millisecond
    while it has two members (at most 1,500 messages or 20 s): how many were
    published, and the longest a publish took."""
    payload = "x" * 16384
    slowest = 0.0
    published = 0
    deadline = time.monotonic() + 20
    while sockets.count(room, **options) == 2 and published < 1500 and time.monotonic() < deadline:
        before = time.monotonic()
        sockets.publish(room, f"{published} {before} {payload}", **options)
        slowest = max(slowest, time.monotonic() - before)
        published += 1
        sleep(0.001)
    return published, slowest


# -- in-process, with the test client --------------------------------------------


def test_publish_reaches_the_members_of_a_room_only() -> None:
    app, sockets = make_app()
    client = SocketTestClient(app)
    with client.connect("/rooms/a") as a1, client.connect("/rooms/a") as a2, client.connect("/rooms/b") as b:
        for ws, room in ((a1, "a"), (a2, "a"), (b, "b")):
            assert ws.receive() == f"joined {room}"
        assert client.http.get("/count/a").text == "2"
        assert client.http.post("/publish/a", data="to a").text == "ok"  # from an HTTP view
        a1.send("say from a1")  # from a socket handler
        for ws in (a1, a2):
            assert ws.receive() == "to a"
            assert ws.receive() == "from a1"
        client.http.post("/publish/b", data="to b")
        assert b.receive() == "to b"
        with pytest.raises(TimeoutError):
            a1.receive(timeout=0.1)


def test_join_leave_rooms_and_count() -> None:
    app, sockets = make_app()
    client = SocketTestClient(app)
    with client.connect("/rooms/a") as ws:
        assert ws.receive() == "joined a"
        ws.send("join b")
        assert ws.receive() == "joined b"
        ws.send("rooms")
        assert json.loads(t.cast(str, ws.receive())) == ["a", "b"]
        ws.send("count b")
        assert ws.receive() == "1"
        ws.send("leave a")
        assert ws.receive() == "left a"
        ws.send("leave nowhere")  # leaving a room one is not in does nothing
        assert ws.receive() == "left nowhere"
        client.http.post("/publish/a", data="missed")
        client.http.post("/publish/b", data="for b")
        assert ws.receive() == "for b"
        ws.send("rooms")
        assert json.loads(t.cast(str, ws.receive())) == ["b"]
    assert sockets.count("a", app=app) == sockets.count("b", app=app) == 0


@pytest.mark.parametrize("ending", ["client closes", "handler raises"])
def test_a_socket_leaves_all_its_rooms_when_it_closes(ending: str) -> None:
    app, sockets = make_app()
    rooms = Rooms.of(app)
    client = SocketTestClient(app, raise_server_exceptions=False)
    with client.connect("/rooms/a") as ws:
        assert ws.receive() == "joined a"
        ws.send("join b")
        assert ws.receive() == "joined b"
        assert (sockets.count("a", app=app), sockets.count("b", app=app), rooms.sockets) == (1, 1, 1)
        if ending == "handler raises":
            ws.send("boom")
            assert ws.receive() is None
            assert ws.close_code == CloseCode.INTERNAL_ERROR
    assert (sockets.count("a", app=app), sockets.count("b", app=app), rooms.sockets) == (0, 0, 0)
    client.http.post("/publish/a", data="nobody")  # publishing to an empty room is fine


def test_broadcast_reaches_every_socket_even_in_no_room() -> None:
    app, sockets = make_app()
    client = SocketTestClient(app)
    with client.connect("/rooms/a") as a, client.connect("/lobby") as lobby:
        assert a.receive() == "joined a"
        assert lobby.receive() == "hello"
        client.http.post("/broadcast", data="everyone")
        assert a.receive() == "everyone"
        assert lobby.receive() == "everyone"
        with app.app_context():  # the current app, from any code in its context
            sockets.broadcast(b"\x00binary")
        assert a.receive() == b"\x00binary"
        assert lobby.receive() == b"\x00binary"


def test_join_accepts_the_socket() -> None:
    app, sockets = make_app()
    client = SocketTestClient(app)
    with client.connect("/later") as ws:
        wait_until(lambda: sockets.count("later", app=app) == 1)
        client.http.post("/publish/later", data="welcome")
        assert ws.receive() == "welcome"


def test_publish_from_threads_outside_any_context_in_order() -> None:
    """Another thread, no app context (the extension knows its one app):
    each publisher's messages arrive in order, text and binary kept apart."""
    app, sockets = make_app()
    client = SocketTestClient(app)
    with client.connect("/rooms/a") as ws:
        assert ws.receive() == "joined a"

        def publisher(name: str) -> None:
            for i in range(200):
                sockets.publish("a", f"{name} {i}" if name == "text" else f"{name} {i}".encode())

        threads = [threading.Thread(target=publisher, args=(name,)) for name in ("text", "bytes")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        received = [ws.receive() for _ in range(400)]
    texts = [m for m in received if isinstance(m, str)]
    binaries = [m for m in received if isinstance(m, bytes)]
    assert texts == [f"text {i}" for i in range(200)]
    assert binaries == [f"bytes {i}".encode() for i in range(200)]


def test_which_app_outside_an_app_context() -> None:
    sockets = Sockets()
    one, two = Flask("one"), Flask("two")
    with pytest.raises(RuntimeError, match="initialised with 0"):
        sockets.publish("a", "x")
    sockets.init_app(one)
    sockets.publish("a", "nobody listens")  # the one app
    sockets.init_app(two)
    with pytest.raises(RuntimeError, match="pass app="):
        sockets.broadcast("x")
    sockets.broadcast("x", app=two)
    with two.app_context():
        assert sockets.count("a") == 0
    other = Flask("other")
    Sockets(other)
    with pytest.raises(RuntimeError, match="not initialised with this Sockets"):
        sockets.count("a", app=other)


def test_bad_arguments_and_config() -> None:
    app, sockets = make_app()
    with pytest.raises(TypeError, match="str or bytes"):
        sockets.publish("a", 42, app=app)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="named by a str"):
        sockets.publish(7, "x", app=app)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SOCKETS_MESSAGE_QUEUE is 'amqp://somewhere'"):
        make_app(SOCKETS_MESSAGE_QUEUE="amqp://somewhere")  # at init_app
    late = Flask("late")
    late_sockets = Sockets(late)
    late.config["SOCKETS_MESSAGE_QUEUE"] = "amqp://somewhere"  # set after init_app: at first use
    with pytest.raises(ValueError, match="SOCKETS_MESSAGE_QUEUE is 'amqp://somewhere'"):
        late_sockets.publish("a", "x", app=late)
    tiny, _ = make_app(SOCKETS_SEND_QUEUE_SIZE=0, TESTING=True)
    with pytest.raises(ValueError, match="SOCKETS_SEND_QUEUE_SIZE"):
        SocketTestClient(tiny).connect("/lobby")


def test_config_defaults() -> None:
    app, _ = make_app()
    assert app.config["SOCKETS_MESSAGE_QUEUE"] is None
    assert app.config["SOCKETS_MESSAGE_QUEUE_CHANNEL"] == "flask-sockets"
    assert app.config["SOCKETS_SEND_QUEUE_SIZE"] == 256
    assert isinstance(Rooms.of(app).broker, LocalBroker)
    assert app.extensions["sockets.rooms"] is Rooms.of(app)


class StuckSocket(SocketBase):
    """A socket whose client reads nothing: ``send`` blocks until released."""

    accepted = True

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[t.Any] = []
        self.release = threading.Event()
        self.sending = threading.Event()
        self.close_calls: list[tuple[int, str]] = []

    def send(self, message: t.Any, binary: bool | None = None) -> None:
        self.sending.set()
        self.release.wait(5)
        self.sent.append(message)

    def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        self.close_calls.append((code, t.cast(str, message)))
        self.closed = True

    def abort(self) -> None:
        self.close_calls.append((CloseCode.ABNORMAL_CLOSURE, "cut"))
        self.closed = True
        self.release.set()


class ReadingSocket(StuckSocket):
    def __init__(self) -> None:
        super().__init__()
        self.release.set()


def test_a_full_send_queue_closes_the_socket_with_1008_and_spares_the_others() -> None:
    app, sockets = make_app(SOCKETS_SEND_QUEUE_SIZE=5, SOCKETS_CLOSE_TIMEOUT=0.5)
    rooms = Rooms.of(app)
    stuck, fine = StuckSocket(), ReadingSocket()
    for ws in (stuck, fine):
        rooms.register(ws)  # type: ignore[arg-type]
        rooms.join(ws, "a")  # type: ignore[arg-type]
    sockets.publish("a", "m0", app=app)
    assert stuck.sending.wait(5)  # its writer is stuck sending m0
    started = time.monotonic()
    for i in range(1, 20):
        sockets.publish("a", f"m{i}", app=app)
    assert time.monotonic() - started < 1, "publishing waited for a slow socket"
    wait_until(lambda: len(fine.sent) == 20)
    assert fine.sent == [f"m{i}" for i in range(20)]
    # One message in the writer's hands, five queued, the seventh overflows.
    assert rooms.count("a") == 1 and rooms.members("a") == [fine]
    wait_until(lambda: stuck.close_calls[:1] == [(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)])
    # Its handler never ends here: after SOCKETS_CLOSE_TIMEOUT the connection is cut.
    wait_until(lambda: (CloseCode.ABNORMAL_CLOSURE, "cut") in stuck.close_calls, timeout=3)
    wait_until(lambda: stuck.sent == ["m0"])  # the cut released its writer; nothing more was sent
    sockets.publish("a", "after", app=app)
    wait_until(lambda: fine.sent[-1:] == ["after"])
    for ws in (stuck, fine):
        rooms.forget(ws)  # type: ignore[arg-type]
    assert rooms.sockets == 0


def test_a_stuck_writer_is_cut_loose_when_the_handler_ends() -> None:
    app, sockets = make_app(SOCKETS_CLOSE_TIMEOUT=0.2)
    rooms = Rooms.of(app)
    stuck = StuckSocket()
    rooms.register(stuck)  # type: ignore[arg-type]
    sockets.broadcast("one", app=app)
    assert stuck.sending.wait(5)
    rooms.forget(stuck)  # type: ignore[arg-type]
    wait_until(lambda: (CloseCode.ABNORMAL_CLOSURE, "cut") in stuck.close_calls, timeout=3)


def test_messages_for_a_closed_or_unaccepted_socket_are_dropped() -> None:
    app, sockets = make_app()
    rooms = Rooms.of(app)
    closed, unaccepted = ReadingSocket(), ReadingSocket()
    closed.closed = True
    unaccepted.accepted = False  # type: ignore[misc]
    for ws in (closed, unaccepted):
        rooms.register(ws)  # type: ignore[arg-type]
    sockets.broadcast("x", app=app)
    assert closed.sent == unaccepted.sent == []
    for ws in (closed, unaccepted):
        rooms.forget(ws)  # type: ignore[arg-type]


# -- real servers: gevent (in a thread) and Werkzeug's development server ----------


def http_post(server: Server, path: str, body: str, timeout: float = 5) -> str:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(server.http_url + path, body.encode()), timeout=timeout) as r:
        return t.cast(str, r.read().decode())


@contextlib.contextmanager
def join(server: Server, room: str, **options: t.Any) -> t.Iterator[ClientConnection]:
    """A client of ``/rooms/<room>``, once the handler has joined the room."""
    with connect(f"{server.ws_url}/rooms/{room}", open_timeout=5, **options) as ws:
        assert ws.recv(5) == f"joined {room}"
        yield ws


@pytest.fixture(params=["gevent", "devserver"])
def any_server(request: pytest.FixtureRequest, serve: t.Any, devserve: t.Any) -> t.Callable[[Flask], Server]:
    return t.cast("t.Callable[[Flask], Server]", serve if request.param == "gevent" else devserve)


def test_publish_on_real_servers_from_views_handlers_and_threads(any_server: t.Any) -> None:
    app, sockets = make_app()
    server = any_server(app)
    with join(server, "a") as one, join(server, "a") as two, connect(f"{server.ws_url}/lobby") as lobby:
        assert lobby.recv(5) == "hello"
        assert http_post(server, "/publish/a", "from a view") == "ok"
        for ws in (one, two):
            assert ws.recv(5) == "from a view"
        one.send("say from a handler")
        for ws in (one, two):
            assert ws.recv(5) == "from a handler"
        thread = threading.Thread(target=sockets.publish, args=("a", b"from a thread"))
        thread.start()
        thread.join(5)
        for ws in (one, two):
            assert ws.recv(5) == b"from a thread"
        http_post(server, "/broadcast", "all")
        for ws in (one, two, lobby):
            assert ws.recv(5) == "all"
        assert sockets.count("a", app=app) == 2
    wait_until(lambda: sockets.count("a", app=app) == 0 and Rooms.of(app).sockets == 0)


def slow_client(server: Server, room: str) -> t.ContextManager[ClientConnection]:
    """A client that reads nothing on its own: a tiny receive buffer, and the
    library keeps at most one message before it stops reading the socket."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((server.host, server.port))
    return join(server, room, sock=raw, max_queue=1)


@pytest.mark.parametrize("publisher", ["thread", "server"])
def test_slow_consumer_is_closed_while_the_others_receive_on_time(any_server: t.Any, publisher: str) -> None:
    """A client that stops reading is closed with 1008 once its queue is full;
    the publisher never waits, and another member gets every message in
    order and on time meanwhile. The publisher is another thread, or a
    view in the server (on the gevent server, where rooms send straight to
    sockets that can take a message without waiting)."""
    # (Uncompressed: the padding of the messages must fill the kernel's buffers.)
    app, sockets = make_app(SOCKETS_SEND_QUEUE_SIZE=16, SOCKETS_CLOSE_TIMEOUT=2.0, SOCKETS_COMPRESSION=False)
    server = any_server(app)
    with join(server, "a") as fast, slow_client(server, "a") as slow:
        received: list[tuple[float, str]] = []

        def read_fast() -> None:
            for _ in range(2000):
                try:
                    message = fast.recv(10)
                except (ClientClosed, TimeoutError):
                    return
                received.append((time.monotonic(), t.cast(str, message)))
                if message.startswith("end"):
                    return

        reader = threading.Thread(target=read_fast)
        reader.start()
        if publisher == "thread":
            published, slowest_publish = publish_while_two(sockets, "a", time.sleep, app=app)
        else:
            report = json.loads(http_post(server, "/flood/a", "", timeout=30))
            published, slowest_publish = report["published"], report["slowest"]
        assert sockets.count("a", app=app) == 1, f"the slow client is still a member after {published} messages"
        sockets.publish("a", "end", app=app)
        # The slow client reads again: what was sent before, then the close frame.
        with pytest.raises(ClientClosed) as closed:
            for _ in range(published + 1):
                slow.recv(5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)
        reader.join(10)
        assert slowest_publish < 0.25
        numbers = [int(m.split(" ")[0]) for _, m in received[:-1]]
        assert numbers == list(range(published)), "the fast client missed messages or got them out of order"
        lateness = max(at - float(m.split(" ")[1]) for at, m in received[:-1])
        assert lateness < 1.0, f"a message took {lateness:.3f}s to reach the fast client"
    wait_until(lambda: Rooms.of(app).sockets == 0)


def test_a_client_that_reads_nothing_is_cut_off(any_server: t.Any) -> None:
    """If not even the close frame gets through within SOCKETS_CLOSE_TIMEOUT,
    the connection is cut: the handler ends and nothing is left behind."""
    app, sockets = make_app(SOCKETS_SEND_QUEUE_SIZE=8, SOCKETS_CLOSE_TIMEOUT=0.5, SOCKETS_COMPRESSION=False)
    server = any_server(app)
    with slow_client(server, "a") as slow:
        for i in range(1500):
            if sockets.count("a", app=app) == 0:
                break
            sockets.publish("a", f"{i} {'y' * 16384}", app=app)
            time.sleep(0.001)
        assert sockets.count("a", app=app) == 0
        # Its handler ends (the cut wakes its receive()), so it is forgotten.
        wait_until(lambda: Rooms.of(app).sockets == 0, timeout=5)
        with pytest.raises(ClientClosed) as closed:
            for _ in range(1600):
                slow.recv(5)
        # No close frame: the connection was cut. (On a loaded machine the queue
        # can overflow while the writer is merely slow and the close frame still fits.)
        rcvd = closed.value.rcvd
        assert rcvd is None or (rcvd.code, rcvd.reason) == (CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)


# -- the Redis broker, against fakeredis -------------------------------------------


def test_message_encoding() -> None:
    assert decode_message(encode_message("a", "text")) == ("a", "text")
    assert decode_message(encode_message(None, b"\x00\xff")) == (None, b"\x00\xff")
    for bad in ("not json", '{"room": "a"}', '{"room": 1, "text": "x"}', '{"room": null, "binary": "!!"}'):
        with pytest.raises(ValueError, match="not a Flask-Sockets message"):
            decode_message(bad)
    with pytest.raises(TypeError):
        encode_message("a", 3)  # type: ignore[arg-type]
    assert redacted("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("redis://user:secret@host/0") == "redis://user:***@host/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"


def fake_broker(server: fakeredis.FakeServer, channel: str = "test") -> RedisBroker:
    return RedisBroker(
        "redis://fake:6379/0",
        channel,
        client_factory=lambda: fakeredis.FakeRedis(server=server),
        reconnect_delay=(0.05, 0.2),
    )


def redis_app(server: fakeredis.FakeServer, channel: str = "test") -> tuple[Flask, Sockets]:
    return make_app(SOCKETS_MESSAGE_QUEUE=fake_broker(server, channel))


def test_redis_broker_fans_out_between_apps_standing_in_for_processes() -> None:
    server = fakeredis.FakeServer()
    (app1, sockets1), (app2, sockets2) = redis_app(server), redis_app(server)
    (other, other_sockets) = redis_app(server, channel="other")
    c1, c2, c3 = SocketTestClient(app1), SocketTestClient(app2), SocketTestClient(other)
    try:
        with c1.connect("/rooms/a") as one, c2.connect("/rooms/a") as two, c3.connect("/rooms/a") as elsewhere:
            for ws in (one, two, elsewhere):
                assert ws.receive() == "joined a"
            assert Rooms.of(app1).broker.connected and Rooms.of(app2).broker.connected
            one.send("say hello")
            assert one.receive() == two.receive() == "hello"
            c2.http.post("/broadcast", data="all")
            sockets2.publish("a", b"\x01bin", app=app2)
            for ws in (one, two):
                assert [ws.receive(), ws.receive()] == ["all", b"\x01bin"]
            with pytest.raises(TimeoutError):
                elsewhere.receive(timeout=0.2)  # another channel: another app
            # A process that serves no sockets (a cron job) publishes too, and never subscribes.
            job_app, job_sockets = redis_app(server)
            job_sockets.publish("a", "from a job", app=job_app)
            assert not t.cast(RedisBroker, Rooms.of(job_app).broker).subscribing
            assert one.receive() == two.receive() == "from a job"
            # Junk on the channel is ignored.
            fakeredis.FakeRedis(server=server).publish("test:room:a", "junk")
            sockets1.publish("a", "still fine", app=app1)
            assert one.receive() == two.receive() == "still fine"
    finally:
        for app in (app1, app2, other):
            Rooms.of(app).close()


def test_redis_broker_outage_and_recovery() -> None:
    server = fakeredis.FakeServer()
    app, sockets = redis_app(server)
    client = SocketTestClient(app)
    broker = t.cast(RedisBroker, Rooms.of(app).broker)
    try:
        with client.connect("/rooms/a") as ws:
            assert ws.receive() == "joined a"
            server.connected = False
            with pytest.raises(MessageQueueUnavailable, match=r"room 'a'.*redis://fake:6379/0 is unavailable"):
                sockets.publish("a", "lost", app=app)
            wait_until(lambda: not broker.connected)
            assert broker.last_error is not None
            ws.send("count a")  # the socket itself keeps working
            assert ws.receive() == "1"
            server.connected = True
            wait_until(lambda: broker.connected, timeout=5)
            sockets.publish("a", "back", app=app)
            assert ws.receive() == "back"
        assert [th for th in threading.enumerate() if th.name.startswith("flask-sockets subscriber")]
    finally:
        Rooms.of(app).close()
    assert not [th for th in threading.enumerate() if th.name.startswith("flask-sockets subscriber")]


def test_redis_url_config() -> None:
    app, _ = make_app(SOCKETS_MESSAGE_QUEUE="redis://:pw@127.0.0.1:1/0", SOCKETS_MESSAGE_QUEUE_CHANNEL="mine")
    broker = Rooms.of(app).broker
    assert isinstance(broker, RedisBroker)
    assert (broker.url, broker.channel) == ("redis://:pw@127.0.0.1:1/0", "mine")
    assert "pw" not in repr(broker)
    # Nothing listens on port 1: publishing fails at once, with a clear error.
    with pytest.raises(MessageQueueUnavailable, match=r"redis://:\*\*\*@127.0.0.1:1/0 is unavailable"):
        Rooms.of(app).publish("a", "x")
    Rooms.of(app).close()


def test_a_room_redis_cannot_carry_is_refused_before_joining() -> None:
    server = fakeredis.FakeServer()
    app, sockets = redis_app(server)

    @sockets.route("/bad")
    def bad(ws: t.Any) -> None:
        try:
            sockets.join(ws, "\ud800")
        except ValueError as e:
            ws.send(f"{e} {sorted(sockets.rooms(ws))} {sockets.count(chr(0xD800))}")

    try:
        with SocketTestClient(app).connect("/bad") as ws:
            assert ws.receive() == "A room sent through Redis must be valid Unicode text: '\\ud800' [] 0"
    finally:
        Rooms.of(app).close()


@pytest.mark.parametrize("url", ["redis://:secret@localhost:6379/0", "redis+cluster://localhost:7000/"])
def test_a_redis_url_without_redis_py_fails_at_init_app(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Without redis-py, SOCKETS_MESSAGE_QUEUE = a Redis URL stops the app at
    init_app with an install command that works anywhere (not a 500 on every
    socket); set after init_app, the first use raises the same."""
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` raises ImportError
    with pytest.raises(ImportError, match=r"pip install redis \(or install Flask-Sockets with its \[redis\] extra\)"):
        make_app(SOCKETS_MESSAGE_QUEUE=url)
    with pytest.raises(ImportError) as e:
        make_app(SOCKETS_MESSAGE_QUEUE=url)
    assert "secret" not in str(e.value)
    late = Flask("late")
    late_sockets = Sockets(late)
    late.config["SOCKETS_MESSAGE_QUEUE"] = url
    with pytest.raises(ImportError, match="pip install redis"):
        late_sockets.publish("a", "x", app=late)
