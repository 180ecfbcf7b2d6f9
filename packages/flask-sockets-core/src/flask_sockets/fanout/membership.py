"""Membership: which sockets of this process are in which room, and the
top of the fan-out layers: it hands published messages to the broker
(:mod:`~flask_sockets.fanout.broker`), the messages the broker receives to
the members' send queues (:mod:`~flask_sockets.fanout.delivery`), and
presence entries to the presence keeper (:mod:`~flask_sockets.fanout.presence`).

Each app has one :class:`Rooms`, in ``app.extensions['sockets.rooms']``
(``init_app`` puts it there). Every socket served by a socket route is a
:class:`~flask_sockets.fanout.delivery.Member` from the moment its handler
starts until it returns, so :meth:`Sockets.broadcast
<flask_sockets.Sockets.broadcast>` reaches it; it is in the rooms it joined.
"""

from __future__ import annotations

import json
import logging
import threading
import typing as t

from ..concurrency import current_runner
from ..exceptions import MessageQueueUnavailable
from ..options import DEFAULTS
from .broker import Broker
from .broker import Disconnect
from .broker import checked_disconnect
from .config import broker_from_config
from .delivery import NO_ROOMS
from .delivery import Format
from .delivery import Member
from .delivery import checked_message
from .delivery import raw_message
from .history import HistoryPolicy
from .history import HistoryRule
from .history import Position
from .history import Recovery
from .presence import PresenceCallback
from .presence import PresenceKeeper
from .presence import PresenceStore

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from ..typing import BasicWebSocket
    from ..typing import Message
    from ..typing import WebSocket

__all__ = ["CLOSE_REVOKED", "EXTENSION_KEY", "REVOKED_REASON", "Rooms"]

logger = logging.getLogger("flask_sockets.rooms")

#: Where ``init_app`` stores an app's :class:`Rooms`.
EXTENSION_KEY = "sockets.rooms"
#: The close code of :meth:`Rooms.disconnect` by default: 4401, which tells
#: ``flask_sockets.js`` to get new credentials before it reconnects.
CLOSE_REVOKED = 4401
#: The close reason of :meth:`Rooms.disconnect` by default.
REVOKED_REASON = "Session ended"
#: Seconds a join waits for the subscription of its room.
_SUBSCRIBE_TIMEOUT = 5.0


