"""The broker interface: where published messages travel, within this
process or through Redis.

A broker carries what :meth:`Sockets.publish <flask_sockets.Sockets.publish>`
and :meth:`~flask_sockets.Sockets.broadcast` send to every process that
serves the app's sockets, and hands each message it receives to the
process's rooms (:class:`flask_sockets.fanout.membership.Rooms`) for delivery.

- :class:`LocalBroker` (the default) delivers within the process: enough for
  one gevent server, one gunicorn worker or the development server.
- :class:`~flask_sockets.fanout.redis_pubsub.RedisBroker` (``SOCKETS_MESSAGE_QUEUE =
  'redis://...'``) publishes through one Redis server, on a channel per
  room that each process subscribes to while it has members in the room:
  messages reach the sockets of every worker on every host, and any process
  that can reach Redis (a cron job, a task queue worker) can publish.
- :class:`~flask_sockets.fanout.redis_cluster.RedisClusterBroker`
  (``'redis+cluster://...'``) does the same on a Redis Cluster with sharded
  pub/sub, so that each message goes only to the shard of its room.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import typing as t
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from ..base import to_payload
from ..protocol import is_valid_close_code
from .history import HistorySettings
from .history import LocalHistory
from .history import Position
from .history import Recovery
from .presence import LocalPresence
from .presence import PresenceStore

if t.TYPE_CHECKING:  # pragma: no cover
    from ..typing import Message

__all__ = [
    "DEFAULT_CHANNEL",
    "Broker",
    "Disconnect",
    "Deliver",
    "LocalBroker",
    "MAX_CLOSE_REASON",
    "check_message_queue",
    "checked_disconnect",
    "decode_message",
    "Published",
    "decode_published",
    "encode_message",
    "redacted",
    "require_redis",
]

#: The default prefix of the Redis channels and keys (``SOCKETS_MESSAGE_QUEUE_CHANNEL``).
DEFAULT_CHANNEL = "flask-sockets"


class Disconnect(t.NamedTuple):
    """A control message, not one for the sockets: close every socket of
    its room in every process with ``code`` and ``reason`` (see
    :meth:`Sockets.disconnect <flask_sockets.Sockets.disconnect>`).

    It travels on the room's channel like a message, so it reaches the
    processes (and, on a Redis Cluster, the shard) that hold the room's
    sockets, but as JSON with a ``"control"`` field that no published
    message has: a message, whatever its text, is never taken for one. It is
    never stored in a room's history. A broker hands it to ``deliver`` in
    place of a message.
    """

    code: int
    reason: str


class Deliver(t.Protocol):
    """``deliver(room, message, position=None)``: hand a message (or a
    :class:`Disconnect`) to this process's sockets; ``room`` is ``None`` for
    a broadcast to every socket, ``position`` the message's place in the
    room's history (``None`` without history)."""

    def __call__(self, room: str | None, message: Message | Disconnect, position: Position | None = None) -> None: ...


