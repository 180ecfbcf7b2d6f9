"""Fixtures for the gunicorn tests: a small app module and real gunicorn processes."""

from __future__ import annotations

import contextlib
import re
import sys
import textwrap
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import TIMEOUT
from tests.conftest import Process

#: The app every gunicorn test serves, written to ``tmp_path / "wsapp.py"``.
APP_SOURCE = textwrap.dedent(
    """
    import json
    import os

    from flask import Flask, abort, request
    from flask_sockets import Sockets

    VERSION = "one"

    app = Flask(__name__)
    sockets = Sockets(app)


    @app.route("/")
    def index():
        return "hello from http"


    @sockets.route("/echo")
    def echo(ws):
        while not ws.closed:
            message = ws.receive()
            if message is None:
                break
            ws.send(message)


    @sockets.route("/greet/<name>/<int:times>")
    def greet(ws, name, times):
        ws.send(" ".join([f"hello {name}"] * times))


    @sockets.route("/info")
    def info(ws):
        environ = request.environ
        ws.send(json.dumps({
            "pid": os.getpid(),
            "version": VERSION,
            "socket_class": type(ws).__module__ + "." + type(ws).__qualname__,
            "has_gunicorn_sock": "gunicorn.sock" in environ,
            "raw_uri": environ.get("RAW_URI"),
            "server_software": environ.get("SERVER_SOFTWARE"),
        }))


    @sockets.route("/boom")
    def boom(ws):
        ws.send("about to fail")
        raise RuntimeError("handler exploded on purpose")


    @sockets.route("/forbidden", defer_accept=True)
    def forbidden(ws):
        abort(403)
    """
)


def _no_control_socket() -> list[str]:
    """gunicorn >= 24 opens a control socket at a fixed path under $HOME
    unless told not to; servers running side by side would share it."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding ``wsapp.py`` (see :data:`APP_SOURCE`)."""
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "wsapp.py").write_text(APP_SOURCE)
    return directory


@pytest.fixture
def gunicorn(spawn: t.Callable[..., Process], port: int, app_dir: Path) -> t.Callable[..., Process]:
    """``gunicorn(*options, worker=..., workers=1, app="wsapp:app", wait=True)``
    runs ``python -m gunicorn`` on ``port`` in ``app_dir`` and stops it after
    the test."""

    def start(
        *options: str,
        worker: str = "flask_sockets_gunicorn.worker",
        workers: int = 1,
        app: str = "wsapp:app",
        wait: bool = True,
    ) -> Process:
        argv = gunicorn_argv(*options, port=port, chdir=app_dir, worker=worker, workers=workers, app=app)
        return spawn(argv, port=port, cwd=app_dir, env=GUNICORN_ENV, wait=wait)

    return start


#: No stray GUNICORN_CMD_ARGS; no stale bytecode when a test rewrites the app.
GUNICORN_ENV = {"GUNICORN_CMD_ARGS": "", "PYTHONDONTWRITEBYTECODE": "1"}


def gunicorn_argv(
    *options: str,
    port: int,
    chdir: Path,
    worker: str = "flask_sockets_gunicorn.worker",
    workers: int = 1,
    app: str = "wsapp:app",
) -> list[str]:
    """The command line of ``python -m gunicorn`` serving ``app`` on ``port`` (run it with :data:`GUNICORN_ENV`)."""
    args = (
        *("-k", worker, "-w", str(workers), "-b", f"127.0.0.1:{port}", "--chdir", str(chdir)),
        # Short grace periods keep every shutdown (and the suite) fast.
        *("--graceful-timeout", "1", "--timeout", "10"),
        *_no_control_socket(),
        *options,
    )
    return [sys.executable, "-m", "gunicorn", *args, app]


def ws_messages(url: str, *send: str, count: int = 1) -> list[str | bytes]:
    """Connect to ``url``, send ``send``, and return the first ``count`` replies."""
    with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        for message in send:
            ws.send(message)
        return [ws.recv(timeout=TIMEOUT) for _ in range(count)]


def http_get(url: str) -> tuple[int, str]:
    """``(status, body)`` of a plain HTTP GET; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        with contextlib.closing(e):
            return e.code, e.read().decode()


def wait_for_match(read: t.Callable[[], str], pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
    """Wait until ``read()`` matches the regex ``pattern`` (multi-line)."""
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        match = re.search(pattern, text, re.MULTILINE)
        if match is not None:
            return match
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not found after {timeout}s in:\n{text}")
        time.sleep(0.05)
