"""Rooms: which sockets of this process are in which room, and how
published messages reach them without ever blocking the publisher.

Each app has one :class:`Rooms`, in ``app.extensions['sockets.rooms']``
(``init_app`` puts it there). Every socket served by a socket route is a
:class:`Member` from the moment its handler starts until it returns, so
:meth:`Sockets.broadcast <flask_sockets.Sockets.broadcast>` reaches it; it
is in the rooms it joined.

Back-pressure: a member has a bounded send queue
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
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
import typing as t

from .base import to_payload
from .brokers import Broker
from .brokers import MessageQueueUnavailable
from .brokers import broker_from_config
from .concurrency import current_runner
from .exceptions import ConnectionClosed
from .foreign import as_socket
from .options import DEFAULTS
from .presence import PresenceChange
from .presence import PresenceStore
from .presence import decode_entry
from .presence import encode_entry
from .presence import new_presence_id
from .protocol import CloseCode

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from .base import SocketBase
    from .concurrency import Runner
    from .typing import BasicWebSocket
    from .typing import Message
    from .typing import WebSocket

__all__ = ["CLOSE_SLOW_CONSUMER", "EXTENSION_KEY", "SLOW_CONSUMER_REASON", "Member", "PresenceCallback", "Rooms"]

logger = logging.getLogger("flask_sockets.rooms")

#: Where ``init_app`` stores an app's :class:`Rooms`.
EXTENSION_KEY = "sockets.rooms"
#: The close code of a socket whose send queue overflowed (policy violation:
#: the client does not read what it is sent).
CLOSE_SLOW_CONSUMER = CloseCode.POLICY_VIOLATION
#: The close reason sent with :data:`CLOSE_SLOW_CONSUMER`.
SLOW_CONSUMER_REASON = "Send queue full: the client does not read fast enough"
#: How often a closing member checks whether its handler has ended.
_POLL_INTERVAL = 0.02
#: The rooms of a member that has joined none.
_NO_ROOMS: frozenset[str] = frozenset()
#: Seconds a join waits for the subscription of its room.
_SUBSCRIBE_TIMEOUT = 5.0

#: An ``@sockets.on_presence`` callback.
PresenceCallback = t.Callable[[PresenceChange], None]


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
    :param lock: Guards the queue and the writer state. :class:`Rooms`
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
        #: The rooms the socket is in (guarded by the :class:`Rooms` lock):
        #: an empty frozenset until it first joins one.
        self.rooms: set[str] | frozenset[str] = _NO_ROOMS
        self._lock = lock if lock is not None else threading.Lock()
        # Made by the first offer, dropped when the writer has drained it.
        self._pending: collections.deque[Message] | None = None
        self._writing = False
        #: ``True`` once the socket is being closed or its handler ended:
        #: nothing more is queued.
        self.closing = False
        #: ``True`` once the socket's handler has returned.
        self.ended = False
        #: The socket's presence entries, per room (guarded by the
        #: :class:`Rooms` lock); ``None`` until it first joins with one.
        self.presence: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<Member {self.ws!r} rooms={sorted(self.rooms)!r}>"

    @property
    def pending(self) -> int:
        """Messages queued and not yet handed to the socket."""
        pending = self._pending
        return len(pending) if pending is not None else 0

    def offer(self, message: Message) -> bool:
        """Queue ``message`` for the socket; never blocks.

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
            elif len(pending) >= self.queue_size:
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
        self.runner.spawn(self._close_slow)

    def _close_slow(self) -> None:
        ws = self.sock
        logger.warning(
            "Closing a socket whose send queue is full (%d messages): %s %s",
            self.queue_size,
            CLOSE_SLOW_CONSUMER,
            SLOW_CONSUMER_REASON,
        )
        if not self.runner.call_with_timeout(lambda: _close_quietly(ws), self.close_timeout):
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


def _close_quietly(ws: SocketBase) -> None:
    try:
        ws.close(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)
    except (ConnectionClosed, OSError) as e:
        logger.debug("closing a slow consumer failed: %r", e)
    except Exception:  # never let a closer die noisily in a thread or greenlet
        logger.exception("closing a slow consumer failed")


def _cut(ws: SocketBase) -> None:
    """End the TCP connection under a socket, waking whoever waits on it:
    its handler's ``receive()`` then returns ``None`` and a blocked send
    fails."""
    logger.info("Cutting the connection of a socket that takes no data: %r", ws)
    ws.abort()


