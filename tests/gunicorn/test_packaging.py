"""The gunicorn worker's classes, names and import behaviour."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT
from tests.conftest import TIMEOUT


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_worker_class_and_handler_mro():
    """The worker uses GunicornWebSocketHandler, which is both our handler and gunicorn's PyWSGIHandler."""
    from gunicorn.workers.ggevent import GeventPyWSGIWorker
    from gunicorn.workers.ggevent import PyWSGIHandler

    import flask_sockets
    import flask_sockets_gevent
    import flask_sockets_gunicorn
    from flask_sockets_gunicorn import workers

    worker = flask_sockets_gunicorn.worker
    assert worker is workers.GeventWebSocketWorker
    assert issubclass(worker, GeventPyWSGIWorker)
    handler = worker.wsgi_handler
    assert handler is flask_sockets_gunicorn.GunicornWebSocketHandler
    assert issubclass(handler, flask_sockets_gevent.WebSocketHandler)
    assert issubclass(handler, PyWSGIHandler)
    # Our handshake and access log win over gunicorn's; gunicorn's environ additions are kept.
    mro = handler.__mro__
    assert mro.index(flask_sockets_gevent.WebSocketHandler) < mro.index(PyWSGIHandler)
    assert handler.run_application is flask_sockets_gevent.WebSocketHandler.run_application
    # The gunicorn handler only fills in what gunicorn's access log reads, then calls ours.
    assert handler.log_request is workers.GunicornWebSocketHandler.log_request
    assert mro.index(workers.GunicornWebSocketHandler) < mro.index(flask_sockets_gevent.WebSocketHandler)
    # Ours wraps the request body, after gunicorn's additions (next in the MRO).
    assert handler.get_environ is flask_sockets_gevent.WebSocketHandler.get_environ
    assert "get_environ" in vars(PyWSGIHandler)
    assert flask_sockets.worker is flask_sockets_gunicorn.worker


def test_entry_point_and_install_extra_exist():
    """The `gunicorn.workers` entry points (websocket, gthread) load the workers; the [gunicorn] extra exists."""
    import flask_sockets_gunicorn

    distribution = importlib.metadata.distribution("flask-sockets-gunicorn")
    entry_points = {ep.name: ep for ep in distribution.entry_points if ep.group == "gunicorn.workers"}
    assert sorted(entry_points) == ["gthread", "websocket"]
    assert entry_points["websocket"].load() is flask_sockets_gunicorn.worker
    assert entry_points["gthread"].load() is flask_sockets_gunicorn.ThreadWorker
    # The ImportError hint tells users to install this extra.
    assert "gunicorn" in (importlib.metadata.metadata("Flask-Sockets").get_all("Provides-Extra") or [])


SERVER_MODULES = ["flask_sockets_gevent", "flask_sockets_gunicorn", "gevent", "geventwebsocket", "gunicorn"]


def test_core_import_loads_no_server():
    """`import flask_sockets` imports neither gevent nor gunicorn; asking for `worker` does."""
    result = _run_python(
        f"""
        import sys
        import flask_sockets
        print([m for m in {SERVER_MODULES!r} if m in sys.modules])
        flask_sockets.worker
        print([m for m in {SERVER_MODULES!r} if m in sys.modules])
        """
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.splitlines()
    assert before == "[]"
    assert after == str(SERVER_MODULES)


def test_thread_worker_imports_no_gevent():
    """`-k flask_sockets_gunicorn.ThreadWorker` (and `egg:...#gthread`) loads gunicorn's gthread worker, not gevent."""
    result = _run_python(
        """
        import sys
        from gunicorn.util import load_class
        from gunicorn.workers.gthread import ThreadWorker
        worker = load_class("flask_sockets_gunicorn.ThreadWorker")
        assert issubclass(worker, ThreadWorker), worker.__mro__
        assert load_class("egg:flask-sockets-gunicorn#gthread") is worker
        print(sorted(m for m in ("gevent", "geventwebsocket", "flask_sockets_gevent") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("missing", ["gunicorn", "flask_sockets_gunicorn"])
def test_missing_gunicorn_gives_install_hint(missing):
    """Without gunicorn (or our worker package), `from flask_sockets import worker` names the pip install command."""
    result = _run_python(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # as if it were not installed
        try:
            from flask_sockets import worker
        except ImportError as e:
            print(type(e).__name__)
            print(e)
            print(type(e.__cause__).__name__)
            print(e.__cause__)
        else:
            print("no error")
        import flask_sockets
        try:
            flask_sockets.no_such_attribute
        except AttributeError:
            print("AttributeError for other names")
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ImportError", result.stdout
    assert "pip install 'Flask-Sockets[gunicorn]'" in lines[1]
    assert lines[2] == "ModuleNotFoundError"
    # The underlying reason is shown too.
    assert missing in lines[3]
    assert lines[3] in lines[1]
    assert lines[4] == "AttributeError for other names"
