"""Protocol hardening of flask_sockets_gevent's socket, with hand-made frames."""

from __future__ import annotations

import os
import struct
import time

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from tests.conftest import wait_until
from tests.gevent.rawclient import RawClient

TEXT, BINARY, CLOSE, PING, PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE, Opcode.PING, Opcode.PONG


def make_echo_app(**config) -> tuple[Flask, list]:
    app = Flask(__name__)
    app.config.update(config)
    sockets = Sockets(app)
    closes: list = []

    @sockets.route("/echo")
    def echo(ws):
        while (message := ws.receive()) is not None:
            ws.send(message)
        closes.append((ws.close_code, ws.close_reason))

    return app, closes


@pytest.fixture
def echo_server(serve):
    app, _ = make_echo_app(SOCKETS_MAX_MESSAGE_SIZE=1000)
    return serve(app)


@pytest.fixture
def raw():
    """``raw(server, path='/echo')`` opens a RawClient, closed after the test."""
    clients: list[RawClient] = []

    def open_client(server, path: str = "/echo") -> RawClient:
        client = RawClient(server.host, server.port, path)
        clients.append(client)
        assert client.status == 101
        return client

    yield open_client
    for client in clients:
        client.close()


def test_announced_length_over_the_limit_closes_1009_before_the_payload(echo_server, raw):
    """A frame announcing 2**40 bytes is refused from its header alone."""
    client = raw(echo_server)
    client.send_frame(BINARY, b"", length=2**40)
    assert client.read_close()[0] == CloseCode.MESSAGE_TOO_BIG


def test_fragments_adding_up_over_the_limit_close_1009(echo_server, raw):
    """The limit applies to the assembled message, not only to each frame."""
    client = raw(echo_server)
    client.send_frame(TEXT, b"a" * 600, fin=False)
    client.send_frame(Opcode.CONTINUATION, b"a" * 600, fin=True)
    assert client.read_close()[0] == CloseCode.MESSAGE_TOO_BIG


def test_message_at_the_limit_passes(echo_server):
    """A message of exactly the limit is echoed."""
    with connect(f"{echo_server.ws_url}/echo") as ws:
        ws.send("x" * 1000)
        assert ws.recv(timeout=5) == "x" * 1000


def test_limit_none_allows_large_messages(serve):
    """SOCKETS_MAX_MESSAGE_SIZE = None removes the limit."""
    app, _ = make_echo_app(SOCKETS_MAX_MESSAGE_SIZE=None)
    server = serve(app)
    big = os.urandom(3 * 1024 * 1024)
    with connect(f"{server.ws_url}/echo", max_size=None) as ws:
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_default_limit_is_one_mebibyte(serve):
    """Without configuration, 1 MiB passes and one byte more closes 1009."""
    app, _ = make_echo_app()
    server = serve(app)
    with connect(f"{server.ws_url}/echo", max_size=None) as ws:
        ws.send(b"x" * 1024 * 1024)
        assert len(ws.recv(timeout=10)) == 1024 * 1024
        ws.send(b"x" * (1024 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=10)
    assert e.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([(TEXT, b"\xff", True)], id="invalid-byte"),
        pytest.param(
            [(TEXT, "κόσμε".encode(), False), (Opcode.CONTINUATION, b"\xed\xa0\x80", True)],
            id="surrogate-in-2nd-fragment",
        ),
        pytest.param([(TEXT, b"\xce", False), (Opcode.CONTINUATION, b"\xff", True)], id="split-sequence-broken"),
        pytest.param([(TEXT, b"ok\xe2\x82", True)], id="truncated-at-end"),
    ],
)
def test_invalid_utf8_closes_1007(echo_server, frames, raw):
    """Invalid UTF-8 in a text message, also across fragments, closes with 1007."""
    client = raw(echo_server)
    for opcode, payload, fin in frames:
        client.send_frame(opcode, payload, fin=fin)
    assert client.read_close()[0] == CloseCode.INVALID_DATA


def test_invalid_utf8_fails_fast_before_the_message_ends(echo_server, raw):
    """A bad first fragment closes 1007 at once, without waiting for the last one."""
    client = raw(echo_server)
    client.send_frame(TEXT, b"\xc0\xaf", fin=False)
    assert client.read_close()[0] == CloseCode.INVALID_DATA


def test_utf8_split_across_fragments_is_fine(echo_server, raw):
    """A character split over two fragments is reassembled."""
    client = raw(echo_server)
    euro = "€".encode()
    client.send_frame(TEXT, euro[:1], fin=False)
    client.send_frame(Opcode.CONTINUATION, euro[1:], fin=True)
    assert client.read_frame() == (TEXT, euro)


@pytest.mark.parametrize(
    ("frame", "kwargs"),
    [
        pytest.param((0x3, b""), {}, id="reserved-opcode"),
        pytest.param((TEXT, b"x"), {"rsv": 1}, id="reserved-bit"),
        pytest.param((TEXT, b"x"), {"mask": False}, id="unmasked"),
        pytest.param((PING, b""), {"fin": False}, id="fragmented-ping"),
        pytest.param((Opcode.CONTINUATION, b"x"), {}, id="continuation-first"),
        pytest.param((CLOSE, struct.pack("!H", 999)), {}, id="invalid-close-code"),
        pytest.param((CLOSE, struct.pack("!H", CloseCode.NO_STATUS_RCVD)), {}, id="reserved-close-code"),
        pytest.param((CLOSE, b"\x03"), {}, id="one-byte-close"),
    ],
)
def test_protocol_violations_close_1002(echo_server, frame, kwargs, raw):
    """Each protocol violation gets close code 1002."""
    client = raw(echo_server)
    client.send_frame(*frame, **kwargs)
    assert client.read_close()[0] == CloseCode.PROTOCOL_ERROR


