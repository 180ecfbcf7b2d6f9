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
round trip, without its start and stop. The client pauses after each echo
(:data:`PAUSE`).

Before measuring, the packages' modules are compiled (``compileall``): the
first server to import a freshly edited module would otherwise count its
compilation. ``--repeat N`` runs the off/on pair N times (each run's figures
are printed: their spread is the noise of the method). ``--engine`` measures
the engine alone instead (:class:`~flask_sockets.connection.Connection`, no
server, no I/O: deterministic), what every socket runs per message."""

from __future__ import annotations

import argparse
import compileall
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from websockets.sync.client import connect

SERVERS = Path(__file__).parent / "servers"
SHORT, LONG = 500, 2500
#: Seconds the client waits after each echo before the next message: the
#: server (slowed down some 50 times by valgrind) is then always waiting for
#: it, as a real server waits for its clients, and runs the same path every
#: round trip. Without it, whether the next message is already there when
#: the server looks depends on the machine's load, which moved the count by
#: about 5% from run to run.
PAUSE = 0.005
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
                    time.sleep(PAUSE)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=600)
        return summary(out)


#: ``--engine``: the engine alone, no server, no I/O (what every socket runs per
#: message): a 32-byte masked text frame parsed, its echo queued and taken,
#: ``argv[1]`` times; with its counters on if ``argv[3]`` is ``1`` (as
#: metrics turn them on).
ENGINE_SCRIPT = """
import sys
from flask_sockets.connection import Connection
frame = bytes.fromhex(sys.argv[2])
conn = Connection()
conn.accept()
if sys.argv[3] == "1":
    conn.counting = True
for _ in range(int(sys.argv[1])):
    conn.buffer += frame
    conn.send_text(conn.next_event().encode())
    conn.data_to_send()
"""
ENGINE_SHORT, ENGINE_LONG = 10_000, 60_000


def callgrind_total(command: list[str], **options: t.Any) -> int:
    """The instructions ``command`` ran under callgrind (it runs to its end)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=1200,
            **options,
        )
        return summary(out)


def summary(out: Path) -> int:
    data = out.read_bytes()
    found = re.search(rb"^summary: (\d+)", data, re.MULTILINE) or re.search(rb"^totals: (\d+)", data, re.MULTILINE)
    assert found is not None, "no callgrind summary"
    return int(found.group(1))


def engine() -> None:
    from websockets.frames import Frame
    from websockets.frames import Opcode

    from flask_sockets.connection import Connection

    frame = Frame(Opcode.TEXT, MESSAGE.encode()).serialize(mask=True).hex()
    for counting in ("0", "1") if hasattr(Connection(), "counting") else ("0",):
        short, long = (
            # (a fixed hash seed: the start-up of both runs is the same to the instruction)
            callgrind_total(
                [sys.executable, "-c", ENGINE_SCRIPT, str(n), frame, counting], env=dict(os.environ, PYTHONHASHSEED="0")
            )
            for n in (ENGINE_SHORT, ENGINE_LONG)
        )
        per_message = (long - short) / (ENGINE_LONG - ENGINE_SHORT)
        print(
            f"engine alone, counters {'on' if counting == '1' else 'off'}: {per_message:,.0f} instructions"
            " per 32-byte message in and its echo out",
            flush=True,
        )


def compile_packages() -> None:
    """Compile our packages' modules, so that no measured server compiles them."""
    import flask_sockets
    import flask_sockets_gevent

    for package in (flask_sockets, flask_sockets_gevent):
        compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="off/on pairs to run (default 1)")
    parser.add_argument("--engine", action="store_true", help="measure the engine alone (Connection), no server")
    args = parser.parse_args()
    compile_packages()
    if args.engine:
        engine()
        return
    for run in range(1, args.repeat + 1):
        per_round_trip = {}
        for metrics in (False, True):
            short, long = instructions(metrics, SHORT), instructions(metrics, LONG)
            per_round_trip[metrics] = (long - short) / (LONG - SHORT)
            print(f"metrics {'on ' if metrics else 'off'}: {short:,} instructions for {SHORT} round trips,"
                  f" {long:,} for {LONG}: {per_round_trip[metrics]:,.0f} per round trip", flush=True)
        off, on = per_round_trip[False], per_round_trip[True]
        print(f"run {run}: 32-byte echo, server instructions per round trip: off {off:,.0f}, on {on:,.0f}:"
              f" metrics add {on - off:,.0f} ({(on / off - 1) * 100:+.1f}%)", flush=True)


if __name__ == "__main__":
    main()
