"""Delivery: how a published message reaches one socket of this process
without ever blocking the publisher.

Back-pressure: a :class:`Member` (one socket) has a bounded send queue
(``SOCKETS_SEND_QUEUE_SIZE`` messages). Publishing only appends to it; a
writer next to the socket (a greenlet in the socket's gevent hub, or a
thread on the development server; see :mod:`flask_sockets.concurrency`)
sends the queued messages, one at a time, in order. A fan-out's common
case skips the queue: a socket with nothing queued whose connection can
take the message at once (``ws.send_nowait``, on the gevent socket) gets
it straight from a publisher running in the socket's hub. A client that does not
read fast enough fills its queue: it is then closed with
:data:`CLOSE_SLOW_CONSUMER` (1008) and :data:`SLOW_CONSUMER_REASON`, leaves
its rooms at once, and its queue is dropped. The other members, and the
publisher, never wait for it. If even the close frame cannot be sent within
``SOCKETS_CLOSE_TIMEOUT`` seconds (the client reads nothing at all), the
connection is cut.

A member may have a *format*: a function that turns each room message into
the frame this socket gets (the envelope of :mod:`flask_sockets.envelope`
does so). Members without one (every socket of an app that owns its wire
format) get the published message as it is, except a message published as
JSON data for the envelope (:data:`ENVELOPE_JSON` and the JSON, see
:func:`flask_sockets.envelope.publish`): they get the JSON text alone
(:func:`raw_message`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import typing as t

from ..base import to_payload
from ..exceptions import ConnectionClosed
from ..foreign import as_socket
from ..protocol import CloseCode
from .history import Position

if t.TYPE_CHECKING:  # pragma: no cover
    from ..base import SocketBase
    from ..concurrency import Runner
    from ..typing import BasicWebSocket
    from ..typing import Message
    from ..typing import WebSocket

__all__ = [
    "CLOSE_SLOW_CONSUMER",
    "ENVELOPE_JSON",
    "SLOW_CONSUMER_REASON",
    "Format",
    "Member",
    "checked_message",
    "raw_message",
]

logger = logging.getLogger("flask_sockets.rooms")

#: The close code of a socket whose send queue overflowed (policy violation:
#: the client does not read what it is sent).
CLOSE_SLOW_CONSUMER = CloseCode.POLICY_VIOLATION
#: The close reason sent with :data:`CLOSE_SLOW_CONSUMER`.
SLOW_CONSUMER_REASON = "Send queue full: the client does not read fast enough"
#: How often a closing member checks whether its handler has ended.
_POLL_INTERVAL = 0.02
#: ``format(room, message, position)``: the frame a member gets for a room
#: message (``room`` is ``None`` for a broadcast; ``position`` ``None``
#: without history).
Format = t.Callable[[t.Optional[str], "Message", t.Optional[Position]], "Message"]
#: The first character of a message published with
#: :func:`flask_sockets.envelope.publish`: its rest is the JSON of the data,
#: which envelope sockets get as their ``data`` and other sockets as a text.
ENVELOPE_JSON = "\x00"
#: The rooms of a member that has joined none.
NO_ROOMS: frozenset[str] = frozenset()


def raw_message(message: Message) -> Message:
    """What a socket without a format gets for a published ``message``: the
    message as it is, or the JSON text of envelope data (without its
    :data:`ENVELOPE_JSON` mark)."""
    if isinstance(message, str) and message.startswith(ENVELOPE_JSON):
        return message[1:]
    return message


class Member:
    """One socket's part in the rooms: the rooms it is in, and its bounded
    send queue with the writer that drains it.

    Every open socket is a member, and most never join a room or get a
    message: the room set and the queue are made when first needed (and
    the queue is dropped again once drained), so an idle member holds
    little more than its socket.

    :param ws: The socket.
    :param runner: Runs the writer where the socket may be used.
    :param queue_size: Messages the queue holds before the socket is closed.
    :param close_timeout: Seconds a slow consumer's close may take before
        the connection is cut.
    :param lock: Guards the queue and the writer state. :class:`~flask_sockets.fanout.membership.Rooms`
        gives all its members one (held only for a few list operations and
        non-blocking sends, never while waiting); by default the member
        makes its own.
    """

    __slots__ = (
        "_lock",
        "_pending",
        "_writing",
        "close_timeout",
        "closing",
        "ended",
        "format",
        "floor",
        "held",
        "presence",
        "queue_size",
        "rooms",
        "runner",
        "sock",
        "ws",
    )

    def __init__(
        self,
        ws: WebSocket | BasicWebSocket,
        runner: Runner,
        queue_size: int,
        close_timeout: float,
        lock: threading.Lock | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"SOCKETS_SEND_QUEUE_SIZE must be at least 1, not {queue_size!r}")
        #: The socket, as the handler has it.
        self.ws = ws
        #: The socket, or its adapter if another server made it (:mod:`flask_sockets.foreign`).
        self.sock = as_socket(ws)
        self.runner = runner
        self.queue_size = queue_size
        self.close_timeout = close_timeout
        #: The rooms the socket is in (guarded by the :class:`~flask_sockets.fanout.membership.Rooms` lock):
        #: an empty frozenset until it first joins one.
        self.rooms: set[str] | frozenset[str] = NO_ROOMS
        self._lock = lock if lock is not None else threading.Lock()
        # Made by the first offer, dropped when the writer has drained it.
        self._pending: collections.deque[Message] | None = None
        self._writing = False
        #: ``True`` once the socket is being closed or its handler ended:
        #: nothing more is queued.
        self.closing = False
        #: ``True`` once the socket's handler has returned.
        self.ended = False
        #: The socket's presence ids, per room (guarded by the
        #: :class:`~flask_sockets.fanout.membership.Rooms` lock); ``None`` until it first joins with one.
        self.presence: dict[str, str] | None = None
        #: Turns a room message into the frame this socket gets:
        #: ``format(room, message, position)``; ``None``: the message as published.
        self.format: Format | None = None
        #: Room messages held back while the member's position in a room is
        #: being recovered (guarded by the :class:`~flask_sockets.fanout.membership.Rooms`
        #: lock): per room, ``(message, position)`` in arrival order.
        self.held: dict[str, list[tuple[Message, Position | None]]] | None = None
        #: Per room resumed, the position the socket got up to by its
        #: replay (guarded by the rooms' lock): a live message at or before
        #: it (it arrived late from the broker) is a duplicate, and dropped.
        self.floor: dict[str, Position] | None = None

    def __repr__(self) -> str:
        return f"<Member {self.ws!r} rooms={sorted(self.rooms)!r}>"

    @property
    def pending(self) -> int:
        """Messages queued and not yet handed to the socket."""
        pending = self._pending
        return len(pending) if pending is not None else 0

    def offer(self, message: Message, force: bool = False) -> bool:
        """Queue ``message`` for the socket; never blocks.

        :param force: Queue it even if the queue is full (a replay of
            history, bounded by ``SOCKETS_HISTORY_MAX_REPLAY``).
        :returns: ``False`` if the queue was full: the member is then
            closing (the caller closes the socket with :meth:`close_slow`).
        """
        ws = self.sock
        if ws.closed or not ws.accepted:
            # Closed, or the app may still refuse it with an HTTP response.
            return True
        with self._lock:
            if self.closing:
                return True
            pending = self._pending
            if pending is None:
                if not self._writing and self._sent_now(message):
                    return True
                pending = self._pending = collections.deque()
            elif len(pending) >= self.queue_size and not force:
                self.closing = True
                self._pending = None
                return False
            pending.append(message)
            if self._writing:
                return True
            self._writing = True
        try:
            self.runner.spawn(self._write)
        except Exception as e:  # the socket's hub or interpreter is shutting down
            logger.debug("%r: cannot start a writer (%r); dropping its queue", self, e)
            self._stop()
        return True

    def _sent_now(self, message: Message) -> bool:
        """With nothing queued or being written: send ``message`` at once if
        the socket can take it without waiting (``ws.send_nowait``, which
        the gevent socket has) and the caller runs where the socket lives,
        saving a writer per message. Called with the lock held; never blocks.

        :returns: ``False`` if the message still has to be queued.
        """
        if not self.runner.here():
            return False
        try:
            return self.sock.send_nowait(message)
        except (ConnectionClosed, OSError) as e:
            logger.debug("%r: the socket is gone (%r)", self, e)
        except Exception:
            logger.exception("%r: sending a published message failed", self)
        self.closing = True  # as _stop() does; the lock is held
        return True

    def _write(self) -> None:
        """Send the queued messages in order, then end (a new writer starts
        with the next message)."""
        ws = self.sock
        while True:
            with self._lock:
                pending = self._pending
                if self.closing or not pending:
                    self._pending = None  # an idle socket keeps no empty queue
                    self._writing = False
                    return
                message = pending.popleft()
            try:
                ws.send(message)
            except (ConnectionClosed, OSError) as e:
                logger.debug("%r: the socket is gone (%r); dropping its queue", self, e)
                self._stop()
                return
            except Exception:
                logger.exception("%r: sending a published message failed; dropping its queue", self)
                self._stop()
                return

    def _stop(self) -> None:
        with self._lock:
            self.closing = True
            self._pending = None
            self._writing = False

    def close_slow(self) -> None:
        """Close a member whose queue overflowed, next to its socket: send
        :data:`CLOSE_SLOW_CONSUMER`, then cut the connection if the close
        frame cannot go out, or the handler has not ended, within
        ``close_timeout`` seconds each."""
        logger.warning(
            "Closing a socket whose send queue is full (%d messages): %s %s",
            self.queue_size,
            CLOSE_SLOW_CONSUMER,
            SLOW_CONSUMER_REASON,
        )
        self.runner.spawn(self._close, CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)

    def stop(self) -> bool:
        """Queue nothing more for the socket and drop its queue, before
        :meth:`close_with`.

        :returns: ``False`` if the socket was closing or closed already.
        """
        with self._lock:
            if self.closing:
                return False
            self.closing = True
            self._pending = None
        return not self.sock.closed

    def close_with(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` and ``reason``, next to it (never
        in the caller's thread or greenlet), as :meth:`close_slow` does:
        the connection is cut if the close frame cannot go out, or the
        handler has not ended, within ``close_timeout`` seconds each."""
        self.runner.spawn(self._close, code, reason)

    def _close(self, code: int, reason: str) -> None:
        ws = self.sock
        if not self.runner.call_with_timeout(lambda: _close_quietly(ws, code, reason), self.close_timeout):
            _cut(ws)
            return
        deadline = time.monotonic() + self.close_timeout
        while not self.ended and time.monotonic() < deadline:
            self.runner.sleep(_POLL_INTERVAL)
        if not self.ended:
            _cut(ws)

    def end(self) -> None:
        """The socket's handler has returned: drop the queue. A writer still
        sending to a client that reads nothing is cut loose after
        ``close_timeout`` seconds."""
        with self._lock:
            self.ended = self.closing = True
            self._pending = None
            writing = self._writing
        if writing:
            self.runner.spawn(self._cut_if_stuck)

    def _cut_if_stuck(self) -> None:
        deadline = time.monotonic() + self.close_timeout
        while self._writing and time.monotonic() < deadline:
            self.runner.sleep(_POLL_INTERVAL)
        if self._writing:
            _cut(self.sock)


def _close_quietly(ws: SocketBase, code: int, reason: str) -> None:
    try:
        ws.close(code, reason)
    except (ConnectionClosed, OSError) as e:
        logger.debug("closing a socket (%s) failed: %r", code, e)
    except Exception:  # never let a closer die noisily in a thread or greenlet
        logger.exception("closing a socket (%s) failed", code)


def _cut(ws: SocketBase) -> None:
    """End the TCP connection under a socket, waking whoever waits on it:
    its handler's ``receive()`` then returns ``None`` and a blocked send
    fails."""
    logger.info("Cutting the connection of a socket that takes no data: %r", ws)
    ws.abort()


def checked_message(message: Message) -> Message:
    """``message`` as it is published: ``str``, or bytes-like as ``bytes``."""
    return message if isinstance(message, str) else to_payload(message)
