"""RFC 6455 and RFC 7692 conformance: the Autobahn TestSuite's fuzzing-client
cases, run by kosoku against the echo server of ``echo_server.py``.

- Cases 1-10 (framing, pings, fragmentation, UTF-8, closing, limits): our
  gevent server and the development server (``app.run()`` / ``flask run``,
  over the same engine) must pass every case strictly: OK or INFORMATIONAL, no
  NON-STRICT, FAILED, UNIMPLEMENTED or ERROR.
- Cases 12.* and 13.* (permessage-deflate, 216 cases) on our gevent server:
  every payload kind (12.1-12.5) and every set of deflate parameters
  (13.1-13.7) with messages of up to 32 KiB (cases .1 to .8 of each), and
  12.1.* whole (up to 128 KiB, also fragmented): 106 cases, a third of the
  CPU of all 216 (the other 110 send the same kinds, 64 and 128 KiB
  messages 1,000 times each, through the same code). 12.1.* and 13.1.* on
  the development server, equally strict.
- gunicorn's own ``-k gthread`` worker (the threaded socket without gevent)
  passes cases 1-10, 12.1.* and 13.1.* as strictly.
- Group 9 (limits and performance) runs on ours and on the websockets
  library's asyncio server one after the other, with the sums of kosoku's
  per-case durations printed side by side. Times are printed, never asserted
  (speed targets live in bench/).
- ``FLASK_SOCKETS_CONFORMANCE_FULL=1`` runs all 216 compression cases on our
  gevent server, the development server and websockets, and adds the
  comparisons that assert nothing about us: the stock gevent-websocket
  handler on cases 1-10 (counted only), and websockets as the reference on
  the compression cases (it must pass them too, so a failure of ours is ours,
  not kosoku's). About 10 more minutes: for a change to the engine's
  compression, or to check a new kosoku.

Each run is its own test (with its own server, started by ``spawn`` on a
free loopback port), so ``hatch test -p`` (pytest-xdist) may run them
side by side. All counts go into one report, ``conformance.json`` under
pytest's base temp dir, or in ``$FLASK_SOCKETS_REPORT_DIR`` when set.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = [
    pytest.mark.slow,
    # hatch.toml installs kosoku only where it runs (it needs Python 3.10).
    pytest.mark.skipif(sys.version_info < (3, 10), reason="kosoku, the Autobahn case runner, needs Python 3.10+"),
]

SERVER = Path(__file__).with_name("echo_server.py")
CASES_1_TO_10 = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*")
COMPRESSION = ("12.*", "13.*")
#: The compression cases with the first set of deflate parameters: a cheaper sample.
COMPRESSION_SAMPLE = ("12.1.*", "13.1.*")
#: Every kind and parameter set with messages of up to 32 KiB, and 12.1.* whole.
COMPRESSION_UP_TO_32K = (
    "12.1.*",
    *(f"{kind}.{case}" for kind in ("12.2", "12.3", "12.4", "12.5") for case in range(1, 9)),
    *(f"13.{params}.{case}" for params in range(1, 8) for case in range(1, 9)),
)
FULL = os.environ.get("FLASK_SOCKETS_CONFORMANCE_FULL", "") not in ("", "0")
#: Verdicts that pass. NON-STRICT (a SHOULD not followed) does not.
PASSED = ("OK", "INFORMATIONAL")
#: Upper bound for one kosoku run, in seconds.
KOSOKU_TIMEOUT = 900


@dataclasses.dataclass(frozen=True)
class Run:
    """One kosoku run: these cases against this flavour of echo_server.py."""

    flavour: str
    cases: tuple[str, ...]
    #: How many cases kosoku runs at once (``-p``).
    parallelism: int
    #: At least this many cases must have run (a glob that matched less is a mistake).
    min_cases: int
    #: False: counted in the report, not asserted.
    strict: bool = True
    #: Names the cases in the test id, instead of listing them.
    label: str = ""

    @property
    def name(self) -> str:
        groups = self.label or "+".join(case.removesuffix(".*") for case in self.cases)
        return f"{self.flavour}:{groups}"


RUNS = [
    # 5.* and 6.* wait in places: -p 4 overlaps the waits.
    Run("ours", CASES_1_TO_10, parallelism=4, min_cases=300),
    Run("dev", CASES_1_TO_10, parallelism=4, min_cases=300),
    # gunicorn -k gthread: the same threaded socket as dev, behind gunicorn's worker.
    Run("gthread", CASES_1_TO_10, parallelism=4, min_cases=300),
    # Compression is CPU-bound (kosoku and the server each take about a core).
    Run("ours", COMPRESSION, parallelism=2, min_cases=216)
    if FULL
    else Run("ours", COMPRESSION_UP_TO_32K, parallelism=2, min_cases=106, label="12+13-up-to-32k"),
    Run("dev", COMPRESSION if FULL else COMPRESSION_SAMPLE, parallelism=2, min_cases=216 if FULL else 36),
    Run("gthread", COMPRESSION_SAMPLE, parallelism=2, min_cases=36),
]
if FULL:  # the comparisons
    RUNS += [
        Run("stock", CASES_1_TO_10, parallelism=4, min_cases=300, strict=False),
        Run("websockets", COMPRESSION, parallelism=2, min_cases=216),
    ]


@dataclasses.dataclass
class Result:
    run: Run
    #: kosoku's index.json entries: case id -> {"behavior", "behaviorClose", "duration" (ms), ...}.
    cases: dict[str, dict[str, t.Any]]
    #: Wall-clock seconds of the kosoku run.
    seconds: float

    def counts(self) -> dict[str, int]:
        return dict(collections.Counter(case["behavior"] for case in self.cases.values()))

    def not_passed(self) -> dict[str, str]:
        return {case: info["behavior"] for case, info in sorted(self.cases.items()) if info["behavior"] not in PASSED}

    def duration_ms(self, group: str) -> int:
        """The sum of kosoku's per-case durations (milliseconds) of one group, e.g. ``"9"``."""
        return sum(int(info["duration"]) for case, info in self.cases.items() if case.split(".")[0] == group)

    def summary(self) -> dict[str, t.Any]:
        return {
            "cases": list(self.run.cases),
            "parallelism": self.run.parallelism,
            "seconds": round(self.seconds, 1),
            "counts": self.counts(),
            "not_passed": self.not_passed(),
        }


