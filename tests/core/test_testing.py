"""flask_sockets.testing: socket routes tested in-process, without a server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import typing as t

import pytest
from flask import Flask
from flask import abort
from flask import request
from flask import session
from flask import url_for
from websockets.exceptions import ConnectionClosed as ClientConnectionClosed
from websockets.sync.client import connect as client_connect

from flask_sockets import ConnectionClosed
from flask_sockets import Sockets
from flask_sockets import WebSocket
from flask_sockets.options import SocketOptions
from flask_sockets.protocol import CloseCode
from flask_sockets.testing import SocketRejected
from flask_sockets.testing import SocketTestClient
from tests.conftest import ROOT
from tests.conftest import TIMEOUT

#: The name of the threads SocketTestClient runs requests in.
HANDLER_THREAD = "flask-sockets test handler"


@pytest.fixture(autouse=True)
def no_thread_left_running(request: pytest.FixtureRequest) -> t.Iterator[None]:
    """Every thread a test started has ended when the test ends: the
    sockets' readers and keepalive timers at once (they are joined), the
    handlers' threads once the handler returned (a test that stops a
    hanging handler releases it). (The development server keeps its app's
    timer thread: tests that compare with it are not checked.)"""
    before = set(threading.enumerate())
    yield
    if "devserve" in request.fixturenames:
        return
    started = [thread for thread in threading.enumerate() if thread not in before]
    assert [thread.name for thread in started if not thread.name.startswith(HANDLER_THREAD)] == []
    deadline = time.monotonic() + 2
    while any(thread.is_alive() for thread in started):
        assert time.monotonic() < deadline, [thread.name for thread in started if thread.is_alive()]
        time.sleep(0.01)


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.testing = True
    app.secret_key = "test"
    return app


@pytest.fixture
def sockets(app: Flask) -> Sockets:
    return Sockets(app)


@pytest.fixture
def client(app: Flask, sockets: Sockets) -> SocketTestClient:
    return SocketTestClient(app)


def echo(ws):
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send(message)


def test_echo_text_and_bytes(sockets, client):
    """Text comes back as str and binary as bytes; the handler gets str and bytes."""
    seen = []

    @sockets.route("/echo")
    def echo_socket(ws):
        while (message := ws.receive()) is not None:
            seen.append(message)
            ws.send(message)

    with client.connect("/echo") as ws:
        ws.send("héllo")
        assert ws.receive() == "héllo"
        ws.send(b"\x00\xff")
        assert ws.receive() == b"\x00\xff"
    assert seen == ["héllo", b"\x00\xff"]
    assert [type(m) for m in seen] == [str, bytes]
    assert ws.closed and ws.close_code == CloseCode.NORMAL_CLOSURE


def test_url_variables_and_query_string(sockets, client):
    """URL variables reach the handler; the query string reaches request.args."""

    @sockets.route("/rooms/<int:room>")
    def room(ws, room):
        ws.send(f"{room + 1}:{request.args['who']}")

    with client.connect("/rooms/41", query_string={"who": "ann"}) as ws:
        assert ws.receive() == "42:ann"
        assert ws.receive() is None
        assert ws.close_code == CloseCode.NORMAL_CLOSURE


def test_before_request_refusal_is_an_http_response(app, sockets, client):
    """A before_request refusal is SocketRejected with its status and body; the handler never runs."""
    ran = []

    @app.before_request
    def check_token():
        if request.args.get("token") != "s3cret":
            return "go away", 401

    @sockets.route("/s")
    def s(ws):
        ran.append(True)
        ws.send("welcome")

    with pytest.raises(SocketRejected) as e:
        client.connect("/s")
    assert e.value.status_code == 401
    assert e.value.response.get_data() == b"go away"
    assert "401" in str(e.value) and "go away" in str(e.value)
    assert ran == []
    with client.connect("/s?token=s3cret") as ws:
        assert ws.receive() == "welcome"


def test_abort_before_the_handshake_is_403(sockets, client):
    """With defer_accept=True, abort(403) before the handler uses the socket is an HTTP 403."""

    @sockets.route("/private", defer_accept=True)
    def private(ws):
        abort(403)

    with pytest.raises(SocketRejected) as e:
        client.connect("/private")
    assert e.value.status_code == 403


def test_handler_starts_with_the_socket_accepted(sockets, client):
    """By default the handshake is answered as the handler starts, as on the servers:
    connect() returns before the handler first uses the socket, and abort(403) then closes with 1008."""
    release = threading.Event()
    accepted = []

    @sockets.route("/private")
    def private(ws):
        accepted.append(ws.accepted)
        release.wait(5)
        abort(403)

    with client.connect("/private") as ws:
        release.set()
        assert ws.receive() is None
    assert accepted == [True]
    assert (ws.close_code, ws.close_reason) == (CloseCode.POLICY_VIOLATION, "403 Forbidden")


def test_abort_after_the_handshake_closes_1008(sockets, client):
    """A 4xx abort once the socket is open closes it with 1008 and is not re-raised."""

    @sockets.route("/s")
    def s(ws):
        ws.send("hello")
        abort(403)

    with client.connect("/s") as ws:
        assert ws.receive() == "hello"
        assert ws.receive() is None
    assert (ws.close_code, ws.close_reason) == (CloseCode.POLICY_VIOLATION, "403 Forbidden")


def test_unknown_url_is_404(sockets, client):
    """A socket to a URL with no route is an HTTP 404."""
    with pytest.raises(SocketRejected) as e:
        client.connect("/nowhere")
    assert e.value.status_code == 404


def test_http_only_route_is_400(app, sockets, client):
    """A socket to a URL that only has an HTTP view is Werkzeug's 400; the view is not called."""
    calls = []

    @app.route("/page")
    def page():
        calls.append(True)
        return "page"

    with pytest.raises(SocketRejected) as e:
        client.connect("/page")
    assert e.value.status_code == 400
    assert calls == []
    assert client.http.get("/page").status_code == 200


