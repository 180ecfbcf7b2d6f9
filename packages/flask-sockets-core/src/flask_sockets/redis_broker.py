"""Fan-out through Redis pub/sub, with one channel per room: on one Redis
server (:class:`RedisBroker`) or on a Redis Cluster with sharded pub/sub
(:class:`RedisClusterBroker`).

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
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from .brokers import DEFAULT_CHANNEL
from .brokers import Broker
from .brokers import Deliver
from .brokers import MessageQueueUnavailable
from .brokers import decode_envelope
from .brokers import encode_message
from .brokers import redacted
from .brokers import require_redis
from .presence import PresenceStore
from .presence import RedisPresence

if t.TYPE_CHECKING:  # pragma: no cover
    import redis

    from .typing import Message

__all__ = ["POLL_INTERVAL", "RedisBroker", "RedisClusterBroker", "broadcast_channel", "room_channel"]

logger = logging.getLogger("flask_sockets.brokers")

#: Seconds a subscriber waits for a message before it looks for rooms to
#: subscribe or unsubscribe (and whether to stop): the longest a join waits
#: for its subscription, on top of the round trip to Redis.
POLL_INTERVAL = 0.05
#: Channels per SUBSCRIBE command when many rooms are joined at once.
_BATCH = 1000
#: The URL schemes of a Redis Cluster, and the scheme redis-py knows them by.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


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


def _checked_room(room: str) -> str:
    try:
        room.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"A room sent through Redis must be valid Unicode text: {room!r}") from None
    return room


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
                broker._state.notify_all()
            self.stopping.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, longest)

    def _sync(self, pubsub: t.Any, subscribed: set[str], wanted: set[str]) -> None:
        """Ask Redis for the channels in ``wanted`` and no others, in batches."""
        sharded = self.broker.sharded
        gone = subscribed - wanted
        new = wanted - subscribed
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
                self.connected = self.attempted = True
                if all(worker.connected for worker in broker._workers.values()):
                    broker.last_error = None
            else:
                self.confirmed.discard(channel)
            broker._state.notify_all()


def _host_port(node: str) -> tuple[str, int]:
    """``("host", port)`` of ``"host:port"`` or ``"[v6]:port"``."""
    host, _, port = node.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"A Redis Cluster node is host:port, not {node!r}") from None


def _text(channel: str | bytes) -> str:
    return channel.decode("utf-8") if isinstance(channel, bytes) else channel


class RedisBroker(Broker):
    """Fan-out through one Redis server's pub/sub (redis-py: ``pip install
    redis``, or the ``[redis]`` extra), one channel per room.

    Each message is published as JSON (see
    :func:`~flask_sockets.brokers.encode_message`) on the channel of its
    room, or on the broadcast channel. A process that serves sockets runs
    one subscriber (a thread, a greenlet under gevent), started with its
    first socket: it holds the channels of the rooms the process has
    members in, and the broadcast channel. Messages from one publisher
    arrive in the order they were published.

    Faults: :meth:`publish` raises
    :exc:`~flask_sockets.brokers.MessageQueueUnavailable` at once while
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
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Keyword arguments are defaults: options in the URL's query win.
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=5,
            socket_timeout=5,
            retry=Retry(NoBackoff(), retries),
            health_check_interval=10,
        )

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

    def publish(self, room: str | None, message: Message) -> None:
        channel = broadcast_channel(self.channel) if room is None else room_channel(self.channel, _checked_room(room))
        data = encode_message(room, message)
        try:
            self._send(self._publishing_client(), channel, data)
        except redis_errors() as e:
            target = "every socket" if room is None else f"room {room!r}"
            raise MessageQueueUnavailable(
                f"Could not publish to {target}: the message queue at {redacted(self.url)} is unavailable ({e})."
            ) from e

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
            self._want(room_channel(self.channel, _checked_room(room)))

    def unsubscribe(self, room: str) -> None:
        with self._state:
            channel = room_channel(self.channel, room)
            if channel in self._wanted:
                self._wanted.discard(channel)
                self._version += 1

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
        if worker is not None and channel in worker.confirmed:
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
            room, message, published_at = decode_envelope(data)
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
            deliver(room, message)
        except Exception:
            logger.exception("%r: delivering a message failed", self)

    def presence_store(self) -> PresenceStore:
        return RedisPresence(self._publishing_client, self.channel, self.presence_ttl, self._unavailable)

    def _unavailable(self, action: str, error: BaseException) -> MessageQueueUnavailable:
        return MessageQueueUnavailable(
            f"Could not {action}: the message queue at {redacted(self.url)} is unavailable ({error})."
        )

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


