"""Strict reading of an HTTP/1.1 request head (RFC 9112), for the handler.

gevent's pywsgi reads the request line leniently and hands the headers to
:func:`http.client.parse_headers`, which accepts lines without a colon,
folded lines, control characters in values, and a connection that ends
before the blank line. Here the request line and every header line are
checked first; what passes becomes the message type pywsgi and gunicorn
use (gevent's ``OldMessage``, an :class:`http.client.HTTPMessage`), with
the names and values :mod:`email`'s parser would give it.

The usual head, already whole in the connection's read buffer, is checked
with one regular expression and split into fields with another; only a
head that fails them (or is not in the buffer yet) is read line by line,
for the precise error.
"""

from __future__ import annotations

import io
import re
import typing as t

from gevent import pywsgi
from werkzeug.exceptions import ClientDisconnected

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "BadRequest",
    "BodyCutShort",
    "HeadersTooLarge",
    "IncompleteRequest",
    "RequestBody",
    "check_framing",
    "check_request_line",
    "read_head",
    "read_header_block",
]

#: Longest header line, in bytes (as :mod:`http.client`).
MAX_HEADER_LINE = 65536
#: Most header lines in one request (as :mod:`http.client`).
MAX_HEADERS = 100

# RFC 9110 5.6.2: token = 1*tchar.
_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
# method SP request-target SP HTTP-version CRLF (a bare LF is tolerated,
# RFC 9112 2.2). The target holds no whitespace and no control characters.
_REQUEST_LINE = re.compile(rf"[{_TCHAR}]+ [^\x00-\x20\x7f]+ HTTP/1\.[01]\r?\n")
# field-name ":" OWS field-value OWS: no whitespace before the colon, no
# control characters but HT in the value (so no NUL, CR or LF), no obs-fold
# (a line that starts with SP or HT fails the name).
_HEADER_LINE = re.compile(rb"[" + _TCHAR.encode() + rb"]+:[\t\x20-\x7e\x80-\xff]*")
# A whole head: header lines as above, each ending with CRLF, then the
# blank line. A match ends at the first blank line: a blank line cannot
# pass as a header line, nor can a bare LF end one.
_HEAD = re.compile(rb"(?:[" + _TCHAR.encode() + rb"]+:[\t\x20-\x7e\x80-\xff]*\r\n)*\r\n")
# One checked header line (decoded as latin-1) into name and value, as
# email's compat32 policy splits it: the value without the spaces and tabs
# after the colon, with any at its end.
_FIELD = re.compile(r"([^:]+):[ \t]*([^\r]*)\r\n")
# The message of a WebSocket request lives as long as its connection (the
# access log reads it at the end): the usual names and values are shared
# strings instead of copies per connection.
_COMMON = {
    text: text
    for name in (
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
        "Origin",
        "User-Agent",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Cache-Control",
        "Pragma",
        "Cookie",
        "Authorization",
        "Content-Length",
        "Content-Type",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Real-IP",
    )
    for text in (name, name.lower())
}
_COMMON.update(
    (value, value)
    for value in (
        "websocket",
        "Upgrade",
        "upgrade",
        "keep-alive, Upgrade",
        "13",
        "no-cache",
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
    )
)


class BadRequest(ValueError):
    """The request is malformed: answer 400 and close."""


class HeadersTooLarge(ValueError):
    """A header line is over :data:`MAX_HEADER_LINE` bytes or there are more
    than :data:`MAX_HEADERS` of them: answer 431 and close."""


class IncompleteRequest(ValueError):
    """The connection ended inside the request head: nothing to dispatch."""


class BodyCutShort(ClientDisconnected, OSError):
    """The client ended (closed, reset) before sending the whole body it
    announced, or sent chunks that do not parse. An :exc:`OSError`, as
    pywsgi raises, and Werkzeug's :exc:`~werkzeug.exceptions.ClientDisconnected`
    (a ``400 Bad Request``), so that a Flask app reading the body answers
    400 without logging an error, as on Werkzeug's own server."""


class RequestBody(pywsgi.Input):
    """pywsgi's request body (``wsgi.input``), raising :exc:`BodyCutShort`
    for a body the client cut short; ``cut_short`` then tells the handler
    to close the connection (the next request cannot be found)."""

    __slots__ = ("cut_short",)

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.cut_short = False

    def _do_read(self, length: int | None = None, use_readline: bool = False) -> bytes:
        try:
            return super()._do_read(length, use_readline)  # type: ignore[misc,no-any-return]  # (not in the stubs)
        except OSError as e:
            raise self._cut(e) from e

    def _chunked_read(self, length: int | None = None, use_readline: bool = False) -> bytes:
        try:
            return super()._chunked_read(length, use_readline)  # type: ignore[misc,no-any-return]
        except OSError as e:
            raise self._cut(e) from e

    def _cut(self, error: OSError) -> BodyCutShort:
        self.cut_short = True
        if isinstance(error, BodyCutShort):
            return error
        return BodyCutShort(f"The request body was cut short: {error}")


