"""Presence: who is in a room, across every process and host.

This module holds what presence is (:class:`PresenceChange`, the entries),
where entries live (:class:`PresenceStore`, :class:`LocalPresence`; the
Redis store is :mod:`flask_sockets.fanout.redis_presence`) and this
process's part (:class:`PresenceKeeper`: its entries, their heartbeat, the
callbacks).

A socket joins a room with a small payload the app chooses
(``sockets.join(ws, room, presence={'name': 'Ada'})``); every process reads
the room's entries with ``sockets.presence(room)``, and ``@sockets.on_presence``
callbacks hear of each entry that comes or goes, once for the whole
deployment.

Where the entries live depends on the broker: in this process
(:class:`LocalPresence`, without ``SOCKETS_MESSAGE_QUEUE``), or in Redis
(:class:`~flask_sockets.fanout.redis_presence.RedisPresence`): one sorted set per room, each entry scored with
the time it expires. A process refreshes its own entries every
``SOCKETS_PRESENCE_TTL / 3`` seconds (its heartbeat), so the entries of a
process that died (SIGKILL, host gone) stop being read after
``SOCKETS_PRESENCE_TTL`` seconds, and a surviving process with members in
the room removes them and reports their ``leave`` at its next heartbeat.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
import threading
import typing as t

from ..exceptions import MessageQueueUnavailable

__all__ = [
    "LocalPresence",
    "PresenceChange",
    "PresenceStore",
    "PresenceCallback",
    "PresenceKeeper",
    "decode_entry",
    "encode_entry",
    "new_presence_id",
]


@dataclasses.dataclass(frozen=True)
class PresenceChange:
    """A presence entry came or went; what ``@sockets.on_presence``
    callbacks get."""

    #: ``'join'`` or ``'leave'``.
    kind: t.Literal["join", "leave"]
    #: The room.
    room: str
    #: The entry's id, unique in the deployment (a key of ``sockets.presence(room)``).
    id: str
    #: The payload the socket joined with.
    data: t.Any


def new_presence_id() -> str:
    """A new presence id: 16 random hex digits."""
    return secrets.token_hex(8)


def encode_entry(presence_id: str, data: str) -> str:
    """An entry as stored: the id, a newline, the payload (JSON text)."""
    return presence_id + "\n" + data


def decode_entry(entry: str | bytes) -> tuple[str, t.Any]:
    """The ``(id, payload)`` of an entry made by :func:`encode_entry`."""
    text = entry.decode("utf-8") if isinstance(entry, bytes) else entry
    presence_id, _, data = text.partition("\n")
    return presence_id, json.loads(data)


class PresenceStore:
    """Where the presence entries of a deployment live. Entries are strings
    made by :func:`encode_entry`; a store holds them per room."""

    #: Seconds between heartbeats (:meth:`refresh`), or ``None`` if entries
    #: need none (they live and die with this process).
    heartbeat: float | None = None

    def add(self, room: str, entry: str) -> None:
        """Store ``entry`` in ``room``."""
        raise NotImplementedError

    def remove(self, room: str, entry: str) -> bool:
        """Remove ``entry`` from ``room``; ``True`` if this call removed it
        (``False``: it was not there, for example another process expired it)."""
        raise NotImplementedError

    def read(self, room: str) -> list[str]:
        """The live entries of ``room``."""
        raise NotImplementedError

    def refresh(
        self, mine: t.Mapping[str, t.Collection[str]], rooms: t.Collection[str]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The heartbeat: keep this process's entries (``mine``, per room)
        alive, and remove the expired entries of ``rooms``.

        :returns: ``(added, expired)``: the ``(room, entry)`` pairs of
            ``mine`` that were missing (expired while this process could not
            reach the store) and are back, and those of others that this call
            removed because they expired.
        """
        return [], []


