"""Fan-out through Redis pub/sub, with one channel per room: on one Redis
server (:class:`RedisBroker`) or on a Redis Cluster with sharded pub/sub
(:class:`RedisClusterBroker`).

The names of this module live in :mod:`flask_sockets.fanout.redis_pubsub`,
:mod:`flask_sockets.fanout.redis_cluster` and
:mod:`flask_sockets.fanout.redis_common`.
"""

from __future__ import annotations

from .fanout.redis_cluster import CLUSTER_SCHEMES as CLUSTER_SCHEMES
from .fanout.redis_cluster import RedisClusterBroker as RedisClusterBroker
from .fanout.redis_common import broadcast_channel as broadcast_channel
from .fanout.redis_common import redis_errors as redis_errors
from .fanout.redis_common import room_channel as room_channel
from .fanout.redis_pubsub import POLL_INTERVAL as POLL_INTERVAL
from .fanout.redis_pubsub import RedisBroker as RedisBroker

__all__ = [
    "CLUSTER_SCHEMES",
    "POLL_INTERVAL",
    "RedisBroker",
    "RedisClusterBroker",
    "broadcast_channel",
    "redis_errors",
    "room_channel",
]
