"""Real Redis for the tests: Debian's ``redis-server`` on free loopback ports.

- ``redis_server``: one server, started for the test and stopped after it.
  It can be stopped and started again on the same port to test outages.
- ``redis_cluster``: a Redis Cluster of three masters with one replica each
  (six ``redis-server --cluster-enabled yes``, joined by ``redis-cli
  --cluster create``), shared by the tests of a session because creating
  it takes seconds. A test may stop nodes (a failover); the fixture then
  starts them again after the test and waits until the cluster is whole
  again (the masters may be other ports than before).
- ``redis_cluster_own``: a cluster of its own for one test, stopped after
  it, for tests that would leave the shared one in a state it cannot heal
  from.

bench/scaling.py starts its cluster with :class:`RedisClusterServer` too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
import typing as t
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.conftest import free_port
from tests.conftest import wait_for_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
#: Redis Cluster's hash slots.
SLOTS = 16384


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``TIMEOUT``."""
    process.terminate()
    try:
        process.wait(TIMEOUT)
    except subprocess.TimeoutExpired:  # pragma: no cover
        process.kill()
        process.wait(TIMEOUT)


class RedisServer:
    """One ``redis-server`` process at a time on one port; no persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.log_path = directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.directory), "--logfile", str(self.log_path), "--daemonize", "no"]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, proc=t.cast("subprocess.Popen[str]", self.process))

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        terminate(process)

    def numsub(self, channel: str) -> int:
        """How many connections are subscribed to ``channel`` (``PUBSUB NUMSUB``)."""
        reply = command(self.port, "PUBSUB", "NUMSUB", channel)
        assert isinstance(reply, list) and len(reply) == 2, reply
        return int(reply[1])


def command(port: int, *args: str | int, timeout: float = 5.0) -> t.Any:
    """One command to the Redis on ``127.0.0.1:port`` over a fresh
    connection (redis-py, no retries), its reply decoded as text."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        port=port, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def info_fields(text: str) -> dict[str, str]:
    """The ``name:value`` lines of ``INFO`` or ``CLUSTER INFO`` text."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def raw_info(port: int, *args: str) -> dict[str, str]:
    """``CLUSTER INFO`` (``raw_info(port, "CLUSTER", "INFO")``) or ``INFO
    section`` as a dict of strings."""
    reply = command(port, *args)
    if isinstance(reply, dict):  # redis-py parses INFO
        return {str(k): str(v) for k, v in reply.items()}
    return info_fields(str(reply))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a node's process before exec: SIGKILL when the process that
    started it dies (PR_SET_PDEATHSIG), so that a test run killed by force
    leaves no cluster behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class ClusterNode(t.NamedTuple):
    """One line of ``CLUSTER NODES``."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    link: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool({"fail", "fail?", "noaddr"} & self.flags) or self.link != "connected"


