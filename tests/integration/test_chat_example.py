"""examples/chat without a browser: the session gate, the socket protocol
(the envelope of flask-sockets.js on ``/live``, spoken here by hand),
presence (on one process; on two gunicorn workers sharing Redis, one of them
then killed with SIGKILL), announce.py publishing from outside, Redis going
away under the gunicorn workers, and a resume after a reconnect.
(tests/browser drives the pages.)"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import typing as t
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect

from tests.conftest import EXAMPLES
from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.conftest import free_port
from tests.conftest import wait_until
from tests.integration.gunicorn import gunicorn_argv
from tests.redisserver import RedisServer

pytestmark = pytest.mark.slow

CHAT = EXAMPLES / "chat"
#: SOCKETS_PRESENCE_TTL of the gunicorn tests, in seconds: short, so that a
#: killed worker's people leave the list soon.
TTL = 2.0
#: What a loaded machine may add to a documented bound, in seconds.
SLACK = 3.0

Event = dict[str, t.Any]


def session_cookie(base: str, name: str) -> str:
    """Pick ``name`` with the HTML form, as a browser would; the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/name", data=f"name={name}".encode(), timeout=TIMEOUT) as response:
        assert response.status == 200 and response.url == base + "/"
        assert f'You are <strong id="me">{name}</strong>' in response.read().decode()
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def next_event(ws: ClientConnection, timeout: float = TIMEOUT) -> Event:
    """The next chat event on an envelope socket: the ``data`` of the next
    ``msg`` frame (a room event, or one for this socket alone); hello,
    heartbeats and subscribe answers are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(max(deadline - time.monotonic(), 0)))
        if frame["t"] == "msg":
            return t.cast(Event, frame["data"])


def events(ws: ClientConnection, count: int) -> list[Event]:
    return [next_event(ws) for _ in range(count)]


def subscribe(ws: ClientConnection, room: str, position: tuple[int, str] | None = None) -> Event:
    """Subscribe to ``room`` (from ``position``); the answer (events before it are dropped)."""
    frame: Event = {"t": "sub", "room": room}
    if position is not None:
        frame.update(offset=position[0], epoch=position[1])
    ws.send(json.dumps(frame))
    while True:
        answer = json.loads(ws.recv(TIMEOUT))
        if answer["t"] in ("sub", "error"):
            return t.cast(Event, answer)


@dataclasses.dataclass
class Person:
    """Someone in a room: their socket, and what its ``welcome`` said."""

    name: str
    ws: ClientConnection
    id: str
    worker: int
    room: str

    @property
    def member(self) -> dict[str, str]:
        """How the room's presence list shows them."""
        return {"id": self.id, "name": self.name}

    def say(self, text: str) -> None:
        self.ws.send(json.dumps({"t": "msg", "data": {"type": "say", "room": self.room, "text": text}}))


def enter(stack: contextlib.ExitStack, server: Process, name: str, room: str = "tea") -> Person:
    """``name`` picks their name, opens the chat's socket (closed with
    ``stack``) and subscribes to ``room``."""
    cookie = session_cookie(server.server.http_url, name)
    url = f"{server.server.ws_url}/live"
    ws = stack.enter_context(connect(url, additional_headers={"Cookie": cookie}, open_timeout=TIMEOUT))
    assert json.loads(ws.recv(TIMEOUT)) == {"t": "hello", "ping": 25}
    welcome = next_event(ws)
    assert (welcome["type"], welcome["name"]) == ("welcome", name)
    answer = subscribe(ws, room)
    assert answer["t"] == "sub" and answer["recovered"] is False, answer
    return Person(name, ws, welcome["id"], int(welcome["worker"]), room)


def room_list(*people: Person) -> list[dict[str, str]]:
    """The presence list a room of ``people`` shows: sorted by name."""
    return [p.member for p in sorted(people, key=lambda p: p.name.casefold())]