def test_http_login_session_reaches_the_socket(app, sockets, client):
    """Logging in with client.http sets the session cookie the socket handler then sees."""

    @app.route("/login/<name>")
    def login(name):
        session["user"] = name
        return "ok"

    @sockets.route("/whoami", defer_accept=True)
    def whoami(ws):
        if "user" not in session:
            abort(401)
        ws.send(session["user"])

    with pytest.raises(SocketRejected) as e:
        client.connect("/whoami")
    assert e.value.status_code == 401
    assert client.http.get("/login/ann").data == b"ok"
    with client.connect("/whoami") as ws:
        assert ws.receive() == "ann"


def test_shared_flask_client(app, sockets):
    """A given Flask test client is .http and its cookies go with the socket."""

    @sockets.route("/cookie")
    def cookie(ws):
        ws.send(request.cookies.get("theme", "none"))

    http = app.test_client()
    http.set_cookie("theme", "dark")
    client = SocketTestClient(app, http)
    assert client.http is http
    with client.connect("/cookie") as ws:
        assert ws.receive() == "dark"
    with pytest.raises(ValueError):
        SocketTestClient(Flask("other"), http)


def test_session_changes_after_accept_do_not_reach_the_client(app, sockets, client):
    """Cookies set once the socket is open are dropped (a real client never sees them);
    Set-Cookie headers given to accept() are kept."""

    @app.route("/who")
    def who():
        return session.get("user", "nobody")

    @sockets.route("/rename", defer_accept=True)
    def rename(ws):
        ws.accept(headers=[("Set-Cookie", "flavour=mint; Path=/")])
        session["user"] = "mallory"
        ws.send("renamed")

    with client.connect("/rename") as ws:
        assert ws.receive() == "renamed"
        assert ws.response_headers["Set-Cookie"] == "flavour=mint; Path=/"
    assert client.http.get("/who").data == b"nobody"
    assert client.http.get_cookie("flavour").value == "mint"


def test_handler_exception_is_raised_in_the_test(sockets, client):
    """With app.testing, a handler exception is raised at the test's next receive(), once."""

    @sockets.route("/boom")
    def boom(ws):
        ws.send("about to fail")
        raise RuntimeError("kaboom")

    with client.connect("/boom") as ws:
        assert ws.receive() == "about to fail"
        with pytest.raises(RuntimeError, match="kaboom"):
            ws.receive()
        assert ws.close_code == CloseCode.INTERNAL_ERROR
        assert ws.receive() is None


