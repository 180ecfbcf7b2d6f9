"""Flood control: how fast one peer may send, sans I/O.

A :class:`~flask_sockets.connection.Connection` given a :class:`FloodControl`
checks every message and control frame it hands over against token buckets
of its own (:class:`Limiter`), and fails the connection with 1008 (policy
violation) and one of the reasons below when a bucket runs dry, or, with
``action='drop'``, discards the message (or leaves the ping unanswered) and
counts it. The app also has an error budget to spend
(:meth:`Limiter.error`, ``ws.count_error()``).

Each bucket is a token bucket of ``burst`` tokens refilled at ``rate``
tokens a second, written as the equivalent "generic cell rate algorithm":
one float per bucket, the time at which it would be full again, so a check
is one clock reading and a few float operations. Time is the connection's
clock (:func:`time.monotonic` by default), read when a message is handed
over: a rate is measured as the server reads, so a backlog read at once
(a handler that stopped reading for a while) counts as a burst.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import typing as t

__all__ = [
    "BYTE_RATE_REASON",
    "CONTROL_RATE_REASON",
    "ERROR_LIMIT_REASON",
    "FLOOD_REASON_KEYS",
    "MESSAGE_RATE_REASON",
    "FloodControl",
    "Limiter",
    "TokenBucket",
    "flood_control_from_config",
]

#: The close reason (with close code 1008) over the message rate.
MESSAGE_RATE_REASON = "message rate limit exceeded"
#: ... over the byte rate.
BYTE_RATE_REASON = "byte rate limit exceeded"
#: ... over the control frame (ping and pong) rate.
CONTROL_RATE_REASON = "ping rate limit exceeded"
#: ... over the error budget.
ERROR_LIMIT_REASON = "error limit exceeded"

#: The config keys that set each rate, by its close reason (for the log).
FLOOD_REASON_KEYS = {
    MESSAGE_RATE_REASON: "SOCKETS_MESSAGE_RATE",
    BYTE_RATE_REASON: "SOCKETS_BYTE_RATE",
    CONTROL_RATE_REASON: "SOCKETS_CONTROL_RATE",
}

#: What happens when a message or control frame is over its limit.
ACTIONS = ("close", "drop")


@dataclasses.dataclass(frozen=True)
class FloodControl:
    """How fast one connection's peer may send (the ``SOCKETS_*`` keys of
    the same names, upper-cased: ``SOCKETS_MESSAGE_RATE``, ...;
    ``SOCKETS_FLOOD_ACTION`` for ``action``). A rate of
    ``None`` (or ``0``) turns its limit off; a burst of ``None`` (or ``0``)
    is one second's worth of its rate. Immutable and hashable: one object is
    shared by every connection of a route."""

    #: Messages per second, on average.
    message_rate: float | None = 100
    #: Messages at once (the bucket's size).
    message_burst: float | None = 200
    #: Bytes of messages per second, on average (a message's size as
    #: ``SOCKETS_MAX_MESSAGE_SIZE`` counts it: uncompressed, text as UTF-8).
    byte_rate: float | None = 1024 * 1024
    #: Bytes at once; never less than the message size limit, so that one
    #: message of the largest size always passes a full bucket.
    byte_burst: float | None = 4 * 1024 * 1024
    #: Pings and pongs per second, on average.
    control_rate: float | None = 10
    #: Pings and pongs at once.
    control_burst: float | None = 20
    #: Errors the app counts (``ws.count_error()``) ...
    max_errors: int | None = 20
    #: ... within this many seconds, before the connection is closed.
    error_window: float = 5.0
    #: ``'close'``: over a rate, close with 1008; ``'drop'``: discard the
    #: message (leave the ping unanswered) and count it.
    action: str = "close"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"Flood control action {self.action!r}: use 'close' or 'drop'")
        for name in ("message_rate", "message_burst", "byte_rate", "byte_burst", "control_rate", "control_burst"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Flood control {name}={value!r}: a rate or burst is >= 0 (0 or None: off)")
        if self.max_errors and not self.error_window > 0:
            raise ValueError(f"Flood control error_window={self.error_window!r}: seconds, > 0")

    @property
    def enabled(self) -> bool:
        """Whether any limit is on."""
        return bool(self.message_rate or self.byte_rate or self.control_rate or self.max_errors)


#: The config keys of :class:`FloodControl`'s fields, with their defaults.
CONFIG_KEYS = {
    "SOCKETS_FLOOD_ACTION" if field.name == "action" else f"SOCKETS_{field.name.upper()}": field.name
    for field in dataclasses.fields(FloodControl)
}
DEFAULT = FloodControl()


def flood_control_from_config(config: t.Mapping[str, t.Any], route: t.Any = None) -> FloodControl | None:
    """The flood control of a connection: the app's ``SOCKETS_*`` keys,
    overridden by the route's ``flood_control=`` (``None`` or ``True``: the
    app's; ``False``: none; a dict of :class:`FloodControl` fields: the
    app's with those replaced; a :class:`FloodControl`: that one). ``None``
    when every limit is off. Equal settings give the same object.

    :raises ValueError: For a setting that cannot work.
    :raises TypeError: For a route setting of another type, or an unknown field.
    """
    if route is False:
        return None
    if isinstance(route, FloodControl):
        return route if route.enabled else None
    get = config.get
    values = tuple(get(key, getattr(DEFAULT, name)) for key, name in CONFIG_KEYS.items())
    if route is not None and route is not True:
        if not isinstance(route, dict):
            raise TypeError(
                f"flood_control={route!r}: use True, False, a dict of FloodControl fields or a FloodControl"
            )
        unknown = set(route) - set(CONFIG_KEYS.values())
        if unknown:
            raise TypeError(
                f"flood_control: unknown field(s) {sorted(unknown)}; the fields are {list(CONFIG_KEYS.values())}"
            )
        values = tuple(route.get(name, value) for name, value in zip(CONFIG_KEYS.values(), values))
    return _flood_control(*values)


@functools.lru_cache(maxsize=32)
def _flood_control(*values: t.Any) -> FloodControl | None:
    made = FloodControl(*values)
    return made if made.enabled else None


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second; :meth:`take` takes
    some if the bucket holds them (see the module docstring)."""

    __slots__ = ("_full_at", "interval", "tolerance")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        #: Seconds one token takes to come back.
        self.interval = 1.0 / rate
        # How far ahead of now the full-again time may be: the whole bucket
        # (a hair more, so that float sums of ``interval`` never lose a token).
        self.tolerance = (burst or rate) * self.interval * (1 + 1e-9)
        self._full_at = float("-inf")

    def take(self, now: float, tokens: float = 1) -> bool:
        """Take ``tokens`` at time ``now``: ``True``, or ``False`` (and
        nothing taken) if the bucket does not hold them."""
        full_at = self._full_at
        if full_at < now:
            full_at = now
        full_at += tokens * self.interval
        if full_at - now > self.tolerance:
            return False
        self._full_at = full_at
        return True


