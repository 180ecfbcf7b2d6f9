"""The four distributions: one version, exact pins on each other, the bump
script, and (slow) the built wheels installed into a fresh virtualenv and
serving the README's example and the gunicorn worker."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import textwrap
import urllib.request
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from websockets.sync.client import connect

from .conftest import ROOT
from .conftest import TIMEOUT
from .seed import classic_port
from .seed import seed_examples

if sys.version_info >= (3, 11):
    import tomllib
else:  # hatch (a test dependency) brings tomli on older Pythons
    import tomli as tomllib

BUMP = ROOT / "scripts" / "bump_version.py"
PACKAGES = ROOT / "packages"

#: packages/ directory -> (distribution name, import name or None for the meta package).
DISTRIBUTIONS = {
    "flask-sockets-core": ("flask-sockets-core", "flask_sockets"),
    "flask-sockets-gevent": ("flask-sockets-gevent", "flask_sockets_gevent"),
    "flask-sockets-gunicorn": ("flask-sockets-gunicorn", "flask_sockets_gunicorn"),
    "flask-sockets": ("Flask-Sockets", None),
}
SIBLINGS = {canonicalize_name(name) for name, _ in DISTRIBUTIONS.values()}


def load(root: Path = ROOT) -> dict[str, dict]:
    """packages/ directory name -> parsed pyproject.toml."""
    return {
        path.parent.name: tomllib.loads(path.read_text(encoding="utf-8"))
        for path in sorted((root / "packages").glob("*/pyproject.toml"))
    }


def sibling_requirements(project: dict) -> list[tuple[str, Requirement]]:
    """``(where, requirement)`` for each requirement on a sibling distribution."""
    found = [("dependencies", Requirement(r)) for r in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        found += [(f"optional-dependencies.{extra}", Requirement(r)) for r in requirements]
    return [(where, r) for where, r in found if canonicalize_name(r.name) in SIBLINGS]


def pinned_version(requirement: Requirement) -> str | None:
    """The version of an exact ``==V`` pin, else None."""
    specifiers = list(requirement.specifier)
    if len(specifiers) == 1 and specifiers[0].operator == "==" and "*" not in specifiers[0].version:
        return specifiers[0].version
    return None


def current_version() -> str:
    return str(load()["flask-sockets-core"]["project"]["version"])


def run_bump(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUMP), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


# --- fast: metadata agrees ---------------------------------------------------


def test_the_four_distributions_are_there():
    pyprojects = load()
    assert set(pyprojects) == set(DISTRIBUTIONS)
    for directory, (name, _) in DISTRIBUTIONS.items():
        assert pyprojects[directory]["project"]["name"] == name


def test_versions_and_sibling_pins_agree():
    pyprojects = load()
    versions = {d: p["project"]["version"] for d, p in pyprojects.items()}
    assert len(set(versions.values())) == 1, f"the distributions' versions differ: {versions}"
    version = versions["flask-sockets-core"]
    wrong = [
        f"{d}: {where}: {r}"
        for d, p in pyprojects.items()
        for where, r in sibling_requirements(p["project"])
        if pinned_version(r) != version
    ]
    assert not wrong, f"sibling requirements that are not '=={version}':\n" + "\n".join(wrong)


def test_the_lockstep_pins_exist():
    """Each layer pins the one below it, and the meta package all of them."""
    pins = {d: {canonicalize_name(r.name) for _, r in sibling_requirements(p["project"])} for d, p in load().items()}
    assert pins["flask-sockets-core"] == set()
    assert "flask-sockets-core" in pins["flask-sockets-gevent"]
    assert "flask-sockets-gevent" in pins["flask-sockets-gunicorn"]
    assert pins["flask-sockets"] == {"flask-sockets-core", "flask-sockets-gevent", "flask-sockets-gunicorn"}
    extras = load()["flask-sockets"]["project"]["optional-dependencies"]
    assert {"gevent", "gunicorn", "redis", "metrics", "all"} <= set(extras)
    # [all] is every other extra: each of their requirements is in it.
    everything = {str(Requirement(r)) for r in extras["all"]}
    for extra, requirements in extras.items():
        for requirement in map(Requirement, requirements):
            if extra != "all" and requirement.name != "flask-sockets-core":
                assert str(requirement) in everything, f"[all] lacks {requirement} of [{extra}]"
    core_extras = {e for r in map(Requirement, extras["all"]) if r.name == "flask-sockets-core" for e in r.extras}
    assert {"redis", "metrics"} <= core_extras


def test_bump_check_passes_on_the_repo():
    result = run_bump("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_bump("--check", current_version())
    assert result.returncode == 0, result.stdout + result.stderr


# --- fast: the documented installs are the ones CI checks ---------------------


def test_readme_installs_are_the_checked_ones(monkeypatch: pytest.MonkeyPatch):
    """README.rst's install commands build with the release env's script and
    install exactly the sets scripts/check_install.py (run by CI) checks."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    installs = runpy.run_path(str(ROOT / "scripts" / "check_install.py"))["INSTALLS"]
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    commands = [shlex.split(line) for line in re.findall(r"^ {4}\$ (.*?)(?:\s+#.*)?$", readme, re.MULTILINE)]
    assert ["hatch", "run", "release:build"] in commands
    scripts = tomllib.loads((ROOT / "hatch.toml").read_text(encoding="utf-8"))["envs"]["release"]["scripts"]
    assert scripts["build"].startswith("python scripts/build_dist.py")
    documented = [c[4] for c in commands if c[:4] == ["pip", "install", "--find-links", "dist"] and len(c) == 5]
    assert sorted(documented) == sorted(installs)


