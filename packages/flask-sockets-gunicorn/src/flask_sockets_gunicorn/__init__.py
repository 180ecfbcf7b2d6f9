"""gunicorn workers for Flask-Sockets apps.

Serve an app with gevent::

    gunicorn -k flask_sockets_gunicorn.worker module:app

gunicorn resolves ``flask_sockets_gunicorn.worker`` as this module's
``worker`` attribute, the gevent worker class. ``-k flask_sockets.worker``
(the Flask-Sockets 0.2 spelling) and ``-k egg:flask-sockets-gunicorn#websocket``
name the same class.

Or without gevent, one thread per connection::

    gunicorn -k flask_sockets_gunicorn.ThreadWorker --threads 100 module:app

(``-k egg:flask-sockets-gunicorn#gthread`` names it too). Each worker is
imported only when asked for: the thread worker never imports gevent.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:  # pragma: no cover
    from .threads import ThreadWorker as ThreadWorker
    from .workers import GeventWebSocketWorker as GeventWebSocketWorker
    from .workers import GeventWebSocketWorker as worker
    from .workers import GunicornWebSocketHandler as GunicornWebSocketHandler
    from .workers import GunicornWebSocketServer as GunicornWebSocketServer

__all__ = ["GeventWebSocketWorker", "GunicornWebSocketHandler", "GunicornWebSocketServer", "ThreadWorker", "worker"]

_GEVENT_NAMES = ("GeventWebSocketWorker", "GunicornWebSocketHandler", "GunicornWebSocketServer")


def __getattr__(name: str) -> t.Any:
    # ``worker`` is the gevent worker class, for ``-k flask_sockets_gunicorn.worker``.
    if name in _GEVENT_NAMES or name == "worker":
        from . import workers

        return getattr(workers, "GeventWebSocketWorker" if name == "worker" else name)
    if name == "ThreadWorker":
        from .threads import ThreadWorker

        return ThreadWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
