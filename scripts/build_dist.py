"""Build the four Flask-Sockets distributions into one folder, ready to install or release.

Usage (from anywhere; needs the ``build`` and ``twine`` packages, which the
hatch environment ``release`` has)::

    hatch run release:build                   # dist/ at the repository root
    python scripts/build_dist.py --outdir DIR

It checks that the four versions and their ``==`` pins on each other agree
(``bump_version.py --check``), removes the Flask-Sockets files an earlier
build left in the folder, builds an sdist and a wheel (from that sdist) of
each of ``packages/*`` with ``python -m build``, checks that exactly those
eight files are there, and checks their metadata with ``twine check
--strict``. Then ``pip install --find-links DIR 'Flask-Sockets[all]'``
installs from the folder (docs/installation.rst).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from bump_version import ROOT
from bump_version import BumpError
from bump_version import disagreements
from bump_version import load_packages


def file_stem(name: str) -> str:
    """How wheels and sdists spell a distribution's name: ``Flask-Sockets`` -> ``flask_sockets``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def build(outdir: Path) -> list[Path]:
    """Build every distribution into ``outdir``; return the files made."""
    packages = load_packages(ROOT)
    problems = disagreements(packages)
    if problems:
        raise BumpError("the distributions are not in lockstep (see bump_version.py):\n  " + "\n  ".join(problems))
    version = packages[0].version
    suffixes = ("-py3-none-any.whl", ".tar.gz")
    expected = sorted(outdir / f"{file_stem(p.name)}-{version}{suffix}" for p in packages for suffix in suffixes)
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in outdir.iterdir():
        if any(stale.name.startswith(f"{file_stem(p.name)}-") for p in packages):
            stale.unlink()
    for p in packages:
        print(f"building {p.name} {version}", flush=True)
        subprocess.run([sys.executable, "-m", "build", "--outdir", str(outdir), str(p.path.parent)], check=True)
    made = sorted(path for path in outdir.iterdir() if path.name.endswith((".whl", ".tar.gz")))
    if made != expected:
        raise BumpError(f"expected {[f.name for f in expected]} in {outdir}, found {[f.name for f in made]}")
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, made)], check=True)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_dist.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--outdir", type=Path, default=ROOT / "dist", help="where the sdists and wheels go (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    outdir: Path = args.outdir.resolve()
    try:
        made = build(outdir)
    except BumpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"error: {' '.join(e.cmd)} failed with status {e.returncode}", file=sys.stderr)
        return 1
    print(f"\n{len(made)} files in {outdir}:")
    for path in made:
        print(f"  {path.name}")
    print(f"Install with: pip install --find-links {outdir} 'Flask-Sockets[all]'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
