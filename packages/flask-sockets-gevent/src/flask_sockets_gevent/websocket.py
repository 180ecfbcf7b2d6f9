"""The socket object handlers receive when served by :mod:`flask_sockets_gevent`.

:class:`GeventWebSocket` has gevent-websocket's socket interface
(``send``, ``receive``, ``send_frame``, ``close``, ``closed``, ``handler``,
``environ``, ``origin``, ``path``) and the rest of
:class:`flask_sockets.WebSocket`, but is a class of its own (on the core's
:class:`~flask_sockets.base.EngineSocket`), not a subclass of
gevent-websocket's ``WebSocket``, none of whose code it used:

- The handshake is answered on demand: ``101 Switching Protocols`` goes
  out at :meth:`GeventWebSocket.accept` (which Flask-Sockets calls as the
  handler starts, unless the route has ``defer_accept=True``) or at the
  first send, receive or close, so the app can refuse the connection with
  a real HTTP response until then.
- The server's open sockets are in ``server.websockets``, and
  gevent-websocket's ``server.clients`` (address to ``Client``) is a view
  of them (:class:`Clients`).
- The protocol is :class:`flask_sockets.connection.Connection`, the
  sans-I/O engine every Flask-Sockets server shares: this class only
  moves bytes between the TCP connection (handed over by the handler at
  the ``101``) and the engine, and keeps what is gevent's (timers, the
  send lock, the send timeout, yielding). The engine's buffer survives
  ``receive(timeout=...)`` giving up, so nothing partly read is lost. It
  unmasks at C speed, fails invalid UTF-8 (1007) as soon as the bad bytes
  arrive, checks announced lengths and fragment counts before payloads arrive and bounds inflation
  (1009), and speaks permessage-deflate when the client offers it and
  ``SOCKETS_COMPRESSION`` allows (see :mod:`flask_sockets.compression`).
- A connection whose frames keep arriving yields to the other greenlets
  every few dozen frames: a client flooding frames cannot starve the rest.
- When the server fails a connection (1002, 1007, 1009, a keepalive
  timeout), it sends its close frame, half-closes TCP and reads and
  discards what the peer still sends, up to ``close_timeout``, so that no
  unread data makes the kernel reset the connection and lose the close frame.
- A send that makes no progress for ``send_timeout`` seconds (a peer that
  reads nothing) cuts the connection and raises :exc:`~flask_sockets.ConnectionClosed`.
- ``close(code, reason)`` puts the code in the close frame (0.10.1 sent
  only the reason; Flask-Sockets makes up for that on 0.10.1's own
  socket) and waits, bounded, for the peer's close frame. How the
  connection ended is in ``close_code`` and ``close_reason``: the peer's
  close frame, or the server's code when it failed the connection.
- A peer that drops the TCP connection makes ``receive()`` return ``None``
  (close code 1006) instead of raising from the frame reader.
- Idle peers are pinged; one that does not answer is closed with 1011.
  A session given an end (``ws.expire_at``) is closed with 4401 at it.
  The connection decides when (:meth:`~flask_sockets.connection.Connection.handle_timer`);
  the socket sleeps on one hub timer until its next deadline, re-armed
  when the app moves the session's end.
- Using a closed socket raises :exc:`flask_sockets.ConnectionClosed` (as
  :exc:`GeventConnectionClosed`, a subclass that gevent-websocket's
  ``WebSocketError`` catches too, as 0.2 apps do).
- Frames sent from several greenlets are never interleaved.
- :meth:`GeventWebSocket.send_nowait` sends a small message only if that takes no
  waiting, so a publisher fanning a message out to many sockets
  (:mod:`flask_sockets.rooms`) can write to each directly instead of
  starting a greenlet per socket.
"""

from __future__ import annotations

import socket
import time
import typing as t
import warnings

import gevent
from gevent.lock import Semaphore
from gevent.socket import socket as GeventSocket
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import Client

