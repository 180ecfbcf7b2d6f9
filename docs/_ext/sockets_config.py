"""The ``.. sockets-config::`` directive: the table of every ``SOCKETS_*`` config key.

The table is made from :data:`flask_sockets.options.DEFAULTS` itself: the keys
and defaults from the dict, the text of each row from the comment above its
key in the source (reStructuredText). A key added, removed or renamed there
changes the table; a key without a comment fails the build. Each key becomes a
``confval`` target, so ``:confval:`SOCKETS_PING_INTERVAL``` links to its row and a
reference to a key that no longer exists is a warning (an error with ``-W``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import typing as t

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

if t.TYPE_CHECKING:
    from sphinx.application import Sphinx


def key_comments(module: t.Any, name: str) -> dict[str, str]:
    """The comment lines right above each key of the dict literal ``name`` in
    ``module``'s source, joined, ``#`` and one space removed."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    for statement in ast.parse(source).body:
        target = statement.target if isinstance(statement, ast.AnnAssign) else None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
        if isinstance(target, ast.Name) and target.id == name and isinstance(statement.value, ast.Dict):
            break
    else:
        raise ExtensionError(f"no dict literal {name} in {module.__name__}")
    comments: dict[str, str] = {}
    for key in statement.value.keys:
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise ExtensionError(f"{module.__name__}.{name}: keys must be string literals")
        above: list[str] = []
        index = key.lineno - 2  # the line above the key (lineno is 1-based)
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip()[1:].removeprefix(" "))
            index -= 1
        comments[key.value] = "\n".join(above).strip()
    return comments


class SocketsConfig(SphinxDirective):
    """``.. sockets-config::``: a table of the keys of ``flask_sockets.options.DEFAULTS``."""

    has_content = False
    module = "flask_sockets.options"

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.module)
        defaults: dict[str, t.Any] = module.DEFAULTS
        comments = key_comments(module, "DEFAULTS")
        if list(comments) != list(defaults):
            raise self.error(f"{self.module}.DEFAULTS: source keys {list(comments)} != runtime keys {list(defaults)}")
        undocumented = [key for key, text in comments.items() if not text]
        if undocumented:
            raise self.error(f"{self.module}.DEFAULTS: no comment above {', '.join(undocumented)}")

        rows = StringList()
        source = f"{self.module}.DEFAULTS"
        for line in (
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 15 55",
            "   :class: sockets-config",
            "",
            "   * - Key",
            "     - Default",
            "     - Meaning, and why this default",
        ):
            rows.append(line, source)
        for key, default in defaults.items():
            rows.append(f"   * - ``{key}``", source)
            rows.append(f"     - ``{default!r}``", source)
            text = comments[key].splitlines()
            rows.append(f"     - {text[0]}", source)
            for line in text[1:]:
                rows.append(f"       {line}" if line else "", source)
        container = nodes.container()
        self.state.nested_parse(rows, self.content_offset, container)

        # One confval target per key, on its row's first cell.
        std = self.env.domains.standard_domain if hasattr(self.env, "domains") else self.env.get_domain("std")
        table = next(iter(container.findall(nodes.table)))
        body_rows = list(next(iter(table.findall(nodes.tbody))).findall(nodes.row))
        for key, row in zip(defaults, body_rows):
            node_id = f"confval-{key}"
            first_cell = next(iter(row.findall(nodes.entry)))
            first_cell["ids"].append(node_id)
            std.note_object("confval", key, node_id, location=self.get_location())
        return list(container.children)


def setup(app: Sphinx) -> dict[str, t.Any]:
    app.add_directive("sockets-config", SocketsConfig)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
