"""Per-app socket settings, read from Flask config keys prefixed ``SOCKETS_``."""

from __future__ import annotations

import dataclasses
import functools
import typing as t

from .compression import DEFAULT_COMPRESSION
from .compression import Compression
from .compression import compression_from_setting
from .ratelimit import FloodControl
from .ratelimit import flood_control_from_config

__all__ = ["DEFAULTS", "SocketOptions", "max_fragments"]

#: The config keys Flask-Sockets reads, with their defaults. ``init_app``
#: sets each one with ``app.config.setdefault``.
DEFAULTS: dict[str, t.Any] = {
    # Largest message (text or binary, all fragments together) a peer may
    # send, in bytes; ``None`` for no limit. Over it: close 1009. 1 MiB is
    # plenty for chat and JSON and bounds what one peer can make the server
    # buffer: the limit is checked against each frame's announced length
    # before its payload is read, and while a compressed message is inflated.
    # It also bounds the fragments of one message (see ``max_fragments``:
    # 16,384 for 1 MiB), so a flood of empty fragments gets 1009 too.
    "SOCKETS_MAX_MESSAGE_SIZE": 1024 * 1024,
    # Seconds of silence from the peer before the server pings it; ``None`` or
    # 0: never. Dead peers (a laptop closed, a network gone) send nothing;
    # pinging finds them, and keeps proxies with a 60 s idle timeout from
    # cutting quiet sockets.
    "SOCKETS_PING_INTERVAL": 20.0,
    # Seconds to wait for the pong before closing with 1011 (reason
    # ``keepalive ping timeout``); the handler's ``receive()`` then returns ``None``.
    "SOCKETS_PING_TIMEOUT": 20.0,
    # Seconds ``close()`` waits for the peer's close frame, and that a
    # connection failed by the server (1002, 1007, 1009, 1011) goes on reading
    # and discarding what the peer still sends, so that the close frame arrives.
    # Bounded, so that a peer that never answers cannot hold a handler.
    "SOCKETS_CLOSE_TIMEOUT": 5.0,
    # Seconds a send may go without progress (a peer that reads nothing)
    # before the connection is cut and ``send()`` raises ``ConnectionClosed``;
    # ``None``: wait forever (the keepalive still cuts a peer that neither
    # reads nor answers pings). Without it, one client that stops reading
    # holds its handler, and everything it was sending, forever.
    "SOCKETS_SEND_TIMEOUT": 20.0,
    # permessage-deflate (RFC 7692), when the client offers it (browsers do):
    # ``True`` for the defaults of ``flask_sockets.compression.Compression``
    # (no context kept between messages: no zlib memory held per connection,
    # one shared compressor, a publish compressed once), ``False`` for off,
    # or a dict of its fields, e.g. ``{'server_no_context_takeover': False}``.
    # A route may override it: ``@sockets.route(rule, compression=False)``.
    # On, because JSON and text shrink several times on the wire; mind
    # secrets next to attacker-chosen text (CRIME/BREACH).
    "SOCKETS_COMPRESSION": True,
    # Browser origins allowed to open sockets: ``None`` for same-origin only
    # (requests without an Origin header, i.e. non-browser clients, always
    # pass), ``'*'`` for any origin, or a list of origins such as
    # ``['https://example.com']``. Same-origin by default, because browsers
    # send cookies with WebSocket requests from any site: without the check,
    # another site's page could open a socket as your logged-in user
    # (cross-site WebSocket hijacking).
    "SOCKETS_ALLOWED_ORIGINS": None,
    # Where ``sockets.publish`` and ``sockets.broadcast`` send messages: ``None``
    # for the sockets of this process only; a Redis URL such as
    # ``'redis://localhost:6379/0'`` for those of every process and host using
    # that Redis, or a Redis Cluster URL such as ``'redis+cluster://host:7000/'``
    # (sharded pub/sub; needs ``flask-sockets-core[redis]``); or a
    # ``flask_sockets.brokers.Broker``.
    "SOCKETS_MESSAGE_QUEUE": None,
    # The prefix of the Redis channels and keys; apps sharing a Redis need distinct ones.
    "SOCKETS_MESSAGE_QUEUE_CHANNEL": "flask-sockets",
    # Seconds a presence entry (``sockets.join(ws, room, presence=...)``)
    # outlives the last heartbeat of its process (one every third of it): the
    # entries of a process that died vanish from ``sockets.presence()`` after
    # this, and their ``leave`` is reported within another third of it.
    "SOCKETS_PRESENCE_TTL": 15.0,
    # Largest presence payload, in bytes of JSON: every process reads every
    # entry of a room, so entries stay small.
    "SOCKETS_PRESENCE_MAX_SIZE": 1024,
    # Published messages waiting to be sent to one socket; a client that lets
    # more pile up is closed with 1008 (see flask_sockets.rooms).
    "SOCKETS_SEND_QUEUE_SIZE": 256,
    # Messages each room keeps for a socket that reconnects
    # (``sockets.resume``, :doc:`reliable`); ``0``: no history (the default).
    # ``sockets.history(rooms, size=...)`` sets it per room.
    "SOCKETS_HISTORY_SIZE": 0,
    # Seconds a room's history is kept after its last message.
    "SOCKETS_HISTORY_TTL": 300.0,
    # Seconds a room's position (its epoch and last offset) is kept after its
    # last message or resume: a socket that missed nothing resumes within it
    # even when the messages expired.
    "SOCKETS_HISTORY_META_TTL": 86400.0,
    # The most messages one resume replays; a socket that missed more gets
    # ``recovered=False`` and reloads.
    "SOCKETS_HISTORY_MAX_REPLAY": 1000,
    # Seconds between the ``{"t":"ping"}`` heartbeats of an envelope socket
    # (``sockets.envelope``): the browser client declares the link dead after
    # this plus 5 seconds without a frame.
    "SOCKETS_ENVELOPE_PING": 25.0,
    # Rooms one envelope socket may subscribe to; more get an ``error`` frame.
    "SOCKETS_ENVELOPE_MAX_ROOMS": 100,
    # Flood control (``flask_sockets.ratelimit``, on by default): messages a
    # second one connection's peer may send on average; ``None`` or 0: no limit.
    # Over it: close with 1008 ``message rate limit exceeded`` (or drop, see
    # ``SOCKETS_FLOOD_ACTION``). 100 is far above what people and browsers
    # send (a 60 Hz game sends 60, a chat client a few), and a client sending
    # back to back (thousands a second, each waking its handler) is closed
    # within milliseconds. A route may override every flood control key:
    # ``@sockets.route(rule, flood_control={'message_rate': 1000})``, or
    # ``flood_control=False`` for none.
    "SOCKETS_MESSAGE_RATE": 100,
    # Messages the peer may send at once, over the rate (the token bucket's
    # size; ``None`` or 0: one second of the rate). The rate is measured as the
    # server reads, so a handler that stops reading for a while and then reads
    # what piled up sees a burst: 200 covers 2 s of backlog at the full rate.
    "SOCKETS_MESSAGE_BURST": 200,
    # Bytes of messages a second the peer may send on average (uncompressed,
    # text counted as UTF-8); ``None`` or 0: no limit. Over it: close with
    # 1008 ``byte rate limit exceeded``. 1 MiB/s is far above chat and JSON
    # traffic; raise it on a route that takes uploads.
    "SOCKETS_BYTE_RATE": 1024 * 1024,
    # Bytes the peer may send at once; never less than
    # ``SOCKETS_MAX_MESSAGE_SIZE``, so one message of the largest size always
    # passes (after it, the peer waits for the rate to refill the bucket).
    "SOCKETS_BYTE_BURST": 4 * 1024 * 1024,
    # Pings and pongs a second the peer may send on average; ``None`` or 0: no
    # limit. Each ping gets a pong, so a ping flood is also a flood of pongs:
    # over the rate, the connection is closed with 1008 ``ping rate limit
    # exceeded`` (or, with ``'drop'``, the ping is not answered). Clients ping
    # every few seconds at most, and the server's own keepalive (one ping per
    # ``SOCKETS_PING_INTERVAL``) is far below it.
    "SOCKETS_CONTROL_RATE": 10,
    # Pings and pongs the peer may send at once.
    "SOCKETS_CONTROL_BURST": 20,
    # The error budget: errors one connection may cause before it is closed
    # with 1008 ``error limit exceeded``; ``None`` or 0: no budget. An error
    # is what the app counts with ``ws.count_error()``: a message it rejects
    # (malformed, unknown, failing validation). Protocol errors and handler
    # exceptions close the connection at once (1002, 1007, 1009, 1011) and
    # need no budget.
    "SOCKETS_MAX_ERRORS": 20,
    # ... within this many seconds (the budget refills at
    # ``SOCKETS_MAX_ERRORS / SOCKETS_ERROR_WINDOW`` errors a second).
    "SOCKETS_ERROR_WINDOW": 5.0,
    # What a message or ping over a rate gets: ``'close'`` (1008, the reason
    # naming the limit, and a warning in the app's log naming the key), or
    # ``'drop'``: it is discarded (a ping is not answered) and counted in
    # ``ws.dropped``, and the connection stays open.
    "SOCKETS_FLOOD_ACTION": "close",
    # Where the app serves ``flask-sockets.js``, the browser client of the
    # JSON envelope (:doc:`client`): ``import { SocketClient } from
    # '/_sockets/flask-sockets.js'``. ``None`` serves nothing (a bundler ships
    # it, or the app serves the file itself). Read by ``init_app``.
    "SOCKETS_CLIENT_URL": "/_sockets/flask-sockets.js",
    # ``True``: count the app's sockets in Prometheus series (needs
    # ``flask-sockets-core[metrics]``; see flask_sockets.metrics), read by
    # ``init_app``. Off by default: an app that does not scrape them pays nothing.
    "SOCKETS_METRICS": False,
    # Seconds over which a stopping server (a deploy, a reload, SIGTERM)
    # spreads the closes of its open sockets, in batches (see
    # flask_sockets.shutdown), so that its clients do not all reconnect to the
    # next worker in the same second; ``0``: all at once. Never longer than
    # the server's grace period (gunicorn's ``--graceful-timeout``,
    # ``run(shutdown_timeout=...)``) less ``SOCKETS_CLOSE_TIMEOUT``.
    "SOCKETS_SHUTDOWN_WINDOW": 10.0,
    # The close code those sockets get: 1012 (service restart), which tells
    # clients to come back (after their backoff), or 1001 (going away).
    "SOCKETS_SHUTDOWN_CODE": 1012,
}


