"""The socket object of flask_sockets_gevent: close codes, accept, drops, concurrency."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import gevent
import pytest
from flask import Flask
from flask import request
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from flask_sockets import ConnectionClosed as SocketClosed
from flask_sockets import Sockets
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from flask_sockets.protocol import frame_header
from tests.conftest import wait_until
from tests.gevent.rawclient import RawClient


@pytest.fixture
def app_and_sockets():
    app = Flask(__name__)
    return app, Sockets(app)


def test_close_sends_code_and_reason(app_and_sockets, serve):
    """ws.close(code, reason) puts both in the close frame (0.10.1 sent no code)."""
    app, sockets = app_and_sockets

    @sockets.route("/bye")
    def bye(ws):
        ws.close(4000, "see you")

    server = serve(app)
    with connect(f"{server.ws_url}/bye") as ws:
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
    assert (e.value.rcvd.code, e.value.rcvd.reason) == (4000, "see you")


def test_peer_close_code_and_reason_are_kept(app_and_sockets, serve):
    """After receive() returns None, close_code and close_reason hold what the peer sent."""
    app, sockets = app_and_sockets
    seen = []

    @sockets.route("/s")
    def s(ws):
        assert ws.receive() is None
        seen.append((ws.closed, ws.close_code, ws.close_reason))

    server = serve(app)
    with connect(f"{server.ws_url}/s") as ws:
        ws.close(4001, "leaving")
        assert ws.protocol.close_rcvd.code == 4001, "the server echoes the peer's code"
    wait_until(lambda: seen)
    assert seen == [(True, 4001, "leaving")]


def test_dropped_tcp_connection_ends_receive_quietly(app_and_sockets, serve, caplog):
    """A peer that vanishes without a close frame: receive() returns None, close_code 1006, no error."""
    app, sockets = app_and_sockets
    seen = []

    @sockets.route("/s")
    def s(ws):
        ws.send("ready")
        seen.append((ws.receive(), ws.closed, ws.close_code))

    server = serve(app)
    with connect(f"{server.ws_url}/s") as ws:
        assert ws.recv(timeout=5) == "ready"
        ws.socket.shutdown(socket.SHUT_RDWR)
        wait_until(lambda: seen)
    assert seen == [(None, True, CloseCode.ABNORMAL_CLOSURE)]
    assert "Traceback" not in caplog.text


def test_send_after_peer_closed_ends_handler_normally(app_and_sockets, serve, caplog):
    """The seed loop sends None after the peer closed: the handler ends without an error log."""
    app, sockets = app_and_sockets
    ended = []

    @sockets.route("/echo")
    def echo(ws):
        try:
            while not ws.closed:
                message = ws.receive()
                ws.send(message)
        finally:
            ended.append(True)

    @app.teardown_request
    def teardown(exc):
        ended.append(exc)

    server = serve(app)
    with connect(f"{server.ws_url}/echo") as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    wait_until(lambda: len(ended) == 2)
    assert ended == [True, None]
    assert "Exception on /echo" not in caplog.text


def test_accept_with_subprotocol_and_cookie(app_and_sockets, serve):
    """With defer_accept=True, ws.accept() can choose a subprotocol and add headers (a Set-Cookie) to the 101."""
    app, sockets = app_and_sockets

    @sockets.route("/s", defer_accept=True)
    def s(ws):
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        ws.accept(subprotocol="v2" if "v2" in offered else None, headers=[("Set-Cookie", "seen=1; HttpOnly")])
        ws.accept()  # a second accept is a no-op
        ws.send("hi")

    server = serve(app)
    with connect(f"{server.ws_url}/s", subprotocols=["v1", "v2"]) as ws:
        assert ws.subprotocol == "v2"
        assert ws.response.headers["Set-Cookie"] == "seen=1; HttpOnly"
        assert ws.recv(timeout=5) == "hi"


def test_concurrent_sends_never_interleave(app_and_sockets, serve):
    """Many greenlets sending large messages on one socket: every message arrives whole."""
    app, sockets = app_and_sockets
    senders, per_sender, size = 8, 20, 50_000

    @sockets.route("/flood")
    def flood(ws):
        def send_many(i):
            for n in range(per_sender):
                header = struct.pack("!HH", i, n)
                ws.send(header + bytes([i]) * size)

        gevent.joinall([gevent.spawn(send_many, i) for i in range(senders)], raise_error=True)
        ws.send("done")

    server = serve(app)
    received: dict[int, list[int]] = {i: [] for i in range(senders)}
    with connect(f"{server.ws_url}/flood", max_size=None) as ws:
        while (message := ws.recv(timeout=10)) != "done":
            i, n = struct.unpack("!HH", message[:4])
            assert message[4:] == bytes([i]) * size, f"message {i}/{n} is corrupted"
            received[i].append(n)
    assert received == {i: list(range(per_sender)) for i in range(senders)}


def test_seed_snippet_with_stock_handler_still_works(serve):
    """The seed's pywsgi snippet (stock gevent-websocket handler) serves socket routes."""
    from geventwebsocket.handler import WebSocketHandler

    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo_socket(ws):
        while not ws.closed:
            message = ws.receive()
            if message is not None:
                ws.send(message)

    server = serve(app, handler_class=WebSocketHandler)
    with connect(f"{server.ws_url}/echo") as ws:
        ws.send("stock")
        assert ws.recv(timeout=5) == "stock"


