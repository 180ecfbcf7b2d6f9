"""Deploys without a reconnect storm: a stopping server closes 2,000 open
sockets in batches spread over ``SOCKETS_SHUTDOWN_WINDOW``, each with a
close frame (1012 by default, or the configured code), none lost, none
reset, and exits within its grace period. On ``flask_sockets_gevent.run``,
the gunicorn gevent worker and gunicorn's ``gthread`` worker (ours and
gunicorn's own). The client is one thread with raw sockets and a selector.
"""

from __future__ import annotations

import base64
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import textwrap
import time
import typing as t
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.gunicorn.conftest import GUNICORN_ENV
from tests.gunicorn.conftest import gunicorn_argv

pytestmark = pytest.mark.slow

#: Open sockets when the server stops.
SOCKETS = 2000
#: SOCKETS_SHUTDOWN_WINDOW of the app, in seconds.
WINDOW = 2.0
#: The server's grace period (--graceful-timeout, run(shutdown_timeout=...)):
#: the window (2 s) fits in it less SOCKETS_CLOSE_TIMEOUT (2 s) and the second
#: gunicorn's gevent worker may take to notice the stop, with a second to spare
#: on a loaded machine.
GRACE = 6.0
#: Handshakes in flight at once while connecting.
CONNECT_BATCH = 100

APP = textwrap.dedent(
    """
    import os
    from flask import Flask
    from flask_sockets import Sockets

    app = Flask(__name__)
    app.config.update(
        SOCKETS_SHUTDOWN_WINDOW={window},
        SOCKETS_CLOSE_TIMEOUT=2.0,
        SOCKETS_PING_INTERVAL=None,
        SOCKETS_COMPRESSION=False,
    )
    if os.environ.get("SHUTDOWN_CODE"):
        app.config["SOCKETS_SHUTDOWN_CODE"] = int(os.environ["SHUTDOWN_CODE"])
    sockets = Sockets(app)

    @sockets.route("/hold")
    def hold(ws):
        while ws.receive() is not None:
            pass
    """
).format(window=WINDOW)