def test_handler_exception_is_raised_at_exit(sockets, client):
    """A handler exception the test never receives is raised when the with block ends."""

    @sockets.route("/boom")
    def boom(ws):
        ws.receive()
        raise KeyError("late")

    with pytest.raises(KeyError, match="late"):
        with client.connect("/boom") as ws:
            ws.send("go")


def test_handler_exception_not_raised_closes_1011(app, sockets):
    """With raise_server_exceptions=False the exception stays on the server; the socket closes 1011."""

    @sockets.route("/boom")
    def boom(ws):
        ws.send("about to fail")
        raise RuntimeError("kaboom")

    client = SocketTestClient(app, raise_server_exceptions=False)
    with client.connect("/boom") as ws:
        assert ws.receive() == "about to fail"
        assert ws.receive() is None
    assert (ws.close_code, ws.close_reason) == (CloseCode.INTERNAL_ERROR, "Internal Server Error")


def test_exception_before_the_handshake(sockets, client):
    """An exception before the handshake (defer_accept=True) is raised by connect(), or is a 500 when not raised."""

    @sockets.route("/s", defer_accept=True)
    def s(ws):
        raise LookupError("missing")

    with pytest.raises(LookupError, match="missing"):
        client.connect("/s")
    with pytest.raises(SocketRejected) as e:
        client.connect("/s", raise_server_exceptions=False)
    assert e.value.status_code == 500


def test_handler_close_code_and_reason(sockets, client):
    """close(4000, 'bye') in the handler: the test's receive() returns None with that code and reason."""

    after_close = []

    @sockets.route("/bye")
    def bye(ws):
        ws.send("last")
        ws.close(4000, "bye")
        after_close.append((ws.closed, ws.close_code))
        try:
            ws.send("more")
        except ConnectionClosed as e:
            after_close.append(e)

    with client.connect("/bye") as ws:
        assert ws.receive() == "last"
        assert ws.receive() is None
        assert (ws.close_code, ws.close_reason) == (4000, "bye")
        assert ws.closed
        with pytest.raises(ConnectionClosed):
            ws.send("too late")
    assert after_close[0] == (True, 4000)  # the test client echoed the close
    assert isinstance(after_close[1], ConnectionClosed)


def test_client_close_code_is_seen_by_the_handler(sockets, client):
    """close(4001, 'x') in the test: the handler's receive() returns None with that code and reason."""
    seen = []

    @sockets.route("/s")
    def s(ws):
        message = ws.receive()
        seen.append((message, ws.closed, ws.close_code, ws.close_reason))
        try:
            ws.receive()
        except ConnectionClosed:
            seen.append("ConnectionClosed")

    ws = client.connect("/s")
    ws.close(4001, "x")
    assert seen == [(None, True, 4001, "x"), "ConnectionClosed"]
    assert ws.close_code == 4001  # the handler's echo
    with pytest.raises(ConnectionClosed):
        ws.receive()
    ws = client.connect("/s")
    with pytest.raises(ValueError):
        ws.close(CloseCode.ABNORMAL_CLOSURE)  # reserved: no client may send it
    ws.close()


def test_messages_sent_before_close_all_reach_the_handler(sockets, client):
    """Messages the test sent before closing are all received, even if the handler replies to each."""
    stored = []

    @sockets.route("/log")
    def log(ws):
        while (message := ws.receive()) is not None:
            stored.append(message)
            ws.send("ok")

    with client.connect("/log") as ws:
        for i in range(3):
            ws.send(str(i))
    assert stored == ["0", "1", "2"]


def test_send_only_handler_ends_when_the_test_closes(app, sockets):
    """A handler that only sends never reads the test's close frame: after
    close_timeout the test hangs up, as a real client does, and the handler
    gets ConnectionClosed (1006)."""
    client = SocketTestClient(app, close_timeout=0.1)
    ended = []

    @sockets.route("/ticks")
    def ticks(ws):
        try:
            while True:
                ws.send("tick")
                time.sleep(0.001)
        except ConnectionClosed:
            ended.append(ws.close_code)
            raise

    with client.connect("/ticks") as ws:
        assert ws.receive() == "tick"
    assert ended == [CloseCode.ABNORMAL_CLOSURE]


