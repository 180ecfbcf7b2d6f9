"""The behaviour every transport must have, written once (see conftest.py
for the transports and :data:`~tests.transports.conftest.DIFFERENCES`)."""

from __future__ import annotations

import signal
import struct
import time
import typing as t
import uuid

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from flask_sockets.connection import EXPIRED_CODE
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from flask_sockets.ratelimit import CONTROL_RATE_REASON
from flask_sockets.ratelimit import ERROR_LIMIT_REASON
from flask_sockets.ratelimit import MESSAGE_RATE_REASON
from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.gevent.rawclient import RawClient
from tests.gevent.rawclient import encode_frame
from tests.gunicorn.conftest import wait_for_match
from tests.transports.app import BUSY_MESSAGE_SIZE
from tests.transports.app import LIMITED_BURST
from tests.transports.app import LIMITED_RATE
from tests.transports.app import MAX_MESSAGE_SIZE
from tests.transports.app import PING_INTERVAL
from tests.transports.app import PING_TIMEOUT
from tests.transports.conftest import Transport
from tests.transports.conftest import lacks


def test_echo_text_and_binary(transport: Transport):
    """Text comes back as text, binary as binary, byte for byte."""
    with transport.connect(f"/echo/{uuid.uuid4()}") as ws:
        ws.send("text é")
        assert ws.recv() == "text é"
        ws.send(b"\x00\xffbinary")
        assert ws.recv() == b"\x00\xffbinary"


def test_client_close_code_reaches_the_handler(transport: Transport):
    """The client closes with 4001: the handler sees 4001 and the reason, and echoes the code."""
    id = str(uuid.uuid4())
    with transport.connect(f"/echo/{id}") as ws:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.close(4001, "client bye")
        assert ws.close_code == 4001
    with transport.connect(f"/close-of/{id}") as ws:
        assert ws.recv() == "(4001, 'client bye')"


def test_handler_close_code_reaches_the_client(transport: Transport):
    """The handler closes with 4000 "bye": the client gets that close frame."""
    with transport.connect("/closes") as ws:
        assert ws.recv() is None
        assert (ws.close_code, ws.close_reason) == (4000, "bye")


def test_frames_and_codes_no_endpoint_may_send_are_refused(transport: Transport):
    """send_frame() of a close or continuation frame, a ping over 125 bytes
    and close() with a reserved code raise ValueError; nothing goes out and
    the socket stays usable (it then closes normally)."""
    with transport.connect("/refused-frames") as ws:
        assert ws.recv() == " ".join(["ValueError"] * 5)
        assert ws.recv() is None
        assert ws.close_code == CloseCode.NORMAL_CLOSURE


def test_refusal_before_the_handshake_is_an_http_status(transport: Transport):
    """abort(403) in a defer_accept=True handler answers 403 instead of the 101."""
    assert transport.refusal_status("/forbidden") == 403


def test_message_over_the_size_limit_closes_1009(transport: Transport):
    """A message over SOCKETS_MAX_MESSAGE_SIZE closes the socket with 1009; one at the limit is echoed."""
    with transport.connect(f"/echo/{uuid.uuid4()}") as ws:
        ws.send("x" * MAX_MESSAGE_SIZE)
        assert ws.recv() == "x" * MAX_MESSAGE_SIZE
        ws.send("x" * (MAX_MESSAGE_SIZE + 1))
        assert ws.recv() is None
        assert ws.close_code == CloseCode.MESSAGE_TOO_BIG


def test_size_limit_applies_at_the_frame_header(transport: Transport):
    """A frame header announcing more than the limit closes 1009 at once, without its payload being sent."""
    if reason := lacks(transport, "raw-frames"):
        pytest.skip(reason)
    assert transport.server is not None
    client = RawClient(transport.server.host, transport.server.port, f"/echo/{uuid.uuid4()}")
    try:
        assert client.status == 101
        client.send_frame(Opcode.BINARY, b"", length=1 << 30)
        code, _ = client.read_close()
        assert code == CloseCode.MESSAGE_TOO_BIG
    finally:
        client.close()


def test_handler_exception_closes_1011_and_is_logged(transport: Transport):
    """A handler that raises: the client gets 1011 "Internal Server Error", and the
    server logs the traceback through Flask ("Exception on /boom [GET]")."""
    mark = len(transport.log())
    with transport.connect("/boom") as ws:
        assert ws.recv() == "about to fail"
        assert ws.recv() is None
        assert (ws.close_code, ws.close_reason) == (CloseCode.INTERNAL_ERROR, "Internal Server Error")
    log = wait_for_match(lambda: transport.log()[mark:], r"^RuntimeError: handler exploded on purpose$").string
    assert "Exception on /boom [GET]" in log
    assert "Traceback (most recent call last)" in log


