"""Prometheus metrics (flask_sockets.metrics) in one process: the gevent
server of flask_sockets_gevent.run (and, for the exact wire bytes, Werkzeug's
development server too), scraped through metrics_view."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import typing as t

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets_gevent import WebSocketHandler
from flask_sockets_gevent.websocket import GeventWebSocket
from tests.conftest import ROOT
from tests.conftest import TIMEOUT
from tests.conftest import Server
from tests.conftest import wait_until
from tests.gevent.rawclient import RawClient
from tests.gunicorn.conftest import http_get
from tests.scrape import CountingSocket
from tests.scrape import Samples
from tests.scrape import value
from tests.scrape import wait_until_closed

prometheus_client = pytest.importorskip("prometheus_client")

from flask_sockets.metrics import metrics_view  # noqa: E402
from tests import scrape as _scrape  # noqa: E402


def make_app() -> tuple[Flask, Sockets]:
    app = Flask(__name__)
    sockets = Sockets(app)
    # Its own registry: the test process may hold other apps' series.
    sockets.enable_metrics(registry=prometheus_client.CollectorRegistry())
    app.add_url_rule("/metrics", view_func=metrics_view)

    @sockets.route("/echo")
    def echo(ws: t.Any) -> None:
        while (message := ws.receive()) is not None:
            if message == "fail":
                raise RuntimeError("handler failed on purpose")
            ws.send(message)

    @sockets.route("/room")
    def room(ws: t.Any) -> None:
        sockets.join(ws, "lobby")
        ws.send("joined")
        while (message := ws.receive()) is not None:
            sockets.publish("lobby", message)

    @app.route("/http")
    def http() -> str:
        return "plain"

    return app, sockets


def scrape(server: Server) -> Samples:
    return _scrape.scrape(server.http_url)


def test_metrics_under_the_gevent_server(serve: t.Callable[..., Server]) -> None:
    app, _ = make_app()
    server = serve(app)
    n = 20
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        for i in range(n):
            ws.send("é" if i == 0 else "x")  # 2 bytes of UTF-8, then 1 byte each
            ws.recv(timeout=TIMEOUT)
        # Counted while the socket is open: a scrape moves this process's open sockets' counts in first.
        samples = scrape(server)
        assert value(samples, "flask_sockets_open_sockets", route="/echo") == 1
        assert value(samples, "flask_sockets_messages_total", route="/echo", direction="in") == n
        assert value(samples, "flask_sockets_payload_bytes_total", route="/echo", direction="out") == n + 1
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        ws.send("fail")
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=TIMEOUT)
        assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 1011
    # Plain HTTP on a socket route: 426; an unknown socket URL: 404; a refused origin: 403.
    assert http_get(server.http_url + "/echo")[0] == 426
    for path, headers, status in (("/nope", {}, 404), ("/echo", {"Origin": "http://evil.example"}, 403)):
        with pytest.raises(InvalidStatus) as excinfo, connect(
            server.ws_url + path, additional_headers=headers, open_timeout=TIMEOUT
        ):
            pass  # pragma: no cover
        assert excinfo.value.response.status_code == status

    samples = wait_until_closed(server.http_url, "/echo")
    assert value(samples, "flask_sockets_messages_total", route="/echo", direction="in") == n + 1
    assert value(samples, "flask_sockets_messages_total", route="/echo", direction="out") == n
    assert value(samples, "flask_sockets_payload_bytes_total", route="/echo", direction="in") == n + 1 + 4
    assert value(samples, "flask_sockets_payload_bytes_total", route="/echo", direction="out") == n + 1
    assert value(samples, "flask_sockets_handshakes_total", route="/echo", status="101") == 2
    assert value(samples, "flask_sockets_handshakes_total", route="/echo", status="403") == 1
    assert value(samples, "flask_sockets_handshakes_total", route="", status="404") == 1
    assert value(samples, "flask_sockets_handshakes_total", route="", status="426") == 1
    assert value(samples, "flask_sockets_closes_total", route="/echo", code="1000", side="client") == 1
    assert value(samples, "flask_sockets_closes_total", route="/echo", code="1011", side="server") == 1
    # Plain HTTP requests are no handshakes.
    assert http_get(server.http_url + "/http")[0] == 200
    assert sum(v for (name, _), v in scrape(server).items() if name == "flask_sockets_handshakes_total") == 5


def test_metrics_flusher_moves_the_counts_of_open_sockets(serve: t.Callable[..., Server]) -> None:
    """Without a scrape: the process's flusher moves an open socket's counts
    into the registry every flush_interval seconds, and stops once no
    socket is open."""
    app, sockets = make_app()
    metrics = sockets.enable_metrics()
    metrics.flush_interval = 0.2
    server = serve(app)

    def count(direction: str) -> float:
        sample = metrics.registry.get_sample_value(
            "flask_sockets_messages_total", {"route": "/echo", "direction": direction}
        )
        return sample or 0.0

    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        for i in range(5):
            ws.send(f"m{i}")
            assert ws.recv(timeout=TIMEOUT) == f"m{i}"
        wait_until(lambda: count("in") == 5 and count("out") == 5)
        ws.send("more")
        assert ws.recv(timeout=TIMEOUT) == "more"
        wait_until(lambda: count("in") == 6)
    wait_until(lambda: metrics._flusher is None)  # stopped by itself
    assert count("out") == 6


def frame_size(payload: int, masked: bool) -> int:
    """The bytes of a frame with ``payload`` bytes of payload (RFC 6455, 5.2):
    a 2-byte header, 2 or 8 more bytes of length past 125 and 65535, and a
    4-byte masking key on client frames."""
    length = 0 if payload < 126 else 2 if payload < 1 << 16 else 8
    return 2 + length + (4 if masked else 0) + payload


def counted_connect(server: Server, path: str, **options: t.Any) -> tuple[t.Any, CountingSocket]:
    """A ``websockets`` client over a :class:`CountingSocket`."""
    sock = CountingSocket.connect_to(server.host, server.port, TIMEOUT)
    return connect(server.ws_url + path, sock=sock, open_timeout=TIMEOUT, ping_interval=None, **options), sock


@pytest.mark.parametrize("server_kind", ["gevent", "devserver"])
def test_metrics_count_wire_bytes_exactly_without_compression(request: pytest.FixtureRequest, server_kind: str) -> None:
    """Uncompressed, the bytes on the wire are the frames' exact sizes:
    every length form of the header (7-bit, 16-bit, 64-bit), masked client
    frames, a ping and its pong, and the close frames both ways; and they
    are what the client really sent and received. On the gevent server and
    on Werkzeug's development server (the threaded socket of gunicorn's
    gthread worker and of the test client)."""
    app, _ = make_app()
    app.config.update(SOCKETS_COMPRESSION=False, SOCKETS_PING_INTERVAL=0)
    server = request.getfixturevalue("serve" if server_kind == "gevent" else "devserve")(app)
    sizes = [0, 1, 125, 126, 65535, 65536, 70000]
    ws, sock = counted_connect(server, "/echo", compression=None)
    with ws:
        for i, size in enumerate(sizes):
            message: str | bytes = "x" * size if i % 2 else b"\x01" * size
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        assert ws.ping(b"abcd").wait(TIMEOUT)
    samples = wait_until_closed(server.http_url, "/echo")
    # In: the messages, the ping, the close frame (code 1000: 2 bytes); out: the echoes, the pong, the close's echo.
    wire_in = sum(frame_size(size, True) for size in sizes) + frame_size(4, True) + frame_size(2, True)
    wire_out = sum(frame_size(size, False) for size in sizes) + frame_size(4, False) + frame_size(2, False)
    assert value(samples, "flask_sockets_wire_bytes_total", route="/echo", direction="in") == wire_in
    assert value(samples, "flask_sockets_wire_bytes_total", route="/echo", direction="out") == wire_out
    assert (sock.sent, sock.received) == (wire_in, wire_out)
    for direction in ("in", "out"):
        assert value(samples, "flask_sockets_messages_total", route="/echo", direction=direction) == len(sizes)
        assert value(samples, "flask_sockets_payload_bytes_total", route="/echo", direction=direction) == sum(sizes)


def test_metrics_count_wire_bytes_with_permessage_deflate(serve: t.Callable[..., Server]) -> None:
    """Compressed (permessage-deflate, negotiated by the client as browsers
    do): compressible messages take fewer bytes on the wire than their
    payload, both ways, and the wire bytes are what the client really sent
    and received."""
    app, _ = make_app()
    app.config.update(SOCKETS_PING_INTERVAL=0)
    server = serve(app)
    messages: list[str | bytes] = ["a" * 10_000, b"\x00" * 10_000, "hi"]
    ws, sock = counted_connect(server, "/echo")
    with ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
    samples = wait_until_closed(server.http_url, "/echo")
    payload = sum(len(message) for message in messages)
    for direction, client_side in (("in", sock.sent), ("out", sock.received)):
        assert value(samples, "flask_sockets_payload_bytes_total", route="/echo", direction=direction) == payload
        wire = value(samples, "flask_sockets_wire_bytes_total", route="/echo", direction=direction)
        assert wire == client_side
        assert wire < payload / 10


class _Unwrappable(GeventWebSocket):
    """A socket that takes no attributes named like its methods: metrics can wrap nothing."""

    __slots__ = ()

    def __setattr__(self, name: str, value: t.Any) -> None:
        if name in ("close", "receive", "send_frame", "send_nowait"):
            raise AttributeError(f"{name} cannot be replaced")
        super().__setattr__(name, value)


class _UnwrappableHandler(WebSocketHandler):
    websocket_class = _Unwrappable


def test_metrics_count_a_socket_that_cannot_be_wrapped(serve: t.Callable[..., Server]) -> None:
    """Messages and bytes are counted by the engine, not by wrappers: a socket
    that refuses them is counted exactly, and its closes by the engine's
    word (the client's 1000; the server's 1011 when the handler raised;
    the server's 4401 at the session's end, which never goes through
    close())."""
    app, sockets = make_app()

    @sockets.route("/expiring")
    def expiring(ws: t.Any) -> None:
        assert ws.receive() == "expire"
        ws.expire_in(0.05)
        while ws.receive() is not None:
            pass

    server = serve(app, handler_class=_UnwrappableHandler)
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        for i in range(3):
            ws.send(f"m{i}")
            assert ws.recv(timeout=TIMEOUT) == f"m{i}"
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        ws.send("fail")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    with connect(server.ws_url + "/expiring", open_timeout=TIMEOUT) as ws:
        ws.send("expire")
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=TIMEOUT)
        assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 4401
    samples = wait_until_closed(server.http_url, "/echo", "/expiring")
    for direction in ("in", "out"):
        assert value(samples, "flask_sockets_messages_total", route="/echo", direction=direction) == 3 + (
            direction == "in"
        )
    assert value(samples, "flask_sockets_payload_bytes_total", route="/echo", direction="in") == 6 + 4
    assert value(samples, "flask_sockets_payload_bytes_total", route="/echo", direction="out") == 6
    assert value(samples, "flask_sockets_closes_total", route="/echo", code="1000", side="client") == 1
    assert value(samples, "flask_sockets_closes_total", route="/echo", code="1011", side="server") == 1
    assert value(samples, "flask_sockets_closes_total", route="/expiring", code="4401", side="server") == 1


def test_metrics_count_publishes_and_deliveries(serve: t.Callable[..., Server]) -> None:
    app, _ = make_app()
    server = serve(app)
    with connect(server.ws_url + "/room", open_timeout=TIMEOUT) as a, connect(
        server.ws_url + "/room", open_timeout=TIMEOUT
    ) as b:
        assert a.recv(timeout=TIMEOUT) == b.recv(timeout=TIMEOUT) == "joined"
        for i in range(3):
            a.send(f"m{i}")
        for ws in (a, b):
            assert [ws.recv(timeout=TIMEOUT) for _ in range(3)] == ["m0", "m1", "m2"]
        samples = scrape(server)  # the scrape moves the rooms' counts in first
        assert value(samples, "flask_sockets_broker_published_total") == 3
        assert value(samples, "flask_sockets_broker_received_total") == 3
        assert value(samples, "flask_sockets_deliveries_total") == 6
    samples = wait_until_closed(server.http_url, "/room")
    assert value(samples, "flask_sockets_messages_total", route="/room", direction="in") == 3
    # The greetings and the deliveries (sent by the rooms: send_nowait or send).
    assert value(samples, "flask_sockets_messages_total", route="/room", direction="out") == 2 + 6


def test_metrics_count_a_slow_consumer_cut(serve: t.Callable[..., Server]) -> None:
    """A client that never reads while its room gets 64 x 256 KiB: its send
    queue (4) overflows, it is closed with 1008, counted as a slow consumer
    and as a close by the server."""
    app, sockets = make_app()
    app.config.update(SOCKETS_SEND_QUEUE_SIZE=4, SOCKETS_CLOSE_TIMEOUT=0.5, SOCKETS_COMPRESSION=False)

    @sockets.route("/flood")
    def flood(ws: t.Any) -> None:
        ws.receive()
        for _ in range(64):
            sockets.publish("lobby", b"x" * 256 * 1024)

    server = serve(app)
    stuck = RawClient(server.host, server.port, "/room")  # joins "lobby", then never reads
    try:
        wait_until(lambda: value(scrape(server), "flask_sockets_open_sockets", route="/room") == 1)
        with connect(server.ws_url + "/flood", open_timeout=TIMEOUT) as ws:
            ws.send("go")
            wait_until_closed(server.http_url, "/room")
    finally:
        stuck.close()
    samples = scrape(server)
    assert value(samples, "flask_sockets_slow_consumers_closed_total", route="/room") == 1
    assert value(samples, "flask_sockets_closes_total", route="/room", code="1008", side="server") == 1


def test_metrics_count_flood_control_closes(serve: t.Callable[..., Server]) -> None:
    """A client over the message rate is closed with 1008 by flood control:
    counted in flask_sockets_rate_limited_total and as a server close."""
    app, _ = make_app()
    app.config.update(SOCKETS_MESSAGE_RATE=5, SOCKETS_MESSAGE_BURST=5)
    server = serve(app)
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed) as excinfo:
            for i in range(50):
                ws.send(f"m{i}")
            while True:
                ws.recv(timeout=TIMEOUT)
        assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 1008
    samples = wait_until_closed(server.http_url, "/echo")
    assert value(samples, "flask_sockets_rate_limited_total", route="/echo", limit="messages", action="close") == 1
    assert value(samples, "flask_sockets_closes_total", route="/echo", code="1008", side="server") == 1


def test_metrics_ping_round_trip_time(serve: t.Callable[..., Server]) -> None:
    """A silent client is pinged (SOCKETS_PING_INTERVAL) and its pong
    answers: flask_sockets_ping_rtt_seconds counts the round trip (moved
    in at the socket's next flush: here its close)."""
    app, _ = make_app()
    app.config.update(SOCKETS_PING_INTERVAL=0.2, SOCKETS_PING_TIMEOUT=5.0)
    server = serve(app)
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        time.sleep(0.5)  # silent: pinged, and websockets' client answers with a pong
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"
    samples = wait_until_closed(server.http_url, "/echo")
    assert value(samples, "flask_sockets_ping_rtt_seconds_count", route="/echo") == 1
    assert 0 < value(samples, "flask_sockets_ping_rtt_seconds_sum", route="/echo") < TIMEOUT


def raw_request(server: Server, request: bytes) -> int:
    """Send ``request`` on a raw connection: the status of the answer."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(None, 2)[1])


def test_metrics_count_requests_the_gevent_server_refuses_before_the_app(serve: t.Callable[..., Server]) -> None:
    """Refused by flask_sockets_gevent's handler before Flask runs: an
    upgrade with a wrong version (426) or a body (400), a request line
    that does not parse (400), a head too large (431): counted as
    handshakes of route "unrouted"."""
    app, _ = make_app()
    server = serve(app)
    upgrade = (
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {}\r\n{}\r\n"
    )
    assert raw_request(server, upgrade.format(8, "").encode()) == 426
    assert raw_request(server, upgrade.format(13, "Content-Length: 3\r\n").encode() + b"abc") == 400
    assert raw_request(server, b"NOT A REQUEST LINE\r\n\r\n") == 400
    assert raw_request(server, b"GET /echo HTTP/1.1\r\nX-Big: " + b"x" * 70000 + b"\r\n\r\n") == 431
    samples = scrape(server)
    assert value(samples, "flask_sockets_handshakes_total", route="unrouted", status="426") == 1
    assert value(samples, "flask_sockets_handshakes_total", route="unrouted", status="400") == 2
    assert value(samples, "flask_sockets_handshakes_total", route="unrouted", status="431") == 1


def test_metrics_send_queue_depth_and_disconnects(serve: t.Callable[..., Server]) -> None:
    """A member that never reads while its room gets 32 x 256 KiB: its send
    queue holds what the socket could not take, which the scrape shows
    (flask_sockets_send_queue_messages, _longest_messages); then
    sockets.disconnect closes the room's sockets, counted in
    flask_sockets_disconnected_total, and the queue is gone."""
    app, sockets = make_app()
    app.config.update(SOCKETS_SEND_QUEUE_SIZE=1000, SOCKETS_CLOSE_TIMEOUT=0.5, SOCKETS_COMPRESSION=False)

    @sockets.route("/flood")
    def flood(ws: t.Any) -> None:
        ws.receive()
        for _ in range(32):
            sockets.publish("lobby", b"x" * 256 * 1024)
        ws.send("sent")
        ws.receive()
        sockets.disconnect("lobby", 4000, "bye")
        ws.send("disconnected")
        ws.receive()

    server = serve(app)
    stuck = RawClient(server.host, server.port, "/room")  # joins "lobby", then never reads
    try:
        wait_until(lambda: value(scrape(server), "flask_sockets_open_sockets", route="/room") == 1)
        assert value(scrape(server), "flask_sockets_send_queue_messages") == 0
        with connect(server.ws_url + "/flood", open_timeout=TIMEOUT) as ws:
            ws.send("go")
            assert ws.recv(timeout=TIMEOUT) == "sent"
            samples = scrape(server)
            queued = value(samples, "flask_sockets_send_queue_messages")
            assert 0 < queued < 32
            assert value(samples, "flask_sockets_send_queue_longest_messages") == queued
            ws.send("disconnect")
            assert ws.recv(timeout=TIMEOUT) == "disconnected"
            wait_until_closed(server.http_url, "/room")
    finally:
        stuck.close()
    samples = scrape(server)
    assert value(samples, "flask_sockets_disconnected_total") == 1
    assert value(samples, "flask_sockets_send_queue_messages") == 0
    assert value(samples, "flask_sockets_send_queue_longest_messages") == 0


def test_metrics_are_off_by_default_and_the_core_works_without_prometheus_client() -> None:
    """Without prometheus_client: sockets work; SOCKETS_METRICS = True says how to install it."""
    code = """
import sys
sys.modules["prometheus_client"] = None  # as if not installed
from flask import Flask
from flask_sockets import Sockets
from flask_sockets.testing import SocketTestClient

app = Flask(__name__)
sockets = Sockets(app)
assert "sockets.metrics" not in app.extensions

@sockets.route("/echo")
def echo(ws):
    ws.send(ws.receive())

with SocketTestClient(app).connect("/echo") as ws:
    ws.send("hi")
    assert ws.receive() == "hi"
app2 = Flask(__name__)
app2.config["SOCKETS_METRICS"] = True
try:
    Sockets(app2)
except ImportError as e:
    print(e)
else:
    raise SystemExit("no ImportError")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "pip install prometheus_client" in result.stdout
