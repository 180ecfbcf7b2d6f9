"""The Flask session inside socket handlers."""

from __future__ import annotations

import http.cookiejar
import secrets
import urllib.request

from flask import Flask
from flask import session
from flask.sessions import SessionInterface
from flask.sessions import SessionMixin
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_sockets import Sockets
from tests.conftest import wait_until


class DictSession(dict, SessionMixin):
    def __init__(self, sid: str, data: dict | None = None) -> None:
        super().__init__(data or {})
        self.sid = sid


class MemorySessionInterface(SessionInterface):
    """A minimal server-side session store: only the id travels in the cookie."""

    def __init__(self) -> None:
        self.store: dict[str, dict] = {}
        self.saves = 0

    def open_session(self, app, request):
        sid = request.cookies.get("sid") or secrets.token_hex(8)
        return DictSession(sid, self.store.get(sid))

    def save_session(self, app, session, response):
        self.store[session.sid] = dict(session)
        self.saves += 1
        response.set_cookie("sid", session.sid, httponly=True)


def opener_with_cookies() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)), jar


def cookie_header(jar: http.cookiejar.CookieJar) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def test_cookie_session_is_read_in_the_handler(serve):
    """An HTTP login sets the session; the socket handler sees it; anonymous is refused."""
    app = Flask(__name__)
    app.secret_key = "test"
    sockets = Sockets(app)

    @app.route("/login/<name>")
    def login(name):
        session["user"] = name
        return "ok"

    @sockets.route("/whoami", defer_accept=True)
    def whoami(ws):
        if "user" not in session:
            from flask import abort

            abort(401)
        ws.send(session["user"])

    server = serve(app)
    try:
        connect(f"{server.ws_url}/whoami", open_timeout=5)
        raise AssertionError("anonymous socket was accepted")
    except InvalidStatus as e:
        assert e.response.status_code == 401
    opener, jar = opener_with_cookies()
    assert opener.open(f"{server.http_url}/login/ann", timeout=5).read() == b"ok"
    with connect(f"{server.ws_url}/whoami", additional_headers={"Cookie": cookie_header(jar)}) as ws:
        assert ws.recv(timeout=5) == "ann"


def test_server_side_session_write_persists(serve):
    """A server-side session interface saves what the handler wrote when the handler ends."""
    app = Flask(__name__)
    store = MemorySessionInterface()
    app.session_interface = store
    sockets = Sockets(app)

    @app.route("/count")
    def count():
        return str(session.get("messages", 0))

    @sockets.route("/talk")
    def talk(ws):
        while True:
            message = ws.receive()
            if message is None:
                break
            session["messages"] = session.get("messages", 0) + 1
            ws.send(f"#{session['messages']}")

    server = serve(app)
    opener, jar = opener_with_cookies()
    assert opener.open(f"{server.http_url}/count", timeout=5).read() == b"0"
    saves_before = store.saves
    with connect(f"{server.ws_url}/talk", additional_headers={"Cookie": cookie_header(jar)}) as ws:
        for i in (1, 2, 3):
            ws.send("hi")
            assert ws.recv(timeout=5) == f"#{i}"
    wait_until(lambda: store.saves > saves_before)
    assert opener.open(f"{server.http_url}/count", timeout=5).read() == b"3"
