"""WebSockets on a blocking socket, one thread per connection.

A threaded WSGI server hands each request to a thread and, for the raw
connection, exposes the socket: Werkzeug's development server as
``environ['werkzeug.socket']``, gunicorn's workers (its ``gthread`` worker
among them) as ``environ['gunicorn.socket']``. For a WebSocket request that
finds no server socket in ``environ['wsgi.websocket']``, Flask-Sockets then
builds a :class:`ThreadedWebSocket` over that connection: it answers the
handshake itself, behind the same interface as the gevent socket.

The protocol is :class:`flask_sockets.connection.Connection`, the sans-I/O
engine every Flask-Sockets server shares (same limits, same close codes,
permessage-deflate, the same close handshake): :class:`ThreadedWebSocket`
only moves bytes between the blocking socket and the connection, and keeps
what is threads': the timer thread, the send timeout, the locks.

The handler runs in the server's thread for the whole life of the
connection; nothing else takes a thread per connection or per message:

- One :class:`Connections` per server (gunicorn worker) or app holds the
  open sockets and runs ONE timer thread (a
  :class:`~flask_sockets.timers.Timer`, the one implementation of timers
  for threaded code), started by :meth:`Connections.start`, which pings
  the idle peers, fails the silent
  ones (1011), closes sessions at their end (4401), cuts connections whose
  close handshake ran out of time, and closes the sockets when the server
  stops (1012, in batches). What to do and when is the connection's
  (``next_deadline()``, ``handle_timer()``); the thread only acts on it.
- A send that makes no progress for ``send_timeout`` seconds is cut by the
  sending thread itself (it waits for the socket to take more, bounded).
- :meth:`ThreadedWebSocket.send_nowait` lets a publisher (rooms,
  broadcasts) write to a socket that can take the message at once, from the
  publisher's thread, without starting one.

Locks (correct without the GIL): every call into the connection is made
under the socket's connection lock, which is never held during blocking
I/O; frames go out under the send lock, taken before the connection lock,
and whoever takes what the connection queued (``data_to_send()``) writes it
before releasing the send lock, so bytes go out in the order they were
queued. One thread reads at a time (the receive lock).

The socket object stays in blocking mode: timeouts are waits (``poll``) in
the thread that needs them, never a change of the socket's own timeout,
which would affect every thread using it.
"""

from __future__ import annotations

import functools
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
from .connection import CLOSED
from .connection import CLOSING
from .connection import OPEN
from .connection import Connection
from .exceptions import ConnectionClosed
from .handshake import check_handshake
from .handshake import handshake_response_headers
from .options import SocketOptions
from .protocol import PAUSE
from .protocol import Close
from .protocol import CloseCode
from .protocol import Ping
from .shutdown import ShutdownPolicy
from .shutdown import drain
from .timers import Timer

__all__ = [
    "CONNECTIONS_KEY",
    "GUNICORN_SOCKET_KEY",
    "WERKZEUG_SOCKET_KEY",
    "Connections",
    "HandshakeRefused",
    "ThreadedWebSocket",
    "gunicorn_graceful_timeout",
    "gunicorn_worker_stopping",
]

#: Where Werkzeug's development server puts the client connection.
WERKZEUG_SOCKET_KEY = "werkzeug.socket"
#: Where gunicorn's workers put the client connection.
GUNICORN_SOCKET_KEY = "gunicorn.socket"
#: Where a server may put its :class:`Connections` (the gunicorn thread
#: worker of ``flask-sockets-gunicorn`` does); without one, each app has its own.
CONNECTIONS_KEY = "flask_sockets.connections"

#: The close frame of :meth:`Connections.shutdown` before 0.3 (the code is
#: now the :class:`~flask_sockets.shutdown.ShutdownPolicy`'s, 1012 by default).
GOING_AWAY = (CloseCode.GOING_AWAY, "Server shutting down")

