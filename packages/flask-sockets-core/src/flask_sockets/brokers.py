"""Where published messages travel: within this process, or through Redis.

The names of this module live in :mod:`flask_sockets.fanout.broker` (the
interface, the in-process broker, the message encoding) and
:mod:`flask_sockets.fanout.config` (:func:`broker_from_config`).
"""

from __future__ import annotations

from .exceptions import MessageQueueUnavailable as MessageQueueUnavailable
from .fanout.broker import DEFAULT_CHANNEL as DEFAULT_CHANNEL
from .fanout.broker import Broker as Broker
from .fanout.broker import Deliver as Deliver
from .fanout.broker import Disconnect as Disconnect
from .fanout.broker import LocalBroker as LocalBroker
from .fanout.broker import check_message_queue as check_message_queue
from .fanout.broker import decode_message as decode_message
from .fanout.broker import encode_message as encode_message
from .fanout.broker import redacted as redacted
from .fanout.broker import require_redis as require_redis
from .fanout.config import broker_from_config as broker_from_config

__all__ = [
    "DEFAULT_CHANNEL",
    "Broker",
    "Deliver",
    "Disconnect",
    "LocalBroker",
    "MessageQueueUnavailable",
    "broker_from_config",
    "check_message_queue",
    "decode_message",
    "encode_message",
    "redacted",
    "require_redis",
]
