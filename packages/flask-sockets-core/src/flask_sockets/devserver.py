"""Socket routes on Werkzeug's development server (``flask run``, ``app.run()``).

The development server puts no socket in ``environ['wsgi.websocket']``, but
it exposes the raw connection as ``environ['werkzeug.socket']``. For a
WebSocket request :class:`DevWebSocket` answers the handshake on that
connection itself and speaks the protocol with :mod:`flask_sockets.protocol`,
the engine the gevent server uses too (same limits, same close codes,
permessage-deflate), behind the same interface as the gevent socket.

It is meant for development: one thread per connection (the development
server's threads), no keepalive pings, no send timeout. Production servers put their own
socket in ``wsgi.websocket`` and this module is never used.
"""

from __future__ import annotations

import socket
import threading
import time
import typing as t

from .base import EngineSocket
from .base import SocketBase
from .base import to_payload
from .exceptions import ConnectionClosed
from .handshake import check_handshake
from .handshake import handshake_response_headers
from .options import SocketOptions
from .protocol import PAUSE
from .protocol import Close
from .protocol import CloseCode
from .protocol import Ping
from .protocol import ProtocolError
from .protocol import ServerProtocol
from .protocol import close_payload
from .protocol import frame_header

__all__ = ["WERKZEUG_SOCKET_KEY", "DevWebSocket", "HandshakeRefused"]

#: Where Werkzeug's development server puts the client connection.
WERKZEUG_SOCKET_KEY = "werkzeug.socket"

_READ_SIZE = 64 * 1024


class HandshakeRefused(Exception):
    """The upgrade request is not a valid WebSocket handshake."""

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(status)
        #: The HTTP response to refuse the handshake with.
        self.status, self.headers, self.body = status, headers, body


class DevWebSocket(EngineSocket, SocketBase):
    """A WebSocket over the development server's raw connection.

    Same interface as :class:`flask_sockets_gevent.WebSocket`: ``send``,
    ``receive(timeout=None)``, ``send_frame``, ``close(code, reason)``,
    ``closed``, ``accept``, ``close_code``, ``close_reason``, ``compression``.

    :raises HandshakeRefused: If the request is not a valid handshake.
    """

    def __init__(self, environ: dict[str, t.Any]) -> None:
        rejection = check_handshake(environ)
        if rejection is not None:
            raise HandshakeRefused(*rejection)
        self.environ = environ
        self._sock: socket.socket = environ[WERKZEUG_SOCKET_KEY]
        options = SocketOptions()
        self._protocol = ServerProtocol(options.max_message_size)
        #: ``True`` once ``101 Switching Protocols`` has been sent.
        self.accepted = False
        #: ``True`` once the connection is closed or closing.
        self.closed = False
        #: The subprotocol sent in the handshake, if any.
        self.subprotocol: str | None = None
        #: The close code and reason the peer sent (1006: it vanished).
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.close_timeout = options.close_timeout
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()

    def configure(self, options: SocketOptions) -> None:
        """Apply an app's :class:`~flask_sockets.options.SocketOptions`
        (pings are not sent in development)."""
        self._configure_engine(options)
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
        headers = self._handshake_headers(headers)
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
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        self.accept()
        if self.closed:  # the client left before the 101
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._receive_lock:
            try:
                while True:
                    event = self._next_event(deadline)
                    if event is None:
                        return None
                    cls = event.__class__
                    if cls is str or cls is bytes:
                        if not self.closed:
                            return t.cast("str | bytes", event)
                    elif cls is Ping:
                        if not self.closed:
                            self.send_frame(event.payload, self.OPCODE_PONG)
                    elif cls is Close:
                        self._on_close(event)
                        return None
            except ProtocolError as e:
                self._fail(e.code, str(e))
                return None

    def _next_event(self, deadline: float | None) -> t.Any:
        """The engine's next event, reading as it needs; ``None`` if the
        connection ended."""
        protocol = self._protocol
        while True:
            event = protocol.next_event()
            if event is None:
                if not self._read(deadline):
                    return None
            elif event is not PAUSE:
                return event

    def _read(self, deadline: float | None) -> bool:
        """Feed the next chunk from the network to the engine; ``False``
        if the connection ended."""
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message within the timeout")
            self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(_READ_SIZE)
        # socket.timeout: not yet TimeoutError on Python 3.9 (an OSError, read
        # below as the end of the connection).
        except (TimeoutError, socket.timeout):
            raise TimeoutError("no message within the timeout") from None
        except OSError:
            data = b""
        finally:
            if deadline is not None:
                self._sock.settimeout(None)
        if not data:
            self.close_code = self.close_code or CloseCode.ABNORMAL_CLOSURE
            self._shut_down()
            return False
        self._protocol.buffer += data
        return True

    def _on_close(self, event: Close) -> None:
        self.close_code, self.close_reason = event.code, event.reason
        if not self.closed:
            # The peer closed first: echo its code (RFC 6455, 5.5.1).
            reply = CloseCode.NORMAL_CLOSURE if event.code == CloseCode.NO_STATUS_RCVD else event.code
            try:
                self._send(*self._control(self.OPCODE_CLOSE, close_payload(reply)))
            except ConnectionClosed:
                pass
        self._shut_down()

    # -- sending --------------------------------------------------------------

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        """Send one frame with ``opcode`` (text, binary, ping or pong); text
        and binary are compressed as :meth:`flask_sockets_gevent.WebSocket.send_frame`
        says.

        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        """
        self.accept()
        if self.closed:
            # First: the classic loop sends receive()'s None once the peer closed.
            raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        if opcode == self.OPCODE_TEXT and not isinstance(message, str):
            payload.decode("utf-8")  # text must be text: fail here, not in the peer
        if opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
            with self._send_lock:  # the compressor's state follows the order frames go out in
                self._send_locked(*self._protocol.data_frame(opcode, payload, compress, message))
        elif opcode in (self.OPCODE_PING, self.OPCODE_PONG):
            self._send(*self._control(opcode, payload))
        else:
            raise ValueError(f"send_frame() cannot send opcode {opcode:#x}; use close() to close")

    @staticmethod
    def _control(opcode: int, payload: bytes) -> tuple[bytes, bytes]:
        return frame_header(opcode, len(payload)), payload

    def _send(self, header: bytes, payload: bytes) -> None:
        with self._send_lock:
            self._send_locked(header, payload)

    def _send_locked(self, header: bytes, payload: bytes) -> None:
        try:
            self._sock.sendall(header + payload)
        except OSError as e:
            self._shut_down()
            raise ConnectionClosed(f"Socket is dead: {e}") from e

    # -- closing --------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Send a close frame with ``code`` and ``message`` (the reason), wait
        up to ``close_timeout`` seconds for the peer's, then close the
        connection. Closing a closed socket does nothing."""
        if self.closed:
            return
        self.accept()
        try:
            self._send(*self._control(self.OPCODE_CLOSE, close_payload(code, message)))
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
        deadline = time.monotonic() + self.close_timeout
        try:
            while True:
                event = self._next_event(deadline)
                if event is None:
                    return
                if event.__class__ is Close:
                    self.close_code, self.close_reason = event.code, event.reason
                    return
        except (TimeoutError, OSError, ProtocolError):
            return

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection for what the peer did: our close frame, then
        the end of TCP."""
        try:
            self._send(*self._control(self.OPCODE_CLOSE, close_payload(code, reason)))
        except ConnectionClosed:
            pass
        self._shut_down()

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (close code 1006)."""
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
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
