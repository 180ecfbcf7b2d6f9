"""Today's one-channel Redis broker, frozen for the scaling benchmark.

``OneChannelBroker`` is ``flask_sockets.brokers.RedisBroker`` as it was on
main before issue #13 (``git show 7041bdd:packages/flask-sockets-core/src/
flask_sockets/brokers.py``), copied with its message encoding: every process
that serves sockets subscribes to one channel and receives every message of
the app, whatever its rooms. The only change is a counter of the messages
its subscriber received (``received``), and ``wait_until_ready`` takes the
``room`` argument that issue #13 added to the Broker interface (and ignores
it: the one channel carries every room). bench/servers/scaling_ours.py passes
an instance as ``SOCKETS_MESSAGE_QUEUE``; bench/scaling.py publishes with
one too. It ignores ``subscribe``/``unsubscribe`` (the base class's no-ops).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import threading
import typing as t
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from flask_sockets.brokers import Broker
from flask_sockets.brokers import MessageQueueUnavailable

if t.TYPE_CHECKING:  # pragma: no cover
    import redis

    from flask_sockets.brokers import Deliver
    from flask_sockets.typing import Message

logger = logging.getLogger("bench.onechannel")

#: The one channel (today's default ``SOCKETS_MESSAGE_QUEUE_CHANNEL``).
DEFAULT_CHANNEL = "flask-sockets"
#: Seconds the subscriber waits for a message before it checks whether to stop.
_POLL_INTERVAL = 0.25


def encode_message(room: str | None, message: Message) -> str:
    """The JSON a message travels as: ``{"room": ..., "text": ...}`` for
    text, ``{"room": ..., "binary": <base64>}`` for binary; ``room`` is
    ``null`` for a broadcast."""
    if isinstance(message, str):
        return json.dumps({"room": room, "text": message})
    if isinstance(message, (bytes, bytearray, memoryview)):
        return json.dumps({"room": room, "binary": base64.b64encode(message).decode("ascii")})
    raise TypeError(f"A message is str or bytes, not {type(message).__name__}")


def decode_message(data: str | bytes) -> tuple[str | None, Message]:
    """The ``(room, message)`` that :func:`encode_message` encoded.

    :raises ValueError: If ``data`` is not such a message.
    """
    try:
        payload = json.loads(data)
        room = payload["room"]
        message: Message = payload["text"] if "text" in payload else base64.b64decode(payload["binary"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error) as e:
        raise ValueError(f"not a Flask-Sockets message: {e!r}") from None
    if not (room is None or isinstance(room, str)) or not isinstance(message, (str, bytes)):
        raise ValueError("not a Flask-Sockets message: wrong types")
    return room, message


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class OneChannelBroker(Broker):
    """Fan-out through Redis pub/sub (redis-py, ``pip install
    'flask-sockets-core[redis]'``).

    Every message is published on one channel as JSON (see
    :func:`encode_message`). Each process that serves sockets runs one
    subscriber thread (a greenlet where gevent patched ``threading``),
    started with the first socket, which hands every message to
    ``deliver``; the process's rooms pick the sockets it concerns. A
    process that only publishes (a cron job) never subscribes.

    Faults: :meth:`publish` raises :exc:`MessageQueueUnavailable` at once
    while Redis is unreachable (nothing is buffered). The subscriber logs a
    warning, then reconnects with exponential backoff (from
    ``reconnect_delay[0]`` up to ``reconnect_delay[1]`` seconds, with
    jitter) and logs when it is back; messages published while it was away
    are not replayed (Redis pub/sub keeps nothing).

    :param url: A redis-py URL: ``redis://[[user]:password@]host:port/db``,
        ``rediss://`` for TLS, ``unix:///path.sock``. Query parameters set
        redis-py options, for example ``?socket_connect_timeout=2``;
        connecting and reading time out after 5 seconds unless they say
        otherwise.
    :param channel: The pub/sub channel; apps sharing a Redis server need
        distinct ones (``SOCKETS_MESSAGE_QUEUE_CHANNEL``).
    :param client_factory: Makes the redis-py client (used for tests, with
        fakeredis); by default ``redis.Redis.from_url(url, ...)``.
    :param reconnect_delay: ``(first, longest)`` wait in seconds between
        the subscriber's connection attempts.
    """

    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        *,
        client_factory: t.Callable[[], redis.Redis] | None = None,
        reconnect_delay: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        if client_factory is None:
            try:
                import redis  # noqa: F401
            except ImportError as e:
                raise ImportError(
                    "SOCKETS_MESSAGE_QUEUE names a Redis server, but redis-py is not installed."
                    " Install it with: pip install 'flask-sockets-core[redis]'"
                ) from e
        self.url = url
        self.channel = channel
        self.reconnect_delay = reconnect_delay
        self._client_factory = client_factory
        self._lock = threading.Lock()
        self._publisher: redis.Redis | None = None
        self._deliver: Deliver | None = None
        self._thread: threading.Thread | None = None
        self._stopping: threading.Event | None = None
        self._ready: threading.Event | None = None
        self._connected = False
        #: The last error of the subscriber's connection, while it is down.
        self.last_error: BaseException | None = None
        #: bench: messages the subscriber received from Redis.
        self.received = 0

    def __repr__(self) -> str:
        return f"<OneChannelBroker {redacted(self.url)} channel={self.channel!r}>"

    def _client(self, retries: int) -> redis.Redis:
        if self._client_factory is not None:
            return self._client_factory()
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Keyword arguments are defaults: options in the URL's query win.
        return redis.Redis.from_url(
            self.url,
            socket_connect_timeout=5,
            socket_timeout=5,
            retry=Retry(NoBackoff(), retries),
            health_check_interval=10,
        )

    # -- publishing -----------------------------------------------------------

    def publish(self, room: str | None, message: Message) -> None:
        import redis

        data = encode_message(room, message)
        with self._lock:
            if self._publisher is None:
                # One retry: a pooled connection that died with a Redis restart
                # is replaced at once.
                self._publisher = self._client(retries=1)
            publisher = self._publisher
        try:
            publisher.publish(self.channel, data)
        except (redis.RedisError, OSError) as e:
            target = "every socket" if room is None else f"room {room!r}"
            raise MessageQueueUnavailable(
                f"Could not publish to {target}: the message queue at {redacted(self.url)} is unavailable ({e})."
            ) from e

    # -- receiving ------------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._deliver = deliver
            # Made here, in the serving process (after a fork, after gevent's patching).
            self._stopping = threading.Event()
            self._ready = threading.Event()
            self._thread = threading.Thread(
                target=self._subscribe_forever, name=f"flask-sockets subscriber {self.channel}", daemon=True
            )
            self._thread.start()

    def wait_until_ready(self, timeout: float, room: str | None = None) -> bool:  # bench: #13's signature
        ready = self._ready
        if ready is not None:
            ready.wait(timeout)
        return self._connected

    @property
    def connected(self) -> bool:
        return self._connected

    def _subscribe_forever(self) -> None:
        import redis

        assert self._stopping is not None and self._ready is not None
        stopping, ready = self._stopping, self._ready
        delay, longest = self.reconnect_delay
        failures = 0
        while not stopping.is_set():
            client = pubsub = None
            try:
                client = self._client(retries=0)
                pubsub = client.pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.channel)
                while not stopping.is_set():
                    item = pubsub.get_message(timeout=_POLL_INTERVAL)
                    if item is None:
                        continue
                    if item["type"] == "subscribe":
                        self._connected, self.last_error = True, None
                        if failures:
                            logger.warning("%r: reconnected; receiving messages again.", self)
                        failures, delay = 0, self.reconnect_delay[0]
                        ready.set()
                    elif item["type"] == "message":
                        self._dispatch(item["data"])
            except (redis.RedisError, OSError, ValueError) as e:
                # ValueError: a connection closed under redis-py mid-read.
                self._connected, self.last_error = False, e
                if not failures:
                    logger.warning(
                        "%r: cannot receive messages (%s); retrying with backoff until Redis is back.", self, e
                    )
                failures += 1
                ready.set()
            finally:
                for resource in (pubsub, client):
                    try:
                        if resource is not None:
                            resource.close()
                    except Exception:  # pragma: no cover - best effort on a dead connection
                        pass
            self._connected = False
            stopping.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, longest)

    def _dispatch(self, data: str | bytes) -> None:
        self.received += 1  # bench: messages received from Redis
        try:
            room, message = decode_message(data)
        except ValueError as e:
            logger.warning("%r: ignored a message: %s", self, e)
            return
        deliver = self._deliver
        if deliver is None:  # pragma: no cover - set before the thread starts
            return
        try:
            deliver(room, message)
        except Exception:
            logger.exception("%r: delivering a message failed", self)

    def close(self) -> None:
        """Stop the subscriber (waiting up to 5 seconds for it) and close
        the publisher's connections."""
        with self._lock:
            thread, self._thread = self._thread, None
            publisher, self._publisher = self._publisher, None
        if self._stopping is not None:
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        if publisher is not None:
            publisher.close()
        self._connected = False
