"""Presence: who is in a room, across every process and host.

The names of this module live in :mod:`flask_sockets.fanout.presence` and
:mod:`flask_sockets.fanout.redis_presence` (:class:`RedisPresence`).
"""

from __future__ import annotations

from .fanout.presence import LocalPresence as LocalPresence
from .fanout.presence import PresenceChange as PresenceChange
from .fanout.presence import PresenceStore as PresenceStore
from .fanout.presence import decode_entry as decode_entry
from .fanout.presence import encode_entry as encode_entry
from .fanout.presence import new_presence_id as new_presence_id
from .fanout.redis_presence import RedisPresence as RedisPresence

__all__ = [
    "LocalPresence",
    "PresenceChange",
    "PresenceStore",
    "RedisPresence",
    "decode_entry",
    "encode_entry",
    "new_presence_id",
]
