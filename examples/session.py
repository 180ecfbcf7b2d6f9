"""Session: log in over HTTP, then use the Flask session in a socket handler.

Shows that a socket route sees the same ``session`` as the HTTP views:

- ``/login`` (``POST`` with a ``name`` form field, or ``GET /login?name=...``)
  stores ``session['user']`` and redirects to ``/``;
- ``/greet`` is a socket route (with ``defer_accept=True``) that refuses
  anonymous users *before* the WebSocket handshake with ``abort(403)``, so
  the client gets a real ``HTTP 403`` instead of an opened-then-closed
  socket; a logged-in user is greeted with ``Hello, <name>!`` and then gets
  every message echoed;
- ``/`` is a page with a login form, or, once logged in, a small client
  for ``/greet``; ``/logout`` forgets the user.

Sessions are signed with ``SECRET_KEY``, read from the environment. Without
it (or with it empty) the example falls back to a fixed development key (and says so at start
up): set a real secret for anything but trying it out.

Run it with::

    SECRET_KEY=change-me python examples/session.py [--port 5000]

then open http://127.0.0.1:5000 in a browser. Anonymous WebSocket clients
are turned away: ``python -m websockets ws://127.0.0.1:5000/greet`` reports
``HTTP 403``. Stop the server with Ctrl+C.
"""

# Served by gevent (python session.py): gevent must patch the standard library
# before anything else imports it. Not when imported by `flask run` or
# gunicorn: the development server's threads need no patching (and Ctrl+C
# would print gevent's report of the KeyboardInterrupt), the worker patches.
if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402

from flask import Flask  # noqa: E402
from flask import abort  # noqa: E402
from flask import redirect  # noqa: E402
from flask import render_template_string  # noqa: E402
from flask import request  # noqa: E402
from flask import session  # noqa: E402
from flask import url_for  # noqa: E402

import flask_sockets_gevent  # noqa: E402
from flask_sockets import Sockets  # noqa: E402

#: Used when the SECRET_KEY environment variable is not set. Not a secret!
DEV_SECRET_KEY = "dev-only-insecure-secret-key"

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or DEV_SECRET_KEY
sockets = Sockets(app)


@app.route("/login", methods=["GET", "POST"])
def login():
    name = request.values.get("name", "").strip()
    if not name:
        abort(400, "Give your name: POST /login with a 'name' form field, or GET /login?name=...")
    session["user"] = name
    return redirect(url_for("index"), code=303)


@app.route("/logout")
def logout():
    session.pop("user", None)
    return redirect(url_for("index"), code=303)


@sockets.route("/greet", defer_accept=True)
def greet(ws):
    # Nothing has been sent to the client yet: with defer_accept=True the
    # server answers the handshake only when the handler first uses the
    # socket. Refusing here gives the client a plain HTTP 403.
    user = session.get("user")
    if user is None:
        abort(403)
    ws.send(f"Hello, {user}!")
    while not ws.closed:
        message = ws.receive()
        ws.send(message)


PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Flask-Sockets session</title>
  <style>
    body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
    #log { background: #f4f4f4; padding: 1em; min-height: 10em; white-space: pre-wrap; }
  </style>
</head>
<body>
  <h1>Flask-Sockets session</h1>
{% if user %}
  <p>Logged in as <strong>{{ user }}</strong>. <a href="{{ url_for('logout') }}">Log out</a></p>
  <form id="form">
    <input id="message" autocomplete="off" autofocus placeholder="Type a message">
    <button type="submit">Send</button>
  </form>
  <pre id="log"></pre>
  <script>
    const url = {{ url_for("ws:greet", _external=True)|tojson }};
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
{% else %}
  <p>The socket at <code>/greet</code> only talks to logged-in users.</p>
  <form method="post" action="{{ url_for('login') }}">
    <input name="name" autofocus placeholder="Your name" required>
    <button type="submit">Log in</button>
  </form>
{% endif %}
</body>
</html>
"""


@app.route("/")
def index():
    return render_template_string(PAGE, user=session.get("user"))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the Flask-Sockets session example on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    args = parser.parse_args(argv)
    if app.config["SECRET_KEY"] == DEV_SECRET_KEY:
        app.logger.warning("SECRET_KEY is not set: signing sessions with an insecure development key.")
    flask_sockets_gevent.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
