"""Serving 0.2 apps as their users did.

Each module of ``tests/compat/apps`` is an app written exactly as for
Flask-Sockets 0.2 (``from flask_sockets import Sockets``, ``@sockets.route``,
``ws.receive()``/``ws.send()``, ``while not ws.closed``, gevent loops,
module-level state) and defines a module-level ``app``. A test serves one
with the ``served`` fixture, in a separate process on a free port, on one of
:data:`PATHS`:

``run``
    ``flask_sockets_gevent.run(app, ...)`` after ``monkey.patch_all()``;
``gunicorn``
    ``gunicorn -k flask_sockets.worker module:app`` (the 0.2 spelling of
    our worker);
``pywsgi``
    the 0.2 README's snippet, ``pywsgi.WSGIServer((host, port), app,
    handler_class=geventwebsocket.handler.WebSocketHandler)`` after
    ``monkey.patch_all()``: gevent-websocket's own handler and socket.

A test takes the ``path`` fixture to run once per path, and calls
``served("module_name", path)``; the result is a
:class:`tests.conftest.Process` (``.server.ws_url``, ``.output()`` for what
the server logged). Adding an app is adding a module to ``apps/``.
"""

from __future__ import annotations

import sys
import typing as t
from pathlib import Path

import pytest

from tests.conftest import Process
from tests.conftest import free_port

APPS = Path(__file__).resolve().parent / "apps"
RUNNER = Path(__file__).resolve().parent / "serve.py"
#: The ways 0.2 apps are served (see the module docstring).
PATHS = ("run", "gunicorn", "pywsgi")


def serving_argv(path: str, module: str, port: int) -> list[str]:
    """The command that serves ``apps/<module>.py`` on ``path`` at ``port``."""
    if path == "gunicorn":
        from tests.gunicorn.conftest import _no_control_socket

        return [
            sys.executable, "-m", "gunicorn",
            *("-k", "flask_sockets.worker", "-w", "1", "-b", f"127.0.0.1:{port}", "--chdir", str(APPS)),
            *("--graceful-timeout", "1", "--timeout", "30"),
            *_no_control_socket(),
            f"{module}:app",
        ]  # fmt: skip
    if path in PATHS:
        return [sys.executable, str(RUNNER), path, module, str(port)]
    raise ValueError(f"unknown serving path {path!r}; one of {PATHS}")


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """Each serving path of :data:`PATHS` in turn."""
    return t.cast(str, request.param)


@pytest.fixture
def served(spawn: t.Callable[..., Process]) -> t.Callable[[str, str], Process]:
    """``served(module, path)`` serves ``tests/compat/apps/<module>.py``'s
    ``app`` on ``path`` (one of :data:`PATHS`) in its own process on a free
    port, waits until it listens, and stops it after the test."""

    def start(module: str, path: str) -> Process:
        if not (APPS / f"{module}.py").is_file():
            raise ValueError(f"no app module {module!r} in {APPS}")
        port = free_port()
        env = {"GUNICORN_CMD_ARGS": "", "PYTHONDONTWRITEBYTECODE": "1"}
        return spawn(serving_argv(path, module, port), port=port, cwd=APPS, env=env)

    return start
