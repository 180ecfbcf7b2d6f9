"""Flask-Sockets apps served by real gunicorn processes with our worker."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets.protocol import CloseCode
from tests.conftest import TIMEOUT

from .conftest import APP_SOURCE
from .conftest import http_get
from .conftest import wait_for_match
from .conftest import ws_messages


def _info(base_url: str, path: str = "/info") -> dict[str, object]:
    (reply,) = ws_messages(base_url + path)
    assert isinstance(reply, str)
    return json.loads(reply)  # type: ignore[no-any-return]


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_worker_serves_http_and_websocket_routes(gunicorn):
    """`-k flask_sockets_gunicorn.worker` serves HTTP, WebSocket echo and URL-variable routes through our handler."""
    server = gunicorn().server

    assert http_get(server.http_url + "/") == (200, "hello from http")
    assert ws_messages(server.ws_url + "/echo", "ping", "pong", count=2) == ["ping", "pong"]
    assert ws_messages(server.ws_url + "/greet/bob/2") == ["hello bob hello bob"]
    # A socket-only URL answers plain HTTP with 426, a wrong converter with 404.
    assert http_get(server.http_url + "/echo")[0] == 426
    with pytest.raises(InvalidStatus) as excinfo:
        ws_messages(server.ws_url + "/greet/bob/notanint")
    assert excinfo.value.response.status_code == 404

    info = _info(server.ws_url, "/info?x=1")
    # Our socket class, and gunicorn's environ additions from PyWSGIHandler.get_environ.
    assert info["socket_class"] == "flask_sockets_gevent.websocket.GeventWebSocket"
    assert info["has_gunicorn_sock"] is True
    assert info["raw_uri"] == "/info?x=1"
    assert "gunicorn/" in str(info["server_software"])


@pytest.mark.parametrize(
    "worker",
    ["flask_sockets.worker", "egg:flask-sockets-gunicorn#websocket"],
    ids=["legacy-flask_sockets.worker", "entry-point"],
)
def test_other_worker_names_serve_the_app(gunicorn, worker):
    """The legacy `-k flask_sockets.worker` and the `egg:` entry point load the same working worker."""
    process = gunicorn(worker=worker)
    server = process.server

    assert http_get(server.http_url + "/") == (200, "hello from http")
    assert ws_messages(server.ws_url + "/echo", "legacy?") == ["legacy?"]
    assert ws_messages(server.ws_url + "/greet/ann/1") == ["hello ann"]
    assert _info(server.ws_url)["socket_class"] == "flask_sockets_gevent.websocket.GeventWebSocket"
    assert f"Using worker: {worker}" in process.output()


def test_one_worker_serves_concurrent_connections(gunicorn):
    """One gevent worker keeps many WebSocket connections open at once and answers each."""
    server = gunicorn().server
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(server.ws_url + "/echo", open_timeout=TIMEOUT)) for _ in range(20)]
        # Interleave: every connection is open while the others are answered.
        for i, ws in enumerate(sockets):
            ws.send(f"first {i}")
        for i, ws in reversed(list(enumerate(sockets))):
            ws.send(f"second {i}")
        for i, ws in enumerate(sockets):
            assert ws.recv(timeout=TIMEOUT) == f"first {i}"
            assert ws.recv(timeout=TIMEOUT) == f"second {i}"


def test_two_workers_both_serve_websockets(gunicorn):
    """With `-w 2`, concurrent WebSocket connections all work and both worker processes serve some."""
    process = gunicorn(workers=2)
    server = process.server
    pids: list[int] = []
    deadline = time.monotonic() + TIMEOUT
    with contextlib.ExitStack() as stack:
        # Keep every connection open so the kernel hands new ones to either worker.
        while len(set(pids)) < 2 and len(pids) < 300 and time.monotonic() < deadline:
            ws = stack.enter_context(connect(server.ws_url + "/info", open_timeout=TIMEOUT))
            pids.append(json.loads(ws.recv(timeout=TIMEOUT))["pid"])
            time.sleep(0.01)
        assert len(set(pids)) == 2, f"only one worker answered {len(pids)} connections"

        echoes = [stack.enter_context(connect(server.ws_url + "/echo", open_timeout=TIMEOUT)) for _ in range(10)]
        for i, ws in enumerate(echoes):
            ws.send(f"message {i}")
        assert [ws.recv(timeout=TIMEOUT) for ws in echoes] == [f"message {i}" for i in range(10)]

    # Both answers came from the workers this arbiter booted.
    booted = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", process.output())}
    assert set(pids) <= booted


def test_hup_reload_starts_new_workers_that_serve_websockets(gunicorn, app_dir: Path):
    """SIGHUP replaces the worker with one running the edited app, and new connections work."""
    process = gunicorn()
    server = process.server
    before = _info(server.ws_url)
    assert before["version"] == "one"

    (app_dir / "wsapp.py").write_text(APP_SOURCE.replace('VERSION = "one"', 'VERSION = "second"'))
    process.popen.send_signal(signal.SIGHUP)

    deadline = time.monotonic() + TIMEOUT
    after = before
    while after["pid"] == before["pid"] and time.monotonic() < deadline:
        time.sleep(0.1)
        after = _info(server.ws_url)
    assert after["pid"] != before["pid"], "no new worker answered after SIGHUP"
    assert after["version"] == "second"
    assert ws_messages(server.ws_url + "/echo", "after reload") == ["after reload"]
    assert http_get(server.http_url + "/") == (200, "hello from http")

    # The old worker shuts down; the arbiter itself keeps running.
    pid = before["pid"]
    assert isinstance(pid, int)
    deadline = time.monotonic() + TIMEOUT
    while not _pid_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pid_gone(pid), "the old worker is still running"
    assert process.popen.poll() is None
    assert "Traceback" not in process.output()


@pytest.mark.parametrize("preload", [False, True], ids=["worker-import", "preload"])
def test_app_import_error_stops_gunicorn_and_is_shown(gunicorn, app_dir: Path, preload):
    """An app module that fails to import makes gunicorn exit non-zero with the traceback in its output."""
    (app_dir / "brokenapp.py").write_text("import definitely_missing_module_xyz\n\napp = None\n")
    process = gunicorn(*(["--preload"] if preload else []), app="brokenapp:app", wait=False)

    returncode = process.popen.wait(TIMEOUT)
    output = process.output()
    assert returncode != 0, output
    assert "Traceback (most recent call last)" in output
    assert "ModuleNotFoundError: No module named 'definitely_missing_module_xyz'" in output
    assert "brokenapp.py" in output


def test_handler_exception_closes_1011_and_logs_traceback(gunicorn, tmp_path: Path):
    """A handler that raises closes the socket with 1011 and its traceback lands in gunicorn's error log."""
    error_log = tmp_path / "error.log"
    server = gunicorn("--error-logfile", str(error_log)).server
    before = _info(server.ws_url)

    with connect(server.ws_url + "/boom", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "about to fail"
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=TIMEOUT)
    assert excinfo.value.rcvd is not None
    assert excinfo.value.rcvd.code == CloseCode.INTERNAL_ERROR

    wait_for_match(error_log.read_text, r"^RuntimeError: handler exploded on purpose$")
    log = error_log.read_text()
    assert "Exception on /boom [GET]" in log
    assert "Traceback (most recent call last)" in log
    assert 'in boom\n    raise RuntimeError("handler exploded on purpose")' in log
    # The worker survives and keeps serving.
    assert _info(server.ws_url)["pid"] == before["pid"]


