"""Sphinx configuration of the Flask-Sockets documentation.

Build it with ``hatch run docs:build`` (HTML, warnings are errors, every
reference must resolve), run its snippets with ``hatch run docs:doctest``,
and write with ``hatch run docs:serve`` (rebuilds on save).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

# Our small local extensions (docs/_ext/), e.g. the table of SOCKETS_* keys.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "Flask-Sockets"
copyright = "Flask-Sockets contributors"  # noqa: A001 - Sphinx's name for it
release = metadata.version("flask-sockets-core")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    # The versionadded/versionchanged notes of the API reference, folded in
    # the changelog style of the Pallets projects.
    "sphinxcontrib.log_cabinet",
    # The theme of Flask, Werkzeug, Jinja and their extensions (Flask-SQLAlchemy,
    # Flask-WTF, ...): Flask users find their way around a page that looks and
    # is laid out like the docs they already read, with the same sidebar, API
    # entries and code styling. It works with current Sphinx (checked on 9.0).
    "pallets_sphinx_themes",
    # SOCKETS_* config table generated from flask_sockets.options.DEFAULTS.
    "sockets_config",
    # Bare WebSocket/ConnectionClosed in type hints; every public name documented once.
    "sockets_api",
]

# -- The build has no network --------------------------------------------------
# No intersphinx: references to Flask, Werkzeug, gevent or the standard library
# are written as plain text or links, and nitpicky mode (``-n``) checks that
# every reference to *our* names resolves; see nitpick_ignore_regex below.
nitpicky = True

# -- autodoc ---------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True}
autoclass_content = "class"

# Type hints name Flask's, Werkzeug's, gevent's and the standard library's types
# (``Flask``, ``Blueprint``, ``t.Any``, ``WSGIEnvironment``...), which have no
# page here without intersphinx. Only references to our own names must resolve.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!flask_sockets).*"),
    # Private helpers (``_Pause``, the type of ``PAUSE``) are not documented.
    (r"py:.*", r"flask_sockets\w*(\.\w+)*\._\w*"),
    # The TypeVar of the @sockets.on_presence decorator's signature.
    (r"py:class", r"flask_sockets\.extension\.P"),
]


# -- doctest ---------------------------------------------------------------------
# Snippets run in-process with SocketTestClient: no server, no port, no gevent
# monkey-patching of the Sphinx process.
# ``__name__`` is "builtins" in a doctest, which Flask(__name__) cannot find
# a root path for; the snippets are written as in an app's main module.
doctest_global_setup = """
__name__ = "__main__"
from flask import Flask
from flask_sockets import Sockets
from flask_sockets.testing import SocketTestClient
"""
trim_doctest_flags = True

# -- HTML ------------------------------------------------------------------------
html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_sidebars = {
    "index": ["project.html", "localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
html_context = {"project_links": []}
html_title = f"Flask-Sockets Documentation ({version})"
# The sidebar lists the sections of a page, not each class, function and
# attribute the API reference documents: as "Class.member" entries, cut to
# the sidebar's width, many looked alike ("Sockets.prese…", "SocketOptions…").
toc_object_entries = False
html_show_sourcelink = False
# The theme's version banner asks a package index for the latest release from
# the reader's browser; these docs neither need nor make network requests.
version_banner = False
html_static_path: list[str] = []
exclude_patterns = ["_build"]
