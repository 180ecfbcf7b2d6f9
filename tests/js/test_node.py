"""The node tests of flask-sockets.js (tests/js/*.test.mjs), run by
node's built-in test runner so that ``hatch test`` runs them: a fake
WebSocket, node's mock timers and a mocked Math.random; no network."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

JS_TESTS = ROOT / "tests" / "js"
#: node 20.4 has the mock timers the tests use.
MIN_NODE = (20, 4)


def node_version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    return tuple(int(part) for part in re.findall(r"\d+", out)[:2])


def test_node_tests_pass():
    node = shutil.which("node")
    if node is None or node_version(node) < MIN_NODE:
        pytest.skip(f"node >= {'.'.join(map(str, MIN_NODE))} not on PATH: the node tests of flask-sockets.js need it")
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(JS_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    summary = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", result.stdout, re.MULTILINE))
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert int(summary.get("tests", 0)) > 0, f"node ran no test:\n{result.stdout}"
    assert int(summary["fail"]) == 0 and summary["pass"] == summary["tests"], result.stdout
