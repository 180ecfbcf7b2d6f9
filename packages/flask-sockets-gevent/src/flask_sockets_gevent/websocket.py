"""The socket object handlers receive when served by :mod:`flask_sockets_gevent`.

It keeps gevent-websocket's ``WebSocket`` interface (``send``, ``receive``,
``send_frame``, ``close``, ``closed``) and replaces its protocol code:

- The handshake is answered on demand: ``101 Switching Protocols`` goes
  out at :meth:`WebSocket.accept` (which Flask-Sockets calls as the
  handler starts, unless the route has ``defer_accept=True``) or at the
  first send, receive or close, so the app can refuse the connection with
  a real HTTP response until then.
- The server's open sockets are in ``server.websockets``, and
  gevent-websocket's ``server.clients`` (address to ``Client``) is a view
  of them (:class:`Clients`).
- The protocol is :mod:`flask_sockets.protocol`, the sans-I/O engine
  every Flask-Sockets server shares: this class only reads, feeds it,
  and writes what it makes. Its buffer survives ``receive(timeout=...)``
  giving up, so nothing partly read is lost. It unmasks at C speed, fails
  invalid UTF-8 (1007) as soon as the bad bytes arrive, checks announced
  lengths and fragment counts before payloads arrive and bounds inflation
  (1009), and speaks permessage-deflate when the client offers it and
  ``SOCKETS_COMPRESSION`` allows (see :mod:`flask_sockets.compression`).
- A connection whose frames keep arriving yields to the other greenlets
  every few dozen frames: a client flooding frames cannot starve the rest.
- When the server fails a connection (1002, 1007, 1009, a keepalive
  timeout), it sends its close frame, half-closes TCP and reads and
  discards what the peer still sends, up to ``close_timeout``, so that no
  unread data makes the kernel reset the connection and lose the close frame.
- A send that makes no progress for ``send_timeout`` seconds (a peer that
  reads nothing) cuts the connection and raises :exc:`ConnectionClosed`.
- ``close(code, reason)`` puts the code in the close frame (0.10.1 sent
  only the reason; Flask-Sockets makes up for that on 0.10.1's own
  socket) and waits, bounded, for the peer's close frame. The peer's
  close code and reason are kept in ``close_code`` and ``close_reason``.
- A peer that drops the TCP connection makes ``receive()`` return ``None``
  (close code 1006) instead of raising from the frame reader.
- Idle peers are pinged; one that does not answer is closed with 1011.
- Using a closed socket raises :exc:`ConnectionClosed`, which both
  gevent-websocket's ``WebSocketError`` and
  :exc:`flask_sockets.ConnectionClosed` catch.
- Frames sent from several greenlets are never interleaved.
- :meth:`WebSocket.send_nowait` sends a small message only if that takes no
  waiting, so a publisher fanning a message out to many sockets
  (:mod:`flask_sockets.rooms`) can write to each directly instead of
  starting a greenlet per socket.
"""

from __future__ import annotations

import os
import socket
import time
import typing as t

import gevent
from gevent.lock import Semaphore
from gevent.socket import socket as GeventSocket
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import Client
from geventwebsocket.websocket import WebSocket as _BaseWebSocket

import flask_sockets
from flask_sockets.base import EngineSocket
from flask_sockets.base import SocketBase
from flask_sockets.base import to_payload
from flask_sockets.options import SocketOptions
from flask_sockets.protocol import PAUSE
from flask_sockets.protocol import Close
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import MessageTooBig
from flask_sockets.protocol import Ping
from flask_sockets.protocol import ProtocolError
from flask_sockets.protocol import ServerProtocol
from flask_sockets.protocol import close_payload
from flask_sockets.protocol import frame_header

if t.TYPE_CHECKING:  # pragma: no cover
    from .handler import WebSocketHandler

__all__ = ["Clients", "ConnectionClosed", "MessageTooBig", "WebSocket"]

_DEFAULTS = SocketOptions()
# Messages up to this size go out in one write (header + payload); larger
# ones in two, to avoid copying the payload.
_SINGLE_WRITE_LIMIT = 16 * 1024
_READ_SIZE = 64 * 1024
# Events read from one connection before its reader yields to the hub.
_EVENTS_PER_YIELD = 32


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

    def __init__(self, sockets: t.Collection[WebSocket]) -> None:
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


