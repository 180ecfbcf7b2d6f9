"""The examples in examples/ and the seed README, run as real servers.

Each example is started as its own process (it monkey-patches gevent, which
must never happen in the test process) and driven with a real WebSocket
client and plain HTTP.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import signal
import sys
import textwrap
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .conftest import EXAMPLES
from .conftest import ROOT
from .conftest import TIMEOUT
from .seed import SEED_EXAMPLES
from .seed import SEED_README
from .seed import classic_port
from .seed import readme_examples
from .seed import seed_examples

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``url``; return the status and the decoded body."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.status, response.read().decode()


def ws_connect(url: str, **options: t.Any) -> t.Any:
    return connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, **options)


def assert_echoes(url: str) -> None:
    """A text and a binary message come back unchanged from ``url``."""
    with ws_connect(url) as ws:
        ws.send("Hello, echo! \N{SNOWMAN}")
        assert ws.recv(timeout=TIMEOUT) == "Hello, echo! \N{SNOWMAN}"
        ws.send(b"\x00\x01binary\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01binary\xff"


def run_example(spawn: t.Callable[..., t.Any], name: str, port: int, **options: t.Any) -> t.Any:
    return spawn([sys.executable, str(EXAMPLES / name), "--port", str(port)], port=port, **options)


def assert_no_errors(output: str) -> None:
    assert "Traceback" not in output and "ERROR" not in output, output


# -- examples/echo.py --------------------------------------------------------


def test_echo_example_echoes(spawn, port):
    """examples/echo.py echoes text and binary messages and stops cleanly on SIGTERM."""
    process = run_example(spawn, "echo.py", port)
    assert_echoes(f"ws://127.0.0.1:{port}/echo")
    assert_echoes(f"ws://127.0.0.1:{port}/echo")
    assert process.stop() == 0
    output = process.output()
    assert f"Serving on http://127.0.0.1:{port} (WebSockets: ws://127.0.0.1:{port})" in output
    assert_no_errors(output)


def test_echo_example_page(spawn, port):
    """examples/echo.py serves an HTML page that opens the socket at the ws:// URL of /echo."""
    run_example(spawn, "echo.py", port)
    status, body = http_get(f"http://127.0.0.1:{port}/")
    assert status == 200
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert f'"ws://127.0.0.1:{port}/echo"' in body
    assert "new WebSocket(url)" in body
    assert "<button" in body and 'id="log"' in body


def test_echo_example_url_follows_host(spawn, port):
    """The page builds the socket URL from the request's Host, as url_for(_external=True) does."""
    run_example(spawn, "echo.py", port)
    _, body = http_get(f"http://127.0.0.1:{port}/", headers={"Host": f"localhost:{port}"})
    assert f'"ws://localhost:{port}/echo"' in body


def ctrl_c(process: t.Any) -> str:
    """Stop ``process`` as Ctrl+C in its terminal does (SIGINT to its whole
    process group: the reloader's too); return what it printed."""
    os.killpg(process.popen.pid, signal.SIGINT)
    assert process.popen.wait(TIMEOUT) == 0, process.output()
    return t.cast(str, process.output())


@pytest.mark.parametrize("debug", [False, True], ids=["run", "run-debug"])
def test_echo_example_under_flask_run_stops_quietly(spawn, port, debug):
    """`flask --app examples/echo.py run` (with the reloader and debugger, or
    not) serves the echo, and Ctrl+C stops it with status 0 and no stray
    KeyboardInterrupt line (gevent's, from a monkey-patched process)."""
    argv = [sys.executable, "-m", "flask", "--app", "examples/echo.py", "run", "--port", str(port)]
    process = spawn([*argv, "--debug"] if debug else argv, port=port)
    assert_echoes(f"ws://127.0.0.1:{port}/echo")
    output = ctrl_c(process)
    assert "Debug mode: on" in output if debug else "Debug mode: off" in output
    assert "KeyboardInterrupt" not in output
    assert_no_errors(output)


# -- examples/blueprints.py --------------------------------------------------


