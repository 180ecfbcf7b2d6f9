"""What the WSGI environ says about a WebSocket request.

Pure functions over the environ: no I/O, no Flask globals, no server imports.
"""

from __future__ import annotations

import typing as t

__all__ = ["WSGI_WEBSOCKET_KEY", "is_origin_allowed", "is_websocket_upgrade", "requested_subprotocols"]

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
    connection = environ.get("HTTP_CONNECTION", "").lower()
    if connection == "upgrade":  # the usual header: no token list to split
        return True
    return any(token.strip(" \t") == "upgrade" for token in connection.split(","))


def requested_subprotocols(environ: t.Mapping[str, t.Any]) -> list[str]:
    """The subprotocols a client offered in ``Sec-WebSocket-Protocol``, in its order."""
    header = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")
    return [token.strip() for token in header.split(",") if token.strip()]


def is_origin_allowed(origin: str | None, host: str, allowed: str | t.Iterable[str] | None) -> bool:
    """Whether a WebSocket request from the browser origin ``origin`` to
    ``host`` (the ``Host`` header) may proceed.

    :param origin: The ``Origin`` header, or ``None`` when absent. Clients
        that are not browsers send none, and are always allowed: the check
        exists to stop other sites' pages from opening sockets with the
        user's cookies (cross-site WebSocket hijacking).
    :param allowed: ``None`` for same-origin only, ``'*'`` for any origin,
        or the allowed origins (``'https://example.com'``).
    """
    if origin is None or allowed == "*":
        return True
    if allowed is None:
        scheme, _, netloc = origin.partition("://")
        default_port = {"http": ":80", "https": ":443"}.get(scheme.lower(), "")
        return bool(netloc) and _without(netloc.lower(), default_port) == _without(host.lower(), default_port)
    if isinstance(allowed, str):
        allowed = [allowed]
    return origin.lower().rstrip("/") in {o.lower().rstrip("/") for o in allowed}


def _without(netloc: str, default_port: str) -> str:
    return netloc[: -len(default_port)] if default_port and netloc.endswith(default_port) else netloc