# --- fast: the supported versions are the tested ones -------------------------


def hatch_test_env() -> dict:
    return tomllib.loads((ROOT / "hatch.toml").read_text(encoding="utf-8"))["envs"]["hatch-test"]


def claimed_pythons(project: dict) -> list[str]:
    """The ``Programming Language :: Python :: 3.X`` classifiers' versions."""
    found = (re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c) for c in project["classifiers"])
    return [match[1] for match in found if match]


def test_the_test_matrix_runs_every_claimed_python():
    """requires-python, the classifiers and hatch.toml's test matrix name the
    same Pythons, and the lower-bounds environment runs on the oldest."""
    projects = {d: p["project"] for d, p in load().items()}
    claims = {d: (p["requires-python"], claimed_pythons(p)) for d, p in projects.items()}
    assert len(set(map(repr, claims.values()))) == 1, f"the distributions claim different Pythons: {claims}"
    requires_python, classified = claims["flask-sockets-core"]
    from packaging.version import Version

    versions = sorted(classified, key=Version)
    assert requires_python == f">={versions[0]}"
    # Consecutive minor versions: no hole between the oldest and the newest.
    minors = [Version(v).minor for v in versions]
    assert minors == list(range(minors[0], minors[0] + len(minors))), versions
    matrices = hatch_test_env()["matrix"]
    by_python = [m for m in matrices if set(m) == {"python"}]
    assert len(by_python) == 1 and sorted(by_python[0]["python"], key=Version) == versions
    lowest = [m for m in matrices if m.get("deps") == ["lowest"]]
    assert len(lowest) == 1 and lowest[0]["python"] == [versions[0]]
    # Only the interpreters on the machine, never a download.
    assert hatch_test_env()["python-sources"] == ["external"]


def test_the_lowest_env_pins_every_lower_bound():
    """hatch-test.py3.9-lowest pins each third-party requirement of the
    distributions at its ``>=`` bound: nothing more, nothing less, same version."""
    from packaging.version import Version

    bounds: dict[str, Version] = {}
    for directory, pyproject in load().items():
        project = pyproject["project"]
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        for requirement in map(Requirement, requirements):
            name = canonicalize_name(requirement.name)
            if name in SIBLINGS:
                continue
            lower = [s for s in requirement.specifier if s.operator == ">="]
            assert len(lower) == 1, f"{directory}: {requirement} has no single >= lower bound"
            assert bounds.setdefault(name, Version(lower[0].version)) == Version(lower[0].version), (
                f"{directory}: {requirement} disagrees with another distribution's bound on {name}"
            )
    overrides = hatch_test_env()["overrides"]["matrix"]["deps"]["extra-dependencies"]
    pins: dict[str, Version] = {}
    for entry in overrides:
        assert entry["if"] == ["lowest"], entry
        requirement = Requirement(entry["value"])
        version = pinned_version(requirement)
        assert version is not None, f"{requirement} is not an exact == pin"
        pins[canonicalize_name(requirement.name)] = Version(version)
    assert pins == bounds


