"""permessage-deflate (RFC 7692): the settings, the negotiation and the codec.

The negotiation (which offer to take, what to answer for each of the four
parameters) is the one of the `websockets` library
(:class:`websockets.extensions.permessage_deflate.ServerPerMessageDeflateFactory`),
header parsing too (:mod:`websockets.headers`). The codec is ours, for three
things websockets' does not do: zlib objects are allocated only when a
message needs them and freed when no context is kept, so an idle connection
costs nothing; every connection without server context takeover shares one
compressor per process, and a message published to many sockets is
compressed once (:meth:`SharedCompressor.compress`); and inflating is
bounded by what is left of the message size limit, across fragments.
"""

from __future__ import annotations

import dataclasses
import threading
import typing as t
import zlib

__all__ = ["DEFAULT_COMPRESSION", "Compression", "Deflate", "compression_from_setting", "negotiate"]

_EMPTY_BLOCK = b"\x00\x00\xff\xff"


@dataclasses.dataclass(frozen=True)
class Compression:
    """How a server answers a client's offer of permessage-deflate.

    Set it app-wide with ``SOCKETS_COMPRESSION`` (``True`` for these
    defaults, ``False`` for off, or a dict of these fields) or per route
    with ``@sockets.route(rule, compression=...)``, which takes the same.

    The defaults keep memory flat: no context is kept between messages in
    either direction, so a connection holds no zlib state between messages
    (a compressor with context costs ~38 KiB at window 12 / memLevel 5, and
    ~262 KiB at zlib's defaults, 15 / 8; a decompressor 11 and 39 KiB), and
    every connection shares one compressor, so a message published to many
    sockets is compressed once. Context takeover compresses runs of small,
    similar messages better; turn it on when that matters more than memory.
    """

    #: The server starts each message afresh (no context kept between
    #: messages): connections share one compressor, and hold no compressor
    #: state between messages.
    server_no_context_takeover: bool = True
    #: Ask the client to start each message afresh, so the server holds no
    #: decompressor between messages. (RFC 7692 lets a server ask this of
    #: any client.)
    client_no_context_takeover: bool = True
    #: Largest LZ77 window the server compresses with, 9-15 bits (a client
    #: may ask for less).
    server_max_window_bits: int = 12
    #: Largest window the client may compress with, 8-15 bits, if its offer
    #: lets the server choose (``None``: whatever the client offers, 15 at most).
    client_max_window_bits: int | None = 12
    #: zlib's memLevel (1-9) of the compressors: memory for speed.
    mem_level: int = 5
    #: zlib's compression level (0-9, -1 for zlib's default, 6).
    level: int = -1
    #: Messages shorter than this many bytes go out uncompressed (RFC 7692
    #: lets each message choose): compressing them saves next to nothing.
    threshold: int = 128

    def __post_init__(self) -> None:
        if not 9 <= self.server_max_window_bits <= 15:
            raise ValueError("server_max_window_bits must be between 9 and 15 (zlib cannot compress with 8)")
        if self.client_max_window_bits is not None and not 8 <= self.client_max_window_bits <= 15:
            raise ValueError("client_max_window_bits must be between 8 and 15, or None")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be between 1 and 9")
        if not -1 <= self.level <= 9:
            raise ValueError("level must be between -1 and 9")
        if self.threshold < 0:
            raise ValueError("threshold must not be negative")


#: The settings ``SOCKETS_COMPRESSION = True`` (the default) stands for.
DEFAULT_COMPRESSION = Compression()


def compression_from_setting(setting: t.Any) -> Compression | None:
    """Turn a ``SOCKETS_COMPRESSION`` value (or a route's ``compression=``)
    into settings: ``True`` the defaults, ``False``/``None`` off, a dict of
    :class:`Compression` fields, or a :class:`Compression`.

    :raises TypeError: For a value of another type or an unknown field.
    :raises ValueError: For a field out of range.
    """
    if setting is True:
        return DEFAULT_COMPRESSION
    if setting is False or setting is None:
        return None
    if isinstance(setting, Compression):
        return setting
    if isinstance(setting, t.Mapping):
        return Compression(**setting)
    raise TypeError(f"SOCKETS_COMPRESSION must be True, False, a dict or a Compression, not {setting!r}")


def negotiate(offers: str | None, settings: Compression | None) -> tuple[str, Deflate] | None:
    """Answer a client's ``Sec-WebSocket-Extensions`` header.

    :returns: ``None`` when compression is off, not offered or no offer can
        be accepted; else the response header's value and the codec of the
        connection.
    """
    if settings is None or not offers or "permessage-deflate" not in offers:
        return None
    from websockets.exceptions import InvalidHandshake
    from websockets.exceptions import NegotiationError
    from websockets.headers import build_extension
    from websockets.headers import parse_extension

    try:
        parsed = parse_extension(offers)
    except InvalidHandshake:
        return None
    factory = _factory(settings)
    for name, params in parsed:
        if name != "permessage-deflate":
            continue
        try:
            response, agreed = factory.process_request_params(params, [])
        except NegotiationError:
            continue
        if agreed.local_max_window_bits < 9:
            # zlib cannot compress with an 8-bit window (compressobj raises
            # ValueError); websockets accepts server_max_window_bits=8 before 17.
            continue
        header = build_extension([(name, response)])
        deflate = Deflate(
            settings,
            header=header,
            server_no_context_takeover=agreed.local_no_context_takeover,
            client_no_context_takeover=agreed.remote_no_context_takeover,
            server_max_window_bits=agreed.local_max_window_bits,
            client_max_window_bits=agreed.remote_max_window_bits,
        )
        return header, deflate
    return None


