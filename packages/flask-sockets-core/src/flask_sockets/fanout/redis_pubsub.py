"""Fan-out through Redis pub/sub, with one channel per room, on one Redis
server (:class:`RedisBroker`); on a Redis Cluster with sharded pub/sub, see
:mod:`flask_sockets.fanout.redis_cluster`.

A process subscribes to a room's channel while it has a member in the room,
and to the broadcast channel while it serves any socket: it receives the
messages of its own rooms, not the deployment's. A process that only
publishes (a cron job) never subscribes. The channels are
``<prefix>:room:<room>`` and ``<prefix>:broadcast``, where the prefix is
``SOCKETS_MESSAGE_QUEUE_CHANNEL``.

Subscribing never blocks the caller: a join records the room, and the
subscriber (a thread, or a greenlet where gevent patched ``threading``)
sends every change since its last look in one batch, within
:data:`POLL_INTERVAL` seconds. 10,000 joins at start-up are a handful of
commands, not 10,000 round trips.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import typing as t

from .broker import DEFAULT_CHANNEL
from .broker import Broker
from .broker import Deliver
from .broker import Disconnect
from .broker import decode_published
from .broker import encode_message
from .broker import redacted
from .broker import require_redis
from .history import HistorySettings
from .history import Position
from .history import Recovery
from .presence import PresenceStore
from .redis_common import broadcast_channel
from .redis_common import checked_room
from .redis_common import client_for
from .redis_common import redis_errors
from .redis_common import room_channel
from .redis_common import unavailable
from .redis_history import RedisHistory
from .redis_history import history_keys
from .redis_presence import RedisPresence

if t.TYPE_CHECKING:  # pragma: no cover
    import redis

    from ..typing import Message

__all__ = ["POLL_INTERVAL", "RedisBroker"]

logger = logging.getLogger("flask_sockets.brokers")

#: Seconds a subscriber waits for a message before it looks for rooms to
#: subscribe or unsubscribe (and whether to stop): the longest a join waits
#: for its subscription, on top of the round trip to Redis.
POLL_INTERVAL = 0.05
#: Channels per SUBSCRIBE command when many rooms are joined at once.
_BATCH = 1000


class _Subscriber:
    """One subscriber connection, to the Redis server or to one master of
    a cluster, in a thread of its own: it keeps the channels subscribed
    that the broker wants of it (:meth:`RedisBroker._wanted_of`) and hands
    the messages it receives to the broker."""

    def __init__(self, broker: RedisBroker, node: str, connect: t.Callable[[], redis.Redis]) -> None:
        self.broker = broker
        self.node = node
        self._connect = connect
        self.stopping = threading.Event()
        #: The channels Redis confirmed on the current connection (guarded
        #: by the broker's condition).
        self.confirmed: set[str] = set()
        #: Confirmed channels that were left since (guarded by the broker's
        #: condition): a join waits for a new confirmation of them.
        self.stale: set[str] = set()
        #: Whether the current connection works (a subscription was confirmed on it).
        self.connected = False
        #: Whether the first attempt to connect has ended, either way.
        self.attempted = False
        name = f"flask-sockets subscriber {broker.channel}" + (f" {node}" if node else "")
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __repr__(self) -> str:
        return f"<subscriber of {self.broker!r}{' on ' + self.node if self.node else ''}>"

    def _run(self) -> None:
        broker = self.broker
        delay, longest = broker.reconnect_delay
        failures = 0
        while not self.stopping.is_set():
            client = pubsub = None
            # What this connection asked Redis for: a channel in it that Redis
            # unsubscribes by itself (its slot moved) is asked for again.
            subscribed: set[str] = set()
            version = -1
            try:
                client = self._connect()
                pubsub = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis-py 8.2
                while not self.stopping.is_set():
                    if broker._version != version:
                        version, wanted = broker._wanted_of(self.node)
                        self._sync(pubsub, subscribed, wanted)
                    item = pubsub.get_message(timeout=POLL_INTERVAL)
                    if item is None:
                        continue
                    kind = item["type"]
                    if kind in ("message", "smessage"):
                        broker._dispatch(item["data"])
                    elif kind in ("subscribe", "ssubscribe"):
                        if not self.connected and failures:
                            with broker._state:  # (a cluster's subscribers share it)
                                broker.reconnects += 1
                            logger.warning("%r: reconnected; receiving messages again.", broker)
                        failures, delay = 0, broker.reconnect_delay[0]
                        self._confirmed(_text(item["channel"]), True)
                    elif kind in ("unsubscribe", "sunsubscribe"):
                        channel = _text(item["channel"])
                        self._confirmed(channel, False)
                        if channel in subscribed:  # Redis dropped it: the slot moved to another node
                            subscribed.discard(channel)
                            version = -1
                            broker._topology_suspect(self.node)
            except redis_errors() as e:
                with broker._state:
                    self.connected = False
                    self.attempted = True
                    self.confirmed.clear()
                    self.stale.clear()
                    if broker._workers.get(self.node) is self:  # not one the cluster left behind
                        broker.last_error = e
                    broker._state.notify_all()
                if not failures:
                    logger.warning(
                        "%r: cannot receive messages (%s); retrying with backoff until Redis is back.", broker, e
                    )
                failures += 1
                broker._topology_suspect(self.node)
            finally:
                for resource in (pubsub, client):
                    try:
                        if resource is not None:
                            resource.close()
                    except Exception:  # pragma: no cover - best effort on a dead connection
                        pass
            with broker._state:
                self.connected = False
                self.confirmed.clear()
                self.stale.clear()
                broker._state.notify_all()
            self.stopping.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, longest)

    def _sync(self, pubsub: t.Any, subscribed: set[str], wanted: set[str]) -> None:
        """Ask Redis for the channels in ``wanted`` and no others, in batches."""
        sharded = self.broker.sharded
        gone = subscribed - wanted
        with self.broker._state:
            # Left and joined again since the last look: its confirmation was
            # dropped (see RedisBroker.unsubscribe); ask again, so that a join
            # waits for a subscription that is really there.
            new = (wanted - subscribed) | (wanted & subscribed & self.stale)
        if gone:
            subscribed -= gone
            for batch in self.broker._batches(gone):
                (pubsub.sunsubscribe if sharded else pubsub.unsubscribe)(*batch)
        if new:
            subscribed |= new
            for batch in self.broker._batches(new):
                (pubsub.ssubscribe if sharded else pubsub.subscribe)(*batch)

    def _confirmed(self, channel: str, subscribed: bool) -> None:
        broker = self.broker
        with broker._state:
            if subscribed:
                self.confirmed.add(channel)
                self.stale.discard(channel)
                self.connected = self.attempted = True
                if all(worker.connected for worker in broker._workers.values()):
                    broker.last_error = None
            else:
                self.confirmed.discard(channel)
                self.stale.discard(channel)
            broker._state.notify_all()


def _text(channel: str | bytes) -> str:
    return channel.decode("utf-8") if isinstance(channel, bytes) else channel


class RedisBroker(Broker):
    """Fan-out through one Redis server's pub/sub (redis-py: ``pip install
    redis``, or the ``[redis]`` extra), one channel per room.

    Each message is published as JSON (see
    :func:`~flask_sockets.fanout.broker.encode_message`) on the channel of its
    room, or on the broadcast channel. A process that serves sockets runs
    one subscriber (a thread, a greenlet under gevent), started with its
    first socket: it holds the channels of the rooms the process has
    members in, and the broadcast channel. Messages from one publisher
    arrive in the order they were published.

    Faults: :meth:`publish` raises
    :exc:`~flask_sockets.MessageQueueUnavailable` at once while
    Redis is unreachable (nothing is buffered). The subscriber logs a
    warning, then reconnects with exponential backoff (from
    ``reconnect_delay[0]`` up to ``reconnect_delay[1]`` seconds, with
    jitter), subscribes to the process's current rooms again, and logs when
    it is back; messages published while it was away are not replayed
    (Redis pub/sub keeps nothing).

    :param url: A redis-py URL: ``redis://[[user]:password@]host:port/db``,
        ``rediss://`` for TLS, ``unix:///path.sock``. Query parameters set
        redis-py options, for example ``?socket_connect_timeout=2``;
        connecting and reading time out after 5 seconds unless they say
        otherwise. Valkey speaks the same protocol and works the same.
    :param channel: The prefix of the pub/sub channels; apps sharing a
        Redis server need distinct ones (``SOCKETS_MESSAGE_QUEUE_CHANNEL``).
    :param client_factory: Makes the redis-py client (used for tests, with
        fakeredis); by default ``redis.Redis.from_url(url, ...)``.
    :param reconnect_delay: ``(first, longest)`` wait in seconds between
        the subscriber's connection attempts.
    :param presence_ttl: Seconds a presence entry outlives the last
        heartbeat of its process (``SOCKETS_PRESENCE_TTL``).
    """

    #: SSUBSCRIBE and SPUBLISH (sharded pub/sub) instead of SUBSCRIBE and PUBLISH.
    sharded = False

    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        *,
        client_factory: t.Callable[[], redis.Redis] | None = None,
        reconnect_delay: tuple[float, float] = (0.1, 5.0),
        presence_ttl: float = 15.0,
    ) -> None:
        if client_factory is None:
            require_redis(url)
        self.url = url
        self.channel = channel
        self.reconnect_delay = reconnect_delay
        self.presence_ttl = presence_ttl
        self._client_factory = client_factory
        self._history = RedisHistory("SPUBLISH" if self.sharded else "PUBLISH")
        self._lock = threading.Lock()
        self._publisher: t.Any = None
        self._deliver: Deliver | None = None
        # The channels this process wants, and a counter the subscribers
        # watch to know that it changed; guarded by _state, which subscribers
        # also notify when a subscription is confirmed or a connection drops.
        self._state = threading.Condition()
        self._wanted: set[str] = set()
        self._version = 0
        self._workers: dict[str, _Subscriber] = {}
        #: The last error of a subscriber's connection, while it is down.
        self.last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redacted(self.url)} channel={self.channel!r}>"

    def _client(self, retries: int) -> redis.Redis:
        if self._client_factory is not None:
            return self._client_factory()
        return self._client_for(self.url, retries)

    @staticmethod
    def _client_for(url: str, retries: int) -> redis.Redis:
        return client_for(url, retries)

    def _publishing_client(self) -> t.Any:
        with self._lock:
            if self._publisher is None:
                # One retry: a pooled connection that died with a Redis restart
                # is replaced at once.
                self._publisher = self._client(retries=1)
            return self._publisher

    def _batches(self, channels: set[str]) -> t.Iterator[list[str]]:
        ordered = sorted(channels)
        for start in range(0, len(ordered), _BATCH):
            yield ordered[start : start + _BATCH]

    # -- publishing -----------------------------------------------------------

    def publish(
        self, room: str | None, message: Message | Disconnect, history: HistorySettings | None = None
    ) -> Position | None:
        channel = broadcast_channel(self.channel) if room is None else room_channel(self.channel, checked_room(room))
        data = encode_message(room, message)
        if isinstance(message, Disconnect):  # a control message: never in the history
            history = None
        if history is not None and room is not None:
            history_keys(channel)  # raises ValueError for a name that cannot have history
        try:
            if history is not None and room is not None:
                return self._history.publish(self._publishing_client(), channel, data, history)
            self._send(self._publishing_client(), channel, data)
        except redis_errors() as e:
            target = "every socket" if room is None else f"room {room!r}"
            raise unavailable(self.url, f"publish to {target}", e) from e
        return None

    def recover(self, room: str, since: Position | None, limit: int, history: HistorySettings) -> Recovery:
        channel = room_channel(self.channel, checked_room(room))
        history_keys(channel)
        try:
            return self._history.recover(self._publishing_client(), channel, since, limit, history)
        except redis_errors() as e:
            raise unavailable(self.url, f"read the history of room {room!r}", e) from e

    def _send(self, client: t.Any, channel: str, data: str) -> None:
        client.publish(channel, data)

    # -- subscribing ----------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        with self._state:
            if self._deliver is not None:
                return
            self._deliver = deliver
            self._want(broadcast_channel(self.channel))
            self._start_subscribers()

    def _start_subscribers(self) -> None:
        """Start what receives messages (called with ``_state`` held)."""
        self._spawn("", lambda: self._client(retries=0))

    def _spawn(self, node: str, connect: t.Callable[[], redis.Redis]) -> _Subscriber:
        worker = self._workers[node] = _Subscriber(self, node, connect)
        worker.thread.start()
        return worker

    def subscribe(self, room: str) -> None:
        with self._state:
            self._want(room_channel(self.channel, checked_room(room)))

    def unsubscribe(self, room: str) -> None:
        with self._state:
            channel = room_channel(self.channel, room)
            if channel in self._wanted:
                self._wanted.discard(channel)
                self._version += 1
                # A join from now on waits for a new confirmation, not this one
                # (the subscriber may be unsubscribing).
                for worker in self._workers.values():
                    if channel in worker.confirmed:
                        worker.stale.add(channel)

    def _want(self, channel: str) -> None:
        if channel not in self._wanted:
            self._wanted.add(channel)
            self._version += 1

    def _wanted_of(self, node: str) -> tuple[int, set[str]]:
        """The version of the wanted channels, and those the subscriber of
        ``node`` holds."""
        with self._state:
            return self._version, set(self._wanted)

    def _worker_of(self, channel: str) -> _Subscriber | None:
        """The subscriber that holds ``channel`` (called with ``_state`` held)."""
        return self._workers.get("")

    def _topology_suspect(self, node: str) -> None:
        """A subscriber lost its connection or a subscription: with a
        cluster, the slots may have moved."""

    def wait_until_ready(self, timeout: float, room: str | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) until the subscription of
        ``room`` (of the broadcast channel if ``None``) is confirmed by
        Redis. Returns ``False`` at once while Redis is down."""
        channel = broadcast_channel(self.channel) if room is None else room_channel(self.channel, room)
        with self._state:
            # Until the outcome is known: False (down, not started) ends the wait as True does.
            self._state.wait_for(lambda: self._ready(channel) is not None, timeout)
            return self._ready(channel) is True

    def _ready(self, channel: str) -> bool | None:
        """``True``: subscribed; ``False``: it will not be soon (Redis is
        down, nothing receives), do not wait; ``None``: not yet."""
        if channel not in self._wanted:
            return False
        worker = self._worker_of(channel)
        if worker is None and self._deliver is None:
            return False  # not started: nothing to wait for
        if worker is not None and channel in worker.confirmed and channel not in worker.stale:
            return True
        if worker is not None and worker.attempted and not worker.connected:
            return False  # down: the caller goes on without waiting
        return None  # not yet

    @property
    def connected(self) -> bool:
        with self._state:
            return bool(self._workers) and all(worker.connected for worker in self._workers.values())

    @property
    def subscribing(self) -> bool:
        """Whether this process receives messages (it serves sockets)."""
        return bool(self._workers)

    @property
    def subscriptions(self) -> int:
        with self._state:
            return sum(len(worker.confirmed) for worker in self._workers.values())

    def _dispatch(self, data: str | bytes) -> None:
        try:
            room, message, position, published_at = decode_published(data)
        except ValueError as e:
            logger.warning("%r: ignored a message: %s", self, e)
            return
        observe = self.lag_observer
        if observe is not None and published_at is not None:
            observe(max(0.0, time.time() - published_at))
        deliver = self._deliver
        if deliver is None:  # pragma: no cover - set before a subscriber starts
            return
        try:
            if position is None:
                deliver(room, message)
            else:
                deliver(room, message, position)
        except Exception:
            logger.exception("%r: delivering a message failed", self)

    def presence_store(self) -> PresenceStore:
        return RedisPresence(self._publishing_client, self.channel, self.presence_ttl, self.url)

    def close(self) -> None:
        """Stop the subscribers (waiting up to 5 seconds for each) and close
        the publisher's connections. :meth:`start` starts it again."""
        with self._state:
            self._deliver = None  # start() may start it again
            workers = list(self._workers.values())
            self._workers.clear()
        self._stop(workers)
        with self._lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    @staticmethod
    def _stop(workers: t.Iterable[_Subscriber]) -> None:
        workers = list(workers)
        for worker in workers:
            worker.stopping.set()
        for worker in workers:
            if worker.thread is not threading.current_thread() and worker.thread.ident is not None:
                worker.thread.join(5)
