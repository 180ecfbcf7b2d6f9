"""The cost of flask_sockets.metrics per 32-byte echo, in CPU instructions:
``hatch run bench:metrics-instructions`` (a few minutes).

Wall-clock figures on a shared machine measure the other jobs as much as
the server; instruction counts do not. The bench server
(``bench/servers/ours_gevent.py``, the ``ours-gevent`` of ``bench:all``)
runs under ``valgrind --tool=callgrind``, metrics off and on
(``BENCH_METRICS=1``: ``ours-gevent-metrics``); one client outside valgrind
echoes 32-byte text messages one at a time (each a real round trip through
the real server: read, parse, the handler's receive and send, write). Each
server is run twice, for ``SHORT`` and ``LONG`` round trips: the difference
of the two totals over ``LONG - SHORT`` is the server's instructions per
round trip, without its start and stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

SERVERS = Path(__file__).parent / "servers"
SHORT, LONG = 500, 2500
MESSAGE = "x" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def instructions(metrics: bool, round_trips: int) -> int:
    """The instructions the server ran, from start to stop, serving ``round_trips`` echoes."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = dict(os.environ, BENCH_METRICS="1" if metrics else "0")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        server = subprocess.Popen(
            [*command, sys.executable, "ours_gevent.py", str(port)],
            cwd=SERVERS,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 600
            while True:  # (bounded: 10 minutes for valgrind to start Python, Flask and gevent)
                try:
                    ws = connect(f"ws://127.0.0.1:{port}/echo", open_timeout=60)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.5)
            with ws:
                for _ in range(round_trips):
                    ws.send(MESSAGE)
                    assert ws.recv(timeout=60) == MESSAGE
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=600)
        summary = re.search(rb"^summary: (\d+)", out.read_bytes(), re.MULTILINE) or re.search(
            rb"^totals: (\d+)", out.read_bytes(), re.MULTILINE
        )
        assert summary is not None, "no callgrind summary"
        return int(summary.group(1))


def main() -> None:
    per_round_trip = {}
    for metrics in (False, True):
        short, long = instructions(metrics, SHORT), instructions(metrics, LONG)
        per_round_trip[metrics] = (long - short) / (LONG - SHORT)
        print(f"metrics {'on ' if metrics else 'off'}: {short:,} instructions for {SHORT} round trips,"
              f" {long:,} for {LONG}: {per_round_trip[metrics]:,.0f} per round trip", flush=True)
    off, on = per_round_trip[False], per_round_trip[True]
    print(f"32-byte echo, server instructions per round trip: off {off:,.0f}, on {on:,.0f}:"
          f" metrics add {on - off:,.0f} ({(on / off - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
