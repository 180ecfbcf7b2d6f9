"""What the per-connection and per-message savings must not change: options
read from the config on every socket (shared when equal), rooms members
whose queue and room set are made only when needed and that send straight
to a socket that can take a message without waiting, handlers with and
without URL variables, and ``websocket_view`` on an app without
:class:`Sockets`."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask

from flask_sockets import ConnectionClosed
from flask_sockets import SocketOptions
from flask_sockets import Sockets
from flask_sockets import websocket_view
from flask_sockets.base import SocketBase
from flask_sockets.rooms import Member
from flask_sockets.rooms import Rooms
from flask_sockets.testing import SocketTestClient

# -- SocketOptions.from_config ----------------------------------------------------


def test_options_follow_config_changes() -> None:
    config: dict[str, t.Any] = {"SOCKETS_MAX_MESSAGE_SIZE": 10, "SOCKETS_PING_INTERVAL": 5.0}
    first = SocketOptions.from_config(config, "chat")
    assert first == SocketOptions(max_message_size=10, ping_interval=5.0, subprotocol="chat")
    assert SocketOptions.from_config(config, "chat") is first  # equal settings: one shared object
    config["SOCKETS_MAX_MESSAGE_SIZE"] = 20
    config["SOCKETS_PING_INTERVAL"] = 0
    changed = SocketOptions.from_config(config, "chat")
    assert (changed.max_message_size, changed.ping_interval) == (20, None)
    assert SocketOptions.from_config(config).subprotocol is None


def test_options_keep_the_config_types() -> None:
    """``20`` and ``20.0`` are equal, but each config gets back its own."""
    as_float = SocketOptions.from_config({"SOCKETS_PING_TIMEOUT": 20.0})
    as_int = SocketOptions.from_config({"SOCKETS_PING_TIMEOUT": 20})
    assert type(as_float.ping_timeout) is float
    assert type(as_int.ping_timeout) is int


def test_options_with_an_unhashable_setting() -> None:
    class Size(int):
        __hash__ = None  # type: ignore[assignment]

    options = SocketOptions.from_config({"SOCKETS_MAX_MESSAGE_SIZE": Size(5)})
    assert options.max_message_size == 5


def test_options_subclass_builds_its_own() -> None:
    class Mine(SocketOptions):
        pass

    options = Mine.from_config({}, "x")
    assert type(options) is Mine
    assert options.subprotocol == "x"


# -- Member ------------------------------------------------------------------------


class _Socket(SocketBase):
    """Stands for one of our sockets (a :class:`~flask_sockets.base.SocketBase`)."""

    closed = False
    accepted = True

    def __init__(self) -> None:
        self.sent: list[t.Any] = []

    def send(self, message: t.Any) -> None:
        self.sent.append(message)


class _Runner:
    """Collects spawned work; the test runs it."""

    def __init__(self) -> None:
        self.work: list[t.Callable[[], object]] = []

    def spawn(self, function: t.Callable[..., object], *args: t.Any) -> None:
        self.work.append(lambda: function(*args))

    def run(self) -> None:
        while self.work:
            self.work.pop(0)()

    def here(self) -> bool:
        return False  # the publisher runs elsewhere: messages are queued

    def sleep(self, seconds: float) -> None:  # pragma: no cover - not used here
        pass

    def call_with_timeout(self, function: t.Callable[[], object], timeout: float) -> bool:  # pragma: no cover
        function()
        return True


def test_member_queue_is_made_when_needed_and_dropped_when_drained() -> None:
    ws, runner = _Socket(), _Runner()
    member = Member(ws, runner, queue_size=2, close_timeout=1.0)  # type: ignore[arg-type]
    assert member.pending == 0
    assert member.rooms == frozenset()
    assert member._pending is None
    assert member.offer("a") and member.offer("b")
    assert member.pending == 2
    runner.run()
    assert ws.sent == ["a", "b"]
    assert member.pending == 0
    assert member._pending is None  # an idle member keeps no empty queue
    assert member.offer("c")  # and gets a new one for the next message
    runner.run()
    assert ws.sent == ["a", "b", "c"]


def test_member_overflow_and_end() -> None:
    ws, runner = _Socket(), _Runner()
    member = Member(ws, runner, queue_size=2, close_timeout=1.0)  # type: ignore[arg-type]
    assert member.offer(1) and member.offer(2)
    assert not member.offer(3)  # full: the member is closing, its queue dropped
    assert member.closing and member.pending == 0
    runner.run()
    assert ws.sent == []
    other = Member(_Socket(), runner, queue_size=1, close_timeout=1.0)  # type: ignore[arg-type]
    other.end()
    assert other.ended and other.closing
    assert other.offer("late") and other.pending == 0


def test_rooms_of_a_member_that_joined_and_left() -> None:
    app = Flask(__name__)
    Sockets(app)
    rooms = Rooms.of(app)
    ws = _Socket()
    ws.accepted = True  # type: ignore[attr-defined]
    rooms.register(ws)  # type: ignore[arg-type]
    assert rooms.rooms_of(ws) == frozenset()  # type: ignore[arg-type]
    rooms.leave(ws, "never joined")  # type: ignore[arg-type]
    rooms.join(ws, "a")  # type: ignore[arg-type]
    rooms.join(ws, "b")  # type: ignore[arg-type]
    assert rooms.rooms_of(ws) == {"a", "b"}  # type: ignore[arg-type]
    rooms.leave(ws, "a")  # type: ignore[arg-type]
    assert rooms.rooms_of(ws) == {"b"}  # type: ignore[arg-type]
    assert (rooms.count("a"), rooms.count("b")) == (0, 1)
    rooms.forget(ws)  # type: ignore[arg-type]
    assert rooms.rooms_of(ws) == frozenset()  # type: ignore[arg-type]
    assert (rooms.count("b"), rooms.sockets) == (0, 0)


class _DirectSocket(_Socket):
    """A socket with ``send_nowait``, as the gevent socket has: takes a
    message at once while ``room`` lasts, then says it would have to wait."""

    def __init__(self, room: int, error: Exception | None = None) -> None:
        super().__init__()
        self.room = room
        self.error = error
        self.direct: list[t.Any] = []

    def send_nowait(self, message: t.Any) -> bool:
        if self.error is not None:
            raise self.error
        if self.room <= 0:
            return False
        self.room -= 1
        self.direct.append(message)
        return True


class _HereRunner(_Runner):
    def __init__(self, here: bool) -> None:
        super().__init__()
        self._here = here

    def here(self) -> bool:
        return self._here


def test_member_sends_straight_to_a_socket_that_takes_it_without_waiting() -> None:
    ws, runner = _DirectSocket(room=2), _HereRunner(here=True)
    member = Member(ws, runner, queue_size=4, close_timeout=1.0)  # type: ignore[arg-type]
    assert member.offer("a") and member.offer("b")
    assert ws.direct == ["a", "b"] and runner.work == [] and member._pending is None
    assert member.offer("c")  # the socket would wait now: queued for a writer
    assert ws.direct == ["a", "b"] and member.pending == 1 and len(runner.work) == 1
    ws.room = 10
    assert member.offer("d")  # a writer is on its way: behind it, in order
    runner.run()
    assert ws.direct == ["a", "b"] and ws.sent == ["c", "d"]
    assert member.offer("e")  # idle again: straight out
    assert ws.direct == ["a", "b", "e"] and runner.work == []


def test_member_queues_when_the_publisher_runs_elsewhere() -> None:
    ws, runner = _DirectSocket(room=10), _HereRunner(here=False)
    member = Member(ws, runner, queue_size=4, close_timeout=1.0)  # type: ignore[arg-type]
    assert member.offer("a")
    assert ws.direct == [] and member.pending == 1
    runner.run()
    assert ws.sent == ["a"]


@pytest.mark.parametrize("error", [ConnectionClosed("gone"), OSError("reset"), RuntimeError("bug")])
def test_member_stops_when_sending_straight_fails(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    ws, runner = _DirectSocket(room=10, error=error), _HereRunner(here=True)
    member = Member(ws, runner, queue_size=4, close_timeout=1.0)  # type: ignore[arg-type]
    assert member.offer("a")  # the publisher never sees the error
    assert member.closing and member.pending == 0 and runner.work == []
    assert member.offer("b") and member.pending == 0
    assert ("sending a published message failed" in caplog.text) == isinstance(error, RuntimeError)


# -- the view ------------------------------------------------------------------------


def test_handlers_with_and_without_url_variables() -> None:
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/plain")
    def plain(ws: t.Any) -> None:
        ws.send(f"members {sockets.rooms_for().sockets}")

    @sockets.route("/room/<name>/<int:n>")
    def with_variables(ws: t.Any, name: str, n: int) -> None:
        ws.send(f"{name} {n + 1}")

    client = SocketTestClient(app)
    with client.connect("/plain") as ws:
        assert ws.receive() == "members 1"
    with client.connect("/room/x/41") as ws:
        assert ws.receive() == "x 42"


def test_websocket_view_on_an_app_without_sockets() -> None:
    app = Flask(__name__)
    Sockets().init_app(Flask("other"))  # a Sockets exists, but not on this app

    def hello(ws: t.Any, name: str = "world") -> None:
        ws.send(f"hello {name}")

    app.add_url_rule("/hello", "hello", websocket_view(hello), websocket=True)
    app.add_url_rule("/hello/<name>", "hello_name", websocket_view(hello), websocket=True)
    client = SocketTestClient(app)
    with client.connect("/hello") as ws:
        assert ws.receive() == "hello world"
    with client.connect("/hello/you") as ws:
        assert ws.receive() == "hello you"
