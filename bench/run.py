"""Run the WebSocket benchmark suite: hatch run bench:all [options]

Starts each server in turn on 127.0.0.1, pinned to one CPU with taskset,
drives it with bench/loadgen.py pinned to the other CPU, prints a table,
writes the raw figures to bench/results/latest.json and the table to
bench/RESULTS.md. Each server gets a fresh process for each workload. Every
step has a deadline, and every process started here is stopped at the end
(or on Ctrl+C).

    hatch run bench:all                                # everything (~10 minutes)
    hatch run bench:all --servers ours-gevent,gevent-websocket --workloads small
    hatch run bench:all --profile ours-gevent          # py-spy the server too
    hatch run bench:all --workloads fanout             # only the fan-out (rooms vs Flask-SocketIO)
    hatch run bench:idle10k                            # 10,000 idle connections, held 45 s
    hatch run bench:hostile                            # hostile clients (~9 minutes), not in bench:all
    hatch run bench:hostile --workloads fairness --tries 20
    hatch run bench:compression                        # permessage-deflate (~10 minutes), not in bench:all
    hatch run bench:compression --workloads compressed --servers ours-gevent,websockets
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import harness
import report
from harness import PY
from harness import RESULTS
from harness import ROOT
from hostile import SCENARIOS

LOADGEN = harness.BENCH / "loadgen.py"
HOSTILE = harness.BENCH / "hostile.py"
BASELINE = "gevent-websocket"
#: Echo workloads run against the echo servers, the fan-out workload against
#: the fan-out servers (rooms and Flask-SocketIO, each in-process and through Redis).
ECHO_WORKLOADS = ("small", "large", "handshake", "idle")
FANOUT_WORKLOADS = ("fanout",)
#: Hostile clients (bench/hostile.py) against servers held to the default
#: limits; each workload has scenarios, each run on a fresh server. Not part
#: of the default run (they take ~9 minutes): hatch run bench:hostile.
HOSTILE_WORKLOADS = tuple(SCENARIOS)
#: permessage-deflate (bench/deflate.py): a 4 KiB JSON echo, a 1 KiB JSON
#: fan-out and idle memory, each server in the cases of COMPRESSION_CASES.
#: Not part of the default run either: hatch run bench:compression.
COMPRESSION_WORKLOADS = ("compressed", "fanout-compressed", "idle-compressed")
#: The servers of a compression run unless --servers says otherwise.
COMPRESSION_SERVERS = (
    "ours-gevent", "ours-gunicorn", "websockets", "uvicorn", "uvicorn-legacy", "ours-rooms", "flask-socketio",
)  # fmt: skip
WORKLOADS = ECHO_WORKLOADS + FANOUT_WORKLOADS + HOSTILE_WORKLOADS + COMPRESSION_WORKLOADS
DEFAULT_WORKLOADS = ECHO_WORKLOADS + FANOUT_WORKLOADS
#: The servers of a hostile run unless --servers says otherwise (raw
#: gevent-websocket and uvicorn take part too when named).
HOSTILE_SERVERS = ("ours-gevent", "ours-gunicorn", "websockets")
#: The environment variable that gives fan-out servers started with --redis
#: the URL of the run's redis-server.
REDIS_URL_VARIABLE = "BENCH_REDIS_URL"


@dataclasses.dataclass
class Server:
    name: str
    label: str
    command: t.Callable[[int], list[str]]
    notes: str
    #: Prepended to the server's PYTHONPATH (--variant: our packages from another tree).
    pythonpath: str = ""
    #: The workloads this server takes part in.
    workloads: tuple[str, ...] = ECHO_WORKLOADS
    #: The WebSocket URL path the clients connect to.
    path: str = "/echo"
    #: How the fan-out clients talk to it: "plain" WebSocket messages or "socketio".
    protocol: str = "plain"
    #: Needs the run's redis-server (its URL in $BENCH_REDIS_URL).
    redis: bool = False
    #: What the server keeps to with BENCH_DEFAULT_LIMITS=1 (the hostile workloads).
    limits: str = ""
    #: The compression workloads: added to the server's environment
    #: ($BENCH_COMPRESSION, our SOCKETS_COMPRESSION), the load generator's
    #: --deflate mode, the server this is a case of, and the case.
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    deflate: str = ""
    base: str = ""
    case: str = ""


def gunicorn(worker: str, app: str) -> t.Callable[[int], list[str]]:
    # --worker-connections: gunicorn's gevent workers cap connections at 1000
    # by default, which would refuse the idle workload's 5,000.
    return lambda port: [
        PY, "-m", "gunicorn", "-k", worker, "-w", "1", "--worker-connections", "20000",
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", app,
    ]  # fmt: skip


def gunicorn_threads(worker: str, app: str) -> t.Callable[[int], list[str]]:
    # One thread per WebSocket: enough threads for the idle workload's 5,000
    # (the pool starts them as connections come), and the connection cap above it.
    return lambda port: [
        PY, "-m", "gunicorn", "-k", worker, "-w", "1", "--threads", "5100", "--worker-connections", "20000",
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", app,
    ]  # fmt: skip


def fanout(script: str, redis: bool = False) -> t.Callable[[int], list[str]]:
    return lambda port: [PY, script, str(port), *(["--redis"] if redis else [])]


#: The echo servers that also take the hostile workloads (they have a /firehose route).
ECHO_AND_HOSTILE = ECHO_WORKLOADS + HOSTILE_WORKLOADS

FANOUT_PLAIN: dict[str, t.Any] = {"workloads": FANOUT_WORKLOADS, "path": "/fanout"}
#: Socket.IO clients connect with the WebSocket transport straight away.
FANOUT_SOCKETIO: dict[str, t.Any] = {
    "workloads": FANOUT_WORKLOADS, "path": "/socket.io/?EIO=4&transport=websocket", "protocol": "socketio",
}  # fmt: skip

SERVERS = [
    Server(
        "gevent-websocket",
        "gevent-websocket (raw)",
        lambda port: [PY, "gevent_websocket_raw.py", str(port)],
        "stock geventwebsocket.handler.WebSocketHandler on gevent.pywsgi, plain WSGI echo app (the baseline)",
        workloads=ECHO_AND_HOSTILE,
        limits="no message size limit, no keepalive pings (gevent-websocket 0.10.1 has neither)",
    ),
    Server(
        "ours-gevent",
        "Flask-Sockets, flask_sockets_gevent.run",
        lambda port: [PY, "ours_gevent.py", str(port)],
        "Flask app, @sockets.route echo, monkey-patched, run(app, log=None), SOCKETS_MAX_MESSAGE_SIZE 2 MiB, flood"
        " control's rates raised out of reach (1e9 messages/s; the echo workloads send back to back; the hostile"
        " ones keep the defaults)",
        workloads=ECHO_AND_HOSTILE,
        limits="the defaults: SOCKETS_MAX_MESSAGE_SIZE 1 MiB, SOCKETS_PING_INTERVAL 20 s, SOCKETS_PING_TIMEOUT 20 s,"
        " flood control (SOCKETS_MESSAGE_RATE 100/s, burst 200)",
    ),
    Server(
        "ours-gevent-metrics",
        "Flask-Sockets, flask_sockets_gevent.run, metrics on",
        lambda port: [PY, "ours_gevent.py", str(port)],
        "as ours-gevent, with SOCKETS_METRICS = True (prometheus_client, one process); not in the default run",
        env={"BENCH_METRICS": "1"},
    ),
    Server(
        "ours-gunicorn",
        "Flask-Sockets, gunicorn -k flask_sockets_gunicorn.worker",
        gunicorn("flask_sockets_gunicorn.worker", "flask_app:app"),
        "same app, gunicorn -w 1 --worker-connections 20000, no access log",
        workloads=ECHO_AND_HOSTILE,
        limits="the defaults: SOCKETS_MAX_MESSAGE_SIZE 1 MiB, SOCKETS_PING_INTERVAL 20 s, SOCKETS_PING_TIMEOUT 20 s,"
        " flood control (SOCKETS_MESSAGE_RATE 100/s, burst 200)",
    ),
    Server(
        "ours-gthread",
        "Flask-Sockets, gunicorn -k gthread (no gevent)",
        gunicorn_threads("gthread", "flask_app:app"),
        "same app, gunicorn's own thread worker: -w 1 --threads 5100 --worker-connections 20000, no access log",
        limits="the defaults: SOCKETS_MAX_MESSAGE_SIZE 1 MiB, SOCKETS_PING_INTERVAL 20 s, SOCKETS_PING_TIMEOUT 20 s,"
        " flood control (SOCKETS_MESSAGE_RATE 100/s, burst 200)",
    ),
    Server(
        "flask-sock-gthread",
        "flask-sock, gunicorn -k gthread",
        gunicorn_threads("gthread", "flask_sock_app:app"),
        "flask-sock (simple-websocket) echo, gunicorn -k gthread -w 1 --threads 5100 --worker-connections 20000",
    ),
    Server(
        "flask-sock",
        "flask-sock, gunicorn -k gevent",
        gunicorn("gevent", "flask_sock_app:app"),
        "flask-sock (simple-websocket) echo, gunicorn -k gevent -w 1 --worker-connections 20000",
    ),
    Server(
        "websockets",
        "websockets (asyncio server)",
        lambda port: [PY, "websockets_server.py", str(port)],
        "websockets.asyncio.server.serve on uvloop, max_size 2 MiB",
        workloads=ECHO_AND_HOSTILE,
        limits="max_size 1 MiB, ping_interval 20 s, ping_timeout 20 s (its defaults), open_timeout 10 s (its default)",
    ),
    Server(
        "uvicorn",
        "uvicorn + Starlette",
        lambda port: [PY, "uvicorn_starlette.py", str(port)],
        "uvicorn (uvloop, httptools, websockets-sansio) + Starlette WebSocketRoute, no access log",
        workloads=ECHO_AND_HOSTILE,
        limits="ws_max_size 1 MiB (its default is 16 MiB), ws_ping_interval 20 s, ws_ping_timeout 20 s (its defaults)",
    ),
    Server(
        "uvicorn-legacy",
        "uvicorn --ws websockets + Starlette",
        lambda port: [PY, "uvicorn_starlette.py", str(port), "--ws", "websockets"],
        "uvicorn with --ws websockets (its implementation on websockets' legacy asyncio protocol) + Starlette,"
        " ws_per_message_deflate on (its default)",
        workloads=("compressed",),
    ),
    Server(
        "picows",
        "picows (Cython)",
        lambda port: [PY, "picows_server.py", str(port)],
        "picows server on uvloop, echo frame by frame (no UTF-8 check): the practical Python ceiling",
    ),
    Server(
        "ours-rooms",
        "Flask-Sockets rooms, in-process",
        fanout("fanout_ours.py"),
        "Flask app on flask_sockets_gevent.run: sockets.join(ws, 'bench'), POST /publish -> sockets.publish",
        **FANOUT_PLAIN,
    ),
    Server(
        "ours-rooms-redis",
        "Flask-Sockets rooms, through Redis",
        fanout("fanout_ours.py", redis=True),
        "the same app with --redis: SOCKETS_MESSAGE_QUEUE = $BENCH_REDIS_URL, the run's redis-server",
        redis=True,
        **FANOUT_PLAIN,
    ),
    Server(
        "flask-socketio",
        "Flask-SocketIO, in-process",
        fanout("fanout_socketio.py"),
        "Flask-SocketIO on socketio.run (gevent, gevent-websocket): join_room('bench') on connect,"
        " POST /publish -> socketio.emit(..., to='bench')",
        **FANOUT_SOCKETIO,
    ),
    Server(
        "flask-socketio-redis",
        "Flask-SocketIO, through Redis",
        fanout("fanout_socketio.py", redis=True),
        "the same app with --redis: SocketIO(message_queue=$BENCH_REDIS_URL), the run's redis-server",
        redis=True,
        **FANOUT_SOCKETIO,
    ),
]
SERVER_NAMES = [s.name for s in SERVERS]
#: Named with --servers only (the cost of metrics: ours-gevent against ours-gevent-metrics).
OPT_IN_SERVERS = ("ours-gevent-metrics",)

#: $BENCH_COMPRESSION for our servers: SOCKETS_COMPRESSION as JSON.
OFF, ON = "false", "true"


def _takeover(window_bits: int, mem_level: int) -> str:
    """Context takeover on both sides at these window bits and memLevel."""
    return json.dumps({
        "server_no_context_takeover": False, "client_no_context_takeover": False,
        "server_max_window_bits": window_bits, "client_max_window_bits": window_bits, "mem_level": mem_level,
    })  # fmt: skip


#: What each compression workload runs, per server: (case, $BENCH_COMPRESSION
#: or None to leave the server's config alone, the load generator's --deflate:
#: "expect" = offer permessage-deflate, and a connection without it is an
#: error; "refuse" = offer it, and a connection with it is an error; "" = no
#: offer). Servers not listed get the "*" entry (their own defaults): one that
#: cannot negotiate is reported so ("no compression negotiated").
COMPRESSION_CASES: dict[str, dict[str, list[tuple[str, str | None, str]]]] = {
    "compressed": {
        "ours-gevent": [("deflate", ON, "expect"), ("uncompressed", OFF, "")],
        "ours-gunicorn": [("deflate", ON, "expect")],
        "websockets": [("deflate", None, "expect"), ("uncompressed", None, "")],
        "*": [("deflate", None, "expect")],
    },
    "fanout-compressed": {
        "ours-rooms": [("deflate", ON, "expect"), ("uncompressed", OFF, "")],
        "ours-rooms-redis": [("deflate", ON, "expect"), ("uncompressed", OFF, "")],
        "*": [("uncompressed", None, "")],
    },
    "idle-compressed": {
        "ours-gevent": [
            ("off", OFF, "refuse"), ("defaults", ON, "expect"),
            ("takeover-15-8", _takeover(15, 8), "expect"), ("takeover-12-5", _takeover(12, 5), "expect"),
        ],  # fmt: skip
        "*": [("defaults", None, "expect")],
    },
}
COMPRESSION_CASES["idle-compressed"]["ours-gunicorn"] = COMPRESSION_CASES["idle-compressed"]["ours-gevent"]
#: What each case means, for the report.
CASE_NOTES = {
    "deflate": "permessage-deflate offered by every client (the server's defaults; ours: SOCKETS_COMPRESSION = True)",
    "uncompressed": "nothing offered (ours: SOCKETS_COMPRESSION = False)",
    "off": "SOCKETS_COMPRESSION = False; every client offers permessage-deflate (none must get it)",
    "defaults": "SOCKETS_COMPRESSION = True (the defaults); others: their own defaults",
    "takeover-15-8": "context takeover both sides, 15-bit windows, mem_level 8 (zlib's defaults)",
    "takeover-12-5": "context takeover both sides, 12-bit windows, mem_level 5",
}


def compression_servers(args: argparse.Namespace) -> list[Server]:
    """The chosen servers, one copy per case of each chosen compression
    workload (named ``server/case``)."""
    out = []
    for workload in args.workloads:
        for s in SERVERS:
            if s.name not in args.servers:
                continue
            fanout_server = "fanout" in s.workloads
            if (workload == "fanout-compressed") != fanout_server:
                continue
            if s.name == "uvicorn-legacy" and workload != "compressed":
                continue
            cases = COMPRESSION_CASES[workload]
            for case, setting, mode in cases.get(s.name, cases["*"]):
                env = {} if setting is None else {"BENCH_COMPRESSION": setting}
                out.append(
                    dataclasses.replace(
                        s, name=f"{s.name}/{case}", label=f"{s.label} [{case}]", workloads=(workload,), env=env,
                        deflate=mode, base=s.name, case=case,
                        notes=f"{s.notes}; {case}: {CASE_NOTES.get(case, case)}"
                        + (f" ($BENCH_COMPRESSION={setting})" if setting is not None else ""),
                    )
                )  # fmt: skip
    return out

_EXTRA_ENV = ("BENCH_DEFAULT_LIMITS", "BENCH_COMPRESSION", REDIS_URL_VARIABLE)


def start_server(
    server: Server, port: int, cpu: int, log: Path, nice: int = 0, redis_url: str | None = None,
    default_limits: bool = False,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start ``server`` on ``port`` and wait for it to answer a handshake.
    ``default_limits``: keep the default limits (``BENCH_DEFAULT_LIMITS=1``,
    read by the server scripts) instead of the echo workloads' 2 MiB."""
    env = {k: v for k, v in os.environ.items() if k not in _EXTRA_ENV}
    if default_limits:
        env["BENCH_DEFAULT_LIMITS"] = "1"
    if server.redis:
        if redis_url is None:
            raise RuntimeError("needs redis-server, which is not installed (apt-get install redis-server)")
        env[REDIS_URL_VARIABLE] = redis_url
    env.update(server.env)
    command = [*harness.pinned(cpu, nice), *server.command(port)]
    process = harness.spawn(command, log, cwd=harness.SERVERS_DIR, env=harness.with_pythonpath(env, server.pythonpath))
    harness.wait_ready(process, lambda: harness.handshake_ok(port, server.path), server.name, log)
    time.sleep(0.3)  # let the probe's connection end
    return process


