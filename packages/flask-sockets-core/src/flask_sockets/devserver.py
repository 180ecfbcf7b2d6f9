"""Socket routes on Werkzeug's development server (``flask run``, ``app.run()``).

The development server puts no socket in ``environ['wsgi.websocket']``, but
it exposes the raw connection as ``environ['werkzeug.socket']``. For a
WebSocket request :class:`DevWebSocket` answers the handshake on that
connection itself and speaks the protocol with :mod:`wsproto` (a sans-I/O
implementation), behind the same interface as the gevent socket.

It is meant for development: one thread per connection (the development
server's threads), no keepalive pings. Production servers put their own
socket in ``wsgi.websocket`` and this module is never used.
"""

from __future__ import annotations

import socket
import threading
import time
import typing as t

from .base import SocketBase
from .exceptions import ConnectionClosed
from .handshake import check_handshake
from .handshake import handshake_response_headers
from .options import SocketOptions
from .options import max_fragments

__all__ = ["WERKZEUG_SOCKET_KEY", "DevWebSocket", "HandshakeRefused"]

#: Where Werkzeug's development server puts the client connection.
WERKZEUG_SOCKET_KEY = "werkzeug.socket"

CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006
CLOSE_TOO_BIG = 1009
_READ_SIZE = 64 * 1024


class HandshakeRefused(Exception):
    """The upgrade request is not a valid WebSocket handshake."""

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(status)
        #: The HTTP response to refuse the handshake with.
        self.status, self.headers, self.body = status, headers, body


