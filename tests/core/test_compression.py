"""permessage-deflate (:mod:`flask_sockets.compression`) and the protocol
engine's compressed messages. The client side is ``websockets``' own codec
(``ClientPerMessageDeflateFactory`` / ``PerMessageDeflate``), an independent
implementation: the tests check interoperability, not our code against itself.
"""

from __future__ import annotations

import random
import tracemalloc
import typing as t
import zlib

import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode
from websockets.headers import parse_extension
from websockets.streams import StreamReader

from flask_sockets.compression import DEFAULT_COMPRESSION
from flask_sockets.compression import Compression
from flask_sockets.compression import Deflate
from flask_sockets.compression import SharedCompressor
from flask_sockets.compression import compression_from_setting
from flask_sockets.compression import negotiate
from flask_sockets.protocol import Close
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import MessageTooBig
from flask_sockets.protocol import Opcode
from flask_sockets.protocol import Ping
from flask_sockets.protocol import ProtocolError
from flask_sockets.protocol import ServerProtocol

TEXT = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, é€😀. " * 20
#: Text that compresses poorly alone, well with the context of an earlier copy.
NOISE = random.Random(0).randbytes(300).hex()


# -- negotiation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "settings", "response", "parameters"),
    [
        (
            "permessage-deflate",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
            (True, True, 12, 15),
        ),
        (
            "permessage-deflate; client_max_window_bits",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=12",
            (True, True, 12, 12),
        ),
        (
            "permessage-deflate; client_max_window_bits",
            Compression(client_max_window_bits=None),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
            (True, True, 12, 15),
        ),
        (
            "permessage-deflate; client_max_window_bits=9",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=9",
            (True, True, 12, 9),
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
            (True, True, 10, 15),
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
            (True, True, 12, 15),
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            Compression(server_no_context_takeover=False, client_no_context_takeover=False),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
            (True, False, 12, 15),
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            Compression(server_no_context_takeover=False, client_no_context_takeover=False),
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
            (False, True, 12, 15),
        ),
        (
            "permessage-deflate",
            Compression(server_no_context_takeover=False, client_no_context_takeover=False),
            "permessage-deflate; server_max_window_bits=12",
            (False, False, 12, 15),
        ),
        # Several offers, the first unacceptable (window 8, a bad value, an
        # unknown parameter, a duplicate): the next one is taken.
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=12",
            (True, True, 12, 12),
        ),
        (
            "permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=11",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11",
            (True, True, 11, 15),
        ),
        (
            "permessage-deflate; foo=1, x-webkit-deflate-frame, permessage-deflate",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
            (True, True, 12, 15),
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover, permessage-deflate",
            Compression(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
            (True, True, 12, 15),
        ),
    ],
)
def test_negotiate(offer: str, settings: Compression, response: str, parameters: tuple[t.Any, ...]) -> None:
    result = negotiate(offer, settings)
    assert result is not None
    header, deflate = result
    assert header == response == deflate.header
    keys = ["server_no_context_takeover", "client_no_context_takeover"]
    keys += ["server_max_window_bits", "client_max_window_bits"]
    assert deflate.parameters() == dict(zip(keys, parameters))
    assert (deflate.shared is not None) == deflate.server_no_context_takeover
    # Nothing allocated until a message needs it.
    assert deflate._compressor is None and deflate._decompressor is None


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=x",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; unknown",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; ;;",  # not a header websockets can parse
        "permessage-deflate,,=",
        "x-webkit-deflate-frame",
        "x-permessage-deflate-not",
        "foo; permessage-deflate=1",
        "",
        None,
    ],
)
def test_negotiate_declines(offer: str | None) -> None:
    assert negotiate(offer, Compression()) is None


def test_negotiate_off() -> None:
    assert negotiate("permessage-deflate", None) is None


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover",
    ],
)
@pytest.mark.parametrize("settings", [Compression(), Compression(False, False, 15, None)])
def test_websockets_client_accepts_the_response(offer: str, settings: Compression) -> None:
    result = negotiate(offer, settings)
    assert result is not None
    header, deflate = result
    client_ext = client_for(offer, header)
    # The two sides agree.
    assert client_ext.remote_no_context_takeover == deflate.server_no_context_takeover
    assert client_ext.local_no_context_takeover == deflate.client_no_context_takeover
    assert client_ext.remote_max_window_bits == deflate.server_max_window_bits
    assert client_ext.local_max_window_bits == deflate.client_max_window_bits


