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

How it counts, and what it costs: every socket's engine
(:class:`~flask_sockets.connection.Connection`) can count messages,
payload bytes and bytes on the wire in plain integers (a few integer
additions per message; off, one test). With metrics on, the view that runs
a socket handler (:mod:`flask_sockets.views`) gives each socket a
:class:`SocketTap`, which turns its engine's counters on and moves their
counts into the Prometheus counters
when the socket closes, before each scrape this process answers, and every
:data:`FLUSH_INTERVAL` seconds while the process has open sockets (its
flusher: one greenlet or thread per process, not per socket); a flush also
takes the keepalive's latest ping round-trip time from the engine
(:attr:`Connection.ping_rtt <flask_sockets.connection.Connection.ping_rtt>`).
The series are listed in :doc:`/metrics`.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import threading
import time
import typing as t
import weakref

from .concurrency import GeventRunner
from .concurrency import current_runner
from .connection import Connection
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
    "FLUSH_INTERVAL",
    "UNROUTED",
    "SocketMetrics",
    "SocketTap",
    "child_exit",
    "count_early_refusal",
    "metrics_view",
]

#: The ``app.extensions`` key of the app's :class:`SocketMetrics`.
EXTENSION_KEY = "sockets.metrics"
#: Seconds between two passes of a process's flusher over its open sockets
#: (:meth:`SocketMetrics.flush_open`; :attr:`SocketMetrics.flush_interval`
#: per registry): how stale the counts of an open socket may be in a scrape
#: answered by another worker process. A pass costs about 0.5 us per open
#: socket with nothing new, 7 us per socket with new counts (``bench:metrics``).
FLUSH_INTERVAL = 5.0
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

#: The engine's counters a flush moves in: the :class:`SocketMetrics`
#: series, its ``direction`` label, and the :class:`~flask_sockets.connection.Connection`
#: attribute.
_COUNTS = (
    ("messages", "in", "messages_in"),
    ("messages", "out", "messages_out"),
    ("payload_bytes", "in", "payload_bytes_in"),
    ("payload_bytes", "out", "payload_bytes_out"),
    ("wire_bytes", "in", "wire_bytes_in"),
    ("wire_bytes", "out", "wire_bytes_out"),
)
# The counters of _COUNTS, read from a Connection in one call.
_read_counts: t.Callable[[Connection], tuple[int, ...]] = operator.attrgetter(*(name for _, _, name in _COUNTS))

