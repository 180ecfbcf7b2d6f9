"""flask_sockets_gevent.run in a real process: address log, access log, clean stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from websockets.sync.client import connect

from tests.conftest import TIMEOUT
from tests.conftest import wait_until

APP = textwrap.dedent(
    """
    import sys
    from gevent import monkey; monkey.patch_all()
    from flask import Flask
    from flask_sockets import Sockets
    import flask_sockets_gevent

    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/echo")
    def echo_socket(ws):
        while not ws.closed:
            message = ws.receive()
            ws.send(message)

    flask_sockets_gevent.run(app, port=int(sys.argv[1]))
    print("run() returned")
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_logs_and_stops_on_signal(tmp_path, spawn, port, sig):
    """run() logs its ws:// address, serves, writes access lines, and exits 0 on SIGTERM/SIGINT."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    process = spawn([sys.executable, str(script), str(port)], port=port)
    with connect(f"{process.server.ws_url}/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    wait_until(lambda: '"GET /echo HTTP/1.1" 101' in process.output())
    assert process.stop(sig) == 0
    output = process.output()
    assert f"Serving on http://127.0.0.1:{port} (WebSockets: ws://127.0.0.1:{port})" in output
    assert f"Received {signal.Signals(sig).name}, shutting down." in output
    assert "run() returned" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("patched", [False, True], ids=["not-patched", "patched"])
def test_run_warns_when_the_process_is_not_monkey_patched(tmp_path, spawn, port, patched):
    """Without monkey.patch_all(), run() warns once at start, with the two
    lines that fix it, and serves all the same; with it, no warning."""
    script = tmp_path / "app.py"
    source = APP if patched else APP.replace("from gevent import monkey; monkey.patch_all()\n", "")
    assert ("patch_all" in source) is patched
    script.write_text(source)
    process = spawn([sys.executable, str(script), str(port)], port=port)
    with connect(f"{process.server.ws_url}/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    assert process.stop() == 0
    output = process.output()
    assert "Traceback" not in output
    if patched:
        assert "NotMonkeyPatchedWarning" not in output
    else:
        assert output.count("NotMonkeyPatchedWarning") == 1, output
        # Shown at the caller's line, with the fix.
        assert f"{script}:" in output and "flask_sockets_gevent.run(app" in output, output
        assert "    from gevent import monkey\n    monkey.patch_all()\n" in output, output


def test_run_on_a_busy_port_says_so_in_one_line(tmp_path, port):
    """run() on a port another server listens on exits with status 1 and one
    line naming the address and how to pick another port; no traceback."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(
            [sys.executable, str(script), str(port)], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"Cannot listen on 127.0.0.1:{port}: Address already in use."
        f" Stop the program using port {port}, or pick another one: run(app, port=...)."
    ]
    assert "run() returned" not in result.stdout