_DEFAULTS = SocketOptions()
_READ_SIZE = 64 * 1024
# The read that waits for the peer (an idle connection spends its life in
# it): ``recv(n)`` allocates its n-byte buffer before it blocks, and the
# allocator's pages under a 64 KiB buffer that earlier reads dirtied stay in
# the RSS of every idle connection (8.3 KiB each, bench/RESULTS.md section
# 7). A read that fills it is followed by full-size reads.
_WAIT_READ_SIZE = 512
_ENDED = frozenset((CLOSING, CLOSED))
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

    It moves bytes between the connection and a
    :class:`flask_sockets.connection.Connection`, which decides everything
    about the protocol (see the module docstring for the locks).

    Same interface as :class:`flask_sockets_gevent.GeventWebSocket`: ``send``,
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
        "_connections",
        "_lock",
        "_protocol",
        "_read_size",
        "_receive_lock",
        "_send_lock",
        "_sock",
        "_timer_at",
        "accepted",
        "environ",
        "send_timeout",
        "subprotocol",
    )

    _protocol: Connection

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
        # The connection: the protocol's state and rules, and its frame parser.
        # (It decides the keepalive too: this socket's timer entry only asks
        # it. Its last_heard is written by whoever hears from the peer, a read
        # or a send making progress, without the lock: a float store, the
        # latest wins.)
        self._protocol = Connection(
            _DEFAULTS.max_message_size,
            close_timeout=_DEFAULTS.close_timeout,
            ping_interval=_DEFAULTS.ping_interval,
            ping_timeout=_DEFAULTS.ping_timeout,
        )
        #: ``True`` once ``101 Switching Protocols`` has been sent.
        self.accepted = False
        #: The subprotocol sent in the handshake, if any.
        self.subprotocol: str | None = None
        #: Seconds a send may make no progress before the connection is cut
        #: (``None``: wait forever).
        self.send_timeout: float | None = _DEFAULTS.send_timeout
        # Held around every call into the connection, never during blocking I/O.
        self._lock = threading.Lock()
        # Held while frames go out (taken before _lock): frames go out whole,
        # in the order the connection queued them. One reader at a time.
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        # The size of the next read (the reader's own, under the receive lock).
        self._read_size = _WAIT_READ_SIZE
        # The timer thread's own (see Connections): when this socket's one
        # timer entry is due.
        self._timer_at: float | None = None

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closed or closing."""
        return self._protocol.state in _ENDED

    @closed.setter
    def closed(self, value: bool) -> None:
        # True marks the socket closed without sending anything more.
        if value:
            self.abort()

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
                with self._lock:
                    self._protocol.accept()
        except (OSError, _SendTimeout):
            self.abort()
            return
        self._protocol.last_heard = time.monotonic()
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
        conn = self._protocol
        if conn.state is not OPEN:
            with self._lock:
                pending = conn.state is CLOSING and conn.has_data_to_send
            if pending:
                # The timer thread closed it (the session's end) while a
                # send held the lock: its close frame is still queued. The
                # reader writes it and finishes the close (a closer thread
                # waiting for the lock then finds nothing left to write).
                self._write_close()
                return None
            if self.closed:
                raise ConnectionClosed("Connection is already closed")
            self.accept()
            if self.closed:  # the client left before the 101
                return None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._receive_lock:
            return self._read_message(deadline)

    def _read_message(self, deadline: float | None) -> str | bytes | None:
        """Move bytes from the socket into the connection until it hands
        over a message (or the connection ends: ``None``); the caller holds
        the receive lock. A timeout loses nothing: bytes only move from the
        socket into the connection's buffer."""
        conn = self._protocol
        lock = self._lock
        data: bytes | None = None
        while True:
            if data is None and not conn.buffer and conn.state is OPEN:
                # Nothing to parse: read first (no lock round for an empty buffer).
                data = self._recv(deadline, self._read_size)
            with lock:
                if data is not None:
                    if data:
                        conn.buffer += data  # (conn.receive_data, one call less)
                    else:
                        conn.receive_eof()
                    data = None
                event = conn.next_event()
            if event is None:
                if conn.state is not OPEN:
                    self._ended()
                    return None
                # Part of a frame buffered: the rest is coming, read it big.
                data = self._recv(deadline, _READ_SIZE if conn.buffer else self._read_size)
                continue
            cls = event.__class__
            if cls is str or cls is bytes:
                return event  # type: ignore[return-value]
            if cls is Close:
                self._ended()
                return None
            if cls is Ping:
                self._flush(None)  # its pong

    def _recv(self, deadline: float | None, size: int) -> bytes:
        """The next chunk from the network (``b''`` if the stream ended or
        broke).

        :raises TimeoutError: If nothing came before ``deadline``.
        """
        sock = self._sock
        if deadline is not None and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _wait(sock, False, remaining):
                raise TimeoutError("no message within the timeout")
        try:
            data = sock.recv(size)
        except OSError:
            return b""
        if data:
            self._protocol.last_heard = time.monotonic()
        # A full buffer: more is waiting, read it in big chunks; else the next
        # read most likely waits, with a small buffer.
        self._read_size = _READ_SIZE if len(data) == size else _WAIT_READ_SIZE
        return data

    def _ended(self) -> None:
        """The connection is no longer open (the peer closed, we failed it,
        another thread closed it, it ended); the caller is the reader: write
        what the connection queued (an echoed close frame, ours), then
        finish closing."""
        if self._protocol.has_data_to_send:
            self._flush(self.close_timeout)
        self._finish_closing(reading=True)

    # -- sending --------------------------------------------------------------

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        """Send one final frame with ``opcode`` (text, binary, ping or
        pong). Frames from several threads never interleave. A text or
        binary message is compressed if permessage-deflate was negotiated,
        it reaches the threshold and ``compress`` is true.

        :raises ConnectionClosed: If the socket is closed, the peer is gone,
            or it read nothing for ``send_timeout`` seconds.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        :raises ValueError: For another opcode (close with :meth:`close`).
        """
        conn = self._protocol
        if conn.state is not OPEN:
            self.accept()
            if conn.state is not OPEN:
                # The classic loop sends receive()'s None once the peer closed.
                raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        with self._send_lock:
            with self._lock:
                # (Raises ConnectionClosed if closed while this waited for the lock.)
                conn.send_frame(opcode, payload, compress, message)
                chunks = conn.data_to_send()
            self._write(chunks)

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
        conn = self._protocol
        if conn.state is not OPEN:
            if self.closed:
                raise ConnectionClosed("Connection is already closed")
            return False  # not accepted yet
        payload = to_payload(message)
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket) or not self._send_lock.acquire(blocking=False):
            return False
        handed_over = False
        try:
            with self._lock:
                if conn.state is not OPEN:
                    raise ConnectionClosed("Connection is already closed")
                data = conn.frame_now(payload, isinstance(message, str), message)
            if data is None:
                return False
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                with self._lock:
                    conn.not_sent(len(data), len(payload))
                return False
            except OSError as e:
                self.abort()
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
            self._write((rest,))
        except ConnectionClosed:
            pass
        finally:
            self._send_lock.release()

    def _flush(self, lock_timeout: float | None) -> bool:
        """Write what the connection queued by itself (a pong, a close
        frame); ``False`` if the TCP connection is gone. A send that holds
        the lock longer than ``lock_timeout`` gets the connection cut instead."""
        lock = self._send_lock
        if not lock.acquire(timeout=-1 if lock_timeout is None else lock_timeout):
            self.abort()
            return False
        try:
            with self._lock:
                chunks = self._protocol.data_to_send()
            self._write(chunks)
        except ConnectionClosed:
            return False
        finally:
            lock.release()
        return True

    def _write(self, chunks: t.Iterable[bytes | memoryview]) -> None:
        """Write ``chunks``; the caller holds the send lock. A write cut
        short (the peer left, or read nothing for ``send_timeout``) leaves
        the stream unusable: the connection is cut.

        :raises ConnectionClosed: Then.
        """
        try:
            for chunk in chunks:
                self._send_all(chunk)
        except _SendTimeout:
            self.abort()
            raise ConnectionClosed(f"The peer read nothing for {self.send_timeout} seconds") from None
        except OSError as e:
            self.abort()
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
            self._protocol.last_heard = time.monotonic()

    def _write_nowait(self, chunks: list[bytes]) -> bool:
        """Write small frames without waiting, from the timer thread; the
        caller holds the send lock and saw the socket writable. ``False``
        (and the connection cut) if the kernel did not take them whole:
        nothing may follow part of a frame."""
        sock = self._sock
        try:
            for chunk in chunks:
                if isinstance(sock, ssl.SSLSocket):
                    sock.sendall(chunk)  # writable: a small record goes out at once
                elif sock.send(chunk, socket.MSG_DONTWAIT) < len(chunk):
                    raise BlockingIOError
        except OSError:
            self.abort()
            return False
        return True

    # -- closing --------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close the connection: send a close frame with ``code`` and
        ``message`` (the reason, cut to 123 bytes), then wait up to
        ``close_timeout`` seconds for the peer's close frame and end TCP.
        If another thread is reading, that thread gets the peer's close
        frame (its ``receive()`` returns ``None``), and the connection is cut
        if it does not come within ``close_timeout``. Closing a closed
        socket does nothing.

        :raises ValueError: If ``code`` may not be sent (RFC 6455, 7.4:
            1000-1003, 1007-1014, 3000-4999).
        """
        if self.closed:
            return
        self.accept()
        conn = self._protocol
        try:
            with self._send_lock:
                with self._lock:
                    if conn.state is not OPEN:  # closed while this waited for the lock
                        return
                    conn.send_close(code, message)
                    chunks = conn.data_to_send()
                self._write(chunks)
        except ConnectionClosed:
            return
        self._finish_closing(reading=False)

    def _finish_closing(self, reading: bool) -> None:
        """While the connection is closing, wait at most until its close
        deadline for the peer to finish, reading what it still sends:
        closing a socket that has unread data makes the kernel reset the
        connection, and the peer then loses our close frame. Then end TCP.

        A connection that failed is half-closed at once (RFC 6455, 7.1.1),
        which tells the peer we are done; the connection discards what comes
        until the peer's end. If another thread is reading (``reading``:
        the caller is the reader), that thread does the reading, and the
        timer thread cuts the connection at the close deadline.
        """
        conn = self._protocol
        with self._lock:
            state, failed, deadline = conn.state, conn.failed, conn.close_deadline
        if state is not CLOSING or deadline is None:
            self._shut_down()
            return
        if reading:
            self._drain(deadline)
        elif self._receive_lock.acquire(blocking=False):
            try:
                self._drain(deadline)
            finally:
                self._receive_lock.release()
        else:
            if failed:
                self._shut_down(socket.SHUT_WR)
            self._close_by(deadline)
            return
        self._shut_down()

    def _drain(self, deadline: float) -> None:
        """Read until the connection is closed (the peer's close frame or
        end) or ``deadline`` passes; the caller holds the receive lock."""
        conn = self._protocol
        lock = self._lock
        sock = self._sock
        half_closed = False
        while True:
            with lock:
                event = conn.next_event()
                state, failed = conn.state, conn.failed
            if state is not CLOSING:
                return
            if failed and not half_closed:
                self._shut_down(socket.SHUT_WR)
                half_closed = True
            if event is PAUSE:
                continue
            remaining = deadline - time.monotonic()
            if (isinstance(sock, ssl.SSLSocket) and sock.pending()) or (
                remaining > 0 and _wait(sock, False, remaining)
            ):
                try:
                    data = sock.recv(_READ_SIZE)
                except OSError:
                    data = b""
                with lock:
                    if data:
                        conn.receive_data(data)
                    else:
                        conn.receive_eof()
            else:
                with lock:
                    conn.handle_timer(max(time.monotonic(), deadline))
                return

    def _close_by(self, deadline: float) -> None:
        """Cut the connection at ``deadline`` if it is still up then (by the
        timer thread; at once without one)."""
        connections = self._connections
        if connections is None or not connections.schedule(self, deadline):
            self._shut_down()

    def _close_nowait(self) -> None:
        """The connection started closing from the timer thread (a keepalive
        ping not answered: failed, 1011; the session's end: 4401; the
        server stopping): write its close frame without waiting. It goes out
        if the kernel takes it at once (else the connection is cut), a
        failed connection is half-closed, and the reader (or the close
        deadline) finishes. When it cannot go out at once (another thread is
        sending, the peer reads nothing for now), a failed connection is cut
        (the peer did not answer anyway; the close code stays 1011), and the
        close frame of a live peer is written by a thread of its own, which
        then finishes closing as :meth:`close` does."""
        conn = self._protocol
        if self._send_lock.acquire(blocking=False):
            try:
                if _wait(self._sock, True, 0):
                    with self._lock:
                        chunks = conn.data_to_send()
                        deadline, failed = conn.close_deadline, conn.failed
                    if deadline is None or not self._write_nowait(chunks):
                        return  # (closed meanwhile: the reader finishes; or cut)
                    if failed:
                        self._shut_down(socket.SHUT_WR)
                    self._close_by(deadline)
                    return
            finally:
                self._send_lock.release()
        with self._lock:
            failed = conn.failed
        if failed:
            self.abort()
        else:
            threading.Thread(target=self._write_close, name="flask-sockets closer", daemon=True).start()

    def _write_close(self) -> None:
        """Write the close frame the connection queued (waiting for a send in
        progress, at most ``close_timeout``), then finish closing."""
        if self._flush(self.close_timeout):
            self._finish_closing(reading=False)

    def _expiry_changed(self) -> None:
        # The timer thread calls _on_timer by the connection's new next
        # deadline at the latest (an end moved later: it finds nothing to
        # do at the old one, and asks again).
        connections = self._connections
        if self.accepted and connections is not None:
            connections.watch(self)

    def _going_away(self, code: int, reason: str) -> None:
        """The server stops: close with ``code`` and ``reason`` without
        waiting (from the timer thread, or the thread closing the later
        batches; see :meth:`_close_nowait`). A reader gets the peer's close
        frame and returns ``None``; the close deadline cuts what is left."""
        if self.closed or not self.accepted:
            return  # (an unaccepted socket may still be refused with an HTTP status)
        with self._lock:
            conn = self._protocol
            if conn.state is not OPEN:
                return
            conn.send_close(code, reason)
        self._close_nowait()

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (close code 1006,
        unless the connection already had one). A handler blocked in
        ``receive()`` gets ``None``."""
        with self._lock:
            self._protocol.abort()
        self._shut_down()

    def end(self) -> None:
        """After the handler: if the socket was accepted, end the TCP
        connection, so that nothing follows the close frame (the server's
        own response to the upgrade request then fails quietly) and the
        connection is never reused for another request. An unaccepted
        socket is left to the server, which sends the app's HTTP response."""
        if self.accepted:
            self.abort()
        elif self._connections is not None:
            self._connections.discard(self)

    def _shut_down(self, how: int = socket.SHUT_RDWR) -> None:
        """Shut the TCP connection down (if it is still up): a thread
        waiting on it wakes up. Both ways: the socket leaves its
        :class:`Connections` (the connection must be closed by then)."""
        if how == socket.SHUT_RDWR:
            with self._lock:
                if self._protocol.state is not CLOSED:
                    self._protocol.abort()
            if self._connections is not None:
                self._connections.discard(self)
        try:
            self._sock.shutdown(how)
        except OSError:
            pass

    # -- the timer thread's part ------------------------------------------------

    def _on_timer(self, now: float) -> float | None:
        """Called by the :class:`Connections` timer thread when this socket's
        entry is due; never blocks. The connection decides, once
        (:meth:`~flask_sockets.connection.Connection.handle_timer`), and
        this acts on what it queued: a ping goes out if it can at once (else
        it waits for the next writer; the peer still has ``ping_timeout`` to
        be heard from); the close frame of a keepalive failure (1011) or of
        the session's end (4401) goes out as :meth:`_close_nowait` says; a
        close that ran out of time is cut.

        :returns: When to be called next (the connection's next deadline), or ``None``.
        """
        conn = self._protocol
        with self._lock:
            before = conn.state
            conn.handle_timer(now)
            state, queued = conn.state, conn.has_data_to_send
        if state is CLOSED:
            if before is CLOSING:  # (the close handshake just timed out)
                self._shut_down()
            return None
        if state is CLOSING and before is OPEN:  # the keepalive failed it, or the session ended
            self._close_nowait()
            return None  # (_close_nowait scheduled the close deadline, or a closer thread keeps it)
        if queued and self._send_lock.acquire(blocking=False):
            try:
                if _wait(self._sock, True, 0):
                    with self._lock:
                        chunks = conn.data_to_send()
                    if chunks:
                        self._write_nowait(chunks)
            finally:
                self._send_lock.release()
        with self._lock:
            return conn.next_deadline()


