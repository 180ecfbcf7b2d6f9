"""Shared fixtures: real servers on 127.0.0.1, in a thread or a subprocess."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Upper bound for any wait on a server: start-up, a reply, a shutdown.
TIMEOUT = 15.0


@dataclasses.dataclass
class Server:
    """Where a test server listens."""

    host: str
    port: int
    #: What a thread server wrote to its error log (``serve`` fixture only).
    error_log: io.StringIO | None = dataclasses.field(default=None, compare=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = TIMEOUT, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class _ThreadServer:
    """A flask_sockets_gevent server running in its own thread and gevent hub."""

    def __init__(self, app: t.Any, **options: t.Any) -> None:
        self._app = app
        self._options = options
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import gevent

        from flask_sockets_gevent import make_server

        try:
            self.server = make_server(self._app, "127.0.0.1", 0, **self._options)
            self.server.start()
            self.hub = gevent.get_hub()
        except BaseException as e:  # pragma: no cover - reported by start()
            self._error = e
            self._started.set()
            raise
        self._started.set()
        self.server.serve_forever(stop_timeout=1)

    def start(self) -> Server:
        self._thread.start()
        if not self._started.wait(TIMEOUT) or self._error is not None:
            raise RuntimeError(f"test server failed to start: {self._error!r}")
        return Server("127.0.0.1", self.server.server_port, self._options.get("error_log"))

    def stop(self) -> None:
        self.hub.loop.run_callback_threadsafe(self.server.close)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "test server did not stop"


@pytest.fixture
def serve() -> t.Iterator[t.Callable[..., Server]]:
    """``serve(app, **make_server_options)`` runs ``app`` on our gevent server
    on a free loopback port for the rest of the test."""
    running: list[_ThreadServer] = []

    def start(app: t.Any, **options: t.Any) -> Server:
        options.setdefault("log", None)
        # gevent binds the error log to the sys.stderr of its import, which
        # pytest's capturing may have closed since: give each server its own.
        options.setdefault("error_log", io.StringIO())
        server = _ThreadServer(app, **options)
        running.append(server)
        return server.start()

    yield start
    for server in running:
        server.stop()
        errors = server._options["error_log"]
        if isinstance(errors, io.StringIO) and errors.getvalue():
            sys.stderr.write(f"\n--- error log of the test server:\n{errors.getvalue()}")


@pytest.fixture
def devserve() -> t.Iterator[t.Callable[..., Server]]:
    """``devserve(app)`` runs ``app`` on Werkzeug's threaded development server
    (as ``app.run()`` does) on a free loopback port for the rest of the test."""
    stops: list[t.Callable[[], None]] = []

    def start(app: t.Any) -> Server:
        server, stop = start_devserver(app)
        stops.append(stop)
        return server

    yield start
    for stop in stops:
        stop()


def start_devserver(app: t.Any) -> tuple[Server, t.Callable[[], None]]:
    """Run ``app`` on Werkzeug's threaded development server in a thread;
    the server and the function that stops it (the ``devserve`` fixture is
    this for one test)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)

    return Server("127.0.0.1", server.server_port), stop


@dataclasses.dataclass
class Process:
    """A server subprocess; ``output()`` has what it printed so far (after stop)."""

    popen: subprocess.Popen[str]
    server: Server
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(TIMEOUT)
        return self.popen.returncode


def start_process(
    argv: list[str],
    *,
    port: int,
    log_path: Path,
    cwd: Path | str = ROOT,
    env: dict[str, str] | None = None,
    wait: bool = True,
    started: list[Process] | None = None,
) -> Process:
    """Start a server process writing to ``log_path`` and wait until it
    listens on ``port`` (it goes in ``started`` first, to be stopped by the
    caller even if it never listens); :func:`end_process` stops it. The
    ``spawn`` fixture is this for one test."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("w") as log:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    process = Process(popen, Server("127.0.0.1", port), log_path)
    if started is not None:
        started.append(process)
    if wait:
        try:
            wait_for_port(port, proc=popen)
        except Exception:
            process.stop()
            raise RuntimeError(f"{argv} did not start:\n{process.output()}") from None
    return process


def end_process(process: Process) -> None:
    """Stop a process :func:`start_process` started, killing its group if it does not stop."""
    process.stop()
    if process.popen.poll() is None:  # pragma: no cover
        os.killpg(process.popen.pid, signal.SIGKILL)


@pytest.fixture
def spawn(tmp_path: Path, request: pytest.FixtureRequest) -> t.Iterator[t.Callable[..., Process]]:
    """``spawn(argv, port=..., cwd=..., env=...)`` starts a server process,
    waits until it listens on ``port`` and stops it after the test. What
    it printed is shown when the test fails."""
    started: list[Process] = []

    def start(
        argv: list[str],
        *,
        port: int,
        cwd: Path | str = ROOT,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Process:
        log_path = tmp_path / f"server-{len(started)}.log"
        return start_process(argv, port=port, log_path=log_path, cwd=cwd, env=env, wait=wait, started=started)

    yield start
    for process in started:
        end_process(process)
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for i, process in enumerate(started):
            sys.stderr.write(f"\n--- output of server {i}: {process.popen.args}\n{process.output()}")


#: The longest tests (from ~20 s to a few minutes each, most of them busy on
#: both CPUs or waiting on a fixed schedule), started first and in this order;
#: the others keep their order after them. Started last, one of them would be
#: the whole run's tail, its other worker idle (hatch.toml: --dist worksteal).
START_FIRST = (
    "tests/conformance/test_autobahn.py::test_autobahn[ours:12",
    "tests/browser/test_reliable.py",
    "tests/conformance/",
    "tests/test_packaging.py",
    "tests/hostile/test_http_fuzz.py",
    "tests/integration/test_redis_cluster.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(START_FIRST) if item.nodeid.startswith(prefix)), len(START_FIRST))

    items.sort(key=rank)  # stable


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> t.Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def port() -> int:
    """A free loopback port."""
    return free_port()


def python() -> str:
    return sys.executable


def wait_until(predicate: t.Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {predicate}")
        time.sleep(0.01)