def kosoku() -> list[str]:
    executable = shutil.which("kosoku", path=os.path.dirname(sys.executable)) or shutil.which("kosoku")
    if executable is None:
        pytest.fail("kosoku is not installed in the test environment (it is in hatch.toml's test dependencies)")
    return [executable]


def run_cases(spawn: t.Callable[..., t.Any], run: Run, outdir: Path) -> Result:
    """Serve the echo app as ``run.flavour`` on a free port and run ``run.cases`` against it."""
    port = free_port()
    spawn([sys.executable, str(SERVER), str(port), run.flavour], port=port)
    argv = [*kosoku(), "-m", "fuzzingclient", "-o", str(outdir), "-p", str(run.parallelism)]
    for case in run.cases:
        argv += ["-i", case]
    started = time.monotonic()
    result = subprocess.run([*argv, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=KOSOKU_TIMEOUT)
    seconds = time.monotonic() - started
    index = outdir / "index.json"
    assert index.exists(), f"kosoku wrote no report:\n{result.stdout}\n{result.stderr}"
    (agent_cases,) = json.loads(index.read_text()).values()
    print(f"\n{run.name}: {len(agent_cases)} cases in {seconds:.1f} s (kosoku -p {run.parallelism})")
    return Result(run, agent_cases, seconds)


def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(os.environ.get("FLASK_SOCKETS_REPORT_DIR") or tmp_path_factory.getbasetemp() / "conformance")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def add_to_report(tmp_path_factory: pytest.TempPathFactory, key: str, entry: dict[str, t.Any]) -> None:
    """Merge one run's summary into conformance.json (under a lock: pytest-xdist
    workers may finish at once)."""
    directory = report_dir(tmp_path_factory)
    report = directory / "conformance.json"
    with (directory / "conformance.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, t.Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            data = json.loads(report.read_text())
        data[key] = entry
        partial = report.with_suffix(".tmp")
        partial.write_text(json.dumps(dict(sorted(data.items())), indent=2))
        partial.replace(report)
    print(f"{key}: {json.dumps(entry, indent=2)}\nreport: {report}")


def check(result: Result) -> None:
    run = result.run
    assert len(result.cases) >= run.min_cases, f"{run.name}: only {len(result.cases)} cases ran"
    if run.strict:
        bad = result.not_passed()
        shown = dict(list(bad.items())[:20])
        more = f" and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
        assert not bad, f"{run.name}: {len(bad)} cases not passed ({result.counts()}): {shown}{more}"


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_autobahn(
    run: Run, spawn: t.Callable[..., t.Any], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Ours, dev and gthread pass their cases strictly; in a full run websockets (the reference) too;
    stock is counted only."""
    result = run_cases(spawn, run, tmp_path / run.flavour)
    add_to_report(tmp_path_factory, run.name, result.summary())
    check(result)


def test_group_9_beside_websockets(
    spawn: t.Callable[..., t.Any], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Group 9 (messages of up to 16 MiB, in frames down to 64 bytes) on our
    gevent server and on websockets' asyncio server, one after the other
    with one case at a time, so their durations compare. Printed, not asserted."""
    results = {
        flavour: run_cases(spawn, Run(flavour, ("9.*",), parallelism=1, min_cases=50), tmp_path / flavour)
        for flavour in ("ours", "websockets")
    }
    subgroups = sorted({".".join(case.split(".")[:2]) for r in results.values() for case in r.cases}, key=_numeric)
    lines = [f"{'group 9 (ms)':<14}" + "".join(f"{flavour:>12}" for flavour in results)]
    for subgroup in subgroups:
        sums = [
            sum(int(info["duration"]) for case, info in r.cases.items() if case.startswith(subgroup + "."))
            for r in results.values()
        ]
        lines.append(f"{subgroup:<14}" + "".join(f"{ms:>12}" for ms in sums))
    lines.append(f"{'total':<14}" + "".join(f"{r.duration_ms('9'):>12}" for r in results.values()))
    print("\n" + "\n".join(lines))
    add_to_report(
        tmp_path_factory,
        "group_9_ms",
        {flavour: {"total": r.duration_ms("9"), **r.summary()} for flavour, r in results.items()},
    )
    for result in results.values():
        check(result)


def _numeric(case: str) -> list[int]:
    return [int(part) for part in case.split(".")]