def test_compression_from_setting() -> None:
    assert compression_from_setting(True) is DEFAULT_COMPRESSION == Compression()
    assert compression_from_setting(False) is None
    assert compression_from_setting(None) is None
    custom = Compression(threshold=0)
    assert compression_from_setting(custom) is custom
    assert compression_from_setting({"server_no_context_takeover": False, "level": 9}) == Compression(
        server_no_context_takeover=False, level=9
    )
    assert compression_from_setting({}) == Compression()


@pytest.mark.parametrize("bad", [1, 0, "yes", ["level"], 1.5, object()])
def test_compression_from_setting_bad_type(bad: object) -> None:
    with pytest.raises(TypeError):
        compression_from_setting(bad)


def test_compression_from_setting_bad_field() -> None:
    with pytest.raises(TypeError):
        compression_from_setting({"window": 10})


@pytest.mark.parametrize(
    "fields",
    [
        {"server_max_window_bits": 8},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"mem_level": 0},
        {"mem_level": 10},
        {"level": -2},
        {"level": 10},
        {"threshold": -1},
    ],
)
def test_compression_from_setting_out_of_range(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        compression_from_setting(fields)


def test_compression_in_range() -> None:
    for fields in [
        {"server_max_window_bits": 9, "client_max_window_bits": 8, "mem_level": 1, "level": -1, "threshold": 0},
        {"server_max_window_bits": 15, "client_max_window_bits": 15, "mem_level": 9, "level": 9},
        {"client_max_window_bits": None, "level": 0},
    ]:
        assert isinstance(compression_from_setting(fields), Compression)


# -- helpers -------------------------------------------------------------------------


def client_for(offer: str, response: str) -> PerMessageDeflate:
    """websockets' client extension for an offer and our response to it."""
    ((name, offered),) = parse_extension(offer)
    ((rname, params),) = parse_extension(response)
    assert name == rname == "permessage-deflate"
    options = dict(offered)
    server_bits = options.get("server_max_window_bits")
    client_bits: t.Any = None
    if "client_max_window_bits" in options:
        value = options["client_max_window_bits"]
        client_bits = int(value) if value else True
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover="server_no_context_takeover" in options,
        client_no_context_takeover="client_no_context_takeover" in options,
        server_max_window_bits=int(server_bits) if server_bits else None,
        client_max_window_bits=client_bits,
    )
    return factory.process_response_params(params, [])


def connect(
    settings: Compression = DEFAULT_COMPRESSION,
    offer: str = "permessage-deflate; client_max_window_bits",
    max_message_size: int | None = 1 << 20,
) -> tuple[ServerProtocol, PerMessageDeflate]:
    """A server protocol with permessage-deflate negotiated, and the client's codec."""
    result = negotiate(offer, settings)
    assert result is not None
    header, deflate = result
    return ServerProtocol(max_message_size=max_message_size, deflate=deflate), client_for(offer, header)


def client_frame_list(client: PerMessageDeflate, opcode: int, parts: list[bytes]) -> list[bytes]:
    """A message in ``len(parts)`` frames, compressed by websockets' client codec, masked."""
    return [
        Frame(WsOpcode(opcode if i == 0 else 0), part, fin=i == len(parts) - 1).serialize(
            mask=True, extensions=[client]
        )
        for i, part in enumerate(parts)
    ]


