"""The threaded socket's reads: an idle connection waits with a small buffer.

``recv(n)`` allocates its n bytes before it blocks, so the size of the read
an idle connection waits in is memory each idle connection holds
(bench/RESULTS.md, section 7, the threaded path)."""

from __future__ import annotations

import os
import socket
import struct
import threading

from flask_sockets.threaded import _READ_SIZE
from flask_sockets.threaded import _WAIT_READ_SIZE
from flask_sockets.threaded import ThreadedWebSocket
from tests.conftest import TIMEOUT


class RecordingSocket(socket.socket):
    """A socket that remembers the size of every ``recv``."""

    sizes: list[int]

    def recv(self, size: int, *args: int) -> bytes:
        self.sizes.append(size)
        return super().recv(size, *args)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + body


def test_an_idle_connection_waits_in_a_small_read_and_big_messages_read_big() -> None:
    server_end, client = socket.socketpair()
    sock = RecordingSocket(server_end.family, server_end.type, fileno=server_end.detach())
    sock.sizes = []
    client.settimeout(TIMEOUT)
    environ = {
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    ws = ThreadedWebSocket(environ, sock)
    try:
        ws.accept()
        big = os.urandom(300_000)
        # The socket pair's buffers are smaller than the burst: a thread sends it.
        burst = masked_frame(0x1, b"hello") + masked_frame(0x2, big) + masked_frame(0x1, b"again")
        writer = threading.Thread(target=client.sendall, args=(burst,))
        writer.start()
        assert ws.receive() == "hello"
        assert sock.sizes == [_WAIT_READ_SIZE]  # the first read waited, small
        assert ws.receive() == big  # whole, across many reads
        assert _READ_SIZE in sock.sizes  # a full small read is followed by big ones
        assert ws.receive() == "again"
        writer.join(TIMEOUT)
        client.sendall(masked_frame(0x1, b"x" * 32))
        assert ws.receive() == "x" * 32
        # The read that ended the burst was short: the next wait is small again.
        assert sock.sizes[-1] == _WAIT_READ_SIZE
        assert ws._read_size == _WAIT_READ_SIZE
    finally:
        ws.abort()
        sock.close()
        client.close()
