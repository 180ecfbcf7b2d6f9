"""Random and mutated handshakes never leave a traceback or hang the server,
and it keeps serving normal clients."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tests.hostile.conftest import HttpTarget
from tests.hostile.conftest import http_assert_quiet
from tests.hostile.conftest import http_echo_works
from tests.hostile.conftest import http_gevent_target
from tests.hostile.conftest import http_upgrade

VALID = http_upgrade("/echo")

# Bytes an attacker likes: line ends, separators, controls, high bytes.
_NASTY = st.sampled_from([b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b"\x00", b"\x7f", b"\xff", b"%", b"?", b"HTTP/"])
_JUNK_HEADERS = st.sampled_from(
    [
        b"Content-Length: 5\r\n",
        b"Content-Length: -1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Host: other\r\n",
        b" folded\r\n",
        b"X-A : b\r\n",
        b"NoColon\r\n",
        b"Sec-WebSocket-Version: 8\r\n",
        b"Sec-WebSocket-Key: x\r\n",
        b"Connection: close\r\n",
        b"Upgrade: h2c\r\n",
        b"X-Big: " + b"a" * 70_000 + b"\r\n",
    ]
)

mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 8)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), _NASTY | st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("split"), st.integers(0, 10_000), st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n"])),
    st.tuples(st.just("header"), st.integers(0, 10_000), _JUNK_HEADERS),
)


def mutate(data: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    out = bytearray(data)
    for kind, position, arg in mutations:
        at = position % (len(out) + 1)
        if kind == "delete":
            del out[at : at + t_int(arg)]
        elif kind in ("insert", "split"):
            out[at:at] = t_bytes(arg)
        elif kind == "replace" and out:
            out[at % len(out)] = t_int(arg)
        elif kind == "header":
            # after the request line, before the blank line
            line_end = out.find(b"\r\n") + 2
            out[line_end:line_end] = t_bytes(arg)
    return bytes(out)


def t_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def t_bytes(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


handshakes = st.one_of(
    # a valid upgrade, mutated
    st.lists(mutation, min_size=1, max_size=4).map(lambda m: mutate(VALID, m)),
    # random request-ish lines and headers
    st.lists(st.binary(max_size=40) | _NASTY | _JUNK_HEADERS, max_size=8).map(b"".join),
)
# What the client does after sending: read the answer, close, or reset at once.
endings = st.sampled_from(["read", "read", "shutdown", "reset"])
# Send the request in pieces (the split points), as a slow or odd client would.
pieces = st.lists(st.integers(1, 200), max_size=3)


def send_and_end(target: HttpTarget, data: bytes, cuts: list[int], ending: str) -> None:
    sock = socket.create_connection((target.server.host, target.server.port), timeout=5)
    try:
        start = 0
        for size in [*cuts, len(data)]:
            with contextlib.suppress(OSError):
                sock.sendall(data[start : start + size])
            start += size
        if ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if ending == "shutdown":
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        # The server must answer or close, well within the handshake timeout
        # the fixture sets; a valid upgrade is an open socket: close it.
        sock.settimeout(3)
        with contextlib.suppress(ConnectionResetError):
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
                if received.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in received:
                    break
    finally:
        sock.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=handshakes, cuts=pieces, ending=endings)
def test_fuzzed_handshakes(http_fuzz_server, capfd, caplog, data, cuts, ending):
    """Whatever the handshake bytes, and however the client leaves: no
    traceback, no error log line, no hang, and a normal client is served after."""
    target = http_fuzz_server
    with caplog.at_level(logging.INFO):
        send_and_end(target, data, cuts, ending)
        http_echo_works(target.server)
    http_assert_quiet(target, capfd.readouterr().err)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "a bad client is not a server error"


@pytest.fixture
def http_fuzz_server(serve):
    """One gevent server per test run of the fuzz test (short handshake timeout)."""
    return http_gevent_target(serve, handshake_timeout=0.5, keepalive_timeout=0.3)
