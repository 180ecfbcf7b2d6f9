"""Prometheus metrics for an app's sockets, with ``prometheus_client``.

Optional: ``pip install 'flask-sockets-core[metrics]'`` (or
``'Flask-Sockets[metrics]'``); nothing here imports ``prometheus_client``
until metrics are enabled, so the core works without it. Enable them per
app with ``SOCKETS_METRICS = True`` (read by ``init_app``) or
:meth:`Sockets.enable_metrics <flask_sockets.Sockets.enable_metrics>`, and
serve them with one line::

    app.add_url_rule("/metrics", view_func=metrics_view)

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory before the workers start: each worker writes its values
there, :func:`metrics_view` sums them across workers (open sockets as a
live sum: a dead worker's sockets drop out with :func:`child_exit`).

How it counts, and what it costs: the view that runs a socket handler
(:mod:`flask_sockets.views`) gives each socket a :class:`SocketTap`, which
counts messages and payload bytes in plain integers on the socket's
``receive``, ``send_frame`` and ``send_nowait`` (wrapped for this socket
only, when metrics are on: nothing changes for an app without them), and
moves them into the Prometheus counters every :data:`FLUSH_EVERY` messages
and when the socket closes; a flush also takes the keepalive's latest
ping round-trip time from the socket's engine
(:attr:`Connection.ping_rtt <flask_sockets.connection.Connection.ping_rtt>`).
The series are listed in :doc:`/metrics`.
"""

from __future__ import annotations

import os
import threading
import time
import typing as t
import weakref

from .fanout.delivery import SLOW_CONSUMER_REASON
from .protocol import CloseCode
from .ratelimit import BYTE_RATE_REASON
from .ratelimit import CONTROL_RATE_REASON
from .ratelimit import ERROR_LIMIT_REASON
from .ratelimit import MESSAGE_RATE_REASON

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask import Response
    from prometheus_client import CollectorRegistry

    from .fanout.membership import Rooms

__all__ = [
    "EXTENSION_KEY",
    "FLUSH_EVERY",
    "UNROUTED",
    "SocketMetrics",
    "SocketTap",
    "child_exit",
    "count_early_refusal",
    "metrics_view",
]

#: The ``app.extensions`` key of the app's :class:`SocketMetrics`.
EXTENSION_KEY = "sockets.metrics"
#: A socket's message counts move into the Prometheus counters after this
#: many messages (and when it closes): the per-message cost is two integer
#: additions, not a Prometheus update (a locked write, a file write under
#: ``PROMETHEUS_MULTIPROC_DIR``).
FLUSH_EVERY = 64
#: The ``route`` label of a handshake the server refused before the app ran
#: (see :func:`count_early_refusal`).
UNROUTED = "unrouted"
#: The ``limit`` label of ``flask_sockets_rate_limited_total``, by flood control's close reason.
_FLOOD_LIMITS = {
    MESSAGE_RATE_REASON: "messages",
    BYTE_RATE_REASON: "bytes",
    CONTROL_RATE_REASON: "control",
    ERROR_LIMIT_REASON: "errors",
}
#: Bucket bounds (seconds) of the latency histograms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_BINARY = 2


def _import_prometheus() -> t.Any:
    try:
        import prometheus_client
    except ImportError as e:
        raise ImportError(
            "Flask-Sockets metrics need prometheus_client, which is not installed. Install it with:"
            " pip install prometheus_client (or install Flask-Sockets with its [metrics] extra)."
        ) from e
    return prometheus_client


