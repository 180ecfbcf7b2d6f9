"""Slow and idle clients, connection caps: the handshake timeout drops
clients that dribble their request head, idle keep-alive connections are
closed, and a capped server makes extra connections wait, not fail."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from tests.conftest import Server
from tests.conftest import wait_until
from tests.hostile.conftest import http_assert_quiet
from tests.hostile.conftest import http_connect
from tests.hostile.conftest import http_echo_works
from tests.hostile.conftest import http_gevent_target
from tests.hostile.conftest import http_keepalive_request
from tests.hostile.conftest import http_read_until_close
from tests.hostile.conftest import http_status
from tests.hostile.conftest import http_upgrade

#: The handshake timeout the tests set (the default is 10 s).
HANDSHAKE_TIMEOUT = 1.0
#: Give up on the server after this many seconds (several times the timeouts).
GIVE_UP = 6.0


def dribble(server: Server, count: int, *, check_meanwhile: bool = True) -> list[tuple[float, bytes]]:
    """Open ``count`` connections that each send one byte of a request head
    every 0.2 s; return, for each, when the server dropped it (seconds
    since it connected) and what it answered. A normal client echoes a
    message while they dribble."""
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    sockets = [http_connect(server) for _ in range(count)]
    started = time.monotonic()
    dropped: dict[int, tuple[float, bytes]] = {}
    position = 0
    try:
        for s in sockets:
            s.setblocking(False)
        while len(dropped) < count and time.monotonic() - started < GIVE_UP:
            for n, s in enumerate(sockets):
                if n in dropped:
                    continue
                try:
                    s.send(head[position : position + 1])
                    answer = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    answer = b""
                dropped[n] = (time.monotonic() - started, answer)
            position += 1
            if check_meanwhile and position == 3:
                http_echo_works(server)
            time.sleep(0.2)
    finally:
        for s in sockets:
            s.close()
    assert len(dropped) == count, f"{count - len(dropped)} of {count} slow clients still connected after {GIVE_UP}s"
    return [dropped[n] for n in range(count)]


def test_slow_handshakes_are_dropped_by_the_timeout(serve, capfd):
    """50 clients dribbling their headers are all dropped by the handshake
    timeout (with a 408 where it could be written) while a normal client is served."""
    target = http_gevent_target(serve, handshake_timeout=HANDSHAKE_TIMEOUT)
    results = dribble(target.server, 50)
    assert max(when for when, _ in results) < 3 * HANDSHAKE_TIMEOUT
    assert min(when for when, _ in results) >= HANDSHAKE_TIMEOUT * 0.9
    assert all(http_status(answer) in (None, 408) for _, answer in results)
    assert any(http_status(answer) == 408 for _, answer in results)
    http_echo_works(target.server)
    http_assert_quiet(target, capfd.readouterr().err)
    assert '"" 408 ' in target.access()  # each 408 is access-logged (no request line came)


def test_slow_handshakes_are_dropped_by_the_gunicorn_worker(http_gunicorn, capfd):
    """The worker drops dribbling clients after its ``handshake_timeout``
    (a subclass sets 1 s) and serves a normal client meanwhile."""
    process = http_gunicorn(worker="hostile_http_worker.ShortHandshakeWorker")
    results = dribble(process.target.server, 20)
    assert max(when for when, _ in results) < 3 * HANDSHAKE_TIMEOUT
    assert all(http_status(answer) in (None, 408) for _, answer in results)
    http_echo_works(process.target.server)
    http_assert_quiet(process.target, capfd.readouterr().err)


def test_a_silent_connection_is_dropped_too(serve):
    """A client that connects and sends nothing at all is dropped as well."""
    target = http_gevent_target(serve, handshake_timeout=HANDSHAKE_TIMEOUT)
    started = time.monotonic()
    with http_connect(target.server, timeout=GIVE_UP) as sock:
        response = http_read_until_close(sock, GIVE_UP)
    assert time.monotonic() - started < 3 * HANDSHAKE_TIMEOUT
    assert http_status(response) in (None, 408)


def test_a_body_that_never_comes_does_not_hold_the_connection(serve):
    """A request announcing a body it never sends, to a view that does not
    read it: answered, then closed after the handshake timeout (pywsgi
    would wait for the body forever)."""
    target = http_gevent_target(serve, handshake_timeout=HANDSHAKE_TIMEOUT)
    started = time.monotonic()
    with http_connect(target.server, timeout=GIVE_UP) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n")
        response = http_read_until_close(sock, GIVE_UP)
    assert http_status(response) == 200
    assert time.monotonic() - started < 3 * HANDSHAKE_TIMEOUT


def test_a_websocket_outlives_the_handshake_timeout(serve):
    """The timeout covers only the request head: an open socket stays open."""
    from websockets.sync.client import connect

    target = http_gevent_target(serve, handshake_timeout=0.3)
    with connect(f"{target.server.ws_url}/echo", open_timeout=5) as ws:
        time.sleep(0.8)
        ws.send("later")
        assert ws.recv(timeout=5) == "later"


def idle_close_after(server: Server) -> float:
    """Make a request on a keep-alive connection, then wait: the seconds
    until the server closes it."""
    with http_connect(server, timeout=GIVE_UP) as sock:
        assert http_status(http_keepalive_request(sock)) == 200
        assert http_status(http_keepalive_request(sock)) == 200  # still open between requests
        idle_since = time.monotonic()
        assert http_read_until_close(sock, GIVE_UP) == b""
        return time.monotonic() - idle_since


def test_idle_keepalive_connections_are_closed(serve):
    """``keepalive_timeout``: an idle keep-alive connection is closed after it."""
    target = http_gevent_target(serve, keepalive_timeout=0.5)
    assert 0.4 <= idle_close_after(target.server) < 1.5


def test_gunicorn_honours_keep_alive(http_gunicorn):
    """The worker closes idle keep-alive connections after ``--keep-alive`` seconds."""
    process = http_gunicorn("--keep-alive", "1")
    assert 0.9 <= idle_close_after(process.target.server) < 3.0


def test_keepalive_timeout_zero_closes_after_each_response(serve):
    """``keepalive_timeout=0``: one request per connection."""
    target = http_gevent_target(serve, keepalive_timeout=0)
    with http_connect(target.server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = http_read_until_close(sock)
    assert http_status(response) == 200


def hold_sockets(server: Server, count: int) -> list[socket.socket]:
    """``count`` open WebSockets (raw: the 101 read, nothing more)."""
    held = []
    for _ in range(count):
        sock = http_connect(server)
        sock.sendall(http_upgrade("/echo"))
        assert http_status(sock.recv(4096)) == 101
        held.append(sock)
    return held


def assert_waits_then_is_served(server: Server, held: list[socket.socket]) -> None:
    """One more connection than the cap gets no answer while the others are
    open, and its 101 once one of them closes."""
    extra = http_connect(server)
    try:
        extra.sendall(http_upgrade("/echo"))
        extra.settimeout(0.5)
        with pytest.raises(socket.timeout):  # TimeoutError from Python 3.10
            extra.recv(4096)  # waiting in the listen backlog
        held.pop().close()
        extra.settimeout(GIVE_UP)
        assert http_status(extra.recv(4096)) == 101
    finally:
        extra.close()
        for sock in held:
            sock.close()


def test_max_connections_makes_extra_connections_wait(serve, capfd):
    """``max_connections=3``: the fourth connection waits, and is served as
    soon as one of the three closes; nothing is refused or logged."""
    target = http_gevent_target(serve, max_connections=3)
    assert target.server.port  # started
    assert_waits_then_is_served(target.server, hold_sockets(target.server, 3))
    http_echo_works(target.server)
    http_assert_quiet(target, capfd.readouterr().err)


def test_gunicorn_worker_connections_caps_the_worker(http_gunicorn, capfd):
    """gunicorn's ``--worker-connections`` is the worker's cap: the same waiting."""
    process = http_gunicorn("--worker-connections", "2")
    assert_waits_then_is_served(process.target.server, hold_sockets(process.target.server, 2))
    http_echo_works(process.target.server)
    http_assert_quiet(process.target, capfd.readouterr().err)


def test_default_max_connections_leaves_file_descriptor_headroom():
    """The default cap is the soft open-file limit less max(32, 10%)."""
    import resource

    from flask import Flask

    from flask_sockets_gevent import make_server
    from flask_sockets_gevent.server import default_max_connections

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:  # pragma: no cover
        assert default_max_connections() is None
    else:
        assert default_max_connections() == max(1, soft - max(32, soft // 10))
    server = make_server(Flask(__name__), "127.0.0.1", 0)
    assert server.max_connections == default_max_connections()
    assert server.pool is not None and server.pool.size == server.max_connections
    assert server.handshake_timeout == 10.0 and server.keepalive_timeout == 5.0
    with pytest.raises(TypeError):
        make_server(Flask(__name__), "127.0.0.1", 0, max_connections=3, spawn=10)


EMFILE_SERVER = """
import logging
import resource
import sys