def client_frames(client: PerMessageDeflate, opcode: int, parts: list[bytes]) -> bytes:
    return b"".join(client_frame_list(client, opcode, parts))


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = True) -> bytes:
    """A masked client frame built by hand (websockets will not serialise an
    RSV1 bit it did not set itself)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = b"\x9a\x01\x5c\xe3"
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
    return header + mask + masked


def drain(proto: ServerProtocol) -> list[object]:
    events = []
    while True:
        event = proto.next_event()
        if event is None:
            return events
        events.append(event)


def parse_server_frame(data: bytes, client: PerMessageDeflate | None) -> Frame:
    """Our server frame, parsed (and inflated) by websockets."""
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None, extensions=[client] if client else None)
    try:
        next(parser)
    except StopIteration as done:
        assert not reader.buffer
        return t.cast(Frame, done.value)
    raise AssertionError("incomplete frame")


def rsv1_of(data: bytes) -> bool:
    return bool(data[0] & 0x40)


# -- compressed messages in -------------------------------------------------------------


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_compressed_single_frame(opcode: int) -> None:
    proto, client = connect()
    payload = TEXT.encode()
    data = client_frames(client, opcode, [payload])
    assert rsv1_of(data) and len(data) < len(payload) // 2
    proto.receive_data(data)
    assert drain(proto) == [TEXT if opcode == Opcode.TEXT else payload]


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("cuts", [(1,), (5, 6, 7), (100, 101, 102, 103, 900)])
def test_compressed_fragmented(opcode: int, cuts: tuple[int, ...]) -> None:
    proto, client = connect()
    payload = TEXT.encode()
    bounds = [0, *cuts, len(payload)]
    parts = [payload[a:b] for a, b in zip(bounds, bounds[1:])]
    frames = client_frame_list(client, opcode, parts)
    assert rsv1_of(frames[0]) and not any(rsv1_of(f) for f in frames[1:])
    # A ping between the first two frames, and the whole fed in small pieces.
    ping = Frame(WsOpcode.PING, b"!").serialize(mask=True)
    data = b"".join([frames[0], ping, *frames[1:]])
    events = []
    for i in range(0, len(data), 7):
        proto.receive_data(data[i : i + 7])
        events += drain(proto)
    expected = TEXT if opcode == Opcode.TEXT else payload
    assert [e for e in events if not isinstance(e, Ping)] == [expected]
    assert [e.payload for e in events if isinstance(e, Ping)] == [b"!"]


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_compressed_empty_message(opcode: int) -> None:
    proto, client = connect()
    data = client_frames(client, opcode, [b""])
    assert rsv1_of(data)
    # And an empty compressed payload, and RFC 7692's single 0x00 byte.
    data += raw_frame(opcode, b"")
    data += raw_frame(opcode, b"\x00")
    # And an empty message in three frames.
    data += client_frames(client, opcode, [b"", b"", b""])
    proto.receive_data(data)
    empty = "" if opcode == Opcode.TEXT else b""
    assert drain(proto) == [empty] * 4


def test_compressed_and_uncompressed_messages_mix() -> None:
    proto, client = connect()
    data = client_frames(client, Opcode.TEXT, [b"compressed"])
    data += Frame(WsOpcode.TEXT, b"plain").serialize(mask=True)
    data += client_frames(client, Opcode.BINARY, [b"again"])
    proto.receive_data(data)
    assert drain(proto) == ["compressed", "plain", b"again"]


def test_client_context_takeover_keeps_the_decompressor() -> None:
    settings = Compression(client_no_context_takeover=False)
    proto, client = connect(settings, offer="permessage-deflate")
    assert proto.deflate is not None and not proto.deflate.client_no_context_takeover
    assert not client.local_no_context_takeover
    sizes = []
    for i in range(4):
        payload = f"{NOISE} #{i}".encode()
        data = client_frames(client, Opcode.TEXT, [payload])
        sizes.append(len(data))
        proto.receive_data(data)
        assert drain(proto) == [payload.decode()]
        assert proto.deflate._decompressor is not None
    # The client did refer to earlier messages (so the kept context mattered).
    assert sizes[1] < sizes[0] // 4


def test_client_no_context_takeover_frees_the_decompressor() -> None:
    proto, client = connect()
    assert proto.deflate is not None and proto.deflate.client_no_context_takeover
    for i in range(3):
        parts = [f"{TEXT} #{i}".encode()[:50], f"{TEXT} #{i}".encode()[50:]]
        data = client_frames(client, Opcode.TEXT, parts)
        proto.receive_data(data[:20])
        assert drain(proto) == []
        assert proto.deflate._decompressor is not None  # in use mid-message
        proto.receive_data(data[20:])
        assert drain(proto) == [f"{TEXT} #{i}"]
        assert proto.deflate._decompressor is None


def test_rsv1_on_a_continuation_frame() -> None:
    proto, _ = connect()
    proto.receive_data(Frame(WsOpcode.TEXT, b"a", fin=False).serialize(mask=True))
    proto.receive_data(raw_frame(0, b"b"))
    with pytest.raises(ProtocolError) as info:
        drain(proto)
    assert type(info.value) is ProtocolError and info.value.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rsv1_on_a_control_frame(opcode: int) -> None:
    proto, _ = connect()
    proto.receive_data(bytes((0xC0 | opcode, 0x80)) + b"mask")
    with pytest.raises(ProtocolError) as info:
        drain(proto)
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_invalid_compressed_data() -> None:
    proto, _ = connect()
    proto.receive_data(raw_frame(Opcode.BINARY, b"\xff\xff\xff\xff"))
    with pytest.raises(ProtocolError) as info:
        drain(proto)
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_compressed_invalid_utf8() -> None:
    proto, client = connect()
    proto.receive_data(client_frames(client, Opcode.TEXT, [b"ok \xff no"]))
    with pytest.raises(ProtocolError) as info:
        drain(proto)
    assert info.value.code == CloseCode.INVALID_DATA


# -- inflation bounds --------------------------------------------------------------------


def zeros_bomb(size: int) -> bytes:
    """``size`` zero bytes, raw-deflated (no trailing empty block), built a MiB at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = b"".join(compressor.compress(chunk) for _ in range(size >> 20))
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class Recording:
    """A decompressor that records how much it produced."""

    def __init__(self, wrapped: t.Any) -> None:
        self.wrapped = wrapped
        self.produced = 0

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out: bytes = self.wrapped.decompress(data, max_length)
        self.produced += len(out)
        return out


