"""One client interface over every transport that serves ``tests.transports.app``.

The ``transport`` fixture is parametrized over the five ways an app is served:
``flask_sockets_gevent.run`` and two gunicorn workers in subprocesses,
Werkzeug's development server in a thread, and the test client in process.
Each server starts once per test session (per xdist worker), on first use,
whatever order the tests run in.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import typing as t
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.version import version as websockets_version

from flask_sockets.testing import SocketRejected
from flask_sockets.testing import SocketTestClient
from flask_sockets.testing import TestSocket
from tests.conftest import ROOT
from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.conftest import Server
from tests.conftest import end_process
from tests.conftest import free_port
from tests.conftest import start_devserver
from tests.conftest import start_process
from tests.gunicorn.conftest import GUNICORN_ENV
from tests.gunicorn.conftest import gunicorn_argv
from tests.transports.app import app

#: Every transport, as ``transport`` is parametrized.
TRANSPORTS = ["gevent-run", "gunicorn-gevent", "gunicorn-gthread", "devserver", "testclient"]

#: Where a transport legitimately differs, by behaviour: the transports
#: that do not have it, and why. A test of such a behaviour asks
#: :func:`lacks` and must not run on these; on every other transport it runs.
DIFFERENCES: dict[str, dict[str, str]] = {
    "silent-peer": {
        # Its test end always answers pings, as websockets' client protocol
        # does; the "devserver" row runs the same socket class and timer.
        "testclient": "the test end always answers pings (websockets' client protocol)",
    },
    "server-shutdown": {
        "testclient": "no server to shut down (each test ends its own connections)",
        # Werkzeug's development server has no shutdown hook for an app:
        # its sockets end with the process (Ctrl+C).
        "devserver": "Werkzeug's development server tells the app nothing when it stops",
    },
    "raw-frames": {
        # The test client has no network socket a raw client could reach:
        # its test end speaks through websockets' client protocol, which
        # never sends a frame header that lies about its length. Its
        # handler's end is the development server's socket class
        # (ThreadedWebSocket), so the "devserver" row covers that code.
        "testclient": "no network socket: the test end is websockets' client protocol",
    },
}


def lacks(transport: Transport, behaviour: str) -> str | None:
    """Why ``transport`` does not have ``behaviour`` (see :data:`DIFFERENCES`), or ``None``."""
    return DIFFERENCES.get(behaviour, {}).get(transport.name)


class Conn(t.Protocol):
    """An open client connection, the same on every transport."""

    #: The peer's close code and reason, once ``recv`` returned ``None`` or after ``close``.
    close_code: int | None
    close_reason: str | None
    #: The handshake response's ``Sec-WebSocket-Extensions``, if any.
    extensions: str | None

    def send(self, message: str | bytes) -> None: ...

    def recv(self) -> str | bytes | None:
        """The next message, or ``None`` once the server closed."""

    def close(self, code: int = 1000, reason: str = "") -> None: ...


class _NetworkConn:
    """A ``websockets`` sync client connection."""

    def __init__(self, ws: t.Any) -> None:
        self.ws = ws
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.extensions: str | None = ws.response.headers.get("Sec-WebSocket-Extensions")

    def send(self, message: str | bytes) -> None:
        self.ws.send(message)

    def recv(self) -> str | bytes | None:
        try:
            return t.cast("str | bytes", self.ws.recv(timeout=TIMEOUT))
        except ConnectionClosed as e:
            assert e.rcvd is not None, "the server ended the connection without a close frame"
            self.close_code, self.close_reason = e.rcvd.code, e.rcvd.reason
            return None

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close(code, reason)
        rcvd = self.ws.protocol.close_rcvd
        if rcvd is not None:
            self.close_code, self.close_reason = rcvd.code, rcvd.reason


class _TestClientConn:
    """The test client's :class:`~flask_sockets.testing.TestSocket`."""

    def __init__(self, ws: TestSocket) -> None:
        self.ws = ws
        self.extensions: str | None = ws.response_headers.get("Sec-WebSocket-Extensions")

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    def send(self, message: str | bytes) -> None:
        self.ws.send(message)

    def recv(self) -> str | bytes | None:
        return self.ws.receive()

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close(code, reason)


class Transport:
    """A way ``tests.transports.app`` is served."""

    def __init__(self, name: str, log: t.Callable[[], str], server: Server | None = None) -> None:
        self.name = name
        #: Where a network client connects (``None`` for the test client).
        self.server = server
        self._log = log

    def log(self) -> str:
        """What the server wrote to its log so far (the process output, or
        the app logger's records in process)."""
        return self._log()

    @contextlib.contextmanager
    def connect(self, path: str, *, compression: str | None = "deflate") -> t.Iterator[Conn]:
        """Open a socket at ``path``; close it (1000) at the end if still open."""
        assert self.server is not None
        with ws_connect(
            self.server.ws_url + path,
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
            compression=compression,
            **_UNBOUNDED_QUEUE,
        ) as ws:
            yield _NetworkConn(ws)

    def refusal_status(self, path: str) -> int:
        """The HTTP status the app answered a socket request for ``path`` with instead of a 101."""
        assert self.server is not None
        with pytest.raises(InvalidStatus) as excinfo, ws_connect(self.server.ws_url + path, open_timeout=TIMEOUT):
            pass
        return int(excinfo.value.response.status_code)