class Broker:
    """Carries published messages to every process serving the app.

    A subclass implements :meth:`publish`; one whose messages arrive from
    elsewhere also :meth:`start` (begin handing them to ``deliver``),
    :meth:`close`, and, to receive only the rooms the process has members
    in, :meth:`subscribe` and :meth:`unsubscribe`. A broker that ignores
    those two (the default) hands every message to ``deliver``, which
    picks the sockets it concerns: that works too, at the cost of
    receiving every room's messages.
    """

    def start(self, deliver: Deliver) -> None:
        """Hand every message published from now on, anywhere, to
        ``deliver`` (for the rooms subscribed, and every broadcast). Called
        when the first socket of the process opens; a second call does
        nothing. Must not block."""
        raise NotImplementedError

    def publish(
        self, room: str | None, message: Message | Disconnect, history: HistorySettings | None = None
    ) -> Position | None:
        """Send ``message`` to the sockets in ``room`` (every socket if
        ``room`` is ``None``) in every process.

        ``message`` may be a :class:`Disconnect` (always with ``history``
        ``None``): the broker carries it as it carries a message, and hands
        it as it is to ``deliver`` in every process.

        :param history: The room's history settings, ``None`` if it keeps
            none. A broker that keeps history stores the message, gives it
            the room's next offset and hands that position to ``deliver``
            with it, as one atomic step.
        :returns: The message's position, or ``None`` without history.
        :raises MessageQueueUnavailable: If the message could not be sent.
        """
        raise NotImplementedError

    def recover(self, room: str, since: Position | None, limit: int, history: HistorySettings) -> Recovery:
        """The messages of ``room`` after ``since`` (see
        :func:`flask_sockets.fanout.history.recover`), or
        ``recovered=False`` with the room's current position. By default a
        broker keeps no history: ``Recovery(False, None)``.

        :raises MessageQueueUnavailable: If the history cannot be read.
        """
        return Recovery(False, None)

    def subscribe(self, room: str) -> None:
        """This process has its first member in ``room``: receive the
        room's messages from now on. Must not block (see
        :meth:`wait_until_ready`)."""

    def unsubscribe(self, room: str) -> None:
        """This process's last member left ``room``."""

    def wait_until_ready(self, timeout: float, room: str | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) until the messages of
        ``room`` (of broadcasts, if ``None``) published elsewhere reach this
        process; ``True`` if they do now, ``False`` if the broker cannot
        receive them (it is down: the caller goes on without waiting). A
        socket that joins a room waits for this, so that messages published
        right after the join reach it."""
        return True

    @property
    def connected(self) -> bool:
        """Whether messages published elsewhere reach this process now."""
        return True

    @property
    def subscriptions(self) -> int:
        """The channels this process receives now (``0`` for a broker
        without channels)."""
        return 0

    def presence_store(self) -> PresenceStore:
        """Where the presence entries of this broker's deployment live: by
        default in this process only
        (:class:`~flask_sockets.fanout.presence.LocalPresence`)."""
        return LocalPresence()

    def close(self) -> None:
        """Stop receiving and release connections."""

    #: Called with the seconds from :meth:`publish` (in any process) to this
    #: process receiving the message, for each message a broker receives
    #: from elsewhere (:mod:`flask_sockets.metrics` sets it), or ``None``.
    lag_observer: t.Callable[[float], None] | None = None
    #: How many times this broker's connection to the message queue came
    #: back after it was lost (``0`` for a broker without one).
    reconnects: int = 0


class LocalBroker(Broker):
    """Delivers within this process, synchronously: :meth:`publish` hands
    the message to the process's rooms before it returns. Never raises
    :exc:`~flask_sockets.MessageQueueUnavailable`. Keeps the history of
    rooms with history in this process
    (:class:`~flask_sockets.fanout.history.LocalHistory`)."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        #: The history of this process's rooms.
        self.history = LocalHistory()

    def start(self, deliver: Deliver) -> None:
        if self._deliver is None:
            self._deliver = deliver

    def publish(
        self, room: str | None, message: Message | Disconnect, history: HistorySettings | None = None
    ) -> Position | None:
        deliver = self._deliver
        if history is None or room is None or isinstance(message, Disconnect):
            if deliver is not None:  # else no socket ever opened here: nobody to reach
                deliver(room, message)
            return None
        # Stored and delivered under one lock: sockets get a room's messages in offset order.
        with self.history.lock:
            position = self.history.append(room, message, history)
            if deliver is not None:
                deliver(room, message, position)
        return position

    def recover(self, room: str, since: Position | None, limit: int, history: HistorySettings) -> Recovery:
        return self.history.recover(room, since, limit, history)

    def close(self) -> None:
        self._deliver = None


def encode_message(room: str | None, message: Message | Disconnect) -> str:
    """The JSON a message travels as: ``{"room": ..., "text": ...}`` for
    text, ``{"room": ..., "binary": <base64>}`` for binary; ``room`` is
    ``null`` for a broadcast; ``"ts"`` is when it was published (Unix
    seconds), for the publish-to-delivery lag. A message of a room with
    history travels with its ``"offset"`` and ``"epoch"`` too (added by the
    Redis script). A :class:`Disconnect` travels as ``{"room": ...,
    "control": "disconnect", "code": ..., "reason": ...}``: no message has a
    ``"control"`` field (an older process ignores it, as it has neither
    ``"text"`` nor ``"binary"``)."""
    if isinstance(message, Disconnect):
        return json.dumps(
            {"room": room, "control": "disconnect", "code": message.code, "reason": message.reason, "ts": time.time()}
        )
    if isinstance(message, str):
        return json.dumps({"room": room, "text": message, "ts": time.time()})
    return json.dumps(
        {"room": room, "binary": base64.b64encode(to_payload(message)).decode("ascii"), "ts": time.time()}
    )


def decode_message(data: str | bytes) -> tuple[str | None, Message | Disconnect]:
    """The ``(room, message)`` that :func:`encode_message` encoded.

    :raises ValueError: If ``data`` is not such a message.
    """
    published = decode_published(data)
    return published.room, published.message


