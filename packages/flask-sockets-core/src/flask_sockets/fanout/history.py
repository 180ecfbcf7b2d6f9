"""History: the last messages of a room, so that a socket that reconnects
gets exactly what it missed, or learns that it cannot.

Off by default. A room with history keeps its last ``size`` messages, each
with an *offset* (1, 2, 3... per room) and the room's *epoch* (a random
string that changes whenever the history is lost: Redis restarted or
flushed, keys expired or evicted). A :class:`Position` is the pair. The
messages live ``ttl`` seconds after the room's last message; the room's
position (its epoch and last offset) lives ``meta_ttl`` seconds, so a
client that missed nothing still recovers after a quiet spell.

:func:`recover` decides, from a client's last position, between *every*
message after it (``recovered=True``) and nothing at all
(``recovered=False``, with the room's current position): a client never
gets a partial replay. This module holds the rules and the in-process
history of the local broker (:class:`LocalHistory`); the Redis history is
in :mod:`flask_sockets.fanout.redis_history`.
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import secrets
import threading
import time
import typing as t

if t.TYPE_CHECKING:  # pragma: no cover
    from ..typing import Message

__all__ = [
    "HistoryPolicy",
    "HistoryRule",
    "HistorySettings",
    "LocalHistory",
    "Position",
    "Recovery",
    "history_rule",
    "new_epoch",
    "recover",
]


class Position(t.NamedTuple):
    """Where a room's history stands: the offset of a message (``0``
    before the first) and the epoch of the history it is in."""

    offset: int
    epoch: str


@dataclasses.dataclass(frozen=True)
class HistorySettings:
    """The history of one room: its last ``size`` messages, kept ``ttl``
    seconds after its last message; its position kept ``meta_ttl`` seconds."""

    size: int
    ttl: float
    meta_ttl: float


@dataclasses.dataclass(frozen=True)
class Recovery:
    """What a join with history learns (see
    :meth:`flask_sockets.Sockets.join`)."""

    #: ``True``: every message after the client's position was replayed to
    #: the socket, in order, and live ones follow with no gap or duplicate.
    #: ``False``: nothing was replayed (no position given, epoch changed,
    #: trimmed or expired, history off, too many missed, broker down): the
    #: app reloads its state.
    recovered: bool
    #: The room's position after the replay (``recovered``), or its current
    #: one; ``None`` if history is off for the room or the broker is down.
    position: Position | None
    #: The messages replayed, oldest first (filled by the broker; the rooms
    #: send them to the socket).
    messages: tuple[tuple[Message, Position], ...] = dataclasses.field(default=(), repr=False)
    #: The socket's presence id in the room, if it joined with a payload.
    presence_id: str | None = None


def new_epoch() -> str:
    """A new epoch: 8 random hex digits."""
    return secrets.token_hex(4)


#: A per-room rule: a glob pattern (``fnmatch``) or a predicate on the room's name.
RoomMatcher = t.Union[str, t.Callable[[str], bool]]


class HistoryPolicy:
    """Which rooms keep history, and how much: the rules the app added
    (:meth:`flask_sockets.Sockets.history`), first match wins, else the
    app's ``SOCKETS_HISTORY_SIZE`` / ``SOCKETS_HISTORY_TTL``.

    :param config: The app's config (read at each call, so it may change).
    :param rules: The per-room rules, ``(rooms, size, ttl)`` (the
        extension's list, made by :func:`history_rule`, so rules added
        later count).
    """

    def __init__(self, config: t.Mapping[str, t.Any], rules: t.Sequence[HistoryRule] = ()) -> None:
        self._config = config
        self._rules = rules

    def of(self, room: str | None) -> HistorySettings | None:
        """The history settings of ``room``; ``None`` if it keeps none (a
        broadcast never does)."""
        if room is None:
            return None
        get = self._config.get
        size: int | None = None
        ttl: float | None = None
        for rooms, rule_size, rule_ttl in self._rules:
            if rooms(room) if callable(rooms) else fnmatch.fnmatchcase(room, rooms):
                size, ttl = rule_size, rule_ttl
                break
        if size is None:
            size = int(get("SOCKETS_HISTORY_SIZE") or 0)
        if not size:
            return None
        if ttl is None:
            ttl = float(get("SOCKETS_HISTORY_TTL") or 300.0)
        meta_ttl = max(float(get("SOCKETS_HISTORY_META_TTL") or 86400.0), ttl)
        return HistorySettings(size, ttl, meta_ttl)

    @property
    def max_replay(self) -> int:
        """The most messages one join replays (``SOCKETS_HISTORY_MAX_REPLAY``):
        a client that missed more gets ``recovered=False``."""
        return int(self._config.get("SOCKETS_HISTORY_MAX_REPLAY") or 1000)


#: ``(rooms, size, ttl)``: rooms matching ``rooms`` keep ``size`` messages
#: for ``ttl`` seconds (``None``: the app's setting).
HistoryRule = tuple[RoomMatcher, t.Optional[int], t.Optional[float]]


def history_rule(rooms: RoomMatcher, size: int | None = None, ttl: float | None = None) -> HistoryRule:
    """A checked per-room rule (see :meth:`flask_sockets.Sockets.history`).

    :raises ValueError: If ``size`` is negative or ``ttl`` not positive.
    :raises TypeError: If ``rooms`` is neither a str nor callable.
    """
    if not (isinstance(rooms, str) or callable(rooms)):
        raise TypeError(f"Rooms are matched by a glob pattern (str) or a predicate, not {rooms!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"A history size is 0 (off) or more, not {size!r}")
    if ttl is not None and not ttl > 0:
        raise ValueError(f"A history TTL is positive, not {ttl!r}")
    return (rooms, size, ttl)


class _Room:
    __slots__ = ("epoch", "expires", "messages", "meta_expires", "top")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.messages: collections.deque[tuple[int, Message]] = collections.deque()
        self.expires = 0.0
        self.meta_expires = 0.0


class LocalHistory:
    """The history of the rooms of this process (the local broker's), with
    the semantics of the Redis one: a monotonic clock stands in for Redis'
    key expiry.

    :param clock: Returns the time in seconds (tests move it forward).
    """

    def __init__(self, clock: t.Callable[[], float] = time.monotonic) -> None:
        #: Held while a message is added *and delivered*, so that sockets
        #: get a room's messages in offset order.
        self.lock = threading.RLock()
        self._clock = clock
        self._rooms: dict[str, _Room] = {}

    def _room(self, room: str) -> _Room:
        now = self._clock()
        state = self._rooms.get(room)
        if state is None or state.meta_expires <= now:
            state = self._rooms[room] = _Room()  # a new epoch
        elif state.expires <= now:
            state.messages.clear()  # the messages expired; the position lives on
        return state

    def append(self, room: str, message: Message, settings: HistorySettings) -> Position:
        """Store ``message`` as the next of ``room``; its position. Call
        with :attr:`lock` held until the message is delivered."""
        with self.lock:
            state = self._room(room)
            state.top += 1
            state.messages.append((state.top, message))
            while len(state.messages) > settings.size:
                state.messages.popleft()
            now = self._clock()
            state.expires = now + settings.ttl
            state.meta_expires = now + settings.meta_ttl
            return Position(state.top, state.epoch)

    def recover(self, room: str, since: Position | None, limit: int, settings: HistorySettings) -> Recovery:
        """Every message of ``room`` after ``since``, or ``recovered=False``
        and the current position (see :func:`recover`)."""
        with self.lock:
            state = self._room(room)
            state.meta_expires = max(state.meta_expires, self._clock() + settings.meta_ttl)
            first = state.messages[0][0] if state.messages else state.top + 1
            messages = list(state.messages)
            top = Position(state.top, state.epoch)
            return recover(since, top, first, lambda start: messages[start - first :], limit)

    def clear(self) -> None:
        """Lose every room's history (as a Redis FLUSHALL would)."""
        with self.lock:
            self._rooms.clear()


def recover(
    since: Position | None,
    current: Position,
    first: int,
    read: t.Callable[[int], t.Sequence[tuple[int, Message]]],
    limit: int,
) -> Recovery:
    """The rules of recovery, written once: replay everything after
    ``since`` if the history still holds it all (same epoch, its oldest
    offset ``first`` at most ``since.offset + 1``) and it is at most
    ``limit`` messages; else nothing and ``recovered=False``.

    :param read: ``read(start)``: the ``(offset, message)`` pairs from
        offset ``start`` to the top.
    """
    if since is None or since.epoch != current.epoch or since.offset > current.offset:
        return Recovery(False, current)
    missed = current.offset - since.offset
    if missed == 0:
        return Recovery(True, current)
    if missed > limit or first > since.offset + 1:
        return Recovery(False, current)
    entries = read(since.offset + 1)
    if len(entries) != missed or entries[0][0] != since.offset + 1:
        return Recovery(False, current)
    return Recovery(True, current, tuple((message, Position(offset, current.epoch)) for offset, message in entries))
