"""What the WSGI environ says about a WebSocket request.

Pure functions over the environ: no I/O, no Flask globals, no server imports.
"""

from __future__ import annotations

import typing as t

__all__ = ["WSGI_WEBSOCKET_KEY", "is_websocket_upgrade"]

#: The environ key under which a server puts the WebSocket object for the request.
#: gevent-websocket, our gevent handler and our gunicorn worker all use it.
WSGI_WEBSOCKET_KEY = "wsgi.websocket"


def is_websocket_upgrade(environ: t.Mapping[str, t.Any]) -> bool:
    """Tell whether the request asks to be upgraded to a WebSocket.

    This is the same test Werkzeug's URL map applies when it picks ``ws``
    over ``http`` rules: a ``Connection`` header holding the ``upgrade``
    token and ``Upgrade: websocket``. Keeping one definition means the
    server and the router never disagree about what a WebSocket request is.
    """
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return False
    return any(token.strip(" \t") == "upgrade" for token in environ.get("HTTP_CONNECTION", "").lower().split(","))
