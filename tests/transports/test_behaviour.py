"""The behaviour every transport must have, written once (see conftest.py
for the transports and :data:`~tests.transports.conftest.DIFFERENCES`)."""

from __future__ import annotations

import time
import uuid

import pytest

from flask_sockets.connection import EXPIRED_CODE
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import Opcode
from tests.conftest import TIMEOUT
from tests.gevent.rawclient import RawClient
from tests.gunicorn.conftest import wait_for_match
from tests.transports.app import MAX_MESSAGE_SIZE
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
