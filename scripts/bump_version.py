"""Move every Flask-Sockets distribution to one version, or check that they agree.

The four distributions in ``packages/*`` are released in lockstep: they all
carry the same version, and every requirement of one on another (in
``[project] dependencies`` and ``[project.optional-dependencies]``) is an
exact ``==`` pin of that version.

Usage::

    python scripts/bump_version.py 0.4.0        # (or: hatch run bump 0.4.0)
    python scripts/bump_version.py --check      # exit 1 if anything disagrees
    python scripts/bump_version.py --check 0.4.0  # ... or differs from 0.4.0

The pyproject files are rewritten as text, so comments and layout are kept;
only the ``version`` value and the sibling pins change. Every rewritten file
is parsed again with ``tomllib`` and compared with what was meant to change
before anything is written, and nothing is written unless every file passes.

Standard library only; ``packaging`` is used when importable (it gives a
normalised spelling to suggest for a version that is not normalised).
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the monorepo's tooling runs on 3.11+
    try:
        import tomli as tomllib
    except ImportError:
        sys.exit("bump_version.py needs Python 3.11+ (tomllib) or the 'tomli' package.")

try:
    from packaging.version import InvalidVersion
    from packaging.version import Version
except ImportError:  # pragma: no cover - exercised only without packaging
    Version = None  # type: ignore[assignment,misc]
    InvalidVersion = ValueError  # type: ignore[assignment,misc]

ROOT = Path(__file__).resolve().parent.parent

#: A public PEP 440 version in normal form (what ``str(Version(v))`` gives,
#: without a local label): ``[N!]N(.N)*[{a|b|rc}N][.postN][.devN]``.
NORMALISED_VERSION = re.compile(
    r"^(?:(?:0|[1-9][0-9]*)!)?(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*"
    r"(?:(?:a|b|rc)(?:0|[1-9][0-9]*))?(?:\.post(?:0|[1-9][0-9]*))?(?:\.dev(?:0|[1-9][0-9]*))?$"
)

#: The start of a PEP 508 requirement: name, optional extras, then the rest.
REQUIREMENT = re.compile(
    r"^(?P<lead>\s*)(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
    r"(?P<extras>\s*\[[^\]]*\])?(?P<rest>.*)$",
    re.DOTALL,
)

#: An exact pin inside a requirement's specifiers: ``==V`` but not ``===V``.
EXACT_PIN = re.compile(r"(?<![=!<>~])==(?!=)(?P<space>\s*)(?P<version>[^\s,;)]+)")


class BumpError(Exception):
    """Something is wrong with the arguments or the files; nothing was written."""


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Flask_Sockets`` -> ``flask-sockets``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def validate_version(text: str) -> str:
    """Return ``text`` if it is a public PEP 440 version in normal form, else raise BumpError."""
    if Version is not None:
        try:
            parsed = Version(text)
        except InvalidVersion:
            raise BumpError(f"{text!r} is not a valid PEP 440 version (for example: 0.4.0, 1.0.0rc1).") from None
        if parsed.local is not None:
            raise BumpError(f"{text!r} has a local version label ('+{parsed.local}'), which PyPI does not accept.")
        if str(parsed) != text:
            raise BumpError(f"{text!r} is not in normal form; write it as {str(parsed)!r}.")
        return text
    if not NORMALISED_VERSION.match(text):
        raise BumpError(
            f"{text!r} is not a public PEP 440 version in normal form (for example: 0.4.0, 1.0.0rc1, 1.0.0.post1)."
        )
    return text


# --- reading -----------------------------------------------------------------


@dataclass
class Package:
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["project"]["name"])

    @property
    def version(self) -> str | None:
        version = self.data["project"].get("version")
        return version if isinstance(version, str) else None


def load_packages(root: Path) -> list[Package]:
    paths = sorted((root / "packages").glob("*/pyproject.toml"))
    if not paths:
        raise BumpError(f"no packages/*/pyproject.toml under {root}")
    packages = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise BumpError(f"{path}: not valid TOML: {e}") from None
        if not isinstance(data.get("project"), dict) or "name" not in data["project"]:
            raise BumpError(f"{path}: no [project] name")
        if "version" in data["project"].get("dynamic", []):
            raise BumpError(f"{path}: the version is dynamic; this script only handles a static [project] version")
        packages.append(Package(path, text, data))
    return packages


def requirement_lists(data: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The requirement arrays a release pins siblings in, labelled for messages."""
    project = data.get("project", {})
    lists = [("dependencies", project.get("dependencies", []))]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lists.append((f"optional-dependencies.{extra}", requirements))
    return lists


