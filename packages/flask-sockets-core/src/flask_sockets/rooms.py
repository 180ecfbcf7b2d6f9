"""Rooms: which sockets of this process are in which room, and how
published messages reach them without ever blocking the publisher.

The names of this module live in :mod:`flask_sockets.fanout`:
:class:`Rooms` in :mod:`~flask_sockets.fanout.membership`,
:class:`Member`, :data:`CLOSE_SLOW_CONSUMER` and
:data:`SLOW_CONSUMER_REASON` in :mod:`~flask_sockets.fanout.delivery`
(back-pressure and slow consumers are described there).
"""

from __future__ import annotations

from .fanout.delivery import CLOSE_SLOW_CONSUMER as CLOSE_SLOW_CONSUMER
from .fanout.delivery import SLOW_CONSUMER_REASON as SLOW_CONSUMER_REASON
from .fanout.delivery import Member as Member
from .fanout.membership import EXTENSION_KEY as EXTENSION_KEY
from .fanout.membership import Rooms as Rooms
from .fanout.presence import PresenceCallback as PresenceCallback

__all__ = ["CLOSE_SLOW_CONSUMER", "EXTENSION_KEY", "SLOW_CONSUMER_REASON", "Member", "PresenceCallback", "Rooms"]