class DevWebSocket(SocketBase):
    """A WebSocket over the development server's raw connection.

    Same interface as :class:`flask_sockets_gevent.WebSocket`: ``send``,
    ``receive(timeout=None)``, ``send_frame``, ``close(code, reason)``,
    ``closed``, ``accept``, ``close_code``, ``close_reason``.

    :raises HandshakeRefused: If the request is not a valid handshake.
    """

    def __init__(self, environ: dict[str, t.Any]) -> None:
        from wsproto.connection import Connection
        from wsproto.connection import ConnectionType

        rejection = check_handshake(environ)
        if rejection is not None:
            raise HandshakeRefused(*rejection)
        self.environ = environ
        self._sock: socket.socket = environ[WERKZEUG_SOCKET_KEY]
        self._protocol = Connection(ConnectionType.SERVER)
        #: ``True`` once ``101 Switching Protocols`` has been sent.
        self.accepted = False
        #: ``True`` once the connection is closed or closing.
        self.closed = False
        #: The subprotocol sent in the handshake, if any.
        self.subprotocol: str | None = None
        #: The close code and reason the peer sent (1006: it vanished).
        self.close_code: int | None = None
        self.close_reason: str | None = None
        options = SocketOptions()
        self.max_message_size = options.max_message_size
        self.close_timeout = options.close_timeout
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        # The message being assembled; kept across receive() timeouts.
        self._parts: list[t.Any] = []
        self._size = 0

    def configure(self, options: SocketOptions) -> None:
        """Apply an app's :class:`~flask_sockets.options.SocketOptions`
        (pings are not sent in development)."""
        self.max_message_size = options.max_message_size
        self.close_timeout = options.close_timeout
        if options.subprotocol is not None:
            self.subprotocol = options.subprotocol

    def accept(self, subprotocol: str | None = None, headers: t.Sequence[tuple[str, str]] = ()) -> None:
        """Send ``101 Switching Protocols`` (done implicitly by the first
        send, receive or close). A second call does nothing.

        If the client is already gone (reset, broken pipe), the socket
        counts as accepted and is closed with ``close_code`` 1006: the
        ``receive()`` that accepted returns ``None`` and a send raises
        :exc:`~flask_sockets.ConnectionClosed`."""
        if self.accepted:
            return
        if subprotocol is not None:
            self.subprotocol = subprotocol
        lines = ["HTTP/1.1 101 Switching Protocols"]
        lines += [
            f"{name}: {value}" for name, value in handshake_response_headers(self.environ, self.subprotocol, headers)
        ]
        self.accepted = True
        try:
            self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        except OSError:
            self.abort()

    # -- receiving ------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Return the next message (``str`` or ``bytes``), or ``None`` once the
        connection is closed. On ``timeout`` (seconds) raise
        :exc:`TimeoutError`; the socket stays usable."""
        from wsproto.events import CloseConnection
        from wsproto.events import Message
        from wsproto.events import Ping

        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        self.accept()
        if self.closed:  # the client left before the 101
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._receive_lock:
            while True:
                for event in self._protocol.events():
                    if isinstance(event, Message):
                        self._size += len(event.data)
                        if self.max_message_size is not None and self._size > self.max_message_size:
                            self._fail(CLOSE_TOO_BIG, f"Message over {self.max_message_size} bytes")
                            return None
                        most = max_fragments(self.max_message_size)
                        if most is not None and len(self._parts) >= most:
                            self._fail(CLOSE_TOO_BIG, f"Message in over {most} fragments")
                            return None
                        self._parts.append(event.data)
                        if event.message_finished:
                            parts, self._parts, self._size = self._parts, [], 0
                            return "".join(parts) if isinstance(event.data, str) else b"".join(parts)
                    elif isinstance(event, Ping):
                        self._send(event.response())
                    elif isinstance(event, CloseConnection):
                        self._on_close(event)
                        return None
                if not self._read(deadline):
                    return None

    def _read(self, deadline: float | None) -> bool:
        """Feed the next chunk from the network to the protocol; ``False``
        if the connection ended."""
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message within the timeout")
            self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(_READ_SIZE)
        except TimeoutError:
            raise TimeoutError("no message within the timeout") from None
        except OSError:
            data = b""
        finally:
            if deadline is not None:
                self._sock.settimeout(None)
        if not data:
            self.close_code = self.close_code or CLOSE_ABNORMAL
            self._shut_down()
            return False
        self._protocol.receive_data(data)
        return True

    def _on_close(self, event: t.Any) -> None:
        from wsproto.connection import ConnectionState

        self.close_code, self.close_reason = event.code, event.reason
        if self._protocol.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.OPEN):
            # REMOTE_CLOSING: the peer closed first, echo its code. OPEN: wsproto
            # found a protocol violation; the event carries the code to fail with.
            try:
                self._send(event.response())
            except ConnectionClosed:
                pass
        self._shut_down()

    # -- sending --------------------------------------------------------------

    def send_frame(self, message: t.Any, opcode: int) -> None:
        """Send one frame with ``opcode`` (text, binary, ping or pong)."""
        from wsproto.events import BytesMessage
        from wsproto.events import Ping
        from wsproto.events import Pong
        from wsproto.events import TextMessage

        self.accept()
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        if opcode == self.OPCODE_TEXT:
            text = message if isinstance(message, str) else bytes(message).decode("utf-8")
            self._send(TextMessage(data=text))
        elif opcode == self.OPCODE_BINARY:
            self._send(BytesMessage(data=bytes(message)))
        elif opcode in (self.OPCODE_PING, self.OPCODE_PONG):
            payload = message.encode() if isinstance(message, str) else bytes(message)
            self._send(Ping(payload=payload) if opcode == self.OPCODE_PING else Pong(payload=payload))
        else:
            raise ValueError(f"send_frame() cannot send opcode {opcode:#x}; use close() to close")

    def _send(self, event: t.Any) -> None:
        with self._send_lock:
            try:
                self._sock.sendall(self._protocol.send(event))
            except OSError as e:
                self._shut_down()
                raise ConnectionClosed(f"Socket is dead: {e}") from e

    # -- closing --------------------------------------------------------------

    def close(self, code: int = CLOSE_NORMAL, message: bytes | str = b"") -> None:
        """Send a close frame with ``code`` and ``message`` (the reason), wait
        up to ``close_timeout`` seconds for the peer's, then close the
        connection. Closing a closed socket does nothing."""
        from wsproto.events import CloseConnection

        if self.closed:
            return
        self.accept()
        reason = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            self._send(CloseConnection(code=code, reason=reason or None))
        except ConnectionClosed:
            return
        self.closed = True
        # Wait for the peer's close frame, unless another thread is reading.
        if self._receive_lock.acquire(blocking=False):
            try:
                self._await_close_frame()
            finally:
                self._receive_lock.release()
        self._shut_down()

    def _await_close_frame(self) -> None:
        from wsproto.events import CloseConnection

        deadline = time.monotonic() + self.close_timeout
        try:
            while True:
                for event in self._protocol.events():
                    if isinstance(event, CloseConnection):
                        self.close_code, self.close_reason = event.code, event.reason
                        return
                if not self._read(deadline):
                    return
        except (TimeoutError, OSError, ValueError):
            return

    def _fail(self, code: int, reason: str) -> None:
        from wsproto.events import CloseConnection

        try:
            self._send(CloseConnection(code=code, reason=reason))
        except ConnectionClosed:
            pass
        self._shut_down()

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (close code 1006)."""
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        self._shut_down()

    def _shut_down(self) -> None:
        """End the TCP connection. The development server's own attempt to
        write a response afterwards then fails quietly (it ignores
        ``ConnectionError``), so nothing follows the close frame."""
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
