"""RFC 6455 conformance: the Autobahn TestSuite's fuzzing-client cases 1-10, run by kosoku.

Our server must report no FAILED and no UNIMPLEMENTED case. The stock
gevent-websocket handler is run the same way for comparison; its counts go
into the same report (``conformance.json`` in the test's temp dir, or in
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


def test_autobahn_cases_1_to_10(spawn, tmp_path):
    """Our gevent server passes Autobahn cases 1-10: 0 FAILED, 0 UNIMPLEMENTED."""
    from tests.conftest import free_port

    ours = run_cases(spawn, free_port(), "ours", tmp_path / "ours")
    stock = run_cases(spawn, free_port(), "stock", tmp_path / "stock")
    report = {
        "cases": CASES,
        "flask_sockets_gevent": counts(ours),
        "stock_gevent_websocket": counts(stock),
        "stock_failed": sorted(k for k, v in stock.items() if v["behavior"] in BAD),
    }
    report_dir = Path(os.environ.get("FLASK_SOCKETS_REPORT_DIR", tmp_path))
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "conformance.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

    assert len(ours) >= 300, f"only {len(ours)} cases ran"
    failed = {case: info["behavior"] for case, info in sorted(ours.items()) if info["behavior"] in (*BAD, "ERROR")}
    assert not failed, f"cases not passed: {failed}"