def parse_nodes(text: str) -> list[ClusterNode]:
    """``CLUSTER NODES`` as a list (slot ranges only; migrating slots are left out)."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@")[0].split(",")[0]
        port = int(address.rpartition(":")[2] or 0)
        slots = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        flags = frozenset(fields[2].split(","))
        master = None if fields[3] == "-" else fields[3]
        nodes.append(ClusterNode(fields[0], port, flags, master, fields[7], tuple(slots)))
    return nodes


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (CRC16/XMODEM of it, or of its ``{hash
    tag}``, mod 16384), as Redis computes it; ``CLUSTER KEYSLOT`` checks it
    in the tests."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % SLOTS


def _down() -> tuple[type[BaseException], ...]:
    try:
        import redis
    except ImportError:  # pragma: no cover - redis-py is a test dependency
        return (OSError,)
    return (redis.RedisError, OSError)


#: What a node that is not up (yet) raises.
DOWN = _down()


class ClusterError(RuntimeError):
    """The cluster did not reach the state asked for in time."""


class RedisClusterServer:
    """A Redis Cluster on 127.0.0.1: ``masters`` masters with ``replicas``
    replicas each, one ``redis-server`` process per node, no persistence
    (each node's ``nodes-<port>.conf`` is kept in ``directory`` so that a
    stopped node can rejoin). Every wait is bounded.

    :param node_timeout: ``cluster-node-timeout`` in milliseconds: how soon
        a master that stopped answering is failed over. Small for the tests;
        the benchmark takes a larger one, so that a busy machine does not
        cause failovers.
    """

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1, node_timeout: int = 1500) -> None:
        self.directory = directory
        self.masters = masters
        self.replicas = replicas
        self.node_timeout = node_timeout
        #: The nodes' client ports, in the order given to ``--cluster create``
        #: (the first ``masters`` start as masters).
        self.nodes: list[int] = []
        #: Each node's cluster bus port (``--cluster-port``).
        self.bus_ports: dict[int, int] = {}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        seen: set[int] = set()
        while len(self.nodes) < masters * (1 + replicas):
            port, bus = free_port(), free_port()
            if port == bus or {port, bus} & seen:
                continue
            seen |= {port, bus}
            self.nodes.append(port)
            self.bus_ports[port] = bus

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL of the first node (any node would do)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0]}/"

    @property
    def running(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    @property
    def stopped(self) -> list[int]:
        return [port for port in self.nodes if port not in self.running]

    def log_path(self, port: int) -> Path:
        return self.directory / f"redis-{port}.log"

    # -- processes ------------------------------------------------------------

    def start_process(self, port: int) -> None:
        assert port in self.nodes, f"{port} is not a node of this cluster"
        process = self.processes.get(port)
        assert process is None or process.poll() is not None, f"node {port} is already running"
        argv = [
            REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(self.node_timeout), "--cluster-port", str(self.bus_ports[port]),
            # A replica may always take over, however long its master has been away.
            "--cluster-replica-validity-factor", "0",
            "--dir", str(self.directory), "--logfile", str(self.log_path(port)), "--daemonize", "no",
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent
        )
        wait_for_port(port, proc=t.cast("subprocess.Popen[str]", self.processes[port]))

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, create the cluster and wait until it is healthy."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for port in self.nodes:
            self.start_process(port)
        create = [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.nodes)]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        (self.directory / "cluster-create.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise ClusterError(f"redis-cli --cluster create failed ({done.returncode}): {done.stdout[-1500:]}")
        self.wait_healthy(timeout)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL): safe to call twice."""
        for port in list(self.processes):
            self.stop_node(port)

    def stop_node(self, port: int, kill: bool = False) -> None:
        """Stop one node: SIGTERM (it shuts down cleanly), or SIGKILL with
        ``kill`` (it vanishes mid-flight, as a crashed host would)."""
        process = self.processes.get(port)
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
            process.wait(TIMEOUT)
        else:
            terminate(process)

    def start_node(self, port: int, timeout: float = 30.0) -> None:
        """Start a stopped node again; it rejoins with its old identity
        (from its nodes file) and, if it was failed over meanwhile, as a
        replica of the new master. Waits until it is a replica in sync, or
        a master again, and the cluster is healthy."""
        self.start_process(port)
        self.wait_healthy(timeout)

    # -- what the cluster says ------------------------------------------------

    def cluster_nodes(self, port: int | None = None) -> list[ClusterNode]:
        """``CLUSTER NODES`` as seen by ``port`` (by default the first running node)."""
        if port is None:
            port = self.running[0]
        return parse_nodes(command(port, "CLUSTER", "NODES"))

    def master_ports(self) -> list[int]:
        """The ports of the masters that hold slots now."""
        return sorted(n.port for n in self.cluster_nodes() if n.is_master and n.slots and not n.failed)

    def replica_ports(self, master_port: int) -> list[int]:
        """The ports of the replicas of the master on ``master_port``, as the cluster knows them."""
        nodes = self.cluster_nodes()
        master = next(n for n in nodes if n.port == master_port)
        return sorted(n.port for n in nodes if n.master_id == master.id)

    def keyslot(self, channel: str) -> int:
        """``CLUSTER KEYSLOT channel``: the slot a sharded channel (or a key) lives in."""
        return int(command(self.running[0], "CLUSTER", "KEYSLOT", channel))

    def master_for_channel(self, channel: str) -> int:
        """The port of the master that owns ``channel``'s slot now."""
        slot = self.keyslot(channel)
        for node in self.cluster_nodes():
            if node.is_master and not node.failed and any(a <= slot <= b for a, b in node.slots):
                return node.port
        raise ClusterError(f"no live master owns slot {slot} (of {channel!r})")

    def shard_numsub(self, channel: str, port: int | None = None) -> int:
        """How many connections are subscribed to the sharded channel
        ``channel`` (``PUBSUB SHARDNUMSUB``) on ``port``, by default on the
        master that owns its slot."""
        reply = command(self.master_for_channel(channel) if port is None else port, "PUBSUB", "SHARDNUMSUB", channel)
        assert isinstance(reply, list) and len(reply) == 2, reply
        return int(reply[1])

    def numsub(self, channel: str) -> dict[int, int]:
        """``PUBSUB NUMSUB channel`` (classic pub/sub) on each running node."""
        return {port: int(command(port, "PUBSUB", "NUMSUB", channel)[1]) for port in self.running}

    def client(self, **options: t.Any) -> t.Any:
        """A ``redis.cluster.RedisCluster`` client of this cluster (the caller closes it)."""
        from redis.cluster import RedisCluster

        options.setdefault("socket_timeout", 5)
        options.setdefault("socket_connect_timeout", 5)
        return RedisCluster(host="127.0.0.1", port=self.running[0], **options)

    def problems(self) -> list[str]:
        """What keeps the cluster from being healthy now (empty: healthy):
        every running node says ``cluster_state:ok`` with all slots assigned
        and ok, knows the others as they are (no failed running node), the
        running nodes count ``masters`` masters holding slots, and every
        running replica is in sync with its master."""
        found = []
        running = self.running
        for port in running:
            try:
                info = raw_info(port, "CLUSTER", "INFO")
                nodes = parse_nodes(command(port, "CLUSTER", "NODES"))
                replication = raw_info(port, "INFO", "replication")
            except DOWN as e:  # not up yet
                found.append(f"{port}: {e!r}")
                continue
            if info.get("cluster_state") != "ok":
                found.append(f"{port}: cluster_state {info.get('cluster_state')}")
            for field in ("cluster_slots_assigned", "cluster_slots_ok"):
                if info.get(field) != str(SLOTS):
                    found.append(f"{port}: {field} {info.get(field)}")
            alive = [n for n in nodes if n.port in running]
            if len(alive) != len(running) or any(n.failed for n in alive):
                found.append(f"{port}: sees {[(n.port, sorted(n.flags), n.link) for n in nodes]}")
            masters = [n for n in alive if n.is_master and n.slots]
            if len(masters) != self.masters:
                found.append(f"{port}: {len(masters)} running masters hold slots")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                found.append(f"{port}: replica, master link {replication.get('master_link_status')}")
        return found

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until :meth:`problems` finds none, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.problems()
            if not found:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the cluster is not healthy after {timeout} s: {found[:6]}")
            time.sleep(0.1)

    def wait_for_failover(self, old_master_port: int, timeout: float = 30.0) -> int:
        """After the master on ``old_master_port`` stopped: wait until one
        of its replicas is master of its slots, and every surviving node
        says ``cluster_state:ok``. Returns the new master's port."""
        deadline = time.monotonic() + timeout
        old_replicas: list[int] = []
        while not old_replicas and time.monotonic() < deadline:
            with contextlib.suppress(*DOWN, StopIteration):
                nodes = self.cluster_nodes()
                old = next(n for n in nodes if n.port == old_master_port)
                old_replicas = [n.port for n in nodes if n.master_id == old.id]
                old_replicas += [n.port for n in nodes if n.is_master and n.port != old_master_port and not n.slots]
            if not old_replicas:
                time.sleep(0.05)
        found: list[str] = ["no replica of it known"]
        while time.monotonic() < deadline:
            found = []
            for port in self.running:
                try:
                    info = raw_info(port, "CLUSTER", "INFO")
                    nodes = {n.port: n for n in parse_nodes(command(port, "CLUSTER", "NODES"))}
                except DOWN as e:
                    found.append(f"{port}: {e!r}")
                    continue
                if info.get("cluster_state") != "ok":
                    found.append(f"{port}: cluster_state {info.get('cluster_state')}")
                promoted = [p for p in old_replicas if p in nodes and nodes[p].is_master and nodes[p].slots]
                if not promoted:
                    found.append(f"{port}: no replica of {old_master_port} is master yet")
            if not found:
                return promoted[0]
            time.sleep(0.05)
        raise ClusterError(f"no failover of {old_master_port} within {timeout} s: {found[:6]}")


