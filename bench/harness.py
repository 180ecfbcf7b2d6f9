"""What the bench entry points share: processes pinned to a CPU, started
with a deadline and always stopped; our packages as they were at another
commit (``--variant``); the machine and the versions a result records.

Every process started here runs in its own session (so that its whole
group can be stopped) and is stopped at the end of the run, on Ctrl+C,
SIGTERM or SIGHUP too (``handle_signals``).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
SERVERS_DIR = BENCH / "servers"
PY = sys.executable

_live: set[subprocess.Popen[bytes]] = set()


# -- CPUs and limits ---------------------------------------------------------


def pick_cpus() -> tuple[int, int]:
    """(the server's CPU, the load generator's): the first two this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print(f"warning: only CPU {cpus} available; server and load generator will share it", file=sys.stderr)
        return cpus[0], cpus[0]
    return cpus[0], cpus[1]


def pinned(cpu: int | None, nice: int = 0) -> list[str]:
    """The prefix that pins a command to ``cpu`` (and renices it, if asked)."""
    return (["nice", "-n", str(nice)] if nice else []) + ([] if cpu is None else ["taskset", "-c", str(cpu)])


def raise_fd_limit(needed: int) -> int:
    """Raise this process's (and so its children's) open file limit to
    ``needed``, or as far as the hard limit allows; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(needed, hard)))
        except (ValueError, OSError):  # raising the hard limit needs privileges
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- processes ---------------------------------------------------------------


def spawn(
    command: list[str], log: Path, cwd: Path = ROOT, env: dict[str, str] | None = None, **popen: t.Any
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(command)}\n".encode())
        out.flush()
        popen.setdefault("stdout", out)
        popen.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(
            command, cwd=cwd, stderr=out, start_new_session=True, env=env, **popen
        )  # fmt: skip
    _live.add(process)
    return process


def wait_ready(process: subprocess.Popen[bytes], ready: t.Callable[[], bool], what: str, log: Path,
               seconds: float = 30) -> None:  # fmt: skip
    """Wait until ``ready()`` (polled every 0.1 s); stop the process and
    raise RuntimeError if it exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} (see {log})")
        if ready():
            return
        time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"{what} was not ready within {seconds:g} s (see {log})")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL after 10 s (and to stragglers:
    gunicorn's workers)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    _live.discard(process)


def stop_all() -> None:
    for process in list(_live):
        stop(process)


def _on_signal(signum: int, frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def handle_signals() -> None:
    """SIGTERM and SIGHUP stop every process started here, then this one."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


def last_json(output: bytes) -> dict[str, t.Any]:
    """The JSON object on the last line of a tool's output ({} if none)."""
    try:
        found = json.loads(output.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}
    return found if isinstance(found, dict) else {}


def handshake_ok(port: int, path: str = "/echo") -> bool:
    """One real upgrade: the server (for gunicorn, its worker) answers 101."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(request)
            answer = s.recv(1024)
            s.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # a masked close frame, code 1000
            return answer.startswith(b"HTTP/1.1 101")
    except OSError:
        return False


def start_redis(cpu: int | None, log: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """A throw-away redis-server on a free loopback port (no persistence),
    pinned to ``cpu``: (the process, its URL), or ``None`` if redis-server
    is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    command = [*pinned(cpu), binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = spawn(command, log)

    def pong() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    wait_ready(process, pong, "redis-server", log, 10)
    return process, f"redis://127.0.0.1:{port}/0"


# -- variants ----------------------------------------------------------------


def variant(spec: str) -> tuple[str, str]:
    """``[NAME=]REV`` (a commit, branch or tag of this repository) or
    ``[NAME=]DIR`` (a checkout): (its name, the PYTHONPATH that puts its
    ``packages/*/src`` before the installed ones). A revision is exported
    with ``git archive`` into a temporary directory, removed at exit."""
    name, _, where = spec.rpartition("=")
    if Path(where, "packages").is_dir():
        tree = Path(where).resolve()
        name = name or tree.name
    else:
        found = subprocess.run(["git", "rev-parse", "--short", f"{where}^{{commit}}"], cwd=ROOT,
                               capture_output=True, text=True)  # fmt: skip
        if found.returncode != 0:
            raise ValueError(f"--variant: {where!r} is neither a checkout nor a revision of this repository")
        commit = found.stdout.strip()
        tree = Path(tempfile.mkdtemp(prefix=f"bench-{commit}-"))
        atexit.register(shutil.rmtree, tree, True)
        archive = subprocess.run(["git", "archive", commit, "packages"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        name = name or commit
    paths = sorted(str(p) for p in tree.glob("packages/*/src"))
    if not paths:
        raise ValueError(f"--variant: no packages/*/src in {where!r}")
    return name, os.pathsep.join(paths)


def with_pythonpath(env: dict[str, str], pythonpath: str) -> dict[str, str]:
    """``env`` with ``pythonpath`` first on its PYTHONPATH."""
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
    return env


# -- what a result records -----------------------------------------------------

#: Python distributions whose versions go in the results.
DISTRIBUTIONS = [
    "flask-sockets-core", "flask-sockets-gevent", "flask-sockets-gunicorn", "flask", "werkzeug",
    "gevent", "greenlet", "gevent-websocket", "gunicorn", "flask-sock", "simple-websocket", "wsproto",
    "websockets", "uvicorn", "httptools", "starlette", "uvloop", "picows", "aiofastnet", "psutil", "py-spy",
    "flask-socketio", "python-socketio", "python-engineio", "redis",
]  # fmt: skip


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    binary = shutil.which("redis-server")
    if binary is None:
        found["redis-server"] = "not installed"
    else:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        found["redis-server"] = next((w.split("=", 1)[1] for w in out.split() if w.startswith("v=")), out.strip())
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, t.Any]:
    model = "unknown"
    try:
        model = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")), model,
        )  # fmt: skip
        memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        memory = 0
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout)
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_mib": memory,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "git_commit": commit + (" (with local changes)" if dirty else ""),
    }


def command_line(script: str, drop: str = "") -> str:
    """How this run was started: ``hatch run bench:SCRIPT ...`` in the bench
    environment (without the flag ``drop`` that the script adds), else
    ``python bench/...``."""
    argv = sys.argv[1:]
    if os.environ.get("HATCH_ENV_ACTIVE") == "bench":
        return f"hatch run bench:{script} {shlex.join(a for a in argv if a != drop)}".strip()
    return f"python {Path(sys.argv[0]).resolve().relative_to(ROOT)} {shlex.join(argv)}".strip()
