"""Credentials kept out of access logs.

A browser cannot set headers on a WebSocket request, so apps are tempted to
put a token in the URL (``wss://host/ws?token=...``); the URL then ends in
every access log, proxy log and monitoring tool on the way. Flask-Sockets'
servers (``flask_sockets_gevent``'s handler, the gunicorn workers of
``flask-sockets-gunicorn``) write their access-log lines with the values of
query parameters named like credentials replaced by :data:`REDACTED`. Pass
credentials another way (see the "Operating in production" page of the
docs); this only limits the damage.
"""

from __future__ import annotations

import typing as t
import urllib.parse

__all__ = [
    "CREDENTIAL_NAMES",
    "CREDENTIAL_SUFFIXES",
    "REDACTED",
    "is_credential_name",
    "redact_environ",
    "redact_query",
    "redact_request_line",
    "redact_target",
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


def redact_environ(environ: t.Mapping[str, t.Any]) -> t.Mapping[str, t.Any]:
    """``environ`` itself, or a copy whose ``QUERY_STRING``, ``RAW_URI`` and
    ``REQUEST_URI`` are redacted if they hold a credential (for a logger
    that formats its line from the WSGI environ, as gunicorn's does)."""
    query = environ.get("QUERY_STRING")
    if not query or redact_query(query) == query:
        return environ
    redacted = dict(environ)
    redacted["QUERY_STRING"] = redact_query(query)
    for key in ("RAW_URI", "REQUEST_URI"):
        value = environ.get(key)
        if isinstance(value, str):
            redacted[key] = redact_target(value)
    return redacted
