"""Socket routes on Werkzeug's development server (app.run, flask run), over wsproto."""

from __future__ import annotations

import os
import re
import socket
import sys
import time

import pytest
from flask import Flask
from flask import abort
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import InvalidHandshake
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets import Sockets
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from tests.conftest import EXAMPLES
from tests.conftest import wait_until


def dev_app(**config) -> tuple[Flask, list]:
    app = Flask(__name__)
    app.config.update(config)
    sockets = Sockets(app)
    seen: list = []

    @sockets.route("/echo")
    def echo(ws):
        while not ws.closed:
            message = ws.receive()
            ws.send(message)

    @sockets.route("/record")
    def record(ws):
        seen.append((ws.receive(), ws.close_code, ws.close_reason))

    @sockets.route("/forbidden", defer_accept=True)
    def forbidden(ws):
        abort(403)

    @sockets.route("/forbidden-after-accept")
    def forbidden_after_accept(ws):
        abort(403)

    @sockets.route("/wait")
    def wait(ws):
        try:
            ws.receive(timeout=0.2)
        except TimeoutError:
            ws.send("timed out")
        ws.send(ws.receive(timeout=5))

    @sockets.route("/close-unanswered")
    def close_unanswered(ws):
        ws.close(4002, "no answer expected")
        seen.append((ws.close_code, ws.close_reason))

    @sockets.route("/proto", subprotocols=["v2", "v1"])
    def proto(ws):
        ws.send(str(ws.subprotocol))

    return app, seen