import flask_sockets
from flask_sockets.base import EngineSocket
from flask_sockets.base import SocketBase
from flask_sockets.base import to_payload
from flask_sockets.connection import CLOSED
from flask_sockets.connection import CLOSING
from flask_sockets.connection import OPEN
from flask_sockets.connection import Connection
from flask_sockets.options import SocketOptions
from flask_sockets.protocol import PAUSE
from flask_sockets.protocol import Close
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import MessageTooBig

if t.TYPE_CHECKING:  # pragma: no cover
    from .handler import WebSocketHandler

__all__ = ["Clients", "ConnectionClosed", "GeventConnectionClosed", "GeventWebSocket", "MessageTooBig"]

_DEFAULTS = SocketOptions()
_READ_SIZE = 64 * 1024
# Events read from one connection before its reader yields to the hub.
_EVENTS_PER_YIELD = 32
_ENDED = frozenset((CLOSING, CLOSED))


class Clients:
    """``server.clients``: gevent-websocket's map of client address to
    ``Client(address, ws)`` (its :class:`geventwebsocket.handler.Client`),
    for apps written against it, such as
    ``for client in ws.handler.server.clients.values(): client.ws.send(m)``.

    It is a view of ``server.websockets``, the server's set of open sockets:
    nothing is stored per connection beyond that set's entry, and the
    ``Client`` objects are made when asked for. It holds the sockets that
    are open now (gevent-websocket's kept a socket until its handler
    returned, closed or not). ``keys()``, ``values()`` and ``items()``
    return lists, so a loop that sends (and lets other connections come and
    go meanwhile) never sees the map change under it.

    Entries set with ``clients[address] = client`` (gevent-websocket's own
    handler does, if a server of ours is given it) are kept as well, until
    deleted.
    """

    __slots__ = ("_set", "_sockets")

    def __init__(self, sockets: t.Collection[GeventWebSocket]) -> None:
        self._sockets = sockets
        self._set: dict[t.Any, t.Any] | None = None

    def items(self) -> list[tuple[t.Any, t.Any]]:
        """``(address, Client(address, ws))`` for each open socket."""
        result: list[tuple[t.Any, t.Any]] = []
        for ws in list(self._sockets):
            address = ws.handler.client_address
            result.append((address, Client(address, ws)))
        if self._set:
            result.extend(self._set.items())
        return result

    def keys(self) -> list[t.Any]:
        """The addresses of the open sockets' clients."""
        return [address for address, _ in self.items()]

    def values(self) -> list[t.Any]:
        """A ``Client(address, ws)`` for each open socket."""
        return [client for _, client in self.items()]

    def __getitem__(self, address: t.Any) -> t.Any:
        if self._set and address in self._set:
            return self._set[address]
        for ws in list(self._sockets):
            if ws.handler.client_address == address:
                return Client(address, ws)
        raise KeyError(address)

    def __setitem__(self, address: t.Any, client: t.Any) -> None:
        if self._set is None:
            self._set = {}
        self._set[address] = client

    def __delitem__(self, address: t.Any) -> None:
        if not self._set or address not in self._set:
            raise KeyError(address)
        del self._set[address]

    def get(self, address: t.Any, default: t.Any = None) -> t.Any:
        try:
            return self[address]
        except KeyError:
            return default

    def __contains__(self, address: object) -> bool:
        return self.get(address) is not None

    def __iter__(self) -> t.Iterator[t.Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._sockets) + len(self._set or ())

    def __repr__(self) -> str:
        return f"<Clients: {len(self)} open sockets>"


def _open_sockets(server: t.Any) -> set[GeventWebSocket]:
    """``server.websockets``, the set of open sockets an accepted socket
    joins. A server that has none (gevent's own ``WSGIServer`` given our
    handler) gets one, with its ``server.clients`` view, as
    gevent-websocket's handler gave such a server ``clients``."""
    sockets: set[GeventWebSocket] | None = getattr(server, "websockets", None)
    if sockets is None:
        sockets = server.websockets = set()
        server.clients = Clients(sockets)
    return sockets