def tool_command(server: Server, workload: str, scenario: str, port: int, pid: int,
                 args: argparse.Namespace) -> tuple[list[str], float]:  # fmt: skip
    """The load generator's command line for one measurement, and its time budget in seconds."""
    common = [f"ws://127.0.0.1:{port}{server.path}", "--server-pid", str(pid), "--duration", str(args.duration)]
    if workload in HOSTILE_WORKLOADS:
        command = [str(HOSTILE), workload, *common, "--scenario", scenario]
        deadline = {
            "fragments": args.fragment_seconds, "oversize": args.oversize_seconds,
            "slowloris": args.slowloris_seconds, "firehose": args.firehose_seconds,
        }.get(workload)  # fmt: skip
        if deadline is not None:
            command += ["--deadline", str(deadline)]
        command += {
            "oversize": ["--tries", str(args.tries)],
            "slowloris": ["--connections", str(args.slowloris_connections)],
        }.get(workload, [])  # fmt: skip
        return command, (args.duration if workload == "fairness" else 2 * args.duration if workload == "flood"
                         else deadline or 0) + 60  # fmt: skip
    # The compression workloads are the load generator's compressed, fanout and idle.
    kind = {"fanout-compressed": "fanout", "idle-compressed": "idle"}.get(workload, workload)
    command = [str(LOADGEN), kind, *common, "--warmup", str(args.warmup)]
    budget = args.warmup + args.duration + 60
    if kind == "idle":
        command += ["--connections", str(args.idle_connections), "--hold", str(args.hold)]
        budget += args.hold + 240
    if kind == "fanout":
        command += [
            "--connections", str(args.fanout_connections), "--rounds", str(args.rounds),
            "--publish-url", f"http://127.0.0.1:{port}/publish", "--protocol", server.protocol,
        ]  # fmt: skip
        budget += 120
    if server.deflate:
        command += ["--deflate", server.deflate]
    size = {"fanout-compressed": args.fanout_message_size, "idle-compressed": args.compressed_size}.get(workload)
    if size is not None:
        command += ["--message", "json", "--size", str(size)]
    if workload == "compressed":
        command += ["--size", str(args.compressed_size)]
    return command, budget


