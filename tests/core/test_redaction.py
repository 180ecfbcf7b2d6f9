"""Credentials in query strings, redacted for access logs (:mod:`flask_sockets.redaction`)."""

from __future__ import annotations

import pytest

from flask_sockets.redaction import REDACTED
from flask_sockets.redaction import is_credential_name
from flask_sockets.redaction import redact_environ
from flask_sockets.redaction import redact_query
from flask_sockets.redaction import redact_request_line


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


def test_redact_environ_copies_only_when_needed() -> None:
    plain = {"QUERY_STRING": "room=1", "RAW_URI": "/ws?room=1"}
    assert redact_environ(plain) is plain
    environ = {"QUERY_STRING": "token=t&room=1", "RAW_URI": "/ws?token=t&room=1", "PATH_INFO": "/ws"}
    redacted = redact_environ(environ)
    assert redacted == {
        "QUERY_STRING": f"token={REDACTED}&room=1",
        "RAW_URI": f"/ws?token={REDACTED}&room=1",
        "PATH_INFO": "/ws",
    }
    assert environ["QUERY_STRING"] == "token=t&room=1", "the request's own environ is left alone"
