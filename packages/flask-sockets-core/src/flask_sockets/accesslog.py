"""gunicorn's access log with credentials redacted.

gunicorn formats its access-log lines (``--access-logformat``) from
"atoms" its logger class builds for each request: ``%(r)s`` the request
line, ``%(q)s`` the query, ``%(f)s`` the ``Referer``, ``%({name}i)s``
request headers, ``%({name}e)s`` environ variables. :class:`RedactingLogger`
is gunicorn's logger whose atoms show the values of query parameters named
like credentials as ``[REDACTED]`` (:mod:`flask_sockets.redaction`), in
the request line, the query, the URI and the ``Referer``; everything else is
gunicorn's. With gunicorn's own workers (``-k gthread``, or any other)::

    gunicorn -k gthread --threads 100 --logger-class flask_sockets.accesslog.RedactingLogger app:app

The workers of ``flask-sockets-gunicorn`` (``flask_sockets_gunicorn.worker``,
:class:`~flask_sockets_gunicorn.ThreadWorker`) need no option: each makes
its logger redact (:func:`make_redacting`), whatever ``--logger-class`` says
(gunicorn's ``Statsd`` logger, or a subclass of gunicorn's ``Logger`` of
your own).

This module imports gunicorn, which the core does not require: import it
only where gunicorn serves the app.
"""

from __future__ import annotations

import typing as t

from gunicorn.glogging import Logger

from .redaction import redact_query
from .redaction import redact_request_line
from .redaction import redact_target

__all__ = ["RedactingLogger", "make_redacting", "redact_atoms"]

#: The atoms that may carry a URL's query, and how each is redacted.
_REDACTORS: dict[str, t.Callable[[str], str]] = {
    "r": redact_request_line,  # "GET /ws?token=... HTTP/1.1"
    "q": redact_query,  # QUERY_STRING
    "f": redact_target,  # the Referer, from the environ
    "{referer}i": redact_target,  # the Referer, from the request headers
    "{query_string}e": redact_query,
    "{raw_uri}e": redact_target,
    "{request_uri}e": redact_target,
    "{http_referer}e": redact_target,
}


def redact_atoms(atoms: dict[str, t.Any]) -> dict[str, t.Any]:
    """gunicorn's access-log ``atoms`` (as ``Logger.atoms`` returns them),
    with credentials redacted in those that may hold a URL's query: the
    request line (``r``), the query (``q``), the ``Referer`` (``f``,
    ``{referer}i``) and the environ's ``QUERY_STRING``, ``RAW_URI``,
    ``REQUEST_URI`` and ``HTTP_REFERER`` (``{...}e``). Changed in place,
    and returned."""
    for key, redact in _REDACTORS.items():
        value = atoms.get(key)
        if value and isinstance(value, str):
            atoms[key] = redact(value)
    return atoms


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger (``gunicorn.glogging.Logger``), whose access-log
    lines show credentials in URLs as ``[REDACTED]`` (:func:`redact_atoms`).

    ``--logger-class flask_sockets.accesslog.RedactingLogger``."""

    def atoms(self, resp: t.Any, req: t.Any, environ: t.Any, request_time: t.Any) -> dict[str, t.Any]:
        return redact_atoms(super().atoms(resp, req, environ, request_time))


def make_redacting(log: t.Any) -> t.Any:
    """Make a gunicorn worker's logger ``log`` redact its access-log lines,
    in place, and return it: an instance of gunicorn's ``Logger`` (or of a
    subclass: gunicorn's ``Statsd``, one of your own) becomes one of
    :class:`RedactingLogger` (or of a class deriving from both), with its
    state, files and handlers unchanged. A logger that already redacts, or
    that is no ``Logger`` (it formats its lines its own way), is returned
    as it is. The workers of ``flask-sockets-gunicorn`` call it in the
    worker process, once."""
    cls = type(log)
    if isinstance(log, RedactingLogger) or not isinstance(log, Logger):
        return log
    if cls is Logger:
        log.__class__ = RedactingLogger
    else:
        log.__class__ = type(f"Redacting{cls.__name__}", (RedactingLogger, cls), {"__module__": cls.__module__})
    return log
