"""Adding socket routes to an app, from the app, a blueprint or 0.2 code.

Every socket route reaches the app through :class:`SocketRouteRegistrar`:
the routes of :meth:`Sockets.route <flask_sockets.Sockets.route>`, those
of a blueprint registered with :meth:`Sockets.register_blueprint
<flask_sockets.Sockets.register_blueprint>` (Flask's own
:meth:`~flask.Blueprint.register` is handed the registrar in place of the
app, so URL prefixes, names, nesting and blueprint hooks are Flask's own
machinery, unchanged), and the socket routes declared on a blueprint that
``app.register_blueprint`` registers.

Socket routes have endpoints of their own, so that they never clash with
each other or with HTTP views over a function's name: a socket route's
default endpoint is ``ws:`` and its function's name (``ws:echo_socket``;
``chat.ws:echo_socket`` on a blueprint ``chat`` registered with
``app.register_blueprint``), and a blueprint registered with
``Sockets.register_blueprint`` is registered under ``ws:`` and its name
(``ws:chat.echo_socket``). Several
socket rules may share an endpoint (two handlers named alike, one handler
on two URLs): its view runs the handler of the rule that matched.
"""

from __future__ import annotations

import copy
import inspect
import typing as t
import warnings

from flask import request

from .views import websocket_view

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Blueprint
    from flask import Flask
    from flask.sansio.blueprints import BlueprintSetupState
    from flask.typing import ResponseReturnValue
    from werkzeug.routing import Rule

    from .typing import SocketHandler

__all__ = ["ENDPOINT_PREFIX", "SharedEndpoint", "SocketRouteRegistrar", "default_endpoint"]

#: What a socket route's default endpoint starts with, and the name of a
#: blueprint registered with :meth:`Sockets.register_blueprint
#: <flask_sockets.Sockets.register_blueprint>`: ``ws:echo_socket``,
#: ``ws:chat.echo_socket``.
ENDPOINT_PREFIX = "ws:"

#: The route options that configure the socket view, not the URL rule.
VIEW_OPTIONS = ("subprotocols", "compression", "defer_accept", "flood_control")


def default_endpoint(handler: t.Callable[..., t.Any]) -> str:
    """The endpoint of a socket route declared without ``endpoint=``:
    ``'ws:' + handler.__name__``."""
    return ENDPOINT_PREFIX + handler.__name__