def measure(
    server: Server, workload: str, args: argparse.Namespace, cpus: tuple[int, int], redis_url: str | None = None,
    scenario: str = "",
) -> dict[str, t.Any]:  # fmt: skip
    """One measurement on a fresh server: the load generator's JSON result.
    A hostile scenario (``scenario``) runs against a server held to the
    default limits; its server dying is a finding, not an error."""
    hostile = workload in HOSTILE_WORKLOADS
    port = harness.free_port()
    log = RESULTS / "logs" / f"{server.name}-{workload}{'-' + scenario if scenario else ''}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    process = start_server(server, port, cpus[0], log, args.nice, redis_url, default_limits=hostile)
    command, budget = tool_command(server, workload, scenario, port, process.pid, args)
    if workload == "firehose":
        command += ["--server-log", str(log)]
    profiler = start_profiler(server, workload, process.pid, args, cpus[1]) if server.name in args.profile else None
    started = time.monotonic()
    result: dict[str, t.Any]
    try:
        done = subprocess.run(
            [*harness.pinned(cpus[1], args.nice), PY, *command], capture_output=True, timeout=budget, cwd=ROOT
        )  # fmt: skip
        result = harness.last_json(done.stdout)
        if done.returncode != 0 or not result:
            result.setdefault("error", f"load generator exited with {done.returncode}")
            result["stderr"] = done.stderr.decode()[-2000:]
        result["wall_seconds"] = time.monotonic() - started
        if process.poll() is not None:
            if hostile:
                result["server_exited"] = process.returncode
            else:
                result.setdefault("error", f"server exited with {process.returncode} during the run")
    except subprocess.TimeoutExpired:
        result = {"error": f"load generator did not finish within {budget:.0f} s"}
    finally:
        if profiler is not None:
            finish_profiler(profiler)
        harness.stop(process)
    server_log = log.read_text(errors="replace")
    if "Traceback" in server_log or "error" in result or "server_exited" in result:
        result["server_log_tail"] = server_log[-2000:]
    return result