@dataclasses.dataclass(frozen=True)
class SocketOptions:
    """The settings a server's socket object applies to one connection.

    Flask-Sockets builds it from the app's config for each socket request
    and passes it to the socket's ``configure(options)`` method, when the
    socket has one (the sockets of :mod:`flask_sockets_gevent` and of
    :mod:`flask_sockets.threaded`, which the test client uses too, do).
    """

    #: Largest incoming message in bytes, or ``None`` for no limit.
    max_message_size: int | None = DEFAULTS["SOCKETS_MAX_MESSAGE_SIZE"]
    #: Seconds of peer silence before a ping, or ``None`` to never ping.
    ping_interval: float | None = DEFAULTS["SOCKETS_PING_INTERVAL"]
    #: Seconds to wait for a pong.
    ping_timeout: float = DEFAULTS["SOCKETS_PING_TIMEOUT"]
    #: Seconds ``close()`` waits for the peer's close frame.
    close_timeout: float = DEFAULTS["SOCKETS_CLOSE_TIMEOUT"]
    #: Seconds a send may make no progress before the connection is cut,
    #: or ``None`` to wait forever.
    send_timeout: float | None = DEFAULTS["SOCKETS_SEND_TIMEOUT"]
    #: The subprotocol negotiated for this route, sent when the socket is accepted.
    subprotocol: str | None = None
    #: How to answer an offer of permessage-deflate, or ``None`` to decline it.
    compression: Compression | None = DEFAULT_COMPRESSION
    #: How fast the peer may send (:mod:`flask_sockets.ratelimit`), or
    #: ``None`` for no limits.
    flood_control: FloodControl | None = FloodControl()

    @classmethod
    def from_config(
        cls,
        config: t.Mapping[str, t.Any],
        subprotocol: str | None = None,
        compression: t.Any = None,
        flood_control: t.Any = None,
    ) -> SocketOptions:
        """Read the options from a Flask config (missing keys take the defaults).
        ``compression``, a route's own setting, overrides ``SOCKETS_COMPRESSION``
        unless it is ``None``; ``flood_control``, a route's own, overrides the
        flood control keys (see :func:`~flask_sockets.ratelimit.flood_control_from_config`).

        The config is read on every call, so changes made after ``init_app``
        apply to the next socket; equal settings give the same (immutable)
        object, built once.
        """
        get = config.get
        settings = (
            get("SOCKETS_MAX_MESSAGE_SIZE", DEFAULTS["SOCKETS_MAX_MESSAGE_SIZE"]),
            get("SOCKETS_PING_INTERVAL", DEFAULTS["SOCKETS_PING_INTERVAL"]) or None,
            get("SOCKETS_PING_TIMEOUT", DEFAULTS["SOCKETS_PING_TIMEOUT"]),
            get("SOCKETS_CLOSE_TIMEOUT", DEFAULTS["SOCKETS_CLOSE_TIMEOUT"]),
            get("SOCKETS_SEND_TIMEOUT", DEFAULTS["SOCKETS_SEND_TIMEOUT"]) or None,
            subprotocol,
            compression_from_setting(
                get("SOCKETS_COMPRESSION", DEFAULTS["SOCKETS_COMPRESSION"]) if compression is None else compression
            ),
            flood_control_from_config(config, flood_control),
        )
        if cls is SocketOptions:
            try:
                return _shared_options(*settings)
            except TypeError:  # an unhashable setting: nothing to share
                pass
        max_message_size, ping_interval, ping_timeout, close_timeout, send_timeout, subprotocol, compression, flood = (
            settings
        )
        return cls(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            send_timeout=send_timeout,
            subprotocol=subprotocol,
            compression=compression,
            flood_control=flood,
        )


