"""Keeps the API reference (docs/api.rst) whole and its type references exact.

- Type hints name our types unqualified (``WebSocket``, ``ConnectionClosed``),
  and both ``flask_sockets`` and ``flask_sockets_gevent`` define one of each:
  a bare name means the one of the package whose docstring uses it.
- At the end of the build, every name in the ``__all__`` of every module of
  the three packages must be documented exactly once, at the module that
  defines it or where its package re-exports it (``flask_sockets.Sockets``
  rather than ``flask_sockets.extension.Sockets``). A new public name that
  the reference does not show, or shows twice, is a warning (an error with
  ``-W``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing as t

from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

if t.TYPE_CHECKING:
    from sphinx.application import Sphinx

logger = logging.getLogger(__name__)

PACKAGES = ("flask_sockets", "flask_sockets_gevent", "flask_sockets_gunicorn")

#: Names that both the core and the gevent package define.
SHARED_NAMES = frozenset({"WebSocket", "ConnectionClosed"})


class QualifySharedNames(SphinxPostTransform):
    """Before references are resolved, qualify a bare ``WebSocket`` or
    ``ConnectionClosed`` with the package of the module it is written in."""

    default_priority = 5  # before sphinx's ReferencesResolver (10)

    def run(self, **kwargs: t.Any) -> None:
        for node in self.document.findall(addnodes.pending_xref):
            if node.get("refdomain") != "py" or node.get("reftarget") not in SHARED_NAMES:
                continue
            module = node.get("py:module") or ""
            in_gevent = module.startswith(("flask_sockets_gevent", "flask_sockets_gunicorn"))
            package = "flask_sockets_gevent" if in_gevent else "flask_sockets"
            node["reftarget"] = f"{package}.{node['reftarget']}"


def public_names() -> list[set[str]]:
    """Every name in an ``__all__`` of our packages' modules, as the set of
    the dotted names it has: a name re-exported by its package is one name
    at two places (``flask_sockets.Sockets``, ``flask_sockets.extension.Sockets``).
    Classes and functions imported from other projects are left out."""
    places: dict[tuple[str, int], set[str]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        modules = [package_name] + [
            info.name
            for info in pkgutil.walk_packages(package.__path__, package_name + ".")
            if not info.name.rsplit(".", 1)[1].startswith("_")
        ]
        for module_name in modules:
            module = importlib.import_module(module_name)
            for name in getattr(module, "__all__", ()):
                value = getattr(module, name)
                if inspect.isclass(value) or inspect.isroutine(value):
                    if not getattr(value, "__module__", "").startswith(PACKAGES):
                        continue  # e.g. websockets' apply_mask, which flask_sockets.protocol uses
                places.setdefault((name, id(value)), set()).add(f"{module_name}.{name}")
    return list(places.values())


def check_coverage(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.name != "html":
        return
    domain = app.env.domains.python_domain if hasattr(app.env, "domains") else app.env.get_domain("py")
    documented = {name for name, entry in domain.objects.items() if not entry.aliased}
    for names in sorted(public_names(), key=min):
        shown = sorted(names & documented)
        if not shown:
            logger.warning("public name %s is not in the API reference (docs/api.rst)", " = ".join(sorted(names)))
        elif len(shown) > 1:
            logger.warning("public name %s is documented %d times: %s", min(names), len(shown), ", ".join(shown))


def setup(app: Sphinx) -> dict[str, t.Any]:
    app.add_post_transform(QualifySharedNames)
    app.connect("build-finished", check_coverage)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