# --- fast: the bump script, on a copy ----------------------------------------


@pytest.fixture
def copy_root(tmp_path: Path) -> Path:
    """A root holding copies of packages/*/pyproject.toml (and nothing else)."""
    root = tmp_path / "repo"
    for path in PACKAGES.glob("*/pyproject.toml"):
        target = root / "packages" / path.parent.name / "pyproject.toml"
        target.parent.mkdir(parents=True)
        shutil.copyfile(path, target)
    return root


def texts(root: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text(encoding="utf-8") for p in (root / "packages").glob("*/pyproject.toml")}


def test_bump_moves_every_version_and_pin(copy_root: Path):
    old_version = current_version()
    new_version = "12.0.1rc2"
    before = texts(copy_root)

    result = run_bump("--root", copy_root, new_version)
    assert result.returncode == 0, result.stdout + result.stderr

    after = load(copy_root)
    for directory, pyproject in after.items():
        assert pyproject["project"]["version"] == new_version, directory
        for where, r in sibling_requirements(pyproject["project"]):
            assert pinned_version(r) == new_version, f"{directory}: {where}: {r}"
    # Everything else is byte for byte what it was: comments, layout, other requirements.
    for directory, text in texts(copy_root).items():
        expected = before[directory].replace(f'version = "{old_version}"', f'version = "{new_version}"', 1)
        expected = re.sub(
            r'("(?:flask-sockets-core|flask-sockets-gevent|flask-sockets-gunicorn)(?:\[[^\]]*\])?)=='
            + re.escape(old_version),
            rf"\g<1>=={new_version}",
            expected,
        )
        assert text == expected, directory
    assert "# We subclass gevent-websocket" in texts(copy_root)["flask-sockets-gevent"]

    result = run_bump("--root", copy_root, "--check", new_version)
    assert result.returncode == 0, result.stdout + result.stderr
    # The real repo was not touched.
    assert current_version() == old_version


def test_bump_handles_extras_markers_and_spacing(copy_root: Path):
    path = copy_root / "packages" / "flask-sockets" / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    version = current_version()
    text = text.replace(
        "[project.optional-dependencies]",
        "[project.optional-dependencies]\n"
        "odd = [\n"
        f"    'Flask_Sockets.Gevent[x, y] == {version} ; python_version >= \"3.9\"',  # a comment [with brackets]\n"
        '    "flask-sockets-coreish==1.0",\n'
        "]\n",
        1,
    )
    path.write_text(text, encoding="utf-8")

    result = run_bump("--root", copy_root, "0.9.0")
    assert result.returncode == 0, result.stdout + result.stderr

    new = path.read_text(encoding="utf-8")
    assert "'Flask_Sockets.Gevent[x, y] == 0.9.0 ; python_version >= \"3.9\"',  # a comment [with brackets]" in new
    assert '"flask-sockets-coreish==1.0"' in new  # not a sibling


def test_check_lists_every_disagreement(copy_root: Path):
    version = current_version()
    gevent = copy_root / "packages" / "flask-sockets-gevent" / "pyproject.toml"
    gevent.write_text(
        gevent.read_text().replace(f'"flask-sockets-core=={version}"', '"flask-sockets-core==0.0.1"'), encoding="utf-8"
    )
    core = copy_root / "packages" / "flask-sockets-core" / "pyproject.toml"
    core.write_text(core.read_text().replace(f'version = "{version}"', 'version = "0.0.2"'), encoding="utf-8")
    meta = copy_root / "packages" / "flask-sockets" / "pyproject.toml"
    meta.write_text(
        meta.read_text().replace(
            f'gunicorn = ["flask-sockets-gunicorn=={version}"]', 'gunicorn = ["flask-sockets-gunicorn>=0.1"]'
        ),
        encoding="utf-8",
    )
    before = texts(copy_root)

    result = run_bump("--root", copy_root, "--check")
    assert result.returncode == 1
    report = result.stderr
    assert "versions differ" in report
    assert "flask-sockets-core==0.0.1" in report and "flask-sockets-gevent" in report
    assert "'flask-sockets-gunicorn>=0.1' is not an exact '==' pin" in report
    assert texts(copy_root) == before  # --check writes nothing

    # A bump refuses to paper over a requirement it cannot re-pin, and writes nothing.
    result = run_bump("--root", copy_root, "0.5.0")
    assert result.returncode != 0
    assert "flask-sockets-gunicorn>=0.1" in result.stderr
    assert texts(copy_root) == before


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("banana", "not a valid PEP 440 version"),
        ("1.0..0", "not a valid PEP 440 version"),
        ("v1.0.0", "write it as '1.0.0'"),
        ("1.0.0-rc1", "write it as '1.0.0rc1'"),
        ("1.0.0+local", "local version label"),
    ],
)
def test_bump_rejects_a_bad_version(copy_root: Path, version: str, message: str):
    before = texts(copy_root)
    result = run_bump("--root", copy_root, version)
    assert result.returncode == 2
    assert message in result.stderr
    assert texts(copy_root) == before