def test_receive_timeout(sockets, client):
    """receive(timeout=...) on a silent handler raises TimeoutError quickly."""

    @sockets.route("/silent")
    def silent(ws):
        ws.receive()

    with client.connect("/silent") as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="/silent"):
            ws.receive(timeout=0.2)
        assert time.monotonic() - started < 2


def test_subprotocol_accepted_by_the_handler(sockets, client):
    """The subprotocol a handler accepts from those offered is visible on the test's socket."""

    @sockets.route("/chat", defer_accept=True)
    def chat(ws):
        offered = [p.strip() for p in request.headers["Sec-WebSocket-Protocol"].split(",")]
        ws.accept(subprotocol=offered[-1])
        ws.send(ws.subprotocol)

    with client.connect("/chat", subprotocols=["v2.chat", "v1.chat"]) as ws:
        assert ws.subprotocol == "v1.chat"
        assert ws.receive() == "v1.chat"
    with pytest.raises(RuntimeError, match="did not offer"):
        client.connect("/chat", subprotocols=[], headers={"Sec-WebSocket-Protocol": "v3"})


def test_route_subprotocols_and_config(app, sockets, client):
    """The route's subprotocols=[...] and SOCKETS_MAX_MESSAGE_SIZE apply to the test client's socket."""
    app.config["SOCKETS_MAX_MESSAGE_SIZE"] = 8

    @sockets.route("/chat", subprotocols=["v2.chat", "v1.chat"])
    def chat(ws):
        echo(ws)

    with client.connect("/chat", subprotocols=["v1.chat", "v2.chat"]) as ws:
        assert ws.subprotocol == "v2.chat"
        ws.send("x" * 9)
        assert ws.receive() is None
        assert ws.close_code == CloseCode.MESSAGE_TOO_BIG


def test_cross_origin_browser_is_refused(sockets, client):
    """A page from another origin is refused with 403 (SOCKETS_ALLOWED_ORIGINS); the same origin passes."""
    sockets.add_url_rule("/echo", "echo", echo)
    with pytest.raises(SocketRejected) as e:
        client.connect("/echo", headers={"Origin": "https://evil.example"})
    assert e.value.status_code == 403
    with client.connect("/echo", headers={"Origin": "http://localhost"}) as ws:
        ws.send("hi")
        assert ws.receive() == "hi"


def test_handler_that_never_ends_is_reported(app, sockets):
    """A handler still running after its socket closed makes the with block fail, after the timeout."""
    release = threading.Event()

    @sockets.route("/stuck")
    def stuck(ws):
        ws.receive()
        release.wait(10)

    client = SocketTestClient(app, timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="still running"):
            with client.connect("/stuck"):
                pass
    finally:
        release.set()
    assert time.monotonic() - started < 2


def test_server_socket_is_a_websocket(sockets, client):
    """The handler's socket is the threaded servers' socket, satisfies flask_sockets.WebSocket
    and has the request's environ (origin, path, offered subprotocols)."""

    @sockets.route("/s")
    def s(ws):
        environ = ws.environ
        ws.send(
            f"{type(ws).__name__} {isinstance(ws, WebSocket)} {environ['HTTP_ORIGIN']} {environ['PATH_INFO']}"
            f" {environ['HTTP_SEC_WEBSOCKET_PROTOCOL']}"
        )

    with client.connect("/s", headers={"Origin": "http://localhost"}, subprotocols=["a", "b"]) as ws:
        assert ws.receive() == "ThreadedWebSocket True http://localhost /s a, b"


def test_message_size_limit_closes_1009(sockets, client):
    """With configure(max_message_size=...), a bigger message closes the socket with 1009."""
    received = []

    @sockets.route("/small")
    def small(ws):
        ws.configure(SocketOptions(max_message_size=4))
        received.append(ws.receive())
        received.append(ws.receive())

    with client.connect("/small") as ws:
        ws.send("four")
        ws.send("fives")
        assert ws.receive() is None
        assert (ws.close_code, ws.close_reason) == (CloseCode.MESSAGE_TOO_BIG, "Message over 4 bytes")
    assert received == ["four", None]