class RedisClusterBroker(RedisBroker):
    """Fan-out through a Redis Cluster (Redis 7 or newer) with sharded
    pub/sub: ``SOCKETS_MESSAGE_QUEUE = 'redis+cluster://host:port/'``
    (``rediss+cluster://`` for TLS), naming any node; the others are
    discovered.

    A message is published with SPUBLISH to the master that owns its room
    channel's slot, and goes only to the processes subscribed to that
    channel there; room channels spread over the cluster's slots. Each
    process keeps one subscriber per master that owns one of its channels,
    and follows the cluster's topology: when a master fails and its replica
    takes over, or a slot moves, the subscriptions move to the new owner
    and delivery resumes. :meth:`publish` raises
    :exc:`~flask_sockets.brokers.MessageQueueUnavailable` while the owner of
    the room's slot cannot be reached (during a failover, until a replica is
    promoted). Messages of one publisher to one room arrive in order; a
    broadcast and a room message may not.

    :param url: ``redis+cluster://[[user]:password@]host:port/`` with
        redis-py options in the query, as for :class:`RedisBroker`. It may
        name several nodes, ``redis+cluster://h1:7000,h2:7000/``, so that a
        process that starts while one is down still finds the cluster.
    :param refresh_interval: Seconds between checks of the cluster's
        topology while every subscriber is healthy (it is checked at once
        when one fails).

    Other parameters are those of :class:`RedisBroker`.
    """

    sharded = True

    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        *,
        reconnect_delay: tuple[float, float] = (0.1, 5.0),
        presence_ttl: float = 15.0,
        refresh_interval: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in CLUSTER_SCHEMES:
            raise ValueError(f"A Redis Cluster URL starts with redis+cluster:// or rediss+cluster://, not {url!r}")
        super().__init__(url, channel, reconnect_delay=reconnect_delay, presence_ttl=presence_ttl)
        credentials, _, hosts = parts.netloc.rpartition("@")
        #: The nodes the URL names (``host:port``), to find the cluster by.
        self.startup_nodes = [node for node in hosts.split(",") if node]
        if not self.startup_nodes:
            raise ValueError(f"A Redis Cluster URL names at least one node: {redacted(url)!r}")
        # The first node in redis-py's own scheme, with the URL's credentials and options.
        self._url_parts = parts._replace(scheme=CLUSTER_SCHEMES[parts.scheme], path="")
        self._credentials = credentials
        self.refresh_interval = refresh_interval
        # The master ("host:port") that owns each wanted channel, from the last topology read.
        self._owner: dict[str, str] = {}
        self._topology: t.Any = None  # a redis.cluster.RedisCluster once reached
        self._refresh = threading.Event()
        self._manager: threading.Thread | None = None
        self._manager_stopping = threading.Event()

    def _client(self, retries: int) -> t.Any:
        from redis.cluster import ClusterNode
        from redis.cluster import RedisCluster

        # The nodes of the URL, and those a subscriber of this process found:
        # a process still finds the cluster when the node it names is down.
        names = list(self.startup_nodes)
        topology = self._topology
        if topology is not None:
            names += [node.name for node in topology.get_nodes() if node.name not in names]
        node: t.Any = ClusterNode  # untyped in redis-py
        others = [node(*_host_port(name)) for name in names[1:]]
        return RedisCluster(
            url=self._node_url(names[0]), startup_nodes=others, socket_connect_timeout=5, socket_timeout=5
        )

    def _node_url(self, node: str) -> str:
        """A redis-py URL of one node (``host:port``), with the URL's credentials and options."""
        host, port = _host_port(node)
        netloc = (self._credentials + "@" if self._credentials else "") + (f"[{host}]" if ":" in host else host)
        return urlunsplit(self._url_parts._replace(netloc=f"{netloc}:{port}"))

    def _send(self, client: t.Any, channel: str, data: str) -> None:
        client.spublish(channel, data)

    def _batches(self, channels: set[str]) -> t.Iterator[list[str]]:
        # SSUBSCRIBE takes channels of one slot per command.
        from redis.crc import key_slot

        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode("utf-8")), []).append(channel)
        for batch in by_slot.values():
            yield from super()._batches(set(batch))

    # -- topology ---------------------------------------------------------------

    def _start_subscribers(self) -> None:
        self._manager_stopping = threading.Event()
        self._manager = threading.Thread(
            target=self._follow_topology, name=f"flask-sockets cluster topology {self.channel}", daemon=True
        )
        self._manager.start()

    def _want(self, channel: str) -> None:
        super()._want(channel)
        topology = self._topology
        if channel not in self._owner and topology is not None:
            try:
                node = topology.get_node_from_key(channel).name
            except Exception:  # the slot map is being refreshed: the next refresh assigns it
                self._refresh.set()
                return
            self._owner[channel] = node
            self._ensure_worker(node)

    def unsubscribe(self, room: str) -> None:
        super().unsubscribe(room)
        with self._state:
            self._owner.pop(room_channel(self.channel, room), None)

    def _ensure_worker(self, node: str) -> None:
        """Start a subscriber for ``node`` if there is none (``_state`` held)."""
        if node not in self._workers and self._deliver is not None:
            url = self._node_url(node)
            self._spawn(node, lambda: self._client_for(url, retries=0))

    def _wanted_of(self, node: str) -> tuple[int, set[str]]:
        with self._state:
            return self._version, {channel for channel, owner in self._owner.items() if owner == node}

    def _worker_of(self, channel: str) -> _Subscriber | None:
        node = self._owner.get(channel)
        return self._workers.get(node) if node is not None else None

    def _ready(self, channel: str) -> bool | None:
        if channel in self._wanted and channel not in self._owner:
            if self._topology is None and self.last_error is not None:
                return False  # the cluster cannot be reached
            return None  # assigned at the next topology read
        return super()._ready(channel)

    def _topology_suspect(self, node: str) -> None:
        self._refresh.set()

    def _follow_topology(self) -> None:
        """Read the cluster's slot map at start, when a subscriber fails or
        loses a subscription, and every ``refresh_interval`` seconds; move
        each channel to the master that owns its slot."""
        delay = self.reconnect_delay[0]
        stopping = self._manager_stopping
        while not stopping.is_set():
            try:
                if self._topology is None:
                    self._topology = self._client(retries=0)
                else:
                    self._topology.nodes_manager.initialize()
                self._assign(self._topology)
                delay = self.reconnect_delay[0]
            except redis_errors() as e:
                with self._state:
                    self.last_error = e
                    self._state.notify_all()
                logger.debug("%r: cannot read the cluster's topology (%s)", self, e)
                stopping.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.reconnect_delay[1])
                continue
            with self._state:
                healthy = all(worker.connected or not worker.attempted for worker in self._workers.values())
            # While a subscriber is failing, look again soon: its slots are
            # being failed over to a replica.
            self._refresh.wait(self.refresh_interval if healthy else max(self.reconnect_delay[0], 0.25))
            self._refresh.clear()

    def _assign(self, topology: t.Any) -> None:
        with self._state:
            wanted = list(self._wanted)
        owners = {}
        for channel in wanted:
            owners[channel] = topology.get_node_from_key(channel).name
        masters = {node.name for node in topology.get_primaries()}
        with self._state:
            # Channels wanted meanwhile were assigned by _want with this map.
            owners = {channel: owners.get(channel, self._owner.get(channel, "")) for channel in self._wanted}
            moved = owners != self._owner
            self._owner = {channel: node for channel, node in owners.items() if node}
            gone = [worker for node, worker in self._workers.items() if node not in masters]
            for worker in gone:
                del self._workers[worker.node]
            for node in set(self._owner.values()):
                self._ensure_worker(node)
            if moved or gone:
                self._version += 1
            self._state.notify_all()
        if gone:
            logger.info("%r: following the cluster to new masters (left %s)", self, ", ".join(w.node for w in gone))
            self._stop(gone)

    def close(self) -> None:
        self._manager_stopping.set()
        self._refresh.set()
        manager, self._manager = self._manager, None
        if manager is not None and manager is not threading.current_thread():
            manager.join(5)
        super().close()
        topology, self._topology = self._topology, None
        if topology is not None:
            topology.close()
