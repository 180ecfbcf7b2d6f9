"""Echo: the classic Flask-Sockets example, with a page to try it in a browser.

Shows a socket route, ``/echo``, that sends every message back, and an HTTP
page, ``/``, whose script opens that socket at the URL Flask builds for it
with ``url_for('ws:echo_socket', _external=True)`` (a ``ws://`` URL). The app
is served by ``flask_sockets_gevent.run``.

Run it from the repository root with ``hatch run demo``, or::

    python examples/echo.py [--port 5000]

then open http://127.0.0.1:5000 in a browser, type a message and press Send.
Stop it with Ctrl+C.
"""

# Served by gevent (python echo.py): gevent must patch the standard library
# before anything else imports it. Not when imported by `flask run` or
# gunicorn: the development server's threads need no patching (and Ctrl+C
# would print gevent's report of the KeyboardInterrupt), the worker patches.
if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402

from flask import Flask  # noqa: E402
from flask import render_template_string  # noqa: E402
from flask import url_for  # noqa: E402

import flask_sockets_gevent  # noqa: E402
from flask_sockets import Sockets  # noqa: E402

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route("/echo")
def echo_socket(ws):
    while not ws.closed:
        message = ws.receive()
        ws.send(message)


PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Flask-Sockets echo</title>
  <style>
    body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
    #log { background: #f4f4f4; padding: 1em; min-height: 10em; white-space: pre-wrap; }
  </style>
</head>
<body>
  <h1>Flask-Sockets echo</h1>
  <form id="form">
    <input id="message" autocomplete="off" autofocus placeholder="Type a message">
    <button type="submit">Send</button>
  </form>
  <pre id="log"></pre>
  <script>
    const url = {{ ws_url|tojson }};
    const input = document.getElementById("message");
    const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
    const socket = new WebSocket(url);
    socket.onopen = () => log("connected to " + url);
    socket.onmessage = (event) => log("< " + event.data);
    socket.onclose = (event) => log("closed (code " + event.code + ")");
    document.getElementById("form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (socket.readyState !== WebSocket.OPEN) { log("not connected"); return; }
      socket.send(input.value);
      log("> " + input.value);
      input.value = "";
    });
  </script>
</body>
</html>
"""


@app.route("/")
def index():
    # A full ws:// URL (wss:// when the page was served over https).
    return render_template_string(PAGE, ws_url=url_for("ws:echo_socket", _external=True))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the Flask-Sockets echo example on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    args = parser.parse_args(argv)
    flask_sockets_gevent.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
