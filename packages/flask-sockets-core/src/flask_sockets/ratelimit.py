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


def _bucket(rate: float | None, burst: float | None) -> tuple[float, float]:
    """A bucket's ``(interval, tolerance)`` (see :class:`TokenBucket`);
    ``(0.0, 0.0)`` without a rate."""
    if not rate:
        return 0.0, 0.0
    bucket = TokenBucket(rate, burst)
    return bucket.interval, bucket.tolerance


# The full-again time of a bucket nothing was taken from: one float shared
# by every connection (a connection's own floats are made as it takes).
_FULL = float("-inf")


class _Rates:
    """What a :class:`Limiter` reads and never changes: each bucket's
    interval and tolerance (:class:`TokenBucket`'s fields; an interval of
    ``0.0``: no limit). One object per :class:`FloodControl` and message
    size limit, shared by all their connections (:func:`_rates`), so that
    a connection's own state is its four full-again times."""

    __slots__ = (
        "byte_interval",
        "byte_tolerance",
        "control_interval",
        "control_tolerance",
        "drop",
        "error_interval",
        "error_tolerance",
        "message_interval",
        "message_tolerance",
        "settings",
    )

    def __init__(self, settings: FloodControl, max_message_size: int | None) -> None:
        self.settings = settings
        self.drop = settings.action == "drop"
        self.message_interval, self.message_tolerance = _bucket(settings.message_rate, settings.message_burst)
        byte_burst = settings.byte_burst or settings.byte_rate
        if byte_burst and max_message_size is not None:
            byte_burst = max(byte_burst, max_message_size)
        self.byte_interval, self.byte_tolerance = _bucket(settings.byte_rate, byte_burst)
        self.control_interval, self.control_tolerance = _bucket(settings.control_rate, settings.control_burst)
        errors = settings.max_errors
        self.error_interval, self.error_tolerance = _bucket(
            errors / settings.error_window if errors else None, errors
        )


@functools.lru_cache(maxsize=64)
def _rates(settings: FloodControl, max_message_size: int | None) -> _Rates:
    return _Rates(settings, max_message_size)


class Limiter:
    """One connection's buckets for a :class:`FloodControl` (see the module
    docstring). :meth:`check`, :meth:`control` and :meth:`error` return
    ``None`` when what arrived is within its limit, else the close reason.

    What never changes (the rates) is shared by every connection of the
    same settings; a connection keeps only each bucket's full-again time:
    an idle socket's flood control is one small object.

    :param max_message_size: The connection's message size limit: the byte
        bucket holds at least that much.
    """

    __slots__ = (
        "_byte_full_at",
        "_clock",
        "_control_full_at",
        "_error_full_at",
        "_message_full_at",
        "_rates",
        "dropped",
    )

    def __init__(
        self,
        settings: FloodControl,
        max_message_size: int | None = None,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = _rates(settings, max_message_size)
        #: Messages and control frames dropped so far (``action='drop'``).
        self.dropped = 0
        self._clock = clock
        self._message_full_at = self._byte_full_at = self._control_full_at = self._error_full_at = _FULL

    @property
    def settings(self) -> FloodControl:
        """The :class:`FloodControl` the buckets were made from."""
        return self._rates.settings

    @property
    def drop(self) -> bool:
        """Whether what is over a rate is dropped (``action='drop'``) rather
        than closing the connection."""
        return self._rates.drop

    def check(self, event: object) -> str | None:
        """An event arrived: ``None`` if it is within its limits, else the
        close reason. A message (``str`` or ``bytes``) is held to the message
        and byte rates, anything else to the control rate: pass messages,
        pings and pongs only."""
        cls = event.__class__
        rates = self._rates
        if cls is str or cls is bytes:
            now = self._clock()
            # TokenBucket.take, inlined twice (the per-message path).
            interval = rates.message_interval
            if interval:
                full_at = self._message_full_at
                if full_at < now:
                    full_at = now
                full_at += interval
                if full_at - now > rates.message_tolerance:
                    return MESSAGE_RATE_REASON
                self._message_full_at = full_at
            interval = rates.byte_interval
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
                if full_at - now > rates.byte_tolerance:
                    return BYTE_RATE_REASON
                self._byte_full_at = full_at
            return None
        interval = rates.control_interval
        if not interval:
            return None
        now = self._clock()
        full_at = self._control_full_at
        if full_at < now:
            full_at = now
        full_at += interval
        if full_at - now > rates.control_tolerance:
            return CONTROL_RATE_REASON
        self._control_full_at = full_at
        return None

    def error(self) -> str | None:
        """The app counted an error: ``None`` while within the error budget,
        else the close reason."""
        rates = self._rates
        interval = rates.error_interval
        if not interval:
            return None
        now = self._clock()
        full_at = self._error_full_at
        if full_at < now:
            full_at = now
        full_at += interval
        if full_at - now > rates.error_tolerance:
            return ERROR_LIMIT_REASON
        self._error_full_at = full_at
        return None