def test_cookie_header_replaces_the_jar(sockets, client):
    """A Cookie header given to connect() is sent instead of the client's cookies."""

    @sockets.route("/cookies")
    def cookies(ws):
        ws.send(request.headers.get("Cookie", ""))

    client.http.set_cookie("jar", "1")
    with client.connect("/cookies") as ws:
        assert ws.receive() == "jar=1"
    with client.connect("/cookies", headers={"Cookie": "mine=2"}) as ws:
        assert ws.receive() == "mine=2"


def test_handler_that_never_accepts_times_out_connect(app, sockets):
    """connect() gives up with TimeoutError if a defer_accept=True handler neither accepts nor returns in time."""
    release = threading.Event()
    outcome = []

    @sockets.route("/slow", defer_accept=True)
    def slow(ws):
        release.wait(10)
        try:
            ws.send("too late")
        except ConnectionClosed:
            outcome.append(ws.close_code)

    client = SocketTestClient(app, timeout=0.2)
    try:
        with pytest.raises(TimeoutError, match="neither accepted"):
            client.connect("/slow")
    finally:
        release.set()
    deadline = time.monotonic() + 2
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome == [CloseCode.ABNORMAL_CLOSURE]  # the test client hung up


def test_connect_to_a_ws_url(app, sockets, client):
    """connect() takes the ws:// URL url_for builds for a socket route."""
    sockets.add_url_rule("/echo", "echo", echo)
    with app.test_request_context():
        url = url_for("echo", _external=True)
    assert url.startswith("ws://")
    with client.connect(url) as ws:
        ws.send("hi")
        assert ws.receive() == "hi"


