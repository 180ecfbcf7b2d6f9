"""Serving without gevent: gunicorn's own ``gthread`` worker, and ours with a
connection cap (``flask_sockets_gunicorn.ThreadWorker``), as real processes."""

from __future__ import annotations

import contextlib
import signal
import struct
import textwrap
import time
import typing as t
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.gevent.rawclient import RawClient
from tests.gunicorn.conftest import http_get
from tests.gunicorn.conftest import wait_for_match

#: Written to ``app_dir / "gtapp.py"``.
APP_SOURCE = textwrap.dedent(
    """
    import time

    from flask import Flask, abort
    from flask_sockets import Sockets

    app = Flask(__name__)
    app.config.update(
        SOCKETS_MAX_MESSAGE_SIZE=1024,
        SOCKETS_PING_INTERVAL=0.3,
        SOCKETS_PING_TIMEOUT=0.6,
        SOCKETS_CLOSE_TIMEOUT=1.0,
    )
    sockets = Sockets(app)
    closes = []


    @app.route("/")
    def index():
        return "hello from http"


    @sockets.route("/echo")
    def echo(ws):
        while True:
            message = ws.receive()
            if message is None:
                break
            ws.send(message)
        closes.append((ws.close_code, ws.close_reason))


    @sockets.route("/last-close")
    def last_close(ws):
        # The /echo handler records its close after echoing the close frame:
        # on a loaded machine, this request may come first.
        deadline = time.monotonic() + 5
        while not closes and time.monotonic() < deadline:
            time.sleep(0.01)
        ws.send(repr(closes[-1] if closes else None))


    @sockets.route("/closes")
    def server_closes(ws):
        ws.close(4000, "bye")


    @sockets.route("/boom")
    def boom(ws):
        ws.send("about to fail")
        raise RuntimeError("handler exploded on purpose")


    @sockets.route("/forbidden", defer_accept=True)
    def forbidden(ws):
        abort(403)


    @sockets.route("/room")
    def room(ws):
        sockets.join(ws, "lobby")
        ws.send("joined")
        while (message := ws.receive()) is not None:
            sockets.publish("lobby", message)
    """
)

THREAD_WORKER = "flask_sockets_gunicorn.ThreadWorker"


@pytest.fixture
def gthread(gunicorn: t.Callable[..., Process], app_dir: Path) -> t.Callable[..., Process]:
    """``gthread(*options, worker="gthread")`` serves ``gtapp:app`` with 4 threads."""
    (app_dir / "gtapp.py").write_text(APP_SOURCE)

    def start(*options: str, worker: str = "gthread") -> Process:
        return gunicorn("--threads", "4", *options, worker=worker, app="gtapp:app")

    return start


def _closed(ws: t.Any) -> tuple[int, str]:
    """Read until the server closes; its close frame's code and reason."""
    with pytest.raises(ConnectionClosed) as excinfo:
        while True:
            ws.recv(timeout=TIMEOUT)
    assert excinfo.value.rcvd is not None, "no close frame from the server"
    return excinfo.value.rcvd.code, excinfo.value.rcvd.reason


