"""Starting the hostile-input app (``tests/hostile/app.py``) on a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import typing as t
import urllib.request
from pathlib import Path

from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.conftest import Server
from tests.conftest import free_port
from tests.conftest import wait_for_port
from tests.integration.gunicorn import gunicorn_argv

HERE = Path(__file__).resolve().parent
#: The servers every hostile test runs against.
KINDS = ("run", "gunicorn")
#: What a server prints when something a client did raised: none may appear.
TRACEBACK_SIGNS = ("Traceback", " failed with ", "Exception on ")


def launch(kind: str, log_path: Path, **config: object) -> Process:
    """Serve ``app.py`` with ``kind`` (``run``: ``flask_sockets_gevent.run``;
    ``gunicorn``: one worker of ours) and the Flask ``config``, writing its
    output to ``log_path``; returns once it listens."""
    port = free_port()
    if kind == "run":
        argv = [sys.executable, str(HERE / "app.py"), str(port)]
    else:
        argv = gunicorn_argv(port, "app:app", workers=1, chdir=HERE)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOSTILE_CONFIG": json.dumps(config), "GUNICORN_CMD_ARGS": ""}
    with log_path.open("w") as log:
        popen = subprocess.Popen(
            argv, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    process = Process(popen, Server("127.0.0.1", port), log_path)
    try:
        wait_for_port(port, proc=popen)
    except Exception:
        stop(process)
        raise
    return process


def stop(process: Process) -> None:
    """Stop the server (its whole process group, if it lingers)."""
    process.stop()
    if process.popen.poll() is None:  # pragma: no cover
        os.killpg(process.popen.pid, signal.SIGKILL)


def assert_no_traceback(process: Process) -> None:
    """Stop the server, then fail if it printed a traceback."""
    stop(process)
    output = process.output()
    assert not any(sign in output for sign in TRACEBACK_SIGNS), f"the server printed a traceback:\n{output}"


def get(process: Process, path: str) -> t.Any:
    with urllib.request.urlopen(process.server.http_url + path, timeout=TIMEOUT) as response:
        body = response.read().decode()
    return json.loads(body)


def rss(pid: int) -> int:
    """The resident set size of process ``pid``, in bytes (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")
