"""A tiny WebSocket client over a raw socket, for sending frames no library would send."""

from __future__ import annotations

import base64
import os
import socket
import struct

from flask_sockets.protocol import Opcode


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, length: int | None = None, mask: bool = True
) -> bytes:
    """A client frame, as the client wants it; ``length`` may lie about the payload's size."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        header += key
    return header + payload


class RawClient:
    def __init__(self, host: str, port: int, path: str = "/", timeout: float = 5.0, headers: str = "") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed during the handshake"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        #: The response's head, as sent.
        self.head = head.decode("latin-1")
        #: The RSV bits (RSV1 = 4: compressed) of the last frame read.
        self.rsv = 0

    def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, length: int | None = None,
        mask: bool = True,
    ) -> None:
        """Send one frame; ``length`` may lie about the payload's size."""
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, rsv=rsv, length=length, mask=mask))

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """The next frame from the server: ``(opcode, payload)``."""
        first, second = self._read(2)
        self.rsv = first >> 4 & 0x7
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(n)

    def read_close(self) -> tuple[int, str]:
        """Skip to the server's close frame; its ``(code, reason)``."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == Opcode.CLOSE:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def close(self) -> None:
        self.sock.close()