def test_gthread_serves_echo_close_codes_refusals_and_rooms(gthread):
    """`-k gthread`: echo text and binary, close codes both ways, a refusal as an HTTP status,
    rooms; after a session nothing follows the close frame (no 101 written late, no keep-alive)."""
    server = gthread().server
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        ws.send("text")
        assert ws.recv(timeout=TIMEOUT) == "text"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xffbinary"
        ws.close(4001, "client bye")
    with connect(server.ws_url + "/last-close", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "(4001, 'client bye')"
    with connect(server.ws_url + "/closes", open_timeout=TIMEOUT) as ws:
        assert _closed(ws) == (4000, "bye")

    with pytest.raises(InvalidStatus) as excinfo:
        with connect(server.ws_url + "/forbidden", open_timeout=TIMEOUT):
            pass
    assert excinfo.value.response.status_code == 403
    assert http_get(server.http_url + "/") == (200, "hello from http")

    # The raw stream: 101, our echo of the client's close frame, then the end of TCP.
    client = RawClient(server.host, server.port, "/echo", timeout=TIMEOUT)
    assert client.status == 101
    client.send_frame(0x8, struct.pack("!H", 1000))
    assert client.read_frame() == (0x8, struct.pack("!H", 1000))
    rest = client.buffer + b"".join(iter(lambda: client.sock.recv(65536), b""))
    client.close()
    assert rest == b""

    with connect(server.ws_url + "/room", open_timeout=TIMEOUT) as a, connect(
        server.ws_url + "/room", open_timeout=TIMEOUT
    ) as b:
        assert a.recv(timeout=TIMEOUT) == b.recv(timeout=TIMEOUT) == "joined"
        a.send("to the lobby")
        assert a.recv(timeout=TIMEOUT) == b.recv(timeout=TIMEOUT) == "to the lobby"


def test_gthread_limits_keepalive_and_handler_errors(gthread):
    """`-k gthread`: over the size limit 1009; an idle peer is pinged, and closed with 1011 when
    it does not answer; a handler exception closes with 1011 and is logged through Flask."""
    process = gthread()
    server = process.server
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        ws.send("x" * 2048)
        assert _closed(ws)[0] == 1009

    client = RawClient(server.host, server.port, "/echo", timeout=TIMEOUT)
    opcode, payload = client.read_frame()  # nothing sent: the keepalive pings
    assert opcode == 0x9
    assert client.read_close() == (1011, "keepalive ping timeout")  # never answered
    client.close()

    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:  # websockets answers pings
        time.sleep(1.2)  # two pings' worth
        ws.send("still open")
        assert ws.recv(timeout=TIMEOUT) == "still open"

    with connect(server.ws_url + "/boom", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "about to fail"
        assert _closed(ws) == (1011, "Internal Server Error")
    wait_for_match(process.output, r"^RuntimeError: handler exploded on purpose$")
    assert "Exception on /boom [GET]" in process.output()


@pytest.mark.parametrize("worker", ["gthread", THREAD_WORKER])
def test_sigterm_closes_open_sockets_with_1012(gthread, worker):
    """SIGTERM: open sockets get 1012 within the graceful timeout, and the worker exits once
    their handlers return."""
    process = gthread("--graceful-timeout", "10", worker=worker)
    with connect(process.server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        started = time.monotonic()
        process.popen.send_signal(signal.SIGTERM)
        assert _closed(ws) == (1012, "Server restarting")
    assert process.popen.wait(TIMEOUT) == 0, process.output()
    assert time.monotonic() - started < 8, "the worker waited for the graceful timeout"


def test_thread_worker_refuses_over_its_cap_with_503(gthread):
    """`-k flask_sockets_gunicorn.ThreadWorker --threads 4`: 3 sockets take 3 threads; a fourth
    gets 503 at once (stock gthread would queue it behind them, unanswered), HTTP is still served,
    and a socket closing frees its place."""
    process = gthread(worker=THREAD_WORKER)
    server = process.server
    with contextlib.ExitStack() as stack:
        open_sockets = [stack.enter_context(connect(server.ws_url + "/echo", open_timeout=TIMEOUT)) for _ in range(3)]
        for i, ws in enumerate(open_sockets):
            ws.send(f"{i}")
            assert ws.recv(timeout=TIMEOUT) == f"{i}"
        with pytest.raises(InvalidStatus) as excinfo:
            with connect(server.ws_url + "/echo", open_timeout=TIMEOUT):
                pass
        response = excinfo.value.response
        assert (response.status_code, response.headers.get("Retry-After")) == (503, "1")
        assert http_get(server.http_url + "/") == (200, "hello from http")

        open_sockets[0].close()
        deadline = time.monotonic() + TIMEOUT
        while True:  # its place is free once its handler has returned
            try:
                reopened = stack.enter_context(connect(server.ws_url + "/echo", open_timeout=TIMEOUT))
                break
            except InvalidStatus:
                assert time.monotonic() < deadline, "the closed socket's place was never freed"
                time.sleep(0.05)
        reopened.send("again")
        assert reopened.recv(timeout=TIMEOUT) == "again"
    wait_for_match(process.output, r"Refused a WebSocket to /echo with 503: 3 sockets are open")
