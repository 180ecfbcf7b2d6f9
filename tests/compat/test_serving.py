"""0.2 apps run unchanged on every serving path (see conftest.py): the
handshake does not wait for the handler, gevent-websocket's
``server.clients`` is there, close frames are well formed, and refused
origins are explained in the log."""

from __future__ import annotations

import struct
import typing as t
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.conftest import wait_until
from tests.gevent.rawclient import RawClient

#: Long enough for any server on a loaded machine to answer a handshake that
#: does not wait for the handler; shorter than the 3 s /later waits to send.
OPEN_TIMEOUT = 1.5
#: For a socket whose handler never reads: nothing answers the client's
#: close frame (as on 0.2), so the client should not wait long for it.
CLOSE_TIMEOUT = 0.5

Served = t.Callable[[str, str], Process]


def http_get(process: Process, path: str) -> str:
    with urllib.request.urlopen(f"{process.server.http_url}{path}", timeout=TIMEOUT) as response:
        return str(response.read().decode())


# -- item 1: the 101 does not wait for the handler -------------------------------


def test_handler_that_sends_late_opens_at_once(served: Served, path: str) -> None:
    """A handler that sends only after 3 s: the client's open succeeds within
    1.5 s, and the message arrives later."""
    process = served("waiting", path)
    with connect(f"{process.server.ws_url}/later", open_timeout=OPEN_TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "pushed"


def test_clients_list_fed_by_an_http_callback(served: Served, path: str) -> None:
    """The module-level ``clients`` list: sockets that only wait open at once
    and get what an HTTP request sends them."""
    process = served("waiting", path)
    url = f"{process.server.ws_url}/listen"
    first = connect(url, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT)
    second = connect(url, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT)
    with first, second:
        # The handler appends the socket right after the 101: wait for both.
        wait_until(lambda: http_get(process, "/clients") == "2")
        assert http_get(process, "/callback?message=ping") == "2"
        assert first.recv(timeout=TIMEOUT) == "ping"
        assert second.recv(timeout=TIMEOUT) == "ping"
        assert http_get(process, "/callback?message=hello") == "2"
        assert first.recv(timeout=TIMEOUT) == "hello"
        assert second.recv(timeout=TIMEOUT) == "hello"


def test_silent_handler_opens_at_once(served: Served, path: str) -> None:
    """A handler that never uses its socket: the socket opens all the same."""
    process = served("waiting", path)
    url = f"{process.server.ws_url}/silent"
    with connect(url, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
    assert "Traceback" not in process.output()


# -- item 2: gevent-websocket's server.clients and handler.active_client ---------


def test_app_engine_chat_sample_broadcasts(served: Served, path: str) -> None:
    """Google's App Engine sample sends each message to every client through
    ``ws.handler.server.clients.values()``."""
    process = served("appengine_chat", path)
    url = f"{process.server.ws_url}/chat"
    with connect(url, open_timeout=TIMEOUT) as alice, connect(url, open_timeout=TIMEOUT) as bob:
        # bob is registered once his socket is open; a message from alice
        # reaches him then (earlier ones reach only those already there).
        deadline_messages = 0
        while True:
            deadline_messages += 1
            assert deadline_messages < 100, "bob never joined server.clients"
            alice.send(f"hello {deadline_messages}")
            assert alice.recv(timeout=TIMEOUT) == f"hello {deadline_messages}"
            try:
                if bob.recv(timeout=0.1) == f"hello {deadline_messages}":
                    break
            except TimeoutError:
                continue
        bob.send("hi alice")
        assert bob.recv(timeout=TIMEOUT) == "hi alice"
        assert alice.recv(timeout=TIMEOUT) == "hi alice"
    assert "AttributeError" not in process.output()
    assert "Traceback" not in process.output()


def test_active_client_is_the_connection(served: Served, path: str) -> None:
    """``ws.handler.active_client`` is ``Client(address, ws)`` for the connection."""
    process = served("appengine_chat", path)
    with connect(f"{process.server.ws_url}/whoami", open_timeout=TIMEOUT) as ws:
        host, port = ws.socket.getsockname()[:2]
        assert ws.recv(timeout=TIMEOUT) == f"{host}:{port} True"


# -- item 4: close frames are well formed ------------------------------------------


def close_frame(client: RawClient) -> bytes:
    """The payload of the server's close frame, as sent."""
    while True:
        opcode, payload = client.read_frame()
        if opcode == Opcode.CLOSE:
            return payload


@pytest.mark.parametrize(
    ("route", "code", "reason"),
    [
        ("/boom", CloseCode.INTERNAL_ERROR, b"Internal Server Error"),
        ("/forbidden", CloseCode.POLICY_VIOLATION, b"403 Forbidden"),
        ("/bye", CloseCode.NORMAL_CLOSURE, b""),
    ],
)
def test_close_frame_carries_the_code(served: Served, path: str, route: str, code: int, reason: bytes) -> None:
    """The close frame after a handler raised (1011), aborted (1008) or
    returned (1000) starts with the 2-byte code, then the reason, on every
    path (gevent-websocket's close(code, message) drops the code)."""
    process = served("failing", path)
    client = RawClient("127.0.0.1", process.server.port, route)
    try:
        assert client.status == 101
        assert close_frame(client) == struct.pack("!H", code) + reason
    finally:
        client.close()
    if route == "/boom":
        wait_until(lambda: "handler failed on purpose" in process.output())


# -- item 6: a refused origin is explained once -------------------------------------


def refuse(process: Process, path: str, origin: str) -> None:
    """Open /echo from ``origin``: HTTP 403 where Flask runs before the 101;
    under gevent-websocket's own handler (which answers the handshake before
    Flask runs) the socket opens and is closed with 1008."""
    url = f"{process.server.ws_url}/echo"
    if path == "pywsgi":
        with connect(url, origin=origin, open_timeout=TIMEOUT) as ws:  # type: ignore[arg-type]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (CloseCode.POLICY_VIOLATION, "403 Forbidden")
    else:
        with pytest.raises(InvalidStatus) as e:
            connect(url, origin=origin, open_timeout=TIMEOUT)  # type: ignore[arg-type]
        assert e.value.response.status_code == 403


def test_refused_origin_is_logged_once_per_origin(served: Served, path: str) -> None:
    """A refused origin gets one WARNING naming the origin, what was expected
    and SOCKETS_ALLOWED_ORIGINS, however often it comes back."""
    process = served("failing", path)
    for origin in ["https://evil.example", "https://evil.example", "https://other.example", "https://evil.example"]:
        refuse(process, path, origin)
    # The same origin as the server's Host still gets in.
    with connect(f"{process.server.ws_url}/echo", origin=process.server.http_url, open_timeout=TIMEOUT) as ws:  # type: ignore[arg-type]
        ws.send("same origin")
        assert ws.recv(timeout=TIMEOUT) == "same origin"
    wait_until(lambda: "'https://other.example'" in process.output())
    lines = [line for line in process.output().splitlines() if "Refused a WebSocket" in line]
    assert len(lines) == 2, lines
    evil, other = lines
    assert "'https://evil.example'" in evil and "'https://other.example'" in other
    for line in lines:
        assert "WARNING" in line or "warning" in line.lower()
        assert f"http://{process.server.host}:{process.server.port}" in line  # the expected origin
        assert "SOCKETS_ALLOWED_ORIGINS" in line
    assert "Traceback" not in process.output()


# -- rooms behind every server ---------------------------------------------------------


def test_rooms_on_every_path(served: Served, path: str) -> None:
    """Rooms work behind every server, gevent-websocket's own handler
    included (its socket is adapted for the rooms, and handlers still get
    it as is): a published message reaches every member, ``members()``
    lists the handlers' sockets, and a handler that raises closes with 1011."""
    process = served("rooms", path)
    url = f"{process.server.ws_url}/rooms/a"
    with connect(url, open_timeout=TIMEOUT) as first, connect(url, open_timeout=TIMEOUT) as second:
        assert first.recv(timeout=TIMEOUT) == "joined a: True"
        assert second.recv(timeout=TIMEOUT) == "joined a: True"
        first.send("hello")
        assert (first.recv(timeout=TIMEOUT), second.recv(timeout=TIMEOUT)) == ("hello", "hello")
        second.send("boom")
        with pytest.raises(ConnectionClosed) as closed:
            second.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "Internal Server Error")
        first.send("still here")
        assert first.recv(timeout=TIMEOUT) == "still here"
    wait_until(lambda: "handler failed on purpose" in process.output())
