"""Fan-out through a Redis Cluster with sharded pub/sub
(:class:`RedisClusterBroker`): the pub/sub broker of
:mod:`flask_sockets.fanout.redis_pubsub`, with a subscriber per master and
the cluster's topology followed."""

from __future__ import annotations

import logging
import random
import threading
import typing as t
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from .broker import DEFAULT_CHANNEL
from .broker import redacted
from .redis_common import redis_errors
from .redis_common import room_channel
from .redis_pubsub import RedisBroker
from .redis_pubsub import _Subscriber

__all__ = ["CLUSTER_SCHEMES", "RedisClusterBroker"]

logger = logging.getLogger("flask_sockets.brokers")

#: The URL schemes of a Redis Cluster, and the scheme redis-py knows them by.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _host_port(node: str) -> tuple[str, int]:
    """``("host", port)`` of ``"host:port"`` or ``"[v6]:port"``."""
    host, _, port = node.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"A Redis Cluster node is host:port, not {node!r}") from None


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
    :exc:`~flask_sockets.MessageQueueUnavailable` while the owner of
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
