"""Credentials in query strings, redacted for access logs (:mod:`flask_sockets.redaction`,
:mod:`flask_sockets.accesslog`): the functions, the filter of Werkzeug's log, gunicorn's logger."""

from __future__ import annotations

import datetime
import logging
import types
import typing as t

import pytest
from flask import Flask

from flask_sockets import Sockets
from flask_sockets.redaction import REDACTED
from flask_sockets.redaction import WerkzeugLogFilter
from flask_sockets.redaction import is_credential_name
from flask_sockets.redaction import redact_query
from flask_sockets.redaction import redact_request_line
from flask_sockets.redaction import redact_werkzeug_log


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "TOKEN",
        "Access_Token",
        "auth",
        "jwt",
        "key",
        "password",
        "api_key",
        "x-api-key",
        "auth_token",
        "db_password",
        "client_secret",
        "%74oken",
        "session_id",
    ],
)
def test_credential_names(name: str) -> None:
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["room", "page", "keyboard", "monkey", "author", "tokens_left", "q", ""])
def test_other_names(name: str) -> None:
    assert not is_credential_name(name)


def test_redact_query_keeps_everything_else_byte_for_byte() -> None:
    query = "room=a%20b&token=abc.def&Access_Token=xyz&flag&key=&x=1&JWT=e30"
    assert redact_query(query) == f"room=a%20b&token={REDACTED}&Access_Token={REDACTED}&flag&key=&x=1&JWT={REDACTED}"
    assert redact_query("room=1&page=2") == "room=1&page=2"
    assert redact_query("") == ""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /ws?token=s3cret&room=1 HTTP/1.1", f"GET /ws?token={REDACTED}&room=1 HTTP/1.1"),
        ("GET /ws?room=1 HTTP/1.1", "GET /ws?room=1 HTTP/1.1"),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/1.1"),
        ("GET /ws?password=p", f"GET /ws?password={REDACTED}"),
        ("GET http://h/ws?auth=a HTTP/1.1", f"GET http://h/ws?auth={REDACTED} HTTP/1.1"),
    ],
)
def test_redact_request_line(line: str, expected: str) -> None:
    assert redact_request_line(line) == expected


def werkzeug_like_logger(name: str) -> tuple[logging.Logger, list[str]]:
    """A logger with the filter, and the lines it writes (as the ``werkzeug`` logger would)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    redact_werkzeug_log(logger)
    return logger, lines


def test_werkzeug_access_line_redacted_keeping_colours_and_status() -> None:
    logger, lines = werkzeug_like_logger("tests.redaction.werkzeug")
    access = '127.0.0.1 - - [06/Dec/2026 06:00:00] "%s" %s %s'  # WSGIRequestHandler.log_request's record
    logger.info(access, "\x1b[1mGET /ws?token=s3cret&room=1 HTTP/1.1\x1b[0m", "101", "-")
    logger.info(access, "GET /page?room=1 HTTP/1.1", "200", "-")
    logger.info(access, "\x1b[33mGET /missing?api_key=k HTTP/1.1\x1b[0m", "404", "-")
    logger.info(" * Running on %s", "http://127.0.0.1:5000?token=not-an-access-line")
    assert lines == [
        f'127.0.0.1 - - [06/Dec/2026 06:00:00] "\x1b[1mGET /ws?token={REDACTED}&room=1 HTTP/1.1\x1b[0m" 101 -',
        '127.0.0.1 - - [06/Dec/2026 06:00:00] "GET /page?room=1 HTTP/1.1" 200 -',
        f'127.0.0.1 - - [06/Dec/2026 06:00:00] "\x1b[33mGET /missing?api_key={REDACTED} HTTP/1.1\x1b[0m" 404 -',
        " * Running on http://127.0.0.1:5000?token=not-an-access-line",
    ]


def test_werkzeug_filter_added_once() -> None:
    logger = logging.getLogger("tests.redaction.once")
    first = redact_werkzeug_log(logger)
    assert redact_werkzeug_log(logger) is first
    assert [f for f in logger.filters if isinstance(f, WerkzeugLogFilter)] == [first]


def test_init_app_redacts_the_werkzeug_log() -> None:
    werkzeug_logger = logging.getLogger("werkzeug")
    before = list(werkzeug_logger.filters)
    try:
        for existing in before:
            werkzeug_logger.removeFilter(existing)
        Sockets(Flask(__name__))
        Sockets(Flask(__name__))
        assert len([f for f in werkzeug_logger.filters if isinstance(f, WerkzeugLogFilter)]) == 1
    finally:
        for existing in list(werkzeug_logger.filters):
            werkzeug_logger.removeFilter(existing)
        for existing in before:
            werkzeug_logger.addFilter(existing)


class _Response:
    status = "200 OK"
    sent = 4
    headers = [("Content-Type", "text/plain"), ("Location", "/next")]


def gunicorn_line(log: t.Any, fmt: str) -> str:
    """The access-log line ``log`` formats with ``fmt`` for a request with credentials
    in its URL and in its Referer (as gunicorn's ``Logger.access`` does)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/ws?token=s3cret&room=1",
        "REQUEST_URI": "/ws?token=s3cret&room=1",
        "PATH_INFO": "/ws",
        "QUERY_STRING": "token=s3cret&room=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": "http://app.example/page?access_token=r3ferer&tab=2",
        "HTTP_USER_AGENT": "test",
    }
    headers = [("Referer", environ["HTTP_REFERER"]), ("User-Agent", "test")]
    atoms = log.atoms(_Response(), types.SimpleNamespace(headers=headers), environ, datetime.timedelta(0, 1))
    return str(fmt % log.atoms_wrapper_class(atoms))