from gevent import monkey

monkey.patch_all()

import flask_sockets_gevent
from hostile_http_app import app

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
# One warning per second instead of per 10 s, so that the test sees a second one.
flask_sockets_gevent.WebSocketServer.accept_error_interval = 1.0
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
# A cap above the file limit, so that accept() runs out of descriptors.
flask_sockets_gevent.run(app, port=int(sys.argv[1]), max_connections=1000, handshake_timeout=30)
"""


def test_running_out_of_file_descriptors_is_logged_once_per_interval(spawn, port, tmp_path):
    """With the open file limit lowered to 64 in the server process, 120
    connections make accept() fail with EMFILE: one warning (with a count)
    per interval, no traceback, and the server serves again once they close."""
    from tests.hostile.conftest import HTTP_APP_SOURCE

    (tmp_path / "hostile_http_app.py").write_text(HTTP_APP_SOURCE)
    (tmp_path / "emfile_server.py").write_text(EMFILE_SERVER)
    process = spawn([sys.executable, str(tmp_path / "emfile_server.py"), str(port)], port=port, cwd=tmp_path)
    held = [http_connect(process.server) for _ in range(120)]
    try:
        time.sleep(2.5)
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: _serves(process.server))
    process.stop()
    output = process.output()
    warnings = [line for line in output.splitlines() if "Cannot accept connections" in line]
    assert "Traceback" not in output, output
    assert 1 <= len(warnings) <= 4, output
    assert all(line.startswith("WARNING flask_sockets_gevent:") for line in warnings), warnings
    assert "Too many open files" in warnings[0]


def _serves(server: Server) -> bool:
    try:
        http_echo_works(server)
    except Exception:
        return False
    return True