def _bucket(rate: float | None, burst: float | None) -> TokenBucket | None:
    return TokenBucket(rate, burst) if rate else None


class Limiter:
    """One connection's buckets for a :class:`FloodControl` (see the module
    docstring). :meth:`check`, :meth:`control` and :meth:`error` return
    ``None`` when what arrived is within its limit, else the close reason.

    :param max_message_size: The connection's message size limit: the byte
        bucket holds at least that much.
    """

    __slots__ = (
        "_byte_full_at",
        "_byte_interval",
        "_byte_tolerance",
        "_clock",
        "_controls",
        "_errors",
        "_message_full_at",
        "_message_interval",
        "_message_tolerance",
        "drop",
        "dropped",
        "settings",
    )

    def __init__(
        self,
        settings: FloodControl,
        max_message_size: int | None = None,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        #: The :class:`FloodControl` the buckets were made from.
        self.settings = settings
        #: Whether what is over a rate is dropped (``action='drop'``) rather
        #: than closing the connection.
        self.drop = settings.action == "drop"
        #: Messages and control frames dropped so far (``action='drop'``).
        self.dropped = 0
        self._clock = clock
        # The message and byte buckets: TokenBucket's fields, kept here so that
        # check() is one call per message (an interval of 0.0: no limit).
        messages = _bucket(settings.message_rate, settings.message_burst)
        self._message_interval = 0.0 if messages is None else messages.interval
        self._message_tolerance = 0.0 if messages is None else messages.tolerance
        self._message_full_at = float("-inf")
        byte_burst = settings.byte_burst or settings.byte_rate
        if byte_burst and max_message_size is not None:
            byte_burst = max(byte_burst, max_message_size)
        octets = _bucket(settings.byte_rate, byte_burst)
        self._byte_interval = 0.0 if octets is None else octets.interval
        self._byte_tolerance = 0.0 if octets is None else octets.tolerance
        self._byte_full_at = float("-inf")
        self._controls = _bucket(settings.control_rate, settings.control_burst)
        errors = settings.max_errors
        self._errors = TokenBucket(errors / settings.error_window, errors) if errors else None

    def check(self, event: object) -> str | None:
        """An event arrived: ``None`` if it is within its limits, else the
        close reason. A message (``str`` or ``bytes``) is held to the message
        and byte rates, anything else to the control rate: pass messages,
        pings and pongs only."""
        cls = event.__class__
        if cls is str or cls is bytes:
            now = self._clock()
            # TokenBucket.take, inlined twice (the per-message path).
            interval = self._message_interval
            if interval:
                full_at = self._message_full_at
                if full_at < now:
                    full_at = now
                full_at += interval
                if full_at - now > self._message_tolerance:
                    return MESSAGE_RATE_REASON
                self._message_full_at = full_at
            interval = self._byte_interval
            if interval:
                # Its size in bytes; for text, its UTF-8 (isascii() is O(1):
                # the common case costs no encoding).
                # (No typing.cast here: it is a call.)
                if cls is bytes or event.isascii():  # type: ignore[attr-defined]
                    size = len(event)  # type: ignore[arg-type]
                else:
                    size = len(event.encode())  # type: ignore[attr-defined]
                full_at = self._byte_full_at
                if full_at < now:
                    full_at = now
                full_at += size * interval
                if full_at - now > self._byte_tolerance:
                    return BYTE_RATE_REASON
                self._byte_full_at = full_at
            return None
        bucket = self._controls
        if bucket is None or bucket.take(self._clock()):
            return None
        return CONTROL_RATE_REASON

    def error(self) -> str | None:
        """The app counted an error: ``None`` while within the error budget,
        else the close reason."""
        bucket = self._errors
        if bucket is None or bucket.take(self._clock()):
            return None
        return ERROR_LIMIT_REASON
