"""A gunicorn worker for Flask-Sockets apps without gevent: gunicorn's own
``gthread`` worker, with a cap on open WebSockets answered by ``503``.

Serve an app with::

    gunicorn -k flask_sockets_gunicorn.ThreadWorker --threads 100 module:app

Under gunicorn's ``gthread`` worker, a WebSocket holds one of the worker's
``--threads`` threads for its whole life. When every thread holds one, a new
connection (WebSocket or plain HTTP) waits in the thread pool's queue until
a socket closes, which may be never: the client hangs. This worker keeps
:attr:`ThreadWorker.reserved_threads` threads free of WebSockets, so a
WebSocket over the cap is refused at once with ``503 Service Unavailable``
(``Retry-After: 1``) before the handshake, and plain HTTP requests are still
served. Everything else is gunicorn's ``gthread`` worker (``-k gthread``), which
serves the same routes without the cap.

This module imports neither gevent nor the gevent worker.
"""

from __future__ import annotations

import typing as t

from gunicorn.workers.gthread import ThreadWorker as GThreadWorker

from flask_sockets.accesslog import make_redacting
from flask_sockets.shutdown import ShutdownPolicy
from flask_sockets.threaded import CONNECTIONS_KEY
from flask_sockets.threaded import Connections

__all__ = ["ThreadWorker"]


class ThreadWorker(GThreadWorker):  # type: ignore[misc]
    """gunicorn's ``gthread`` worker with a cap on open WebSockets.

    - At most ``--threads`` minus :attr:`reserved_threads` WebSockets are
      open at once in a worker; more are refused with ``503`` before the
      handshake (a warning is logged), never left hanging.
    - Keepalive pings, timeouts and the close handshakes are run by one
      timer thread per worker (:class:`flask_sockets.threaded.Connections`).
    - When the worker stops (SIGTERM, a reload, ``--max-requests``), the
      open sockets are closed with 1012 (``SOCKETS_SHUTDOWN_CODE``) in
      batches spread over ``SOCKETS_SHUTDOWN_WINDOW`` seconds (cut to fit in
      ``--graceful-timeout`` less ``SOCKETS_CLOSE_TIMEOUT``: see
      :mod:`flask_sockets.shutdown`), and the handlers have
      ``--graceful-timeout`` seconds to return.
    - Access-log lines show credentials in URLs (``?token=...``, in the
      request line, the query and the ``Referer``) as ``[REDACTED]``: the
      worker makes gunicorn's logger redact
      (:func:`flask_sockets.accesslog.make_redacting`); ``-k gthread``
      needs ``--logger-class flask_sockets.accesslog.RedactingLogger``.
    """

    #: Threads of each worker that WebSockets may not take: they answer
    #: plain HTTP requests, and refuse WebSockets over the cap with ``503``.
    reserved_threads = 1

    #: The worker's open WebSockets and their timer thread.
    connections: Connections

    @classmethod
    def check_config(cls, cfg: t.Any, log: t.Any) -> None:
        super().check_config(cfg, log)
        if cfg.threads <= cls.reserved_threads:
            log.warning(
                "flask_sockets_gunicorn.ThreadWorker with --threads %d serves no WebSocket: each takes a"
                " thread for its whole life, and %d are kept for HTTP and refusals. Give it more threads.",
                cfg.threads,
                cls.reserved_threads,
            )

    def init_process(self) -> None:
        # In the worker process, before gunicorn loads the app and runs.
        make_redacting(self.log)
        self.connections = Connections(
            max_connections=max(0, self.cfg.threads - self.reserved_threads),
            stopping=self._stopping,
        )  # its timer thread runs while sockets are open (the view starts it)
        super().init_process()

    def _stopping(self) -> bool:
        return not self.alive

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: t.Callable[..., t.Any] = self.wsgi  # type: ignore[has-type]
        connections = self.connections
        connections.shutdown_policy = ShutdownPolicy.for_app(app, float(self.cfg.graceful_timeout))

        def wsgi(environ: dict[str, t.Any], start_response: t.Callable[..., t.Any]) -> t.Any:
            environ[CONNECTIONS_KEY] = connections
            return app(environ, start_response)

        self.wsgi = wsgi