def _open_sockets(server: t.Any) -> set[WebSocket]:
    """``server.websockets``, the set of open sockets an accepted socket
    joins. A server that has none (gevent's own ``WSGIServer`` given our
    handler) gets one, with its ``server.clients`` view, as
    gevent-websocket's handler gave such a server ``clients``."""
    sockets: set[WebSocket] | None = getattr(server, "websockets", None)
    if sockets is None:
        sockets = server.websockets = set()
        server.clients = Clients(sockets)
    return sockets


class ConnectionClosed(flask_sockets.ConnectionClosed, WebSocketError):  # type: ignore[misc]
    """The socket is closed; it can neither send nor receive."""


class _PeerGone(Exception):
    """The TCP connection ended in the middle of the protocol."""


class _SendTimeout(Exception):
    """A send made no progress for ``send_timeout`` seconds."""


class WebSocket(EngineSocket, SocketBase, _BaseWebSocket):  # type: ignore[misc]
    """A server-side WebSocket connection (see the module docstring)."""

    # Slots: an open socket lives as long as its connection, and thousands
    # may be idle at once. ``__dict__`` stays, for attributes an app sets.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_events_left",
        "_keepalive",
        "_last_heard",
        "_protocol",
        "_reader",
        "_registry",
        "_send_lock",
        "accepted",
        "close_code",
        "close_reason",
        "close_timeout",
        "ping_interval",
        "ping_timeout",
        "send_timeout",
        "subprotocol",
    )

    handler: WebSocketHandler
    # Set to None once the connection is closed.
    stream: t.Any
    raw_write: t.Any
    raw_read: t.Any

    def __init__(self, environ: dict[str, t.Any], stream: t.Any, handler: WebSocketHandler) -> None:
        super().__init__(environ, stream, handler)
        #: ``True`` once ``101 Switching Protocols`` has been sent.
        self.accepted = False
        #: The subprotocol sent in the handshake, if any.
        self.subprotocol: str | None = None
        #: The close code the peer sent (1005 if its close frame had none,
        #: 1006 if it vanished without one), or ``None``.
        self.close_code: int | None = None
        #: The close reason the peer sent.
        self.close_reason: str | None = None
        # The protocol engine: frames in, messages out (its buffer holds what was read).
        self._protocol = ServerProtocol(_DEFAULTS.max_message_size)
        #: Seconds of peer silence before a ping, or ``None`` to never ping.
        self.ping_interval: float | None = _DEFAULTS.ping_interval
        #: Seconds to wait for a pong before closing with 1011.
        self.ping_timeout: float = _DEFAULTS.ping_timeout
        #: Seconds :meth:`close` waits for the peer's close frame.
        self.close_timeout: float = _DEFAULTS.close_timeout
        #: Seconds a send may make no progress before the connection is cut
        #: (``None``: wait forever).
        self.send_timeout: float | None = _DEFAULTS.send_timeout
        # Held while a frame goes out. Not re-entrant: nothing sends while holding it.
        self._send_lock = Semaphore()
        self._events_left = _EVENTS_PER_YIELD
        self._reader: t.Any = None
        self._last_heard = time.monotonic()
        # A hub timer while the peer is active; a greenlet only while a ping is out.
        self._keepalive: t.Any = None
        # The server's set of open sockets (see GracefulShutdownMixin), once accepted.
        self._registry: set[WebSocket] | None = None

    def __del__(self) -> None:
        # gevent-websocket closes from __del__; the handler closes us instead,
        # and an unaccepted socket must never be answered from a finaliser.
        pass

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
            self.handler.send_handshake(self.subprotocol, headers)
        except OSError:
            self._handshake_failed()
            return
        self.accepted = True
        self._take_over_input()
        self._registry = _open_sockets(self.handler.server)
        self._registry.add(self)
        self._last_heard = time.monotonic()
        try:
            self.handler.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # pragma: no cover - not a TCP socket
            pass
        if self.ping_interval:
            self._arm_keepalive(self.ping_interval)

    def _handshake_failed(self) -> None:
        """The client left (reset, broken pipe) before the ``101`` went out.
        The socket counts as accepted, so no HTTP response follows, and is
        closed with ``close_code`` 1006: the ``receive()`` that accepted
        returns ``None``, and a send raises :exc:`ConnectionClosed`."""
        self.accepted = True
        self.abort()

    def _take_over_input(self) -> None:
        """From now on read frames straight from the socket: move whatever
        the HTTP reader has buffered into our buffer, then close the reader,
        which frees its 8 KiB buffer (the socket stays open)."""
        handler = self.handler
        rfile, sock = handler.rfile, handler.socket
        timeout = sock.gettimeout()
        sock.settimeout(0.0)  # peek() must not wait for more
        try:
            pending = rfile.peek()
        except OSError:
            pending = b""
        finally:
            sock.settimeout(timeout)
        if pending:
            self._protocol.buffer += rfile.read1(len(pending))
        rfile.close()

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
        except ProtocolError as e:
            self._fail(e.code, str(e))
        except (_PeerGone, OSError):
            self._drop(CloseCode.ABNORMAL_CLOSURE)
        except ConnectionClosed:  # a pong could not be sent: the socket is closed already
            pass
        finally:
            self._reader = None
        return None

    def _next_event(self) -> t.Any:
        """The next event of the protocol engine, reading as it needs. An
        interruption (a timeout) loses nothing: bytes only move from the
        socket into the engine's buffer."""
        protocol = self._protocol
        if self._events_left:
            self._events_left -= 1
        else:
            # A peer whose frames keep coming must not starve the other
            # connections: let them run.
            self._events_left = _EVENTS_PER_YIELD
            gevent.sleep(0)
        sock = self.handler.socket  # (not its bound recv: that would live as long as the wait)
        while True:
            event = protocol.next_event()
            if event is None:
                # gevent's recv waits without holding a buffer, then reads what is there.
                chunk = sock.recv(_READ_SIZE)
                if not chunk:
                    raise _PeerGone()
                protocol.buffer += chunk
                self._last_heard = time.monotonic()
            elif event is PAUSE:
                gevent.sleep(0)
            else:
                return event

    def _read_message(self) -> str | bytes | None:
        while True:
            event = self._next_event()
            cls = event.__class__
            if cls is str or cls is bytes:
                if self.closed:
                    # We sent our close frame: what comes before the peer's is discarded.
                    continue
                return t.cast("str | bytes", event)
            if cls is Ping:
                if not self.closed:
                    self.send_frame(event.payload, self.OPCODE_PONG)
            elif cls is Close:
                self._on_close_frame(event)
                return None

    def _on_close_frame(self, event: Close) -> None:
        self.close_code, self.close_reason = event.code, event.reason
        # Echo the peer's code (RFC 6455, 5.5.1); the peer closes TCP next.
        reply = CloseCode.NORMAL_CLOSURE if event.code == CloseCode.NO_STATUS_RCVD else event.code
        self._send_close(reply, b"")
        self._drop(None)

    # -- sending --------------------------------------------------------------

    def send_frame(self, message: t.Any, opcode: int, compress: bool = True) -> None:
        """Send one final frame with ``opcode``. Frames from several
        greenlets never interleave. A text or binary message is compressed
        if permessage-deflate was negotiated, it reaches the threshold and
        ``compress`` is true.

        :raises ConnectionClosed: If the socket is closed.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        """
        self.accept()
        if self.closed:
            # First: the classic loop sends receive()'s None once the peer closed.
            raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        if opcode <= self.OPCODE_BINARY:
            self._write(*self._protocol.data_frame(opcode, payload, compress, message))
        else:
            self._write(frame_header(opcode, len(payload)), payload)

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
        :raises ConnectionClosed: If the socket is closed or the peer is gone.
        :raises TypeError: If ``message`` is not ``str`` or bytes-like.
        """
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        payload = to_payload(message)
        sock = self.handler.socket
        # gevent's TLS socket waits whatever timeout send() is given.
        if not self.accepted or type(sock) is not GeventSocket or not self._send_lock.acquire(blocking=False):
            return False
        handed_over = False
        try:
            opcode = self.OPCODE_TEXT if isinstance(message, str) else self.OPCODE_BINARY
            deflate = self._protocol.deflate
            if deflate is not None and deflate.shared is None and len(payload) >= deflate.settings.threshold:
                # Compressing with context changes the compressor's state:
                # only for a frame sure to go out (the usual way).
                return False
            header, payload = self._protocol.data_frame(opcode, payload, True, message)
            if len(payload) > _SINGLE_WRITE_LIMIT:
                return False
            data = header + payload
            try:
                # gevent.socket.send(data, flags, timeout): with timeout 0.0 it raises instead of waiting.
                sent = sock.send(data, 0, 0.0)  # type: ignore[call-arg]
            except BlockingIOError:
                return False
            except OSError as e:
                self._drop(CloseCode.ABNORMAL_CLOSURE)
                raise ConnectionClosed(f"Socket is dead: {e}") from e
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
            self._send_all(self.handler.socket, rest)
        except BaseException as e:
            self._write_failed(e)
            if not isinstance(e, Exception):
                raise
        finally:
            self._send_lock.release()

    def _write(self, header: bytes, payload: bytes) -> None:
        with self._send_lock:
            self._write_locked(header, payload)

    def _write_locked(self, header: bytes, payload: bytes) -> None:
        """Send one frame; the caller holds the send lock."""
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        sock = self.handler.socket
        try:
            if len(payload) <= _SINGLE_WRITE_LIMIT:
                self._send_all(sock, header + payload)
            else:  # two writes, not a copy of the payload
                self._send_all(sock, header)
                self._send_all(sock, payload)
        except BaseException as e:
            self._write_failed(e)
            if isinstance(e, _SendTimeout):
                raise ConnectionClosed(f"The peer read nothing for {self.send_timeout} seconds") from None
            if isinstance(e, OSError):
                raise ConnectionClosed(f"Socket is dead: {e}") from e
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
            self._last_heard = time.monotonic()

    def _write_failed(self, error: BaseException) -> None:
        """A frame was cut short (the peer left, it read nothing for
        ``send_timeout``, or the sender was interrupted): the stream is
        unusable. A peer that reads nothing is cut off, which wakes the reader."""
        self._drop(CloseCode.ABNORMAL_CLOSURE)
        if isinstance(error, _SendTimeout):
            self._shutdown()

    # -- closing --------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
        """Close the connection: send a close frame with ``code`` and
        ``message`` (the reason, at most 123 bytes), then wait up to
        ``close_timeout`` seconds for the peer's close frame. Closing a
        closed socket does nothing."""
        if self.closed:
            return
        self.accept()
        if self._send_close(code, message):
            self._finish_closing(failed=False)
        self._drop(None)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455, 7.1.7) for what the peer did: send
        a close frame, then nothing more, and let the peer finish (see
        :meth:`_finish_closing`)."""
        try:
            if self._send_close(code, reason, lock_timeout=self.close_timeout):
                self._finish_closing(failed=True)
        finally:
            self._drop(None)

    def _send_close(self, code: int, reason: bytes | str, lock_timeout: float | None = None) -> bool:
        """Send a close frame; ``False`` if the connection is already gone.
        With ``lock_timeout``, a send that holds the lock longer than that
        gets the connection cut instead."""
        payload = close_payload(code, reason)
        header = frame_header(self.OPCODE_CLOSE, len(payload))
        try:
            if lock_timeout is None:
                self._write(header, payload)
            elif self._send_lock.acquire(timeout=lock_timeout):
                try:
                    self._write_locked(header, payload)
                finally:
                    self._send_lock.release()
            else:
                self.abort()
                return False
        except ConnectionClosed:
            return False
        self.closed = True
        return True

    def _finish_closing(self, failed: bool) -> None:
        """After our close frame, wait at most ``close_timeout`` for the peer
        to finish, reading what it still sends: closing a socket that has
        unread data makes the kernel reset the connection, and the peer then
        loses our close frame.

        After a graceful close, frames are read (data discarded) until the
        peer's close frame. After a failure (``failed``), frames may no longer
        make sense: TCP is half-closed at once (RFC 6455, 7.1.1), which tells
        the peer we are done, and everything is discarded until its end of
        the connection. If another greenlet is reading, it does the reading
        (:meth:`_read_message` discards data once we are closed) and the
        connection is cut when the time is up.
        """
        reader = self._reader
        if reader is not None and reader is not gevent.getcurrent():
            if failed:
                self._shutdown(socket.SHUT_WR)
            timer = gevent.get_hub().loop.timer(self.close_timeout, ref=False)
            timer.start(self._shutdown)
            return
        # False: on expiry, leave the block silently (gevent's documented idiom).
        with gevent.Timeout(self.close_timeout, False):  # type: ignore[arg-type]
            if not failed and self._await_close_frame():
                return
            self._discard_input()
        if failed:
            self._shutdown()

    def _await_close_frame(self) -> bool:
        """Read frames until the peer's close frame (its code and reason go
        in ``close_code`` and ``close_reason``); ``False`` if frames stopped
        making sense before it came, ``True`` otherwise."""
        try:
            while True:
                event = self._next_event()
                if event.__class__ is Close:
                    if event.code != CloseCode.NO_STATUS_RCVD:
                        self.close_code, self.close_reason = event.code, event.reason
                    return True
        except ProtocolError:
            return False
        except (_PeerGone, OSError):
            return True

    def _discard_input(self) -> None:
        """Half-close TCP, then read and drop what comes until the peer's
        end of the connection."""
        self._protocol.buffer.clear()
        self._shutdown(socket.SHUT_WR)
        sock = self.handler.socket
        try:
            while sock.recv(_READ_SIZE):
                pass
        except OSError:
            pass

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (close code 1006).
        A handler blocked in ``receive()`` gets ``None``."""
        self._drop(CloseCode.ABNORMAL_CLOSURE)
        self._shutdown()

    def _shutdown(self, how: int = socket.SHUT_RDWR) -> None:
        """Shut the TCP connection down (if it is still there): a greenlet
        waiting on it wakes up."""
        sock = getattr(self.handler, "socket", None)  # pywsgi drops it once the request is over
        if sock is not None:
            try:
                sock.shutdown(how)
            except OSError:
                pass

    def _drop(self, close_code: int | None) -> None:
        """Mark the connection closed without sending anything more."""
        if close_code is not None and self.close_code is None:
            self.close_code = close_code
        self.closed = True
        if self._registry is not None:
            self._registry.discard(self)
        keepalive, self._keepalive = self._keepalive, None
        if isinstance(keepalive, gevent.Greenlet):
            if keepalive is not gevent.getcurrent():
                keepalive.kill(block=False)
        elif keepalive is not None:
            keepalive.close()

    # -- keepalive ------------------------------------------------------------

    def _arm_keepalive(self, delay: float) -> None:
        """Check on the peer in ``delay`` seconds, from a hub timer: no
        greenlet per socket while the peer is active."""
        timer = gevent.get_hub().loop.timer(delay)
        self._keepalive = timer
        timer.start(self._keepalive_due)

    def _keepalive_due(self) -> None:
        # Runs in the hub: must not block. Re-arm, or hand over to a greenlet to ping.
        timer, self._keepalive = self._keepalive, None
        if timer is not None:
            timer.close()
        if self.closed:
            return
        interval = t.cast(float, self.ping_interval)
        silent_for = time.monotonic() - self._last_heard
        if silent_for < interval:
            self._arm_keepalive(interval - silent_for)
        else:
            self._keepalive = gevent.spawn(self._keep_alive)

    def _keep_alive(self) -> None:
        """Ping a peer that has been silent for ``ping_interval`` seconds; if
        nothing comes back within ``ping_timeout``, fail the connection with
        1011 (the reader's ``receive()`` returns ``None``).

        The ping waits at most ``ping_timeout`` behind a send in progress: a
        send that goes on that long either makes progress (the peer reads,
        which counts as hearing from it) or is cut by ``send_timeout``."""
        sent_at = time.monotonic()
        try:
            if self._send_lock.acquire(timeout=self.ping_timeout):
                try:
                    self._write_locked(frame_header(self.OPCODE_PING, 4), os.urandom(4))
                finally:
                    self._send_lock.release()
        except ConnectionClosed:
            return
        remaining = sent_at + self.ping_timeout - time.monotonic()
        if remaining > 0:
            gevent.sleep(remaining)
        if self.closed:
            return
        if self._last_heard < sent_at:
            self.close_code = CloseCode.INTERNAL_ERROR
            self.close_reason = "keepalive ping timeout"
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            return
        self._keepalive = None
        interval = t.cast(float, self.ping_interval)
        self._arm_keepalive(max(0.0, interval - (time.monotonic() - self._last_heard)))