def test_echo_example_passes():
    """examples/test_echo_app.py, which `hatch test` does not collect (testpaths), passes under pytest."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_echo_app.py"],
        cwd=ROOT,
        # Third-party plugins (xdist, hypothesis, ...) only slow the start-up down.
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_handler_that_neither_reads_nor_ends_is_reported(app, sockets):
    """A handler that never reads and never returns: close() hangs up after
    close_timeout, then reports it after the timeout; nothing blocks."""
    release = threading.Event()

    @sockets.route("/deaf")
    def deaf(ws):
        release.wait(10)

    client = SocketTestClient(app, timeout=0.2, close_timeout=0.1)
    try:
        with pytest.raises(TimeoutError, match="/deaf is still running 0.2 seconds after"):
            with client.connect("/deaf"):
                pass
    finally:
        release.set()


def test_invalid_handshake_is_refused_before_the_101(sockets, client):
    """The handshake is checked as on the servers: another version is 426, a bad key 400."""
    sockets.add_url_rule("/echo", "echo", echo)
    with pytest.raises(SocketRejected) as e:
        client.connect("/echo", headers={"Sec-WebSocket-Version": "8"})
    assert (e.value.status_code, e.value.response.headers["Sec-WebSocket-Version"]) == (426, "13")
    with pytest.raises(SocketRejected) as e:
        client.connect("/echo", headers={"Sec-WebSocket-Key": "too short"})
    assert e.value.status_code == 400


def test_compression_is_negotiated(app, sockets, client):
    """The test client offers permessage-deflate, as browsers do: the handler's
    socket has it, the 101 says so, messages round-trip compressed; compression=None
    offers nothing, and a route with compression=False declines."""
    app.config["SOCKETS_MAX_MESSAGE_SIZE"] = 64 * 1024

    def report(ws):
        ws.send(repr(None if ws.compression is None else ws.compression.parameters()))
        echo(ws)

    sockets.add_url_rule("/deflate", "deflate", report)
    sockets.add_url_rule("/plain", "plain", report, compression=False)
    big = "a compressible line of text\n" * 2000  # 56 KB, under the limit
    with client.connect("/deflate") as ws:
        assert ws.response_headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        assert "server_no_context_takeover" in ws.receive()
        ws.send(big)
        assert ws.receive() == big
        ws.send(big.encode())
        assert ws.receive() == big.encode()
    for path, compression in (("/deflate", None), ("/plain", "deflate")):
        with client.connect(path, compression=compression) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
            assert ws.receive() == "None"
    with pytest.raises(ValueError, match="compression"):
        client.connect("/deflate", compression="gzip")


def test_keepalive_ping_is_answered(app, sockets, client):
    """The server's keepalive pings the test's end, which answers: a socket
    idle for several ping timeouts stays open (unanswered, it closes with 1011)."""
    app.config.update(SOCKETS_PING_INTERVAL=0.02, SOCKETS_PING_TIMEOUT=0.05)

    @sockets.route("/idle")
    def idle(ws):
        try:
            ws.receive(timeout=0.4)
        except TimeoutError:
            ws.send(f"still open: {not ws.closed}")
        else:
            ws.send(f"closed: {ws.close_code}")

    with client.connect("/idle") as ws:
        assert ws.receive() == "still open: True"


def test_close_reason_checked_by_the_client(sockets, client):
    """The test's close frame is checked as a client's: a reason over 123
    bytes is refused; one of 123 bytes reaches the handler whole."""
    seen = []

    @sockets.route("/s")
    def s(ws):
        ws.receive()
        seen.append((ws.close_code, ws.close_reason))

    with client.connect("/s") as ws:
        with pytest.raises(ValueError, match="123 bytes"):
            ws.close(1000, "x" * 124)
        ws.close(4000, "é" * 61 + "x")  # 123 bytes
    assert seen == [(4000, "é" * 61 + "x")]
    assert (ws.close_code, ws.close_reason) == (4000, "")  # the handler's echo: the code only


#: Messages over a limit of 1,000 bytes: on the wire, and compressed (100 B
#: on the wire, 100 KB once inflated).
OVER_THE_LIMIT = ["x" * 1001, b"x" * 1001, "y" * 100_000]


def test_limit_answers_as_on_the_development_server(devserve):
    """A message over SOCKETS_MAX_MESSAGE_SIZE gets the close frame the development
    server sends a websockets client (code and reason): the test client runs its socket."""
    app = Flask(__name__)
    app.config["SOCKETS_MAX_MESSAGE_SIZE"] = 1000
    Sockets(app).add_url_rule("/echo", "echo", echo)
    server = devserve(app)
    for message in OVER_THE_LIMIT:
        with client_connect(f"{server.ws_url}/echo", open_timeout=TIMEOUT) as real:
            real.send("under")
            assert real.recv(timeout=TIMEOUT) == "under"
            real.send(message)
            with pytest.raises(ClientConnectionClosed) as closed:
                real.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        with SocketTestClient(app).connect("/echo") as ws:
            ws.send("under")
            assert ws.receive() == "under"
            ws.send(message)
            assert ws.receive() is None
        assert (ws.close_code, ws.close_reason) == (closed.value.rcvd.code, closed.value.rcvd.reason)
        assert ws.close_code == 1009


def test_send_to_a_handler_that_never_reads_times_out(app, sockets):
    """A send the handler never reads (more than the socket buffers hold)
    raises TimeoutError after the timeout instead of blocking the test."""
    release = threading.Event()

    @sockets.route("/deaf")
    def deaf(ws):
        release.wait(10)

    client = SocketTestClient(app, timeout=0.2, close_timeout=0.1)
    outcome: list[object] = []

    def send() -> None:
        try:
            ws.send(b"x" * (8 * 1024 * 1024))
            outcome.append("sent")
        except TimeoutError as e:
            outcome.append(e)

    ws = client.connect("/deaf", compression=None)  # (8 MiB of x would deflate to 8 KiB)
    sender = threading.Thread(target=send)  # (were the send unbounded, the test still ends)
    try:
        sender.start()
        sender.join(5)
        assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome
        assert "/deaf read nothing for 0.2 seconds" in str(outcome[0])
    finally:
        release.set()
        ws.close()
        sender.join(5)
    assert ws.close_code == 1006  # the test hung up