RUN = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import sys
    import flask_sockets_gevent
    from drainapp import app

    flask_sockets_gevent.run(app, port=int(sys.argv[1]), shutdown_timeout={grace})
    print("run() returned", flush=True)
    """
).format(grace=GRACE)


class Peer:
    """One raw client connection: what it read, and how it ended."""

    __slots__ = ("buffer", "close_at", "close_frame", "ended", "reset", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.close_frame: tuple[int, str] | None = None
        self.close_at: float | None = None
        self.ended = False
        self.reset = False


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_sockets(port: int, count: int) -> list[Peer]:
    """``count`` accepted WebSockets on ``/hold``, opened ``CONNECT_BATCH`` at a time."""
    peers: list[Peer] = []
    deadline = time.monotonic() + 60
    while len(peers) < count:
        batch = []
        for _ in range(min(CONNECT_BATCH, count - len(peers))):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    f"GET /hold HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            batch.append(sock)
        for sock in batch:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                assert chunk, f"the server closed a handshake after {len(peers)} sockets"
                head += chunk
            assert head.startswith(b"HTTP/1.1 101 "), head
            peer = Peer(sock)
            peer.buffer = head.split(b"\r\n\r\n", 1)[1]
            peers.append(peer)
        assert time.monotonic() < deadline, "connecting took over a minute"
    for peer in peers:
        peer.sock.setblocking(False)
    return peers


def _masked_close(code: int) -> bytes:
    mask = os.urandom(4)
    payload = struct.pack("!H", code)
    return bytes([0x88, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_closes(peers: list[Peer], timeout: float) -> None:
    """Read every peer until its server ends the TCP connection: note when
    the close frame arrives, answer it (as a client must), and see the end
    (a FIN, or a reset). Bounded by ``timeout``."""
    selector = selectors.DefaultSelector()
    for peer in peers:
        selector.register(peer.sock, selectors.EVENT_READ, peer)
    left = len(peers)
    deadline = time.monotonic() + timeout
    try:
        while left and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                peer = t.cast(Peer, key.data)
                try:
                    chunk = peer.sock.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    peer.reset, chunk = True, b""
                now = time.monotonic()
                if not chunk:
                    peer.ended = True
                    selector.unregister(peer.sock)
                    left -= 1
                    continue
                peer.buffer += chunk
                if peer.close_frame is None and len(peer.buffer) >= 2:
                    opcode, length = peer.buffer[0] & 0x0F, peer.buffer[1] & 0x7F
                    assert opcode == 0x8, f"the server sent opcode {opcode:#x} before its close frame"
                    assert not peer.buffer[1] & 0x80, "a server frame must not be masked"
                    if len(peer.buffer) >= 2 + length:
                        payload = peer.buffer[2 : 2 + length]
                        code = struct.unpack("!H", payload[:2])[0]
                        peer.close_frame, peer.close_at = (code, payload[2:].decode()), now
                        try:
                            peer.sock.sendall(_masked_close(code))
                        except OSError:
                            pass
    finally:
        selector.close()
        for peer in peers:
            peer.sock.close()


SERVERS = {
    "gevent-run": None,
    "gunicorn-gevent": "flask_sockets_gunicorn.worker",
    "gunicorn-thread-worker": "flask_sockets_gunicorn.ThreadWorker",
    "gunicorn-gthread": "gthread",
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_shutdown_spreads_closes_over_the_window(tmp_path: Path, spawn, port, server):
    """SIGTERM with 2,000 open sockets: every one gets a 1012 close frame
    ("Server restarting"), none is lost or reset, the closes are spread over
    the 2 s window (the first and the last over 1 s apart, at most a quarter
    of them in any 0.2 s, at most 40% in the first 0.5 s), and the server exits cleanly within its grace period."""
    _raise_fd_limit(SOCKETS + 512)
    (tmp_path / "drainapp.py").write_text(APP)
    worker = SERVERS[server]
    if worker is None:
        (tmp_path / "run.py").write_text(RUN)
        process = spawn([sys.executable, str(tmp_path / "run.py"), str(port)], port=port, cwd=tmp_path)
    else:
        options = ["--graceful-timeout", str(int(GRACE)), "--worker-connections", str(SOCKETS + 100)]
        if worker != "flask_sockets_gunicorn.worker":
            options += ["--threads", str(SOCKETS + 10)]
        argv = gunicorn_argv(*options, port=port, chdir=tmp_path, worker=worker, app="drainapp:app")
        process = spawn(argv, port=port, cwd=tmp_path, env=GUNICORN_ENV)
    peers = open_sockets(port, SOCKETS)

    stopped_at = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    read_closes(peers, timeout=GRACE + 10)
    assert process.popen.wait(TIMEOUT) == 0
    exited_after = time.monotonic() - stopped_at

    codes = {peer.close_frame for peer in peers}
    assert codes == {(1012, "Server restarting")}, f"{sum(p.close_frame is None for p in peers)} got no close frame"
    assert not [peer for peer in peers if peer.reset], "connections were reset"
    assert all(peer.ended for peer in peers)
    times = sorted(t.cast(float, peer.close_at) - stopped_at for peer in peers)
    assert times[-1] - times[0] > WINDOW / 2, f"closes not spread: {times[0]:.2f}..{times[-1]:.2f} s"
    slice_ = WINDOW / 10
    busiest = max(
        sum(1 for x in times if start <= x < start + slice_) for start in (times[0] + i * 0.05 for i in range(40))
    )
    assert busiest <= SOCKETS // 4, f"{busiest} closes in one {slice_} s slice"
    # The batches are even: a quarter of the window holds about a quarter of them.
    early = sum(1 for x in times if x < times[0] + WINDOW / 4)
    assert early <= SOCKETS * 0.4, f"{early} of {SOCKETS} closes in the first quarter of the window"
    # Within the grace period, and the worker did not have to be killed at its end.
    assert exited_after < GRACE + 2, f"exited {exited_after:.1f} s after SIGTERM"
    output = process.output()
    assert "Traceback" not in output
    assert "graceful timeout" not in output.lower()


@pytest.mark.parametrize("server", ["gevent-run", "gunicorn-thread-worker"])
def test_shutdown_code_1001_and_few_sockets_close_at_once(tmp_path: Path, spawn, port, server):
    """SOCKETS_SHUTDOWN_CODE=1001: the sockets get 1001 "Server shutting
    down"; up to MIN_BATCH sockets are closed together, at once."""
    (tmp_path / "drainapp.py").write_text(APP)
    env = {**GUNICORN_ENV, "SHUTDOWN_CODE": "1001"}
    worker = SERVERS[server]
    if worker is None:
        (tmp_path / "run.py").write_text(RUN)
        process = spawn([sys.executable, str(tmp_path / "run.py"), str(port)], port=port, cwd=tmp_path, env=env)
    else:
        options = ("--graceful-timeout", str(int(GRACE)), "--threads", "60")
        argv = gunicorn_argv(*options, port=port, chdir=tmp_path, worker=worker, app="drainapp:app")
        process = spawn(argv, port=port, cwd=tmp_path, env=env)
    peers = open_sockets(port, 50)
    stopped_at = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    read_closes(peers, timeout=GRACE + 10)
    assert process.popen.wait(TIMEOUT) == 0
    assert {peer.close_frame for peer in peers} == {(1001, "Server shutting down")}
    times = [t.cast(float, peer.close_at) - stopped_at for peer in peers]
    assert max(times) - min(times) < WINDOW / 4, "a few sockets are not spread"
