"""Fixtures of the integration tests: a real Redis server."""

from tests.redisserver import redis_server as redis_server  # noqa: F401