def test_refusal_before_the_handshake_is_an_http_status(devserve):
    """With defer_accept=True, abort(403) before using the socket reaches the client as HTTP 403;
    by default the handshake is answered as the handler starts, and abort(403) closes with 1008."""
    app, _ = dev_app()
    server = devserve(app)
    with pytest.raises(InvalidStatus) as e:
        connect(f"{server.ws_url}/forbidden", open_timeout=5)
    assert e.value.response.status_code == 403
    with connect(f"{server.ws_url}/forbidden-after-accept", open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (CloseCode.POLICY_VIOLATION, "403 Forbidden")


def test_bad_handshake_gets_426(devserve):
    """An unsupported Sec-WebSocket-Version is refused with 426, as on the gevent server."""
    app, _ = dev_app()
    server = devserve(app)
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        response = b""
        while chunk := s.recv(4096):
            response += chunk
    assert response.startswith(b"HTTP/1.1 426")
    assert b"Sec-WebSocket-Version: 13" in response


def test_fragment_flood_closes_1009(devserve):
    """Empty fragments count too: one message may have at most one fragment
    per 64 bytes of the limit (here 16, the floor)."""
    from tests.gevent.rawclient import RawClient

    app, _ = dev_app(SOCKETS_MAX_MESSAGE_SIZE=100)
    server = devserve(app)
    client = RawClient(server.host, server.port, "/echo")
    try:
        client.send_frame(Opcode.BINARY, b"", fin=False)
        for _ in range(15):
            client.send_frame(Opcode.CONTINUATION, b"", fin=False)
        client.send_frame(Opcode.CONTINUATION, b"", fin=True)  # the 17th
        assert client.read_close() == (CloseCode.MESSAGE_TOO_BIG, "Message in over 16 fragments")
    finally:
        client.close()


def test_receive_timeout_and_subprotocol(devserve):
    """receive(timeout=...) raises TimeoutError and the socket stays usable; subprotocols negotiate."""
    app, _ = dev_app()
    server = devserve(app)
    with connect(f"{server.ws_url}/wait") as ws:
        assert ws.recv(timeout=5) == "timed out"
        ws.send("later")
        assert ws.recv(timeout=5) == "later"
    with connect(f"{server.ws_url}/proto", subprotocols=["v1", "v2"]) as ws:
        assert ws.subprotocol == "v2"
        assert ws.recv(timeout=5) == "v2"


def test_flask_run_serves_the_echo_example(spawn, port):
    """`flask --app examples/echo.py run --debug` serves the page and the socket, with the reloader."""
    process = spawn(
        [sys.executable, "-m", "flask", "--app", str(EXAMPLES / "echo.py"), "run", "--debug", "--port", str(port)],
        port=port,
    )
    with connect(f"{process.server.ws_url}/echo") as ws:
        ws.send("from flask run")
        assert ws.recv(timeout=5) == "from flask run"

    def output() -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", process.output())  # without terminal colours

    wait_until(lambda: '"GET /echo HTTP/1.1" 101' in output())
    output = output()
    assert "Restarting with" in output, "the reloader is on"
    assert "Debugger is active" in output
    assert "Traceback" not in output


RELOAD_APP = """
import sys
from gevent import monkey; monkey.patch_all()
from flask import Flask
from flask_sockets import Sockets
import flask_sockets_gevent

app = Flask(__name__)
sockets = Sockets(app)

@sockets.route("/version")
def version(ws):
    ws.send(VERSION)

VERSION = "one"
if __name__ == "__main__":
    flask_sockets_gevent.run(app, port=int(sys.argv[1]), reload=True)
"""


def test_run_helper_reloads_on_change(tmp_path, spawn, port):
    """flask_sockets_gevent.run(app, reload=True) restarts the gevent server when the code changes."""
    script = tmp_path / "app.py"
    script.write_text(RELOAD_APP)
    process = spawn([sys.executable, str(script), str(port)], port=port)

    def serves(version: str) -> bool:
        # The reloader may restart the server at any time, even right after
        # it first listens: a connection it drops is tried again.
        time.sleep(0.2)
        try:
            with connect(f"{process.server.ws_url}/version", open_timeout=1) as ws:
                return ws.recv(timeout=1) == version
        # The old server may accept and then close while it restarts: an
        # EOFError (websockets 13) or InvalidMessage (14+) during the handshake.
        except (OSError, EOFError, InvalidHandshake, ConnectionClosed, TimeoutError):
            return False

    wait_until(lambda: serves("one"))
    time.sleep(1.1)  # the stat reloader compares modification times
    script.write_text(RELOAD_APP.replace('VERSION = "one"', 'VERSION = "two"'))
    os.utime(script)
    wait_until(lambda: serves("two"))
    assert "Serving with the reloader" in process.output()


DEBUG_APP = """
import sys
from gevent import monkey; monkey.patch_all()
from flask import Flask
from flask_sockets import Sockets
import flask_sockets_gevent

app = Flask(__name__)
sockets = Sockets(app)

@app.route("/broken")
def broken():
    raise RuntimeError("look at me in the debugger")

@sockets.route("/echo")
def echo(ws):
    ws.send(ws.receive())

if __name__ == "__main__":
    flask_sockets_gevent.run(app, port=int(sys.argv[1]), debug=True)
"""


def test_run_helper_debug_mode(tmp_path, spawn, port):
    """run(app, debug=True): Werkzeug's debugger page for a failing HTTP route; sockets still work."""
    script = tmp_path / "app.py"
    script.write_text(DEBUG_APP)
    process = spawn([sys.executable, str(script), str(port)], port=port)
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{process.server.http_url}/broken", timeout=5)
    page = e.value.read().decode()
    assert e.value.code == 500
    assert "Werkzeug Debugger" in page
    assert "look at me in the debugger" in page
    with connect(f"{process.server.ws_url}/echo") as ws:
        ws.send("debug")
        assert ws.recv(timeout=5) == "debug"


def test_no_timer_thread_outlives_the_sockets(devserve):
    """The one timer thread (keepalive, close deadlines) runs while sockets
    are open, and is gone once the last one closed; the next socket starts
    another."""
    import threading

    def timers() -> list:
        return [th for th in threading.enumerate() if th.name == "flask-sockets timer"]

    app, _ = dev_app(SOCKETS_PING_INTERVAL=5)
    server = devserve(app)
    for _ in range(2):
        with connect(f"{server.ws_url}/echo", open_timeout=5) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
            assert len(timers()) == 1
        wait_until(lambda: not timers())


def test_a_failed_connection_reports_the_server_s_code(devserve):
    """After the server failed the connection (invalid UTF-8: 1007), the
    handler's receive() returns None and close_code/close_reason say why,
    as on gevent."""
    from tests.gevent.rawclient import RawClient

    app, seen = dev_app()
    server = devserve(app)
    client = RawClient(server.host, server.port, "/record")
    try:
        client.send_frame(Opcode.TEXT, b"\xff")
        assert client.read_close() == (CloseCode.INVALID_DATA, "Invalid UTF-8 in text")
    finally:
        client.close()
    wait_until(lambda: seen)
    assert seen == [(None, CloseCode.INVALID_DATA, "Invalid UTF-8 in text")]


def test_a_close_the_client_does_not_answer_ends_with_1006(devserve):
    """close() waits SOCKETS_CLOSE_TIMEOUT for the client's close frame; a
    client that never sends one leaves close_code 1006 (RFC 6455, 7.1.5)."""
    from tests.gevent.rawclient import RawClient

    app, seen = dev_app(SOCKETS_CLOSE_TIMEOUT=0.3)
    server = devserve(app)
    client = RawClient(server.host, server.port, "/close-unanswered")
    try:
        assert client.read_close() == (4002, "no answer expected")
        wait_until(lambda: seen)  # (the client stays connected and silent meanwhile)
    finally:
        client.close()
    assert seen == [(CloseCode.ABNORMAL_CLOSURE, "")]
