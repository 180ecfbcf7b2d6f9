"""The request heads the gevent handler parses itself, as gevent's own
parser would."""

from __future__ import annotations

import io

import pytest
from gevent import pywsgi

from flask_sockets_gevent._http import MAX_HEADERS
from flask_sockets_gevent._http import BadRequest
from flask_sockets_gevent._http import HeadersTooLarge
from flask_sockets_gevent._http import read_head

WEBSOCKET_HEAD = (
    b"Host: 127.0.0.1:5000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
HEADS = {
    "websocket": WEBSOCKET_HEAD,
    "none": b"\r\n",
    "spaces and tabs": b"Host: x\r\nA:\t  two words  \r\nB:\r\nC:no-space\r\nD: \t\r\n\r\n",
    "repeated": b"Host: x\r\nCookie: a=1\r\nCookie: b=2\r\nAccept: a\r\naccept: b\r\n\r\n",
    "latin-1": b"Host: x\r\nX-Name: caf\xe9 \xff\r\n\r\n",
    "bare LF": b"Host: x\nUpgrade: websocket\r\nConnection: Upgrade\n\n",
    # http.client's most (it counts the blank line).
    "99 headers": b"Host: x\r\n" + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(98)) + b"\r\n",
}


class _Trickle(io.RawIOBase):
    """A stream that gives at most 7 bytes per read, like a slow client."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self._data.read(min(7, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _readers(data: bytes) -> list[io.BufferedReader]:
    # All in the buffer at once (one regular expression), or a piece at a time
    # (line by line).
    return [io.BufferedReader(io.BytesIO(data)), io.BufferedReader(_Trickle(data))]  # type: ignore[arg-type]


@pytest.mark.parametrize("head", HEADS.values(), ids=HEADS.keys())
def test_heads_parse_as_gevent_parses_them(head):
    expected = pywsgi.headers_factory(io.BytesIO(head))
    for rfile in _readers(head + b"BODY"):
        message = read_head(rfile)
        assert type(message) is type(expected)
        assert message.items() == expected.items()
        assert list(message.headers) == list(expected.headers)
        assert message.status == expected.status == ""
        for name in ("host", "accept", "cookie", "b", "missing"):
            assert message.get_all(name) == expected.get_all(name)
        assert message.getheader("Host") == expected.getheader("Host")
        assert rfile.read() == b"BODY"  # the head, no more


@pytest.mark.parametrize(
    "head",
    [b"Host: x\r\nBad line\r\n\r\n", b"Host: x\r\n folded\r\n\r\n", b"Host : x\r\n\r\n", b"Host: a\x00b\r\n\r\n"],
)
def test_a_malformed_head_is_refused_however_it_arrives(head):
    for rfile in _readers(head):
        with pytest.raises(BadRequest):
            read_head(rfile)


def test_the_documented_most_headers_are_read():
    # MAX_HEADERS (100) headers; gevent's parser refused 100 (a 400).
    head = b"Host: x\r\n" + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(MAX_HEADERS - 1)) + b"\r\n"
    for rfile in _readers(head):
        assert len(read_head(rfile)) == MAX_HEADERS
    with pytest.raises(HeadersTooLarge):
        read_head(io.BufferedReader(io.BytesIO(head[:-2] + b"X-Last: 1\r\n\r\n")))


def test_a_nel_byte_does_not_end_the_head():
    # email's parser splits lines at U+0085 (NEL, byte 0x85 in latin-1) and
    # takes what follows for the body: the headers after it would vanish.
    head = b"X-A: a\x85b\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
    for rfile in _readers(head):
        message = read_head(rfile)
        assert message.items() == [("X-A", "a\x85b"), ("Host", "x"), ("Content-Length", "4")]


def test_the_usual_names_and_values_are_shared_between_connections():
    # Each open WebSocket keeps its request's message until it closes.
    first, second = (read_head(io.BufferedReader(io.BytesIO(WEBSOCKET_HEAD))) for _ in range(2))
    for (name, value), (other_name, other_value) in zip(first.items(), second.items()):
        assert name is other_name
        if name != "Sec-WebSocket-Key":
            assert value is other_value or name == "Host"