def test_abort_before_using_socket_gives_http_status(gunicorn):
    """A defer_accept=True handler that calls abort(403) before touching the socket makes the
    handshake fail with HTTP 403."""
    process = gunicorn("--access-logfile", "-")
    server = process.server

    with pytest.raises(InvalidStatus) as excinfo:
        ws_messages(server.ws_url + "/forbidden")
    response = excinfo.value.response
    assert response.status_code == 403
    assert b"Forbidden" in response.body
    assert response.headers.get("Upgrade") is None
    wait_for_match(process.output, r'"GET /forbidden HTTP/1\.1" 403 ')
    assert ws_messages(server.ws_url + "/echo", "still up") == ["still up"]


def test_access_log_line_for_websocket(gunicorn):
    """`--access-logfile -` gets a 101 line for a WebSocket request and no traceback."""
    process = gunicorn("--access-logfile", "-")
    server = process.server

    assert ws_messages(server.ws_url + "/echo?q=1", "logged") == ["logged"]
    assert http_get(server.http_url + "/") == (200, "hello from http")

    wait_for_match(process.output, r'^127\.0\.0\.1 - - \[.+\] "GET /echo\?q=1 HTTP/1\.1" 101 \d+ "-" "[^"]*websockets')
    wait_for_match(process.output, r'"GET / HTTP/1\.1" 200 ')
    output = process.output()
    assert "Traceback" not in output
    assert "Error handling request" not in output
    assert "[ERROR]" not in output


def test_access_log_names_request_headers_of_a_websocket(gunicorn):
    """``%({name}i)s`` in the access log format shows a socket's request headers,
    although the handler drops the parsed request head at the 101."""
    process = gunicorn("--access-logfile", "-", "--access-logformat", "%(r)s %(s)s x-test=%({x-test}i)s")
    server = process.server
    with connect(server.ws_url + "/echo", additional_headers={"X-Test": "seen"}, open_timeout=TIMEOUT) as ws:
        ws.send("logged")
        assert ws.recv(timeout=TIMEOUT) == "logged"
    wait_for_match(process.output, r'"?GET /echo HTTP/1\.1"? 101 x-test=seen$')


def test_long_lived_websocket_outlives_worker_timeout(gunicorn):
    """A WebSocket idle for longer than `--timeout` stays open: the worker is not killed as silent."""
    process = gunicorn("--timeout", "2", "--log-level", "debug")
    server = process.server
    wait_for_match(process.output, r"^\s*timeout: 2$")  # the later --timeout wins over the fixture's
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        ws.send("before")
        assert ws.recv(timeout=TIMEOUT) == "before"
        time.sleep(3.5)
        ws.send("after")
        assert ws.recv(timeout=TIMEOUT) == "after"
    assert "WORKER TIMEOUT" not in process.output()


def test_sigterm_with_open_websocket_shuts_down(gunicorn):
    """SIGTERM with a WebSocket open: the socket gets close 1012 and gunicorn exits as soon as
    the handler ends, not after the whole (here 20 s) graceful timeout."""
    process = gunicorn("--graceful-timeout", "20")
    server = process.server
    with connect(server.ws_url + "/echo", open_timeout=TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        started = time.monotonic()
        process.popen.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=TIMEOUT)
    assert (e.value.rcvd.code, e.value.rcvd.reason) == (CloseCode.SERVICE_RESTART, "Server restarting")
    returncode = process.popen.wait(TIMEOUT)
    assert time.monotonic() - started < 10, "gunicorn waited for the graceful timeout"
    assert returncode == 0, process.output()
