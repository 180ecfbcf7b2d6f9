"""What the bench servers share for the hostile workloads (bench/hostile.py).

``BENCH_DEFAULT_LIMITS=1`` in a server's environment makes it keep the real
default limits (max message 1 MiB, keepalive ping every 20 s with a 20 s
timeout) instead of the 2 MiB message limit the echo workloads need
(``default_limits()``). The ``/firehose`` handlers of every server send
``FIREHOSE_MESSAGE``-byte binary messages to a client that never reads,
bounded by ``FIREHOSE_MAX_BYTES`` and ``FIREHOSE_MAX_SECONDS``, and print one
``FIREHOSE {json}`` line to stdout (the server's log) when their send loop
ends: how long it ran, how much went out and why it stopped.
"""

from __future__ import annotations

import json
import os
import sys
import time
import typing as t

#: The limits the hostile workloads hold every server to.
MAX_MESSAGE_SIZE = 1024 * 1024
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
#: The message limit of the echo workloads (their 1 MiB messages must fit).
ECHO_MAX_MESSAGE_SIZE = 2 * 1024 * 1024

FIREHOSE_MESSAGE = 64 * 1024
FIREHOSE_MAX_BYTES = 4 * 1024**3
FIREHOSE_MAX_SECONDS = 300.0
FIREHOSE_PAYLOAD = b"\xaa" * FIREHOSE_MESSAGE


def default_limits() -> bool:
    """Whether the run asked for the default limits (``BENCH_DEFAULT_LIMITS=1``)."""
    return os.environ.get("BENCH_DEFAULT_LIMITS") == "1"


def compression() -> object:
    """``SOCKETS_COMPRESSION`` for our servers from ``$BENCH_COMPRESSION``
    (JSON: ``false``, ``true`` or an object of settings, set by the runner
    for the compression workloads), or ``None``: leave the config alone."""
    value = os.environ.get("BENCH_COMPRESSION")
    return None if value is None else json.loads(value)


def max_message_size() -> int:
    """The message limit this server should use."""
    return MAX_MESSAGE_SIZE if default_limits() else ECHO_MAX_MESSAGE_SIZE


class Firehose:
    """The bookkeeping of one ``/firehose`` send loop: ``more()`` while the
    loop may go on, ``sent()`` after each message, ``done(why)`` once, at the end."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.bytes = 0
        self.messages = 0

    def more(self) -> bool:
        return self.bytes < FIREHOSE_MAX_BYTES and time.monotonic() - self.started < FIREHOSE_MAX_SECONDS

    def sent(self) -> None:
        self.messages += 1
        self.bytes += FIREHOSE_MESSAGE

    def done(self, error: BaseException | None) -> None:
        """Print how the loop ended: ``error`` (None: its own bound)."""
        ended = "its own bound" if error is None else f"{type(error).__module__}.{type(error).__qualname__}: {error}"
        line = {
            "seconds": round(time.monotonic() - self.started, 3),
            "bytes": self.bytes,
            "messages": self.messages,
            "ended": ended[:300],
        }
        sys.stdout.write("FIREHOSE " + json.dumps(line) + "\n")
        sys.stdout.flush()


def firehose(send: t.Callable[[bytes], object]) -> None:
    """A blocking server's ``/firehose`` loop (after the client's one
    message): ``send`` 64 KiB binary messages until it fails or the bound."""
    hose = Firehose()
    error: BaseException | None = None
    try:
        while hose.more():
            send(FIREHOSE_PAYLOAD)
            hose.sent()
    except BaseException as e:  # the connection is gone (or a kill): report it
        error = e
        if not isinstance(e, Exception):
            raise
    finally:
        hose.done(error)


async def afirehose(send: t.Callable[[bytes], t.Awaitable[object]]) -> None:
    """:func:`firehose` for an asyncio server."""
    hose = Firehose()
    error: BaseException | None = None
    try:
        while hose.more():
            await send(FIREHOSE_PAYLOAD)
            hose.sent()
    except BaseException as e:  # the connection is gone (or cancelled): report it
        error = e
        if not isinstance(e, Exception):
            raise
    finally:
        hose.done(error)
