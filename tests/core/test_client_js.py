"""flask-sockets.js, the browser client: the extension serves it at
SOCKETS_CLIENT_URL as JavaScript with revalidation headers, the file is an ES
module within its size budget, and its type declarations are beside it. (Its
behaviour: tests/js in node, tests/browser/test_client_js.py in Chromium.)"""

from __future__ import annotations

import gzip
import re

import pytest
from flask import Flask
from flask import url_for

from flask_sockets import Sockets
from flask_sockets.client import CLIENT_JS

#: The issue's budget: 5 KB minified and gzipped. Nothing minifies offline at
#: test time, so the shipped (unminified, commented) file is measured: an
#: upper bound of its minified size.
BUDGET = 5 * 1024


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    Sockets(app)
    return app


def test_served_as_javascript_at_the_documented_url():
    client = make_app().test_client()
    response = client.get("/_sockets/flask-sockets.js", buffered=True)
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.content_type == "text/javascript; charset=utf-8"
    assert response.get_data() == CLIENT_JS.read_bytes()
    assert b"export class SocketClient" in response.get_data()


def test_revalidated_with_an_etag():
    """The URL does not change with the version: browsers revalidate
    (no-cache by default, as Flask's static files) and get a 304 while the
    file is unchanged."""
    client = make_app().test_client()
    first = client.get("/_sockets/flask-sockets.js", buffered=True)
    assert first.headers["ETag"]
    assert first.headers["Last-Modified"]
    assert "no-cache" in first.headers["Cache-Control"]
    again = client.get("/_sockets/flask-sockets.js", buffered=True, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.get_data() == b""


def test_cache_control_follows_send_file_max_age_default():
    client = make_app(SEND_FILE_MAX_AGE_DEFAULT=3600).test_client()
    response = client.get("/_sockets/flask-sockets.js", buffered=True)
    assert response.cache_control.max_age == 3600
    assert response.cache_control.public


def test_head_and_no_other_methods():
    client = make_app().test_client()
    head = client.head("/_sockets/flask-sockets.js", buffered=True)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == CLIENT_JS.stat().st_size
    assert client.post("/_sockets/flask-sockets.js", buffered=True).status_code == 405


def test_url_for_and_another_url():
    app = make_app(SOCKETS_CLIENT_URL="/static-js/sockets.js")
    with app.test_request_context():
        assert url_for("sockets_client") == "/static-js/sockets.js"
    client = app.test_client()
    assert client.get("/static-js/sockets.js", buffered=True).status_code == 200
    assert client.get("/_sockets/flask-sockets.js", buffered=True).status_code == 404


@pytest.mark.parametrize("off", [None, "", False])
def test_none_serves_nothing(off: object):
    app = make_app(SOCKETS_CLIENT_URL=off)
    assert "sockets_client" not in app.view_functions
    assert app.test_client().get("/_sockets/flask-sockets.js", buffered=True).status_code == 404


def test_every_app_of_a_factory_serves_it():
    sockets = Sockets()
    apps = [Flask(__name__), Flask(__name__)]
    apps[1].config["SOCKETS_CLIENT_URL"] = "/js/client.js"
    for app in apps:
        sockets.init_app(app)
    assert apps[0].test_client().get("/_sockets/flask-sockets.js", buffered=True).status_code == 200
    assert apps[1].test_client().get("/js/client.js", buffered=True).status_code == 200


def test_within_the_size_budget():
    size = len(gzip.compress(CLIENT_JS.read_bytes(), compresslevel=9))
    assert size <= BUDGET, f"flask-sockets.js is {size} bytes gzipped, over the {BUDGET}-byte budget"


def test_an_es_module_without_globals_and_with_its_declarations():
    source = CLIENT_JS.read_text(encoding="utf-8")
    assert re.findall(r"^export (?:class|function|const) (\w+)", source, re.MULTILINE) == ["SocketClient"]
    assert not re.search(r"^\s*(?:window|globalThis|self)\.\w+\s*=", source, re.MULTILINE), "assigns a global"
    assert "require(" not in source and "import " not in source, "no dependencies"
    declarations = CLIENT_JS.with_name("flask-sockets.d.ts").read_text(encoding="utf-8")
    assert "export declare class SocketClient" in declarations
    for method in ("connect", "close", "send", "subscribe", "on"):
        assert re.search(rf"^  {method}[<(]", source, re.MULTILINE), f"no method {method} in the module"
        assert re.search(rf"^  {method}[<(]", declarations, re.MULTILINE), f"no method {method} in the .d.ts"