def _factory(settings: Compression) -> t.Any:
    factory = _factories.get(settings)
    if factory is None:
        from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

        # No compress_settings: its PerMessageDeflate is only read for the
        # agreed parameters (the factory builds one per offer; with
        # client_no_context_takeover it allocates no zlib object).
        factory = _factories[settings] = ServerPerMessageDeflateFactory(
            server_no_context_takeover=settings.server_no_context_takeover,
            client_no_context_takeover=settings.client_no_context_takeover,
            server_max_window_bits=settings.server_max_window_bits,
            client_max_window_bits=settings.client_max_window_bits,
        )
    return factory


_factories: dict[Compression, t.Any] = {}


class TooBig(Exception):
    """Inflating a message would take it over its size limit."""


class Deflate:
    """permessage-deflate on one connection, as negotiated: compresses what
    the server sends, inflates what the client sends."""

    __slots__ = (
        "_compressor",
        "_decompressor",
        "client_max_window_bits",
        "client_no_context_takeover",
        "header",
        "server_max_window_bits",
        "server_no_context_takeover",
        "settings",
        "shared",
    )

    def __init__(
        self,
        settings: Compression,
        *,
        header: str = "permessage-deflate",
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
        server_max_window_bits: int,
        client_max_window_bits: int,
    ) -> None:
        self.settings = settings
        #: The ``Sec-WebSocket-Extensions`` value answering the client's offer.
        self.header = header
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        #: The process-wide compressor this connection uses, when the
        #: server keeps no context (``None`` otherwise).
        self.shared = (
            SharedCompressor.get(server_max_window_bits, settings.mem_level, settings.level)
            if server_no_context_takeover
            else None
        )
        self._compressor: t.Any = None
        self._decompressor: t.Any = None

    def __repr__(self) -> str:
        return f"<Deflate {self.parameters()!r}>"

    def parameters(self) -> dict[str, t.Any]:
        """The negotiated parameters (for logs, stats and tests)."""
        return {
            "server_no_context_takeover": self.server_no_context_takeover,
            "client_no_context_takeover": self.client_no_context_takeover,
            "server_max_window_bits": self.server_max_window_bits,
            "client_max_window_bits": self.client_max_window_bits,
        }

    # -- sending ----------------------------------------------------------------

    def compress(self, payload: bytes, message: object = None) -> bytes:
        """The compressed payload of a whole message (the trailing
        ``00 00 ff ff`` removed, RFC 7692 7.2.1). ``message``, the object the
        payload was made from, lets the shared compressor recognise a message
        it compressed just before (a publish to many sockets)."""
        if self.shared is not None:
            return self.shared.compress(payload, message)
        compressor = self._compressor
        if compressor is None:
            settings = self.settings
            compressor = self._compressor = zlib.compressobj(
                settings.level, zlib.DEFLATED, -self.server_max_window_bits, settings.mem_level
            )
        data: bytes = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4]

    # -- receiving --------------------------------------------------------------

    def inflate(self, data: bytes | bytearray | memoryview, budget: int | None, final: bool) -> bytes:
        """Inflate the next piece of a compressed message's payload.

        :param budget: Bytes the message may still grow by (``None``: no limit).
        :param final: Whether this is the end of the message.
        :raises TooBig: As soon as the output would go over ``budget``, after
            producing at most ``budget + 1`` bytes.
        :raises zlib.error: For data that is not deflate.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self.client_max_window_bits)
        if final:
            data = bytes(data) + _EMPTY_BLOCK
        out: bytes
        if budget is None:
            out = decompressor.decompress(data)
        else:
            # max_length 0 would mean no limit: ask for one byte more than the budget.
            out = decompressor.decompress(data, budget + 1)
            if len(out) > budget:
                raise TooBig()
        if final and self.client_no_context_takeover:
            self._decompressor = None
        return out

    def reset(self) -> None:
        """Forget a message cut short (its decompressor state is garbage)."""
        self._decompressor = None


class SharedCompressor:
    """One compressor for every connection of the process that negotiated
    the same window without server context takeover.

    Each message ends with a full flush, which empties the compressor's
    history, so no message refers to another and any connection may take
    any output. The last message compressed is remembered (by identity, for
    ``str`` and ``bytes``, which cannot change): a publish to a thousand
    sockets compresses once.
    """

    _instances: t.ClassVar[dict[tuple[int, int, int], SharedCompressor]] = {}
    _instances_lock = threading.Lock()

    def __init__(self, window_bits: int, mem_level: int, level: int) -> None:
        self._settings = (window_bits, mem_level, level)
        self._compressor: t.Any = None
        self._lock = threading.Lock()
        self._last: object = None
        self._last_output = b""

    @classmethod
    def get(cls, window_bits: int, mem_level: int, level: int) -> SharedCompressor:
        """The process's compressor for these settings."""
        key = (window_bits, mem_level, level)
        instance = cls._instances.get(key)
        if instance is None:
            with cls._instances_lock:
                instance = cls._instances.setdefault(key, cls(window_bits, mem_level, level))
        return instance

    def compress(self, payload: bytes, message: object = None) -> bytes:
        """Compress a whole message (see :meth:`Deflate.compress`)."""
        with self._lock:
            if message is not None and message is self._last:
                return self._last_output
            compressor = self._compressor
            if compressor is None:
                window_bits, mem_level, level = self._settings
                compressor = self._compressor = zlib.compressobj(level, zlib.DEFLATED, -window_bits, mem_level)
            data: bytes = compressor.compress(payload) + compressor.flush(zlib.Z_FULL_FLUSH)
            output = data[:-4]
            if type(message) in (str, bytes):
                self._last, self._last_output = message, output
            return output