@pytest.mark.parametrize(
    ("frame", "limit"),
    [
        pytest.param(16000, 5_000, id="16 KB frames: the kernel takes part of the last one"),
        pytest.param(100, 2_000_000, id="small frames: the kernel takes nothing more"),
    ],
)
def test_send_nowait_never_waits_and_keeps_frames_whole(app_and_sockets, serve, frame, limit):
    """send_nowait (the fan-out path of rooms) sends while the kernel takes
    the frames, returns False instead of waiting once it does not, finishes
    a frame the kernel took only part of before any other goes out, and
    refuses what it cannot send without waiting."""
    app, sockets = app_and_sockets
    results = {}
    filled = threading.Event()

    @sockets.route("/nowait", defer_accept=True)
    def nowait(ws):
        results["before accept"] = ws.send_nowait("x")
        ws.accept()
        results["over 16 KiB"] = ws.send_nowait("y" * (16 * 1024 + 1))
        sent, slowest = 0, 0.0
        while sent < limit:  # far more than loopback buffers hold
            started = time.monotonic()
            went = ws.send_nowait(f"{sent:06d}".encode() + b"z" * frame)
            slowest = max(slowest, time.monotonic() - started)
            if not went:
                break
            sent += 1
        results.update(sent=sent, slowest=slowest)
        filled.set()
        ws.send("end")  # waits: for the client to read, and behind any frame begun
        assert ws.receive() is None
        try:
            ws.send_nowait("after the close")
        except SocketClosed:
            results["after close"] = "ConnectionClosed"

    server = serve(app)
    client = RawClient(server.host, server.port, "/nowait", timeout=10)
    try:
        assert client.status == 101
        assert filled.wait(20), "send_nowait kept going (or waited) with a client that reads nothing"
        assert results["before accept"] is False and results["over 16 KiB"] is False
        assert 0 < results["sent"] < limit
        assert results["slowest"] < 1.0
        payloads = (f"{number:06d}".encode() + b"z" * frame for number in range(results["sent"]))
        expected = (
            b"".join(frame_header(Opcode.BINARY, len(p)) + p for p in payloads) + frame_header(Opcode.TEXT, 3) + b"end"
        )
        received = bytearray(client.buffer)
        while len(received) < len(expected):
            chunk = client.sock.recv(1 << 20)
            assert chunk, "the server closed the connection"
            received += chunk
        assert received == expected, "frames were lost, cut or interleaved"
        client.buffer = b""
        client.send_frame(Opcode.CLOSE, struct.pack("!H", CloseCode.NORMAL_CLOSURE))
        assert client.read_close()[0] == CloseCode.NORMAL_CLOSURE
    finally:
        client.close()
    wait_until(lambda: "after close" in results)


def test_wrong_message_types_raise_type_error(serve):
    """send, send_frame and send_nowait of an int, a dict, None...: a
    TypeError naming the type, and nothing goes out."""
    from tests.core.test_send_types import bad_sends_app
    from tests.core.test_send_types import check_outcomes
    from tests.core.test_send_types import receive_all

    server = serve(bad_sends_app())
    with connect(f"{server.ws_url}/bad", open_timeout=5) as ws:
        first, *rest = receive_all(ws)
    check_outcomes(json.loads(first), calls_per_value=4)
    assert rest == [b"ba", b"mv"]


def test_a_failed_connection_reports_the_server_s_code(app_and_sockets, serve):
    """After the server failed the connection (invalid UTF-8: 1007), the
    handler's receive() returns None and close_code/close_reason say why."""
    app, sockets = app_and_sockets
    seen = []

    @sockets.route("/s")
    def s(ws):
        seen.append((ws.receive(), ws.close_code, ws.close_reason))

    server = serve(app)
    client = RawClient(server.host, server.port, "/s")
    try:
        client.send_frame(Opcode.TEXT, b"\xff")
        assert client.read_close() == (CloseCode.INVALID_DATA, "Invalid UTF-8 in text")
    finally:
        client.close()
    wait_until(lambda: seen)
    assert seen == [(None, CloseCode.INVALID_DATA, "Invalid UTF-8 in text")]


def test_one_connection_closed_and_the_socket_class_name(app_and_sockets, serve):
    """Using a closed gevent socket raises the core's ConnectionClosed
    (flask_sockets_gevent.ConnectionClosed is that same class), which
    gevent-websocket's WebSocketError catches too, as 0.2 apps do. The
    socket is GeventWebSocket, a class of its own (not gevent-websocket's
    WebSocket); the old name still imports, with a DeprecationWarning."""
    import geventwebsocket.websocket
    from geventwebsocket.exceptions import WebSocketError

    import flask_sockets_gevent

    assert flask_sockets_gevent.ConnectionClosed is SocketClosed
    with pytest.warns(DeprecationWarning, match="GeventWebSocket"):
        assert flask_sockets_gevent.WebSocket is flask_sockets_gevent.GeventWebSocket
    app, sockets = app_and_sockets
    results = {}

    @sockets.route("/closed")
    def closed(ws):
        results["class"] = type(ws)
        results["gevent-websocket's"] = isinstance(ws, geventwebsocket.websocket.WebSocket)
        ws.close()
        for name, caught in (("core", SocketClosed), ("0.2", WebSocketError)):
            try:
                ws.send("after the close")
            except caught:
                results[name] = "caught"

    server = serve(app)
    with connect(f"{server.ws_url}/closed") as ws, pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)
    wait_until(lambda: "0.2" in results)
    assert results == {
        "class": flask_sockets_gevent.GeventWebSocket,
        "gevent-websocket's": False,
        "core": "caught",
        "0.2": "caught",
    }