class Published(t.NamedTuple):
    """A message as it travelled (see :func:`decode_published`)."""

    #: Its room, or ``None`` for a broadcast.
    room: str | None
    #: The message, or a :class:`Disconnect` (a control message).
    message: Message | Disconnect
    #: Its position in the room's history, or ``None`` without history.
    position: Position | None
    #: When it was published (Unix seconds), or ``None`` (an older publisher's).
    published_at: float | None


def decode_published(data: str | bytes) -> Published:
    """The :class:`Published` message that travelled as ``data``.

    :raises ValueError: If ``data`` is not such a message.
    """
    try:
        payload = json.loads(data)
        room = payload["room"]
        control = payload.get("control")
        message: Message | Disconnect
        if control is not None:
            message = _decode_control(control, payload)
        elif "text" in payload:
            message = payload["text"]
        else:
            message = base64.b64decode(payload["binary"], validate=True)
        offset, epoch, published_at = payload.get("offset"), payload.get("epoch"), payload.get("ts")
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as e:
        raise ValueError(f"not a Flask-Sockets message: {e!r}") from None
    if not (room is None or isinstance(room, str)) or not isinstance(message, (str, bytes, Disconnect)):
        raise ValueError("not a Flask-Sockets message: wrong types")
    if isinstance(message, Disconnect):  # never part of a room's history
        offset = epoch = None
    position = Position(offset, epoch) if isinstance(offset, int) and isinstance(epoch, str) else None
    return Published(room, message, position, published_at if isinstance(published_at, (int, float)) else None)


#: The most bytes of UTF-8 a close frame's reason holds (125 less the code).
MAX_CLOSE_REASON = 123


def _decode_control(control: t.Any, payload: dict[str, t.Any]) -> Disconnect:
    """The control message of ``payload``, checked as
    :func:`checked_disconnect` checks what a publisher sends."""
    if control != "disconnect":
        raise ValueError(f"unknown control message {control!r}")
    code, reason = payload["code"], payload["reason"]
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(reason, str):
        raise TypeError("a disconnect has an int code and a str reason")
    return checked_disconnect(code, reason)


def checked_disconnect(code: int, reason: str) -> Disconnect:
    """The :class:`Disconnect` that closes with ``code`` and ``reason``.

    :raises ValueError: If ``code`` is not one a server may send in a close
        frame (1000 to 1003, 1007 to 1014, or 3000 to 4999: RFC 6455,
        7.4), or ``reason`` is more than 123 bytes of UTF-8 (what a close
        frame holds).
    :raises TypeError: If ``code`` is not an ``int`` or ``reason`` not a ``str``.
    """
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"A close code is an int, not {type(code).__name__}")
    if not isinstance(reason, str):
        raise TypeError(f"A close reason is a str, not {type(reason).__name__}")
    if not is_valid_close_code(code):
        raise ValueError(
            f"Cannot close sockets with code {code}: use a code a server may send"
            " (1000, 1001, 1008, 1011, 1012, 1013, ... or 3000-4999, such as 4401)"
        )
    size = len(reason.encode("utf-8"))
    if size > MAX_CLOSE_REASON:
        raise ValueError(f"A close reason is at most {MAX_CLOSE_REASON} bytes of UTF-8, not {size}")
    return Disconnect(int(code), reason)


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


#: The URL schemes of Redis (``redis+cluster``: a Redis Cluster).
_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def require_redis(url: str) -> None:
    """Check that redis-py can be imported, to use the Redis at ``url``.

    :raises ImportError: If it cannot; the message says how to install it.
    """
    try:
        import redis  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"SOCKETS_MESSAGE_QUEUE is {redacted(url)!r}, but redis-py, the Redis client, is not"
            " installed. Install it with: pip install redis (or install Flask-Sockets with its"
            " [redis] extra)."
        ) from e


def check_message_queue(queue: t.Any) -> None:
    """Check a ``SOCKETS_MESSAGE_QUEUE`` setting (see
    :func:`broker_from_config`) without connecting anywhere: ``init_app``
    calls it, so that a setting that cannot work stops the app at start
    rather than fail every socket.

    :raises ValueError: If it is not ``None``, a Redis URL or a :class:`Broker`.
    :raises ImportError: If it is a Redis URL and redis-py is not installed;
        the message says how to install it.
    """
    if queue is None or isinstance(queue, Broker):
        return
    if isinstance(queue, str) and urlsplit(queue).scheme in _REDIS_SCHEMES:
        require_redis(queue)
        return
    raise ValueError(
        f"SOCKETS_MESSAGE_QUEUE is {queue!r}: use None (this process only), a Redis URL"
        " such as 'redis://localhost:6379/0', a Redis Cluster URL such as"
        " 'redis+cluster://localhost:7000/', or a flask_sockets.brokers.Broker."
    )