ALL_URL_ATOMS = (
    '"%(r)s" %(U)s %(q)s "%(f)s" "%({referer}i)s" %({query_string}e)s %({raw_uri}e)s'
    ' %({request_uri}e)s "%({http_referer}e)s" %({user-agent}i)s'
)


def test_gunicorn_redacting_logger() -> None:
    pytest.importorskip("gunicorn")
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from flask_sockets.accesslog import RedactingLogger

    referer = "http://app.example/page?access_token=[REDACTED]&tab=2"
    expected = (
        f'"GET /ws?token={REDACTED}&room=1 HTTP/1.1" /ws token={REDACTED}&room=1 "{referer}" "{referer}"'
        f" token={REDACTED}&room=1 /ws?token={REDACTED}&room=1 /ws?token={REDACTED}&room=1"
        f' "{referer}" test'
    )
    assert gunicorn_line(RedactingLogger(Config()), ALL_URL_ATOMS) == expected
    plain = gunicorn_line(Logger(Config()), ALL_URL_ATOMS)
    assert "s3cret" in plain and "r3ferer" in plain, "gunicorn's own logger shows them (what this is for)"


def test_make_redacting_keeps_the_logger_and_its_class() -> None:
    pytest.importorskip("gunicorn")
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from flask_sockets.accesslog import RedactingLogger
    from flask_sockets.accesslog import make_redacting

    class Custom(Logger):  # type: ignore[misc]
        def atoms(self, *args: t.Any) -> dict[str, t.Any]:
            atoms: dict[str, t.Any] = super().atoms(*args)
            atoms["x"] = "custom"
            return atoms

    for cls in (Logger, Custom, RedactingLogger):
        log = cls(Config())
        handlers = log.access_log.handlers
        assert make_redacting(log) is log
        assert isinstance(log, RedactingLogger) and isinstance(log, cls)
        assert log.access_log.handlers is handlers
        line = gunicorn_line(log, '"%(r)s" "%(f)s" %(x)s')
        assert "s3cret" not in line and "r3ferer" not in line and "room=1" in line
        if cls is Custom:
            assert line.endswith(" custom")
    other = types.SimpleNamespace(access=lambda *args: None)
    assert make_redacting(other) is other
