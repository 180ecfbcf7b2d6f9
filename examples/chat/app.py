"""Chat: rooms, presence, live messages and history, on one process or many.

A person picks a name (an HTTP form; the name is kept in the Flask session),
joins a room, sees who is there and chats. The room page talks to the
server with ``flask-sockets.js``, the browser client the extension serves,
over one envelope socket (``/live``, ``sockets.envelope``):

- each room keeps its last 100 messages (``SOCKETS_HISTORY_SIZE``): the page
  shows the last ones when it opens (it subscribes from a little before the
  room's position, ``sockets.position(room)``), and a page whose connection
  drops gets what it missed when it reconnects, or is told it cannot
  (``unrecovered``);
- room events are published with ``flask_sockets.envelope.publish`` as JSON
  values; who is there is the room's presence (``presence=`` of the
  envelope, ``sockets.presence(room)`` and an ``@sockets.on_presence``
  callback);
- in one process (``python examples/chat/app.py``), with the default
  in-process backend, or across gunicorn workers and hosts when
  ``SOCKETS_MESSAGE_QUEUE`` names a Redis server
  (``SOCKETS_MESSAGE_QUEUE=redis://127.0.0.1:6379/0 gunicorn -k
  flask_sockets_gunicorn.worker -w 2 --chdir examples/chat app:app``).

See README.md beside this file.

On the socket (the envelope's frames, docs/client.rst), the client
subscribes to rooms (``{"t": "sub", "room": ...}``) and says something with
``{"t": "msg", "data": {"type": "say", "room": ..., "text": ...}}``. It gets:

- ``{"t": "msg", "data": ...}`` for itself: ``welcome`` (its ``id`` and
  ``name``, and the ``worker``: the pid of the process serving it) and
  ``error`` (with a ``text``);
- ``{"t": "msg", "room", "offset", "epoch", "data": ...}`` for each room
  event: ``presence`` (the room's ``members``, a list of ``{"id", "name"}``
  sorted by name, and the ``change`` that caused it: ``{"kind": "join" |
  "leave", "id", "name"}``) and ``say`` (with ``id``, ``name`` and
  ``text``).
"""

# Served by gevent (python app.py): gevent must patch the standard library
# before anything else imports it. Not when imported by `flask run` or
# gunicorn: the development server's threads need no patching (and Ctrl+C
# would print gevent's report of the KeyboardInterrupt), the worker patches.
if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import uuid  # noqa: E402

from flask import Flask  # noqa: E402
from flask import abort  # noqa: E402
from flask import redirect  # noqa: E402
from flask import render_template  # noqa: E402
from flask import request  # noqa: E402
from flask import session  # noqa: E402
from flask import url_for  # noqa: E402

import flask_sockets_gevent  # noqa: E402
from flask_sockets import MessageQueueUnavailable  # noqa: E402
from flask_sockets import Sockets  # noqa: E402
from flask_sockets.envelope import publish  # noqa: E402

#: Used when the SECRET_KEY environment variable is not set. Not a secret!
DEV_SECRET_KEY = "dev-only-insecure-chat-key"
#: Room names: letters, digits, '-' and '_'.
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: Longest name and message, in characters.
MAX_NAME, MAX_TEXT = 32, 2000
#: How many of a room's last messages its page shows when it opens.
BACKLOG = 50
#: What a person sees when the message queue is down.
UNAVAILABLE = "The chat is unavailable right now; try again soon."

app = Flask(__name__)
# Every worker and host must sign sessions with the same key.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or DEV_SECRET_KEY
# None: this process only. A Redis URL: every worker and host using that Redis.
app.config["SOCKETS_MESSAGE_QUEUE"] = os.environ.get("SOCKETS_MESSAGE_QUEUE") or None
# Seconds after which the presence of a process that died (SIGKILL, host gone)
# vanishes; unset: the default of Flask-Sockets (15).
if os.environ.get("SOCKETS_PRESENCE_TTL"):
    app.config["SOCKETS_PRESENCE_TTL"] = float(os.environ["SOCKETS_PRESENCE_TTL"])
# Each room keeps its last 100 messages for 5 minutes, so that a page that
# opens shows the last ones and a page that reconnects gets what it missed
# (docs: "Reliable delivery").
app.config["SOCKETS_HISTORY_SIZE"] = int(os.environ.get("SOCKETS_HISTORY_SIZE") or 100)
sockets = Sockets(app)


