"""permessage-deflate on the real servers (gevent and the development
server): negotiation, compressed frames both ways, the per-message and
per-route opt-outs, and the inflation bound, with a real client
(websockets, which offers compression by default) and a raw one."""

from __future__ import annotations

import json
import typing as t
import zlib

import pytest
from flask import Flask
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from tests.gevent.rawclient import RawClient

TEXT, BINARY = Opcode.TEXT, Opcode.BINARY
RSV1 = 0x4
OFFER = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


@pytest.fixture(params=["gevent", "devserver"])
def any_server(request: pytest.FixtureRequest, serve: t.Any, devserve: t.Any) -> t.Any:
    return serve if request.param == "gevent" else devserve


def make_app(**config: t.Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo(ws: t.Any) -> None:
        while (message := ws.receive()) is not None:
            ws.send(message)

    @sockets.route("/params")
    def params(ws: t.Any) -> None:
        ws.send(json.dumps(ws.compression.parameters() if ws.compression else None))

    @sockets.route("/secret")
    def secret(ws: t.Any) -> None:
        ws.send("token=" + "s" * 500, compress=False)
        ws.send("public " * 100)
        ws.send("short")

    @sockets.route("/plain", compression=False)
    def plain(ws: t.Any) -> None:
        ws.send("x" * 1000)

    @sockets.route("/takeover", compression={"server_no_context_takeover": False})
    def takeover(ws: t.Any) -> None:
        for i in range(3):
            ws.send(f"message {i} " * 50)

    return app


def deflate(data: bytes) -> bytes:
    """What a client sends for a whole message (RFC 7692, 7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate(payload: bytes, decompressor: t.Any = None) -> bytes:
    decompressor = decompressor or zlib.decompressobj(wbits=-15)
    return t.cast(bytes, decompressor.decompress(payload + b"\x00\x00\xff\xff"))


def test_a_real_client_negotiates_and_messages_flow(any_server: t.Any) -> None:
    server = any_server(make_app())
    with connect(f"{server.ws_url}/echo") as ws:
        header = ws.response.headers["Sec-WebSocket-Extensions"]
        assert header.startswith("permessage-deflate")
        assert "server_no_context_takeover" in header and "client_no_context_takeover" in header
        for message in ["hi", json.dumps({"rows": list(range(2000))}), bytes(100_000), "é" * 50_000]:
            ws.send(message)
            assert ws.recv(5) == message
    with connect(f"{server.ws_url}/params") as ws:
        assert json.loads(t.cast(str, ws.recv(5))) == {
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
            "server_max_window_bits": 12,
            "client_max_window_bits": 12,
        }


def test_frames_are_compressed_above_the_threshold_and_send_compress_false_opts_out(any_server: t.Any) -> None:
    server = any_server(make_app())
    client = RawClient(server.host, server.port, "/secret", headers=OFFER)
    try:
        assert client.status == 101 and "permessage-deflate" in client.head
        opcode, payload = client.read_frame()
        assert (opcode, client.rsv) == (TEXT, 0), "compress=False must send the message uncompressed"
        assert payload == b"token=" + b"s" * 500
        opcode, payload = client.read_frame()
        assert (opcode, client.rsv) == (TEXT, RSV1)
        assert inflate(payload) == b"public " * 100 and len(payload) < 100
        opcode, payload = client.read_frame()
        assert (opcode, client.rsv, payload) == (TEXT, 0, b"short"), "below the threshold: uncompressed"
    finally:
        client.close()


def test_compressed_client_messages_are_inflated(any_server: t.Any) -> None:
    server = any_server(make_app())
    client = RawClient(server.host, server.port, "/echo", headers=OFFER)
    try:
        text = ("ünïcode " * 400).encode()
        client.send_frame(TEXT, deflate(text), rsv=RSV1)
        _, payload = client.read_frame()
        assert inflate(payload) == text
        # A compressed message in three fragments (RSV1 on the first only).
        data = deflate(bytes(range(256)) * 40)
        client.send_frame(BINARY, data[:10], fin=False, rsv=RSV1)
        client.send_frame(Opcode.CONTINUATION, data[10:20], fin=False)
        client.send_frame(Opcode.CONTINUATION, data[20:])
        _, payload = client.read_frame()
        assert inflate(payload) == bytes(range(256)) * 40
    finally:
        client.close()


def test_off_in_config_and_per_route(any_server: t.Any) -> None:
    server = any_server(make_app(SOCKETS_COMPRESSION=False))
    with connect(f"{server.ws_url}/echo") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("x" * 1000)
        assert ws.recv(5) == "x" * 1000
    server = any_server(make_app())
    client = RawClient(server.host, server.port, "/plain", headers=OFFER)
    try:
        assert "permessage-deflate" not in client.head, "compression=False on the route"
        assert client.read_frame() == (TEXT, b"x" * 1000) and client.rsv == 0
    finally:
        client.close()


def test_a_route_may_keep_the_server_context(any_server: t.Any) -> None:
    server = any_server(make_app())
    client = RawClient(server.host, server.port, "/takeover", headers=OFFER)
    try:
        assert "server_no_context_takeover" not in client.head
        decompressor = zlib.decompressobj(wbits=-12)  # the client keeps its context: one decompressor
        sizes = []
        for i in range(3):
            _, payload = client.read_frame()
            assert client.rsv == RSV1 and inflate(payload, decompressor) == f"message {i} ".encode() * 50
            sizes.append(len(payload))
        assert sizes[2] < sizes[0], "with context, a message like the previous one compresses better"
    finally:
        client.close()


def test_compressed_data_without_negotiation_is_a_protocol_error(any_server: t.Any) -> None:
    server = any_server(make_app())
    client = RawClient(server.host, server.port, "/echo")  # offers nothing
    try:
        client.send_frame(TEXT, deflate(b"hello"), rsv=RSV1)
        assert client.read_close()[0] == CloseCode.PROTOCOL_ERROR
    finally:
        client.close()


@pytest.mark.parametrize(
    "extra, code", [(0, None), (1, CloseCode.MESSAGE_TOO_BIG)], ids=["exactly-the-limit", "one-byte-over"]
)
def test_inflating_is_bounded_by_the_message_size_limit(any_server: t.Any, extra: int, code: int | None) -> None:
    """A small frame that inflates past SOCKETS_MAX_MESSAGE_SIZE is closed
    with 1009; one that inflates to exactly the limit is a message."""
    limit = 1_000_000
    server = any_server(make_app(SOCKETS_MAX_MESSAGE_SIZE=limit))
    client = RawClient(server.host, server.port, "/echo", headers=OFFER)
    try:
        bomb = deflate(bytes(limit + extra))
        assert len(bomb) < 2000
        client.send_frame(BINARY, bomb, rsv=RSV1)
        if code is None:
            _, payload = client.read_frame()
            assert inflate(payload) == bytes(limit)
        else:
            assert client.read_close()[0] == code
    finally:
        client.close()
