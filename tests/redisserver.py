"""A real Redis server for the tests: Debian's ``redis-server`` on a free
loopback port, started by the ``redis_server`` fixture and stopped after
the test. It can be stopped and started again on the same port to test
outages."""

from __future__ import annotations

import os
import shutil
import subprocess
import typing as t
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.conftest import free_port
from tests.conftest import wait_for_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


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
        process.terminate()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait(TIMEOUT)


@pytest.fixture
def redis_server(tmp_path: Path) -> t.Iterator[RedisServer]:
    """A running ``redis-server`` on a free loopback port, stopped after the test.

    Skipped when redis-server is not installed, except in CI (``CI`` set),
    where ``.ci/run`` installs it: there its absence is a failure.
    """
    if not os.access(REDIS_SERVER, os.X_OK):
        message = "redis-server is not installed (apt-get install redis-server; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