def test_blueprints_example(spawn, port):
    """examples/blueprints.py answers / with Hello World! and echoes on the socket blueprint's /echo."""
    process = run_example(spawn, "blueprints.py", port)
    assert http_get(f"http://127.0.0.1:{port}/") == (200, "Hello World!")
    assert_echoes(f"ws://127.0.0.1:{port}/echo")
    assert process.stop() == 0
    assert_no_errors(process.output())


# -- examples/session.py -----------------------------------------------------


def login(port: int, method: str, name: str) -> str:
    """Log in to the session example; return the session cookie as ``name=value``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        if method == "POST":
            conn.request(
                "POST", "/login", body=f"name={name}", headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        else:
            conn.request("GET", f"/login?name={name}")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 303
    assert response.getheader("Location") == "/"
    set_cookie = response.getheader("Set-Cookie")
    assert set_cookie is not None and set_cookie.startswith("session=")
    return set_cookie.split(";", 1)[0]


def test_session_example_refuses_anonymous(spawn, port):
    """An anonymous client gets a real HTTP 403 from /greet, not an opened socket."""
    run_example(spawn, "session.py", port)
    with pytest.raises(InvalidStatus) as excinfo:
        ws_connect(f"ws://127.0.0.1:{port}/greet")
    assert excinfo.value.response.status_code == 403


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_session_example_greets_logged_in_user(spawn, port, method):
    """After logging in over HTTP, the session cookie gets a greeting and an echo from /greet."""
    process = run_example(spawn, "session.py", port, env={"SECRET_KEY": ""})
    cookie = login(port, method, "Ada")
    _, page = http_get(f"http://127.0.0.1:{port}/", headers={"Cookie": cookie})
    assert "Logged in as <strong>Ada</strong>" in page
    assert f'"ws://127.0.0.1:{port}/greet"' in page
    with ws_connect(f"ws://127.0.0.1:{port}/greet", additional_headers={"Cookie": cookie}) as ws:
        assert ws.recv(timeout=TIMEOUT) == "Hello, Ada!"
        ws.send("still there?")
        assert ws.recv(timeout=TIMEOUT) == "still there?"
    assert process.stop() == 0
    assert "SECRET_KEY is not set" in process.output()


def test_session_example_secret_key_from_env(spawn, port):
    """The session example signs with SECRET_KEY from the environment: a cookie from another key is anonymous."""
    first = run_example(spawn, "session.py", port, env={"SECRET_KEY": "first"})
    cookie = login(port, "POST", "Ada")
    first.stop()
    second = run_example(spawn, "session.py", port, env={"SECRET_KEY": "second"})
    with pytest.raises(InvalidStatus) as excinfo:
        ws_connect(f"ws://127.0.0.1:{port}/greet", additional_headers={"Cookie": cookie})
    assert excinfo.value.response.status_code == 403
    second.stop()
    assert "SECRET_KEY is not set" not in first.output() + second.output()


def test_session_example_login_needs_a_name(spawn, port):
    """/login without a name is a 400 that says what to send."""
    run_example(spawn, "session.py", port)
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        http_get(f"http://127.0.0.1:{port}/login")
    with excinfo.value as response:
        assert response.status == 400
        assert "name" in response.read().decode()


def demo_command() -> list[str]:
    """The command line of ``hatch run demo`` with no extra arguments (its
    ``{args}`` placeholder, which takes e.g. ``--port 8000``, left empty)."""
    if tomllib is None:  # pragma: no cover
        pytest.skip("reading hatch.toml needs Python 3.11+ (tomllib) or tomli")
    with (ROOT / "hatch.toml").open("rb") as f:
        config = tomllib.load(f)
    return [arg for arg in shlex.split(config["envs"]["default"]["scripts"]["demo"]) if arg != "{args}"]


def test_demo_serves_echo_example(spawn):
    """`hatch run demo` runs examples/echo.py, which serves the page and the echo on 127.0.0.1:5000."""
    command = demo_command()
    assert command == ["python", "examples/echo.py"], command
    with classic_port() as port:
        process = spawn([sys.executable, *command[1:]], port=port, cwd=ROOT)
        try:
            status, body = http_get(f"http://127.0.0.1:{port}/")
            assert status == 200
            assert f'"ws://127.0.0.1:{port}/echo"' in body
            assert_echoes(f"ws://127.0.0.1:{port}/echo")
        finally:
            process.stop()
    assert process.popen.returncode == 0
    assert "Serving on http://127.0.0.1:5000 " in process.output()


@pytest.mark.skipif(not SEED_README.exists(), reason=f"the seed README is not at {SEED_README}")
def test_seed_examples_are_verbatim():
    """SEED_EXAMPLES are exactly the seed README's two code blocks: the echo app and the blueprint app."""
    examples = readme_examples(SEED_README.read_text())
    assert examples == SEED_EXAMPLES
    assert "@sockets.route('/echo')" in examples[0]
    assert "sockets.register_blueprint(ws, url_prefix=r'/')" in examples[1]