logger = logging.getLogger("flask_sockets.metrics")


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
        # Every series is named flask_sockets_* and lives in ``registry``.
        counter = functools.partial(pc.Counter, namespace="flask_sockets", registry=registry)
        gauge = functools.partial(pc.Gauge, namespace="flask_sockets", registry=registry)
        histogram = functools.partial(pc.Histogram, namespace="flask_sockets", registry=registry)
        self.open_sockets = gauge(
            "open_sockets",
            "Sockets whose handler is running, by route (summed over live worker processes).",
            ["route"],
            multiprocess_mode="livesum",
        )
        self.handshakes = counter(
            "handshakes",
            "WebSocket handshakes by route and HTTP status (101 accepted; 4xx/5xx refused).",
            ["route", "status"],
        )
        self.messages = counter(
            "messages",
            "Data messages (text and binary) by route and direction (in: from clients; out: to clients).",
            ["route", "direction"],
        )
        self.payload_bytes = counter(
            "payload_bytes",
            "Bytes of message payload (before compression, UTF-8 for text) by route and direction.",
            ["route", "direction"],
        )
        self.wire_bytes = counter(
            "wire_bytes",
            "Bytes of WebSocket frames on the wire (headers, masking keys, control frames; payloads as sent,"
            " compressed or not) by route and direction.",
            ["route", "direction"],
        )
        self.closes = counter(
            "closes",
            "Closed sockets by route, close code and the side that closed (server or client).",
            ["route", "code", "side"],
        )
        self.slow_consumers = counter(
            "slow_consumers_closed",
            "Sockets closed with 1008 because their send queue (SOCKETS_SEND_QUEUE_SIZE) overflowed.",
            ["route"],
        )
        self.rate_limited = counter(
            "rate_limited",
            "Flood control decisions by route, limit (messages, bytes, control, errors; 'any' for drops)"
            " and action (close, drop).",
            ["route", "limit", "action"],
        )
        self.broker_published = counter(
            "broker_published",
            "Messages this process published (sockets.publish, broadcast) through the message queue.",
        )
        self.broker_received = counter(
            "broker_received",
            "Messages this process received from the message queue (its own publishes too, without Redis).",
        )
        self.deliveries = counter("deliveries", "Published messages handed to sockets (one per socket reached).")
        self.broker_lag = histogram(
            "broker_lag_seconds",
            "Seconds from publish (in any process or host) to this process receiving the message from Redis.",
            buckets=LATENCY_BUCKETS,
        )
        self.broker_reconnects = counter(
            "broker_reconnects",
            "Times the message queue (Redis) connection of this process came back after it was lost.",
        )
        self.disconnected = counter(
            "disconnected",
            "Sockets of this process closed by sockets.disconnect (a room's sockets, from any process or host).",
        )
        self.send_queue = gauge(
            "send_queue_messages",
            "Published messages queued for sockets, not yet sent (summed over live worker processes).",
            multiprocess_mode="livesum",
        )
        self.send_queue_longest = gauge(
            "send_queue_longest_messages",
            "The longest send queue of a socket (the largest over live worker processes).",
            multiprocess_mode="livemax",
        )
        self.ping_rtt = histogram(
            "ping_rtt_seconds",
            "Seconds from a keepalive ping to the pong that answered it, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
        )
        self.handler_seconds = histogram(
            "socket_duration_seconds",
            "How long sockets stayed open (handler start to close), by route.",
            ["route"],
            buckets=(1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0),
        )
        #: Seconds between two passes of this process's flusher over its
        #: open sockets (see :meth:`flush_open`).
        self.flush_interval = FLUSH_INTERVAL
        # What sync_rooms() already moved into the counters above, by Rooms.
        self._synced: weakref.WeakKeyDictionary[t.Any, list[float]] = weakref.WeakKeyDictionary()
        self._sync_lock = threading.Lock()
        # The open sockets of this process, and its flusher: (pid, token) and when it last ran.
        self._open: set[SocketTap] = set()
        self._lock = threading.Lock()
        self._flusher: tuple[int, object] | None = None
        self._flusher_ran = 0.0

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
        :class:`SocketTap`. The flushes also :meth:`sync_rooms` ``rooms``,
        and the broker of ``rooms`` reports its lag here. Starts this
        process's flusher if it is not running (see :meth:`flush_open`)."""
        if rooms is not None:
            broker = rooms.broker
            if broker.lag_observer is None:
                broker.lag_observer = self.broker_lag.observe
        tap = SocketTap(self, ws, route, rooms)
        with self._lock:
            self._open.add(tap)
            start = self._flusher_gone()
            if start:
                token = object()
                self._flusher = (os.getpid(), token)
                self._flusher_ran = time.monotonic()
        if start:
            runner = current_runner()
            if isinstance(runner, GeventRunner):
                runner.spawn(self._flush_open_sockets, token, runner.sleep)
            else:
                thread = threading.Thread(
                    target=self._flush_open_sockets, args=(token, time.sleep), name="flask-sockets metrics", daemon=True
                )
                thread.start()
        return tap

    def flush_open(self) -> None:
        """Move the counts of this process's open sockets (their engines'
        counters, :class:`~flask_sockets.connection.Connection`) into the
        Prometheus series now, and :meth:`sync_rooms` their rooms. Done by
        :func:`metrics_view` before each scrape, and every
        :attr:`flush_interval` seconds by the process's flusher (a greenlet
        in the sockets' gevent hub, or a daemon thread), which runs while
        the process has open sockets: a scrape answered by another worker
        process shows this one's open sockets as of its last pass."""
        with self._lock:
            rooms = {tap.rooms for tap in self._open}
            for tap in self._open:
                tap.flush()
        for each in rooms:
            if each is not None:
                self.sync_rooms(each)

    def _flusher_gone(self) -> bool:
        """Whether this process has no flusher running (none started, the
        one started before a fork, or one whose hub or thread is gone: it
        missed two passes). With the lock held."""
        flusher = self._flusher
        return (
            flusher is None
            or flusher[0] != os.getpid()
            or time.monotonic() - self._flusher_ran > 2 * self.flush_interval + 1.0
        )

    def _flush_open_sockets(self, token: object, sleep: t.Callable[[float], None]) -> None:
        """The flusher: :meth:`flush_open` every :attr:`flush_interval`
        seconds until no socket is open (or another flusher took over)."""
        while True:
            sleep(self.flush_interval)
            with self._lock:
                flusher = self._flusher
                if flusher is None or flusher[1] is not token:
                    return
                if not self._open:
                    self._flusher = None
                    return
                self._flusher_ran = time.monotonic()
            try:
                self.flush_open()
            except Exception:  # (a flusher that died would leave the values stale until the sockets close)
                logger.exception("Moving the sockets' counts into the metrics failed")

    def _finished(self, tap: SocketTap) -> None:
        """``tap``'s socket is closed: its last flush, and it is no longer open."""
        with self._lock:
            tap.flush()
            self._open.discard(tap)

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