def test_compression_bomb() -> None:
    """A 64 MiB message of zeros, 64 KB on the wire, against a 1 MiB limit:
    1009, with at most limit + 1 bytes inflated."""
    limit = 1 << 20
    bomb = zeros_bomb(64 << 20)
    assert len(bomb) < 70_000
    data = raw_frame(Opcode.BINARY, bomb)

    proto, _ = connect(max_message_size=limit)
    assert proto.deflate is not None
    recording = Recording(zlib.decompressobj(-15))
    proto.deflate._decompressor = recording
    proto.receive_data(data)
    with pytest.raises(MessageTooBig) as info:
        drain(proto)
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert recording.produced <= limit + 1

    # Without the wrapper, measured: memory stays far below the full size.
    proto, _ = connect(max_message_size=limit)
    proto.receive_data(data)
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooBig):
            drain(proto)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * limit


def test_compression_bomb_in_fragments() -> None:
    """The budget spans the fragments: each inflates within the limit, together they do not."""
    limit = 1 << 20
    client = connect(max_message_size=limit)[1]
    third = bytes(limit // 3 + 1)
    data = client_frames(client, Opcode.BINARY, [third, third, third])
    proto = connect(max_message_size=limit)[0]
    proto.receive_data(data)
    with pytest.raises(MessageTooBig):
        drain(proto)


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("frames", [1, 3])
def test_compressed_message_at_the_limit(opcode: int, frames: int) -> None:
    limit = 10_000
    payload = b"a" * (limit - 10) + b"0123456789"
    assert len(payload) == limit
    step = -(-limit // frames)
    parts = [payload[i : i + step] for i in range(0, limit, step)]

    proto, client = connect(max_message_size=limit)
    proto.receive_data(client_frames(client, opcode, parts))
    assert drain(proto) == [payload.decode() if opcode == Opcode.TEXT else payload]

    # One byte more: 1009.
    proto, client = connect(max_message_size=limit)
    proto.receive_data(client_frames(client, opcode, [*parts[:-1], parts[-1] + b"a"]))
    with pytest.raises(MessageTooBig) as info:
        drain(proto)
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_compressed_wire_size_is_bounded() -> None:
    """Incompressible data cannot be sent as a huge compressed frame that inflates small."""
    limit = 10_000
    proto, _ = connect(max_message_size=limit)
    # FIN, RSV1, binary; masked, 16-bit length: twice the limit. Only the header is fed.
    proto.receive_data(bytes((0xC2, 0xFE)) + (limit * 2).to_bytes(2, "big") + b"mask")
    with pytest.raises(MessageTooBig):
        drain(proto)


# -- compressed messages out ----------------------------------------------------------------


def test_data_frame_threshold() -> None:
    proto, client = connect(Compression(threshold=100))
    small = b"x" * 99
    header, payload = proto.data_frame(Opcode.BINARY, small)
    assert not rsv1_of(header) and payload == small
    header, payload = proto.data_frame(Opcode.BINARY, small + b"x")
    assert rsv1_of(header) and len(payload) < 20
    assert parse_server_frame(header + payload, client).data == small + b"x"


def test_data_frame_compress_false() -> None:
    proto, client = connect(Compression(threshold=0))
    payload = TEXT.encode()
    header, out = proto.data_frame(Opcode.TEXT, payload, compress=False)
    assert not rsv1_of(header) and out == payload
    frame = parse_server_frame(header + out, client)
    assert (frame.opcode, frame.rsv1, frame.data) == (WsOpcode.TEXT, False, payload)


@pytest.mark.parametrize("window", [9, 10, 12, 15])
def test_data_frame_decodes_with_websockets(window: int) -> None:
    """Each message decodes alone (no server context) with the negotiated window:
    a repeat further back than the window must not be referred to."""
    settings = Compression(server_max_window_bits=window, threshold=0)
    offer = f"permessage-deflate; server_max_window_bits={window}"
    rng = random.Random(window)
    block = rng.randbytes(1100)  # repeated at a distance over 2 ** 10
    messages = [block + block, b"", b"a", TEXT.encode(), block * 3]
    for message in messages:
        proto, client = connect(settings, offer)  # a fresh client decoder for each message
        header, payload = proto.data_frame(Opcode.BINARY, message)
        assert rsv1_of(header)
        frame = parse_server_frame(header + payload, client)
        assert (frame.opcode, frame.fin, frame.rsv1, frame.data) == (WsOpcode.BINARY, True, False, message)
        # And with a raw zlib decompressor of exactly the window, fed a byte at
        # a time: zlib checks distances against the window only for output of
        # earlier calls, so this is what catches a compressor with a larger window.
        assert inflate_piecewise(payload, window) == message


def inflate_piecewise(payload: bytes, window: int) -> bytes:
    decompressor = zlib.decompressobj(-window)
    data = payload + b"\x00\x00\xff\xff"
    return b"".join(decompressor.decompress(data[i : i + 1]) for i in range(len(data)))


def test_data_frame_without_server_context_decodes_with_fresh_decompressors() -> None:
    proto, _ = connect(Compression(threshold=0))
    assert proto.deflate is not None and proto.deflate.shared is not None
    previous = b""
    for i in range(5):
        message = (NOISE + str(i)).encode()
        header, payload = proto.data_frame(Opcode.TEXT, message)
        if previous:
            assert len(payload) > len(previous) // 2  # no reference to the last message
        previous = payload
        assert zlib.decompressobj(-12).decompress(payload + b"\x00\x00\xff\xff") == message


@pytest.mark.parametrize("window", [9, 12])
def test_server_context_takeover(window: int) -> None:
    """With server context takeover, consecutive messages decode with one
    persistent decompressor of the negotiated window (what a client keeping
    context does), and refer to earlier ones."""
    settings = Compression(server_no_context_takeover=False, threshold=0)
    proto, client = connect(settings, offer=f"permessage-deflate; server_max_window_bits={window}")
    deflate = proto.deflate
    assert deflate is not None and deflate.shared is None and not client.remote_no_context_takeover
    assert deflate.server_max_window_bits == window
    decompressor = zlib.decompressobj(-window)
    sizes = []
    # The first message repeats itself 600 bytes back: over a 2 ** 9 window.
    for message in [(NOISE * 2).encode()] + [f"{NOISE[:200]} #{i}".encode() for i in range(4)]:
        header, payload = proto.data_frame(Opcode.TEXT, message)
        sizes.append(len(payload))
        assert parse_server_frame(header + payload, client).data == message
        # Fed a byte at a time, so that distances are checked against the window.
        data = payload + b"\x00\x00\xff\xff"
        assert b"".join(decompressor.decompress(data[j : j + 1]) for j in range(len(data))) == message
    assert deflate._compressor is not None
    # Each small message after the first refers to the one before: alone, it would take over 100 bytes.
    alone = zlib.compressobj(-1, zlib.DEFLATED, -window)
    assert len(alone.compress(f"{NOISE[:200]} #0".encode()) + alone.flush(zlib.Z_SYNC_FLUSH)) > 100
    assert max(sizes[2:]) < 30
    # A decompressor without the context cannot read a later message alone.
    with pytest.raises(zlib.error):
        zlib.decompressobj(-15).decompress(proto.data_frame(Opcode.TEXT, NOISE[:200].encode())[1] + b"\x00\x00\xff\xff")


class CountingCompressor:
    def __init__(self, wrapped: t.Any) -> None:
        self.wrapped = wrapped
        self.calls = 0

    def compress(self, data: bytes) -> bytes:
        self.calls += 1
        out: bytes = self.wrapped.compress(data)
        return out

    def flush(self, mode: int) -> bytes:
        out: bytes = self.wrapped.flush(mode)
        return out


def counting_shared() -> tuple[SharedCompressor, CountingCompressor]:
    shared = SharedCompressor(12, 5, -1)
    counter = CountingCompressor(zlib.compressobj(-1, zlib.DEFLATED, -12, 5))
    shared._compressor = counter
    return shared, counter


def inflate_alone(payload: bytes) -> bytes:
    out: bytes = zlib.decompressobj(-12).decompress(payload + b"\x00\x00\xff\xff")
    return out


def test_shared_compressor_messages_are_independent() -> None:
    shared, counter = counting_shared()
    messages = [TEXT.encode(), TEXT.encode()[::-1], b"", TEXT.encode(), b"x" * 5000]
    outputs = [shared.compress(m, None) for m in messages]
    assert counter.calls == len(messages)
    for message, output in zip(messages, outputs):
        assert inflate_alone(output) == message
    # The same content compresses the same way: no history from before.
    assert outputs[0] == outputs[3]


def test_shared_compressor_memo() -> None:
    shared, counter = counting_shared()
    message = TEXT + "memo"
    payload = message.encode()
    first = shared.compress(payload, message)
    assert shared.compress(message.encode(), message) is first
    assert counter.calls == 1
    # An equal str that is another object: compressed again.
    other = message[:5] + message[5:]
    assert other == message and other is not message
    again = shared.compress(payload, other)
    assert counter.calls == 2 and again == first
    # bytes are memoized too.
    blob = random.Random(3).randbytes(300)
    out = shared.compress(blob, blob)
    assert shared.compress(blob, blob) is out and counter.calls == 3
    # Another message in between forgets the first.
    shared.compress(b"other", b"other")
    assert counter.calls == 4
    assert shared.compress(payload, message) == first
    assert counter.calls == 5


def test_shared_compressor_never_memoizes_a_bytearray() -> None:
    shared, counter = counting_shared()
    buffer = bytearray(TEXT.encode())
    first = shared.compress(bytes(buffer), buffer)
    buffer[:5] = b"XXXXX"  # a bytearray can change
    second = shared.compress(bytes(buffer), buffer)
    assert counter.calls == 2
    assert inflate_alone(first) == TEXT.encode() and inflate_alone(second) == bytes(buffer)
    # And no memo without a message.
    shared.compress(b"p" * 200)
    shared.compress(b"p" * 200)
    assert counter.calls == 4


def test_publish_compresses_once_across_connections() -> None:
    """Two connections without server context share the compressor: one message
    object sent to both is compressed once, and each client reads it."""
    settings = Compression(threshold=0, mem_level=6)  # a compressor of this test's own
    (proto_a, client_a), (proto_b, client_b) = connect(settings), connect(settings)
    assert proto_a.deflate is not None and proto_b.deflate is not None
    assert proto_a.deflate.shared is proto_b.deflate.shared is not None
    message = TEXT + "publish"
    header_a, payload_a = proto_a.data_frame(Opcode.TEXT, message.encode(), message=message)
    header_b, payload_b = proto_b.data_frame(Opcode.TEXT, message.encode(), message=message)
    assert payload_b is payload_a
    assert parse_server_frame(header_a + payload_a, client_a).data == message.encode()
    assert parse_server_frame(header_b + payload_b, client_b).data == message.encode()


def test_close_and_ping_unaffected_by_compression() -> None:
    proto, _ = connect()
    proto.receive_data(Frame(WsOpcode.PING, b"hi").serialize(mask=True))
    proto.receive_data(Frame(WsOpcode.CLOSE, b"\x03\xe8ok").serialize(mask=True))
    events = drain(proto)
    assert isinstance(events[0], Ping) and events[0].payload == b"hi"
    assert isinstance(events[1], Close) and (events[1].code, events[1].reason) == (CloseCode.NORMAL_CLOSURE, "ok")


def test_deflate_reset_after_a_failure() -> None:
    proto, client = connect(Compression(client_no_context_takeover=False), offer="permessage-deflate")
    proto.receive_data(raw_frame(Opcode.BINARY, b"\xff\xff\xff"))
    with pytest.raises(ProtocolError):
        drain(proto)
    proto.reset_message()
    assert isinstance(proto.deflate, Deflate) and proto.deflate._decompressor is None