def presence_until(ws: ClientConnection, expected: list[dict[str, str]], timeout: float = TIMEOUT) -> list[Event]:
    """Read ``ws`` until a ``presence`` event lists ``expected``; the
    ``presence`` events read, the last one listing ``expected``. Other
    events are skipped; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen: list[Event] = []
    while True:
        left = deadline - time.monotonic()
        try:
            event = next_event(ws, max(left, 0))
        except TimeoutError:
            last = seen[-1]["members"] if seen else None
            pytest.fail(f"no presence list {expected} within {timeout}s; the last one: {last}")
        if event["type"] == "presence":
            seen.append(event)
            if event["members"] == expected:
                return seen


def chat_on_gunicorn(spawn: t.Callable[..., Process], redis: RedisServer) -> Process:
    port = free_port()
    argv = gunicorn_argv(port, "app:app", workers=2, chdir=CHAT)
    env = {
        "SOCKETS_MESSAGE_QUEUE": redis.url,
        "SOCKETS_PRESENCE_TTL": str(TTL),
        "GUNICORN_CMD_ARGS": "",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return spawn(argv, port=port, cwd=CHAT, env=env)


def announce(redis_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOCKETS_MESSAGE_QUEUE"}
    if redis_url is not None:
        env["SOCKETS_MESSAGE_QUEUE"] = redis_url
    return subprocess.run(
        [sys.executable, str(CHAT / "announce.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_chat_on_one_process(spawn: t.Callable[..., Process]) -> None:
    """`hatch run chat`: the session gate, presence and messages in one
    process with the in-process backend (no Redis)."""
    port = free_port()
    process = spawn([sys.executable, str(CHAT / "app.py"), "--port", str(port)], port=port)
    url = f"{process.server.ws_url}/live"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 403  # no name in the session
    with contextlib.ExitStack() as stack:
        alice = enter(stack, process, "Alice")
        assert alice.worker == process.popen.pid
        # Alice's join: the room's list, and what changed.
        assert events(alice.ws, 1) == [
            {"type": "presence", "members": room_list(alice), "change": {"kind": "join", **alice.member}}
        ]
        with contextlib.ExitStack() as bobs:
            bob = enter(bobs, process, "Bob")
            assert bob.id != alice.id
            joined = {"type": "presence", "members": room_list(alice, bob), "change": {"kind": "join", **bob.member}}
            assert events(bob.ws, 1) == [joined]
            assert events(alice.ws, 1) == [joined]
            bob.ws.send(json.dumps({"t": "msg", "data": "not an event"}))  # ignored
            bob.ws.send(json.dumps({"t": "msg", "data": {"type": "here"}}))  # ignored: no such event
            bob.ws.send(json.dumps({"t": "msg", "data": {"type": "say", "room": "elsewhere", "text": "?"}}))  # ignored
            # A room name the chat refuses.
            assert subscribe(bob.ws, "no such room!") == {"t": "error", "room": "no such room!", "reason": "refused"}
            bob.say("Hello Alice")
            said = {"type": "say", **bob.member, "text": "Hello Alice"}
            assert events(alice.ws, 1) == [said]
            assert events(bob.ws, 1) == [said]
        # Bob's socket closed: he left, and Alice is told who is still there.
        assert events(alice.ws, 1) == [
            {"type": "presence", "members": room_list(alice), "change": {"kind": "leave", **bob.member}}
        ]
        with pytest.raises(TimeoutError):
            alice.ws.recv(0.2)  # and nothing else: one event per change
    # Without Redis, announce.py has nobody to reach and refuses.
    result = announce(None, "tea", "hello")
    assert result.returncode == 2 and "SOCKETS_MESSAGE_QUEUE" in result.stderr


def test_presence_on_two_workers_and_one_killed(redis_server: RedisServer, spawn: t.Callable[..., Process]) -> None:
    """People on both gunicorn workers see the same presence list; after one
    worker is killed with SIGKILL, its people leave the survivor's list
    within SOCKETS_PRESENCE_TTL + SOCKETS_PRESENCE_TTL/3."""
    server = chat_on_gunicorn(spawn, redis_server)
    with contextlib.ExitStack() as stack:
        # The workers share the listening socket: people enter until each
        # worker serves two of them.
        people: list[Person] = []
        for i in range(30):
            people.append(enter(stack, server, f"Person{i:02d}"))
            # Everyone in the room, on either worker, sees everyone.
            for person in people:
                presence_until(person.ws, room_list(*people))
            workers = collections.Counter(p.worker for p in people)
            if len(workers) == 2 and min(workers.values()) >= 2:
                break
        assert len(workers) == 2 and min(workers.values()) >= 2, f"people per worker: {workers}"

        victim = people[0].worker
        dead = [p for p in people if p.worker == victim]
        survivors = [p for p in people if p.worker != victim]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + TTL + TTL / 3 + SLACK
        for person in survivors:
            # Each dead person's leave, told once by the surviving worker,
            # with the list as it is then (shorter by at least that person).
            leaves: list[Event] = []
            while len(leaves) < len(dead) and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    event = next_event(person.ws, max(deadline - time.monotonic(), 0))
                    if event["type"] == "presence":
                        assert event["change"]["kind"] == "leave", event
                        assert event["change"]["id"] not in {e["change"]["id"] for e in leaves}, event
                        leaves.append(event)
            elapsed = time.monotonic() - killed
            assert sorted(e["change"]["id"] for e in leaves) == sorted(p.id for p in dead), (
                f"{elapsed:.1f}s after the kill, these left: {[e['change'] for e in leaves]}; "
                f"the killed worker's: {[p.member for p in dead]}"
            )
            assert leaves[-1]["members"] == room_list(*survivors)
            print(f"{len(dead)} people of the killed worker left {elapsed:.1f}s after SIGKILL (TTL {TTL}s)")
        for person in survivors:
            with pytest.raises(TimeoutError):
                person.ws.recv(TTL / 3)  # and no second leave for anyone

        # Someone new (on the survivor, or on the worker gunicorn started in
        # place of the killed one) sees the survivors and themselves.
        newcomer = enter(stack, server, "Zoe")
        assert newcomer.worker != victim
        presence_until(newcomer.ws, room_list(*survivors, newcomer))
        for person in survivors:
            presence_until(person.ws, room_list(*survivors, newcomer))


def test_chat_on_gunicorn_workers_with_redis(redis_server: RedisServer, spawn: t.Callable[..., Process]) -> None:
    """announce.py reaches the room through Redis; with Redis stopped the
    chat says so, and when it is back messages flow and presence heals."""
    server = chat_on_gunicorn(spawn, redis_server)
    with contextlib.ExitStack() as stack:
        alice = enter(stack, server, "Alice")
        assert events(alice.ws, 1) == [
            {"type": "presence", "members": room_list(alice), "change": {"kind": "join", **alice.member}}
        ]
        # From a process that serves no sockets, through Redis.
        result = announce(redis_server.url, "tea", "Tea is ready", "--name", "Kettle")
        assert result.returncode == 0, result.stderr
        said = events(alice.ws, 1)[0]
        assert (said["type"], said["name"], said["text"]) == ("say", "Kettle", "Tea is ready")

        redis_server.stop()
        alice.say("anyone?")
        error = events(alice.ws, 1)[0]
        assert error == {"type": "error", "text": "The chat is unavailable right now; try again soon."}
        result = announce(redis_server.url, "tea", "lost")
        assert result.returncode == 1 and "is unavailable" in result.stderr

        redis_server.start()  # empty: nothing survived the restart

        def delivered() -> bool:
            # Until the workers' subscribers are back, a message is refused
            # (an error event) or published to nobody (no event at all).
            alice.say("back?")
            try:
                return next_event(alice.ws, 0.5)["type"] == "say"
            except TimeoutError:
                return False

        wait_until(delivered)
        # Alice's presence is back in the new Redis (her worker's heartbeat
        # writes it again): someone who comes now sees her.
        bob = enter(stack, server, "Bob")
        presence_until(bob.ws, room_list(alice, bob), timeout=TTL + SLACK)
        presence_until(alice.ws, room_list(alice, bob))


def test_chat_resumes_without_loss(spawn: t.Callable[..., Process]) -> None:
    """A socket that reconnects and subscribes again with its last position
    gets what was said while it was away, once, then the live events; the
    room page subscribes from a little before the room's position, so that
    it shows the room's last messages."""
    port = free_port()
    process = spawn([sys.executable, str(CHAT / "app.py"), "--port", str(port)], port=port)
    with contextlib.ExitStack() as stack:
        bob = enter(stack, process, "Bob")
        with contextlib.ExitStack() as adas:
            ada = enter(adas, process, "Ada")
            presence_until(bob.ws, room_list(ada, bob))
            ada.say("hello")
            said = json.loads(ada.ws.recv(TIMEOUT))
            while said.get("t") != "msg" or said["data"]["type"] != "say":
                said = json.loads(ada.ws.recv(TIMEOUT))
            assert said["data"]["text"] == "hello"
            position = (said["offset"], said["epoch"])
        presence_until(bob.ws, room_list(bob))  # Ada's socket has left
        for i in range(3):
            bob.say(f"while you were away {i}")
        cookie = session_cookie(process.server.http_url, "Ada")
        with connect(f"{process.server.ws_url}/live", additional_headers={"Cookie": cookie}) as ws:
            answer = subscribe(ws, "tea", position)
            assert answer["recovered"] is True and answer["epoch"] == position[1]
            missed = answer["offset"] - position[0]
            replay = [json.loads(ws.recv(TIMEOUT)) for _ in range(missed)]
            assert [m["offset"] for m in replay] == list(range(position[0] + 1, answer["offset"] + 1))
            says = [m["data"]["text"] for m in replay if m["data"]["type"] == "say"]
            assert says == [f"while you were away {i}" for i in range(3)]
            # Ada's new join comes live, after the replay.
            live = next_event(ws)
            assert live["type"] == "presence" and live["change"]["kind"] == "join"

        # The room page subscribes from BACKLOG messages before the room's position.
        opener = urllib.request.build_opener()
        opener.addheaders = [("Cookie", cookie)]
        with opener.open(f"{process.server.http_url}/rooms/tea", timeout=TIMEOUT) as response:
            page = response.read().decode()
        match = re.search(r'"since": (\{[^}]*\})', page)
        assert match, page
        since = json.loads(match.group(1))
        assert since["epoch"] == position[1] and since["offset"] >= 0
