"""Graceful shutdown of the run helper: close 1012, queued frames delivered, handlers finish."""

from __future__ import annotations

import signal
import sys
import textwrap

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from flask_sockets.protocol import CloseCode
from tests.conftest import wait_until

APP = textwrap.dedent(
    """
    import sys, time
    from gevent import monkey; monkey.patch_all()
    import gevent
    from flask import Flask
    from flask_sockets import Sockets
    import flask_sockets_gevent

    port, marker = int(sys.argv[1]), sys.argv[2]
    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/work")
    def work(ws):
        ws.send("queued before stop")
        assert ws.receive() is None
        time.sleep(0.3)  # clean-up work after the socket closed
        with open(marker, "w") as f:
            f.write(f"finished after close {ws.close_code}")

    @sockets.route("/stuck")
    def stuck(ws):
        ws.send("stuck")
        while True:
            gevent.sleep(1)

    flask_sockets_gevent.run(app, port=port, shutdown_timeout=1.5)
    print("run() returned", flush=True)
    """
)


@pytest.mark.parametrize("path", ["/work", "/stuck"])
def test_sigterm_closes_sockets_1012_and_lets_handlers_finish(tmp_path, spawn, port, path):
    """SIGTERM: queued frames arrive, then close 1012; finishing handlers finish, stuck ones are stopped."""
    script, marker = tmp_path / "app.py", tmp_path / "marker"
    script.write_text(APP)
    process = spawn([sys.executable, str(script), str(port), str(marker)], port=port)
    with connect(f"{process.server.ws_url}{path}") as ws:
        first = ws.recv(timeout=5)
        process.popen.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=10)
    assert first in ("queued before stop", "stuck")
    assert (e.value.rcvd.code, e.value.rcvd.reason) == (CloseCode.SERVICE_RESTART, "Server restarting")
    assert process.popen.wait(15) == 0
    output = process.output()
    assert "run() returned" in output
    assert "Traceback" not in output
    if path == "/work":
        wait_until(marker.exists)
        assert marker.read_text() == "finished after close 1012"


def test_shutdown_with_no_sockets_is_immediate(tmp_path, spawn, port):
    """With no open socket the server stops without waiting for the grace period."""
    script, marker = tmp_path / "app.py", tmp_path / "marker"
    script.write_text(APP)
    process = spawn([sys.executable, str(script), str(port), str(marker)], port=port)
    process.popen.send_signal(signal.SIGINT)
    assert process.popen.wait(15) == 0
    assert "run() returned" in process.output()


def test_idle_keep_alive_connection_does_not_delay_shutdown(tmp_path, spawn, port):
    """A browser's idle keep-alive HTTP connection is closed at once on SIGTERM, not waited for."""
    import http.client
    import time

    script, marker = tmp_path / "app.py", tmp_path / "marker"
    script.write_text(APP.replace("shutdown_timeout=1.5", "shutdown_timeout=30"))
    process = spawn([sys.executable, str(script), str(port), str(marker)], port=port)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/nowhere")
    assert connection.getresponse().read()
    assert connection.sock is not None, "the connection is kept alive"
    started = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    assert process.popen.wait(15) == 0
    assert time.monotonic() - started < 10, "shutdown waited for the idle connection"
    connection.close()
