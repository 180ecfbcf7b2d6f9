"""History on Redis (one server or a cluster), as Centrifugo keeps it: per
room, a Stream of its last messages and a hash with its position, both in
the hash slot of the room's channel.

Keys, for the channel ``C`` of a room (``<prefix>:room:<room>``):

- ``{C}:history``: a Stream; each entry's id is ``<offset>-1`` and its field
  ``d`` the message as it travels (:func:`~flask_sockets.fanout.broker.encode_message`),
  trimmed to about ``size`` entries (``MAXLEN ~``), expiring ``ttl`` seconds
  after the room's last message;
- ``{C}:position``: a hash with the epoch ``e`` and the last offset ``o``,
  expiring ``meta_ttl`` seconds after the room's last message or join.

Publishing is one Lua script: it assigns the next offset, appends to the
stream, trims, sets the TTLs and publishes (PUBLISH, or SPUBLISH on a
cluster, whose channel ``C`` is in the same slot as the keys), so no other
publish or recovery can come between. A missing position hash (first
message, flushed, expired, evicted) gets a new epoch and the stream is
dropped with it: positions of the old epoch can never be honoured.

Recovery is one Lua script too: it reads the position and, if the client's
position can be honoured, the entries after it (see
:func:`flask_sockets.fanout.history.recover` for the rules).
"""

from __future__ import annotations

import typing as t

from .broker import Disconnect
from .broker import decode_published
from .history import HistorySettings
from .history import Position
from .history import Recovery
from .history import new_epoch
from .history import recover

if t.TYPE_CHECKING:  # pragma: no cover
    from ..typing import Message

__all__ = ["PUBLISH_SCRIPT", "RECOVER_SCRIPT", "RedisHistory", "history_keys"]

#: KEYS: stream, position. ARGV: channel, data (JSON object), size, ttl ms,
#: meta ttl ms, new epoch, publish command. Returns {offset, epoch}.
PUBLISH_SCRIPT = """
local stream, position = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', position, 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', stream)
  redis.call('HSET', position, 'e', epoch, 'o', 0)
end
local offset = redis.call('HINCRBY', position, 'o', 1)
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], offset .. '-1', 'd', ARGV[2])
redis.call('PEXPIRE', stream, ARGV[4])
redis.call('PEXPIRE', position, ARGV[5])
local data = '{"offset": ' .. offset .. ', "epoch": "' .. epoch .. '", ' .. string.sub(ARGV[2], 2)
redis.call(ARGV[7], ARGV[1], data)
return {offset, epoch}
"""

#: KEYS: stream, position. ARGV: since offset (-1: none), since epoch,
#: limit, new epoch, meta ttl ms. Returns {epoch, top, first, entries or
#: nil}: ``first`` is the oldest offset in the stream (top + 1 if empty).
RECOVER_SCRIPT = """
local stream, position = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', position, 'e')
local top = 0
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', stream)
  redis.call('HSET', position, 'e', epoch, 'o', 0)
else
  top = tonumber(redis.call('HGET', position, 'o')) or 0
end
if redis.call('PTTL', position) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', position, ARGV[5])
end
local first = top + 1
local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #oldest > 0 then
  first = tonumber(string.match(oldest[1][1], '^(%d+)'))
end
local since = tonumber(ARGV[1])
local missed = top - since
if since < 0 or ARGV[2] ~= epoch or missed <= 0 or missed > tonumber(ARGV[3]) or first > since + 1 then
  return {epoch, top, first}
end
return {epoch, top, first, redis.call('XRANGE', stream, tostring(since + 1), '+', 'COUNT', missed)}
"""


def history_keys(channel: str) -> tuple[str, str]:
    """The stream and position keys of the room whose channel is ``channel``.

    :raises ValueError: If the channel has ``{`` or ``}`` (a room name with
        braces): its keys could not share the channel's hash slot.
    """
    if "{" in channel or "}" in channel:
        raise ValueError(f"A room with history cannot have braces in its name: {channel!r}")
    return f"{{{channel}}}:history", f"{{{channel}}}:position"


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisHistory:
    """The two scripts, bound to a client.

    :param publish_command: ``PUBLISH``, or ``SPUBLISH`` on a cluster.
    """

    def __init__(self, publish_command: str) -> None:
        self.publish_command = publish_command
        self._scripts: dict[int, tuple[t.Any, t.Any]] = {}

    def _bound(self, client: t.Any) -> tuple[t.Any, t.Any]:
        scripts = self._scripts.get(id(client))
        if scripts is None:
            scripts = (client.register_script(PUBLISH_SCRIPT), client.register_script(RECOVER_SCRIPT))
            self._scripts = {id(client): scripts}  # one client at a time: the broker's publisher
        return scripts

    def publish(self, client: t.Any, channel: str, data: str, settings: HistorySettings) -> Position:
        """Store and publish ``data`` (an encoded message); its position."""
        keys = history_keys(channel)
        args = [
            channel,
            data,
            settings.size,
            int(settings.ttl * 1000),
            int(settings.meta_ttl * 1000),
            new_epoch(),
            self.publish_command,
        ]
        offset, epoch = self._bound(client)[0](keys=list(keys), args=args)
        return Position(int(offset), _text(epoch))

    def recover(
        self, client: t.Any, channel: str, since: Position | None, limit: int, settings: HistorySettings
    ) -> Recovery:
        """The messages after ``since``, or ``recovered=False``."""
        keys = history_keys(channel)
        args = [
            since.offset if since is not None else -1,
            since.epoch if since is not None else "",
            limit,
            new_epoch(),
            int(settings.meta_ttl * 1000),
        ]
        reply = self._bound(client)[1](keys=list(keys), args=args)
        epoch, top, first = _text(reply[0]), int(reply[1]), int(reply[2])
        entries: list[tuple[int, Message]] = []
        for entry_id, fields in reply[3] if len(reply) > 3 else ():
            offset = int(_text(entry_id).partition("-")[0])
            data = dict(zip(fields[::2], fields[1::2]))
            raw = data.get(b"d", data.get("d"))
            if raw is None:  # pragma: no cover - not written by the script
                continue
            message = decode_published(raw).message
            if isinstance(message, Disconnect):  # pragma: no cover - never stored
                continue
            entries.append((offset, message))
        return recover(since, Position(top, epoch), first, lambda start: entries, limit)