class SocketTap:
    """Counts one socket: made when its handler starts (by
    :meth:`SocketMetrics.tap`), :meth:`finish`\\ ed after it ends and the
    socket is closed.

    Messages and bytes are counted by the socket's engine
    (:class:`~flask_sockets.connection.Connection`, whose plain integer
    counters the tap turns on:
    :attr:`~flask_sockets.protocol.ServerProtocol.counting`);
    :meth:`flush` moves what they counted since the last flush into the
    Prometheus counters. Nothing is wrapped on the message path. The
    socket's ``close`` is wrapped (an attribute of this socket only; not on
    the message path) to learn the code a close was asked with, even if its
    close frame never goes out (a slow consumer's), and to count slow
    consumers; without it (a socket that takes no attributes) the engine
    still says who started the close and with which code
    (:attr:`~flask_sockets.connection.Connection.local_close_code`).
    Sockets without an engine (a server's own, such as gevent-websocket's)
    are counted at open, handshake and close only.
    """

    __slots__ = (
        "_closed_by_server",
        "_counted",
        "_counted_101",
        "_started",
        "conn",
        "metrics",
        "rooms",
        "route",
        "series",
    )

    def __init__(self, metrics: SocketMetrics, ws: t.Any, route: str, rooms: Rooms | None = None) -> None:
        self.metrics = metrics
        self.route = route
        #: The rooms whose counts the flushes move in too.
        self.rooms = rooms
        self._closed_by_server: int | None = None
        self._counted_101 = False
        self._started = time.monotonic()
        conn = getattr(ws, "_protocol", None)
        #: The socket's engine, whose counters are read, or ``None``.
        self.conn: Connection | None = None
        if isinstance(conn, Connection):
            self.conn = conn
            conn.counting = True
        #: The label children of :data:`_COUNTS`, looked up once per socket.
        self.series = tuple(getattr(metrics, family).labels(route, direction) for family, direction, _ in _COUNTS)
        self._counted = () if self.conn is None else _read_counts(self.conn)
        metrics.open_sockets.labels(route).inc()
        try:
            self._wrap_close(ws)
        except (AttributeError, TypeError):  # no __dict__: the engine's word on the close only
            pass

    def flush(self) -> None:
        """Move the counts since the last flush into the Prometheus
        counters, and the keepalive's latest ping round-trip time
        (:attr:`Connection.ping_rtt <flask_sockets.connection.Connection.ping_rtt>`)
        into its histogram. Called by :meth:`SocketMetrics.flush_open` and
        at :meth:`finish`, with the metrics' lock held."""
        conn = self.conn
        if conn is None:
            return
        counts = _read_counts(conn)
        counted = self._counted
        if counts != counted:
            for child, now, before in zip(self.series, counts, counted):
                if now != before:
                    child.inc(now - before)
            self._counted = counts
        rtt = conn.ping_rtt
        if rtt is not None:
            conn.ping_rtt = None
            self.metrics.ping_rtt.labels(self.route).observe(rtt)

    def _wrap_close(self, ws: t.Any) -> None:
        close = ws.close
        tap = self

        def counted_close(code: int = CloseCode.NORMAL_CLOSURE, message: bytes | str = b"") -> None:
            if tap._closed_by_server is None and not ws.closed:
                tap._closed_by_server = int(code)
                reason = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
                if code == CloseCode.POLICY_VIOLATION and reason == SLOW_CONSUMER_REASON:
                    tap.metrics.slow_consumers.labels(tap.route).inc()
            close(code, message)

        ws.close = counted_close

    def accepted(self) -> None:
        """The ``101`` went out: count the handshake."""
        if not self._counted_101:
            self._counted_101 = True
            self.metrics.count_handshake(self.route, 101)

    def finish(self, ws: t.Any) -> None:
        """The handler ended and the socket is closed (or was never
        accepted): the last flush, count the close, and the socket is no
        longer open."""
        m, route = self.metrics, self.route
        m._finished(self)
        if getattr(ws, "accepted", True):
            self.accepted()  # (a deferred handshake, answered by the handler)
            # The server closed if it was asked to (close(), even if its close frame never went out: a
            # slow consumer's), or if its engine started the close (failed it, the session's end).
            code = self._closed_by_server
            if code is None:
                code = getattr(getattr(ws, "_protocol", None), "local_close_code", None)
            side = "client" if code is None else "server"
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
    process's, from the app's registry (the default one). The counts of
    this process's open sockets are moved in first
    (:meth:`SocketMetrics.flush_open`); another worker's are as of its
    flusher's last pass, at most :data:`FLUSH_INTERVAL` seconds old.
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

        metrics.flush_open()  # (this process's open sockets: exact; other workers' as of their last flush)
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
