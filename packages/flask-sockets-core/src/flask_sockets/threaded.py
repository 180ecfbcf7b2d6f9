"""WebSockets on a blocking socket, one thread per connection.

A threaded WSGI server hands each request to a thread and, for the raw
connection, exposes the socket: Werkzeug's development server as
``environ['werkzeug.socket']``, gunicorn's workers (its ``gthread`` worker
among them) as ``environ['gunicorn.socket']``. For a WebSocket request that
finds no server socket in ``environ['wsgi.websocket']``, Flask-Sockets then
builds a :class:`ThreadedWebSocket` over that connection: it answers the
handshake itself and speaks the protocol with :mod:`flask_sockets.protocol`,
the engine of the gevent server (same limits, same close codes,
permessage-deflate), behind the same interface as the gevent socket.

The handler runs in the server's thread for the whole life of the
connection; nothing else takes a thread per connection or per message:

- One :class:`Connections` per server (gunicorn worker) or app holds the
  open sockets and runs ONE timer thread, started by
  :meth:`Connections.start`, which pings the idle peers, fails the silent
  ones (1011), cuts connections whose close handshake ran out of time, and
  closes every socket with 1001 when the server stops.
- A send that makes no progress for ``send_timeout`` seconds is cut by the
  sending thread itself (it waits for the socket to take more, bounded).
- :meth:`ThreadedWebSocket.send_nowait` lets a publisher (rooms,
  broadcasts) write to a socket that can take the message at once, from the
  publisher's thread, without starting one.

The socket object stays in blocking mode: timeouts are waits (``poll``) in
the thread that needs them, never a change of the socket's own timeout,
which would affect every thread using it.
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import signal
import socket
import ssl
import threading
import time
import typing as t
import weakref

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

__all__ = [
    "CONNECTIONS_KEY",
    "GUNICORN_SOCKET_KEY",
    "WERKZEUG_SOCKET_KEY",
    "Connections",
    "HandshakeRefused",
    "ThreadedWebSocket",
    "gunicorn_worker_stopping",
]

#: Where Werkzeug's development server puts the client connection.
WERKZEUG_SOCKET_KEY = "werkzeug.socket"
#: Where gunicorn's workers put the client connection.
GUNICORN_SOCKET_KEY = "gunicorn.socket"
#: Where a server may put its :class:`Connections` (the gunicorn thread
#: worker of ``flask-sockets-gunicorn`` does); without one, each app has its own.
CONNECTIONS_KEY = "flask_sockets.connections"

CLOSE_NORMAL = CloseCode.NORMAL_CLOSURE
CLOSE_GOING_AWAY = CloseCode.GOING_AWAY
CLOSE_ABNORMAL = CloseCode.ABNORMAL_CLOSURE
CLOSE_INTERNAL_ERROR = CloseCode.INTERNAL_ERROR
#: The close frame every open socket gets when the server stops.
GOING_AWAY = (CLOSE_GOING_AWAY, "Server shutting down")

_DEFAULTS = SocketOptions()
_READ_SIZE = 64 * 1024
# Messages up to this size go out in one write (header + payload).
_SINGLE_WRITE_LIMIT = 16 * 1024
# How often the timer asks its ``stopping`` callable whether the server stops.
_STOP_POLL_INTERVAL = 0.25


class HandshakeRefused(Exception):
    """The upgrade request is not a valid WebSocket handshake."""

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(status)
        #: The HTTP response to refuse the handshake with.
        self.status, self.headers, self.body = status, headers, body


class _SendTimeout(Exception):
    """A send made no progress for ``send_timeout`` seconds."""


def _wait(sock: socket.socket, writable: bool, timeout: float | None) -> bool:
    """Wait until ``sock`` is readable (or writable), at most ``timeout``
    seconds (``None``: no limit); ``True`` if it is. ``poll``, where there is
    one: ``select`` cannot watch descriptors over 1023."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT if writable else select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))
    watched: list[t.Any] = [sock]  # pragma: no cover - Windows
    return any(select.select([], watched, [], timeout) if writable else select.select(watched, [], [], timeout))


