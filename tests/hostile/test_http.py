"""Hostile HTTP before and during the handshake: resets, malformed request
heads, truncated requests. On our gevent server and the gunicorn worker,
with raw sockets; nothing a client sends may leave a traceback."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from flask_sockets.protocol import CloseCode
from tests.conftest import wait_until
from tests.hostile.conftest import http_assert_quiet
from tests.hostile.conftest import http_connect
from tests.hostile.conftest import http_echo_works
from tests.hostile.conftest import http_exchange
from tests.hostile.conftest import http_get
from tests.hostile.conftest import http_keepalive_request
from tests.hostile.conftest import http_load_app
from tests.hostile.conftest import http_read_until_close
from tests.hostile.conftest import http_reset
from tests.hostile.conftest import http_status
from tests.hostile.conftest import http_upgrade

RESETS = 50

#: What the handler of /record saw when the client reset before the 101.
GONE = {"first": None, "close_code": CloseCode.ABNORMAL_CLOSURE, "send": "ConnectionClosed", "ended": "returned"}


def test_reset_before_101_ends_the_handler_normally(http_target, capfd, caplog):
    """A client that resets right after its upgrade: receive() returns None,
    sending raises ConnectionClosed, the handler returns, no traceback, no
    500, and the access log shows the upgrade as not completed (499)."""
    server = http_target.server
    before = len(json.loads(http_get(server, "/outcomes")))
    with caplog.at_level(logging.INFO):
        for _ in range(RESETS):
            sock = http_connect(server)
            sock.sendall(http_upgrade("/record"))
            http_reset(sock)
        wait_until(lambda: len(json.loads(http_get(server, "/outcomes"))) >= before + RESETS)
        outcomes = json.loads(http_get(server, "/outcomes"))[before:]
        http_echo_works(server)
    assert outcomes == [GONE] * RESETS
    records = [r for r in caplog.records if r.levelno > logging.INFO]
    assert not records, [r.getMessage() for r in records]
    http_assert_quiet(http_target, capfd.readouterr().err)
    lines = [line for line in http_target.access().splitlines() if "/record" in line]
    assert len(lines) == RESETS, http_target.access()
    assert not [line for line in lines if '" 500 ' in line], lines
    # Most resets arrive before the 101 is written; those show as 499.
    assert [line for line in lines if '" 499 ' in line], lines


def test_reset_before_an_eager_101_skips_the_handler(http_target, capfd, caplog):
    """A client that resets before the 101 that is sent as the handler starts
    (the default): the handler is not called (no connection was opened), no
    traceback, and the access log shows 499."""
    server = http_target.server
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            sock = http_connect(server)
            sock.sendall(http_upgrade("/late"))
            http_reset(sock)  # the app answers 0.3 s later
        wait_until(lambda: len([line for line in http_target.access().splitlines() if "/late" in line]) >= 5)
        http_echo_works(server)
    assert http_get(server, "/started") == "0"
    records = [r for r in caplog.records if r.levelno > logging.INFO]
    assert not records, [r.getMessage() for r in records]
    http_assert_quiet(http_target, capfd.readouterr().err)
    lines = [line for line in http_target.access().splitlines() if "/late" in line]
    assert len(lines) == 5 and all('" 499 ' in line for line in lines), lines


def test_reset_before_101_on_the_development_server(devserve, capfd, caplog):
    """The development server's socket does the same: the handler returns,
    receive() gave None, sending raised ConnectionClosed, no traceback."""
    module = http_load_app()
    server = devserve(module.app)
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            sock = http_connect(server)
            sock.sendall(http_upgrade("/record"))
            http_reset(sock)
        wait_until(lambda: len(module.outcomes) >= 20)
    assert module.outcomes == [GONE] * 20
    assert "Exception on" not in caplog.text
    assert "Traceback" not in capfd.readouterr().err


def header_block(*lines: str, request_line: str = "GET / HTTP/1.1") -> bytes:
    return ("\r\n".join([request_line, *lines]) + "\r\n\r\n").encode("latin-1")


HOST = "Host: 127.0.0.1"

MALFORMED = [
    # Request lines (RFC 9112 3).
    pytest.param(b"GET /echo HTTP/1\r\nHost: x\r\n\r\n", 400, id="version-without-minor"),
    pytest.param(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="double-space"),
    pytest.param(b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, id="trailing-space"),
    pytest.param(b"GET /\r\n\r\n", 400, id="http-0.9"),
    pytest.param(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="method-not-a-token"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400, id="http-2.0"),
    pytest.param(b"GET / FOO/1.1\r\nHost: x\r\n\r\n", 400, id="not-http"),
    pytest.param(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="nul-in-target"),
    pytest.param(b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400, id="bare-cr-in-request-line"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, id="tls-hello"),
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, id="request-line-too-long"),
    # Header lines (RFC 9112 5, RFC 9110 5.5).
    pytest.param(header_block(HOST, "NoColonHere"), 400, id="no-colon"),
    pytest.param(header_block(HOST, "X-Name : v"), 400, id="space-before-colon"),
    pytest.param(header_block(HOST, "X(Name): v"), 400, id="name-not-a-token"),
    pytest.param(header_block(HOST, ": v"), 400, id="empty-name"),
    pytest.param(header_block(HOST, "X-A: one", " folded"), 400, id="obs-fold-space"),
    pytest.param(header_block(HOST, "X-A: one", "\tfolded"), 400, id="obs-fold-tab"),
    pytest.param(header_block(HOST, "X-A: a\x00b"), 400, id="nul-in-value"),
    pytest.param(header_block(HOST, "X-A: a\rb"), 400, id="bare-cr-in-value"),
    pytest.param(header_block(HOST, "X-A: a\x01b"), 400, id="control-in-value"),
    pytest.param(header_block(HOST, "X-Big: " + "a" * 70_000), 431, id="header-line-over-64KiB"),
    pytest.param(header_block(HOST, *(f"X-H{i}: v" for i in range(101))), 431, id="over-100-headers"),
    # Framing and Host (RFC 9112 3.2, 6).
    pytest.param(header_block(), 400, id="http-1.1-without-host"),
    pytest.param(header_block(HOST, HOST), 400, id="two-hosts"),
    pytest.param(header_block(HOST, "Content-Length: abc"), 400, id="content-length-not-digits"),
    pytest.param(header_block(HOST, "Content-Length: +1") + b"x", 400, id="content-length-with-sign"),
    pytest.param(header_block(HOST, "Content-Length: 1", "Content-Length: 2") + b"xy", 400, id="two-lengths"),
    pytest.param(
        header_block(HOST, "Content-Length: 3", "Transfer-Encoding: chunked") + b"0\r\n\r\n", 400, id="length-and-te"
    ),
    pytest.param(header_block(HOST, "Transfer-Encoding: gzip, chunked"), 400, id="te-not-chunked"),
    # Upgrades (RFC 6455 4.2.1), which have no body.
    pytest.param(http_upgrade("/echo", "Content-Length: 5") + b"hello", 400, id="upgrade-with-length"),
    pytest.param(http_upgrade("/echo", "Content-Length: 5"), 400, id="upgrade-with-length-never-sent"),
    pytest.param(http_upgrade("/echo", "Transfer-Encoding: chunked") + b"0\r\n\r\n", 400, id="upgrade-chunked"),
    pytest.param(http_upgrade("/echo", version="HTTP/1.0"), 400, id="upgrade-http-1.0"),
    pytest.param(http_upgrade("/echo").replace(b"Version: 13", b"Version: 8"), 426, id="upgrade-version-8"),
    pytest.param(http_upgrade("/echo").replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), 400, id="upgrade-bad-key"),
]


@pytest.mark.parametrize(("data", "status"), MALFORMED)
def test_malformed_request_heads_get_a_status_and_no_traceback(http_target, capfd, data, status):
    """Each malformed request head is answered with its status and the
    connection closed; nothing reaches the error log."""
    response = http_exchange(http_target.server, data)
    assert http_status(response) == status, response
    http_assert_quiet(http_target, capfd.readouterr().err)


def test_valid_requests_still_pass(http_target):
    """The strict reader lets ordinary requests through: a bare-LF request,
    a leading empty line, obs-text in a value, a chunked POST."""
    server = http_target.server
    for data in (
        b"GET / HTTP/1.1\nHost: x\nConnection: close\n\n",
        b"\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\nConnection: close\r\n\r\n".encode("latin-1"),
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ):
        response = http_exchange(server, data)
        assert http_status(response) == 200, (data, response)
        assert response.endswith(b"ok"), response


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1", id="inside-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n", id="before-blank-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x", id="inside-header-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r", id="inside-blank-line"),
    ],
)
def test_a_request_cut_short_is_never_dispatched(http_target, capfd, data):
    """EOF inside the request head: the app never sees the request."""
    server = http_target.server
    hits = int(http_get(server, "/hits"))
    with http_connect(server) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        response = http_read_until_close(sock)
    assert http_status(response) in (None, 400), response
    assert int(http_get(server, "/hits")) == hits
    http_assert_quiet(http_target, capfd.readouterr().err)


def test_resets_during_junk_and_partial_requests_are_quiet(http_target, capfd):
    """Junk (and partial heads) followed at once by a reset, while the
    server writes its 400: no traceback, and the server goes on serving."""
    server = http_target.server
    junk = [
        b"\x00\xff junk\r\n\r\n",
        b"GET /echo HTTP/1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad\r\n\r\n",
        b"GET / HT",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
    ]
    for i in range(40):
        sock = http_connect(server)
        sock.sendall(junk[i % len(junk)])
        if i % 2:
            time.sleep(0.005)  # sometimes while the 400 is on its way
        http_reset(sock)
    http_echo_works(server)
    time.sleep(0.2)  # let the last resets be handled
    http_assert_quiet(http_target, capfd.readouterr().err)


def test_client_errors_are_logged_at_debug_only(serve, caplog):
    """On the gevent server each refused request is one DEBUG line on the
    flask_sockets_gevent logger (and nothing in the error log)."""
    from tests.hostile.conftest import http_gevent_target

    target = http_gevent_target(serve)
    with caplog.at_level(logging.DEBUG, logger="flask_sockets_gevent"):
        http_exchange(target.server, b"GET / HTTP/1.1\r\nNoColon\r\n\r\n")
        wait_until(lambda: any(r.name == "flask_sockets_gevent" for r in caplog.records))
    ours = [r for r in caplog.records if r.name == "flask_sockets_gevent"]
    assert [r.levelno for r in ours] == [logging.DEBUG], [r.getMessage() for r in ours]
    assert "Malformed header line" in ours[0].getMessage()
    assert target.errors() == ""


def test_a_keepalive_connection_serves_requests_in_turn(http_target):
    """Strict reading keeps keep-alive working: three requests on one connection."""
    with http_connect(http_target.server) as sock:
        for _ in range(3):
            assert http_status(http_keepalive_request(sock)) == 200



#: Requests whose body ends before what they announced, sent over a raw
#: socket before the client shuts down its side (or resets).
BODIES_CUT_SHORT = [
    pytest.param(b"Content-Length: 5\r\n\r\n", id="length-nothing-sent"),
    pytest.param(b"Content-Length: 5\r\n\r\nab", id="length-part-sent"),
    pytest.param(b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", id="chunked-inside-a-chunk"),
    pytest.param(b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n", id="chunked-without-last-chunk"),
    pytest.param(b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", id="chunked-size-not-hex"),
]


@pytest.mark.parametrize("ending", ["shutdown", "reset"])
@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/body", 400)], ids=["app-ignores-body", "app-reads-body"])
@pytest.mark.parametrize("rest", BODIES_CUT_SHORT)
def test_a_body_cut_short_is_a_client_event(http_target, capfd, caplog, rest, path, status, ending):
    """A request that announces a body and ends before sending it all: the
    app's answer if it did not read the body, a 400 if it did (Werkzeug's
    ClientDisconnected); the connection is closed; no traceback, no error
    log line; the server goes on serving."""
    server = http_target.server
    with caplog.at_level(logging.INFO):
        with http_connect(server) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + rest)
            if ending == "reset":
                http_reset(sock)
            else:
                sock.shutdown(socket.SHUT_WR)
                response = http_read_until_close(sock)
                assert http_status(response) == status, response
        assert http_get(server, "/hits")  # still serving HTTP
        http_echo_works(server)
        time.sleep(0.1)  # a reset's handler may still be ending: let it log what it would
    http_assert_quiet(http_target, capfd.readouterr().err)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "a client that leaves early is not a server error"