def start_profiler(
    server: Server, workload: str, pid: int, args: argparse.Namespace, cpu: int
) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy the server process tree during warm-up and window, as collapsed stacks."""
    out = RESULTS / "profiles" / f"{server.name}-{workload}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        *harness.pinned(cpu), str(Path(PY).parent / "py-spy"), "record", "--pid", str(pid), "--subprocesses",
        "--nonblocking", "--rate", "200", "--format", "raw", "--duration", str(int(args.warmup + args.duration)),
        "--output", str(out),
    ]  # fmt: skip
    return harness.spawn(command, RESULTS / "logs" / "py-spy.log", stdout=subprocess.DEVNULL), out


def finish_profiler(profiler: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, out = profiler
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        pass
    harness.stop(process)
    if out.exists():
        print(f"    profile: {out.relative_to(ROOT)} ({report.profile_summary(out, 3)})", flush=True)


# -- the run -----------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", help=f"comma-separated, from {SERVER_NAMES} (default: all)")
    parser.add_argument(
        "--workloads",
        help=f"comma-separated, from {list(WORKLOADS)} (default: all but the hostile ones, {list(HOSTILE_WORKLOADS)})",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each window")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds in each measurement window")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="run the throughput workloads N times, interleaved; the table shows the best run",
    )
    parser.add_argument("--idle-connections", type=int, default=5000)
    parser.add_argument("--fanout-connections", type=int, default=1000, help="fanout: clients in the room")
    parser.add_argument("--rounds", type=int, default=30, help="fanout: messages published, one at a time")
    parser.add_argument("--hold", type=float, default=0.0, help="idle: seconds to hold the connections open")
    parser.add_argument("--idle10k", action="store_true", help="the long idle mode: 10,000 connections held 45 s")
    compression = parser.add_argument_group(
        "compression workloads", f"{list(COMPRESSION_WORKLOADS)}, run on their own (hatch run bench:compression)"
    )  # fmt: skip
    compression.add_argument(
        "--compression", action="store_true",
        help=f"the compression workloads, against {list(COMPRESSION_SERVERS)} unless --servers says otherwise",
    )  # fmt: skip
    compression.add_argument(
        "--compressed-size", type=int, default=4096, help="compressed, idle-compressed: JSON message bytes"
    )  # fmt: skip
    compression.add_argument("--fanout-message-size", type=int, default=1024, help="fanout-compressed: JSON bytes")
    hostile = parser.add_argument_group(
        "hostile workloads", f"{list(HOSTILE_WORKLOADS)}, run on their own (hatch run bench:hostile); --duration is"
        " the fairness window"
    )  # fmt: skip
    hostile.add_argument(
        "--hostile", action="store_true",
        help=f"the hostile workloads, against {list(HOSTILE_SERVERS)} unless --servers says otherwise",
    )  # fmt: skip
    hostile.add_argument("--scenarios", default="", help=f"comma-separated subset of {dict(SCENARIOS)}")
    hostile.add_argument("--tries", type=int, default=100, help="oversize: messages of each size")
    hostile.add_argument("--oversize-seconds", type=float, default=45.0, help="oversize: at most, per size")
    hostile.add_argument(
        "--fragment-seconds", type=float, default=15.0, help="fragments: flood deadline (bounds: 3,000,000"
        " empty or 1,000,000 1-byte fragments per connection)"
    )  # fmt: skip
    hostile.add_argument("--slowloris-connections", type=int, default=500)
    hostile.add_argument("--slowloris-seconds", type=float, default=30.0, help="slowloris: at most")
    hostile.add_argument(
        "--firehose-seconds", type=float, default=40.0,
        help="firehose: how long to wait for the server to give up",
    )  # fmt: skip
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers and load generator at this niceness (negative needs root): less disturbance from"
        " other jobs, at their expense",
    )
    parser.add_argument("--profile", default="", help="comma-separated servers to record with py-spy")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="[NAME=]REV|DIR",
        help="also run our selected servers with our packages as they are at the git revision REV (exported with"
        " git archive into a temporary directory) or in the checkout DIR, as SERVER+NAME (NAME defaults to the"
        " short commit or the directory's name): the old design and this tree in one run, under the same noise",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, help="the JSON file (default bench/results/latest.json)")
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite bench/RESULTS.md")
    args = parser.parse_args(argv)
    explicit_servers = args.servers is not None
    if args.workloads is None:
        args.workloads = ",".join(
            HOSTILE_WORKLOADS if args.hostile else COMPRESSION_WORKLOADS if args.compression else DEFAULT_WORKLOADS
        )  # fmt: skip
    if args.servers is None:
        args.servers = ",".join(
            HOSTILE_SERVERS
            if args.hostile
            else COMPRESSION_SERVERS
            if args.compression
            else [n for n in SERVER_NAMES if n not in OPT_IN_SERVERS]
        )  # fmt: skip
    args.servers = [s for s in args.servers.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.profile = [s for s in args.profile.split(",") if s]
    try:
        args.variant = dict(harness.variant(spec) for spec in args.variant)
    except ValueError as e:
        parser.error(str(e))
    for name in args.servers + [p.split("+")[0] for p in args.profile]:
        if name not in SERVER_NAMES:
            parser.error(f"unknown server {name!r}; choose from {SERVER_NAMES}")
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {list(WORKLOADS)}")
    compression_chosen = [w for w in args.workloads if w in COMPRESSION_WORKLOADS]
    if compression_chosen:
        if len(compression_chosen) != len(args.workloads):
            parser.error("run the compression workloads on their own: hatch run bench:compression [--workloads ...]")
        args.compression = True
        if not explicit_servers:
            args.servers = list(COMPRESSION_SERVERS)
    elif args.compression:
        parser.error("--compression takes only the compression workloads")
    hostile_chosen = [w for w in args.workloads if w in HOSTILE_WORKLOADS]
    if hostile_chosen:
        if len(hostile_chosen) != len(args.workloads):
            parser.error("run the hostile workloads on their own: hatch run bench:hostile [--workloads ...]")
        args.hostile = True
        if not explicit_servers:
            args.servers = list(HOSTILE_SERVERS)
        known = {s for w in hostile_chosen for s in SCENARIOS[w]}
        for name in args.scenarios:
            if name not in known:
                parser.error(f"unknown scenario {name!r}; the chosen workloads have {sorted(known)}")
        args.repeat = 1
    if args.idle10k:
        if not explicit_servers:
            args.servers = ["ours-gevent", "ours-gunicorn", BASELINE]
        args.workloads = ["idle"]
        args.repeat = 1
        args.idle_connections = 10_000 if args.idle_connections == 5000 else args.idle_connections
        args.hold = args.hold or 45.0
    if args.output is None:
        args.output = RESULTS / (
            "idle10k.json" if args.idle10k else "flood.json" if flood_only(args) else "hostile.json" if args.hostile
            else "compression.json" if args.compression else "latest.json"
        )  # fmt: skip
    return args


#: The figure that picks the best of several runs: (key in the load generator's
#: result, higher is better): the report's, but idle memory in the raw bytes.
HEADLINE = {**report.HEADLINE, "idle": ("rss_per_connection", False), "idle-compressed": ("rss_per_connection", False)}


def best_result(workload: str, runs: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """The best of the runs by the workload's headline figure. Noise on a
    shared machine (other jobs taking the CPU) only ever makes a server look
    slower, so the best run is the least disturbed one. Hostile workloads run
    once (their result holds one entry per scenario)."""
    if workload in HOSTILE_WORKLOADS:
        return runs[-1]
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1]
    key, higher = HEADLINE[workload]
    best = dict((max if higher else min)(good, key=lambda r: r[key]))
    best["runs"] = len(runs)
    best["all_" + key] = [r.get(key) for r in runs]
    return best


def chosen_servers(args: argparse.Namespace) -> list[Server]:
    """The servers (or compression cases) of this run, each of ours followed
    by its copies with the packages of each ``--variant``."""
    servers = []
    for s in compression_servers(args) if args.compression else SERVERS:
        if not args.compression and (s.name not in args.servers or not set(s.workloads) & set(args.workloads)):
            continue
        servers.append(s)
        if s.name.startswith("ours-"):
            for name, path in args.variant.items():
                servers.append(
                    dataclasses.replace(
                        s, name=f"{s.name}+{name}", label=f"{s.label} [{name}]", pythonpath=path,
                        notes=f"{s.notes}; our packages from {name}",
                    )
                )  # fmt: skip
    return servers


def run_one(server: Server, workload: str, args: argparse.Namespace, cpus: tuple[int, int], redis_url: str | None,
            tag: str, width: int) -> dict[str, t.Any]:  # fmt: skip
    """One measurement, or every chosen scenario of a hostile workload
    (``{"scenarios": {name: result}}``), each on a fresh server, with a line
    on the console for each."""
    hostile = workload in HOSTILE_WORKLOADS
    found: dict[str, t.Any] = {}
    for scenario in [s for s in SCENARIOS[workload] if s in args.scenarios or not args.scenarios] if hostile else [""]:
        print(f"  {tag}{workload:<9} {scenario + ' ' if scenario else ''}{server.name:<{width}}", end=" ", flush=True)
        try:
            result = measure(server, workload, args, cpus, redis_url, scenario)
        except RuntimeError as e:
            result = {"error": str(e)}
        print(report.hostile_line(workload, result) if scenario else report.one_line(workload, result), flush=True)
        found[scenario] = result
    return {"scenarios": found} if hostile else found[""]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.handle_signals()
    fd_limit = harness.raise_fd_limit(max(args.idle_connections + 1000, args.slowloris_connections + 1000, 4096))
    cpus = harness.pick_cpus()
    os.sched_setaffinity(0, {cpus[1]})  # the runner only waits; keep it off the server's CPU
    RESULTS.mkdir(parents=True, exist_ok=True)
    servers = chosen_servers(args)
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    what = f"{len(servers)} server cases" if args.compression else f"{len(servers)} servers x {len(args.workloads)}"
    print(f"bench: {what}{'' if args.compression else ' workloads'} x {args.repeat}; server on CPU {cpus[0]},"
          f" load generator on CPU {cpus[1]}; fd limit {fd_limit}", flush=True)  # fmt: skip
    width = max(len(s.name) for s in servers)
    raw: dict[str, dict[str, list[dict[str, t.Any]]]] = {
        s.name: {w: [] for w in args.workloads if w in s.workloads} for s in servers
    }
    redis_url = None
    if any(s.redis for s in servers):
        log = RESULTS / "logs" / "redis-server.log"
        log.unlink(missing_ok=True)
        redis = harness.start_redis(cpus[1], log)
        redis_url = redis[1] if redis is not None else None
    try:
        for repeat in range(args.repeat):
            for workload in args.workloads:
                if workload in ("idle", "idle-compressed") and repeat > 0:
                    continue  # memory does not suffer from CPU noise: once is enough
                for server in servers:
                    if workload in server.workloads:
                        tag = f"[{repeat + 1}/{args.repeat}] " if args.repeat > 1 else ""
                        raw[server.name][workload].append(run_one(server, workload, args, cpus, redis_url, tag, width))
    except KeyboardInterrupt:
        print("\ninterrupted; writing what was measured", file=sys.stderr)
    finally:
        harness.stop_all()
    wall = time.monotonic() - started
    settings = {k: v for k, v in vars(args).items() if k not in ("servers", "profile", "output", "variant")}
    data = {
        "meta": {
            "date": started_at.isoformat(timespec="seconds"),
            "command": harness.command_line(SCRIPT[kind(args)], f"--{kind(args)}"),
            "argv": [sys.executable, *sys.argv],
            "wall_seconds": round(wall, 1),
            "machine": harness.machine(),
            "versions": harness.versions(),
            "cpus": {"server": cpus[0], "load_generator": cpus[1]},
            "fd_limit": fd_limit,
            "settings": {
                **settings, "warmup_s": args.warmup, "duration_s": args.duration, "idle_hold_s": args.hold,
                "fanout_rounds": args.rounds, "compressed_message_bytes": args.compressed_size,
                "fanout_message_bytes": args.fanout_message_size, "fairness_window_s": args.duration,
                "oversize_tries": args.tries, "scenarios": args.scenarios or "all", "variants": list(args.variant),
            },  # fmt: skip
            "baseline": BASELINE,
        },
        "servers": {
            s.name: {
                "label": s.label,
                "notes": s.notes,
                "limits": s.limits,
                **({"base": s.base, "case": s.case, "deflate": s.deflate, "env": s.env} if args.compression else {}),
                "workloads": list(s.workloads),
                "command": "cd bench/servers && taskset -c CPU "
                + shlex.join(s.command(65432)).replace(PY, "python").replace("65432", "PORT"),
                "results": {w: best_result(w, runs) for w, runs in raw[s.name].items() if runs},
                "runs": raw[s.name],
            }
            for s in servers
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    # idle10k.json goes into the targets of latest.json's block; a flood-only
    # hostile run into a block of its own (the other hostile tables stay).
    name = "results" if args.idle10k else "flood" if flood_only(args) else kind(args)
    source = None if args.idle10k else args.output
    if not args.idle10k or (RESULTS / report.BLOCKS[name].source).exists():
        block = report.block(name, source)
        print(f"\n{block}")
        if not args.no_markdown:
            print(f"table: {report.write_block(name, block, report.BLOCKS[name].heading).relative_to(ROOT)}")
    print(f"\nraw figures: {args.output}")
    print(f"wall time: {wall:.0f} s")
    return 0


#: What kind of run this is (the block of RESULTS.md it rewrites), and the hatch script of each.
SCRIPT = {"results": "all", "hostile": "hostile", "compression": "compression", "idle10k": "idle10k"}


def flood_only(args: argparse.Namespace) -> bool:
    """Whether this is a hostile run of the ``flood`` workload alone."""
    return bool(args.hostile and list(args.workloads) == ["flood"])


def kind(args: argparse.Namespace) -> str:
    if args.idle10k or args.hostile or args.compression:
        return "idle10k" if args.idle10k else "hostile" if args.hostile else "compression"
    return "results"


if __name__ == "__main__":
    sys.exit(main())
