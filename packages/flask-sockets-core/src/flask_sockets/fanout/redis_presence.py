"""Presence on Redis (one server or a cluster): see
:mod:`flask_sockets.fanout.presence` for what presence is."""

from __future__ import annotations

import time
import typing as t

from .presence import PresenceStore
from .redis_common import redis_errors
from .redis_common import unavailable

__all__ = ["RedisPresence"]


class RedisPresence(PresenceStore):
    """Presence in Redis (one server or a cluster): per room, a sorted set
    ``<prefix>:presence:<room>`` whose members are entries and whose scores
    are the times (Redis' clock, in milliseconds) they expire. One key per
    room, so a cluster spreads rooms over its slots without hash tags.

    :param client: Returns the redis-py client to use (the broker's
        publishing client).
    :param prefix: ``SOCKETS_MESSAGE_QUEUE_CHANNEL``.
    :param ttl: Seconds an entry lives after its last heartbeat.
    :param url: The Redis URL, for error messages (its password is not shown).
    """

    def __init__(
        self,
        client: t.Callable[[], t.Any],
        prefix: str,
        ttl: float,
        url: str = "redis",
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"SOCKETS_PRESENCE_TTL must be positive, not {ttl!r}")
        self._client = client
        self.prefix = prefix
        self.ttl = ttl
        self.heartbeat = ttl / 3
        self.url = url
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
        try:
            return f(self._client())
        except redis_errors() as e:
            raise unavailable(self.url, action, e) from e

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