class Connections:
    """The open :class:`ThreadedWebSocket`\\ s of one server (a gunicorn
    worker) or app, and the ONE timer thread that serves them all: it pings
    idle peers and fails silent ones, closes sessions at their end (4401),
    cuts close handshakes that ran out of time, and closes the sockets when
    the server stops (1012, in batches).

    :param max_connections: Open sockets allowed at once; :meth:`admit`
        refuses more (Flask-Sockets answers ``503`` before the handshake).
        ``None``: no cap.
    :param stopping: Called by the timer thread every quarter of a second;
        once it returns true, the open sockets are closed (:meth:`shutdown`)
        and new ones are refused.
    :param shutdown_policy: How :meth:`shutdown` closes them; by default
        with 1012, all at once (a server that knows its grace period sets
        one with a window: see :class:`~flask_sockets.shutdown.ShutdownPolicy`).
    """

    def __init__(
        self,
        max_connections: int | None = None,
        stopping: t.Callable[[], bool] | None = None,
        shutdown_policy: ShutdownPolicy | None = None,
    ) -> None:
        #: Open sockets allowed at once, or ``None``.
        self.max_connections = max_connections
        #: How :meth:`shutdown` closes the open sockets (settable until then).
        self.shutdown_policy = ShutdownPolicy(window=0.0) if shutdown_policy is None else shutdown_policy
        self._stopping = stopping
        self._lock = threading.Lock()
        self._open: set[ThreadedWebSocket] = set()
        # The timer: a call per socket at its deadline (a weak reference to
        # the socket; the socket's _timer_at says which of its calls is live),
        # and the stopping poll. Its thread runs while it has calls.
        self._timer = Timer("flask-sockets timer")
        self._started = False
        self._stopped = False
        #: ``True`` once :meth:`shutdown` ran: new sockets are refused.
        self.shutting_down = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def start(self) -> None:
        """Start the timer (a :class:`~flask_sockets.timers.Timer` of its
        own, whose daemon thread runs while it has something to do) if it
        is not running yet. It runs while sockets are open (:meth:`admit`
        them first), and stops when the last one is gone."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
            if self._stopping is not None:
                self._timer.every(_STOP_POLL_INTERVAL, self._check_stopping)

    def stop(self) -> None:
        """Stop the timer and wait for its thread to end (open sockets are
        left as they are)."""
        with self._lock:
            self._stopped = True
            self._started = False
        self._timer.stop(wait=True)

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
            if not self._open and self._started:
                # Idle: no thread lingers (start() makes one for the next socket).
                self._started = False
                self._timer.stop()

    def watch(self, ws: ThreadedWebSocket) -> None:
        """Have the timer thread call on an accepted socket by its
        connection's next deadline (keepalive, the session's end); again
        when the app moves the end (:meth:`ThreadedWebSocket.expire_at`)."""
        with ws._lock:
            when = ws._protocol.next_deadline()
        if when is not None:
            self.schedule(ws, when)

    def schedule(self, ws: ThreadedWebSocket, when: float) -> bool:
        """Have the timer thread call ``ws._on_timer`` at ``when`` at the
        latest; ``False`` if there is no timer thread to do it."""
        with self._lock:
            if not self._started:
                return False
            current = ws._timer_at
            if current is None or when < current:
                ws._timer_at = when
                self._timer.call_at(when, functools.partial(self._due, weakref.ref(ws), when))
            return True

    def shutdown(self) -> None:
        """Refuse new sockets and close every open one as
        :attr:`shutdown_policy` says (1012, in batches spread over its
        window: :func:`flask_sockets.shutdown.drain`), without waiting:
        handlers reading get ``None`` once the peer answers; connections
        still up ``close_timeout`` seconds after their close frame are cut.
        Batches after the first are closed by a thread of their own."""
        with self._lock:
            self.shutting_down = True
            sockets = list(self._open)
        policy = self.shutdown_policy

        def close(ws: ThreadedWebSocket) -> None:
            ws._going_away(policy.code, policy.reason)

        if len(policy.batches(len(sockets))) <= 1:
            drain(sockets, close, policy)
        else:
            threading.Thread(
                target=drain,
                args=(sockets, close, policy),
                kwargs={"late": self._open_now},
                name="flask-sockets shutdown",
                daemon=True,
            ).start()

    def _open_now(self) -> list[ThreadedWebSocket]:
        with self._lock:
            return list(self._open)

    def _due(self, ref: weakref.ref[ThreadedWebSocket], when: float) -> None:
        """A socket's call, in the timer's thread: if it is the socket's
        live one (an earlier deadline replaces a later one), the socket acts
        on its deadlines (:meth:`ThreadedWebSocket._on_timer`, which never
        blocks) and says when to come again."""
        ws = ref()
        if ws is None:
            return
        with self._lock:
            if ws._timer_at != when:
                return
            ws._timer_at = None
        try:
            next_at = ws._on_timer(time.monotonic())
        except Exception:  # pragma: no cover - a bug; keep serving the others
            ws.abort()
            return
        if next_at is not None:
            self.schedule(ws, next_at)

    def _check_stopping(self) -> None:
        """The stopping poll (every quarter of a second, in the timer's thread)."""
        stopping = self._stopping
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


def gunicorn_graceful_timeout() -> float | None:
    """The ``--graceful-timeout`` of the gunicorn worker running this
    process (found as :func:`gunicorn_worker_stopping` finds it), or
    ``None`` outside gunicorn."""
    worker = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    timeout = getattr(getattr(worker, "cfg", None), "graceful_timeout", None)
    return None if timeout is None else float(timeout)