# -- pages ---------------------------------------------------------------------


@app.get("/")
def index():
    return render_template("index.html", name=session.get("name"), next=_safe_next(request.args.get("next")))


@app.post("/name")
def set_name():
    name = " ".join(request.form.get("name", "").split())[:MAX_NAME]
    if not name:
        return render_template("index.html", name=None, error="Please pick a name.", next=None), 400
    session["name"] = name
    return redirect(_safe_next(request.form.get("next")) or url_for("index"), code=303)


@app.post("/logout")
def logout():
    session.pop("name", None)
    return redirect(url_for("index"), code=303)


@app.get("/go")
def go():
    """The room form: on to the room's page."""
    room = request.args.get("room", "").strip()
    if not ROOM_NAME.fullmatch(room):
        error = "Room names use letters, digits, - and _ (at most 32)."
        return render_template("index.html", name=session.get("name"), error=error, next=None), 400
    return redirect(url_for("room_page", room=room), code=303)


@app.get("/rooms/<room>")
def room_page(room):
    if not ROOM_NAME.fullmatch(room):
        abort(404)
    if "name" not in session:
        return redirect(url_for("index", next=request.path), code=303)
    # The page subscribes from a little before the room's position: it shows
    # the room's last messages, then the live ones.
    try:
        position = sockets.position(room)
    except MessageQueueUnavailable:
        position = None
    since = {"offset": max(0, position.offset - BACKLOG), "epoch": position.epoch} if position else None
    return render_template(
        "room.html",
        room=room,
        name=session["name"],
        chat={"socketUrl": url_for("ws:live_socket", _external=True), "room": room, "since": since},
    )


def _safe_next(path):
    """Only paths on this site (no open redirects)."""
    return path if path and path.startswith("/") and not path.startswith("//") else None


# -- the socket ----------------------------------------------------------------


@sockets.route("/live", defer_accept=True)
def live_socket(ws):
    # Before the handshake (defer_accept=True: it waits for the first send):
    # an HTTP 403, not an opened socket.
    name = session.get("name")
    if name is None:
        abort(403)
    me = {"id": uuid.uuid4().hex[:12], "name": name}
    # Rooms with a valid name only; in each, present as me. Everyone in a
    # room learns of the join from on_presence below; leaving (the client
    # unsubscribes or goes, or the process dies) is automatic.
    envelope = sockets.envelope(ws, authorize=ROOM_NAME.fullmatch, presence=lambda room: me)
    envelope.send({"type": "welcome", "worker": os.getpid(), **me})
    for event in envelope:  # the data of the client's {"t": "msg"} frames
        if not isinstance(event, dict) or event.get("type") != "say":
            continue
        room, text = event.get("room"), event.get("text")
        if room in sockets.rooms(ws) and isinstance(text, str) and text.strip():
            _publish(envelope, room, {"type": "say", **me, "text": text[:MAX_TEXT]})


@sockets.on_presence
def presence_changed(change):
    """Someone joined or left a room (once per change, in one process of
    the deployment): tell the room who is there now."""
    try:
        entries = sockets.presence(change.room).values()
    except MessageQueueUnavailable:
        app.logger.warning("Could not read the presence of room %r: the message queue is unavailable", change.room)
        return
    # Each entry is what a socket joined with: {"id": ..., "name": ...}.
    members = sorted(entries, key=lambda member: (member["name"].casefold(), member["id"]))
    event = {"type": "presence", "members": members, "change": {"kind": change.kind, **change.data}}
    _publish(None, change.room, event)


def _publish(envelope, room, event):
    """Publish ``event`` to the room (kept in its history); if the message
    queue is down, tell ``envelope``'s client."""
    try:
        publish(room, event)
    except MessageQueueUnavailable:
        app.logger.warning("Could not publish to room %r: the message queue is unavailable", room)
        if envelope is not None:
            envelope.send({"type": "error", "text": UNAVAILABLE})


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the Flask-Sockets chat example on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    args = parser.parse_args(argv)
    if app.config["SECRET_KEY"] == DEV_SECRET_KEY:
        app.logger.warning("SECRET_KEY is not set: signing sessions with an insecure development key.")
    flask_sockets_gevent.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
