"""Random and mutated frames never crash or hang the server, and it keeps serving others."""

from __future__ import annotations

import logging
import socket

import pytest
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from flask_sockets import Sockets
from tests.gevent.rawclient import RawClient
from tests.gevent.rawclient import encode_frame

# Mostly well-formed frames (so the server gets deep into its state machine),
# with every field sometimes wrong: reserved opcodes and bits, unmasked
# frames, lengths that lie, invalid UTF-8.
frames = st.lists(
    st.tuples(
        st.sampled_from([0x0, 0x1, 0x1, 0x2, 0x2, 0x8, 0x9, 0x9, 0xA, 0xA]) | st.integers(0, 15),  # opcode
        st.sampled_from([True, True, True, False]),  # fin
        st.sampled_from([0, 0, 0, 0, 0, 0, 1, 4]),  # rsv bits
        st.sampled_from([True, True, True, True, False]),  # masked
        st.text(max_size=100).map(str.encode) | st.binary(max_size=300),  # payload
        st.sampled_from([0, 0, 0, 0, 0, 0, -1, 1, 3]),  # lie about the length by this much
    ),
    max_size=6,
)
mutations = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4)


def encode(opcode: int, fin: bool, rsv: int, masked: bool, payload: bytes, lie: int) -> bytes:
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, length=max(0, len(payload) + lie), mask=masked)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=frames, mutations=mutations)
def test_fuzzed_frames(serve_echo, caplog, frames, mutations):
    """Whatever arrives, the server ends the connection once the client stops, and serves the next client."""
    server = serve_echo
    data = bytearray(b"".join(encode(*frame) for frame in frames))
    for position, value in mutations:
        if data:
            data[position % len(data)] = value
    client = RawClient(server.host, server.port, "/echo")
    try:
        assert client.status == 101
        try:
            client.sock.sendall(bytes(data))
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may already have closed on us
        client.sock.settimeout(5)
        # Drain until the server closes; a timeout here means it hangs.
        while client.sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    finally:
        client.close()
    with connect(f"{server.ws_url}/echo", open_timeout=5) as ws:
        ws.send("still alive")
        assert ws.recv(timeout=5) == "still alive"
    assert "Traceback" not in server.error_log.getvalue()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "a bad peer is not a server error"


@pytest.fixture
def serve_echo(serve):
    app = Flask(__name__)
    app.config.update(SOCKETS_MAX_MESSAGE_SIZE=4096, SOCKETS_CLOSE_TIMEOUT=1)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo(ws):
        while (message := ws.receive()) is not None:
            ws.send(message)

    return serve(app)
