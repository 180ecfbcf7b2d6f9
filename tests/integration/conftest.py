"""Fixtures of the integration tests: a real Redis server, a real Redis Cluster."""

from tests.redisserver import _shared_redis_cluster as _shared_redis_cluster  # noqa: F401
from tests.redisserver import redis_cluster as redis_cluster  # noqa: F401
from tests.redisserver import redis_cluster_own as redis_cluster_own  # noqa: F401
from tests.redisserver import redis_server as redis_server  # noqa: F401
