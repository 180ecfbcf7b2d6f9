"""The :class:`Sockets` extension."""

from __future__ import annotations

import typing as t
import weakref

from flask import current_app
from flask import has_app_context
from flask import request
from werkzeug.routing import WebsocketMismatch

from .blueprints import SocketRouteRegistrar
from .blueprints import record_socket_route
from .blueprints import register_socket_blueprint
from .client import add_client_route
from .compat import SocketURLMap
from .envelope import Envelope
from .envelope import envelope
from .exceptions import UpgradeRequired
from .fanout.broker import check_message_queue
from .fanout.history import HistoryRule
from .fanout.history import Position
from .fanout.history import Recovery
from .fanout.history import RoomMatcher
from .fanout.history import history_rule
from .fanout.membership import CLOSE_REVOKED
from .fanout.membership import EXTENSION_KEY as ROOMS_KEY
from .fanout.membership import REVOKED_REASON
from .fanout.membership import Rooms
from .fanout.presence import PresenceCallback
from .options import DEFAULTS
from .redaction import redact_werkzeug_log
from .shutdown import ShutdownPolicy
from .wsgi import is_websocket_upgrade

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Blueprint
    from flask import Flask

    from .metrics import SocketMetrics
    from .typing import Message
    from .typing import SocketHandler
    from .typing import WebSocket

__all__ = ["Sockets"]

F = t.TypeVar("F", bound="SocketHandler")
P = t.TypeVar("P", bound=PresenceCallback)