class Rooms:
    """The rooms of one app in this process, the broker that carries
    published messages between processes, and the presence entries of this
    process's sockets.

    Use it through :class:`~flask_sockets.Sockets`: ``sockets.join(ws,
    room)``, ``sockets.publish(room, message)`` and so on. All methods are
    safe to call from any thread or greenlet.

    :param app: The app; its ``SOCKETS_*`` config is read when first needed,
        so it may change after ``init_app``.
    """

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._config = app.config
        self._lock = threading.Lock()
        # Shared by the members' send queues (see Member); never held with _lock.
        self._queue_lock = threading.Lock()
        self._members: dict[int, Member] = {}
        self._rooms: dict[str, set[Member]] = {}
        self._broker: Broker | None = None
        # Presence: the store (made with the broker) and the heartbeat that
        # keeps this process's entries (its members' ``presence``) alive.
        self._store: PresenceStore | None = None
        self._heartbeat: threading.Thread | None = None
        self._stopping = threading.Event()
        self._outage = False
        # For stats(); plain counters (an increment may rarely be lost to a race).
        self._received = 0
        self._published = 0
        self._deliveries = 0
        self._slow_closed = 0

    @classmethod
    def of(cls, app: Flask) -> Rooms:
        """The app's rooms.

        :raises RuntimeError: If no :class:`~flask_sockets.Sockets` was
            initialised on ``app``.
        """
        rooms = app.extensions.get(EXTENSION_KEY)
        if not isinstance(rooms, Rooms):
            raise RuntimeError(f"Flask-Sockets is not initialised on {app!r}: call Sockets(app) or init_app(app).")
        return rooms

    @property
    def broker(self) -> Broker:
        """The broker ``SOCKETS_MESSAGE_QUEUE`` asks for, made when first used."""
        with self._lock:
            broker = self._broker
            if broker is not None:
                return broker
            broker = self._broker = broker_from_config(self._config)
            receiving = bool(self._members)
            for room in self._rooms:  # made again after close(): the members still want their messages
                broker.subscribe(room)
        if receiving:
            broker.start(self._deliver)
        return broker

    @property
    def presence_store(self) -> PresenceStore:
        """Where presence entries live: the broker's store (Redis with a
        Redis message queue, this process without)."""
        broker = self.broker
        with self._lock:
            if self._store is None:
                self._store = broker.presence_store()
            return self._store

    # -- membership -----------------------------------------------------------

    def register(self, ws: WebSocket | BasicWebSocket) -> Member:
        """Make ``ws`` a member (no room yet) and start receiving published
        messages in this process. Socket routes call this when the handler
        starts; :meth:`join` calls it for sockets that were not registered.
        Registering a member again returns it."""
        key = id(ws)
        # Only a lookup without the lock (every change to the members is
        # made under it): one lock round per socket instead of two.
        member = self._members.get(key)
        if member is not None:
            return member
        size = self._config.get("SOCKETS_SEND_QUEUE_SIZE", DEFAULTS["SOCKETS_SEND_QUEUE_SIZE"])
        close_timeout = self._config.get("SOCKETS_CLOSE_TIMEOUT", DEFAULTS["SOCKETS_CLOSE_TIMEOUT"])
        member = Member(ws, current_runner(), int(size), float(close_timeout), self._queue_lock)
        broker = self._broker
        if broker is None:
            broker = self.broker
        with self._lock:
            member = self._members.setdefault(key, member)
        broker.start(self._deliver)
        return member

    def forget(self, ws: WebSocket | BasicWebSocket) -> None:
        """``ws``'s handler has returned: it leaves every room and gets no
        more messages."""
        with self._lock:
            member = self._members.pop(id(ws), None)
            if member is None:
                return
            self._remove_from_rooms(member)
            presence, member.presence = member.presence, None
        member.end()
        for room, entry in (presence or {}).items():
            self._drop_presence(room, entry)

    def join(self, ws: WebSocket | BasicWebSocket, room: str, presence: t.Any = None) -> str | None:
        """Put ``ws`` in ``room``, present with the payload ``presence``
        unless it is ``None``. See :meth:`flask_sockets.Sockets.join`."""
        if not isinstance(room, str):
            raise TypeError(f"A room is named by a str, not {type(room).__name__}")
        data = self._checked_presence(presence)
        member = self.register(ws)
        if not member.sock.accepted:
            member.sock.accept()
        broker = self.broker
        with self._lock:
            if member.closing:
                return None
            sockets = self._rooms.get(room)
            if sockets is None:  # this process's first member in the room
                broker.subscribe(room)  # first: it may refuse the name
                sockets = self._rooms[room] = set()
            sockets.add(member)
            if isinstance(member.rooms, set):
                member.rooms.add(room)
            else:  # its first room
                member.rooms = {room}
        # Until the broker receives the room, messages published elsewhere would miss us.
        broker.wait_until_ready(_SUBSCRIBE_TIMEOUT, room)
        return self._add_presence(member, room, data) if data is not None else None

    def leave(self, ws: WebSocket | BasicWebSocket, room: str) -> None:
        """Take ``ws`` out of ``room`` (nothing happens if it is not in it)."""
        with self._lock:
            member = self._members.get(id(ws))
            if member is None or room not in member.rooms:
                return
            member.rooms.discard(room)  # type: ignore[union-attr]  # a room in it: a set
            self._discard(room, member)
            entry = member.presence.pop(room, None) if member.presence else None
        if entry is not None:
            self._drop_presence(room, entry)

    def rooms_of(self, ws: WebSocket | BasicWebSocket) -> frozenset[str]:
        """The rooms ``ws`` is in."""
        with self._lock:
            member = self._members.get(id(ws))
            return frozenset(member.rooms) if member is not None else frozenset()

    def members(self, room: str) -> list[WebSocket | BasicWebSocket]:
        """The sockets of this process in ``room``."""
        with self._lock:
            return [member.ws for member in self._rooms.get(room, ())]

    def count(self, room: str) -> int:
        """How many sockets of this process are in ``room``."""
        with self._lock:
            return len(self._rooms.get(room, ()))

    @property
    def sockets(self) -> int:
        """How many sockets of this process are members (every open socket
        of a socket route)."""
        with self._lock:
            return len(self._members)

    def _remove_from_rooms(self, member: Member) -> None:
        for room in member.rooms:
            self._discard(room, member)
        member.rooms = _NO_ROOMS

    def _discard(self, room: str, member: Member) -> None:
        sockets = self._rooms.get(room)
        if sockets is not None:
            sockets.discard(member)
            if not sockets:
                del self._rooms[room]
                if self._broker is not None:
                    self._broker.unsubscribe(room)

    # -- presence -------------------------------------------------------------

    def presence(self, room: str) -> dict[str, t.Any]:
        """The presence entries of ``room`` in every process: id to payload.
        See :meth:`flask_sockets.Sockets.presence`."""
        return dict(decode_entry(entry) for entry in self.presence_store.read(room))

    def _checked_presence(self, presence: t.Any) -> str | None:
        """``presence`` as JSON, or ``None`` for no presence entry."""
        if presence is None:
            return None
        try:
            data = json.dumps(presence, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"A presence payload must be JSON-serialisable: {e}") from None
        limit = int(self._config.get("SOCKETS_PRESENCE_MAX_SIZE", DEFAULTS["SOCKETS_PRESENCE_MAX_SIZE"]))
        if len(data.encode("utf-8")) > limit:
            raise ValueError(f"A presence payload is at most SOCKETS_PRESENCE_MAX_SIZE ({limit}) bytes of JSON")
        return data

    def _add_presence(self, member: Member, room: str, data: str) -> str:
        """Store the member's entry in ``room``; its presence id."""
        store = self.presence_store
        with self._lock:
            old = member.presence.get(room) if member.presence else None
        presence_id = decode_entry(old)[0] if old is not None else new_presence_id()
        entry = encode_entry(presence_id, data)
        if entry == old:
            return presence_id
        if old is not None:
            store.remove(room, old)
        store.add(room, entry)
        with self._lock:
            if member.closing or room not in member.rooms:  # it left meanwhile
                gone = True
            else:
                gone = False
                if member.presence is None:
                    member.presence = {}
                member.presence[room] = entry
        if gone:
            store.remove(room, entry)
            return presence_id
        self._start_heartbeat(store)
        self._notify(PresenceChange("join", room, presence_id, json.loads(data)))
        return presence_id

    def _drop_presence(self, room: str, entry: str) -> None:
        """A socket with a presence entry left ``room`` (its member no
        longer holds the entry)."""
        store = self._store
        if store is None:  # pragma: no cover - closed meanwhile
            return
        try:
            removed = store.remove(room, entry)
        except MessageQueueUnavailable as e:
            logger.warning("A socket left room %r, but its presence entry stays until it expires: %s", room, e)
            return
        if removed:
            self._notify(PresenceChange("leave", room, *decode_entry(entry)))

    def _start_heartbeat(self, store: PresenceStore) -> None:
        if store.heartbeat is None:
            return
        with self._lock:
            if self._heartbeat is not None or self._stopping.is_set():
                return
            self._heartbeat = threading.Thread(
                target=self._beat, args=(store, self._stopping), name="flask-sockets presence", daemon=True
            )
        self._heartbeat.start()

    def _beat(self, store: PresenceStore, stopping: threading.Event) -> None:
        """Every ``store.heartbeat`` seconds, :meth:`_beat_once`."""
        assert store.heartbeat is not None
        while not stopping.wait(store.heartbeat):
            self._beat_once(store)

    def _beat_once(self, store: PresenceStore) -> None:
        """Keep this process's entries alive, and report the entries of dead
        processes in its rooms as gone."""
        with self._lock:
            mine = self._presence_entries()
            rooms = list(self._rooms)
        try:
            added, expired = store.refresh(mine, rooms)
        except MessageQueueUnavailable as e:
            if not self._outage:
                logger.warning("Cannot refresh presence entries (%s); they expire if this lasts.", e)
            self._outage = True
            return
        if self._outage:
            logger.warning("Presence entries refreshed again.")
            self._outage = False
        if added:
            with self._lock:
                now = self._presence_entries()
        for room, entry in added:  # they had expired; they are back
            if entry in now.get(room, ()):
                self._notify(PresenceChange("join", room, *decode_entry(entry)))
            else:  # its socket left while the heartbeat was on its way: take it out again
                with contextlib.suppress(MessageQueueUnavailable):
                    store.remove(room, entry)
        for room, entry in expired:
            self._notify(PresenceChange("leave", room, *decode_entry(entry)))

    def _presence_entries(self) -> dict[str, list[str]]:
        """This process's presence entries, per room (``_lock`` held)."""
        entries: dict[str, list[str]] = {}
        for member in self._members.values():
            for room, entry in (member.presence or {}).items():
                entries.setdefault(room, []).append(entry)
        return entries

    def _notify(self, change: PresenceChange) -> None:
        """Call the ``@sockets.on_presence`` callbacks, in the app's context."""
        sockets = self._app.extensions.get("sockets")
        callbacks: list[PresenceCallback] = getattr(sockets, "presence_callbacks", [])
        if not callbacks:
            return
        with self._app.app_context():
            for callback in callbacks:
                try:
                    callback(change)
                except Exception:
                    self._app.logger.exception("An on_presence callback failed for %r", change)

    # -- messages -------------------------------------------------------------

    def publish(self, room: str, message: Message) -> None:
        """Send ``message`` to ``room`` in every process. See :meth:`flask_sockets.Sockets.publish`."""
        if not isinstance(room, str):
            raise TypeError(f"A room is named by a str, not {type(room).__name__}")
        self.broker.publish(room, _checked(message))
        self._published += 1

    def broadcast(self, message: Message) -> None:
        """Send ``message`` to every socket in every process."""
        self.broker.publish(None, _checked(message))
        self._published += 1

    def _deliver(self, room: str | None, message: Message) -> None:
        """Queue a message for this process's sockets in ``room`` (all of
        them if ``room`` is ``None``); the broker calls this."""
        with self._lock:
            targets = list(self._members.values()) if room is None else list(self._rooms.get(room, ()))
        self._received += 1
        self._deliveries += len(targets)
        for member in targets:
            if not member.offer(message):
                with self._lock:
                    self._remove_from_rooms(member)
                self._slow_closed += 1
                member.close_slow()

    def stats(self) -> dict[str, t.Any]:
        """What this process's rooms are doing, for a health check or
        metrics. See :meth:`flask_sockets.Sockets.stats`."""
        with self._lock:
            broker = self._broker
            stats: dict[str, t.Any] = {
                "sockets": len(self._members),
                "rooms": len(self._rooms),
                "presence_entries": sum(len(m.presence) for m in self._members.values() if m.presence),
            }
        error = getattr(broker, "last_error", None)
        stats.update(
            subscriptions=broker.subscriptions if broker is not None else 0,
            broker_received=self._received,
            broker_published=self._published,
            deliveries=self._deliveries,
            slow_consumers_closed=self._slow_closed,
            broker_connected=broker.connected if broker is not None else False,
            broker_last_error=str(error) if error is not None else None,
        )
        return stats

    def close(self) -> None:
        """Close the broker (stop a Redis subscriber) and the presence
        heartbeat. For tests and for processes that are done publishing;
        sockets stay open."""
        self._stopping.set()
        with self._lock:
            broker, self._broker = self._broker, None
            heartbeat, self._heartbeat = self._heartbeat, None
            self._store = None
        if heartbeat is not None and heartbeat is not threading.current_thread():
            heartbeat.join(5)
        self._stopping = threading.Event()
        if broker is not None:
            broker.close()


def _checked(message: Message) -> Message:
    """``message`` as it is published: ``str``, or bytes-like as ``bytes``."""
    return message if isinstance(message, str) else to_payload(message)
