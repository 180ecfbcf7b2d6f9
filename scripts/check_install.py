"""Install the built distributions as a user would, and check what each install brings.

Usage, after ``hatch run release:build`` (standard library only)::

    hatch run release:check                    # from dist/ at the repository root
    python scripts/check_install.py --find-links DIR [INSTALL ...]

For each install (by default all of :data:`INSTALLS`) it creates a fresh
virtualenv that has only pip, runs ``pip install --find-links DIR
'<requirement>'`` (the command docs/installation.rst gives), then, in that
virtualenv, imports every module the install promises, checks that each
module it does not promise (a server, redis-py) is absent, and that every
Flask-Sockets distribution installed is the version of the checkout.
Prints one line per install; exits 1 if any is wrong. The installs run side
by side (``--jobs``, one more than the CPUs by default: pip mostly waits).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bump_version import ROOT
from bump_version import load_packages

#: The modules of each distribution and of its third-party requirements.
CORE = ["flask_sockets", "flask", "werkzeug", "websockets"]
GEVENT = ["flask_sockets_gevent", "gevent", "geventwebsocket"]
GUNICORN = ["flask_sockets_gunicorn", "gunicorn"]
REDIS = ["redis"]
METRICS = ["prometheus_client"]

#: pip requirement -> (modules it must bring, modules it must not bring).
INSTALLS: dict[str, tuple[list[str], list[str]]] = {
    "flask-sockets-core": (CORE, GEVENT + GUNICORN + REDIS + METRICS),
    "Flask-Sockets": (CORE + GEVENT, GUNICORN + REDIS + METRICS),
    "Flask-Sockets[gunicorn]": (CORE + GEVENT + GUNICORN, REDIS + METRICS),
    "Flask-Sockets[redis]": (CORE + GEVENT + REDIS, GUNICORN + METRICS),
    "Flask-Sockets[metrics]": (CORE + GEVENT + METRICS, GUNICORN + REDIS),
    "Flask-Sockets[all]": (CORE + GEVENT + GUNICORN + REDIS + METRICS, []),
}

#: Run in the new virtualenv: what is importable, and the installed versions.
PROBE = textwrap.dedent(
    """
    import importlib, importlib.metadata, importlib.util, json, sys
    present, absent = json.loads(sys.argv[1])
    report = {"missing": [], "unexpected": [], "versions": {}}
    for module in present:
        try:
            importlib.import_module(module)
        except ImportError as e:
            report["missing"].append(f"{module} ({e})")
    report["unexpected"] = [m for m in absent if importlib.util.find_spec(m) is not None]
    for name in ("Flask-Sockets", "flask-sockets-core", "flask-sockets-gevent", "flask-sockets-gunicorn"):
        try:
            report["versions"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    print(json.dumps(report))
    """
)


def check(requirement: str, find_links: Path, version: str, workdir: Path) -> list[str]:
    """Install ``requirement`` into a new virtualenv under ``workdir``; return what is wrong."""
    present, absent = INSTALLS[requirement]
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--find-links", str(find_links), requirement]
    result = subprocess.run(pip, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return [f"pip install failed:\n{result.stdout}{result.stderr}"]
    # -I: nothing from this checkout or the caller's environment on sys.path.
    probe = [str(python), "-I", "-c", PROBE, json.dumps([present, absent])]
    report = json.loads(subprocess.run(probe, capture_output=True, text=True, check=True, cwd=workdir).stdout)
    problems = [f"cannot import {m}" for m in report["missing"]]
    problems += [f"{m} is installed, but {requirement} does not bring it" for m in report["unexpected"]]
    problems += [f"{name} {v} installed, not {version}" for name, v in report["versions"].items() if v != version]
    if "flask-sockets-core" not in report["versions"]:
        problems.append("flask-sockets-core is not installed")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_install.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--find-links", type=Path, default=ROOT / "dist", help="the built distributions (default: %(default)s)"
    )
    parser.add_argument("installs", nargs="*", metavar="INSTALL", help=f"of {', '.join(INSTALLS)} (default: all)")
    parser.add_argument(
        "--jobs", type=int, default=(os.cpu_count() or 1) + 1, help="installs at once (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    unknown = [i for i in args.installs if i not in INSTALLS]
    if unknown:
        parser.error(f"unknown install {unknown[0]!r}; choose from {', '.join(INSTALLS)}")
    find_links: Path = args.find_links.resolve()
    version = load_packages(ROOT)[0].version
    if not any(find_links.glob(f"flask_sockets_core-{version}-*.whl")):
        print(f"error: no flask-sockets-core {version} wheel in {find_links}: build it first", file=sys.stderr)
        return 2

    def check_in_new_directory(requirement: str) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="flask-sockets-install-") as workdir:
            return check(requirement, find_links, str(version), Path(workdir))

    requirements = args.installs or list(INSTALLS)
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = pool.map(check_in_new_directory, requirements)
        for requirement, problems in zip(requirements, results):  # in order, as they are done
            if problems:
                failed += 1
                print(f"FAIL pip install '{requirement}':\n  " + "\n  ".join(problems), flush=True)
            else:
                print(f"ok   pip install '{requirement}': {', '.join(INSTALLS[requirement][0])}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
