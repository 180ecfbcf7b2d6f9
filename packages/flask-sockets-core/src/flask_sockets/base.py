"""What every socket class of Flask-Sockets shares (the gevent socket, the
development server's and the test client's): the opcodes, and ``send`` and
``ping`` on top of each class's ``send_frame``."""

from __future__ import annotations

import typing as t

__all__ = ["SocketBase"]


class SocketBase:
    """Mixin: ``send`` and ``ping`` for a class that implements ``send_frame``."""

    __slots__ = ()  # adds no instance state (a subclass may use __slots__)

    OPCODE_CONTINUATION = 0x0
    OPCODE_TEXT = 0x1
    OPCODE_BINARY = 0x2
    OPCODE_CLOSE = 0x8
    OPCODE_PING = 0x9
    OPCODE_PONG = 0xA

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def send(self, message: t.Any, binary: bool | None = None, *, compress: bool = True) -> None:
        """Send a message: text for ``str``, binary for ``bytes`` (or as ``binary`` says).

        :param compress: ``False`` sends this message uncompressed even if
            the connection negotiated permessage-deflate. Use it for a
            message that puts a secret (a token, a session id) next to text
            an attacker can choose: an attacker who sees the compressed
            sizes can guess the secret byte by byte (CRIME/BREACH, RFC 7692
            section 9).
        :raises ConnectionClosed: If the socket is closed.
        """
        if binary is None:
            binary = not isinstance(message, str)
        self.send_frame(message, self.OPCODE_BINARY if binary else self.OPCODE_TEXT, compress)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping frame."""
        self.send_frame(payload, self.OPCODE_PING)