def sibling_pin(requirement: str, siblings: set[str]) -> tuple[str, str | None] | None:
    """For a requirement on a sibling, ``(name, pinned version or None)``; else ``None``."""
    match = REQUIREMENT.match(requirement)
    if match is None or canonical_name(match["name"]) not in siblings:
        return None
    specifier = match["rest"].split(";", 1)[0]
    pins = EXACT_PIN.findall(specifier)
    return canonical_name(match["name"]), (pins[0][1] if len(pins) == 1 else None)


# --- checking ----------------------------------------------------------------


def disagreements(packages: list[Package], expected: str | None = None) -> list[str]:
    """Everything that keeps the packages from being one release at ``expected``
    (or at their common version, if ``expected`` is None)."""
    problems = []
    versions = {p.path: p.version for p in packages}
    for path, version in versions.items():
        if version is None:
            problems.append(f"{path}: [project] has no static version")
    if expected is None:
        found = sorted({v for v in versions.values() if v is not None})
        if len(found) > 1:
            listing = ", ".join(f"{p.name} {p.version}" for p in packages)
            problems.append(f"the distributions' versions differ: {listing}")
            # Report pins against the most common version, so the list stays short.
            expected = max(found, key=lambda v: sum(1 for x in versions.values() if x == v))
        elif found:
            expected = found[0]
    else:
        for p in packages:
            if p.version is not None and p.version != expected:
                problems.append(f"{p.path}: {p.name} is at version {p.version}, expected {expected}")
    siblings = {canonical_name(p.name) for p in packages}
    for p in packages:
        for label, requirements in requirement_lists(p.data):
            for requirement in requirements:
                pin = sibling_pin(str(requirement), siblings)
                if pin is None:
                    continue
                if pin[1] is None:
                    problems.append(f"{p.path}: {label}: {requirement!r} is not an exact '==' pin")
                elif expected is not None and pin[1] != expected:
                    problems.append(f"{p.path}: {label}: {requirement!r} pins {pin[1]}, expected {expected}")
    return problems


# --- rewriting ---------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<keys>[^\]#]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*(?P<key>[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=\s*")
_STRING = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'")


def _table_keys(header: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in header.split("."))


def _rewrite_requirement(literal: str, siblings: set[str], version: str) -> str:
    """Re-pin a quoted requirement string if it pins a sibling with ``==``."""
    quote, body = literal[0], literal[1:-1]
    match = REQUIREMENT.match(body)
    if match is None or canonical_name(match["name"]) not in siblings:
        return literal
    rest = match["rest"]
    specifier, sep, marker = rest.partition(";")
    specifier = EXACT_PIN.sub(lambda m: f"=={m['space']}{version}", specifier, count=1)
    return quote + body[: match.start("rest")] + specifier + sep + marker + quote


def rewrite(text: str, siblings: set[str], version: str) -> str:
    """Set ``[project] version`` and re-pin sibling requirements in one
    pyproject.toml, as text. Single-line string values only (as in
    ``packages/*/pyproject.toml``); anything else is left alone and then
    caught by :func:`verify`."""
    out = []
    table: tuple[str, ...] = ()
    key: str | None = None  # the key whose (possibly multi-line) value we are in
    depth = 0  # open brackets of that value
    for line in text.splitlines(keepends=True):
        start = 0
        if depth == 0:
            header = _HEADER.match(line)
            if header and not _KEY.match(line):
                table = _table_keys(header["keys"])
                out.append(line)
                continue
            assignment = _KEY.match(line)
            if assignment is None:
                out.append(line)
                continue
            key = assignment["key"].strip("\"'")
            start = assignment.end()
        in_deps = (table == ("project",) and key == "dependencies") or table == ("project", "optional-dependencies")
        is_version = table == ("project",) and key == "version" and depth == 0
        pieces = [line[:start]]
        i = start
        while i < len(line):
            ch = line[i]
            if ch == "#":
                pieces.append(line[i:])
                break
            if ch in "\"'":
                literal = _STRING.match(line, i)
                if literal is None:  # a multi-line string: leave the line as it is
                    pieces.append(line[i:])
                    break
                value = literal.group()
                if is_version:
                    value = value[0] + version + value[0]
                elif in_deps and depth > 0:
                    value = _rewrite_requirement(value, siblings, version)
                pieces.append(value)
                i = literal.end()
                continue
            if ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
            pieces.append(ch)
            i += 1
        out.append("".join(pieces))
    return "".join(out)


