"""Registering a blueprint's routes as socket routes.

:meth:`Sockets.register_blueprint` hands Flask's own
:meth:`~flask.Blueprint.register` a stand-in for the app whose
``add_url_rule`` turns every route into a WebSocket rule with a socket
view. Everything else (URL prefixes, names, nesting, blueprint hooks) is
Flask's own blueprint machinery, unchanged.
"""

from __future__ import annotations

import typing as t

from .views import websocket_view

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

__all__ = ["SocketRouteRegistrar"]


class SocketRouteRegistrar:
    """Stands in for ``app`` while a blueprint registers itself, so that
    every route the blueprint (and its nested blueprints) adds becomes a
    socket route. All other attributes are the app's own.
    """

    def __init__(self, app: Flask) -> None:
        self._app = app

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._app, name)

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: t.Callable[..., t.Any] | None = None,
        **options: t.Any,
    ) -> None:
        subprotocols = options.pop("subprotocols", None)
        compression = options.pop("compression", None)
        defer_accept = options.pop("defer_accept", False)
        if view_func is not None:
            view_func = websocket_view(view_func, subprotocols, compression, defer_accept)
        self._app.add_url_rule(rule, endpoint, view_func, websocket=True, **options)