class LocalPresence(PresenceStore):
    """Presence within this process: entries in a dict, in join order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rooms: dict[str, dict[str, None]] = {}

    def add(self, room: str, entry: str) -> None:
        with self._lock:
            self._rooms.setdefault(room, {})[entry] = None

    def remove(self, room: str, entry: str) -> bool:
        with self._lock:
            entries = self._rooms.get(room)
            if entries is None or entry not in entries:
                return False
            del entries[entry]
            if not entries:
                del self._rooms[room]
            return True

    def read(self, room: str) -> list[str]:
        with self._lock:
            return list(self._rooms.get(room, ()))


logger = logging.getLogger("flask_sockets.rooms")

#: An ``@sockets.on_presence`` callback.
PresenceCallback = t.Callable[[PresenceChange], None]


class PresenceKeeper:
    """This process's presence entries in one app: adds and removes them in
    the store, keeps them alive with a heartbeat thread (started by the
    first entry, with :meth:`start_heartbeat`) and calls the callbacks.

    :param store: Returns the store (made with the broker).
    :param rooms: Returns the rooms this process has members in (whose
        dead entries the heartbeat reports).
    :param callbacks: The ``@sockets.on_presence`` callbacks (the
        extension's list: callbacks registered later are called too).
    :param app_context: Returns the app context the callbacks run in.
    :param log_exception: Logs a callback's exception (the app's logger).
    """

    def __init__(
        self,
        store: t.Callable[[], PresenceStore],
        rooms: t.Callable[[], list[str]],
        callbacks: t.Sequence[PresenceCallback],
        app_context: t.Callable[[], t.ContextManager[t.Any]],
        log_exception: t.Callable[..., None],
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._callbacks = callbacks
        self._app_context = app_context
        self._log_exception = log_exception
        self._lock = threading.Lock()
        # entries[member key][room] = entry
        self._entries: dict[int, dict[str, str]] = {}
        self._heartbeat: threading.Thread | None = None
        self._stopping = threading.Event()
        self._outage = False

    @property
    def count(self) -> int:
        """This process's entries."""
        with self._lock:
            return sum(len(rooms) for rooms in self._entries.values())

    def entries(self) -> dict[str, list[str]]:
        """This process's entries, per room."""
        by_room: dict[str, list[str]] = {}
        with self._lock:
            for rooms in self._entries.values():
                for room, entry in rooms.items():
                    by_room.setdefault(room, []).append(entry)
        return by_room

    def read(self, room: str) -> dict[str, t.Any]:
        """The entries of ``room`` in every process: id to payload."""
        return dict(decode_entry(entry) for entry in self._store().read(room))

    def add(self, key: int, room: str, data: str, still_in: t.Callable[[], bool]) -> str:
        """Store the entry of the member ``key`` in ``room`` with the payload
        ``data`` (JSON), replacing its previous one; its presence id.

        :param still_in: Whether the member is still in the room (it may
            leave meanwhile: its entry is then taken out again).
        """
        store = self._store()
        with self._lock:
            old = self._entries.get(key, {}).get(room)
        presence_id = decode_entry(old)[0] if old is not None else new_presence_id()
        entry = encode_entry(presence_id, data)
        if entry == old:
            return presence_id
        if old is not None:
            store.remove(room, old)
        store.add(room, entry)
        with self._lock:
            gone = not still_in()
            if not gone:
                self._entries.setdefault(key, {})[room] = entry
        if gone:
            store.remove(room, entry)
            return presence_id
        self.start_heartbeat(store)
        self.notify(PresenceChange("join", room, presence_id, json.loads(data)))
        return presence_id

    def discard(self, key: int, room: str | None = None) -> None:
        """The member ``key`` left ``room`` (every room if ``None``): its
        entries go."""
        with self._lock:
            rooms = self._entries.get(key)
            if rooms is None:
                return
            if room is None:
                dropped = list(self._entries.pop(key).items())
            else:
                entry = rooms.pop(room, None)
                dropped = [(room, entry)] if entry is not None else []
                if not rooms:
                    del self._entries[key]
        for gone_room, entry in dropped:
            self._drop(gone_room, entry)

    def _drop(self, room: str, entry: str) -> None:
        try:
            removed = self._store().remove(room, entry)
        except MessageQueueUnavailable as e:
            logger.warning("A socket left room %r, but its presence entry stays until it expires: %s", room, e)
            return
        if removed:
            self.notify(PresenceChange("leave", room, *decode_entry(entry)))

    def start_heartbeat(self, store: PresenceStore) -> None:
        """Start the thread that refreshes this process's entries, if the
        store needs one and it is not running."""
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
        """Every ``store.heartbeat`` seconds, :meth:`beat_once`."""
        assert store.heartbeat is not None
        while not stopping.wait(store.heartbeat):
            self.beat_once(store, self._rooms())

    def beat_once(self, store: PresenceStore, rooms: t.Collection[str]) -> None:
        """Keep this process's entries alive, and report the entries of dead
        processes in ``rooms`` as gone."""
        mine = self.entries()
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
        now = self.entries() if added else {}
        for room, entry in added:  # they had expired; they are back
            if entry in now.get(room, ()):
                self.notify(PresenceChange("join", room, *decode_entry(entry)))
            else:  # its socket left while the heartbeat was on its way: take it out again
                with contextlib.suppress(MessageQueueUnavailable):
                    store.remove(room, entry)
        for room, entry in expired:
            self.notify(PresenceChange("leave", room, *decode_entry(entry)))

    def notify(self, change: PresenceChange) -> None:
        """Call the ``@sockets.on_presence`` callbacks, in the app's context."""
        callbacks = list(self._callbacks)
        if not callbacks:
            return
        with self._app_context():
            for callback in callbacks:
                try:
                    callback(change)
                except Exception:
                    self._log_exception("An on_presence callback failed for %r", change)

    @property
    def heartbeat(self) -> threading.Thread | None:
        """The heartbeat thread, while it runs."""
        return self._heartbeat

    def stop(self) -> None:
        """Stop the heartbeat (waiting up to 5 seconds for it); a later
        entry starts it again."""
        self._stopping.set()
        with self._lock:
            heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None and heartbeat is not threading.current_thread():
            heartbeat.join(5)
        self._stopping = threading.Event()
