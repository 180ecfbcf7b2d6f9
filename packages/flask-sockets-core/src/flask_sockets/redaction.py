"""Credentials kept out of access logs.

A browser cannot set headers on a WebSocket request, so apps are tempted to
put a token in the URL (``wss://host/ws?token=...``); the URL then ends in
every access log, proxy log and monitoring tool on the way. The access logs
Flask-Sockets can reach show the values of query parameters named like
credentials replaced by :data:`REDACTED`, in the request line, the query
and the ``Referer``:

- ``flask_sockets_gevent``'s server (its handler's request line);
- Werkzeug's development server (``flask run``, ``app.run()``): ``init_app``
  adds :class:`WerkzeugLogFilter` to the ``werkzeug`` logger
  (:func:`redact_werkzeug_log`), for every request of the process;
- gunicorn: :class:`flask_sockets.accesslog.RedactingLogger`, which the
  workers of ``flask-sockets-gunicorn`` use by themselves and any other
  worker (``-k gthread``) with ``--logger-class
  flask_sockets.accesslog.RedactingLogger``.

Pass credentials another way (see the "Operating in production" page of the
docs); this only limits the damage: proxies and load balancers log URLs too.
"""

from __future__ import annotations

import logging
import urllib.parse

__all__ = [
    "CREDENTIAL_NAMES",
    "CREDENTIAL_SUFFIXES",
    "REDACTED",
    "WerkzeugLogFilter",
    "is_credential_name",
    "redact_query",
    "redact_request_line",
    "redact_target",
    "redact_werkzeug_log",
]

#: What a redacted value is replaced with.
REDACTED = "[REDACTED]"

#: Query parameter names (compared without case) whose values are redacted.
CREDENTIAL_NAMES = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "authorization",
        "jwt",
        "key",
        "apikey",
        "api_key",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "session",
        "sessionid",
        "session_id",
        "sid",
        "signature",
        "sig",
        "ticket",
        "credential",
        "credentials",
    }
)

#: Name endings (compared without case) that mark a credential too:
#: ``auth_token``, ``x-api-key``, ``db_password``, ``app_secret``.
CREDENTIAL_SUFFIXES = ("token", "_key", "-key", "password", "passwd", "secret")


def is_credential_name(name: str) -> bool:
    """Whether a query parameter named ``name`` (percent-encoded or not)
    carries a credential, by its name."""
    name = urllib.parse.unquote_plus(name).strip().lower()
    return name in CREDENTIAL_NAMES or name.endswith(CREDENTIAL_SUFFIXES)


def redact_query(query: str) -> str:
    """``query`` (a query string, without ``?``) with the value of each
    credential parameter (:func:`is_credential_name`) replaced by
    :data:`REDACTED`; everything else is kept byte for byte."""
    if not query:
        return query
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if value and is_credential_name(name):
            parts[i] = f"{name}{equals}{REDACTED}"
            changed = True
    return "&".join(parts) if changed else query


def redact_target(target: str) -> str:
    """A request target (``/path?query``, or an absolute URL) with its
    query redacted (:func:`redact_query`)."""
    path, question, query = target.partition("?")
    if not question:
        return target
    return f"{path}?{redact_query(query)}"


def redact_request_line(line: str) -> str:
    """A request line (``GET /path?query HTTP/1.1``) with its target redacted."""
    if "?" not in line:
        return line
    method, space, rest = line.partition(" ")
    target, space2, version = rest.rpartition(" ") if rest.count(" ") else (rest, "", "")
    return f"{method}{space}{redact_target(target)}{space2}{version}"


class WerkzeugLogFilter(logging.Filter):
    """A filter for the ``werkzeug`` logger: the request line of Werkzeug's
    development server's access-log lines (``"GET /ws?token=... HTTP/1.1"
    101 -``) is redacted (:func:`redact_request_line`); the rest of the
    line (address, time, status, size, colours) and every other record of
    the logger are left as they are. Werkzeug's line has no ``Referer``."""

    #: How ``WSGIRequestHandler.log_request`` formats its record: the
    #: request line (maybe within ANSI colour codes), the status, the size.
    ACCESS_FORMAT_END = '"%s" %s %s'

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 3
            and isinstance(args[0], str)
            and "?" in args[0]
            and isinstance(record.msg, str)
            and record.msg.endswith(self.ACCESS_FORMAT_END)
        ):
            record.args = (redact_request_line(args[0]), *args[1:])
        return True


def redact_werkzeug_log(logger: logging.Logger | None = None) -> WerkzeugLogFilter:
    """Add a :class:`WerkzeugLogFilter` to ``logger`` (the ``werkzeug``
    logger by default) unless it has one; return the logger's filter.
    :meth:`flask_sockets.Sockets.init_app` calls it: the development
    server's access log (``flask run``, ``app.run()``) then redacts the
    request line of every request of the process, socket or not."""
    if logger is None:
        logger = logging.getLogger("werkzeug")
    for existing in logger.filters:
        if isinstance(existing, WerkzeugLogFilter):
            return existing
    added = WerkzeugLogFilter()
    logger.addFilter(added)
    return added
