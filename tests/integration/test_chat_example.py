"""examples/chat without a browser: the session gate, the socket protocol,
announce.py publishing from outside, and Redis going away under the
gunicorn workers. (tests/browser drives the pages themselves.)"""

from __future__ import annotations

import http.cookiejar
import json
import os
import subprocess
import sys
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


def session_cookie(base: str, name: str) -> str:
    """Pick ``name`` with the HTML form, as a browser would; the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/name", data=f"name={name}".encode(), timeout=TIMEOUT) as response:
        assert response.status == 200 and response.url == base + "/"
        assert f'You are <strong id="me">{name}</strong>' in response.read().decode()
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def events(ws: ClientConnection, count: int) -> list[dict[str, t.Any]]:
    return [json.loads(ws.recv(TIMEOUT)) for _ in range(count)]


def chat_on_gunicorn(spawn: t.Callable[..., Process], redis: RedisServer) -> Process:
    port = free_port()
    argv = gunicorn_argv(port, "app:app", workers=2, chdir=CHAT)
    env = {"SOCKETS_MESSAGE_QUEUE": redis.url, "GUNICORN_CMD_ARGS": "", "PYTHONDONTWRITEBYTECODE": "1"}
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
    port = free_port()
    server = spawn([sys.executable, str(CHAT / "app.py"), "--port", str(port)], port=port).server
    url = f"{server.ws_url}/rooms/tea/socket"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 403  # no name in the session
    alice, bob = session_cookie(server.http_url, "Alice"), session_cookie(server.http_url, "Bob")
    with connect(url, additional_headers={"Cookie": alice}, open_timeout=TIMEOUT) as a:
        welcome, joined = events(a, 2)
        assert (welcome["type"], welcome["name"], joined["type"]) == ("welcome", "Alice", "join")
        with connect(url, additional_headers={"Cookie": bob}, open_timeout=TIMEOUT) as b:
            assert [e["type"] for e in events(b, 2)] == ["welcome", "join"]
            joined = events(a, 1)[0]
            assert (joined["type"], joined["name"]) == ("join", "Bob")
            a.send(json.dumps({"type": "here"}))
            assert events(b, 1)[0]["name"] == "Alice"
            events(a, 1)
            b.send("not json")  # ignored
            b.send(json.dumps({"type": "say", "text": "Hello Alice"}))
            for ws in (a, b):
                said = events(ws, 1)[0]
                assert (said["type"], said["name"], said["text"]) == ("say", "Bob", "Hello Alice")
        left = events(a, 1)[0]
        assert (left["type"], left["name"]) == ("leave", "Bob")
    # Without Redis, announce.py has nobody to reach and refuses.
    result = announce(None, "tea", "hello")
    assert result.returncode == 2 and "SOCKETS_MESSAGE_QUEUE" in result.stderr


def test_chat_on_gunicorn_workers_with_redis(redis_server: RedisServer, spawn: t.Callable[..., Process]) -> None:
    server = chat_on_gunicorn(spawn, redis_server).server
    url = f"{server.ws_url}/rooms/tea/socket"
    alice = session_cookie(server.http_url, "Alice")
    with connect(url, additional_headers={"Cookie": alice}, open_timeout=TIMEOUT) as a:
        assert [e["type"] for e in events(a, 2)] == ["welcome", "join"]
        # From a process that serves no sockets, through Redis.
        result = announce(redis_server.url, "tea", "Tea is ready", "--name", "Kettle")
        assert result.returncode == 0, result.stderr
        said = events(a, 1)[0]
        assert (said["name"], said["text"]) == ("Kettle", "Tea is ready")

        redis_server.stop()
        a.send(json.dumps({"type": "say", "text": "anyone?"}))
        error = events(a, 1)[0]
        assert error == {"type": "error", "text": "The chat is unavailable right now; try again soon."}
        result = announce(redis_server.url, "tea", "lost")
        assert result.returncode == 1 and "is unavailable" in result.stderr

        redis_server.start()

        def delivered() -> bool:
            # Until the workers' subscribers are back, a message is refused
            # (an error event) or published to nobody (no event at all).
            a.send(json.dumps({"type": "say", "text": "back?"}))
            try:
                return json.loads(a.recv(0.5))["type"] == "say"
            except TimeoutError:
                return False

        wait_until(delivered)