class Sockets:
    """WebSocket routes for a Flask app.

    .. code-block:: python

        app = Flask(__name__)
        sockets = Sockets(app)


        @sockets.route("/echo")
        def echo_socket(ws):
            while not ws.closed:
                ws.send(ws.receive())

    Or, with an application factory, create ``Sockets()`` once and call
    :meth:`init_app` for each app. Routes and blueprints declared on the
    extension are added to every app it is initialised with, before or
    after the call.

    Socket routes are rules in the app's own ``url_map`` (Werkzeug
    ``Rule(..., websocket=True)``), so URL variables, ``url_for`` (which
    builds ``ws://`` / ``wss://`` URLs), ``before_request``, error
    handlers, teardown, signals, ``request``, ``session`` and ``g`` all
    work as for HTTP views.

    :param app: The app to initialise, or ``None`` to call
        :meth:`init_app` later.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._routes: list[tuple[str, str | None, SocketHandler, dict[str, t.Any]]] = []
        self._blueprints: list[tuple[Blueprint, dict[str, t.Any]]] = []
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        #: Flask-Sockets 0.2's URL map, kept for 0.2 code:
        #: ``url_map.add(Rule('/echo', endpoint=echo_socket))`` adds a socket
        #: route and ``url_map.converters['regex'] = RegexConverter`` a URL
        #: converter to every app the extension has or gets (see
        #: :class:`~flask_sockets.compat.SocketURLMap`). Socket routes are
        #: rules in ``app.url_map``.
        self.url_map = SocketURLMap(self)
        #: The functions registered with :meth:`on_presence`.
        self.presence_callbacks: list[PresenceCallback] = []
        #: The per-room history rules added with :meth:`history`.
        self.history_rules: list[HistoryRule] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Add the extension's socket routes and blueprints to ``app``.

        Stores the extension in ``app.extensions['sockets']`` and the app's
        rooms (:class:`flask_sockets.fanout.membership.Rooms`) in
        ``app.extensions['sockets.rooms']``, sets the defaults of the
        ``SOCKETS_*`` config keys (see :data:`flask_sockets.options.DEFAULTS`),
        serves the browser client at :confval:`SOCKETS_CLIENT_URL`
        (:doc:`/client`), and makes the access log of Werkzeug's development
        server redact credentials in URLs
        (:func:`flask_sockets.redaction.redact_werkzeug_log`).

        :raises RuntimeError: If ``app`` was already initialised.
        :raises ImportError: If ``SOCKETS_MESSAGE_QUEUE`` is a Redis URL and
            redis-py is not installed (``pip install redis``).
        :raises ValueError: If ``SOCKETS_MESSAGE_QUEUE`` is neither ``None``,
            a Redis URL nor a broker.
        """
        if "sockets" in app.extensions:
            raise RuntimeError(
                "A 'Sockets' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        # A setting that cannot work stops the app here, not every socket later.
        check_message_queue(app.config.get("SOCKETS_MESSAGE_QUEUE"))
        ShutdownPolicy.from_config(app.config)  # (SOCKETS_SHUTDOWN_WINDOW and _CODE)
        app.extensions["sockets"] = self
        app.extensions[ROOMS_KEY] = Rooms(app, self.presence_callbacks, self.history_rules)
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        add_client_route(app)
        redact_werkzeug_log()  # once per process: ``flask run``, ``app.run()``
        app.before_request(_require_websocket_upgrade)
        self.url_map.converters.init_app(app)
        for rule, endpoint, handler, options in self._routes:
            SocketRouteRegistrar(app).add_url_rule(rule, endpoint, handler, **options)
        for blueprint, options in self._blueprints:
            register_socket_blueprint(app, blueprint, options)
        self._apps.add(app)
        if app.config.get("SOCKETS_METRICS"):
            self.enable_metrics(app)

    def enable_metrics(self, app: Flask | None = None, registry: t.Any = None) -> SocketMetrics:
        """Count the app's sockets in Prometheus series (see :doc:`/metrics`),
        as ``SOCKETS_METRICS = True`` does at ``init_app``. Serve them with
        ``app.add_url_rule('/metrics', view_func=flask_sockets.metrics.metrics_view)``.

        :param app: The app (see :meth:`rooms_for`).
        :param registry: The ``prometheus_client`` registry of the series
            (its default ``REGISTRY`` if ``None``). Under
            ``PROMETHEUS_MULTIPROC_DIR``, the values are also written there.
        :returns: The app's :class:`~flask_sockets.metrics.SocketMetrics`.
        :raises ImportError: If ``prometheus_client`` is not installed.
        """
        from . import metrics

        app = self._app_for(app)
        existing = metrics.metrics_of(app)
        if existing is not None:
            return existing
        made = metrics.SocketMetrics.for_registry(registry)
        app.extensions[metrics.EXTENSION_KEY] = made
        app.after_request(metrics.count_refusal)
        return made

    def route(self, rule: str, *, blueprint: Blueprint | None = None, **options: t.Any) -> t.Callable[[F], F]:
        """Decorate a socket handler ``f(ws, **url_variables)`` to serve
        WebSocket connections at ``rule``.

        The route's endpoint, for ``url_for``, is ``'ws:'`` and the
        function's name (``url_for('ws:echo_socket')``), or
        ``'<blueprint>.ws:<name>'`` with ``blueprint``: socket routes never
        clash with HTTP views, or with each other, over a function's name.
        Several socket routes may share an endpoint (one function on two
        URLs, or two functions named alike); ``url_for`` then builds the
        URL of the first one declared. ``endpoint='name'`` names the route
        ``name`` (``'<blueprint>.name'``).

        :param rule: The URL rule, with variables and converters as in
            :meth:`flask.Flask.route`.
        :param blueprint: Declare the route on this blueprint instead of
            the app. The blueprint is then registered with the usual
            ``app.register_blueprint`` and may mix HTTP and socket routes.
        :param options: ``subprotocols=['v2.chat', 'v1.chat']`` lists
            the subprotocols the route speaks, in order of preference; the
            first one the client offers is accepted (none is sent if the
            client offers none of them). ``compression=`` overrides
            ``SOCKETS_COMPRESSION`` for this route (``False``: never
            compress; ``True``, a dict or a
            :class:`~flask_sockets.compression.Compression`).
            ``flood_control=`` overrides the flood control keys
            (``SOCKETS_MESSAGE_RATE``, ...) for this route: a dict of
            :class:`~flask_sockets.ratelimit.FloodControl` fields, e.g.
            ``{'byte_rate': 16 * 1024 * 1024}`` for an upload route,
            ``False`` for no limits, or a ``FloodControl``.
            ``defer_accept=True`` leaves the handshake to the handler: the
            ``101`` goes out at its first send, receive or close, or at
            ``ws.accept()``, and until then it can refuse the connection
            with an HTTP response such as ``abort(403)``. By default the
            ``101`` goes out as the handler starts (see :doc:`/requests`).
            Other options go to
            :meth:`flask.Flask.add_url_rule` (``endpoint``, ``defaults``,
            ``subdomain``, ...). The rule only matches WebSocket requests;
            ``methods`` may only name ``GET``. ``websocket=True`` (which
            Flask-Sockets 0.2 code may pass) is accepted; an option that
            none of these take is dropped with a warning.
        :raises ValueError: If ``endpoint`` is an HTTP view's.
        """

        endpoint = options.pop("endpoint", None)

        def decorator(f: F) -> F:
            if blueprint is not None:
                record_socket_route(blueprint, rule, endpoint, f, options)
            else:
                self.add_url_rule(rule, endpoint, f, **options)
            return f

        return decorator

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: SocketHandler | None = None,
        **options: t.Any,
    ) -> None:
        """Register ``view_func`` as the socket handler for ``rule``; the
        non-decorator form of :meth:`route`. ``endpoint`` defaults to
        ``'ws:'`` and the function's name."""
        if view_func is None:
            raise TypeError("add_url_rule() needs the socket handler as 'view_func'.")
        self._routes.append((rule, endpoint, view_func, options))
        for app in self._apps:
            SocketRouteRegistrar(app).add_url_rule(rule, endpoint, view_func, **options)

    def register_blueprint(self, blueprint: Blueprint, **options: t.Any) -> None:
        """Register a blueprint whose routes are all socket handlers.

        This is the classic form: ``@ws.route('/echo')`` on a plain
        :class:`flask.Blueprint`, then
        ``sockets.register_blueprint(ws, url_prefix='/')``. Options are
        those of :meth:`flask.Flask.register_blueprint`. Blueprints nested
        in ``blueprint`` become socket blueprints too; its hooks
        (``before_request``, error handlers, ...) apply as usual.

        The blueprint is registered on the app under the name ``'ws:'`` and
        its name, so its endpoints are ``'ws:<blueprint>.<name>'``
        (``url_for('ws:ws.echo_socket')``). Socket blueprints thus never
        clash with the app's blueprints, and one blueprint may be
        registered both ways, in either order, as with Flask-Sockets 0.2:
        ``app.register_blueprint(bp)`` adds its routes as HTTP views and
        ``sockets.register_blueprint(bp)`` as socket routes.

        To mix HTTP and socket routes in one blueprint, use
        ``@sockets.route(rule, blueprint=bp)`` and register ``bp`` with
        ``app.register_blueprint`` instead.
        """
        self._blueprints.append((blueprint, options))
        for app in self._apps:
            register_socket_blueprint(app, blueprint, options)

    @property
    def blueprints(self) -> dict[str, Blueprint]:
        """The blueprints registered with :meth:`register_blueprint`, by
        name (without the ``'ws:'`` they have in ``app.blueprints``)."""
        return {options.get("name", blueprint.name): blueprint for blueprint, options in self._blueprints}

    # -- rooms and broadcast --------------------------------------------------

    def join(self, ws: WebSocket, room: str, *, presence: t.Any = None, app: Flask | None = None) -> str | None:
        """Put the socket ``ws`` in ``room``: from now on it gets the
        messages published to the room, from any process.

        A room is any string; it exists while it has members. A socket may
        be in many rooms, and it leaves them all when its handler returns.
        Joining accepts the socket (answers the handshake) if the handler
        has not done so yet, since a message may arrive at once. With
        ``SOCKETS_MESSAGE_QUEUE`` set, the process's first join of a room
        waits (up to 5 seconds; not while Redis is down) for its
        subscription to the room's channel.

        :param presence: A payload that makes the socket *present* in the
            room for every process (see :meth:`presence` and
            :meth:`on_presence`): any JSON-serialisable value, such as
            ``{'name': 'Ada'}``, of at most ``SOCKETS_PRESENCE_MAX_SIZE``
            bytes as JSON. ``None``: no presence entry. Joining again with
            another payload replaces it (a ``'join'`` change with the new
            payload). The entry goes when the socket leaves the room, or
            ``SOCKETS_PRESENCE_TTL`` seconds after its process died.
        :param app: The app, for a call outside its app context (see
            :meth:`publish`).
        :returns: The socket's presence id in the room (a key of
            :meth:`presence`, the ``id`` of its :class:`~flask_sockets.PresenceChange`),
            or ``None`` without ``presence``.
        :raises TypeError: If ``presence`` is not JSON-serialisable.
        :raises ValueError: If ``presence`` is too large.
        :raises MessageQueueUnavailable: If the presence entry could not be
            stored in Redis; the socket is in the room all the same.
        """
        return self.rooms_for(app).join(ws, room, presence)

    def resume(
        self,
        ws: WebSocket,
        room: str,
        position: tuple[int, str] | None = None,
        *,
        presence: t.Any = None,
        reply: t.Callable[[Recovery], Message] | None = None,
        app: Flask | None = None,
    ) -> Recovery:
        """Join ``room`` like :meth:`join`, and send ``ws`` every message of
        the room's history after ``position``, in order, then the live ones,
        with no gap and no duplicate between them; or nothing, if that
        cannot be done (see :doc:`reliable`).

        The room needs history (``SOCKETS_HISTORY_SIZE`` or
        :meth:`history`). A socket that reconnects passes the position of
        the last message it got (``(offset, epoch)``, as the envelope's
        ``msg`` frames and :meth:`publish` tell it); a first join passes
        none, and learns the room's current position: the app loads its
        state *after* this call, and the messages that follow are those
        after the state it loaded.

        :param position: ``(offset, epoch)``: the last message the client
            got, or ``None``.
        :param presence: As for :meth:`join`.
        :param reply: ``reply(recovery)`` makes a message that the socket
            gets before the replay (in the same queue, so in that order): how
            the app tells its client the outcome. Without it, the replay may
            reach the client before what the handler sends after this call.
        :param app: As for :meth:`publish`.
        :returns: A :class:`~flask_sockets.fanout.history.Recovery`:
            ``recovered`` is ``True`` if every message after ``position`` was
            queued for the socket (none are missing), ``False`` if nothing
            was (no position given, another epoch, trimmed or expired, more
            than ``SOCKETS_HISTORY_MAX_REPLAY`` missed, history off, or the
            message queue unavailable: it answers at once, never waits for
            Redis to come back); the app then reloads its state.
            ``position`` is the room's position after the replay, or now
            (``None`` if history is off or Redis is unavailable).
        :raises TypeError: If ``position`` is not ``(int, str)``.
        """
        return self.rooms_for(app).resume(
            ws, room, Position(*position) if position is not None else None, presence, reply
        )

    def position(self, room: str, *, app: Flask | None = None) -> Position | None:
        """The position of the last message published to ``room`` (``(0,
        epoch)`` before the first), or ``None`` if the room keeps no
        history. A page can show a room's recent messages by resuming from
        a little before it: ``(max(0, offset - 50), epoch)``.

        :raises MessageQueueUnavailable: With ``SOCKETS_MESSAGE_QUEUE`` set,
            if Redis is unreachable.
        """
        return self.rooms_for(app).position(room)

    def history(self, rooms: RoomMatcher, *, size: int | None = None, ttl: float | None = None) -> None:
        """Keep the last ``size`` messages of the rooms ``rooms`` matches
        (a glob pattern such as ``'chat:*'``, or a predicate on the room's
        name) for ``ttl`` seconds after their last message, so that sockets
        can :meth:`resume` them. ``size=0`` turns history off for them;
        ``None`` takes ``SOCKETS_HISTORY_SIZE`` / ``SOCKETS_HISTORY_TTL``.
        The first rule that matches a room wins; rooms no rule matches
        follow the config. Every process that publishes to the rooms needs
        the same rules (they decide whether a message is stored).

        :raises ValueError: If ``size`` is negative or ``ttl`` not positive.
        """
        self.history_rules.append(history_rule(rooms, size, ttl))

    def envelope(
        self,
        ws: WebSocket,
        *,
        authorize: t.Callable[[str], object] | None = None,
        presence: t.Callable[[str], t.Any] | None = None,
        app: Flask | None = None,
    ) -> Envelope:
        """Speak the envelope (:mod:`flask_sockets.envelope`, the wire
        format of the browser client ``flask-sockets.js``) on ``ws``: iterate
        the result for the client's application messages::

            @sockets.route("/live")
            def live(ws):
                for data in sockets.envelope(ws, authorize=may_read):
                    ...

        It sends ``hello`` and heartbeats, answers ``sub`` (with recovery
        from the client's position, see :meth:`resume`) and ``unsub``, and
        wraps every room message this socket gets.

        :param authorize: ``authorize(room)``: whether the client may
            subscribe to ``room``; by default any room.
        :param presence: ``presence(room)``: the socket's presence payload in
            the rooms it subscribes to (``None``: none).
        :param app: As for :meth:`publish`.
        """
        return envelope(ws, self.rooms_for(app), authorize=authorize, presence=presence)

    def leave(self, ws: WebSocket, room: str, *, app: Flask | None = None) -> None:
        """Take ``ws`` out of ``room``; nothing happens if it is not in it."""
        self.rooms_for(app).leave(ws, room)

    def rooms(self, ws: WebSocket, *, app: Flask | None = None) -> frozenset[str]:
        """The rooms ``ws`` is in."""
        return self.rooms_for(app).rooms_of(ws)

    def count(self, room: str, *, app: Flask | None = None) -> int:
        """How many sockets of *this process* are in ``room`` (with several
        workers or hosts, each counts its own; :meth:`presence` counts
        across all of them)."""
        return self.rooms_for(app).count(room)

    def members(self, room: str, *, app: Flask | None = None) -> list[WebSocket]:
        """The sockets of *this process* in ``room``, as their handlers
        have them (under a server of another kind, such as gevent-websocket's
        handler, that server's sockets: :class:`~flask_sockets.typing.BasicWebSocket`)."""
        return t.cast("list[WebSocket]", self.rooms_for(app).members(room))

    def presence(self, room: str, *, app: Flask | None = None) -> dict[str, t.Any]:
        """Who is present in ``room``, in every process and host: the
        payloads sockets joined with (``join(ws, room, presence=...)``), by
        presence id (unique in the deployment).

        Without ``SOCKETS_MESSAGE_QUEUE``, that is the sockets of this
        process. With Redis, an entry of a process that died stays at most
        ``SOCKETS_PRESENCE_TTL`` seconds (15 by default).

        :raises MessageQueueUnavailable: If Redis is unreachable.
        """
        return self.rooms_for(app).presence(room)

    def on_presence(self, f: P) -> P:
        """Register ``f(change)`` to be called when a presence entry comes
        or goes, with a :class:`~flask_sockets.PresenceChange` (``kind``
        ``'join'`` or ``'leave'``, ``room``, ``id``, ``data``).

        Each change is reported once in the whole deployment, in the
        process that made it: the one whose socket joined or left, or, for
        the entries of a process that died, one surviving process that has
        members in the room, within ``SOCKETS_PRESENCE_TTL * 4/3`` seconds.
        It runs in the app context (not in a request), in the thread that
        made the change; an exception is logged. To tell clients, publish::

            @sockets.on_presence
            def announce(change):
                names = [p["name"] for p in sockets.presence(change.room).values()]
                sockets.publish(change.room, json.dumps({"present": names}))
        """
        self.presence_callbacks.append(f)
        return f

    def stats(self, *, app: Flask | None = None) -> dict[str, t.Any]:
        """What the rooms of *this process* are doing, for a health check
        or a metrics endpoint: a dict of

        ``sockets``
            open sockets of socket routes;
        ``rooms``
            rooms with a member here;
        ``subscriptions``
            message queue channels this process receives;
        ``broker_received``, ``broker_published``
            messages received from and published to the message queue
            since start;
        ``deliveries``
            messages handed to this process's sockets;
        ``slow_consumers_closed``
            sockets closed with 1008 for not reading;
        ``disconnected``
            sockets of this process closed by :meth:`disconnect` (whichever
            process called it);
        ``broker_reconnects``
            times the message queue connection came back after it was lost;
        ``broker_connected``
            whether messages published elsewhere reach this process;
        ``broker_last_error``
            the message queue's last error while it is down, else ``None``;
        ``presence_entries``
            presence entries of this process's sockets.

        Counters only grow: a metrics system derives rates from them.
        """
        return self.rooms_for(app).stats()

    def publish(self, room: str, message: Message, *, app: Flask | None = None) -> Position | None:
        """Send ``message`` (``str``: text, ``bytes``: binary) to every socket
        in ``room``, in every process that serves the app.

        It can be called from a socket handler, an HTTP view, another
        greenlet or thread, or a script or job that serves no sockets. It
        never waits for the sockets: each one has a bounded send queue
        (``SOCKETS_SEND_QUEUE_SIZE``) and a client that falls behind is
        closed with 1008 (see :mod:`flask_sockets.rooms`). Messages from
        one publisher to one room arrive in the order they were published.

        :param app: The app to publish for. By default the current app; out
            of an app context, the one app this extension was initialised
            with.
        :returns: The message's position in the room's history
            (``(offset, epoch)``, a :class:`~flask_sockets.fanout.history.Position`),
            or ``None`` if the room keeps no history.
        :raises MessageQueueUnavailable: With ``SOCKETS_MESSAGE_QUEUE`` set,
            if Redis is unreachable; nothing was sent.
        """
        return self.rooms_for(app).publish(room, message)

    def broadcast(self, message: Message, *, app: Flask | None = None) -> None:
        """Send ``message`` to every open socket of the app's socket routes,
        in every process. Otherwise like :meth:`publish`."""
        self.rooms_for(app).broadcast(message)

    def disconnect(
        self,
        room: str,
        code: int = CLOSE_REVOKED,
        reason: str = REVOKED_REASON,
        *,
        app: Flask | None = None,
    ) -> None:
        """Close every socket in ``room``, in every process and on every
        host that serves the app, with ``code`` and ``reason``: to end a
        user's sockets when their session ends (log out, password change,
        ban), keep a room per user (``sockets.join(ws, f"user:{id}")`` when
        the socket opens) and disconnect that room.

        The order travels through the message queue like a message to the
        room (with Redis, on the room's channel; on a Redis Cluster, to the
        room's shard), but no socket ever receives it, no published message
        is taken for one, and it is never kept in the room's history. Each
        process closes its sockets of the room next to each socket, as it
        closes a slow consumer: what was queued for them is dropped, they
        leave their rooms at once and cannot join one again, and a
        connection whose client does not take the close frame (or whose
        handler does not return) within ``SOCKETS_CLOSE_TIMEOUT`` seconds is
        cut. Each handler's ``receive()`` then returns ``None`` as for any
        close.

        It returns at once, without a count: the sockets of other
        processes are closed when the order reaches them, and how many
        there were is not known here. ``stats()["disconnected"]`` counts
        the sockets each process closed. A socket that joins the room after
        the order reached its process is not closed: check the session
        when a socket opens, too.

        :param code: The close code. The default, 4401, tells
            ``flask_sockets.js`` to stop and ask for new credentials
            (its ``unauthorized`` event); use a terminal 4400-4499 code
            (such as 4403) for a client that must not come back, 1008
            (policy violation) for a generic client, or any code a server
            may send: 1000, 1001, 1002, 1003, 1007 to 1014, 3000 to 4999.
        :param reason: The close reason, at most 123 bytes of UTF-8; the
            client sees it, so do not put secrets in it.
        :param app: The app whose sockets to close. By default the current
            app; out of an app context, the one app this extension was
            initialised with.
        :raises ValueError: If ``code`` cannot be sent in a close frame, or
            ``reason`` is too long.
        :raises MessageQueueUnavailable: With ``SOCKETS_MESSAGE_QUEUE`` set,
            if Redis is unreachable; no socket was closed.
        """
        self.rooms_for(app).disconnect(room, code, reason)

    def rooms_for(self, app: Flask | None = None) -> Rooms:
        """The :class:`~flask_sockets.fanout.membership.Rooms` of ``app`` (by default
        the current app, or out of an app context the one app this extension
        was initialised with).

        :raises RuntimeError: If there is no such app, or it was initialised
            with another :class:`Sockets`.
        """
        return Rooms.of(self._app_for(app))

    def _app_for(self, app: Flask | None) -> Flask:
        """``app``, or the current app, or the one app of this extension (see :meth:`rooms_for`)."""
        if app is None:
            if has_app_context():
                app = t.cast("Flask", current_app._get_current_object())  # type: ignore[attr-defined]
            elif len(self._apps) == 1:
                app = next(iter(self._apps))
            else:
                raise RuntimeError(
                    "Outside an app context this Sockets extension does not know which app to use"
                    f" (it was initialised with {len(self._apps)}): pass app=..., or call it"
                    " inside 'with app.app_context():'."
                )
        if app.extensions.get("sockets") is not self:
            raise RuntimeError(f"{app!r} was not initialised with this Sockets extension.")
        return app


def _require_websocket_upgrade() -> None:
    """Answer a plain HTTP request to a socket-only URL with 426, not
    Werkzeug's bare 400."""
    if isinstance(request.routing_exception, WebsocketMismatch) and not is_websocket_upgrade(request.environ):
        raise UpgradeRequired()