#: The core's :exc:`flask_sockets.ConnectionClosed` (one class, importable
#: from here too): catch it; every socket class raises it (or a subclass).
ConnectionClosed = flask_sockets.ConnectionClosed


class GeventConnectionClosed(ConnectionClosed, WebSocketError):  # type: ignore[misc]
    """What the gevent socket raises when it is used closed: a
    :exc:`flask_sockets.ConnectionClosed` that gevent-websocket's
    ``WebSocketError`` catches too, as 0.2 apps do (0.2's socket raised
    ``WebSocketError``). Catch :exc:`flask_sockets.ConnectionClosed`."""


class _SendTimeout(Exception):
    """A send made no progress for ``send_timeout`` seconds."""


class GeventWebSocket(EngineSocket, SocketBase):
    """A server-side WebSocket connection on gevent (see the module docstring).

    It moves bytes between its TCP connection (handed over by the
    handler's :meth:`~flask_sockets_gevent.WebSocketHandler.upgrade` at the
    ``101``) and a :class:`flask_sockets.connection.Connection`, which
    decides everything about the protocol, the keepalive included; this
    class keeps what is gevent's: one hub timer that sleeps until the
    connection's next deadline, the send timeout, the send lock, yielding
    under floods.

    :param environ: The WSGI environ of the upgrade request.
    :param handler: The pywsgi handler serving it; the socket calls its
        ``upgrade()`` to answer the handshake, and reads its ``server`` and
        ``client_address``.
    """

    # Slots: an open socket lives as long as its connection, and thousands
    # may be idle at once. ``__dict__`` stays, for attributes an app sets.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_events_left",
        "_protocol",
        "_reader",
        "_registry",
        "_send_lock",
        "_sock",
        "_timer",
        "accepted",
        "environ",
        "handler",
        "send_timeout",
        "subprotocol",
    )

    _protocol: Connection

    def __init__(self, environ: dict[str, t.Any], handler: WebSocketHandler) -> None:
        #: The WSGI environ of the upgrade request.
        self.environ = environ
        #: The pywsgi handler serving the connection (gevent-websocket's
        #: ``ws.handler``: ``ws.handler.server.clients`` and
        #: ``ws.handler.active_client`` work as they did).
        self.handler = handler
        #: ``True`` once ``101 Switching Protocols`` has been sent.
        self.accepted = False
        #: The subprotocol sent in the handshake, if any.
        self.subprotocol: str | None = None
        # The connection: the protocol's state and rules (keepalive
        # included), and its frame parser, whose buffer holds what was read
        # (``_protocol``: EngineSocket's name for it).
        self._protocol = Connection(
            _DEFAULTS.max_message_size,
            close_timeout=_DEFAULTS.close_timeout,
            ping_interval=_DEFAULTS.ping_interval,
            ping_timeout=_DEFAULTS.ping_timeout,
        )
        # The TCP connection, once the handler has handed it over (at accept).
        self._sock: t.Any = None
        #: Seconds a send may make no progress before the connection is cut
        #: (``None``: wait forever).
        self.send_timeout: float | None = _DEFAULTS.send_timeout
        # Held while frames go out. Not re-entrant: nothing sends while holding it.
        self._send_lock = Semaphore()
        self._events_left = _EVENTS_PER_YIELD
        self._reader: t.Any = None
        # The hub timer that wakes at the connection's next deadline while
        # open, or the greenlet writing what it queued then.
        self._timer: t.Any = None
        # The server's set of open sockets (see GracefulShutdownMixin), once accepted.
        self._registry: set[GeventWebSocket] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.environ.get('PATH_INFO')!r} {self._protocol.state.name}>"

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closed or closing."""
        return self._protocol.state in _ENDED

    @closed.setter
    def closed(self, value: bool) -> None:
        # True marks the socket closed without sending anything more.
        if value:
            self._protocol.abort()
            self._drop()

    # gevent-websocket's request properties, for 0.2 apps.

    @property
    def origin(self) -> str | None:
        """The request's ``Origin`` header, if any."""
        return self.environ.get("HTTP_ORIGIN")

    @property
    def path(self) -> str | None:
        """The request's path (``PATH_INFO``)."""
        return self.environ.get("PATH_INFO")

    @property
    def protocol(self) -> str | None:
        """The client's ``Sec-WebSocket-Protocol`` header, as sent (the
        subprotocol agreed is :attr:`subprotocol`)."""
        return self.environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")

    @property
    def version(self) -> str | None:
        """The client's ``Sec-WebSocket-Version`` header."""
        return self.environ.get("HTTP_SEC_WEBSOCKET_VERSION")

    # -- handshake ------------------------------------------------------------

    def accept(self, subprotocol: str | None = None, headers: t.Sequence[tuple[str, str]] = ()) -> None:
        """Send ``101 Switching Protocols`` now, with the optional
        ``Sec-WebSocket-Protocol`` (by default the one negotiated for the
        route) and extra response headers (a ``Set-Cookie``, say). Sending,
        receiving or closing accepts implicitly. A second call does nothing."""
        if self.accepted:
            return
        if subprotocol is not None:
            self.subprotocol = subprotocol
        headers = self._handshake_headers(headers)
        try:
            self._sock, pending = self.handler.upgrade(self.subprotocol, headers)
        except OSError:
            self._handshake_failed()
            return
        self.accepted = True
        self._protocol.accept()
        if pending:
            self._protocol.receive_data(pending)
        self._registry = _open_sockets(self.handler.server)
        self._registry.add(self)
        self._protocol.last_heard = time.monotonic()
        self._arm_timer()

    def _handshake_failed(self) -> None:
        """The client left (reset, broken pipe) before the ``101`` went out.
        The socket counts as accepted, so no HTTP response follows, and is
        closed with ``close_code`` 1006: the ``receive()`` that accepted
        returns ``None``, and a send raises :exc:`~flask_sockets.ConnectionClosed`."""
        self.accepted = True
        self.abort()

    # -- receiving ------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Return the next message (``str`` for text, ``bytes`` for binary),
        or ``None`` once the connection is closed.

        :param timeout: Seconds to wait; on expiry :exc:`TimeoutError` is
            raised and the socket stays usable (nothing read is lost).
        :raises ~flask_sockets.ConnectionClosed: If the socket was already closed.
        """
        conn = self._protocol
        if conn.state is not OPEN:
            if conn.state is CLOSING and conn.has_data_to_send:
                # The timer closed it (the session's end, a keepalive
                # failure) while a send held the lock: its close frame is
                # still queued. The reader writes it and finishes the close
                # (the timer's greenlet only waited for the lock to do so).
                timer, self._timer = self._timer, None
                if isinstance(timer, gevent.Greenlet) and timer is not gevent.getcurrent():
                    timer.kill()
                self._ended()
                return None
            if self.closed:
                raise GeventConnectionClosed("Connection is already closed")
            self.accept()
            if self.closed:  # the client left before the 101
                return None
        if timeout is None:
            return self._receive()
        # gevent.Timeout is a BaseException, so nothing on the way catches it
        # (TimeoutError is an OSError, which would read as a dropped peer).
        timer = gevent.Timeout(timeout)
        try:
            with timer:
                return self._receive()
        except gevent.Timeout as e:
            if e is not timer:
                raise
            if self.closed:  # the time ran out while the connection was closing
                return None
            raise TimeoutError(f"no message within {timeout} seconds") from None

    def _receive(self) -> str | bytes | None:
        self._reader = gevent.getcurrent()
        try:
            return self._read_message()
        except OSError:  # the TCP connection broke
            self._protocol.abort()
            self._drop()
        finally:
            self._reader = None
        return None

    def _read_message(self) -> str | bytes | None:
        """Move bytes from the socket into the connection until it hands
        over a message (or the connection ends: ``None``). An interruption
        (a timeout) loses nothing: bytes only move from the socket into the
        connection's buffer."""
        conn = self._protocol
        sock = self._sock  # (not its bound recv: that would live as long as the wait)
        while True:
            event = conn.next_event()
            if event is None:
                if conn.state is not OPEN:
                    self._ended()
                    return None
                # gevent's recv waits without holding a buffer, then reads what is there.
                chunk = sock.recv(_READ_SIZE) if sock.__class__ is not GeventSocket else _recv(sock)
                if chunk:
                    conn.buffer += chunk  # (conn.receive_data, one call less)
                    conn.last_heard = time.monotonic()
                else:
                    conn.receive_eof()
                continue
            if event is PAUSE:
                gevent.sleep(0)
                continue
            if self._events_left:
                self._events_left -= 1
            else:
                # A peer whose frames keep coming must not starve the other
                # connections: let them run.
                self._events_left = _EVENTS_PER_YIELD
                gevent.sleep(0)
            cls = event.__class__
            if cls is str or cls is bytes:
                return event  # type: ignore[return-value]
            if cls is Close:
                self._ended()
                return None
            if conn.has_data_to_send:  # a ping's pong
                self._flush(None)

    def _ended(self) -> None:
        """The connection is no longer open (the peer closed, we failed it,
        another greenlet closed it, it ended): write what it queued (a close
        frame) and finish closing."""
        try:
            if self._protocol.has_data_to_send:
                self._flush(self.close_timeout)
            self._finish_closing()
        finally:
            self._drop()

    # -- sending --------------------------------------------------------------

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        """Send one final frame with ``opcode`` (text, binary, ping or pong).
        Frames from several greenlets never interleave. A text or binary
        message is compressed if permessage-deflate was negotiated, it
        reaches the threshold and ``compress`` is true.

        :raises ~flask_sockets.ConnectionClosed: If the socket is closed.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        :raises ValueError: For another opcode (close with :meth:`close`).
        """
        conn = self._protocol
        if conn.state is not OPEN:
            self.accept()
            if conn.state is not OPEN:
                # The classic loop sends receive()'s None once the peer closed.
                raise GeventConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        with self._send_lock:
            if conn.state is not OPEN:  # closed while this waited for the lock
                raise GeventConnectionClosed("Connection is already closed")
            conn.send_frame(opcode, payload, compress, message)
            self._write_out()

    def send_nowait(self, message: str | bytes) -> bool:
        """Send a message (text for ``str``, binary otherwise) only if that
        takes no waiting: for publishers that must never block, such as
        :mod:`flask_sockets.rooms` fanning a message out to many sockets.
        Call it from the socket's own hub; it never switches greenlets.

        :returns: ``True`` if the frame went out (when the kernel took only
            part of it, a greenlet sends the rest, and later frames follow
            it); ``False`` if nothing was sent because that would wait:
            the handshake is not answered yet, another greenlet is sending,
            the kernel's send buffer is full, the message is over 16 KiB
            (compressed), it would be compressed with context (server context
            takeover), or the connection is TLS. Send it the usual way then.
        :raises ~flask_sockets.ConnectionClosed: If the socket is closed or the peer is gone.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        """
        conn = self._protocol
        if conn.state is not OPEN:
            if self.closed:
                raise GeventConnectionClosed("Connection is already closed")
            return False  # not accepted yet
        payload = to_payload(message)
        sock = self._sock
        # gevent's TLS socket waits whatever timeout send() is given.
        if type(sock) is not GeventSocket or not self._send_lock.acquire(blocking=False):
            return False
        handed_over = False
        try:
            data = conn.frame_now(payload, isinstance(message, str), message)
            if data is None:
                return False
            try:
                # gevent.socket.send(data, flags, timeout): with timeout 0.0 it raises instead of waiting.
                sent = sock.send(data, 0, 0.0)  # type: ignore[call-arg]
            except BlockingIOError:
                conn.not_sent(len(data), len(payload))
                return False
            except OSError as e:
                self._protocol.abort()
                self._drop()
                raise GeventConnectionClosed(f"Socket is dead: {e}") from e
            if sent < len(data):
                # The frame has begun: it must be finished before any other.
                gevent.spawn_raw(self._finish_write, memoryview(data)[sent:])
                handed_over = True
            return True
        finally:
            if not handed_over:
                self._send_lock.release()

    def _finish_write(self, rest: memoryview) -> None:
        """Send the rest of a frame :meth:`send_nowait` began, then release
        the send lock it holds for us."""
        try:
            self._send_all(self._sock, rest)
        except BaseException as e:
            self._write_failed(e)
            if not isinstance(e, Exception):
                raise
        finally:
            self._send_lock.release()

    def _flush(self, lock_timeout: float | None) -> bool:
        """Write what the connection queued by itself (a pong, a close
        frame); ``False`` if the TCP connection is gone. A send that holds
        the lock longer than ``lock_timeout`` gets the connection cut instead."""
        lock = self._send_lock
        if not lock.acquire(timeout=lock_timeout):
            self.abort()
            return False
        try:
            self._write_out()
        except ConnectionClosed:
            return False
        finally:
            lock.release()
        return True

    def _write_out(self) -> None:
        """Write what the connection has queued; the caller holds the send lock."""
        sock = self._sock
        try:
            for chunk in self._protocol.data_to_send():
                self._send_all(sock, chunk)
        except BaseException as e:
            self._write_failed(e)
            if isinstance(e, _SendTimeout):
                raise GeventConnectionClosed(f"The peer read nothing for {self.send_timeout} seconds") from None
            if isinstance(e, OSError):
                raise GeventConnectionClosed(f"Socket is dead: {e}") from e
            raise

    def _send_all(self, sock: t.Any, data: bytes | memoryview) -> None:
        """Send all of ``data``. When the kernel does not take it at once,
        each wait for the peer to read more is bounded by ``send_timeout``
        (:exc:`_SendTimeout`); the peer reading counts as hearing from it."""
        sent = 0
        if type(sock) is GeventSocket:  # (gevent's TLS socket would wait despite the 0.0)
            try:
                # One non-blocking send nearly always takes it all: no timer then.
                sent = sock.send(data, 0, 0.0)  # type: ignore[call-arg]
            except BlockingIOError:
                pass
            if sent == len(data):
                return
        rest = memoryview(data)[sent:]
        timeout = self.send_timeout
        while rest:
            if timeout is None:
                sent = sock.send(rest)
            else:
                with gevent.Timeout(timeout, _SendTimeout):
                    sent = sock.send(rest)
            rest = rest[sent:]
            self._protocol.last_heard = time.monotonic()

    def _write_failed(self, error: BaseException) -> None:
        """Frames were cut short (the peer left, it read nothing for
        ``send_timeout``, or the sender was interrupted): the stream is
        unusable. A peer that reads nothing is cut off, which wakes the reader."""
        self._protocol.abort()
        self._drop()
        if isinstance(error, _SendTimeout):
            self._shutdown()

    # -- closing --------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close the connection: send a close frame with ``code`` and
        ``message`` (the reason, cut to 123 bytes), then wait up to
        ``close_timeout`` seconds for the peer's close frame. Closing a
        closed socket does nothing.

        :raises ValueError: If ``code`` may not be sent (RFC 6455, 7.4:
            1000-1003, 1007-1014, 3000-4999).
        """
        if self.closed:
            return
        self.accept()
        conn = self._protocol
        try:
            with self._send_lock:
                if conn.state is not OPEN:  # closed while this waited for the lock
                    return
                conn.send_close(code, message)
                self._write_out()
            self._finish_closing()
        except ConnectionClosed:
            pass
        finally:
            if conn.state is not OPEN:
                self._drop()

    def _finish_closing(self) -> None:
        """While the connection is closing, wait at most until its close
        deadline for the peer to finish, reading what it still sends:
        closing a socket that has unread data makes the kernel reset the
        connection, and the peer then loses our close frame.

        A connection that failed (the server failed it, or the peer's frames
        stopped making sense) is half-closed at once (RFC 6455, 7.1.1),
        which tells the peer we are done; the connection discards what
        comes until the peer's end. If another greenlet is reading, it does
        the reading, and the connection is cut when the time is up.
        """
        conn = self._protocol
        if conn.state is not CLOSING:
            return
        reader = self._reader
        deadline = t.cast(float, conn.close_deadline)
        if reader is not None and reader is not gevent.getcurrent():
            if conn.failed:
                self._shutdown(socket.SHUT_WR)
            timer = gevent.get_hub().loop.timer(max(0.0, deadline - time.monotonic()), ref=False)
            timer.start(self._close_timed_out)
            return
        half_closed = False
        sock = self._sock
        # False: on expiry, leave the block silently (gevent's documented idiom).
        with gevent.Timeout(max(0.0, deadline - time.monotonic()), False):  # type: ignore[arg-type]
            try:
                while conn.state is CLOSING:
                    if conn.failed and not half_closed:
                        self._shutdown(socket.SHUT_WR)
                        half_closed = True
                    event = conn.next_event()
                    if event is None:
                        chunk = sock.recv(_READ_SIZE)
                        if chunk:
                            conn.receive_data(chunk)
                        else:
                            conn.receive_eof()
                    elif event is PAUSE:
                        gevent.sleep(0)
            except OSError:
                conn.abort()
        failed = conn.failed
        if conn.state is CLOSING:
            self._close_timed_out()
        elif failed:
            self._shutdown()

    def _close_timed_out(self) -> None:
        """The close deadline has passed (a hub timer, or the reader's
        timeout, fired at it: libev's clock may lag ``time.monotonic``
        a little): the connection decides, and a connection it ends is cut."""
        conn = self._protocol
        deadline = conn.close_deadline
        if deadline is None:
            return
        conn.handle_timer(max(time.monotonic(), deadline))
        self._shutdown()

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (close code 1006).
        A handler blocked in ``receive()`` gets ``None``."""
        self._protocol.abort()
        self._drop()
        self._shutdown()

    def _shutdown(self, how: int = socket.SHUT_RDWR) -> None:
        """Shut the TCP connection down (if it is still there): a greenlet
        waiting on it wakes up."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(how)
            except OSError:  # gone already (the handler closes it once the request is over)
                pass

    def _drop(self) -> None:
        """The connection is no longer open: leave the server's set of open
        sockets and stop the timer."""
        if self._registry is not None:
            self._registry.discard(self)
        timer, self._timer = self._timer, None
        if isinstance(timer, gevent.Greenlet):
            if timer is not gevent.getcurrent():
                timer.kill(block=False)
        elif timer is not None:
            timer.close()

    # -- time: keepalive and session expiry ------------------------------------

    def _arm_timer(self) -> None:
        """Sleep until the connection's next deadline (keepalive, the
        session's end), on a hub timer: no greenlet per socket while the
        peer is heard from."""
        when = self._protocol.next_deadline()
        if when is None:
            self._timer = None
            return
        timer = gevent.get_hub().loop.timer(max(0.0, when - time.monotonic()))
        self._timer = timer
        timer.start(self._timer_due)

    def _expiry_changed(self) -> None:
        """The app moved the session's end: re-arm the one timer at the
        connection's next deadline. Not before the ``101`` (accepting arms
        it) nor once closing; a greenlet writing what the timer queued (a
        ping) re-arms it itself when done."""
        timer = self._timer
        if not self.accepted or self._protocol.state is not OPEN or isinstance(timer, gevent.Greenlet):
            return
        if timer is not None:
            timer.close()
        self._arm_timer()

    def _timer_due(self) -> None:
        # Runs in the hub: must not block. The connection decides; writing
        # what it queued (a ping, the close frame of a keepalive failure or
        # of the session's end) is handed to a greenlet. (libev's clock may
        # run a little ahead of time.monotonic: then nothing is due yet and
        # the timer is armed again.)
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        conn = self._protocol
        if conn.state is not OPEN:
            return  # (closing: close() and the reader keep the close deadline)
        conn.handle_timer(time.monotonic())
        if conn.state is not OPEN:  # the keepalive failed it (1011), or the session ended (4401)
            self._timer = gevent.spawn(self._ended)
        elif conn.has_data_to_send:  # a ping
            self._timer = gevent.spawn(self._write_ping)
        else:  # the peer was heard from meanwhile: sleep again
            self._arm_timer()

    def _write_ping(self) -> None:
        """Write the ping the connection queued, then sleep until its next
        deadline (when the pong is due). The ping waits at most
        ``ping_timeout`` behind a send in progress: a send that goes on that
        long either makes progress (the peer reads, which counts as hearing
        from it) or is cut by ``send_timeout``."""
        lock = self._send_lock
        try:
            if lock.acquire(timeout=self.ping_timeout):
                try:
                    if self._protocol.has_data_to_send:
                        self._write_out()
                finally:
                    lock.release()
        except ConnectionClosed:
            return
        if self._timer is gevent.getcurrent():
            self._arm_timer()


def _recv(sock: t.Any) -> bytes:
    """``sock.recv(_READ_SIZE)`` for a plain gevent socket, waiting the
    same way with fewer C frames under the switch to the hub. A greenlet
    keeps the C stack under its last switch saved on the heap while it
    waits, for as long as a WebSocket is idle; gevent's wait (``_wait``,
    ``wait_on_watcher``, ``Waiter.get``, ``Hub.switch``) adds ~900 bytes
    of it per connection, starting the socket's own read watcher with
    this greenlet's ``switch`` and switching to the hub adds none of that.
    Whatever wakes the greenlet (the watcher, a ``gevent.Timeout``, a
    kill, ``close()`` from another greenlet: gevent throws into the
    watcher's greenlet) stops the watcher, and a spurious wake-up only
    reads again. A socket with a timeout of its own, or whose watcher
    another greenlet waits on, takes gevent's ``recv``."""
    raw = sock._sock
    while True:
        try:
            return raw.recv(_READ_SIZE)  # type: ignore[no-any-return]
        except BlockingIOError:
            pass
        watcher = sock._read_event
        if sock.timeout is not None or watcher.callback is not None:
            return sock.recv(_READ_SIZE)  # type: ignore[no-any-return]
        watcher.start(gevent.getcurrent().switch)
        try:
            gevent.get_hub().switch()
        finally:
            watcher.stop()


def _renamed() -> type[GeventWebSocket]:
    """``WebSocket``, this class's name during 0.3's development (the name
    of gevent-websocket's class, which it no longer derives from): still
    importable, with a :exc:`DeprecationWarning`."""
    warnings.warn(
        "flask_sockets_gevent.WebSocket is now named GeventWebSocket"
        " (in type hints, use flask_sockets.WebSocket, which every server's socket satisfies)",
        DeprecationWarning,
        stacklevel=3,
    )
    return GeventWebSocket


def __getattr__(name: str) -> t.Any:
    if name == "WebSocket":
        return _renamed()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if t.TYPE_CHECKING:  # pragma: no cover
    import flask_sockets.typing

    # mypy checks here that this socket satisfies the documented interface.
    _CONFORMS: type[flask_sockets.typing.WebSocket] = GeventWebSocket
