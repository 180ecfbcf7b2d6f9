"""``sockets.disconnect(room, code, reason)`` in one process: the sockets of
the room are closed with the code and reason, the others stay open; on the
test client, the gevent server and the development server; the control
message on the wire and its checks. Across processes and hosts through a
real Redis (and a Redis Cluster): tests/integration/test_disconnect.py."""

from __future__ import annotations

import json
import threading
import typing as t

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed

from flask_sockets.brokers import Disconnect
from flask_sockets.brokers import decode_message
from flask_sockets.brokers import encode_message
from flask_sockets.fanout.broker import decode_published
from flask_sockets.rooms import Rooms
from flask_sockets.testing import SocketTestClient
from tests.conftest import wait_until
from tests.core.test_rooms import any_server as any_server  # noqa: F401  (a fixture)
from tests.core.test_rooms import join
from tests.core.test_rooms import make_app
from tests.core.test_rooms import no_thread_left_running as no_thread_left_running  # noqa: F401


def test_disconnect_closes_the_room_on_the_test_client_with_the_default_code() -> None:
    app, sockets = make_app()
    client = SocketTestClient(app)
    with client.connect("/rooms/user:42") as one, client.connect("/rooms/user:42") as two:
        with client.connect("/rooms/user:7") as other:
            for ws, room in ((one, "user:42"), (two, "user:42"), (other, "user:7")):
                assert ws.receive() == f"joined {room}"
            two.send("join lobby")
            assert two.receive() == "joined lobby"
            sockets.disconnect("user:42", app=app)
            for ws in (one, two):
                assert ws.receive(timeout=5) is None
                assert (ws.close_code, ws.close_reason) == (4401, "Session ended")
            # The other user's socket is open, and the closed ones left every room.
            other.send("say still here")
            assert other.receive(timeout=5) == "still here"
            assert sockets.count("user:42", app=app) == sockets.count("lobby", app=app) == 0
            assert sockets.stats(app=app)["disconnected"] == 2
            # The room lives on: a new socket of the user joins it and is not closed.
            with client.connect("/rooms/user:42") as again:
                assert again.receive() == "joined user:42"
                again.send("say hello")
                assert again.receive(timeout=5) == "hello"
            # Nobody in the room: nothing to close.
            sockets.disconnect("user:42", app=app)
            assert sockets.stats(app=app)["disconnected"] == 2


def test_disconnect_on_real_servers_from_another_thread(any_server: t.Any) -> None:  # noqa: F811
    app, sockets = make_app()
    server = any_server(app)
    with join(server, "user:42") as one, join(server, "user:42") as two, join(server, "user:7") as other:
        thread = threading.Thread(target=sockets.disconnect, args=("user:42", 4403, "Banned: ñ"), kwargs={"app": app})
        thread.start()
        thread.join(5)
        for ws in (one, two):
            with pytest.raises(ClientClosed) as closed:
                ws.recv(5)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "Banned: ñ")
        other.send("say still here")
        assert other.recv(5) == "still here"
        assert sockets.stats(app=app)["disconnected"] == 2
    wait_until(lambda: Rooms.of(app).sockets == 0)


def test_a_disconnect_is_never_taken_for_a_message_or_the_reverse() -> None:
    wire = encode_message("user:42", Disconnect(4401, "Session ended"))
    assert json.loads(wire)["control"] == "disconnect"
    assert decode_message(wire) == ("user:42", Disconnect(4401, "Session ended"))
    assert decode_published(wire).position is None
    # A message whose text is that very JSON is a message, whatever it says.
    assert decode_message(encode_message("user:42", wire)) == ("user:42", wire)
    assert decode_message(encode_message("user:42", wire.encode())) == ("user:42", wire.encode())
    # A control message that says too much or too little is refused as a whole.
    for bad in (
        {"room": "a", "control": "explode"},
        {"room": "a", "control": "disconnect", "code": 1005, "reason": ""},
        {"room": "a", "control": "disconnect", "code": "4401", "reason": ""},
        {"room": "a", "control": "disconnect", "code": 4401},
        {"room": "a", "control": "disconnect", "code": 4401, "reason": "x" * 124},
    ):
        with pytest.raises(ValueError, match="not a Flask-Sockets message"):
            decode_message(json.dumps(bad))


def test_disconnect_checks_its_code_and_reason() -> None:
    app, sockets = make_app()
    for code in (999, 1004, 1005, 1006, 1015, 2999, 5000):
        with pytest.raises(ValueError, match=f"Cannot close sockets with code {code}"):
            sockets.disconnect("a", code, app=app)
    for code in (True, "4401", 4401.0):
        with pytest.raises(TypeError, match="A close code is an int"):
            sockets.disconnect("a", code, app=app)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 123 bytes of UTF-8, not 124"):
        sockets.disconnect("a", 4401, "€" * 41 + "x", app=app)
    with pytest.raises(TypeError, match="A close reason is a str"):
        sockets.disconnect("a", 4401, b"bytes", app=app)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="A room is named by a str"):
        sockets.disconnect(42, app=app)  # type: ignore[arg-type]
    for code in (1000, 1001, 1008, 1011, 1012, 1013, 1014, 3000, 4999):
        sockets.disconnect("a", code, "€" * 41, app=app)  # 123 bytes: the most a close frame holds


def test_a_disconnect_takes_no_place_in_the_history() -> None:
    app, sockets = make_app()
    sockets.history("kept", size=10)
    client = SocketTestClient(app)
    with client.connect("/rooms/kept") as ws:  # the process receives: the broker delivers
        assert ws.receive() == "joined kept"
        first = sockets.publish("kept", "one", app=app)
        assert ws.receive(timeout=5) == "one"
        sockets.disconnect("kept", app=app)
        assert ws.receive(timeout=5) is None
    second = sockets.publish("kept", "two", app=app)
    assert first is not None and second is not None
    assert (second.offset, second.epoch) == (first.offset + 1, first.epoch)
