"""What Flask-Sockets 0.2 code uses and 0.3 no longer needs, kept working.

0.2 kept socket routes in a Werkzeug ``Map`` of its own, ``sockets.url_map``,
served by a WSGI middleware, :class:`SocketMiddleware`. Socket routes are
rules in the app's own ``url_map`` now (:doc:`routing`); this module keeps
the 0.2 code that reaches for those two working (:doc:`migration`).
"""

from __future__ import annotations

import collections.abc
import typing as t

from werkzeug.routing import Map
from werkzeug.routing import Rule

from .blueprints import default_endpoint

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment
    from flask import Flask
    from werkzeug.routing import BaseConverter
    from werkzeug.routing import RuleFactory

    from .extension import Sockets

__all__ = ["ConverterMap", "SocketMiddleware", "SocketURLMap"]


class SocketURLMap:
    """``sockets.url_map``: what Flask-Sockets 0.2 code does with the
    extension's URL map works on the apps the extension serves.

    - ``sockets.url_map.add(Rule('/echo', endpoint=echo_socket, websocket=True))``
      (the endpoint is the handler function, as in 0.2) adds a socket route,
      like ``sockets.add_url_rule('/echo', view_func=echo_socket)``, to every
      app the extension has or gets.
    - ``sockets.url_map.converters['regex'] = RegexConverter`` adds a URL
      converter to the ``url_map`` of every app the extension has or gets.
    - ``sockets.url_map.iter_rules()`` gives the WebSocket rules of those apps.

    Anything else a Werkzeug ``Map`` has raises an :exc:`AttributeError`
    that says to use ``app.url_map``.
    """

    def __init__(self, sockets: Sockets) -> None:
        self._sockets = sockets
        #: The converters added here, with Werkzeug's defaults; see :class:`ConverterMap`.
        self.converters = ConverterMap(sockets)

    def add(self, rulefactory: RuleFactory) -> None:
        """Add the socket route of a Werkzeug ``Rule`` whose endpoint is
        its handler (or of each rule of a rule factory such as ``Submount``).

        The rule's options (``defaults``, ``subdomain``, ...) are kept;
        ``websocket=True`` or not, it becomes a WebSocket rule. Its endpoint
        is the handler's default one (``ws:echo_socket``).

        :raises TypeError: If a rule's endpoint is not its handler.
        """
        rules = [rulefactory] if isinstance(rulefactory, Rule) else rulefactory.get_rules(Map())
        for rule in rules:
            handler = rule.endpoint
            if not callable(handler):
                raise TypeError(
                    f"sockets.url_map.add(Rule({rule.rule!r}, endpoint={handler!r})): the endpoint must be"
                    f" the socket handler, as in Flask-Sockets 0.2. Or write @sockets.route({rule.rule!r})"
                    f" on the handler, with endpoint={handler!r} to name it."
                )
            options = dict(rule.get_empty_kwargs(), merge_slashes=rule.merge_slashes)
            del options["endpoint"]
            self._sockets.add_url_rule(rule.rule, None, handler, **options)

    def iter_rules(self, endpoint: str | t.Callable[..., t.Any] | None = None) -> t.Iterator[Rule]:
        """The WebSocket rules of the apps the extension serves (of the
        ``endpoint`` only, if given: an endpoint name, or a handler as in
        0.2, for its default endpoint)."""
        if callable(endpoint):
            endpoint = default_endpoint(endpoint)
        for app in self._sockets._apps:
            for rule in app.url_map.iter_rules():
                if rule.websocket and (endpoint is None or rule.endpoint == endpoint):
                    yield rule

    def __getattr__(self, name: str) -> t.NoReturn:
        raise AttributeError(
            f"sockets.url_map has no {name!r}: socket routes are rules in each app's own URL map since"
            f" Flask-Sockets 0.3, so use app.url_map.{name}. (sockets.url_map keeps 0.2's add(),"
            " converters and iter_rules() working.)"
        )


class ConverterMap(collections.abc.MutableMapping[str, "type[BaseConverter]"]):
    """``sockets.url_map.converters``: Werkzeug's default URL converters
    and those added here. A converter added here is added to the
    ``url_map.converters`` of every app the extension has, and of those it
    is initialised with later (before its routes are added)."""

    def __init__(self, sockets: Sockets) -> None:
        self._sockets = sockets
        self._added: dict[str, type[BaseConverter]] = {}

    def init_app(self, app: Flask) -> None:
        """Add the converters added here to ``app.url_map.converters``."""
        app.url_map.converters.update(self._added)

    def __getitem__(self, name: str) -> type[BaseConverter]:
        if name in self._added:
            return self._added[name]
        return Map.default_converters[name]

    def __setitem__(self, name: str, converter: type[BaseConverter]) -> None:
        self._added[name] = converter
        for app in self._sockets._apps:
            app.url_map.converters[name] = converter

    def __delitem__(self, name: str) -> None:
        converter = self._added.pop(name)
        for app in self._sockets._apps:
            if app.url_map.converters.get(name) is converter:
                del app.url_map.converters[name]

    def __iter__(self) -> t.Iterator[str]:
        return iter({**Map.default_converters, **self._added})

    def __len__(self) -> int:
        return len({**Map.default_converters, **self._added})


class SocketMiddleware:
    """Flask-Sockets 0.2's WSGI middleware, for code that imports or
    builds it: ``app.wsgi_app = SocketMiddleware(app.wsgi_app, app, sockets)``.

    Socket routes are served by Flask itself now, so the middleware passes
    every request on to ``wsgi_app``, and building one is no longer needed:
    ``Sockets(app)`` or ``sockets.init_app(app)`` is all it takes. Building
    one initialises ``socket`` for ``app`` if it was not, as building it
    was 0.2's ``init_app``. (No warning: 0.2 apps run unchanged, even under
    ``-W error``.)

    ``Sockets`` no longer wraps ``app.wsgi_app``: to tell whether an app
    serves sockets, look for ``'sockets' in app.extensions``.
    """

    def __init__(self, wsgi_app: WSGIApplication, app: Flask, socket: Sockets) -> None:
        self.wsgi_app = wsgi_app
        self.app = app
        self.ws = socket
        if app.extensions.get("sockets") is not socket:
            socket.init_app(app)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        return self.wsgi_app(environ, start_response)