def serves_hello_and_echo(spawn, script, cwd, banner):
    """``python script`` serves "Hello World!" on / and echoes on /echo, on
    port 5000 as the page says, prints ``banner``, and stops cleanly."""
    with classic_port() as port:
        process = spawn([sys.executable, str(script)], port=port, cwd=cwd)
        try:
            assert http_get(f"http://127.0.0.1:{port}/") == (200, "Hello World!")
            assert_echoes(f"ws://127.0.0.1:{port}/echo")
        finally:
            process.stop()
    assert process.popen.returncode == 0
    assert banner in process.output()
    assert_no_errors(process.output())


def test_readme_quick_start(spawn, tmp_path):
    """The README's quick start, run verbatim, serves Hello World! and the echo on 127.0.0.1:5000 as it says."""
    readme = (ROOT / "README.rst").read_text()
    (source,) = [block for block in readme_examples(readme) if "flask_sockets_gevent.run(app)" in block]
    banner = "Serving on http://127.0.0.1:5000 (WebSockets: ws://127.0.0.1:5000)"
    assert banner in readme
    path = tmp_path / "app.py"
    path.write_text(source)
    serves_hello_and_echo(spawn, path, tmp_path, banner)


def test_readme_quick_start_with_flask_run(spawn, tmp_path):
    """The README's app.py under its `flask --app app run` serves the same
    routes on 127.0.0.1:5000, and Ctrl+C stops it quietly."""
    readme = (ROOT / "README.rst").read_text()
    (source,) = [block for block in readme_examples(readme) if "flask_sockets_gevent.run(app)" in block]
    assert "``flask --app app run`` serves the same routes" in readme
    (tmp_path / "app.py").write_text(source)
    with classic_port() as port:
        process = spawn([sys.executable, "-m", "flask", "--app", "app", "run"], port=port, cwd=tmp_path)
        try:
            assert http_get(f"http://127.0.0.1:{port}/") == (200, "Hello World!")
            assert_echoes(f"ws://127.0.0.1:{port}/echo")
        finally:
            output = ctrl_c(process)
    assert "KeyboardInterrupt" not in output
    assert_no_errors(output)


@pytest.mark.parametrize("worker", ["flask_sockets_gunicorn.worker", "flask_sockets_gunicorn.ThreadWorker"])
def test_readme_quick_start_with_gunicorn(spawn, tmp_path, worker):
    """Each of the README's gunicorn commands (the gevent worker, the thread
    worker), run verbatim next to its app.py, serves Hello World! and the
    echo on 127.0.0.1:5000, where its client connects."""
    readme = (ROOT / "README.rst").read_text()
    (source,) = [block for block in readme_examples(readme) if "flask_sockets_gevent.run(app)" in block]
    commands = [shlex.split(line) for line in re.findall(r"^ {4}\$ (gunicorn .*)$", readme, re.MULTILINE)]
    (command,) = [command for command in commands if command[command.index("-k") + 1] == worker]
    assert "$ python -m websockets ws://127.0.0.1:5000/echo" in readme
    (tmp_path / "app.py").write_text(source)
    with classic_port() as port:
        process = spawn([sys.executable, "-m", *command], port=port, cwd=tmp_path)
        try:
            assert http_get(f"http://127.0.0.1:{port}/") == (200, "Hello World!")
            assert_echoes(f"ws://127.0.0.1:{port}/echo")
        finally:
            process.stop()
    assert "Traceback" not in process.output()