class _Readable(t.Protocol):
    def readline(self, size: int = ..., /) -> bytes: ...


def check_request_line(line: str) -> None:
    """Check a request line as pywsgi read it (latin-1, with its line end).

    :raises IncompleteRequest: If the connection ended inside it.
    :raises BadRequest: If it is not ``method SP target SP HTTP/1.0`` (or
        ``HTTP/1.1``): an
        HTTP/0.9 two-word line, ``HTTP/1`` without a minor version, double
        spaces, a method that is not a token, control characters.
    """
    if not line.endswith("\n"):
        raise IncompleteRequest("The connection ended inside the request line")
    if _REQUEST_LINE.fullmatch(line) is None:
        raise BadRequest(f"Malformed request line: {line.rstrip()[:200]!r}")


class _Peekable(_Readable, t.Protocol):
    def peek(self, size: int = ..., /) -> bytes: ...

    def read(self, size: int = ..., /) -> bytes: ...


#: gevent's message class for request headers (``pywsgi.OldMessage``).
_message_class: t.Any = type(pywsgi.headers_factory(io.BytesIO(b"\r\n")))  # type: ignore[attr-defined]


def read_head(rfile: _Peekable) -> t.Any:
    """Read and check the header lines up to the blank line (as
    :func:`read_header_block`) and return them as the message pywsgi
    expects, as gevent's ``headers_factory`` would have parsed them.

    :raises HeadersTooLarge: see :func:`read_header_block`.
    :raises BadRequest: see :func:`read_header_block`.
    :raises IncompleteRequest: see :func:`read_header_block`.
    """
    # The request line was just read: the head is usually in the buffer
    # already (peek does not read the socket then), and is at most its size
    # (far under the limits of the slow path).
    buffered = rfile.peek(1)
    size = 2 if buffered.startswith(b"\r\n") else buffered.find(b"\r\n\r\n") + 4
    lines = buffered.count(b"\n", 0, size)
    if 3 < size <= MAX_HEADER_LINE and lines <= MAX_HEADERS + 1 and _HEAD.fullmatch(buffered, 0, size):
        block = rfile.read(size)
    else:
        block = read_header_block(rfile)
    message = _message_class()
    # What email's parser would store (compat32 header_source_parse); the
    # block was checked, so each line is name ":" value CRLF.
    common = _COMMON.get
    fields = _FIELD.findall(block.decode("latin-1"))
    message._headers = [(common(name, name), common(value, value)) for name, value in fields]
    return message


def read_header_block(rfile: _Readable) -> bytes:
    """Read header lines up to the blank line and return them, checked, as
    one block ending with the blank line.

    :raises HeadersTooLarge: For a line over :data:`MAX_HEADER_LINE` bytes
        or more than :data:`MAX_HEADERS` lines.
    :raises BadRequest: For a line that is not ``name: value``.
    :raises IncompleteRequest: If the connection ended before the blank line.
    """
    lines: list[bytes] = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise HeadersTooLarge(f"Header line over {MAX_HEADER_LINE} bytes")
        if not line.endswith(b"\n"):
            raise IncompleteRequest("The connection ended before the end of the headers")
        content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        if not content:
            lines.append(b"\r\n")
            return b"".join(lines)
        if len(lines) == MAX_HEADERS:
            raise HeadersTooLarge(f"More than {MAX_HEADERS} headers")
        if _HEADER_LINE.fullmatch(content) is None:
            if content[:1] in (b" ", b"\t"):
                raise BadRequest("Folded header line (obs-fold)")
            raise BadRequest(f"Malformed header line: {content[:200]!r}")
        lines.append(content + b"\r\n")


def check_framing(headers: t.Any, request_version: str | None) -> None:
    """Check how the body is delimited (RFC 9112 6): ``Content-Length`` is
    digits only and, if repeated, the same; ``Transfer-Encoding`` is only
    ``chunked``, never beside ``Content-Length``, never in HTTP/1.0. An
    HTTP/1.1 request has exactly one ``Host`` (RFC 9112 3.2).

    :param headers: The message from :func:`read_head`.
    :raises BadRequest: Otherwise: two readings of one request are how
        requests are smuggled past a proxy.
    """
    names = [name.lower() for name in headers.keys()]
    if "content-length" in names or "transfer-encoding" in names:
        lengths = headers.get_all("content-length") or []
        encodings = headers.get_all("transfer-encoding") or []
        if lengths:
            values = {value.strip() for value in lengths}
            if len(values) != 1 or not all(value.isdigit() and value.isascii() for value in values):
                raise BadRequest(f"Invalid Content-Length: {lengths!r}")
        if encodings:
            if lengths:
                raise BadRequest("Both Transfer-Encoding and Content-Length")
            if len(encodings) != 1 or encodings[0].strip().lower() != "chunked":
                raise BadRequest(f"Unsupported Transfer-Encoding: {encodings!r}")
            if request_version != "HTTP/1.1":
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
    if request_version == "HTTP/1.1" and names.count("host") != 1:
        raise BadRequest("An HTTP/1.1 request needs exactly one Host header")
