"""Presence: who is in a room, across every process and host.

A socket joins a room with a small payload the app chooses
(``sockets.join(ws, room, presence={'name': 'Ada'})``); every process reads
the room's entries with ``sockets.presence(room)``, and ``@sockets.on_presence``
callbacks hear of each entry that comes or goes, once for the whole
deployment.

Where the entries live depends on the broker: in this process
(:class:`LocalPresence`, without ``SOCKETS_MESSAGE_QUEUE``), or in Redis
(:class:`RedisPresence`): one sorted set per room, each entry scored with
the time it expires. A process refreshes its own entries every
``SOCKETS_PRESENCE_TTL / 3`` seconds (its heartbeat), so the entries of a
process that died (SIGKILL, host gone) stop being read after
``SOCKETS_PRESENCE_TTL`` seconds, and a surviving process with members in
the room removes them and reports their ``leave`` at its next heartbeat.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
import typing as t

__all__ = [
    "LocalPresence",
    "PresenceChange",
    "PresenceStore",
    "RedisPresence",
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


class RedisPresence(PresenceStore):
    """Presence in Redis (one server or a cluster): per room, a sorted set
    ``<prefix>:presence:<room>`` whose members are entries and whose scores
    are the times (Redis' clock, in milliseconds) they expire. One key per
    room, so a cluster spreads rooms over its slots without hash tags.

    :param client: Returns the redis-py client to use (the broker's
        publishing client).
    :param prefix: ``SOCKETS_MESSAGE_QUEUE_CHANNEL``.
    :param ttl: Seconds an entry lives after its last heartbeat.
    :param unavailable: Makes the exception raised when Redis fails, from a
        description of what failed and the error.
    """

    def __init__(
        self,
        client: t.Callable[[], t.Any],
        prefix: str,
        ttl: float,
        unavailable: t.Callable[[str, BaseException], Exception],
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"SOCKETS_PRESENCE_TTL must be positive, not {ttl!r}")
        self._client = client
        self.prefix = prefix
        self.ttl = ttl
        self.heartbeat = ttl / 3
        self._unavailable = unavailable
        # Redis' clock minus ours, in ms, read at the first use and at each
        # heartbeat: expiry times are on Redis' clock, whatever the host's.
        self._offset: float | None = None

    def key(self, room: str) -> str:
        """The sorted set of ``room``'s entries."""
        return f"{self.prefix}:presence:{room}"

    def _now(self, client: t.Any, fresh: bool = False) -> float:
        if self._offset is None or fresh:
            seconds, micros = client.time()
            self._offset = seconds * 1000 + micros / 1000 - time.time() * 1000
        return time.time() * 1000 + self._offset

    def _call(self, action: str, f: t.Callable[[t.Any], t.Any]) -> t.Any:
        import redis
        from redis.exceptions import RedisClusterException

        try:
            return f(self._client())
        except (redis.RedisError, RedisClusterException, OSError) as e:
            raise self._unavailable(action, e) from e

    def _keep(self, pipe: t.Any, room: str, entries: t.Iterable[str], expires: float) -> None:
        key = self.key(room)
        for entry in entries:
            pipe.zadd(key, {entry: expires})
        # A room whose every process died goes away with its entries.
        pipe.pexpire(key, int(self.ttl * 2000))

    def add(self, room: str, entry: str) -> None:
        def add(client: t.Any) -> None:
            pipe = client.pipeline(transaction=False)
            self._keep(pipe, room, [entry], self._now(client) + self.ttl * 1000)
            pipe.execute()

        self._call(f"add a presence entry to room {room!r}", add)

    def remove(self, room: str, entry: str) -> bool:
        return bool(self._call(f"remove a presence entry of room {room!r}", lambda c: c.zrem(self.key(room), entry)))

    def read(self, room: str) -> list[str]:
        def read(client: t.Any) -> list[str]:
            entries = client.zrangebyscore(self.key(room), f"({self._now(client)}", "+inf")
            return [e.decode("utf-8") if isinstance(e, bytes) else e for e in entries]

        return t.cast("list[str]", self._call(f"read the presence of room {room!r}", read))

    def refresh(
        self, mine: t.Mapping[str, t.Collection[str]], rooms: t.Collection[str]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        def refresh(client: t.Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
            now = self._now(client, fresh=True)
            added: list[tuple[str, str]] = []
            if mine:
                pipe = client.pipeline(transaction=False)
                order: list[tuple[str, str] | None] = []
                for room, entries in mine.items():
                    self._keep(pipe, room, entries, now + self.ttl * 1000)
                    order += [(room, entry) for entry in entries] + [None]  # None: the PEXPIRE
                added = [pair for pair, result in zip(order, pipe.execute()) if pair is not None and result]
            expired: list[tuple[str, str]] = []
            rooms_list = list(rooms)
            if rooms_list:
                pipe = client.pipeline(transaction=False)
                for room in rooms_list:
                    pipe.zrangebyscore(self.key(room), "-inf", now)
                candidates = [
                    (room, e.decode("utf-8") if isinstance(e, bytes) else e)
                    for room, found in zip(rooms_list, pipe.execute())
                    for e in found
                ]
                if candidates:
                    # ZREM answers 1 to one caller only: each expired entry is
                    # reported by exactly one process.
                    pipe = client.pipeline(transaction=False)
                    for room, entry in candidates:
                        pipe.zrem(self.key(room), entry)
                    expired = [pair for pair, removed in zip(candidates, pipe.execute()) if removed]
            return added, expired

        return t.cast(
            "tuple[list[tuple[str, str]], list[tuple[str, str]]]", self._call("refresh presence entries", refresh)
        )