# -- docs/quickstart.rst ------------------------------------------------------

QUICKSTART = ROOT / "docs" / "quickstart.rst"


def rst_block(text: str, caption: str) -> str:
    """The ``.. code-block::`` with ``:caption: <caption>`` of an RST page, dedented."""
    pattern = rf"^\.\. code-block:: python\n    :caption: {re.escape(caption)}\n\n((?:(?: {{4}}.*)?\n)+)"
    (block,) = re.findall(pattern, text, re.MULTILINE)
    return textwrap.dedent(block).strip("\n") + "\n"


def rst_commands(text: str, program: str) -> list[list[str]]:
    """The shell commands of an RST page's text blocks (``    $ program ...``)."""
    return [shlex.split(line) for line in re.findall(rf"^ {{4}}\$ ({re.escape(program)} .*)$", text, re.MULTILINE)]


def quickstart_app(tmp_path: Path) -> tuple[str, Path]:
    """The quickstart page, and its ``app.py`` written to ``tmp_path``."""
    page = QUICKSTART.read_text()
    (tmp_path / "app.py").write_text(rst_block(page, "app.py"))
    return page, tmp_path / "app.py"


def test_docs_quickstart_with_gevent(spawn, tmp_path):
    """The quickstart's app.py, run as `python app.py` as the page says, prints the
    banner the page shows and serves Hello World! and the echo on 127.0.0.1:5000."""
    page, app = quickstart_app(tmp_path)
    assert rst_commands(page, "python") == [["python", "app.py"], ["python", "-m", "websockets", "ws://127.0.0.1:5000/echo"]]
    banner = "Serving on http://127.0.0.1:5000 (WebSockets: ws://127.0.0.1:5000)"
    assert f"    {banner}\n" in page
    serves_hello_and_echo(spawn, app, tmp_path, banner)


def test_docs_quickstart_with_flask_run(spawn, tmp_path):
    """The quickstart's app.py, served with the page's own `flask ... run`
    command (the development server), serves the same routes on 127.0.0.1:5000,
    and Ctrl+C stops it quietly."""
    page, _ = quickstart_app(tmp_path)
    (command,) = rst_commands(page, "flask")
    assert command[:3] == ["flask", "--app", "app"] and "run" in command, command
    with classic_port() as port:
        process = spawn([sys.executable, "-m", *command], port=port, cwd=tmp_path)
        try:
            assert http_get(f"http://127.0.0.1:{port}/") == (200, "Hello World!")
            assert_echoes(f"ws://127.0.0.1:{port}/echo")
        finally:
            output = ctrl_c(process)
    assert "KeyboardInterrupt" not in output
    assert_no_errors(output)


def run_seed_example(spawn, tmp_path: Path, index: int, port: int) -> t.Any:
    path = tmp_path / f"seed_example_{index}.py"
    path.write_text(seed_examples()[index])
    return spawn([sys.executable, str(path)], port=port, cwd=tmp_path)


@pytest.mark.parametrize("index", [0, 1], ids=["route", "blueprints"])
def test_seed_readme_example(spawn, tmp_path, index):
    """A seed README example, run verbatim, answers / with Hello World! and echoes on /echo."""
    with classic_port() as port:
        process = run_seed_example(spawn, tmp_path, index, port)
        try:
            assert http_get(f"http://127.0.0.1:{port}/") == (200, "Hello World!")
            assert_echoes(f"ws://127.0.0.1:{port}/echo")
        finally:
            process.stop()


def test_seed_readme_example_client_close_is_not_an_error(spawn, tmp_path):
    """A client closing normally does not make the verbatim seed echo example log an error."""
    with classic_port() as port:
        process = run_seed_example(spawn, tmp_path, 0, port)
        try:
            with ws_connect(f"ws://127.0.0.1:{port}/echo") as ws:
                ws.send("bye")
                assert ws.recv(timeout=TIMEOUT) == "bye"
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline and "Traceback" not in process.output():
                time.sleep(0.05)
        finally:
            process.stop()
    assert_no_errors(process.output())
