"""``flask-sockets.js``, the browser client of the JSON envelope: where its
file is, and the route that serves it (see :doc:`/client`).

``init_app`` adds the route at :confval:`SOCKETS_CLIENT_URL`
(``/_sockets/flask-sockets.js``; ``None`` for none), endpoint
:data:`ENDPOINT`, so a page imports it with ``import { SocketClient } from
"/_sockets/flask-sockets.js"``, or ``url_for('sockets_client')``. The file
and its type declarations (``flask-sockets.d.ts``) are in the package, for a
bundler or an app that serves them itself: :data:`CLIENT_JS`.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

from flask import send_file

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask import Response

__all__ = ["CLIENT_JS", "ENDPOINT", "add_client_route", "serve_client"]

#: The client's file in the installed package; ``flask-sockets.d.ts`` is beside it.
CLIENT_JS = Path(__file__).resolve().parent / "static" / "flask-sockets.js"
#: The endpoint of the route serving it: ``url_for('sockets_client')``.
ENDPOINT = "sockets_client"


def serve_client() -> Response:
    """The view: the file as ``text/javascript`` (RFC 9239), with an ``ETag``
    and ``Last-Modified`` so that browsers revalidate it (``304 Not
    Modified``); ``Cache-Control`` follows the app's
    ``SEND_FILE_MAX_AGE_DEFAULT`` like Flask's static files (``no-cache`` by
    default, as the URL does not change with the version)."""
    return send_file(CLIENT_JS, mimetype="text/javascript")


def add_client_route(app: Flask) -> None:
    """Serve the client at ``app.config['SOCKETS_CLIENT_URL']``, unless it is
    ``None`` (or empty)."""
    url = app.config.get("SOCKETS_CLIENT_URL")
    if url:
        app.add_url_rule(url, ENDPOINT, serve_client, methods=["GET"])