class SocketRouteRegistrar:
    """Stands in for ``app`` where socket routes are added: its
    :meth:`add_url_rule` adds a WebSocket rule with a socket view. A
    blueprint registered with it in place of the app (its nested blueprints
    too) has all its routes added as socket routes. All other attributes
    are the app's own.
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
        """Add ``rule`` as a WebSocket rule whose view runs the socket
        handler ``view_func``.

        ``endpoint`` defaults to :func:`default_endpoint`. If the endpoint
        has socket rules already, it becomes a :class:`SharedEndpoint`.
        ``websocket=True`` is accepted (Flask-Sockets 0.2 code passes it);
        options that neither Flask's ``add_url_rule`` nor the socket view
        take are dropped with a warning, as 0.2 ignored route options.

        :raises ValueError: If ``endpoint`` belongs to an HTTP view, or
            ``websocket=False`` is passed.
        """
        app = self._app
        if not options.pop("websocket", True):
            raise ValueError(
                f"Socket route {rule!r}: websocket=False. A socket route is always a WebSocket rule:"
                " drop the option (an HTTP view goes on app.route)."
            )
        view_options = {name: options.pop(name) for name in VIEW_OPTIONS if name in options}
        _drop_unknown_options(app, rule, options)
        if view_func is None:  # an endpoint whose view comes later, as app.add_url_rule allows
            app.add_url_rule(rule, endpoint, None, websocket=True, **options)
            return
        if endpoint is None:
            endpoint = default_endpoint(view_func)
        view = websocket_view(view_func, **view_options)
        existing = app.view_functions.get(endpoint)
        if existing is None:
            app.add_url_rule(rule, endpoint, view, websocket=True, **options)
            return
        shared = SharedEndpoint.of(app, endpoint, existing, rule)
        app.add_url_rule(rule, endpoint, shared, websocket=True, **options)
        shared.add([r for r in app.url_map.iter_rules() if r.endpoint == endpoint][-1], view)


class SharedEndpoint:
    """The view of an endpoint that several socket rules share: it runs
    the socket view of the rule that matched (``request.url_rule``).

    An endpoint with one rule keeps the socket view itself; it becomes a
    shared endpoint when a second rule is added to it.
    """

    def __init__(self) -> None:
        # id(rule) -> (rule, its view); the rule is held so that its id stays its own.
        self._views: dict[int, tuple[Rule, t.Callable[..., ResponseReturnValue]]] = {}

    @classmethod
    def of(cls, app: Flask, endpoint: str, view: t.Callable[..., t.Any], new_rule: str) -> SharedEndpoint:
        """The shared endpoint ``endpoint`` of ``app``, made from its
        current ``view`` if it is not one yet.

        :raises ValueError: If ``endpoint`` has rules that are not WebSocket
            rules (an HTTP view), or no rules.
        """
        if isinstance(view, cls):
            return view
        rules = [r for r in app.url_map.iter_rules() if r.endpoint == endpoint]
        if not rules or not all(r.websocket for r in rules):
            raise ValueError(
                f"Socket route {new_rule!r}: the endpoint {endpoint!r} is an HTTP view's"
                f" ({getattr(view, '__name__', view)!r}). Give the socket route another endpoint="
                f" (without one, it gets {ENDPOINT_PREFIX!r} and its function's name, which no"
                " HTTP view has)."
            )
        shared = cls()
        for rule in rules:
            shared.add(rule, view)
        app.view_functions[endpoint] = shared
        return shared

    def add(self, rule: Rule, view: t.Callable[..., ResponseReturnValue]) -> None:
        """Serve ``rule`` with ``view``."""
        self._views[id(rule)] = (rule, view)

    def __call__(self, **kwargs: t.Any) -> ResponseReturnValue:
        return self._views[id(request.url_rule)][1](**kwargs)


def record_socket_route(
    blueprint: Blueprint, rule: str, endpoint: str | None, handler: SocketHandler, options: dict[str, t.Any]
) -> None:
    """Declare the socket route ``rule`` on ``blueprint``, which may also
    have HTTP routes and is registered with ``app.register_blueprint``:
    each registration adds it through a :class:`SocketRouteRegistrar`, with
    the blueprint's URL prefix and name (endpoint ``'<blueprint>.ws:<name>'``
    by default)."""
    if endpoint is None:
        endpoint = default_endpoint(handler)
    elif "." in endpoint:
        raise ValueError("'endpoint' may not contain a dot '.' character.")  # as Blueprint.add_url_rule

    def register(state: BlueprintSetupState) -> None:
        socket_state = copy.copy(state)
        socket_state.app = SocketRouteRegistrar(t.cast("Flask", state.app))  # type: ignore[assignment]
        socket_state.add_url_rule(rule, endpoint, t.cast("t.Callable[..., t.Any]", handler), **options)

    blueprint.record(register)


def register_socket_blueprint(app: Flask, blueprint: Blueprint, options: dict[str, t.Any]) -> None:
    """Register ``blueprint`` on ``app`` with all its routes as socket
    routes, under the name ``'ws:<name>'`` (the ``name`` option, by default
    the blueprint's): Flask's own registration, with the app's blueprint
    names, hooks and endpoints of its own, so that the same blueprint may
    also be registered with ``app.register_blueprint``, before or after."""
    name = ENDPOINT_PREFIX + options.get("name", blueprint.name)
    blueprint.register(SocketRouteRegistrar(app), {**options, "name": name})  # type: ignore[arg-type]


def _drop_unknown_options(app: Flask, rule: str, options: dict[str, t.Any]) -> None:
    """Remove, with a warning that names them, the options that the app's
    rule class does not take (Flask-Sockets 0.2 ignored all route options,
    so 0.2 code may pass any; Flask would raise a TypeError)."""
    parameters = inspect.signature(app.url_rule_class).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(options) - set(parameters) - {"provide_automatic_options"})
    if not unknown:
        return
    for name in unknown:
        del options[name]
    warnings.warn(
        f"Socket route {rule!r}: ignored the unknown option(s) {', '.join(unknown)}. A socket route"
        f" takes {', '.join(VIEW_OPTIONS)} and the options of app.add_url_rule.",
        UserWarning,
        stacklevel=3,
    )
