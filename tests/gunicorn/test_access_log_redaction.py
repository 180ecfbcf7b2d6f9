"""Our access-log lines redact credentials in the query string: a real
server (``flask_sockets_gevent.run``, the gunicorn gevent worker, our
gunicorn thread worker) logs a WebSocket and an HTTP request whose URLs
carry a token, and its captured log has the other parameters but not the
secrets."""

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

SECRETS = ("s3cret-token-value", "hunter2-password", "eyJhbGciOi-jwt", "the-api-key")


@pytest.mark.parametrize(
    "worker",
    [None, "flask_sockets_gunicorn.worker", "flask_sockets_gunicorn.ThreadWorker"],
    ids=["run", "gevent", "thread"],
)
def test_access_log_redacts_credentials(tmp_path: Path, spawn, port, worker):
    (tmp_path / "logapp.py").write_text(APP)
    if worker is None:
        (tmp_path / "run.py").write_text(RUN)
        process = spawn([sys.executable, str(tmp_path / "run.py"), str(port)], port=port, cwd=tmp_path)
    else:
        options = ("--access-logfile", "-", "--threads", "4")
        argv = gunicorn_argv(*options, port=port, chdir=tmp_path, worker=worker, app="logapp:app")
        process = spawn(argv, port=port, cwd=tmp_path, env=GUNICORN_ENV)
    with connect(
        f"{process.server.ws_url}/ws?room=lobby&token={SECRETS[0]}&Access_Token={SECRETS[0]}", open_timeout=TIMEOUT
    ) as ws:
        assert ws.recv(timeout=TIMEOUT) == "hi"
    url = f"{process.server.http_url}/page?PASSWORD={SECRETS[1]}&jwt={SECRETS[2]}&api_key={SECRETS[3]}&page=2"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert response.read() == b"page"
    log = wait_for_match(process.output, r"/page\?\S+ HTTP/1.1\" 200").string
    wait_for_match(process.output, r"/ws\?\S+ HTTP/1.1\" 101")
    log = process.output()
    assert "/ws?room=lobby&token=[REDACTED]&Access_Token=[REDACTED]" in log
    assert "/page?PASSWORD=[REDACTED]&jwt=[REDACTED]&api_key=[REDACTED]&page=2" in log
    for secret in SECRETS:
        assert secret not in log