class Rooms:
    """The rooms of one app in this process, the broker that carries
    published messages between processes, and the presence entries of this
    process's sockets.

    Use it through :class:`~flask_sockets.Sockets`: ``sockets.join(ws,
    room)``, ``sockets.publish(room, message)`` and so on. All methods are
    safe to call from any thread or greenlet.

    Nothing runs until :meth:`start` (called by the first socket of the
    process, :meth:`register`): a process that only publishes (a cron job)
    starts no thread.

    :param app: The app; its ``SOCKETS_*`` config is read when first needed,
        so it may change after ``init_app``.
    :param presence_callbacks: The ``@sockets.on_presence`` callbacks (the
        extension's list, so callbacks registered later count).
    :param history_rules: The per-room history rules (the extension's list,
        see :meth:`flask_sockets.Sockets.history`); the app's config decides
        for other rooms.
    """

    def __init__(
        self,
        app: Flask,
        presence_callbacks: t.Sequence[PresenceCallback] = (),
        history_rules: t.Sequence[HistoryRule] = (),
    ) -> None:
        self._app = app
        self._config = app.config
        self._lock = threading.Lock()
        # Shared by the members' send queues (see Member); never held with _lock.
        self._queue_lock = threading.Lock()
        self._members: dict[int, Member] = {}
        self._rooms: dict[str, set[Member]] = {}
        self._broker: Broker | None = None
        self._started = False
        #: Which rooms keep history, and how much.
        self.history = HistoryPolicy(app.config, history_rules)
        # Presence: the store (made with the broker) and this process's entries.
        self._store: PresenceStore | None = None
        self.presence_keeper = PresenceKeeper(
            lambda: self.presence_store, self._room_names, presence_callbacks, app.app_context, app.logger.exception
        )
        # For stats(); plain counters (an increment may rarely be lost to a race).
        self._received = 0
        self._published = 0
        self._deliveries = 0
        self._slow_closed = 0
        self._disconnected = 0

    @property
    def config(self) -> t.Mapping[str, t.Any]:
        """The app's config."""
        return self._config

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
        """The broker ``SOCKETS_MESSAGE_QUEUE`` asks for, made (not started:
        see :meth:`start`) when first used."""
        with self._lock:
            broker = self._broker
            if broker is None:
                broker = self._broker = broker_from_config(self._config)
                for room in self._rooms:  # made again after close(): the members still want their messages
                    broker.subscribe(room)
            return broker

    def start(self) -> None:
        """Start receiving published messages in this process (a Redis
        broker's subscriber starts). :meth:`register` calls it for the first
        socket; calling it again does nothing."""
        broker = self.broker
        with self._lock:
            if self._started:
                return
            self._started = True
        broker.start(self._deliver)

    def _room_names(self) -> list[str]:
        with self._lock:
            return list(self._rooms)

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
        with self._lock:
            member = self._members.setdefault(key, member)
        self.start()
        return member

    def forget(self, ws: WebSocket | BasicWebSocket) -> None:
        """``ws``'s handler has returned: it leaves every room and gets no
        more messages."""
        with self._lock:
            member = self._members.pop(id(ws), None)
            if member is None:
                return
            self._remove_from_rooms(member)
            present, member.presence = member.presence, None
        member.end()
        if present:
            self.presence_keeper.discard(id(ws))

    def join(self, ws: WebSocket | BasicWebSocket, room: str, presence: t.Any = None) -> str | None:
        """Put ``ws`` in ``room``, present with the payload ``presence``
        unless it is ``None``. See :meth:`flask_sockets.Sockets.join`."""
        data = self._checked_presence(presence)
        member = self._enter(ws, room, hold=False)
        if member is None:
            return None
        return self._add_presence(member, room, data) if data is not None else None

    def resume(
        self,
        ws: WebSocket | BasicWebSocket,
        room: str,
        position: Position | None = None,
        presence: t.Any = None,
        reply: t.Callable[[Recovery], Message] | None = None,
    ) -> Recovery:
        """Put ``ws`` in ``room`` and send it every message after
        ``position``, or tell it that it cannot. See
        :meth:`flask_sockets.Sockets.resume`.

        :param reply: Makes a frame from the outcome, queued for the socket
            before the replay (the envelope's ``sub`` answer).
        """
        if position is not None:
            offset, epoch = position
            if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(epoch, str):
                raise TypeError(f"A position is (offset: int, epoch: str), not {position!r}")
            position = Position(offset, epoch)
        data = self._checked_presence(presence)
        settings = self.history.of(room)
        member = self._enter(ws, room, hold=True)
        if member is None:
            return Recovery(False, None)
        recovery = Recovery(False, None)
        try:
            if settings is not None:
                recovery = self.broker.recover(room, position, self.history.max_replay, settings)
        except MessageQueueUnavailable as e:
            logger.warning("Cannot recover room %r (%s): recovered=False", room, e)
        finally:
            self._release(member, room, recovery, reply)
        presence_id = self._add_presence(member, room, data) if data is not None else None
        return Recovery(recovery.recovered, recovery.position, presence_id=presence_id)

    def position(self, room: str) -> Position | None:
        """The room's current position, ``None`` without history. See
        :meth:`flask_sockets.Sockets.position`."""
        if not isinstance(room, str):
            raise TypeError(f"A room is named by a str, not {type(room).__name__}")
        settings = self.history.of(room)
        if settings is None:
            return None
        return self.broker.recover(room, None, 0, settings).position

    def _enter(self, ws: WebSocket | BasicWebSocket, room: str, hold: bool) -> Member | None:
        """Put ``ws`` in ``room`` and wait until the broker receives the
        room; with ``hold``, the room's messages are held back from now on
        (until :meth:`_release`). ``None`` if the socket is closing."""
        if not isinstance(room, str):
            raise TypeError(f"A room is named by a str, not {type(room).__name__}")
        member = self.register(ws)
        if not member.sock.accepted:
            member.sock.accept()
        self.start()  # after close(): receiving again
        broker = self.broker
        with self._lock:
            if member.closing:
                return None
            sockets = self._rooms.get(room)
            if sockets is None:  # this process's first member in the room
                broker.subscribe(room)  # first: it may refuse the name
                sockets = self._rooms[room] = set()
            if hold:
                if member.held is None:
                    member.held = {}
                member.held[room] = []
            sockets.add(member)
            if isinstance(member.rooms, set):
                member.rooms.add(room)
            else:  # its first room
                member.rooms = {room}
        # Until the broker receives the room, messages published elsewhere would miss us.
        broker.wait_until_ready(_SUBSCRIBE_TIMEOUT, room)
        return member

    def _release(
        self, member: Member, room: str, recovery: Recovery, reply: t.Callable[[Recovery], Message] | None
    ) -> None:
        """Send the replay, then the messages held back meanwhile that came
        after it (the seam: a held message at or before the position is in
        the replay or in the state the app loads), then let live ones through."""
        slow = False
        with self._lock:
            held = member.held.pop(room, []) if member.held else []
            if not member.held:
                member.held = None
            top = recovery.position
            if reply is not None:
                member.offer(reply(recovery), force=True)
            for message, replayed in recovery.messages:
                slow = slow or not self._offer(member, room, message, replayed, force=True)
            for message, live in held:
                if top is not None and live is not None and live.epoch == top.epoch and live.offset <= top.offset:
                    continue
                slow = slow or not self._offer(member, room, message, live, force=False)
            if top is not None and room in member.rooms:
                # Late arrivals from the broker at or before the replay are duplicates.
                if member.floor is None:
                    member.floor = {}
                member.floor[room] = top
            if slow:
                self._remove_from_rooms(member)
        if slow:
            self._slow_closed += 1
            member.close_slow()

    def _add_presence(self, member: Member, room: str, data: str) -> str:
        def still_in() -> bool:
            with self._lock:
                return not member.closing and room in member.rooms

        presence_id = self.presence_keeper.add(id(member.ws), room, data, still_in)
        with self._lock:
            if not member.closing and room in member.rooms:
                if member.presence is None:
                    member.presence = {}
                member.presence[room] = presence_id
        return presence_id

    def set_format(self, ws: WebSocket | BasicWebSocket, format: Format | None) -> None:
        """Make every message ``ws`` gets from its rooms (and broadcasts)
        pass through ``format(room, message, position)`` (``None``: as
        published). The envelope (:mod:`flask_sockets.envelope`) uses it."""
        self.register(ws).format = format

    def leave(self, ws: WebSocket | BasicWebSocket, room: str) -> None:
        """Take ``ws`` out of ``room`` (nothing happens if it is not in it)."""
        with self._lock:
            member = self._members.get(id(ws))
            if member is None or room not in member.rooms:
                return
            member.rooms.discard(room)  # type: ignore[union-attr]  # a room in it: a set
            self._discard(room, member)
            present = member.presence.pop(room, None) if member.presence else None
        if present is not None:
            self.presence_keeper.discard(id(ws), room)

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

    def send_queue_depths(self) -> tuple[int, int]:
        """``(total, longest)``: the messages queued for this process's
        sockets (see :class:`~flask_sockets.fanout.delivery.Member`), in all
        and for the socket with the most. A look at every member: for a
        scrape or a health check, not per message."""
        with self._lock:
            members = list(self._members.values())
        total = longest = 0
        for member in members:
            pending = member.pending
            total += pending
            if pending > longest:
                longest = pending
        return total, longest

    def _remove_from_rooms(self, member: Member) -> None:
        for room in member.rooms:
            self._discard(room, member)
        member.rooms = NO_ROOMS

    def _discard(self, room: str, member: Member) -> None:
        if member.floor is not None:
            member.floor.pop(room, None)
            if not member.floor:
                member.floor = None
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
        return self.presence_keeper.read(room)

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

    # -- messages -------------------------------------------------------------

    def publish(self, room: str, message: Message) -> Position | None:
        """Send ``message`` to ``room`` in every process; its position in
        the room's history, ``None`` without history. See
        :meth:`flask_sockets.Sockets.publish`."""
        if not isinstance(room, str):
            raise TypeError(f"A room is named by a str, not {type(room).__name__}")
        settings = self.history.of(room)
        if settings is None:  # as brokers written before history know publish()
            position = self.broker.publish(room, checked_message(message))
        else:
            position = self.broker.publish(room, checked_message(message), settings)
        self._published += 1
        return position

    def broadcast(self, message: Message) -> None:
        """Send ``message`` to every socket in every process."""
        self.broker.publish(None, checked_message(message))
        self._published += 1

    def disconnect(self, room: str, code: int, reason: str) -> None:
        """Close every socket in ``room``, in every process, with ``code``
        and ``reason``. See :meth:`flask_sockets.Sockets.disconnect`."""
        if not isinstance(room, str):
            raise TypeError(f"A room is named by a str, not {type(room).__name__}")
        self.broker.publish(room, checked_disconnect(code, reason))

    def _disconnect(self, room: str | None, control: Disconnect) -> None:
        """Close this process's sockets in ``room`` (a :class:`Disconnect`
        from the broker), each next to its socket: never in the broker's
        thread."""
        if room is None:  # only rooms are disconnected; an odd publisher's
            logger.warning("Ignored a disconnect without a room: %r", control)
            return
        with self._lock:
            targets = list(self._rooms.get(room, ()))
            for member in targets:
                self._remove_from_rooms(member)
        closing = [member for member in targets if member.stop()]
        self._disconnected += len(closing)
        if closing:
            logger.info(
                "Closing %d socket(s) of room %r: %s %s", len(closing), room, control.code, control.reason or "''"
            )
        for member in closing:
            member.close_with(control.code, control.reason)

    def _deliver(self, room: str | None, message: Message | Disconnect, position: Position | None = None) -> None:
        """Queue a message for this process's sockets in ``room`` (all of
        them if ``room`` is ``None``); the broker calls this."""
        if isinstance(message, Disconnect):
            self._disconnect(room, message)
            return
        with self._lock:
            targets = list(self._members.values()) if room is None else list(self._rooms.get(room, ()))
        self._received += 1
        self._deliveries += len(targets)
        raw = raw_message(message)
        for member in targets:
            if member.format is None and member.held is None and member.floor is None:
                offered = member.offer(raw)  # the common case: raw messages, nothing held
            else:
                with self._lock:
                    offered = self._offer(member, room, message, position)
            if not offered:
                with self._lock:
                    self._remove_from_rooms(member)
                self._slow_closed += 1
                member.close_slow()

    def _offer(
        self, member: Member, room: str | None, message: Message, position: Position | None, force: bool = False
    ) -> bool:
        """Hold ``message`` back if ``member`` is recovering ``room``, else
        format and queue it (called with ``_lock`` held)."""
        if room is not None and member.held is not None and room in member.held:
            member.held[room].append((message, position))
            return True
        if room is not None and position is not None and member.floor is not None:
            floor = member.floor.get(room)
            if floor is not None and floor.epoch == position.epoch and position.offset <= floor.offset:
                return True  # already replayed, or in the state the app loaded
        if member.format is not None:
            try:
                message = member.format(room, message, position)
            except Exception:
                logger.exception("%r: formatting a message failed; not sent", member)
                return True
        else:
            message = raw_message(message)
        return member.offer(message, force)

    def stats(self) -> dict[str, t.Any]:
        """What this process's rooms are doing, for a health check or
        metrics. See :meth:`flask_sockets.Sockets.stats`."""
        with self._lock:
            broker = self._broker
            stats: dict[str, t.Any] = {
                "sockets": len(self._members),
                "rooms": len(self._rooms),
            }
        stats["presence_entries"] = self.presence_keeper.count
        error = getattr(broker, "last_error", None)
        stats.update(
            subscriptions=broker.subscriptions if broker is not None else 0,
            broker_received=self._received,
            broker_published=self._published,
            deliveries=self._deliveries,
            slow_consumers_closed=self._slow_closed,
            disconnected=self._disconnected,
            broker_reconnects=broker.reconnects if broker is not None else 0,
            broker_connected=broker.connected if broker is not None else False,
            broker_last_error=str(error) if error is not None else None,
        )
        return stats

    def close(self) -> None:
        """Close the broker (stop a Redis subscriber) and the presence
        heartbeat. For tests and for processes that are done publishing;
        sockets stay open."""
        self.presence_keeper.stop()
        with self._lock:
            broker, self._broker = self._broker, None
            self._store = None
            self._started = False
        if broker is not None:
            broker.close()