def require(binary: str, package: str) -> None:
    """Skip the test when ``binary`` is not installed, except in CI (``CI``
    set), where ``.ci/run`` installs it: there its absence is a failure."""
    if not os.access(binary, os.X_OK):
        message = f"{Path(binary).name} is not installed (apt-get install {package}; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def redis_server(tmp_path: Path) -> t.Iterator[RedisServer]:
    """A running ``redis-server`` on a free loopback port, stopped after the test.

    Skipped when redis-server is not installed, except in CI (``CI`` set),
    where ``.ci/run`` installs it: there its absence is a failure.
    """
    require(REDIS_SERVER, "redis-server")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _started_cluster(directory: Path) -> RedisClusterServer:
    require(REDIS_SERVER, "redis-server")
    require(REDIS_CLI, "redis-tools")
    cluster = RedisClusterServer(directory)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def _shared_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[RedisClusterServer]:
    cluster = _started_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(_shared_redis_cluster: RedisClusterServer) -> t.Iterator[RedisClusterServer]:
    """A healthy Redis Cluster (3 masters, 1 replica each) on free loopback
    ports, shared by the session's tests (created once: that takes seconds).

    A test may stop nodes (``stop_node``): after it, they are started
    again and the fixture waits until the cluster is healthy, so the next
    test finds it whole (though maybe with other masters). Nodes it stops
    are not restarted if the cluster cannot heal; then the next test
    fails in this fixture. Skipped (failed in CI) like ``redis_server``,
    and also when redis-cli (Debian's redis-tools) is missing.
    """
    cluster = _shared_redis_cluster
    if cluster.stopped or cluster.problems():
        for port in cluster.stopped:
            cluster.start_process(port)
        cluster.wait_healthy()
    yield cluster
    for port in cluster.stopped:
        cluster.start_process(port)
    cluster.wait_healthy()


@pytest.fixture
def redis_cluster_own(tmp_path: Path) -> t.Iterator[RedisClusterServer]:
    """A Redis Cluster of this test's own (3 masters, 1 replica each),
    stopped after it: for a test that leaves a cluster broken."""
    cluster = _started_cluster(tmp_path / "redis-cluster")
    try:
        yield cluster
    finally:
        cluster.stop()
