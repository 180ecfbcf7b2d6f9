"""Fixtures for the hostile-input tests: one app, served by our gevent server
(in a thread) and by the gunicorn worker (a real process), and raw-socket
helpers. HTTP-side fixtures are named ``http_*``."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import socket
import struct
import sys
import textwrap
import time
import types
import typing as t
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.conftest import Server
from tests.conftest import free_port
from tests.conftest import wait_for_port

#: The app both servers run. ``/`` counts its calls (``/hits`` reads the
#: count), ``POST /body`` reads the request body, ``/echo`` echoes,
#: ``/record`` (whose handler answers the handshake itself:
#: ``defer_accept=True``) records how its handler ended (``/outcomes`` reads
#: them), ``/late`` answers the handshake 0.3 s after the request and counts
#: its handler's calls (``/started`` reads the count).
HTTP_APP_SOURCE = textwrap.dedent(
    """
    import json

    import gevent
    from flask import Flask, request
    from flask_sockets import ConnectionClosed, Sockets

    app = Flask(__name__)
    sockets = Sockets(app)
    hits = []
    outcomes = []
    started = []


    @app.before_request
    def late():
        if request.path == "/late":
            gevent.sleep(0.3)


    @sockets.route("/late")
    def late_socket(ws):
        started.append(1)


    @app.route("/started")
    def count_started():
        return str(len(started))


    @app.route("/", methods=["GET", "POST"])
    def index():
        hits.append(1)
        return "ok"


    @app.route("/hits")
    def count_hits():
        return str(len(hits))


    @app.post("/body")
    def body():
        return str(len(request.get_data()))


    @app.route("/outcomes")
    def get_outcomes():
        return json.dumps(outcomes)


    @sockets.route("/echo")
    def echo(ws):
        while (message := ws.receive()) is not None:
            ws.send(message)


    @sockets.route("/record", defer_accept=True)
    def record(ws):
        outcome = {}
        try:
            outcome["first"] = ws.receive()
            outcome["close_code"] = ws.close_code
            try:
                ws.send("after")
                outcome["send"] = "sent"
            except ConnectionClosed:
                outcome["send"] = "ConnectionClosed"
            outcome["ended"] = "returned"
        except BaseException as e:
            outcome["ended"] = "raised " + repr(e)
            raise
        finally:
            outcomes.append(outcome)
    """
)

#: A worker subclass with a short handshake timeout, for gunicorn tests.
HTTP_WORKER_SOURCE = textwrap.dedent(
    """
    from flask_sockets_gunicorn.workers import GeventWebSocketWorker


    class ShortHandshakeWorker(GeventWebSocketWorker):
        handshake_timeout = 1.0
    """
)


def http_load_app() -> types.ModuleType:
    """A fresh module running :data:`HTTP_APP_SOURCE`."""
    module = types.ModuleType("hostile_http_app")
    exec(compile(HTTP_APP_SOURCE, "hostile_http_app.py", "exec"), module.__dict__)
    return module


@dataclasses.dataclass
class HttpTarget:
    """A running server under test and where its logs go."""

    kind: str
    server: Server
    #: Everything the server logged (error log, stderr; gunicorn: its whole output).
    errors: t.Callable[[], str]
    #: The access log so far.
    access: t.Callable[[], str]


def http_gevent_target(serve: t.Callable[..., Server], **options: t.Any) -> HttpTarget:
    """Serve :data:`HTTP_APP_SOURCE` on our gevent server in a thread."""
    access = io.StringIO()
    server = serve(http_load_app().app, log=access, **options)
    error_log = server.error_log
    assert error_log is not None
    return HttpTarget("gevent", server, error_log.getvalue, access.getvalue)


class HttpGunicorn:
    """A gunicorn process serving :data:`HTTP_APP_SOURCE` with our worker."""

    def __init__(self, directory: Path, *options: str, worker: str = "flask_sockets_gunicorn.worker") -> None:
        import subprocess

        from tests.gunicorn.conftest import _no_control_socket

        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hostile_http_app.py").write_text(HTTP_APP_SOURCE)
        (directory / "hostile_http_worker.py").write_text(HTTP_WORKER_SOURCE)
        self.port = free_port()
        self.log_path = directory / "gunicorn.log"
        argv = [
            sys.executable, "-m", "gunicorn",
            *("-k", worker, "-w", "1", "-b", f"127.0.0.1:{self.port}", "--chdir", str(directory)),
            *("--graceful-timeout", "1", "--timeout", "30", "--access-logfile", "-", "--error-logfile", "-"),
            *_no_control_socket(),
            *options,
            "hostile_http_app:app",
        ]  # fmt: skip
        env = {
            **__import__("os").environ,
            "GUNICORN_CMD_ARGS": "",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(directory),
        }
        with self.log_path.open("w") as log:
            self.popen = subprocess.Popen(
                argv, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port(self.port, proc=self.popen)  # type: ignore[arg-type]
        except Exception:
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.output()}") from None
        self.target = HttpTarget("gunicorn", Server("127.0.0.1", self.port), self.output, self.output)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        import signal
        import subprocess

        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(TIMEOUT)


@pytest.fixture(scope="module")
def http_gunicorn_module(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[HttpGunicorn]:
    """One gunicorn process for a whole test module (default settings)."""
    process = HttpGunicorn(tmp_path_factory.mktemp("hostile-gunicorn"))
    yield process
    process.stop()


@pytest.fixture
def http_gunicorn(tmp_path: Path) -> t.Iterator[t.Callable[..., HttpGunicorn]]:
    """``http_gunicorn(*options, worker=...)``: a gunicorn process for one test."""
    started: list[HttpGunicorn] = []

    def start(*options: str, worker: str = "flask_sockets_gunicorn.worker") -> HttpGunicorn:
        process = HttpGunicorn(tmp_path / f"gunicorn-{len(started)}", *options, worker=worker)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(params=["gevent", "gunicorn"])
def http_target(
    request: pytest.FixtureRequest, serve: t.Callable[..., Server], http_gunicorn_module: HttpGunicorn
) -> HttpTarget:
    """The app on each server, in turn: our gevent server, the gunicorn worker."""
    if request.param == "gevent":
        return http_gevent_target(serve)
    # The process is shared by the module: each test sees only its own lines.
    start = len(http_gunicorn_module.output())

    def since_start() -> str:
        return http_gunicorn_module.output()[start:]

    return dataclasses.replace(http_gunicorn_module.target, errors=since_start, access=since_start)


# -- raw sockets -----------------------------------------------------------------


def http_connect(server: Server, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout)


def http_reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP reset."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def http_exchange(server: Server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, then read until the server closes (or ``timeout``)."""
    with http_connect(server, timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        return http_read_until_close(sock, timeout)


def http_read_until_close(sock: socket.socket, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:  # TimeoutError from Python 3.10
                raise AssertionError(f"the server kept the connection open; got {received!r}") from None
            if not chunk:
                break
            received += chunk
    return received


def http_status(response: bytes) -> int | None:
    """The status code of a raw response, ``None`` if there was none."""
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response.split(b" ", 2)[1])


def http_get(server: Server, path: str) -> str:
    """A plain GET; the body."""
    import urllib.request

    with urllib.request.urlopen(f"{server.http_url}{path}", timeout=TIMEOUT) as response:
        return str(response.read().decode())


def http_upgrade(path: str = "/echo", *extra: str, version: str = "HTTP/1.1") -> bytes:
    """A valid WebSocket upgrade request, with ``extra`` header lines."""
    lines = [
        f"GET {path} {version}",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_echo_works(server: Server) -> None:
    """A normal client still gets its message echoed."""
    from websockets.sync.client import connect

    with connect(f"{server.ws_url}/echo", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("still serving")
        assert ws.recv(timeout=TIMEOUT) == "still serving"


def http_assert_quiet(target: HttpTarget, stderr: str = "") -> None:
    """No traceback and no error-level line anywhere the server writes."""
    errors = target.errors() + stderr
    assert "Traceback" not in errors, errors
    if target.kind == "gevent":
        assert target.errors() == "", target.errors()
    else:
        assert "[ERROR]" not in errors, errors


def http_keepalive_request(sock: socket.socket) -> bytes:
    """Send ``GET /`` on a keep-alive connection and read the whole answer
    (the app's ``/`` ends its body with ``ok``)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while not data.endswith(b"ok"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data