class SocketMetrics:
    """The Prometheus series of one registry (see :doc:`/metrics`).

    One per registry: :meth:`for_registry` makes it once, as a registry
    refuses a series registered twice (several apps in one process share
    them; the ``route`` label tells their routes apart).

    :param registry: Where the series are registered (``prometheus_client``'s
        default ``REGISTRY`` if ``None``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        pc = _import_prometheus()
        if registry is None:
            registry = pc.REGISTRY
        self.registry = registry
        ns = "flask_sockets"
        self.open_sockets = pc.Gauge(
            "open_sockets",
            "Sockets whose handler is running, by route (summed over live worker processes).",
            ["route"],
            namespace=ns,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.handshakes = pc.Counter(
            "handshakes",
            "WebSocket handshakes by route and HTTP status (101 accepted; 4xx/5xx refused).",
            ["route", "status"],
            namespace=ns,
            registry=registry,
        )
        self.messages = pc.Counter(
            "messages",
            "Data messages (text and binary) by route and direction (in: from clients; out: to clients).",
            ["route", "direction"],
            namespace=ns,
            registry=registry,
        )
        self.payload_bytes = pc.Counter(
            "payload_bytes",
            "Bytes of message payload (before compression, UTF-8 for text) by route and direction.",
            ["route", "direction"],
            namespace=ns,
            registry=registry,
        )
        self.closes = pc.Counter(
            "closes",
            "Closed sockets by route, close code and the side that closed (server or client).",
            ["route", "code", "side"],
            namespace=ns,
            registry=registry,
        )
        self.slow_consumers = pc.Counter(
            "slow_consumers_closed",
            "Sockets closed with 1008 because their send queue (SOCKETS_SEND_QUEUE_SIZE) overflowed.",
            ["route"],
            namespace=ns,
            registry=registry,
        )
        self.rate_limited = pc.Counter(
            "rate_limited",
            "Flood control decisions by route, limit (messages, bytes, control, errors; 'any' for drops)"
            " and action (close, drop).",
            ["route", "limit", "action"],
            namespace=ns,
            registry=registry,
        )
        self.broker_published = pc.Counter(
            "broker_published",
            "Messages this process published (sockets.publish, broadcast) through the message queue.",
            namespace=ns,
            registry=registry,
        )
        self.broker_received = pc.Counter(
            "broker_received",
            "Messages this process received from the message queue (its own publishes too, without Redis).",
            namespace=ns,
            registry=registry,
        )
        self.deliveries = pc.Counter(
            "deliveries",
            "Published messages handed to sockets (one per socket reached).",
            namespace=ns,
            registry=registry,
        )
        self.broker_lag = pc.Histogram(
            "broker_lag_seconds",
            "Seconds from publish (in any process or host) to this process receiving the message from Redis.",
            namespace=ns,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.broker_reconnects = pc.Counter(
            "broker_reconnects",
            "Times the message queue (Redis) connection of this process came back after it was lost.",
            namespace=ns,
            registry=registry,
        )
        self.disconnected = pc.Counter(
            "disconnected",
            "Sockets of this process closed by sockets.disconnect (a room's sockets, from any process or host).",
            namespace=ns,
            registry=registry,
        )
        self.send_queue = pc.Gauge(
            "send_queue_messages",
            "Published messages queued for sockets, not yet sent (summed over live worker processes).",
            namespace=ns,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.send_queue_longest = pc.Gauge(
            "send_queue_longest_messages",
            "The longest send queue of a socket (the largest over live worker processes).",
            namespace=ns,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.ping_rtt = pc.Histogram(
            "ping_rtt_seconds",
            "Seconds from a keepalive ping to the pong that answered it, by route.",
            ["route"],
            namespace=ns,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        # What sync_rooms() already moved into the counters above, by Rooms.
        self._synced: weakref.WeakKeyDictionary[t.Any, list[float]] = weakref.WeakKeyDictionary()
        self._sync_lock = threading.Lock()
        self.handler_seconds = pc.Histogram(
            "socket_duration_seconds",
            "How long sockets stayed open (handler start to close), by route.",
            ["route"],
            namespace=ns,
            registry=registry,
            buckets=(1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0),
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> SocketMetrics:
        """The :class:`SocketMetrics` of ``registry`` (the default one if
        ``None``), made at the first call."""
        if registry is None:
            registry = _import_prometheus().REGISTRY
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry)
        return metrics

    def tap(self, ws: t.Any, route: str, rooms: Rooms | None = None) -> SocketTap:
        """Start counting a socket of ``route`` (its URL rule): see
        :class:`SocketTap`. Its flushes also :meth:`sync_rooms` ``rooms``,
        and the broker of ``rooms`` reports its lag here."""
        if rooms is not None:
            broker = rooms.broker
            if broker.lag_observer is None:
                broker.lag_observer = self.broker_lag.observe
        return SocketTap(self, ws, route, rooms)

    def sync_rooms(self, rooms: Rooms, force: bool = False) -> None:
        """Move the message queue counts of ``rooms``
        (:meth:`~flask_sockets.fanout.membership.Rooms.stats`: published, received,
        deliveries, broker reconnects, disconnected sockets) since the last
        call into the Prometheus counters, and set the send queue gauges
        (:meth:`~flask_sockets.fanout.membership.Rooms.send_queue_depths`); at
        most once a second unless ``force``. Called at the sockets' flushes
        and by :func:`metrics_view`, so the rooms need no hook of their own."""
        now = time.monotonic()
        with self._sync_lock:
            last = self._synced.get(rooms)
            if last is None:
                last = self._synced[rooms] = [-1.0, 0, 0, 0, 0, 0]
            if not force and now - last[0] < 1.0:
                return
            last[0] = now
            stats = rooms.stats()
            for i, (key, counter) in enumerate(
                (
                    ("broker_published", self.broker_published),
                    ("broker_received", self.broker_received),
                    ("deliveries", self.deliveries),
                    ("broker_reconnects", self.broker_reconnects),
                    ("disconnected", self.disconnected),
                ),
                start=1,
            ):
                value = int(stats.get(key, 0))
                if value > last[i]:
                    counter.inc(value - last[i])
                    last[i] = value
            total, longest = rooms.send_queue_depths()
            self.send_queue.set(total)
            self.send_queue_longest.set(longest)

    def count_handshake(self, route: str, status: int) -> None:
        """Count a handshake answered with ``status``."""
        self.handshakes.labels(route, str(status)).inc()

    def count_rate_limited(self, route: str, limit: str, action: str) -> None:
        """Count a rate-limit decision: ``limit`` is what overflowed
        (``'messages'``, ``'bytes'``, ``'errors'``, ``'control'``),
        ``action`` what was done (``'close'``, ``'drop'``). For the flood
        control to call."""
        self.rate_limited.labels(route, limit, action).inc()


_BY_REGISTRY: weakref.WeakKeyDictionary[t.Any, SocketMetrics] = weakref.WeakKeyDictionary()


def _nothing() -> None:
    pass


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class SocketTap:
    """Counts one socket: made when its handler starts, :meth:`finish`\\ ed
    after it ends and the socket is closed.

    It replaces the socket's ``receive``, ``send_frame``, ``send_nowait``
    and ``close`` with counting versions, as attributes of this socket
    only (sockets without a ``__dict__``, such as gevent-websocket's own,
    are not counted message by message; their opening, handshake and close
    are). The counts live in the closures' cells (the cheapest variables
    Python has) and move into the Prometheus counters at :meth:`flush`.
    """

    __slots__ = ("_closed_by_server", "_counted_101", "_started", "flush", "metrics", "route")

    def __init__(self, metrics: SocketMetrics, ws: t.Any, route: str, rooms: Rooms | None = None) -> None:
        self.metrics = metrics
        self.route = route
        self._closed_by_server: int | None = None
        self._counted_101 = False
        self._started = time.monotonic()
        #: Move the counts since the last flush into the Prometheus counters.
        self.flush: t.Callable[[], None] = _nothing
        metrics.open_sockets.labels(route).inc()
        try:
            self._wrap(ws, rooms)
        except (AttributeError, TypeError):  # no __dict__: counted at open and close only
            self.flush = _nothing

    def _wrap(self, ws: t.Any, rooms: Rooms | None) -> None:
        receive, send_frame, close = ws.receive, ws.send_frame, ws.close
        send_nowait = getattr(ws, "send_nowait", None)
        route = self.route
        m = self.metrics
        # The label children, looked up once per socket.
        messages_in, messages_out = m.messages.labels(route, "in"), m.messages.labels(route, "out")
        ping_rtt = m.ping_rtt.labels(route)
        # The engine (flask_sockets.connection), which records the keepalive's round-trip time.
        conn = getattr(ws, "_protocol", None)
        if conn is not None and not hasattr(conn, "ping_rtt"):
            conn = None
        bytes_in, bytes_out = m.payload_bytes.labels(route, "in"), m.payload_bytes.labels(route, "out")
        tap = self
        # Counted since the last flush, and when the next flush is due.
        n_in = n_out = b_in = b_out = 0

        def flush() -> None:
            nonlocal n_in, n_out, b_in, b_out
            if n_in:
                messages_in.inc(n_in)
                bytes_in.inc(b_in)
                n_in = b_in = 0
            if n_out:
                messages_out.inc(n_out)
                bytes_out.inc(b_out)
                n_out = b_out = 0
            if conn is not None:
                rtt = conn.ping_rtt
                if rtt is not None:
                    conn.ping_rtt = None
                    ping_rtt.observe(rtt)
            if rooms is not None:
                m.sync_rooms(rooms)

        def counted_receive(timeout: float | None = None) -> t.Any:
            nonlocal n_in, b_in
            message = receive(timeout)
            if message is not None:
                n_in += 1
                b_in += len(message) if message.__class__ is not str or message.isascii() else _utf8_size(message)
                if n_in >= FLUSH_EVERY:
                    flush()
            return message

        def counted_send_frame(message: t.Any, opcode: int, compress: bool = True) -> None:
            nonlocal n_out, b_out
            send_frame(message, opcode, compress)
            if opcode <= _BINARY:  # text or binary, not ping or pong
                n_out += 1
                b_out += len(message) if message.__class__ is not str or message.isascii() else _utf8_size(message)
                if n_out >= FLUSH_EVERY:
                    flush()

        def counted_close(code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
            if tap._closed_by_server is None and not ws.closed:
                tap._closed_by_server = int(code)
                reason = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
                if code == CloseCode.POLICY_VIOLATION and reason == SLOW_CONSUMER_REASON:
                    tap.metrics.slow_consumers.labels(route).inc()
            close(code, message)

        ws.receive = counted_receive
        ws.send_frame = counted_send_frame
        ws.close = counted_close
        if send_nowait is not None:

            def counted_send_nowait(message: t.Any) -> bool:
                nonlocal n_out, b_out
                sent: bool = send_nowait(message)
                if sent:
                    n_out += 1
                    b_out += len(message) if message.__class__ is not str or message.isascii() else _utf8_size(message)
                    if n_out >= FLUSH_EVERY:
                        flush()
                return sent

            ws.send_nowait = counted_send_nowait
        self.flush = flush

    def accepted(self) -> None:
        """The ``101`` went out: count the handshake."""
        if not self._counted_101:
            self._counted_101 = True
            self.metrics.count_handshake(self.route, 101)

    def finish(self, ws: t.Any) -> None:
        """The handler ended and the socket is closed (or was never
        accepted): flush, count the close, and the socket is no longer open."""
        m, route = self.metrics, self.route
        self.flush()
        if getattr(ws, "accepted", True):
            self.accepted()  # (a deferred handshake, answered by the handler)
            code = self._closed_by_server
            protocol = getattr(ws, "_protocol", None)
            if code is not None or getattr(protocol, "failed", False):
                side = "server"
            else:
                side = "client"
            if code is None:
                code = getattr(ws, "close_code", None) or int(CloseCode.ABNORMAL_CLOSURE)
            m.closes.labels(route, str(code), side).inc()
            # Flood control (flask_sockets.ratelimit, in the engine): a close for a limit, and what it dropped.
            if side == "server" and code == CloseCode.POLICY_VIOLATION:
                limit = _FLOOD_LIMITS.get(getattr(ws, "close_reason", None) or "")
                if limit is not None:
                    m.count_rate_limited(route, limit, "close")
            dropped = getattr(ws, "dropped", 0)
            if isinstance(dropped, int) and dropped > 0:
                m.rate_limited.labels(route, "any", "drop").inc(dropped)
            m.handler_seconds.labels(route).observe(time.monotonic() - self._started)
        m.open_sockets.labels(route).dec()


def metrics_of(app: Flask) -> SocketMetrics | None:
    """The app's :class:`SocketMetrics`, or ``None`` if metrics are off."""
    return t.cast("SocketMetrics | None", app.extensions.get(EXTENSION_KEY))