@pytest.mark.parametrize("offered", [True, False], ids=["deflate", "none"])
def test_compression_is_negotiated_when_offered(transport: Transport, offered: bool):
    """permessage-deflate is agreed when the client offers it (and only then); messages still round-trip."""
    with transport.connect(f"/echo/{uuid.uuid4()}", compression="deflate" if offered else None) as ws:
        if offered:
            assert ws.extensions is not None and ws.extensions.startswith("permessage-deflate")
        else:
            assert ws.extensions is None
        ws.send("compressible " * 50)
        assert ws.recv() == "compressible " * 50


def test_keepalive_closes_a_peer_that_never_answers_pings(transport: Transport):
    """A client that never answers pings is pinged after PING_INTERVAL of
    silence and closed with 1011 "keepalive ping timeout" PING_TIMEOUT
    later; the handler's receive() returns None and it sees that close."""
    if reason := lacks(transport, "silent-peer"):
        pytest.skip(reason)
    assert transport.server is not None
    id = str(uuid.uuid4())
    client = RawClient(transport.server.host, transport.server.port, f"/keepalive/{id}")
    try:
        assert client.status == 101
        opcode, _ = client.read_frame()  # nothing sent yet: the keepalive's ping
        assert opcode == Opcode.PING
        started = time.monotonic()
        assert client.read_close() == (CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        # (Bounded loosely: a loaded machine is slow, but not by a whole TIMEOUT.)
        assert time.monotonic() - started < PING_TIMEOUT + TIMEOUT / 2
    finally:
        client.close()
    with transport.connect(f"/close-of/{id}") as ws:
        assert ws.recv() == repr((int(CloseCode.INTERNAL_ERROR), "keepalive ping timeout"))


def test_keepalive_leaves_a_peer_that_answers_alone(transport: Transport):
    """A client that answers pings (websockets' and the test client's ends
    do) stays open over several rounds of ping and pong."""
    id = str(uuid.uuid4())
    with transport.connect(f"/keepalive/{id}") as ws:
        time.sleep(4 * (PING_INTERVAL + PING_TIMEOUT))  # quiet: the server pings, the client answers
        ws.send("still here")
        assert ws.recv() == "still here"
        ws.close(CloseCode.NORMAL_CLOSURE, "done")
    with transport.connect(f"/close-of/{id}") as ws:
        assert ws.recv() == repr((int(CloseCode.NORMAL_CLOSURE), "done"))


def test_server_shutdown_closes_open_sockets_1012(transport: Transport, own_server: t.Callable[[], Process]):
    """The server is told to stop (SIGTERM) with a socket open: the client
    gets close 1012 "Server restarting" (SOCKETS_SHUTDOWN_CODE's default:
    come back, after your backoff), the handler's receive() returns None
    and it sees that close, and the server exits."""
    if reason := lacks(transport, "server-shutdown"):
        pytest.skip(reason)
    process = own_server()
    id = str(uuid.uuid4())
    with ws_connect(f"{process.server.ws_url}/until-shutdown/{id}", open_timeout=TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        process.popen.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None, "the server ended the connection without a close frame"
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (CloseCode.SERVICE_RESTART, "Server restarting")
    assert process.popen.wait(TIMEOUT) == 0
    assert f"until-shutdown {id} saw 1012 'Server restarting'" in process.output()


# -- flood control -------------------------------------------------------------------------


def _flood(ws: t.Any, messages: int) -> int:
    """Send ``messages`` small messages without reading, then read: the
    echoes that came back before the server's close (``recv`` is ``None``)."""
    for _ in range(messages):
        try:
            ws.send("f")
        except Exception:  # the server's close frame arrived: sending is over (websockets' or ours)
            break
    echoes = 0
    while ws.recv() is not None:
        echoes += 1
    return echoes


def test_a_flood_of_small_messages_closes_1008_by_default(transport: Transport):
    """Flood control is on by default (100 messages a second, 200 at once):
    1,000 small messages sent at once get their first 200 (and the few the
    rate adds meanwhile) echoed, then a close with 1008. The server warns,
    naming the key that sets the limit."""
    mark = len(transport.log())
    id = str(uuid.uuid4())
    with transport.connect(f"/echo/{id}") as ws:
        echoes = _flood(ws, 1000)
        assert (ws.close_code, ws.close_reason) == (CloseCode.POLICY_VIOLATION, MESSAGE_RATE_REASON)
    assert 200 <= echoes < 1000
    wait_for_match(
        lambda: transport.log()[mark:],
        rf"Closed a WebSocket to /echo/{id} with 1008 \(message rate limit exceeded; see SOCKETS_MESSAGE_RATE\)",
    )


def test_a_route_sets_its_own_flood_control_and_a_client_within_it_is_untouched(transport: Transport):
    """``/limited`` takes 20 messages a second, 5 at once. A client sending
    one every 60 ms for 1.2 s (20 messages: 4 times the burst, so only the
    refill lets them through) is untouched, while on the same server a
    flooding client is closed 1008 after about 5."""
    with transport.connect("/limited") as calm:
        began = time.monotonic()
        for i in range(4 * LIMITED_BURST):
            time.sleep(max(0.0, began + i * 1.2 / LIMITED_RATE - time.monotonic()))
            calm.send(f"calm {i}")
            if i == 2:
                with transport.connect("/limited") as flood:
                    echoes = _flood(flood, 200)
                    assert (flood.close_code, flood.close_reason) == (CloseCode.POLICY_VIOLATION, MESSAGE_RATE_REASON)
                assert LIMITED_BURST <= echoes < 20
            assert calm.recv() == f"calm {i}"
        calm.close()
        assert calm.close_code == CloseCode.NORMAL_CLOSURE


def test_the_error_budget_closes_1008(transport: Transport):
    """The app counts each message it rejects (``ws.count_error()``): 20
    errors pass, the 21st closes with 1008 "error limit exceeded"."""
    with transport.connect("/strict") as ws:
        ws.send("ok")
        assert ws.recv() == "ok"
        for _ in range(20):
            ws.send("bad")
            assert ws.recv() == "rejected"
        ws.send("bad")
        assert ws.recv() is None
        assert (ws.close_code, ws.close_reason) == (CloseCode.POLICY_VIOLATION, ERROR_LIMIT_REASON)


def test_a_ping_flood_is_answered_up_to_its_cap_then_closed_1008(transport: Transport):
    """100 pings at once: the first 20 (the control burst) are answered,
    then the socket closes with 1008 "ping rate limit exceeded"."""
    if reason := lacks(transport, "raw-frames"):
        pytest.skip(reason)
    assert transport.server is not None
    client = RawClient(transport.server.host, transport.server.port, f"/echo/{uuid.uuid4()}")
    try:
        assert client.status == 101
        client.sock.sendall(b"".join(encode_frame(Opcode.PING, b"%d" % i) for i in range(100)))
        pongs = []
        while True:
            opcode, payload = client.read_frame()
            if opcode == Opcode.CLOSE:
                break
            assert opcode == Opcode.PONG
            pongs.append(payload)
        assert pongs == [b"%d" % i for i in range(20)]
        assert (struct.unpack("!H", payload[:2])[0], payload[2:].decode()) == (
            CloseCode.POLICY_VIOLATION,
            CONTROL_RATE_REASON,
        )
    finally:
        client.close()


# -- sessions that end ---------------------------------------------------------------------


def test_session_expiry_closes_4401_at_its_end(transport: Transport):
    """ws.expire_in(1): the server closes with 4401 "session expired" (a code
    that tells the client to re-authenticate, not to retry), at that time and not before."""
    with transport.connect("/session") as ws:
        ws.send("expire_in 1")
        assert ws.recv() == "expires"
        given = time.monotonic()
        ws.send("still open")
        assert ws.recv() == "still open"
        assert ws.recv() is None
        closed_after = time.monotonic() - given
        assert (ws.close_code, ws.close_reason) == (EXPIRED_CODE, "session expired")
    # (Not before its end; the upper bound only catches an expiry that never fired on time.)
    assert 0.9 <= closed_after < TIMEOUT


def test_session_extended_before_its_end_stays_open(transport: Transport):
    """An end moved later before it comes (an in-band token refresh) holds: the
    socket is still open past the first end, and closes with 4401 at the new one."""
    with transport.connect("/session") as ws:
        ws.send("expire_in 0.6")
        assert ws.recv() == "expires"
        given = time.monotonic()
        time.sleep(0.3)
        ws.send("expire_in 1.2")  # the new end: about 1.5 s after the first was given
        assert ws.recv() == "expires"
        time.sleep(max(0.0, given + 0.9 - time.monotonic()))  # past the first end
        ws.send("after the first end")
        assert ws.recv() == "after the first end"
        assert ws.recv() is None
        closed_after = time.monotonic() - given
        assert (ws.close_code, ws.close_reason) == (EXPIRED_CODE, "session expired")
    assert closed_after >= 1.4


def test_session_end_during_a_send_still_closes_4401_after_it(transport: Transport):
    """The session ends while the handler's send of a 16 MiB message waits
    for a client that reads nothing yet: the timer may not write into the
    middle of that frame, nor cut a live client; once the client reads, it
    gets the whole message, then the 4401 close frame."""
    if reason := lacks(transport, "raw-frames"):
        pytest.skip(reason)
    assert transport.server is not None
    client = RawClient(transport.server.host, transport.server.port, "/session-busy", timeout=TIMEOUT)
    try:
        assert client.status == 101
        time.sleep(1.0)  # past the end (0.3 s), reading nothing
        first, second = client._read(2)
        assert (first & 0x0F, second & 0x7F) == (Opcode.BINARY, 127)
        (size,) = struct.unpack("!Q", client._read(8))
        assert size == BUSY_MESSAGE_SIZE
        payload = bytearray(client.buffer[:size])
        client.buffer = client.buffer[size:]
        while len(payload) < size:
            chunk = client.sock.recv(min(1 << 20, size - len(payload)))
            assert chunk, "the server cut the connection inside the message"
            payload += chunk
        assert client.read_close() == (EXPIRED_CODE, "session expired")
        client.send_frame(Opcode.CLOSE, struct.pack("!H", EXPIRED_CODE))
    finally:
        client.close()
