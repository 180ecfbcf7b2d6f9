"""The socket object handlers receive when served by :mod:`flask_sockets_gevent`.

It is gevent-websocket's ``WebSocket`` (same ``send``, ``receive``,
``send_frame``, ``close`` and ``closed``) with these fixes:

- The handshake is answered lazily: ``101 Switching Protocols`` goes out
  when the handler first uses the socket or calls :meth:`WebSocket.accept`,
  so an app can still refuse the connection with a real HTTP response.
- ``close(code, reason)`` puts the code in the close frame (0.10.1 sends
  only the reason, which is not a valid close frame).
- The peer's close code and reason are kept in ``close_code`` and
  ``close_reason``.
- A peer that drops the TCP connection makes ``receive()`` return ``None``
  (close code 1006) instead of raising from deep inside the frame reader.
- Using a closed socket raises :exc:`ConnectionClosed`, which both
  gevent-websocket's ``WebSocketError`` and
  :exc:`flask_sockets.ConnectionClosed` catch.
- Frames sent from several greenlets are never interleaved.
"""

from __future__ import annotations

import struct
import typing as t

from gevent.lock import RLock
from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.websocket import Header
from geventwebsocket.websocket import WebSocket as _BaseWebSocket

import flask_sockets

if t.TYPE_CHECKING:  # pragma: no cover
    from .handler import WebSocketHandler

__all__ = ["ConnectionClosed", "WebSocket"]

#: No close frame was received: the peer dropped the connection (RFC 6455, 7.1.5).
CLOSE_ABNORMAL = 1006


class ConnectionClosed(flask_sockets.ConnectionClosed, WebSocketError):  # type: ignore[misc]
    """The socket is closed; it can neither send nor receive."""


class WebSocket(_BaseWebSocket):  # type: ignore[misc]
    """A server-side WebSocket connection (see the module docstring)."""

    handler: WebSocketHandler
    # Set to None once the connection is closed.
    stream: t.Any
    raw_write: t.Any
    raw_read: t.Any

    def __init__(self, environ: dict[str, t.Any], stream: t.Any, handler: WebSocketHandler) -> None:
        super().__init__(environ, stream, handler)
        #: ``True`` once ``101 Switching Protocols`` has been sent.
        self.accepted = False
        #: The close code the peer sent, ``1006`` if it vanished without
        #: one, or ``None`` while the connection is open or if we closed first.
        self.close_code: int | None = None
        #: The close reason the peer sent.
        self.close_reason: str | None = None
        self._send_lock = RLock()

    def __del__(self) -> None:
        # gevent-websocket closes from __del__; the handler closes us instead,
        # and an unaccepted socket must never be answered from a finaliser.
        pass

    def accept(self, subprotocol: str | None = None, headers: t.Sequence[tuple[str, str]] = ()) -> None:
        """Send ``101 Switching Protocols`` now, with the optional
        ``Sec-WebSocket-Protocol`` and extra response headers (a
        ``Set-Cookie``, say). Sending or receiving accepts implicitly."""
        if self.accepted:
            return
        self.handler.send_handshake(subprotocol, headers)
        self.accepted = True

    def receive(self) -> str | bytearray | None:
        """Return the next message; ``None`` once the connection is closed."""
        self.accept()
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        try:
            return t.cast("str | bytearray | None", self.read_message())
        except UnicodeError:
            self.close(1007, "Invalid UTF-8")
        except ProtocolError:
            self.close(1002, "Protocol error")
        except OSError:
            # WebSocketError (an OSError) for a truncated frame, or the socket itself.
            self._drop(CLOSE_ABNORMAL)
        return None

    def handle_close(self, header: Header, payload: bytes) -> None:
        if len(payload) == 1:
            raise ProtocolError("Invalid close frame: 1 byte payload")
        code = struct.unpack("!H", payload[:2])[0] if payload else 1005
        reason = payload[2:].decode("utf-8")  # UnicodeError -> 1007
        if payload and not self._is_valid_close_code(code):
            raise ProtocolError(f"Invalid close code {code}")
        self.close_code, self.close_reason = code, reason
        # Echo the peer's code, as RFC 6455 5.5.1 asks.
        self.close(code if payload else 1000)

    def send_frame(self, message: t.Any, opcode: int) -> None:
        """Send one frame. Frames from several greenlets never interleave."""
        self.accept()
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        if opcode in (self.OPCODE_TEXT, self.OPCODE_PING):
            message = self._encode_bytes(message)
        elif opcode == self.OPCODE_BINARY:
            message = bytes(message)
        header = Header.encode_header(True, opcode, b"", len(message), 0)
        with self._send_lock:
            if self.closed:  # closed by another greenlet while we waited
                raise ConnectionClosed("Connection is already closed")
            try:
                self.raw_write(bytes(header) + message)
            except OSError as e:
                self._drop(CLOSE_ABNORMAL)
                raise ConnectionClosed(f"Socket is dead: {e}") from e

    def send(self, message: t.Any, binary: bool | None = None) -> None:
        """Send a message: text for ``str``, binary for ``bytes`` (or as ``binary`` says)."""
        if binary is None:
            binary = not isinstance(message, str)
        self.send_frame(message, self.OPCODE_BINARY if binary else self.OPCODE_TEXT)

    def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        """Send a close frame with ``code`` and ``message`` (the reason) and
        close the connection. Closing a closed socket does nothing."""
        if self.closed:
            return
        self.accept()
        if isinstance(message, str):
            # A close frame's reason may hold 123 bytes; never cut a character in half.
            message = message.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
        try:
            self.send_frame(struct.pack("!H", code) + bytes(message or b"")[:123], self.OPCODE_CLOSE)
        except ConnectionClosed:
            pass
        finally:
            self._drop(None)

    def _drop(self, close_code: int | None) -> None:
        """Mark the connection closed without sending anything more."""
        if close_code is not None and self.close_code is None:
            self.close_code = close_code
        self.closed = True
        self.stream = None
        self.raw_write = None
        self.raw_read = None
