"""The Redis Cluster fixture itself (tests/redisserver.py), with redis-py
only: the cluster is whole, sharded pub/sub goes round through
``redis.cluster.RedisCluster``, ``shard_numsub`` counts a subscriber, and a
master's failover is waited out until publishing to its slots works again."""

from __future__ import annotations

import time
import typing as t

import pytest

from tests.conftest import TIMEOUT
from tests.redisserver import SLOTS
from tests.redisserver import RedisClusterServer
from tests.redisserver import RedisServer
from tests.redisserver import command
from tests.redisserver import key_slot
from tests.redisserver import raw_info

pytestmark = pytest.mark.slow


def sharded_message(pubsub: t.Any, timeout: float = TIMEOUT) -> dict[str, t.Any] | None:
    """The next ``smessage`` of a sharded ``ClusterPubSub``, or ``None`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = pubsub.get_sharded_message(timeout=0.2)
        if item is not None and item["type"] == "smessage":
            return t.cast("dict[str, t.Any]", item)
    return None


def channel_of(cluster: RedisClusterServer, master: int, prefix: str = "room") -> str:
    """A channel name whose slot the master on ``master`` owns."""
    for number in range(10_000):
        channel = f"{prefix}:{number}"
        if cluster.master_for_channel(channel) == master:
            return channel
    raise AssertionError(f"no channel of {master} in 10,000 names")


def test_cluster_is_healthy(redis_cluster: RedisClusterServer) -> None:
    assert redis_cluster.url == f"redis+cluster://127.0.0.1:{redis_cluster.nodes[0]}/"
    assert len(redis_cluster.nodes) == 6 and len(set(redis_cluster.nodes)) == 6
    masters = redis_cluster.master_ports()
    assert len(masters) == 3
    owned = 0
    for port in redis_cluster.nodes:
        info = raw_info(port, "CLUSTER", "INFO")
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_assigned"] == info["cluster_slots_ok"] == str(SLOTS)
        assert info["cluster_known_nodes"] == "6"
        replication = raw_info(port, "INFO", "replication")
        if port in masters:
            assert replication["role"] == "master" and replication["connected_slaves"] == "1"
            assert len(redis_cluster.replica_ports(port)) == 1
        else:
            assert replication["role"] == "slave" and replication["master_link_status"] == "up"
    for node in redis_cluster.cluster_nodes():
        owned += sum(last - first + 1 for first, last in node.slots)
    assert owned == SLOTS
    assert redis_cluster.problems() == []


def test_keyslot_and_owner(redis_cluster: RedisClusterServer) -> None:
    for name in ("flask-sockets:room:a", "flask-sockets:room:b", "x{tag}y", "{}", "flask-sockets:broadcast"):
        slot = int(command(redis_cluster.nodes[0], "CLUSTER", "KEYSLOT", name))
        assert redis_cluster.keyslot(name) == key_slot(name) == slot
    channels = [f"room:{n}" for n in range(60)]
    owners = {redis_cluster.master_for_channel(c) for c in channels}
    # Sixty names land on all three masters, and the owner is the one Redis itself sends us to.
    assert owners == set(redis_cluster.master_ports())
    with redis_cluster.client() as client:
        for channel in channels[:10]:
            assert client.get_node_from_key(channel).port == redis_cluster.master_for_channel(channel)


def test_sharded_round_trip_and_shard_numsub(redis_cluster: RedisClusterServer) -> None:
    channel = "fixture:round-trip"
    with redis_cluster.client() as client:
        assert redis_cluster.shard_numsub(channel) == 0
        pubsub = client.pubsub()
        try:
            pubsub.ssubscribe(channel)
            confirmed = pubsub.get_sharded_message(timeout=TIMEOUT)
            assert confirmed is not None and confirmed["type"] == "ssubscribe"
            assert redis_cluster.shard_numsub(channel) == 1
            # Only the owning shard knows the subscriber.
            others = [p for p in redis_cluster.master_ports() if p != redis_cluster.master_for_channel(channel)]
            assert [redis_cluster.shard_numsub(channel, port=p) for p in others] == [0, 0]
            assert client.spublish(channel, "hello") == 1
            message = sharded_message(pubsub)
            assert message is not None and message["data"] == b"hello" and message["channel"] == channel.encode()
            pubsub.sunsubscribe(channel)
            deadline = time.monotonic() + TIMEOUT
            while redis_cluster.shard_numsub(channel) and time.monotonic() < deadline:
                pubsub.get_sharded_message(timeout=0.05)
            assert redis_cluster.shard_numsub(channel) == 0
        finally:
            pubsub.close()


def test_failover(redis_cluster: RedisClusterServer) -> None:
    old = redis_cluster.master_ports()[0]
    replicas = redis_cluster.replica_ports(old)
    channel = channel_of(redis_cluster, old)
    redis_cluster.stop_node(old, kill=True)
    new = redis_cluster.wait_for_failover(old, timeout=30)
    assert new in replicas and new != old
    assert redis_cluster.master_for_channel(channel) == new
    assert old in redis_cluster.stopped
    # A new client finds the new master and sharded pub/sub works on its slots again.
    with redis_cluster.client() as client:
        pubsub = client.pubsub()
        try:
            pubsub.ssubscribe(channel)
            confirmed = pubsub.get_sharded_message(timeout=TIMEOUT)
            assert confirmed is not None and confirmed["type"] == "ssubscribe"
            assert redis_cluster.shard_numsub(channel) == 1
            assert client.spublish(channel, "after") == 1
            message = sharded_message(pubsub)
            assert message is not None and message["data"] == b"after"
        finally:
            pubsub.close()
    # The old master comes back as the new one's replica.
    redis_cluster.start_node(old)
    assert redis_cluster.replica_ports(new) == [old]
    assert raw_info(old, "INFO", "replication")["role"] == "slave"
    assert redis_cluster.problems() == []


def test_numsub(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    try:
        assert redis_server.numsub("fixture:plain") == 0
        pubsub.subscribe("fixture:plain")
        assert pubsub.get_message(timeout=TIMEOUT) is not None
        assert redis_server.numsub("fixture:plain") == 1
    finally:
        pubsub.close()
        client.close()
