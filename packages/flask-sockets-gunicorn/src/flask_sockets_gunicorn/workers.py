"""The gunicorn worker: gunicorn's gevent pywsgi worker with our WebSocket handler."""

from __future__ import annotations

import functools
import typing as t

from gunicorn.workers.ggevent import GeventPyWSGIWorker
from gunicorn.workers.ggevent import PyWSGIHandler
from gunicorn.workers.ggevent import PyWSGIServer

from flask_sockets.accesslog import make_redacting
from flask_sockets_gevent import ConnectionLimitsMixin
from flask_sockets_gevent import GracefulShutdownMixin
from flask_sockets_gevent import WebSocketHandler

__all__ = ["GeventWebSocketWorker", "GunicornWebSocketHandler", "GunicornWebSocketServer"]


class GunicornWebSocketHandler(WebSocketHandler, PyWSGIHandler):  # type: ignore[misc]
    """Our WebSocket handler with gunicorn's environ additions and access
    log (credentials in URLs redacted by the worker's logger:
    :mod:`flask_sockets.accesslog`)."""

    def log_request(self) -> None:
        # gunicorn's access log reads the environ and the response headers,
        # which a request refused before it was parsed (400, 408, 431) does
        # not have.
        if getattr(self, "response_headers", None) is None:
            self.__dict__["response_headers"] = []
        if "headers" not in self.__dict__ and self.environ is not None:
            # The parsed request head of a WebSocket is dropped at its 101
            # (the environ holds the same): the request headers for
            # ``%({name}i)s``, from the environ again.
            self.__dict__["headers"] = _EnvironHeaders(self.environ)
        if self.environ is None:
            address = self.client_address
            self.__dict__["environ"] = {
                "REMOTE_ADDR": str(address[0]) if isinstance(address, tuple) else "-",
                "REQUEST_METHOD": self.command or "-",
                "RAW_URI": self.path or "-",
                "PATH_INFO": self.path or "-",
                "QUERY_STRING": "",
                "SERVER_PROTOCOL": self.request_version or "-",
            }
        super().log_request()


class _EnvironHeaders:
    """The request headers in a WSGI environ, as the ``items()`` gunicorn's
    access log reads (names in lower case: it looks them up so)."""

    __slots__ = ("_environ",)

    def __init__(self, environ: dict[str, t.Any]) -> None:
        self._environ = environ

    def items(self) -> list[tuple[str, str]]:
        items = []
        for key, value in self._environ.items():
            if key.startswith("HTTP_"):
                items.append((key[5:].replace("_", "-").lower(), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                items.append((key.replace("_", "-").lower(), value))
        return items


class GunicornWebSocketServer(GracefulShutdownMixin, ConnectionLimitsMixin, PyWSGIServer):  # type: ignore[misc]
    """gunicorn's gevent server; on a graceful stop the open sockets are
    closed as :class:`~flask_sockets_gevent.GracefulShutdownMixin` says
    (1012, in batches, within ``--graceful-timeout``). Handshake and
    keep-alive timeouts as :class:`~flask_sockets_gevent.ConnectionLimitsMixin`."""


class GeventWebSocketWorker(GeventPyWSGIWorker):  # type: ignore[misc]
    """A gevent worker that serves HTTP and WebSocket routes.

    Use it with ``gunicorn -k flask_sockets_gunicorn.worker module:app``.
    On a graceful stop (SIGTERM, or SIGHUP reload) open sockets get close
    1012 (``SOCKETS_SHUTDOWN_CODE``), in batches spread over
    ``SOCKETS_SHUTDOWN_WINDOW`` seconds within ``--graceful-timeout`` less
    ``SOCKETS_CLOSE_TIMEOUT``, and their handlers up to
    ``--graceful-timeout`` seconds to finish.

    Access-log lines show credentials in URLs (``?token=...``, in the
    request line, the query and the ``Referer``) as ``[REDACTED]``: the
    worker makes gunicorn's logger redact
    (:func:`flask_sockets.accesslog.make_redacting`).

    Idle keep-alive connections are closed after ``--keep-alive`` seconds
    (``0``: no keep-alive), and each worker serves at most
    ``--worker-connections`` connections at once (more wait in the listen
    backlog). gunicorn has no setting for the handshake timeout; change it
    in a subclass and pass that with ``-k module.ClassName``::

        class Worker(GeventWebSocketWorker):
            handshake_timeout = 5.0
    """

    server_class: t.Callable[..., t.Any] = GunicornWebSocketServer
    wsgi_handler = GunicornWebSocketHandler

    #: Seconds a client has to send its request line and headers (``408``,
    #: then close); ``None``: no limit.
    handshake_timeout: float | None = 10.0

    def init_process(self) -> None:
        # In the worker process (the arbiter's logger, inherited, is left
        # alone in the arbiter), before gunicorn loads the app and runs.
        make_redacting(self.log)
        super().init_process()

    def run(self) -> None:
        # gunicorn builds each listener's server as server_class(sock,
        # application=..., spawn=Pool(worker_connections), log=..., ...):
        # hand our settings to ours the same way.
        server_class = type(self).server_class
        if isinstance(server_class, type) and issubclass(server_class, ConnectionLimitsMixin):
            options: dict[str, t.Any] = {
                "handshake_timeout": self.handshake_timeout,
                "keepalive_timeout": float(self.cfg.keepalive),
            }
            if issubclass(server_class, GracefulShutdownMixin):
                # The arbiter kills a worker --graceful-timeout seconds after
                # its SIGTERM, and gunicorn's gevent loop notices the stop up
                # to a second late (it sleeps 1 s between checks).
                options["shutdown_grace"] = max(0.0, float(self.cfg.graceful_timeout) - 1.0)
            self.server_class = functools.partial(server_class, **options)
        super().run()
