"""The one app every transport serves in ``tests/transports``.

Imported by the test client and the development server in the test
process, by gunicorn as ``tests.transports.app:app`` and by
:mod:`tests.transports.run_gevent` in subprocesses.
"""

from __future__ import annotations

import threading

from flask import Flask
from flask import abort

from flask_sockets import Sockets

#: Small, so that a test can go over it cheaply.
MAX_MESSAGE_SIZE = 1024
#: The keepalive of /keepalive: small, so that a test sees several rounds in a second.
PING_INTERVAL, PING_TIMEOUT = 0.2, 0.3

app = Flask(__name__)
app.config.update(SOCKETS_MAX_MESSAGE_SIZE=MAX_MESSAGE_SIZE)
sockets = Sockets(app)

#: ``(close_code, close_reason)`` the /echo handler saw, by the ``id`` its client gave.
_closes: dict[str, tuple[int | None, str | None]] = {}
_closes_changed = threading.Condition()


@sockets.route("/echo/<id>")
def echo(ws, id):
    """Echo every message; record how the client closed."""
    _echo_and_record(ws, id)


def _echo_and_record(ws, id):
    while (message := ws.receive()) is not None:
        ws.send(message)
    with _closes_changed:
        _closes[id] = (ws.close_code, ws.close_reason)
        _closes_changed.notify_all()


@sockets.route("/keepalive/<id>", defer_accept=True)
def keepalive(ws, id):
    """/echo with a keepalive of PING_INTERVAL and PING_TIMEOUT seconds
    (set before the handshake is answered, when the keepalive starts)."""
    ws.ping_interval, ws.ping_timeout = PING_INTERVAL, PING_TIMEOUT
    ws.accept()
    _echo_and_record(ws, id)


@sockets.route("/until-shutdown/<id>")
def until_shutdown(ws, id):
    """Echo until the socket closes, then log how it closed (the server
    stops meanwhile: the log is what a test can still read)."""
    while (message := ws.receive()) is not None:
        ws.send(message)
    app.logger.warning("until-shutdown %s saw %s %r", id, ws.close_code, ws.close_reason)


@sockets.route("/close-of/<id>")
def close_of(ws, id):
    """Send the close the /echo handler of ``id`` saw (it records it after
    echoing the close frame, so this may come first: wait a little)."""
    with _closes_changed:
        _closes_changed.wait_for(lambda: id in _closes, timeout=5)
        ws.send(repr(_closes.get(id)))


@sockets.route("/closes")
def server_closes(ws):
    ws.close(4000, "bye")


@sockets.route("/boom")
def boom(ws):
    ws.send("about to fail")
    raise RuntimeError("handler exploded on purpose")


@sockets.route("/forbidden", defer_accept=True)
def forbidden(ws):
    abort(403)


@sockets.route("/refused-frames")
def refused_frames(ws):
    """Frames and close codes no endpoint may send: each raises ValueError."""
    errors = []
    for call in (
        lambda: ws.send_frame(b"\x03\xe8", ws.OPCODE_CLOSE),
        lambda: ws.send_frame(b"more", ws.OPCODE_CONTINUATION),
        lambda: ws.send_frame(b"p" * 126, ws.OPCODE_PING),
        lambda: ws.close(1006),
        lambda: ws.close(999),
    ):
        try:
            call()
        except ValueError:
            errors.append("ValueError")
    ws.send(" ".join(errors))


#: The flood control of ``/limited``: 20 messages a second, 5 at once.
LIMITED_RATE, LIMITED_BURST = 20, 5


@sockets.route("/limited", flood_control={"message_rate": LIMITED_RATE, "message_burst": LIMITED_BURST})
def limited(ws):
    """Echo, under a route's own (small) flood control."""
    while (message := ws.receive()) is not None:
        ws.send(message)


@sockets.route("/strict")
def strict(ws):
    """Echo "ok"; anything else is an error the app counts (the error budget)."""
    while (message := ws.receive()) is not None:
        if message == "ok":
            ws.send("ok")
        elif ws.count_error():
            ws.send("rejected")


@sockets.route("/session")
def session(ws):
    """``expire_in <seconds>`` gives the session an end (again: moves it)
    and answers ``expires``; anything else is echoed."""
    while (message := ws.receive()) is not None:
        command, _, value = message.partition(" ")
        if command == "expire_in":
            ws.expire_in(float(value))
            ws.send("expires" if ws.expires_at is not None else "never")
        else:
            ws.send(message)


#: The message /session-busy sends: more than the kernel's buffers hold,
#: so that its send is still under way at the session's end.
BUSY_MESSAGE_SIZE = 16 * 1024 * 1024


@sockets.route("/session-busy")
def session_busy(ws):
    """The session ends in 0.3 s, while the handler sends a message the
    client does not read at first: the 4401 close frame must wait for it."""
    ws.expire_in(0.3)
    ws.send(b"x" * BUSY_MESSAGE_SIZE)
    while ws.receive() is not None:
        pass
