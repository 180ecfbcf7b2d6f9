"""The broker an app's config asks for (``SOCKETS_MESSAGE_QUEUE``): the top
of the broker layers, the one module that knows every implementation."""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from ..options import DEFAULTS
from .broker import DEFAULT_CHANNEL
from .broker import Broker
from .broker import LocalBroker
from .broker import check_message_queue
from .redis_cluster import CLUSTER_SCHEMES
from .redis_cluster import RedisClusterBroker
from .redis_pubsub import RedisBroker

__all__ = ["broker_from_config"]


def broker_from_config(config: t.Mapping[str, t.Any]) -> Broker:
    """The broker an app's config asks for: ``SOCKETS_MESSAGE_QUEUE`` is
    ``None`` (a :class:`~flask_sockets.fanout.broker.LocalBroker`), a Redis URL (a
    :class:`~flask_sockets.fanout.redis_pubsub.RedisBroker`), a Redis Cluster URL
    (``redis+cluster://``, a
    :class:`~flask_sockets.fanout.redis_cluster.RedisClusterBroker`), both with
    ``SOCKETS_MESSAGE_QUEUE_CHANNEL`` as the prefix of their channels, or a
    :class:`~flask_sockets.fanout.broker.Broker` instance.

    :raises ValueError: For anything else.
    :raises ImportError: For a Redis URL without redis-py (see
        :func:`~flask_sockets.fanout.broker.check_message_queue`).
    """
    queue = config.get("SOCKETS_MESSAGE_QUEUE")
    check_message_queue(queue)
    if queue is None:
        return LocalBroker()
    if isinstance(queue, Broker):
        return queue
    prefix = config.get("SOCKETS_MESSAGE_QUEUE_CHANNEL") or DEFAULT_CHANNEL
    ttl = float(config.get("SOCKETS_PRESENCE_TTL", DEFAULTS["SOCKETS_PRESENCE_TTL"]))
    if urlsplit(queue).scheme in CLUSTER_SCHEMES:
        return RedisClusterBroker(queue, prefix, presence_ttl=ttl)
    return RedisBroker(queue, prefix, presence_ttl=ttl)