def test_bump_without_packaging(copy_root: Path):
    """Without ``packaging`` importable, versions are checked with a regex."""
    shim = (
        "import runpy, sys; sys.modules['packaging'] = None; "
        f"sys.argv = [{str(BUMP)!r}, *sys.argv[1:]]; runpy.run_path({str(BUMP)!r}, run_name='__main__')"
    )
    for bad in ("banana", "v1.0", "1.0+x", "01.2"):
        result = subprocess.run(
            [sys.executable, "-c", shim, "--root", str(copy_root), bad], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, (bad, result.stderr)
        assert "PEP 440" in result.stderr
    result = subprocess.run(
        [sys.executable, "-c", shim, "--root", str(copy_root), "2!1.0.post1.dev3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert {p["project"]["version"] for p in load(copy_root).values()} == {"2!1.0.post1.dev3"}


# --- fast: the core's wheel ships the browser client ---------------------------


def test_the_core_wheel_ships_the_browser_client(tmp_path: Path):
    """flask-sockets.js and its .d.ts are package data of flask_sockets (the
    extension serves the file from the installed package), byte for byte."""
    build_env = {k: v for k, v in os.environ.items() if k != "HATCH_ENV_ACTIVE"}
    core = PACKAGES / "flask-sockets-core"
    run([*hatch_command(), "build", "-t", "wheel", tmp_path], timeout=300, cwd=core, env=build_env)
    (wheel,) = tmp_path.glob("flask_sockets_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("flask-sockets.js", "flask-sockets.d.ts"):
            source = core / "src" / "flask_sockets" / "static" / name
            assert archive.read(f"flask_sockets/static/{name}") == source.read_bytes(), name


# --- slow: wheels in a fresh virtualenv --------------------------------------

#: The first example of the original Flask-Sockets README, verbatim.

GUNICORN_APP = """\
from flask import Flask
from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route("/echo")
def echo(ws):
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send(message)


@app.route("/")
def hello():
    return "Hello from gunicorn!"
"""

#: Keep the subprocesses from seeing this checkout or the test env's packages.
CLEAN_ENV = {"PYTHONPATH": "", "PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1"}


@dataclasses.dataclass
class Installed:
    version: str
    venv: Path
    python: Path
    site_packages: Path
    wheels: dict[str, Path]  # packages/ directory -> wheel


def run(argv: list[str | Path], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def hatch_command() -> list[str]:
    hatch = shutil.which("hatch")
    return [hatch] if hatch else [sys.executable, "-m", "hatch"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The four wheels, built from packages/ with hatch and installed with
    pip, as a user would, into a new virtualenv."""
    version = current_version()
    base = tmp_path_factory.mktemp("wheels")
    dist = base / "dist"
    wheels = {}
    # Under `hatch test`, HATCH_ENV_ACTIVE names the test env, and a nested
    # `hatch build` would refuse it ("is not a builder environment").
    build_env = {k: v for k, v in os.environ.items() if k != "HATCH_ENV_ACTIVE"}
    for directory in DISTRIBUTIONS:
        run([*hatch_command(), "build", "-t", "wheel", dist], timeout=600, cwd=PACKAGES / directory, env=build_env)
        name = DISTRIBUTIONS[directory][0]
        wheel = dist / f"{canonicalize_name(name).replace('-', '_')}-{version}-py3-none-any.whl"
        assert wheel.is_file(), f"hatch build made no {wheel.name}: {sorted(p.name for p in dist.iterdir())}"
        wheels[directory] = wheel

    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], timeout=300)
    python = venv / "bin" / "python"
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--find-links",
            dist,
            f"Flask-Sockets[all]=={version}",
            "websockets",
        ],
        timeout=900,
        cwd=base,
    )
    site_packages = Path(
        run(
            [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], timeout=60
        ).stdout.strip()
    )
    return Installed(version, venv, python, site_packages, wheels)


@pytest.mark.slow
def test_wheels_install_into_a_fresh_venv(installed: Installed, tmp_path: Path):
    probe = textwrap.dedent(
        """
        import importlib, importlib.metadata, json
        modules = {m: importlib.import_module(m).__file__ for m in
                   ("flask_sockets", "flask_sockets_gevent", "flask_sockets_gunicorn")}
        import flask_sockets, flask_sockets_gunicorn
        print(json.dumps({
            "modules": modules,
            "versions": {d: importlib.metadata.version(d) for d in
                         ("Flask-Sockets", "flask-sockets-core", "flask-sockets-gevent", "flask-sockets-gunicorn")},
            "legacy_worker": flask_sockets.worker is flask_sockets_gunicorn.worker,
        }))
        """
    )
    result = run([installed.python, "-I", "-c", probe], timeout=60, cwd=tmp_path)
    found = json.loads(result.stdout)

    for module, file in found["modules"].items():
        path = Path(file).resolve()
        assert path.is_relative_to(installed.site_packages.resolve()), f"{module} imported from {path}"
        assert not path.is_relative_to(ROOT), f"{module} imported from the checkout: {path}"
    assert found["versions"] == dict.fromkeys(found["versions"], installed.version)
    assert found["legacy_worker"] is True

    for directory, (_, module) in DISTRIBUTIONS.items():
        with zipfile.ZipFile(installed.wheels[directory]) as wheel:
            names = wheel.namelist()
            if module is None:  # the meta package ships metadata only
                assert all(".dist-info/" in n for n in names), names
                continue
            assert f"{module}/py.typed" in names
            assert (installed.site_packages / module / "py.typed").is_file()
            if module == "flask_sockets":  # the browser client, which the extension serves
                assert {f"{module}/static/flask-sockets.js", f"{module}/static/flask-sockets.d.ts"} <= set(names)
            # What pip installed is what hatch built (not a same-named release from an index).
            for name in names:
                if name.startswith(f"{module}/"):
                    assert (installed.site_packages / name).read_bytes() == wheel.read(name), name


def http_get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=TIMEOUT) as response:
        return response.status, response.read().decode()


def ws_connect(url: str):
    options = {"open_timeout": TIMEOUT, "close_timeout": 5}
    if "proxy" in inspect.signature(connect).parameters:
        options["proxy"] = None
    return connect(url, **options)


def assert_echoes(url: str) -> None:
    with ws_connect(url) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        ws.send("héllo ✓")
        assert ws.recv(timeout=TIMEOUT) == "héllo ✓"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01binary"


@pytest.mark.slow
def test_readme_example_runs_from_the_wheels(installed: Installed, spawn, tmp_path: Path):
    """The seed README's first example, verbatim, serves from the installed wheels."""
    script = tmp_path / "hello.py"
    script.write_text(seed_examples()[0], encoding="utf-8")
    with classic_port() as port:
        process = spawn([str(installed.python), str(script)], port=port, cwd=tmp_path, env=CLEAN_ENV)
        try:
            assert http_get(f"{process.server.http_url}/") == (200, "Hello World!")
            assert_echoes(f"{process.server.ws_url}/echo")
        finally:
            process.stop()


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["flask_sockets_gunicorn.worker", "flask_sockets.worker"])
def test_gunicorn_worker_runs_from_the_wheels(installed: Installed, spawn, port: int, tmp_path: Path, worker: str):
    (tmp_path / "echo_app.py").write_text(GUNICORN_APP, encoding="utf-8")
    argv = [
        str(installed.venv / "bin" / "gunicorn"),
        "-k", worker,
        "--bind", f"127.0.0.1:{port}",
        "--workers", "1",
        "--graceful-timeout", "2",
        "--chdir", str(tmp_path),
        "echo_app:app",
    ]  # fmt: skip
    server = spawn(argv, port=port, cwd=tmp_path, env=CLEAN_ENV).server

    assert http_get(f"{server.http_url}/") == (200, "Hello from gunicorn!")
    assert_echoes(f"{server.ws_url}/echo")
