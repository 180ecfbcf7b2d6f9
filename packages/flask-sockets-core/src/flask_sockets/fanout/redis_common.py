"""What the Redis implementations share: the errors redis-py raises, how
clients are made, and the names of channels and keys.

Every import of redis-py is inside a function: this module, and those above
it, import without redis-py installed.
"""

from __future__ import annotations

import typing as t

from ..exceptions import MessageQueueUnavailable
from .broker import redacted

if t.TYPE_CHECKING:  # pragma: no cover
    import redis

__all__ = [
    "broadcast_channel",
    "checked_room",
    "client_for",
    "redis_errors",
    "room_channel",
    "unavailable",
]


def room_channel(prefix: str, room: str) -> str:
    """The pub/sub channel of ``room``."""
    return f"{prefix}:room:{room}"


def broadcast_channel(prefix: str) -> str:
    """The pub/sub channel of :meth:`~flask_sockets.Sockets.broadcast`."""
    return f"{prefix}:broadcast"


def redis_errors() -> tuple[type[BaseException], ...]:
    """What redis-py raises when Redis cannot be used: its errors, a
    cluster it cannot reach, and the socket's."""
    import redis
    from redis.exceptions import RedisClusterException

    # ValueError: a connection closed under redis-py mid-read.
    return (redis.RedisError, RedisClusterException, OSError, ValueError)


def checked_room(room: str) -> str:
    """``room``, if Redis can carry its name.

    :raises ValueError: If it is not valid Unicode text.
    """
    try:
        room.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"A room sent through Redis must be valid Unicode text: {room!r}") from None
    return room


def client_for(url: str, retries: int) -> redis.Redis:
    """A redis-py client of one server: connecting and reading time out
    after 5 seconds, ``retries`` retries without backoff; options in the
    URL's query win."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=5,
        retry=Retry(NoBackoff(), retries),
        health_check_interval=10,
    )


def unavailable(url: str, action: str, error: BaseException) -> MessageQueueUnavailable:
    """The exception raised when ``action`` failed on the Redis at ``url``."""
    return MessageQueueUnavailable(
        f"Could not {action}: the message queue at {redacted(url)} is unavailable ({error})."
    )
