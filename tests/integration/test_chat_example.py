"""examples/chat without a browser: the session gate, the socket protocol,
presence (on one process; on two gunicorn workers sharing Redis, one of them
then killed with SIGKILL), announce.py publishing from outside, and Redis
going away under the gunicorn workers. (tests/browser drives the pages.)"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.cookiejar
import json
import os
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


def events(ws: ClientConnection, count: int) -> list[Event]:
    return [json.loads(ws.recv(TIMEOUT)) for _ in range(count)]


@dataclasses.dataclass
class Person:
    """Someone in a room: their socket, and what its ``welcome`` said."""

    name: str
    ws: ClientConnection
    id: str
    worker: int

    @property
    def member(self) -> dict[str, str]:
        """How the room's presence list shows them."""
        return {"id": self.id, "name": self.name}


def enter(stack: contextlib.ExitStack, server: Process, name: str, room: str = "tea") -> Person:
    """``name`` picks their name and opens the room's socket (closed with ``stack``)."""
    cookie = session_cookie(server.server.http_url, name)
    url = f"{server.server.ws_url}/rooms/{room}/socket"
    ws = stack.enter_context(connect(url, additional_headers={"Cookie": cookie}, open_timeout=TIMEOUT))
    welcome = events(ws, 1)[0]
    assert (welcome["type"], welcome["room"], welcome["name"]) == ("welcome", room, name)
    return Person(name, ws, welcome["id"], int(welcome["worker"]))


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
            event = json.loads(ws.recv(max(left, 0)))
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
    url = f"{process.server.ws_url}/rooms/tea/socket"
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
            bob.ws.send("not json")  # ignored
            bob.ws.send(json.dumps({"type": "here"}))  # ignored: no such message any more
            bob.ws.send(json.dumps({"type": "say", "text": "Hello Alice"}))
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
                    event = json.loads(person.ws.recv(max(deadline - time.monotonic(), 0)))
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
        alice.ws.send(json.dumps({"type": "say", "text": "anyone?"}))
        error = events(alice.ws, 1)[0]
        assert error == {"type": "error", "text": "The chat is unavailable right now; try again soon."}
        result = announce(redis_server.url, "tea", "lost")
        assert result.returncode == 1 and "is unavailable" in result.stderr

        redis_server.start()  # empty: nothing survived the restart

        def delivered() -> bool:
            # Until the workers' subscribers are back, a message is refused
            # (an error event) or published to nobody (no event at all).
            alice.ws.send(json.dumps({"type": "say", "text": "back?"}))
            try:
                return json.loads(alice.ws.recv(0.5))["type"] == "say"
            except TimeoutError:
                return False

        wait_until(delivered)
        # Alice's presence is back in the new Redis (her worker's heartbeat
        # writes it again): someone who comes now sees her.
        bob = enter(stack, server, "Bob")
        presence_until(bob.ws, room_list(alice, bob), timeout=TTL + SLACK)
        presence_until(alice.ws, room_list(alice, bob))


def test_chat_live_envelope_resumes_without_loss(spawn: t.Callable[..., Process]) -> None:
    """/live, the envelope route of the chat: a client that reconnects with
    its last position gets what was said while it was away, then live."""
    port = free_port()
    process = spawn([sys.executable, str(CHAT / "app.py"), "--port", str(port)], port=port)
    base, ws_base = process.server.http_url, process.server.ws_url
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{ws_base}/live", open_timeout=TIMEOUT).close()
    assert refused.value.response.status_code == 403
    headers = {"Cookie": session_cookie(base, "Ada")}

    def frames(ws: ClientConnection, kind: str) -> t.Iterator[Event]:
        while True:
            frame = json.loads(ws.recv(TIMEOUT))
            if frame.get("t") == kind:
                yield frame

    with contextlib.ExitStack() as stack:
        bob = enter(stack, process, "Bob")
        with connect(f"{ws_base}/live", additional_headers=headers, open_timeout=TIMEOUT) as ada:
            assert json.loads(ada.recv(TIMEOUT))["t"] == "hello"
            assert json.loads(ada.recv(TIMEOUT))["data"]["type"] == "welcome"
            ada.send(json.dumps({"t": "sub", "room": "bad room!"}))
            assert next(frames(ada, "error"))["reason"] == "refused"
            ada.send(json.dumps({"t": "sub", "room": "tea"}))
            sub = next(frames(ada, "sub"))
            assert sub["recovered"] is False
            ada.send(json.dumps({"t": "msg", "data": {"type": "say", "room": "tea", "text": "hello"}}))
            said = next(m for m in frames(ada, "msg") if json.loads(m["data"])["type"] == "say")
            assert json.loads(said["data"])["text"] == "hello"
            position = (said["offset"], said["epoch"])
        bob.ws.send(json.dumps({"type": "say", "text": "while you were away"}))
        presence_until(bob.ws, room_list(bob))  # Ada's socket has left
        with connect(f"{ws_base}/live", additional_headers=headers, open_timeout=TIMEOUT) as ada:
            ada.send(json.dumps({"t": "sub", "room": "tea", "offset": position[0], "epoch": position[1]}))
            sub = next(frames(ada, "sub"))
            assert sub["recovered"] is True and sub["epoch"] == position[1]
            replay = [json.loads(next(frames(ada, "msg"))["data"]) for _ in range(sub["offset"] - position[0])]
            assert {"type": "say", "id": bob.id, "name": "Bob", "text": "while you were away"} in replay
