"""The server side of the opening handshake (RFC 6455, 4.2), shared by every
server Flask-Sockets drives. Pure functions: no I/O, no Flask globals."""

from __future__ import annotations

import base64
import binascii
import hashlib
import typing as t

__all__ = ["Rejection", "accept_token", "check_handshake", "handshake_response_headers"]

#: RFC 6455 section 1.3.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: ``(status, headers, body)`` of an HTTP response refusing a handshake.
Rejection = tuple[str, list[tuple[str, str]], bytes]


def accept_token(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()).decode("ascii")


def check_handshake(environ: t.Mapping[str, t.Any]) -> Rejection | None:
    """Validate a WebSocket upgrade request (RFC 6455, 4.2.1).

    :returns: ``None`` for a valid version-13 handshake, else the
        ``(status, headers, body)`` to refuse it with: 400 for a non-GET or
        HTTP/1.0 upgrade, an upgrade with a body (``Content-Length`` over 0
        or any ``Transfer-Encoding``: the bytes after the headers are
        WebSocket frames, there is no room for a body) or a missing, badly
        encoded or wrong-length ``Sec-WebSocket-Key``; 426 with
        ``Sec-WebSocket-Version: 13`` for any other version.
    """

    def reject(status: str, body: str, headers: list[tuple[str, str]] | None = None) -> Rejection:
        return status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])], body.encode()

    if environ.get("REQUEST_METHOD") != "GET":
        return reject("400 Bad Request", "A WebSocket upgrade must use GET.")
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return reject("400 Bad Request", "A WebSocket upgrade needs HTTP/1.1.")
    if environ.get("HTTP_TRANSFER_ENCODING") is not None or environ.get("CONTENT_LENGTH", "0").strip() not in ("", "0"):
        return reject("400 Bad Request", "A WebSocket upgrade has no body.")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != "13":
        return reject(
            "426 Upgrade Required",
            "Unsupported or missing Sec-WebSocket-Version; this server speaks version 13.",
            [("Sec-WebSocket-Version", "13")],
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return reject("400 Bad Request", "Missing or invalid Sec-WebSocket-Key.")
    return None


def handshake_response_headers(
    environ: t.Mapping[str, t.Any], subprotocol: str | None, extra: t.Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """The headers of the ``101 Switching Protocols`` answering ``environ``'s handshake."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_token(environ["HTTP_SEC_WEBSOCKET_KEY"].strip())),
    ]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    headers.extend(extra)
    return headers
