"""The handler answers malformed handshakes with proper HTTP statuses (raw sockets)."""

from __future__ import annotations

import logging
import socket

import pytest
from flask import Flask

from flask_sockets import Sockets
from flask_sockets.handshake import accept_token

GOOD_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture
def server(serve):
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo(ws):
        ws.send(ws.receive())

    return serve(app)


def raw_request(server, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes or the headers and body are in."""
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and head.startswith(b"HTTP/1.1 101"):
                return data
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    return data


def upgrade(key: str | None = GOOD_KEY, version: str | None = "13", method: str = "GET", http: str = "HTTP/1.1"):
    lines = [f"{method} /echo {http}", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_valid_handshake_gets_101_with_the_accept_token(server):
    """A valid request is answered 101 with the RFC 6455 accept token."""
    response = raw_request(server, upgrade())
    assert status_of(response) == 101
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in response
    assert accept_token(GOOD_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(upgrade(key=None), 400, id="missing-key"),
        pytest.param(upgrade(key=""), 400, id="empty-key"),
        pytest.param(upgrade(key="not base64!!"), 400, id="bad-base64"),
        pytest.param(upgrade(key="c2hvcnQ="), 400, id="key-not-16-bytes"),
        pytest.param(upgrade(version=None), 426, id="missing-version"),
        pytest.param(upgrade(version="8"), 426, id="old-version-8"),
        pytest.param(upgrade(version="14"), 426, id="unknown-version"),
        pytest.param(upgrade(http="HTTP/1.0"), 400, id="http-1.0"),
        pytest.param(upgrade(method="POST"), 400, id="post-upgrade"),
    ],
)
def test_bad_handshakes_get_a_status_not_a_traceback(server, request_bytes, status, caplog):
    """Each malformed handshake gets its status, a text body, and no traceback in the log."""
    with caplog.at_level(logging.DEBUG):
        response = raw_request(server, request_bytes)
    assert "Traceback" not in server.error_log.getvalue()
    assert status_of(response) == status, response
    head, _, body = response.partition(b"\r\n\r\n")
    assert body, "the refusal explains itself"
    if status == 426:
        assert b"Sec-WebSocket-Version: 13" in head
    assert "Traceback" not in caplog.text


def test_bad_handshake_does_not_hang(server):
    """The server closes the connection after refusing a handshake."""
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(upgrade(key="bad"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert status_of(data) == 400


@pytest.mark.parametrize(
    "extra_headers",
    [
        pytest.param(b"X-Big: " + b"a" * 70_000 + b"\r\n", id="header-line-over-64KiB"),
        pytest.param(b"".join(b"X-H%d: v\r\n" % i for i in range(150)), id="over-100-headers"),
    ],
)
def test_oversized_headers_get_431_without_a_traceback(server, extra_headers, caplog):
    """Oversized request headers are answered 431 and logged in one DEBUG line, not in the error log."""
    with caplog.at_level(logging.DEBUG, logger="flask_sockets_gevent"):
        response = raw_request(server, upgrade()[:-2] + extra_headers + b"\r\n")
    assert status_of(response) == 431
    assert server.error_log.getvalue() == ""
    assert [r.levelno for r in caplog.records if r.name == "flask_sockets_gevent"] == [logging.DEBUG]
    assert "Traceback" not in caplog.text
