"""Access logs redact credentials in URLs: a real server
(``flask_sockets_gevent.run``, the gunicorn gevent worker, our gunicorn
thread worker, gunicorn's ``-k gthread`` with our logger class, Werkzeug's
development server by ``flask run`` and ``app.run()``) logs a WebSocket and
an HTTP request whose URLs and Referers carry tokens, and its captured log
has the other parameters but not the secrets."""

from __future__ import annotations

import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import TIMEOUT
from tests.gunicorn.conftest import GUNICORN_ENV
from tests.gunicorn.conftest import gunicorn_argv
from tests.gunicorn.conftest import wait_for_match

pytestmark = pytest.mark.slow

APP = textwrap.dedent(
    """
    from flask import Flask
    from flask_sockets import Sockets

    app = Flask(__name__)
    sockets = Sockets(app)

    @sockets.route("/ws")
    def ws(ws):
        ws.send("hi")

    @app.route("/page")
    def page():
        return "page"
    """
)

RUN = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import sys
    import flask_sockets_gevent
    from logapp import app

    flask_sockets_gevent.run(app, port=int(sys.argv[1]), shutdown_timeout=1)
    """
)

DEV_RUN = textwrap.dedent(
    """
    import sys
    from logapp import app

    app.run(port=int(sys.argv[1]))
    """
)

SECRETS = ("s3cret-token-value", "hunter2-password", "eyJhbGciOi-jwt", "the-api-key", "r3ferer-access-token")

#: A Referer with a credential in its query (a page opened with ``?access_token=...``).
REFERER = f"http://app.example/chat?access_token={SECRETS[4]}&tab=2"
REFERER_REDACTED = "http://app.example/chat?access_token=[REDACTED]&tab=2"

#: gunicorn's access-log format with every atom that holds the URL or the Referer.
LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s "%(f)s" q=%(q)s ref=%({referer}i)s raw=%({raw_uri}e)s'

#: Serves logapp: how, and whether its access log shows the Referer.
SERVERS = {
    "run": ("flask_sockets_gevent.run", False),
    "gevent": ("flask_sockets_gunicorn.worker", True),
    "thread": ("flask_sockets_gunicorn.ThreadWorker", True),
    "gthread": ("gthread", True),
    "flask-run": ("flask run", False),
    "app-run": ("app.run()", False),
}


def serve(name: str, tmp_path: Path, spawn, port: int):
    (tmp_path / "logapp.py").write_text(APP)
    how = SERVERS[name][0]
    if how == "flask_sockets_gevent.run":
        (tmp_path / "run.py").write_text(RUN)
        return spawn([sys.executable, str(tmp_path / "run.py"), str(port)], port=port, cwd=tmp_path)
    if how == "app.run()":
        (tmp_path / "devrun.py").write_text(DEV_RUN)
        return spawn([sys.executable, str(tmp_path / "devrun.py"), str(port)], port=port, cwd=tmp_path)
    if how == "flask run":
        argv = [sys.executable, "-m", "flask", "--app", "logapp", "run", "--port", str(port)]
        return spawn(argv, port=port, cwd=tmp_path)
    options = ["--access-logfile", "-", "--access-logformat", LOG_FORMAT, "--threads", "4"]
    if how == "gthread":
        # gunicorn's own worker: redacting only with the logger class.
        options += ["--logger-class", "flask_sockets.accesslog.RedactingLogger"]
    argv = gunicorn_argv(*options, port=port, chdir=tmp_path, worker=how, app="logapp:app")
    return spawn(argv, port=port, cwd=tmp_path, env=GUNICORN_ENV)


@pytest.mark.parametrize("server", list(SERVERS))
def test_access_log_redacts_credentials(tmp_path: Path, spawn, port, server):
    """A socket and a plain GET, each with a token in its query and in its Referer:
    the log keeps the other parameters and shows no secret."""
    process = serve(server, tmp_path, spawn, port)
    ws_url = f"{process.server.ws_url}/ws?token={SECRETS[0]}&room=1&Access_Token={SECRETS[0]}"
    with connect(ws_url, open_timeout=TIMEOUT, additional_headers={"Referer": REFERER}) as ws:
        assert ws.recv(timeout=TIMEOUT) == "hi"
    url = f"{process.server.http_url}/page?token={SECRETS[0]}&room=1&PASSWORD={SECRETS[1]}&jwt={SECRETS[2]}"
    request = urllib.request.Request(f"{url}&api_key={SECRETS[3]}&page=2", headers={"Referer": REFERER})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert response.read() == b"page"
    # The development server writes its 101 line in bold (ANSI codes around the request line).
    wait_for_match(process.output, r"/page\?\S+ HTTP/1.1\S*\" 200")
    wait_for_match(process.output, r"/ws\?\S+ HTTP/1.1\S*\" 101")
    log = process.output()
    assert "/ws?token=[REDACTED]&room=1&Access_Token=[REDACTED] HTTP/1.1" in log
    assert "/page?token=[REDACTED]&room=1&PASSWORD=[REDACTED]&jwt=[REDACTED]&api_key=[REDACTED]&page=2" in log
    if SERVERS[server][1]:
        # Both Referer atoms, the query and the raw URI, on both lines.
        assert log.count(f'"{REFERER_REDACTED}" q=token=[REDACTED]&room=1') == 2
        assert log.count(f"ref={REFERER_REDACTED} raw=/") == 2
    for secret in SECRETS:
        assert secret not in log