class ThreadedWebSocket(EngineSocket, SocketBase):
    """A WebSocket over a server's raw, blocking connection, used from the
    server's thread (and any other: sends from several threads never
    interleave).

    Same interface as :class:`flask_sockets_gevent.WebSocket`: ``send``,
    ``receive(timeout=None)``, ``send_frame``, ``send_nowait``,
    ``close(code, reason)``, ``closed``, ``accept``, ``close_code``,
    ``close_reason``, ``compression``, ``abort``.

    :param environ: The WSGI environ of the upgrade request.
    :param sock: The client connection (by default
        ``environ['werkzeug.socket']``).
    :param connections: The :class:`Connections` that pings the peer and
        closes the socket when the server stops; ``None``: no keepalive, and
        :meth:`close` cuts the connection at once when another thread is
        reading.
    :raises HandshakeRefused: If the request is not a valid handshake.
    """

    # Slots: an open socket lives as long as its connection. ``__dict__``
    # stays, for attributes an app sets.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_close_deadline",
        "_connections",
        "_last_heard",
        "_ping_sent_at",
        "_protocol",
        "_receive_lock",
        "_send_lock",
        "_sock",
        "_state_lock",
        "_timer_at",
        "accepted",
        "close_code",
        "close_reason",
        "close_timeout",
        "closed",
        "environ",
        "ping_interval",
        "ping_timeout",
        "send_timeout",
        "subprotocol",
    )

    def __init__(
        self,
        environ: dict[str, t.Any],
        sock: socket.socket | None = None,
        connections: Connections | None = None,
    ) -> None:
        rejection = check_handshake(environ)
        if rejection is not None:
            raise HandshakeRefused(*rejection)
        self.environ = environ
        self._sock: socket.socket = sock if sock is not None else environ[WERKZEUG_SOCKET_KEY]
        self._connections = connections
        self._protocol = ServerProtocol(_DEFAULTS.max_message_size)
        #: ``True`` once ``101 Switching Protocols`` has been sent.
        self.accepted = False
        #: ``True`` once the connection is closed or closing.
        self.closed = False
        #: The subprotocol sent in the handshake, if any.
        self.subprotocol: str | None = None
        #: The close code the peer sent (1005 if its close frame had none,
        #: 1006 if it vanished without one, 1011 if it did not answer a
        #: keepalive ping), or ``None``.
        self.close_code: int | None = None
        #: The close reason the peer sent.
        self.close_reason: str | None = None
        #: Seconds of peer silence before a ping, or ``None`` to never ping.
        self.ping_interval: float | None = _DEFAULTS.ping_interval
        #: Seconds to wait for a pong before closing with 1011.
        self.ping_timeout: float = _DEFAULTS.ping_timeout
        #: Seconds :meth:`close` waits for the peer's close frame.
        self.close_timeout: float = _DEFAULTS.close_timeout
        #: Seconds a send may make no progress before the connection is cut
        #: (``None``: wait forever).
        self.send_timeout: float | None = _DEFAULTS.send_timeout
        # Frames go out whole, one at a time; one reader at a time.
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        # Guards close_code and close_reason, which the reader, the senders and
        # the timer thread all record. (``closed`` turns true under the send
        # lock when our close frame goes out, else only ever turns true.)
        self._state_lock = threading.Lock()
        # Written by whoever hears from the peer (a read, or a send making
        # progress); a float store, read by the timer thread: the latest wins.
        self._last_heard = time.monotonic()
        # The timer thread's own (see Connections): when a ping went out, when
        # this socket's one timer entry is due, and when a close must be over.
        self._ping_sent_at: float | None = None
        self._timer_at: float | None = None
        self._close_deadline: float | None = None

    def configure(self, options: SocketOptions) -> None:
        """Apply an app's :class:`~flask_sockets.options.SocketOptions`.
        Flask-Sockets calls it before the handler runs."""
        self._configure_engine(options)
        self.ping_interval = options.ping_interval
        self.ping_timeout = options.ping_timeout
        self.close_timeout = options.close_timeout
        self.send_timeout = options.send_timeout
        if options.subprotocol is not None:
            self.subprotocol = options.subprotocol

    # -- handshake ------------------------------------------------------------

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
        sock = self._sock
        try:
            sock.settimeout(None)  # ours now: blocking, waits bounded by poll
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # pragma: no cover - not a TCP socket
            pass
        try:
            with self._send_lock:
                self._send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        except (OSError, _SendTimeout):
            self.abort()
            return
        self._last_heard = time.monotonic()
        if self._connections is not None:
            self._connections.watch(self)

    # -- receiving ------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Return the next message (``str`` for text, ``bytes`` for binary),
        or ``None`` once the connection is closed.

        :param timeout: Seconds to wait; on expiry :exc:`TimeoutError` is
            raised and the socket stays usable (nothing read is lost).
        :raises ConnectionClosed: If the socket was already closed.
        """
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
                        # We sent our close frame: what comes before the peer's is discarded.
                    elif cls is Ping:
                        if not self.closed:
                            try:
                                self._write(frame_header(self.OPCODE_PONG, len(event.payload)), event.payload)
                            except ConnectionClosed:
                                return None
                    elif cls is Close:
                        self._on_close_frame(event)
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
        if the connection ended.

        :raises TimeoutError: If nothing came before ``deadline``.
        """
        sock = self._sock
        if deadline is not None and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _wait(sock, False, remaining):
                raise TimeoutError("no message within the timeout")
        try:
            data = sock.recv(_READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self._set_closed(CLOSE_ABNORMAL)
            self._shut_down()
            return False
        self._protocol.buffer += data
        self._last_heard = time.monotonic()
        return True

    # -- sending --------------------------------------------------------------

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        """Send one final frame with ``opcode`` (text, binary, ping or
        pong). Frames from several threads never interleave. A text or
        binary message is compressed if permessage-deflate was negotiated,
        it reaches the threshold and ``compress`` is true.

        :raises ConnectionClosed: If the socket is closed, the peer is gone,
            or it read nothing for ``send_timeout`` seconds.
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
                self._write_locked(*self._protocol.data_frame(opcode, payload, compress, message))
        elif opcode in (self.OPCODE_PING, self.OPCODE_PONG):
            self._write(frame_header(opcode, len(payload)), payload)
        else:
            raise ValueError(f"send_frame() cannot send opcode {opcode:#x}; use close() to close")

    def send_nowait(self, message: str | bytes) -> bool:
        """Send a message (text for ``str``, binary otherwise) only if that
        takes no waiting: for publishers that must never block, such as
        :mod:`flask_sockets.rooms` fanning a message out to many sockets.
        Safe from any thread; never blocks.

        :returns: ``True`` if the frame went out (when the kernel took only
            part of it, a thread sends the rest, and later frames follow
            it); ``False`` if nothing was sent because that would wait: the
            handshake is not answered yet, another thread is sending, the
            kernel's send buffer is full, the message is over 16 KiB
            (compressed), it would be compressed with context, or the
            connection is TLS. Send it the usual way then.
        :raises ConnectionClosed: If the socket is closed or the peer is gone.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        """
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        if not self.accepted or isinstance(self._sock, ssl.SSLSocket) or not self._send_lock.acquire(blocking=False):
            return False
        handed_over = False
        try:
            if self.closed:
                raise ConnectionClosed("Connection is already closed")
            deflate = self._protocol.deflate
            if deflate is not None and deflate.shared is None and len(payload) >= deflate.settings.threshold:
                return False  # compressing with context: only for a frame sure to go out
            opcode = self.OPCODE_TEXT if isinstance(message, str) else self.OPCODE_BINARY
            header, payload = self._protocol.data_frame(opcode, payload, True, message)
            if len(payload) > _SINGLE_WRITE_LIMIT:
                return False
            data = header + payload
            try:
                sent = self._sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError as e:
                self._set_closed(CLOSE_ABNORMAL)
                self._shut_down()
                raise ConnectionClosed(f"Socket is dead: {e}") from e
            if sent < len(data):
                # The frame has begun: it must be finished before any other.
                threading.Thread(
                    target=self._finish_write, args=(memoryview(data)[sent:],), name="flask-sockets writer", daemon=True
                ).start()
                handed_over = True
            return True
        finally:
            if not handed_over:
                self._send_lock.release()

    def _finish_write(self, rest: memoryview) -> None:
        """Send the rest of a frame :meth:`send_nowait` began, then release
        the send lock it holds for us."""
        try:
            self._send_all(rest)
        except (OSError, _SendTimeout):
            self._set_closed(CLOSE_ABNORMAL)
            self._shut_down()
        finally:
            self._send_lock.release()

    def _write(self, header: bytes, payload: bytes) -> None:
        with self._send_lock:
            self._write_locked(header, payload)

    def _write_locked(self, header: bytes, payload: bytes) -> None:
        """Send one frame; the caller holds the send lock."""
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        try:
            if len(payload) <= _SINGLE_WRITE_LIMIT:
                self._send_all(header + payload)
            else:  # two writes, not a copy of the payload
                self._send_all(header)
                self._send_all(payload)
        except _SendTimeout:
            self._set_closed(CLOSE_ABNORMAL)
            self._shut_down()
            raise ConnectionClosed(f"The peer read nothing for {self.send_timeout} seconds") from None
        except OSError as e:
            self._set_closed(CLOSE_ABNORMAL)
            self._shut_down()
            raise ConnectionClosed(f"Socket is dead: {e}") from e

    def _send_all(self, data: bytes | memoryview) -> None:
        """Send all of ``data``; the caller holds the send lock. Each wait for
        the peer to read more is bounded by ``send_timeout``
        (:exc:`_SendTimeout`); the peer reading counts as hearing from it."""
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket):
            # A TLS record cannot be written in part without blocking: a
            # peer that reads nothing is cut by the keepalive instead.
            sock.sendall(data)
            return
        try:
            # One non-blocking send nearly always takes it all.
            sent = sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        rest = memoryview(data)[sent:]
        timeout = self.send_timeout
        while rest:
            if not _wait(sock, True, timeout):
                raise _SendTimeout()
            try:
                sent = sock.send(rest, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            rest = rest[sent:]
            self._last_heard = time.monotonic()

    # -- closing --------------------------------------------------------------
    #
    # The close handshake, in one place: _send_close sends our close frame and
    # marks the socket closed; close() then waits for the peer's, _fail()
    # discards what the peer still sends until it leaves, _on_close_frame()
    # echoes a close the peer started; _shut_down() ends TCP. The timer
    # thread's variants (_fail_nowait, going away) never wait: the reader,
    # or the timer's close deadline, finishes for them.

    def close(self, code: int = CLOSE_NORMAL, message: bytes | str = b"") -> None:
        """Close the connection: send a close frame with ``code`` and
        ``message`` (the reason, at most 123 bytes), then wait up to
        ``close_timeout`` seconds for the peer's close frame and end TCP.
        If another thread is reading, that thread gets the peer's close
        frame (its ``receive()`` returns ``None``), and the connection is cut
        if it does not come within ``close_timeout``. Closing a closed socket
        does nothing."""
        if self.closed:
            return
        self.accept()
        if not self._send_close(code, message):
            return
        # Wait for the peer's close frame, unless another thread is reading.
        if self._receive_lock.acquire(blocking=False):
            try:
                self._await_close_frame()
            finally:
                self._receive_lock.release()
            self._shut_down()
        else:
            self._close_by(time.monotonic() + self.close_timeout)

    def _send_close(self, code: int, reason: bytes | str, lock_timeout: float = -1) -> bool:
        """Send a close frame and mark the socket closed, both under the send
        lock (so one close frame goes out, whoever closes); ``False`` if the
        socket is already closed or the connection gone.

        :param lock_timeout: Seconds to wait for a send in progress (``-1``:
            as long as it takes; over: the connection is cut). ``0``: never
            wait, neither for the lock nor for the kernel (the timer
            thread); ``False`` then if the frame cannot go out at once, and
            nothing was sent.
        """
        payload = close_payload(code, reason)
        frame = frame_header(self.OPCODE_CLOSE, len(payload)) + payload
        if lock_timeout == 0:
            if not self._send_lock.acquire(blocking=False):
                return False
        elif not self._send_lock.acquire(timeout=lock_timeout):
            self.abort()
            return False
        try:
            if self.closed:
                return False
            if lock_timeout == 0:
                if not self._send_frame_nowait(frame):
                    return False
            else:
                try:
                    self._write_locked(frame, b"")
                except ConnectionClosed:
                    return False
            self.closed = True
            return True
        finally:
            self._send_lock.release()

    def _send_frame_nowait(self, frame: bytes) -> bool:
        """Send a small frame without waiting; the caller holds the send lock.
        ``False`` if the kernel cannot take it now (nothing sent). A frame
        taken only in part (the peer has left the send buffer all but full)
        cuts the connection: nothing else may follow half a frame."""
        sock = self._sock
        try:
            if isinstance(sock, ssl.SSLSocket):
                if not _wait(sock, True, 0):
                    return False
                sock.sendall(frame)  # writable: a small record goes out at once
                return True
            sent = sock.send(frame, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            self._set_closed(CLOSE_ABNORMAL)
            self._shut_down()
            return False
        if sent < len(frame):
            self._set_closed(CLOSE_ABNORMAL)
            self._shut_down()
            return False
        return True

    def _await_close_frame(self) -> None:
        """Read until the peer's close frame (its code and reason go in
        ``close_code`` and ``close_reason``), at most ``close_timeout``."""
        deadline = time.monotonic() + self.close_timeout
        try:
            while True:
                event = self._next_event(deadline)
                if event is None:
                    return
                if event.__class__ is Close:
                    if event.code != CloseCode.NO_STATUS_RCVD:
                        self._record_close(event.code, event.reason, replace=True)
                    return
        except (TimeoutError, OSError, ProtocolError):
            return

    def _on_close_frame(self, event: Close) -> None:
        """The peer's close frame: keep its code and reason, echo its code
        (RFC 6455, 5.5.1) unless we closed first, and end TCP (the server
        closes first)."""
        self._record_close(event.code, event.reason, replace=True)
        # (Does nothing if we closed first: our close frame is out.)
        self._send_close(CLOSE_NORMAL if event.code == CloseCode.NO_STATUS_RCVD else event.code, b"")
        self._shut_down()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455, 7.1.7) for what the peer did: our
        close frame, then half-close TCP and discard what the peer still
        sends until it leaves (at most ``close_timeout``): unread data would
        make the kernel reset the connection and lose the close frame."""
        if self._send_close(code, reason, lock_timeout=self.close_timeout):
            self._protocol.buffer.clear()
            sock = self._sock
            try:
                sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + self.close_timeout
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not _wait(sock, False, remaining) or not sock.recv(_READ_SIZE):
                        break
            except OSError:
                pass
        self._shut_down()

    def _fail_nowait(self, code: int, reason: str) -> None:
        """Fail the connection from the timer thread, without waiting: the
        close code is ours (``close_code``), the close frame goes out if the
        kernel takes it at once, TCP is half-closed, and the reader (or the
        close deadline) finishes."""
        self._record_close(code, reason, replace=True)
        if self._send_close(code, reason, lock_timeout=0):
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._close_by(time.monotonic() + self.close_timeout)
        else:
            self._shut_down()

    def _going_away(self) -> None:
        """The server stops: close with 1001 without waiting (from the timer
        thread). A reader gets the peer's close frame and returns ``None``;
        the close deadline cuts what is left. A socket whose close frame
        cannot go out at once (another thread is sending, the peer reads
        nothing) is closed from a thread of its own."""
        if self.closed or not self.accepted:
            return  # (an unaccepted socket may still be refused with an HTTP status)
        if self._send_close(*GOING_AWAY, lock_timeout=0):
            self._close_by(time.monotonic() + self.close_timeout)
        elif not self.closed:
            threading.Thread(target=self.close, args=GOING_AWAY, name="flask-sockets closer", daemon=True).start()

    def _close_by(self, deadline: float) -> None:
        """Cut the connection at ``deadline`` if it is still up then (by the
        timer thread; at once without one)."""
        self._close_deadline = deadline
        connections = self._connections
        if connections is None or not connections.schedule(self, deadline):
            self._shut_down()

    def _record_close(self, code: int, reason: str | None = None, replace: bool = False) -> None:
        """Record the close code and reason (the first recorded stays, unless
        ``replace``)."""
        with self._state_lock:
            if replace or self.close_code is None:
                self.close_code, self.close_reason = code, reason

    def _set_closed(self, code: int) -> None:
        """Record ``code`` unless a code is recorded, and mark the socket closed."""
        self._record_close(code)
        self.closed = True

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (close code 1006).
        A handler blocked in ``receive()`` gets ``None``."""
        self._set_closed(CLOSE_ABNORMAL)
        self._shut_down()

    def end(self) -> None:
        """After the handler: if the socket was accepted, end the TCP
        connection, so that nothing follows the close frame (the server's
        own response to the upgrade request then fails quietly) and the
        connection is never reused for another request. An unaccepted
        socket is left to the server, which sends the app's HTTP response."""
        if self.accepted:
            self._shut_down()
        elif self._connections is not None:
            self._connections.discard(self)

    def _shut_down(self) -> None:
        """End the TCP connection (if it is still up): a thread waiting on
        it wakes up."""
        self.closed = True
        if self._connections is not None:
            self._connections.discard(self)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- the timer thread's part ------------------------------------------------

    def _on_timer(self, now: float) -> float | None:
        """Called by the :class:`Connections` timer thread when this socket's
        entry is due; never blocks. Pings a peer silent for
        ``ping_interval``, fails one that did not answer within
        ``ping_timeout`` (1011), cuts a close that ran out of time.

        :returns: When to be called next, or ``None``.
        """
        close_deadline = self._close_deadline
        if close_deadline is not None:
            if now >= close_deadline:
                self._shut_down()
                return None
            return close_deadline
        interval = self.ping_interval
        if self.closed or not interval:
            return None
        sent_at = self._ping_sent_at
        if sent_at is not None:
            if self._last_heard >= sent_at:
                self._ping_sent_at = None  # answered (or the peer sent or read something)
            elif now >= sent_at + self.ping_timeout:
                self._ping_sent_at = None
                self._fail_nowait(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
                return self._close_deadline
            else:
                return sent_at + self.ping_timeout
        due = self._last_heard + interval
        if now < due:
            return due
        # Silent for ping_interval: ping. If the ping cannot go out at once
        # (another thread is sending, the send buffer is full), the peer
        # still has ping_timeout to show it is alive.
        self._ping_sent_at = now
        if self._send_lock.acquire(blocking=False):
            try:
                if not self.closed:
                    self._send_frame_nowait(frame_header(self.OPCODE_PING, 4) + os.urandom(4))
            finally:
                self._send_lock.release()
        return now + self.ping_timeout


class Connections:
    """The open :class:`ThreadedWebSocket`\\ s of one server (a gunicorn
    worker) or app, and the ONE timer thread that serves them all: it pings
    idle peers and fails silent ones, cuts close handshakes that ran out of
    time, and closes every socket with 1001 when the server stops.

    :param max_connections: Open sockets allowed at once; :meth:`admit`
        refuses more (Flask-Sockets answers ``503`` before the handshake).
        ``None``: no cap.
    :param stopping: Called by the timer thread every quarter of a second;
        once it returns true, every open socket is closed with 1001
        (:meth:`shutdown`) and new ones are refused.
    """

    def __init__(
        self, max_connections: int | None = None, stopping: t.Callable[[], bool] | None = None
    ) -> None:
        #: Open sockets allowed at once, or ``None``.
        self.max_connections = max_connections
        self._stopping = stopping
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._open: set[ThreadedWebSocket] = set()
        # (when, tie-breaker, weak reference to the socket): one live entry per socket.
        self._heap: list[tuple[float, int, weakref.ref[ThreadedWebSocket]]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False
        #: ``True`` once :meth:`shutdown` ran: new sockets are refused.
        self.shutting_down = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def start(self) -> None:
        """Start the timer thread (a daemon) if it is not running yet. It
        runs while sockets are open (:meth:`admit` them first), and ends
        when the last one is gone."""
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name="flask-sockets timer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the timer thread (open sockets are left as they are)."""
        with self._lock:
            self._stopped = True
            self._wakeup.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def admit(self, ws: ThreadedWebSocket) -> bool:
        """Count ``ws`` as open; ``False`` (not counted) if the server is
        shutting down or ``max_connections`` sockets are open."""
        with self._lock:
            if self.shutting_down or (self.max_connections is not None and len(self._open) >= self.max_connections):
                return False
            self._open.add(ws)
            return True

    def discard(self, ws: ThreadedWebSocket) -> None:
        """Forget ``ws`` (it ended). The last one gone, the timer thread
        ends; :meth:`start` makes a new one for the next socket."""
        with self._lock:
            self._open.discard(ws)
            if not self._open:
                self._wakeup.notify()

    def watch(self, ws: ThreadedWebSocket) -> None:
        """Start the keepalive of an accepted socket."""
        if ws.ping_interval:
            self.schedule(ws, time.monotonic() + ws.ping_interval)

    def schedule(self, ws: ThreadedWebSocket, when: float) -> bool:
        """Have the timer thread call ``ws._on_timer`` at ``when`` at the
        latest; ``False`` if there is no timer thread to do it."""
        with self._lock:
            if self._thread is None or self._stopped:
                return False
            current = ws._timer_at
            if current is None or when < current:
                ws._timer_at = when
                heapq.heappush(self._heap, (when, next(self._counter), weakref.ref(ws)))
                if self._heap[0][0] == when:
                    self._wakeup.notify()
            return True

    def shutdown(self) -> None:
        """Refuse new sockets and close every open one with 1001 (going
        away) without waiting: handlers reading get ``None`` once the peer
        answers; connections still up ``close_timeout`` seconds later are
        cut."""
        with self._lock:
            self.shutting_down = True
            sockets = list(self._open)
        for ws in sockets:
            ws._going_away()

    def _run(self) -> None:
        stopping = self._stopping
        while True:
            due: list[ThreadedWebSocket] = []
            with self._lock:
                if self._stopped:
                    return
                now = time.monotonic()
                heap = self._heap
                while heap and heap[0][0] <= now:
                    when, _, ref = heapq.heappop(heap)
                    ws = ref()
                    if ws is not None and ws._timer_at == when:
                        ws._timer_at = None
                        due.append(ws)
                if not due and not self._open:
                    # Idle: no thread lingers (start() makes one for the next socket).
                    self._thread = None
                    self._heap.clear()
                    return
                if not due:
                    wait = heap[0][0] - now if heap else None
                    if stopping is not None:
                        wait = _STOP_POLL_INTERVAL if wait is None else min(wait, _STOP_POLL_INTERVAL)
                    self._wakeup.wait(wait)
            for ws in due:
                try:
                    next_at = ws._on_timer(now)
                except Exception:  # pragma: no cover - a bug; keep serving the others
                    ws.abort()
                    continue
                if next_at is not None:
                    self.schedule(ws, next_at)
            if stopping is not None and not self.shutting_down and stopping():
                self.shutdown()


def gunicorn_worker_stopping() -> bool:
    """Whether the gunicorn worker running this process was told to stop
    (SIGTERM, a reload, ``--max-requests``): gunicorn's workers install
    their own ``handle_exit`` method as the SIGTERM handler and set their
    ``alive`` flag to false when they stop. Gives ``Connections`` under
    gunicorn's own ``gthread`` worker its graceful shutdown; it never
    imports gunicorn."""
    worker = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return worker is not None and getattr(worker, "alive", True) is False
