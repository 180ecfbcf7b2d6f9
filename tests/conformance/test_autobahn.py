"""RFC 6455 conformance: the Autobahn TestSuite's fuzzing-client cases 1-10, run by kosoku.

Our gevent server and the development server (``app.run()`` / ``flask run``,
over wsproto) must report no FAILED, UNIMPLEMENTED or ERROR case. The stock
gevent-websocket handler is run the same way for comparison; all counts go
into one report (``conformance.json`` in the test's temp dir, or in
``$FLASK_SOCKETS_REPORT_DIR`` when set).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
BAD = ("FAILED", "UNIMPLEMENTED")
SERVER = Path(__file__).with_name("echo_server.py")


def kosoku() -> list[str]:
    executable = shutil.which("kosoku", path=os.path.dirname(sys.executable)) or shutil.which("kosoku")
    if executable is None:
        pytest.fail("kosoku is not installed in the test environment (it is in hatch.toml's test dependencies)")
    return [executable]


def run_cases(spawn, port: int, flavour: str, outdir: Path) -> dict[str, dict]:
    """Serve the echo app with ``flavour`` and run every case against it."""
    spawn([sys.executable, str(SERVER), str(port), flavour], port=port)
    argv = [*kosoku(), "-m", "fuzzingclient", "-o", str(outdir)]
    for case in CASES:
        argv += ["-i", case]
    result = subprocess.run([*argv, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=600)
    index = outdir / "index.json"
    assert index.exists(), f"kosoku wrote no report:\n{result.stdout}\n{result.stderr}"
    (agent_cases,) = json.loads(index.read_text()).values()
    return agent_cases


def counts(cases: dict[str, dict]) -> dict[str, int]:
    return dict(collections.Counter(case["behavior"] for case in cases.values()))


def not_passed(cases: dict[str, dict]) -> dict[str, str]:
    return {case: info["behavior"] for case, info in sorted(cases.items()) if info["behavior"] in (*BAD, "ERROR")}


def test_autobahn_cases_1_to_10(spawn, tmp_path):
    """Our gevent server and the development server pass cases 1-10: 0 FAILED, 0 UNIMPLEMENTED."""
    from tests.conftest import free_port

    results = {
        flavour: run_cases(spawn, free_port(), flavour, tmp_path / flavour) for flavour in ("ours", "dev", "stock")
    }
    report = {
        "cases": CASES,
        "flask_sockets_gevent": counts(results["ours"]),
        "development_server": counts(results["dev"]),
        "stock_gevent_websocket": counts(results["stock"]),
        "stock_not_passed": not_passed(results["stock"]),
    }
    report_dir = Path(os.environ.get("FLASK_SOCKETS_REPORT_DIR", tmp_path))
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "conformance.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

    for flavour in ("ours", "dev"):
        assert len(results[flavour]) >= 300, f"{flavour}: only {len(results[flavour])} cases ran"
        assert not not_passed(results[flavour]), f"{flavour}: cases not passed: {not_passed(results[flavour])}"