class TestClientTransport(Transport):
    """The test client: no server, the same interface."""

    __test__ = False  # not a pytest test class

    def __init__(self, log: t.Callable[[], str]) -> None:
        super().__init__("testclient", log)
        # The handler's exception stays on the server side, as on a real
        # server (closed 1011, logged through Flask).
        self.client = SocketTestClient(app, raise_server_exceptions=False, timeout=TIMEOUT)

    @contextlib.contextmanager
    def connect(self, path: str, *, compression: str | None = "deflate") -> t.Iterator[Conn]:
        with self.client.connect(path, compression=t.cast("t.Literal['deflate'] | None", compression)) as ws:
            yield _TestClientConn(ws)

    def refusal_status(self, path: str) -> int:
        with pytest.raises(SocketRejected) as excinfo:
            self.client.connect(path)
        return excinfo.value.status_code


#: The flood rows send without reading. websockets >= 14's sync client stops
#: reading the socket while 16 messages wait unread (its flow control), so a
#: send after the server's close would wait for its reader the whole
#: close_timeout; 13.1's reads without a bound, as this asks of newer ones.
_UNBOUNDED_QUEUE: dict[str, t.Any] = {"max_queue": None} if int(websockets_version.split(".")[0]) >= 14 else {}


class _Servers:
    """The transports started so far in this session, started on first use."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: dict[str, Transport] = {}
        self._processes: list[Process] = []
        self._stops: list[t.Callable[[], None]] = []
        self._app_log: io.StringIO | None = None

    def get(self, name: str) -> Transport:
        if name not in self._started:
            self._started[name] = self._start(name)
        return self._started[name]

    def _in_process_log(self) -> t.Callable[[], str]:
        """The app logger's records (with tracebacks) in this process."""
        if self._app_log is None:
            self._app_log = io.StringIO()
            handler = logging.StreamHandler(self._app_log)
            handler.setFormatter(logging.Formatter("%(levelname)s in %(module)s: %(message)s"))
            app.logger.addHandler(handler)
            self._stops.append(lambda: app.logger.removeHandler(handler))
        return self._app_log.getvalue

    def _start(self, name: str) -> Transport:
        if name == "testclient":
            return TestClientTransport(self._in_process_log())
        if name == "devserver":
            server, stop = start_devserver(app)
            self._stops.append(stop)
            return Transport(name, self._in_process_log(), server)
        process = self.start_process(name)
        return Transport(name, process.output, process.server)

    def start_process(self, name: str) -> Process:
        """Start a server process of transport ``name`` (one that a test
        may stop: the shared one is left running); stopped at the end."""
        port = free_port()
        if name == "gevent-run":
            argv = [sys.executable, "-m", "tests.transports.run_gevent", str(port)]
            env = None
        else:
            worker = {"gunicorn-gevent": "flask_sockets_gunicorn.worker", "gunicorn-gthread": "gthread"}[name]
            options = ("--threads", "4") if name == "gunicorn-gthread" else ()
            argv = gunicorn_argv(*options, port=port, chdir=ROOT, worker=worker, app="tests.transports.app:app")
            env = GUNICORN_ENV
        log_path = self._directory / f"{name}-{len(self._processes)}.log"
        return start_process(argv, port=port, log_path=log_path, env=env, started=self._processes)

    def stop(self) -> None:
        for process in self._processes:
            end_process(process)
        for stop in self._stops:
            stop()


@pytest.fixture(scope="session")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[_Servers]:
    servers = _Servers(tmp_path_factory.mktemp("transports"))
    yield servers
    servers.stop()


#: The transports in a server process are ``slow`` (the fast suites of
#: .ci/run skip them); the two in this process run on 3.11 and on the
#: lowest dependencies.
_PARAMS = [
    pytest.param(name, marks=pytest.mark.slow) if name.startswith(("gevent", "gunicorn")) else name
    for name in TRANSPORTS
]


@pytest.fixture(params=_PARAMS)
def transport(request: pytest.FixtureRequest, _servers: _Servers) -> t.Iterator[Transport]:
    """Each transport in turn, serving ``tests.transports.app``. A failing
    test shows what a server process printed."""
    served = _servers.get(request.param)
    yield served
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and served.server is not None:
        sys.stderr.write(f"\n--- log of {served.name}:\n{served.log()}")


@pytest.fixture
def own_server(transport: Transport, _servers: _Servers) -> t.Callable[[], Process]:
    """``own_server()`` starts another server process of the current
    transport, for a test that stops it (a server-process transport only)."""
    return lambda: _servers.start_process(transport.name)