def test_ping_is_answered_with_pong_in_the_middle_of_a_message(echo_server, raw):
    """A ping between fragments gets its pong; the message still arrives whole."""
    client = raw(echo_server)
    client.send_frame(TEXT, b"hel", fin=False)
    client.send_frame(PING, b"are you there")
    client.send_frame(Opcode.CONTINUATION, b"lo", fin=True)
    assert client.read_frame() == (PONG, b"are you there")
    assert client.read_frame() == (TEXT, b"hello")


def test_receive_timeout_raises_and_keeps_the_socket_usable(serve, raw):
    """receive(timeout=...) raises TimeoutError; a later receive gets the message intact."""
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/slow")
    def slow(ws):
        try:
            ws.receive(timeout=0.2)
        except TimeoutError as e:
            ws.send(f"timeout: {e}")
        ws.send(ws.receive(timeout=5))

    server = serve(app)
    client = raw(server, "/slow")
    opcode, payload = client.read_frame()
    assert payload.startswith(b"timeout: ")
    # Half a frame, a pause, then the rest: nothing read before is lost.
    key = os.urandom(4)
    data = bytes(b ^ key[i % 4] for i, b in enumerate(b"patience"))
    frame = bytes((0x81, 0x80 | 8)) + key + data
    client.sock.sendall(frame[:5])
    time.sleep(0.1)
    client.sock.sendall(frame[5:])
    assert client.read_frame() == (TEXT, b"patience")


def test_close_waits_for_the_peer_close_frame(serve, raw):
    """close() sends its code and records the peer's reply; a silent peer gets close_timeout, then 1006."""
    app = Flask(__name__)
    app.config["SOCKETS_CLOSE_TIMEOUT"] = 0.5
    sockets = Sockets(app)
    results = []

    @sockets.route("/bye")
    def bye(ws):
        started = time.monotonic()
        ws.close(4010, "done")
        results.append((ws.close_code, ws.close_reason, time.monotonic() - started))

    server = serve(app)
    with connect(f"{server.ws_url}/bye") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    wait_until(lambda: results)
    code, reason, _ = results.pop()
    assert (code, reason) == (4010, "done"), "the peer echoed our close frame"

    client = raw(server, "/bye")
    assert client.read_close() == (4010, "done")
    wait_until(lambda: results)  # the raw client never answers
    code, _, waited = results.pop()
    assert code == CloseCode.ABNORMAL_CLOSURE, "no close frame came (RFC 6455, 7.1.5)"
    assert 0.4 < waited < 3


def test_keepalive_closes_a_peer_that_stops_answering(serve, raw):
    """A peer that never answers pings is closed with 1011 and the handler's receive() returns None."""
    app = Flask(__name__)
    app.config.update(SOCKETS_PING_INTERVAL=0.2, SOCKETS_PING_TIMEOUT=0.3)
    sockets = Sockets(app)
    results = []

    @sockets.route("/idle")
    def idle(ws):
        results.append((ws.receive(), ws.close_code, ws.close_reason))

    server = serve(app)
    client = raw(server, "/idle")
    opcode, _ = client.read_frame()
    assert opcode == PING
    assert client.read_close() == (CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
    wait_until(lambda: results)
    assert results == [(None, CloseCode.INTERNAL_ERROR, "keepalive ping timeout")]


def test_keepalive_leaves_an_answering_peer_alone(serve):
    """A client that answers pings (websockets does) stays connected across several intervals."""
    app = Flask(__name__)
    app.config.update(SOCKETS_PING_INTERVAL=0.1, SOCKETS_PING_TIMEOUT=0.3)
    sockets = Sockets(app)

    @sockets.route("/idle")
    def idle(ws):
        message = ws.receive()
        ws.send(f"still here: {message}")

    server = serve(app)
    with connect(f"{server.ws_url}/idle") as ws:
        time.sleep(1.0)
        ws.send("hi")
        assert ws.recv(timeout=5) == "still here: hi"


def test_an_exception_while_unmasking_leaves_the_buffer_usable(monkeypatch):
    """An exception raised while a large payload is unmasked (gunicorn raises
    SystemExit from its signal handler on a worker timeout, which can land in
    the pure-Python apply_mask) keeps a view of the read buffer alive in its
    traceback; the engine carries on with a copy, so the socket can go on
    reading afterwards instead of failing with BufferError."""
    import flask_sockets.protocol as protocol
    from tests.gevent.rawclient import encode_frame

    class Interrupted(BaseException):
        pass

    kept = []

    def interrupted(payload, mask):
        kept.append(memoryview(payload))  # as a traceback would keep it
        raise Interrupted()

    engine = protocol.ServerProtocol()
    engine.receive_data(encode_frame(BINARY, b"x" * 100_000) + encode_frame(BINARY, b"next"))
    monkeypatch.setattr(protocol, "apply_mask", interrupted)
    with pytest.raises(Interrupted):
        engine.next_event()
    monkeypatch.undo()
    engine.receive_data(b"")  # resizable
    assert engine.next_event() == b"x" * 100_000
    assert engine.next_event() == b"next"
