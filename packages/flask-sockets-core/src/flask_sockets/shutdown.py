"""Closing the open sockets when a server stops, without a reconnect storm.

When a server stops (a deploy, a reload, SIGTERM), every open socket gets a
close frame. Closed all in the same instant, thousands of clients reconnect
in the same second to the next worker, whatever jitter they add. Every
Flask-Sockets server (``flask_sockets_gevent.run``, the gunicorn workers,
the threaded sockets' :class:`~flask_sockets.threaded.Connections`) closes
them through :func:`drain` instead: in batches spread over a window
(``SOCKETS_SHUTDOWN_WINDOW`` seconds, 10 by default), with close code 1012
"service restart" (``SOCKETS_SHUTDOWN_CODE``), which tells a client to come
back.

The window is never longer than the server's grace period (gunicorn's
``--graceful-timeout``, ``run(shutdown_timeout=...)``) less the close
handshake's timeout (``SOCKETS_CLOSE_TIMEOUT``), so the last socket still
gets its close handshake before the server gives up on its handlers. Up to
:data:`MIN_BATCH` sockets are closed at once, as before: spreading pays off
only for many.

This module holds the policy and the schedule only; each server closes one
socket its own way (a greenlet, the timer thread).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import logging
import math
import time
import typing as t

from .options import DEFAULTS
from .protocol import CloseCode
from .protocol import is_valid_close_code

__all__ = [
    "MIN_BATCH",
    "MIN_INTERVAL",
    "ShutdownPolicy",
    "config_of",
    "drain",
]

_S = t.TypeVar("_S")

logger = logging.getLogger("flask_sockets.shutdown")

#: The smallest batch: this many sockets or fewer are closed at once.
MIN_BATCH = 100
#: The shortest time between two batches, in seconds.
MIN_INTERVAL = 0.1

#: The close reason that goes with each shutdown close code.
_REASONS = {
    int(CloseCode.SERVICE_RESTART): "Server restarting",
    int(CloseCode.GOING_AWAY): "Server shutting down",
    int(CloseCode.TRY_AGAIN_LATER): "Server overloaded, try again later",
}


@dataclasses.dataclass(frozen=True)
class ShutdownPolicy:
    """How a stopping server closes its open sockets.

    :param window: Seconds over which the closes are spread; ``0``: all at once.
    :param code: The close code: 1012 (service restart, the default: come
        back) or 1001 (going away), or any code an endpoint may send.
    :param reason: The close reason; by default one that names the code.
    """

    window: float = DEFAULTS["SOCKETS_SHUTDOWN_WINDOW"]
    code: int = DEFAULTS["SOCKETS_SHUTDOWN_CODE"]
    reason: str = ""

    def __post_init__(self) -> None:
        if not is_valid_close_code(self.code):
            raise ValueError(f"SOCKETS_SHUTDOWN_CODE: {self.code} is not a close code an endpoint may send")
        if not self.window >= 0:
            raise ValueError(f"SOCKETS_SHUTDOWN_WINDOW: {self.window!r} is not a number of seconds >= 0")
        if not self.reason:
            object.__setattr__(self, "reason", _REASONS.get(int(self.code), "Server shutting down"))

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any], grace: float | None = None) -> ShutdownPolicy:
        """The policy set by a Flask config (missing keys take the
        defaults), with the window cut to fit in ``grace`` (the seconds the
        server gives its handlers to finish once it stops, ``None``:
        unknown, no cut) less ``SOCKETS_CLOSE_TIMEOUT``.

        :raises ValueError: For a close code an endpoint may not send, or a
            negative window.
        """
        window = float(config.get("SOCKETS_SHUTDOWN_WINDOW", DEFAULTS["SOCKETS_SHUTDOWN_WINDOW"]) or 0.0)
        code = int(config.get("SOCKETS_SHUTDOWN_CODE", DEFAULTS["SOCKETS_SHUTDOWN_CODE"]))
        if grace is not None:
            close_timeout = float(config.get("SOCKETS_CLOSE_TIMEOUT", DEFAULTS["SOCKETS_CLOSE_TIMEOUT"]))
            window = min(window, max(0.0, grace - close_timeout))
        return cls(window=window, code=code)

    @classmethod
    def for_app(cls, app: object, grace: float | None = None) -> ShutdownPolicy:
        """:meth:`from_config` with the config of the Flask app a server
        serves (see :func:`config_of`). A server stopping must close its
        sockets whatever the config says: a setting that is not valid
        (``init_app`` refuses it, but the config may change later) is
        logged, and the sockets are closed at once with 1012."""
        try:
            return cls.from_config(config_of(app), grace)
        except (TypeError, ValueError) as e:
            logger.error("Closing the open sockets at once with 1012: %s", e)
            return cls(window=0.0)

    def batches(self, count: int) -> list[tuple[float, int, int]]:
        """The schedule for closing ``count`` sockets: ``(delay, start,
        stop)`` for each batch, the seconds after the start of the shutdown
        at which the sockets ``start`` to ``stop`` (by index) are closed.
        Batches are equal (to one socket) and evenly spaced over the window,
        at least :data:`MIN_BATCH` sockets and :data:`MIN_INTERVAL` seconds
        apart; the first goes at once, the last one interval before the end
        of the window."""
        if count <= 0:
            return []
        n = max(1, min(math.ceil(count / MIN_BATCH), int(self.window / MIN_INTERVAL + 1e-9)))
        return [(self.window * i / n, count * i // n, count * (i + 1) // n) for i in range(n)]


def drain(
    sockets: t.Iterable[_S],
    close: t.Callable[[_S], object],
    policy: ShutdownPolicy,
    sleep: t.Callable[[float], object] = time.sleep,
    clock: t.Callable[[], float] = time.monotonic,
    late: t.Callable[[], t.Iterable[_S]] | None = None,
) -> None:
    """Call ``close`` on each of ``sockets`` (taken as they are now), in
    the batches of ``policy`` (:meth:`ShutdownPolicy.batches`), sleeping
    with ``sleep`` (:func:`gevent.sleep` in a greenlet, :func:`time.sleep`
    in a thread) between them. ``close`` must not block: it starts the
    close of one socket (sends its close frame, or hands it to a greenlet
    or thread). An exception from one ``close`` does not stop the others.
    A batch that comes late (the process had no CPU for a while) moves
    the ones after it: they keep their spacing rather than go out together
    to catch up (a burst of reconnects is what this avoids), up to the end
    of the window, where whatever is left goes. After the last batch,
    ``late()`` (the server's open sockets then) gives the sockets accepted
    meanwhile (a handshake under way when the server stopped): they are
    closed too. Returns then."""
    sockets = list(sockets)
    started = clock()
    end = started + policy.window
    batches = policy.batches(len(sockets))
    spacing = policy.window / len(batches) if batches else 0.0
    not_before = started
    for delay, start, stop in batches:
        wait = max(started + delay, min(not_before, end)) - clock()
        if wait > 0:
            sleep(wait)
        not_before = clock() + spacing
        _close_each(sockets[start:stop], close)
    if late is not None:
        seen = set(map(id, sockets))
        _close_each([ws for ws in late() if id(ws) not in seen], close)


def _close_each(sockets: t.Iterable[_S], close: t.Callable[[_S], object]) -> None:
    for ws in sockets:
        try:
            close(ws)
        except Exception:  # pragma: no cover - a bug in one socket's close; close the others
            logger.exception("Closing %r at shutdown failed", ws)


def config_of(app: object) -> t.Mapping[str, t.Any]:
    """The Flask config of the app a server serves: ``app.config``, or that
    of the app a middleware wraps (``app.app``, ``app.wsgi_app``: Werkzeug's
    debugger, ``ProxyFix``); an empty mapping (the defaults) for another
    WSGI app."""
    for _ in range(4):
        config = getattr(app, "config", None)
        if isinstance(config, collections.abc.Mapping):
            return config
        app = getattr(app, "app", None) or getattr(app, "wsgi_app", None)
        if app is None:
            break
    return {}