@functools.lru_cache(maxsize=32, typed=True)
def _shared_options(
    max_message_size: int | None,
    ping_interval: float | None,
    ping_timeout: float,
    close_timeout: float,
    send_timeout: float | None,
    subprotocol: str | None,
    compression: Compression | None,
    flood_control: FloodControl | None = None,
) -> SocketOptions:
    """One :class:`SocketOptions` per distinct set of settings (``typed``:
    ``20`` and ``20.0`` stay apart), so a socket request reuses it instead
    of building one."""
    return SocketOptions(
        max_message_size=max_message_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        send_timeout=send_timeout,
        subprotocol=subprotocol,
        compression=compression,
        flood_control=flood_control,
    )


#: A message may come in one fragment per this many bytes of the size limit...
BYTES_PER_FRAGMENT = 64
#: ... and in at least this many.
MIN_FRAGMENTS = 16


def max_fragments(max_message_size: int | None) -> int | None:
    """How many fragments one incoming message may have under the size limit
    ``max_message_size``: one per 64 bytes of it, at least 16 (16,384 for the
    default 1 MiB); ``None`` for no limit. A peer sending more gets 1009.

    Each fragment costs the server work and bookkeeping even when it is
    empty, so a limit on bytes alone would let a peer send millions of empty
    fragments; a real message is rarely cut finer than 64 bytes.
    """
    if max_message_size is None:
        return None
    return max(MIN_FRAGMENTS, max_message_size // BYTES_PER_FRAGMENT)
