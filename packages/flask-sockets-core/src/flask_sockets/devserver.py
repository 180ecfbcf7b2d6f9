"""Socket routes on Werkzeug's development server (``flask run``, ``app.run()``).

The development server puts no socket in ``environ['wsgi.websocket']``, but
it exposes the raw connection as ``environ['werkzeug.socket']``: a WebSocket
request there is served by :class:`flask_sockets.threaded.ThreadedWebSocket`,
in the development server's thread for the connection, as under gunicorn's
``gthread`` worker. This module keeps the names it had.
"""

from __future__ import annotations

from .threaded import WERKZEUG_SOCKET_KEY as WERKZEUG_SOCKET_KEY
from .threaded import HandshakeRefused as HandshakeRefused
from .threaded import ThreadedWebSocket

__all__ = ["DevWebSocket"]

#: The development server's socket: :class:`~flask_sockets.threaded.ThreadedWebSocket`.
DevWebSocket = ThreadedWebSocket
