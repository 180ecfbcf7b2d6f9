"""Exceptions raised by Flask-Sockets."""

from __future__ import annotations

import typing as t

from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ConnectionClosed", "MessageQueueUnavailable", "MissingWebSocketError", "UpgradeRequired"]


class ConnectionClosed(Exception):
    """Raised when a handler uses a socket the peer has already closed.

    Servers that know about Flask-Sockets raise it (or a subclass) from
    ``send`` and ``receive`` on a closed socket. A handler that lets it
    escape ends normally: the peer left, nothing went wrong on our side.
    """


class UpgradeRequired(HTTPException):
    """*426 Upgrade Required*: a plain HTTP request reached a URL that only
    serves WebSockets. The response carries ``Upgrade: websocket``.

    Register an error handler for this class to customise the response.
    """

    code = 426
    description = "This URL serves WebSocket connections only. Open it with a WebSocket client."

    def get_headers(
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, t.Any] | None = None,
    ) -> list[tuple[str, str]]:
        headers = super().get_headers(environ, scope)
        headers.append(("Upgrade", "websocket"))
        headers.append(("Connection", "Upgrade"))
        return headers


class MissingWebSocketError(InternalServerError):
    """A WebSocket upgrade reached a socket route, but the server put no
    socket in ``environ['wsgi.websocket']`` and is not Werkzeug's
    development server: it does not speak WebSocket (``wsgiref``, a plain
    WSGI server, a gunicorn sync worker, ...).
    """

    description = (
        "This WebSocket route needs a server that provides 'wsgi.websocket'."
        " Serve the app with flask_sockets_gevent.run(app) or with"
        " 'gunicorn -k flask_sockets_gunicorn.worker module:app'."
    )


class MessageQueueUnavailable(ConnectionError):
    """The message queue (Redis) could not take a published message: it is
    down or unreachable. Nothing was sent; the caller may retry later.
    Sockets and HTTP routes keep working meanwhile."""