def count_refusal(response: Response) -> Response:
    """``after_request`` hook of an app with metrics: count a WebSocket
    handshake answered with anything but ``101`` (a 403 from the origin
    check or a ``before_request`` hook, 404, 426 for plain HTTP on a socket
    route, 503 at the connection cap, a 400 for a bad handshake on a
    threaded server). Accepted handshakes are counted by their socket."""
    from flask import current_app
    from flask import request

    from .wsgi import WSGI_WEBSOCKET_KEY
    from .wsgi import is_websocket_upgrade

    status = response.status_code
    ws = request.environ.get(WSGI_WEBSOCKET_KEY)
    if status == 101 or (ws is not None and getattr(ws, "accepted", True)):
        return response  # (a handler that failed after the 101: counted as a close, 1011)
    rule = request.url_rule
    if is_websocket_upgrade(request.environ) or (rule is not None and rule.websocket) or status == 426:
        metrics = metrics_of(current_app)
        if metrics is not None:
            metrics.count_handshake(rule.rule if rule is not None else "", status)
    return response


def count_early_refusal(app: t.Any, status: int) -> None:
    """Count a request the server refused before the app ran, as a
    handshake with route ``"unrouted"`` and ``status``: for a server
    (``flask_sockets_gevent``'s handler calls it for an upgrade refused by
    :func:`~flask_sockets.handshake.check_handshake`, 400 or 426, and for a
    request it could not parse, 400, or whose head was too large, 431;
    these may not have been upgrades). ``app`` is the server's WSGI app:
    a Flask app counts in its own metrics (none if they are off); anything
    else (a middleware wrapping it) in every :class:`SocketMetrics` of this
    process, as the app behind it cannot be reached."""
    extensions = getattr(app, "extensions", None)
    if isinstance(extensions, dict):
        metrics = extensions.get(EXTENSION_KEY)
        targets: t.Iterable[SocketMetrics] = () if metrics is None else (metrics,)
    else:
        targets = list(_BY_REGISTRY.values())
    for metrics in targets:
        metrics.count_handshake(UNROUTED, status)


def metrics_view() -> Response:
    """A Flask view serving the metrics in Prometheus' text format::

        app.add_url_rule("/metrics", view_func=metrics_view)

    With ``PROMETHEUS_MULTIPROC_DIR`` set (several worker processes), the
    values of every worker, read from that directory; otherwise this
    process's, from the app's registry (the default one).
    """
    from flask import current_app

    pc = _import_prometheus()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = pc.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = None
    metrics = metrics_of(current_app)
    if metrics is not None:
        from .fanout.membership import EXTENSION_KEY as ROOMS_KEY

        rooms = current_app.extensions.get(ROOMS_KEY)
        if rooms is not None:
            metrics.sync_rooms(rooms, force=True)
    if registry is None:
        registry = metrics.registry if metrics is not None else pc.REGISTRY
    return current_app.response_class(pc.generate_latest(registry), mimetype=pc.CONTENT_TYPE_LATEST)


def child_exit(server: t.Any, worker: t.Any) -> None:
    """gunicorn's ``child_exit`` hook: drop a dead worker's live gauges
    (its open sockets) from the sums. In ``gunicorn.conf.py``::

        from flask_sockets.metrics import child_exit
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