def expected_data(data: dict[str, Any], siblings: set[str], version: str) -> dict[str, Any]:
    """What ``data`` should parse as after the bump (computed on the parsed
    TOML, independently of the textual rewrite)."""
    new = copy.deepcopy(data)
    new["project"]["version"] = version
    project = new["project"]

    def repin(requirement: str) -> str:
        match = REQUIREMENT.match(requirement)
        if match is None or canonical_name(match["name"]) not in siblings:
            return requirement
        specifier, sep, marker = match["rest"].partition(";")
        specifier = EXACT_PIN.sub(lambda m: f"=={m['space']}{version}", specifier, count=1)
        return requirement[: match.start("rest")] + specifier + sep + marker

    if "dependencies" in project:
        project["dependencies"] = [repin(r) for r in project["dependencies"]]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        project["optional-dependencies"][extra] = [repin(r) for r in requirements]
    return new


def bump(root: Path, version: str) -> list[Path]:
    """Move all packages under ``root`` to ``version``; return the files changed."""
    version = validate_version(version)
    packages = load_packages(root)
    siblings = {canonical_name(p.name) for p in packages}
    new_texts: dict[Path, str] = {}
    bumped: list[Package] = []
    for p in packages:
        new_text = rewrite(p.text, siblings, version)
        try:
            parsed = tomllib.loads(new_text)
        except tomllib.TOMLDecodeError as e:  # pragma: no cover - a bug in rewrite()
            raise BumpError(f"{p.path}: the rewrite is not valid TOML ({e}); nothing was written") from None
        if parsed != expected_data(p.data, siblings, version):
            raise BumpError(
                f"{p.path}: could not rewrite the version and sibling pins as text (is a value spread"
                " over lines in an unusual way, or given as a dotted key?); nothing was written"
            )
        new_texts[p.path] = new_text
        bumped.append(Package(p.path, new_text, parsed))
    problems = disagreements(bumped, version)
    if problems:  # e.g. a sibling requirement that is not an == pin: not ours to invent
        raise BumpError("the bump would leave these disagreements; nothing was written:\n  " + "\n  ".join(problems))
    # Every file is verified: now write them all.
    changed = []
    for p in packages:
        if new_texts[p.path] != p.text:
            p.path.write_text(new_texts[p.path], encoding="utf-8")
            changed.append(p.path)
    return changed


# --- command line ------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bump_version.py",
        description="Set one version on all packages/*/pyproject.toml and re-pin their == requirements on each other.",
    )
    parser.add_argument("version", nargs="?", help="the new version, e.g. 0.4.0 (with --check: the expected one)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 and list every disagreement if the versions and sibling pins are not all equal",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the monorepo root holding packages/ (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    try:
        if args.check:
            expected = validate_version(args.version) if args.version is not None else None
            packages = load_packages(root)
            problems = disagreements(packages, expected)
            if problems:
                print(f"{len(problems)} disagreement(s):", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                return 1
            names = ", ".join(p.name for p in packages)
            print(f"OK: {names} are all at {packages[0].version}, with matching == pins.")
            return 0
        if args.version is None:
            parser.error("give the new version (e.g. 0.4.0), or --check")
        changed = bump(root, args.version)
    except BumpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path.relative_to(root) if path.is_relative_to(root) else path}")
    print(f"All {len(load_packages(root))} distributions are at {args.version}." + ("" if changed else " (no change)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
