"""The sans-I/O protocol engine (:mod:`flask_sockets.protocol`), in the wsproto
style: client frames are built by hand (or by ``websockets``, an independent
implementation), fed as bytes, and the events (or the error and its close
code) are checked. No sockets.
"""

from __future__ import annotations

import random
import struct
import typing as t

import pytest
from websockets.frames import CloseCode as WsCloseCode
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode

from flask_sockets import protocol
from flask_sockets.options import max_fragments
from flask_sockets.protocol import FRAMES_PER_CALL
from flask_sockets.protocol import PAUSE
from flask_sockets.protocol import Close
from flask_sockets.protocol import CloseCode
from flask_sockets.protocol import InvalidData
from flask_sockets.protocol import MessageTooBig
from flask_sockets.protocol import Opcode
from flask_sockets.protocol import Ping
from flask_sockets.protocol import Pong
from flask_sockets.protocol import ProtocolError
from flask_sockets.protocol import ServerProtocol

MASK = b"\x37\xfa\x21\x3d"


def xor_mask(data: bytes, mask: bytes) -> bytes:
    """Mask ``data`` (our own, not the engine's ``apply_mask``)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = MASK,
    length: int | None = None,
) -> bytes:
    """A client frame, masked unless ``mask`` is None. ``length`` overrides the
    announced payload length (to send only a header)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    n = len(payload) if length is None else length
    mask_bit = 0 if mask is None else 0x80
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return header + payload
    return header + mask + xor_mask(payload, mask)


def text(data: str, **kwargs: t.Any) -> bytes:
    return frame(Opcode.TEXT, data.encode("utf-8"), **kwargs)


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(Opcode.CLOSE, payload)


def normalise(event: object) -> object:
    if isinstance(event, Ping):
        return ("ping", event.payload)
    if isinstance(event, Pong):
        return ("pong", event.payload)
    if isinstance(event, Close):
        return ("close", event.code, event.reason)
    return event


def drain(proto: ServerProtocol, keep_pause: bool = False) -> list[object]:
    out: list[object] = []
    while True:
        event = proto.next_event()
        if event is None:
            return out
        if event is PAUSE and not keep_pause:
            continue
        out.append(normalise(event))


def feed(data: bytes, pieces: t.Iterable[int] | None = None, **kwargs: t.Any) -> list[object]:
    """Events from ``data`` fed in pieces of the given sizes (all at once by default)."""
    proto = ServerProtocol(**kwargs)
    if pieces is None:
        proto.receive_data(data)
        return drain(proto)
    events: list[object] = []
    offset = 0
    for size in pieces:
        proto.receive_data(data[offset : offset + size])
        offset += size
        events += drain(proto)
    assert offset >= len(data)
    return events


def one(data: bytes, **kwargs: t.Any) -> object:
    events = feed(data, **kwargs)
    assert len(events) == 1, events
    return events[0]


def fails(data: bytes, error: type[ProtocolError] = ProtocolError, **kwargs: t.Any) -> ProtocolError:
    """Feed ``data``: it must raise exactly ``error`` (not a subclass of it)."""
    proto = ServerProtocol(**kwargs)
    proto.receive_data(data)
    with pytest.raises(ProtocolError) as info:
        drain(proto)
    assert type(info.value) is error
    return info.value


# -- messages -------------------------------------------------------------------


def test_text_binary_and_empty_messages() -> None:
    events = feed(text("hello") + frame(Opcode.BINARY, b"\x00\xff\x80") + text("") + frame(Opcode.BINARY, b""))
    assert events == ["hello", b"\x00\xff\x80", "", b""]
    assert [type(e) for e in events] == [str, bytes, str, bytes]


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 6, 7, 125, 126, 127, 128, 65535, 65536, 65537])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_lengths_and_length_forms(length: int, opcode: int) -> None:
    rng = random.Random(length)
    if opcode == Opcode.TEXT:
        payload = bytes(rng.randrange(32, 127) for _ in range(length))
    else:
        payload = rng.randbytes(length)
    data = frame(opcode, payload)
    form = data[1] & 0x7F
    assert form == (length if length < 126 else 126 if length < 65536 else 127)
    expected = payload.decode() if opcode == Opcode.TEXT else payload
    assert one(data) == expected
    # A frame serialised by websockets (its own random mask) reads the same.
    assert one(Frame(WsOpcode(opcode), payload).serialize(mask=True)) == expected


def mixed_stream(big: bool) -> tuple[bytes, list[object]]:
    """Frames of every length mod 4, fragmented messages with control frames
    between the fragments, multi-byte text, and a close; with the events they
    must give. Masks differ per frame."""
    rng = random.Random(6455)
    data = b""
    expected: list[object] = []

    def mask() -> bytes:
        return rng.randbytes(4)

    lengths = list(range(0, 20)) + [125, 126, 127, 300]
    if big:
        lengths += [65535, 65536]
    for n in lengths:
        payload = rng.randbytes(n)
        data += frame(Opcode.BINARY, payload, mask=mask())
        expected.append(payload)
        word = "".join(rng.choice("aé€😀") for _ in range(n))
        data += text(word, mask=mask())
        expected.append(word)
    data += text("frag", fin=False, mask=mask())
    data += frame(Opcode.PING, b"p1", mask=mask())
    data += frame(Opcode.CONTINUATION, "mé€nt".encode(), fin=False, mask=mask())
    data += frame(Opcode.PONG, b"", mask=mask())
    data += frame(Opcode.CONTINUATION, b"", fin=False, mask=mask())
    data += frame(Opcode.CONTINUATION, "😀!".encode(), mask=mask())
    expected += [("ping", b"p1"), ("pong", b""), "fragmé€nt😀!"]
    parts = [rng.randbytes(n) for n in (1, 7, 130, 0, 3)]
    data += frame(Opcode.BINARY, parts[0], fin=False, mask=mask())
    for i, part in enumerate(parts[1:], 1):
        data += frame(Opcode.CONTINUATION, part, fin=i == len(parts) - 1, mask=mask())
        if i == 2:
            data += frame(Opcode.PING, b"x" * 125, mask=mask())
            expected.append(("ping", b"x" * 125))
    expected.append(b"".join(parts))
    data += close_frame(CloseCode.NORMAL_CLOSURE, "bye é".encode())
    expected.append(("close", CloseCode.NORMAL_CLOSURE, "bye é"))
    return data, expected


@pytest.mark.parametrize("chunking", ["whole", "bytes", "random1", "random2", "random3"])
def test_same_events_however_the_stream_is_cut(chunking: str) -> None:
    data, expected = mixed_stream(big=chunking != "bytes")
    pieces: list[int] | None
    if chunking == "whole":
        pieces = None
    elif chunking == "bytes":
        pieces = [1] * len(data)
    else:
        rng = random.Random(chunking)
        pieces = []
        while sum(pieces) < len(data):
            pieces.append(rng.choice([1, 2, 3, 5, 8, rng.randrange(1, 4000)]))
    assert feed(data, pieces) == expected


def test_big_frames_fed_byte_by_byte_after_the_header() -> None:
    """The payload of a 64-bit-length frame arriving in odd pieces, unmasked
    with the mask rotated to each piece's offset."""
    payload = random.Random(1).randbytes(65536 + 3)
    word = "é€" * 13000 + "x"
    data = frame(Opcode.BINARY, payload) + text(word)
    pieces = [5, 9, 1, 3] + [4093] * 40
    assert feed(data, pieces) == [payload, word]


# -- fragmentation ----------------------------------------------------------------


def test_fragmented_text_and_binary() -> None:
    data = (
        text("Hel", fin=False)
        + frame(Opcode.CONTINUATION, b"lo", fin=False)
        + frame(Opcode.CONTINUATION, b"!")
        + frame(Opcode.BINARY, b"\x01", fin=False)
        + frame(Opcode.CONTINUATION, b"")
        + frame(Opcode.BINARY, b"", fin=False)
        + frame(Opcode.CONTINUATION, b"\x02\x03")
        + text("", fin=False)
        + frame(Opcode.CONTINUATION, b"")
    )
    assert feed(data) == ["Hello!", b"\x01", b"\x02\x03", ""]


def test_control_frames_between_fragments() -> None:
    data = (
        text("a", fin=False)
        + frame(Opcode.PING, b"1")
        + frame(Opcode.CONTINUATION, b"b", fin=False)
        + frame(Opcode.PONG, b"2")
        + frame(Opcode.CONTINUATION, b"c")
        + frame(Opcode.BINARY, b"x", fin=False)
        + close_frame(CloseCode.GOING_AWAY)
    )
    assert feed(data) == [("ping", b"1"), ("pong", b"2"), "abc", ("close", CloseCode.GOING_AWAY, "")]


@pytest.mark.parametrize("first", [b"", b"x"])
def test_continuation_without_a_message(first: bytes) -> None:
    assert fails(frame(Opcode.CONTINUATION, first)).code == CloseCode.PROTOCOL_ERROR
    # Also after a message ended.
    assert fails(text("done") + frame(Opcode.CONTINUATION, first, fin=False)).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("second", [Opcode.TEXT, Opcode.BINARY])
def test_new_message_during_a_fragmented_one(opcode: int, second: int) -> None:
    assert fails(frame(opcode, b"ab", fin=False) + frame(second, b"cd")).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("bit", ["rsv1", "rsv2", "rsv3"])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CONTINUATION])
def test_reserved_bits(bit: str, opcode: int) -> None:
    prefix = text("a", fin=False) if opcode == Opcode.CONTINUATION else b""
    # Only the two header bytes are needed to fail.
    assert fails(prefix + frame(opcode, b"xyz", **{bit: True})[:2]).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("payload", [b"", b"\x03\xe8", b"abc"])
@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(opcode: int, payload: bytes) -> None:
    assert fails(frame(opcode, payload)).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CLOSE])
def test_unmasked_client_frame(opcode: int) -> None:
    assert fails(frame(opcode, b"", mask=None)).code == CloseCode.PROTOCOL_ERROR
    assert fails(frame(opcode, b"\x03\xe8", mask=None)[:2]).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_fragmented_control_frame(opcode: int) -> None:
    assert fails(frame(opcode, b"", fin=False)).code == CloseCode.PROTOCOL_ERROR
    assert fails(text("a", fin=False) + frame(opcode, b"", fin=False)).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_oversized_control_frame(opcode: int) -> None:
    # Failed on the header: the 126 bytes never need to arrive.
    assert fails(frame(opcode, b"", length=126)[:4]).code == CloseCode.PROTOCOL_ERROR
    assert fails(frame(opcode, b"\x03\xe8" + b"x" * 65534)).code == CloseCode.PROTOCOL_ERROR
    # 125 is the largest allowed.
    payload = b"\x03\xe8" + b"x" * 123
    event = one(frame(opcode, payload))
    assert normalise(event) in (("ping", payload), ("pong", payload), ("close", CloseCode.NORMAL_CLOSURE, "x" * 123))


def test_length_with_the_most_significant_bit() -> None:
    data = bytes((0x82, 0xFF)) + struct.pack("!Q", 1 << 63) + MASK
    assert fails(data).code == CloseCode.PROTOCOL_ERROR


# -- control frames ----------------------------------------------------------------


def test_ping_and_pong() -> None:
    events = feed(frame(Opcode.PING, b"") + frame(Opcode.PING, b"\x00hi") + frame(Opcode.PONG, b"\xff" * 125))
    assert events == [("ping", b""), ("ping", b"\x00hi"), ("pong", b"\xff" * 125)]
    ping = one(frame(Opcode.PING, b"abc"))
    assert isinstance(ping, tuple) and type(ping[1]) is bytes


def test_close_frames() -> None:
    assert one(close_frame()) == ("close", CloseCode.NO_STATUS_RCVD, "")
    assert one(close_frame(CloseCode.NORMAL_CLOSURE)) == ("close", CloseCode.NORMAL_CLOSURE, "")
    assert one(close_frame(4999, "é€".encode())) == ("close", 4999, "é€")


def test_close_with_a_one_byte_payload() -> None:
    assert fails(frame(Opcode.CLOSE, b"\x03")).code == CloseCode.PROTOCOL_ERROR


def test_opcodes_and_close_codes_are_the_rfc_s() -> None:
    """Our enums against websockets' (an independent implementation): same
    names, same values. (The tests spell codes with our enums; this pins them.)"""
    assert {o.name: o.value for o in Opcode} == {o.name: o.value for o in WsOpcode if o.name != "CONT"} | {
        "CONTINUATION": WsOpcode.CONT.value
    }
    assert {c.name: c.value for c in CloseCode} == {c.name: c.value for c in WsCloseCode}


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_codes(code: int) -> None:
    assert one(close_frame(code, b"r")) == ("close", code, "r")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_codes(code: int) -> None:
    assert fails(close_frame(code)).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"])
def test_close_reason_not_utf8(reason: bytes) -> None:
    assert fails(close_frame(CloseCode.NORMAL_CLOSURE, reason), InvalidData).code == CloseCode.INVALID_DATA


# -- UTF-8 ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"ab\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
def test_invalid_utf8_fails_before_the_frame_is_whole(bad: bytes) -> None:
    """A text frame announcing 10,000 bytes fails as soon as its first bytes
    are invalid, the rest never fed."""
    whole = text("", length=10_000)  # header and mask only
    payload = bad + b"a" * (10_000 - len(bad))
    proto = ServerProtocol(max_message_size=None)
    proto.receive_data(whole + xor_mask(payload, MASK)[: len(bad)])
    with pytest.raises(InvalidData) as info:
        drain(proto)
    assert info.value.code == CloseCode.INVALID_DATA


def test_invalid_utf8_fails_before_the_frame_is_whole_fragment() -> None:
    """Also in a continuation frame still arriving."""
    proto = ServerProtocol()
    proto.receive_data(text("ok", fin=False) + frame(Opcode.CONTINUATION, b"", length=500) + xor_mask(b"\x80", MASK))
    with pytest.raises(InvalidData):
        drain(proto)


@pytest.mark.parametrize("split", [1, 2])
def test_invalid_sequence_split_across_fragments(split: int) -> None:
    bad = b"\xe2\x82\x28"  # a 3-byte lead, a continuation, then not one
    data = frame(Opcode.TEXT, b"a" + bad[:split], fin=False) + frame(Opcode.CONTINUATION, bad[split:] + b"zz")
    proto = ServerProtocol()
    proto.receive_data(data[: len(data) - 2])  # the second fragment not yet whole
    with pytest.raises(InvalidData):
        drain(proto)


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_valid_char_split_across_fragments_and_feeds(char: str) -> None:
    encoded = char.encode()
    for split in range(1, len(encoded)):
        data = (
            frame(Opcode.TEXT, b"<" + encoded[:split], fin=False)
            + frame(Opcode.CONTINUATION, b"", fin=False)
            + frame(Opcode.CONTINUATION, encoded[split:] + b">")
        )
        assert feed(data) == [f"<{char}>"]
        assert feed(data, [1] * len(data)) == [f"<{char}>"]
    # And split across feeds inside one frame.
    data = text(f"<{char}>")
    for cut in range(len(data)):
        assert feed(data, [cut, len(data) - cut]) == [f"<{char}>"]


@pytest.mark.parametrize("tail", [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"])
def test_truncated_char_at_the_end_of_the_message(tail: bytes) -> None:
    # One frame, whole (the fast path) or arriving in pieces.
    assert fails(frame(Opcode.TEXT, b"ab" + tail), InvalidData).code == CloseCode.INVALID_DATA
    data = frame(Opcode.TEXT, b"ab" + tail)
    proto = ServerProtocol()
    with pytest.raises(InvalidData):
        for byte in data:
            proto.receive_data(bytes((byte,)))
            drain(proto)
    # Fragmented.
    assert fails(text("ab", fin=False) + frame(Opcode.CONTINUATION, tail), InvalidData).code == CloseCode.INVALID_DATA
    assert (
        fails(frame(Opcode.TEXT, tail, fin=False) + frame(Opcode.CONTINUATION, b""), InvalidData).code
        == CloseCode.INVALID_DATA
    )


# -- limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("announced", [101, 126, 65536, 1 << 40])
def test_announced_length_over_the_limit(opcode: int, announced: int) -> None:
    """Fails with only the header (and mask) fed."""
    header = frame(opcode, b"", length=announced)
    assert len(header) in (6, 8, 14)
    assert fails(header, MessageTooBig, max_message_size=100).code == CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_fragmented_message_over_the_limit(opcode: int) -> None:
    data = frame(opcode, b"a" * 60, fin=False) + frame(Opcode.CONTINUATION, b"b" * 40, fin=False)
    # The third header announces one byte too many.
    assert (
        fails(data + frame(Opcode.CONTINUATION, b"", length=1), MessageTooBig, max_message_size=100).code
        == CloseCode.MESSAGE_TOO_BIG
    )
    assert (
        fails(data + frame(Opcode.CONTINUATION, b"c", length=1)[:6], MessageTooBig, max_message_size=100).code
        == CloseCode.MESSAGE_TOO_BIG
    )


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_exactly_at_the_limit(opcode: int) -> None:
    expected: object = "a" * 100 if opcode == Opcode.TEXT else b"a" * 100
    assert one(frame(opcode, b"a" * 100), max_message_size=100) == expected
    data = frame(opcode, b"a" * 60, fin=False) + frame(Opcode.CONTINUATION, b"a" * 40)
    assert one(data, max_message_size=100) == expected
    # The limit applies per message: the next one starts from zero.
    assert feed(data + data, max_message_size=100) == [expected, expected]


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_fragment_count_cap(opcode: int) -> None:
    limit = 4096
    most = max_fragments(limit)
    assert most == 64
    first = frame(opcode, b"a", fin=False)
    middle = frame(Opcode.CONTINUATION, b"", fin=False)
    last = frame(Opcode.CONTINUATION, b"z")
    expected: object = "az" if opcode == Opcode.TEXT else b"az"
    # ``most`` fragments: fine.
    assert one(first + middle * (most - 2) + last, max_message_size=limit) == expected
    # One more: 1009, on the header of the extra fragment.
    data = first + middle * (most - 1)
    assert one(data + last, max_message_size=None) == expected  # no limit, no cap
    assert fails(data + last[:6], MessageTooBig, max_message_size=limit).code == CloseCode.MESSAGE_TOO_BIG


def test_pause_after_frames_per_call_frames_without_an_event() -> None:
    n = FRAMES_PER_CALL
    # Exactly FRAMES_PER_CALL frames for one message: no pause.
    message = (
        text("a", fin=False) + frame(Opcode.CONTINUATION, b"b", fin=False) * (n - 2) + frame(Opcode.CONTINUATION, b"c")
    )
    proto = ServerProtocol(max_message_size=None)
    proto.receive_data(message)
    assert proto.next_event() == "a" + "b" * (n - 2) + "c"
    assert proto.next_event() is None
    # One frame more: PAUSE, the frames handled so far consumed, then the message.
    message = (
        text("a", fin=False) + frame(Opcode.CONTINUATION, b"", fin=False) * (n - 1) + frame(Opcode.CONTINUATION, b"c")
    )
    proto.receive_data(message)
    assert proto.next_event() is PAUSE
    assert bytes(proto.buffer) == frame(Opcode.CONTINUATION, b"c")
    assert proto.next_event() == "ac"
    assert proto.next_event() is None
    # A long run of frames: one PAUSE per FRAMES_PER_CALL frames.
    proto.receive_data(frame(Opcode.BINARY, b"", fin=False) + frame(Opcode.CONTINUATION, b"x", fin=False) * (3 * n))
    assert drain(proto, keep_pause=True) == [PAUSE, PAUSE, PAUSE]
    proto.receive_data(frame(Opcode.CONTINUATION, b""))
    assert drain(proto) == [b"x" * 3 * n]


def test_events_keep_coming_after_a_pause() -> None:
    """Control frames are events: they never count towards a PAUSE."""
    data = frame(Opcode.PING, b"") * (FRAMES_PER_CALL * 2)
    assert feed(data) == [("ping", b"")] * (FRAMES_PER_CALL * 2)


# -- the rest of the API -------------------------------------------------------------------


def test_incomplete_frames_give_none() -> None:
    data = text("hello") + frame(Opcode.PING, b"p")
    proto = ServerProtocol()
    for i in range(len(text("hello")) - 1):
        proto.receive_data(data[i : i + 1])
        assert proto.next_event() is None
    proto.receive_data(data[len(text("hello")) - 1 :])
    assert drain(proto) == ["hello", ("ping", b"p")]
    assert not proto.buffer


def test_reset_message() -> None:
    proto = ServerProtocol()
    proto.receive_data(text("abc", fin=False) + frame(Opcode.CONTINUATION, b"", length=10))
    assert proto.next_event() is None
    proto.reset_message()
    proto.buffer.clear()
    proto.receive_data(text("new"))
    assert proto.next_event() == "new"


def test_a_protocol_error_drops_the_message_half_received() -> None:
    """The connection fails: the engine lets go of the message it was assembling."""
    proto = ServerProtocol()
    proto.receive_data(text("abc" * 1000, fin=False) + text("new message during a fragmented one"))
    with pytest.raises(ProtocolError):
        proto.next_event()
    assert proto._message is None and proto._opcode is None and proto._size == 0


@pytest.mark.parametrize("length", [0, 5, 125, 126, 65535, 65536])
def test_data_frame_without_compression(length: int) -> None:
    proto = ServerProtocol()
    payload = b"p" * length
    header, out = proto.data_frame(Opcode.BINARY, payload)
    assert out == payload
    # websockets parses it as the unmasked final frame it is.
    parsed = parse_server_frame(header + out)
    assert (parsed.opcode, parsed.fin, parsed.rsv1, parsed.data) == (WsOpcode.BINARY, True, False, payload)


def parse_server_frame(data: bytes) -> Frame:
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        assert not reader.buffer
        return t.cast(Frame, done.value)
    raise AssertionError("incomplete frame")


def test_close_payload() -> None:
    assert protocol.close_payload(CloseCode.NORMAL_CLOSURE) == b"\x03\xe8"
    assert protocol.close_payload(CloseCode.GOING_AWAY, "bye") == b"\x03\xe9bye"
    # Cut to 123 bytes, never inside a character.
    cut = protocol.close_payload(CloseCode.NORMAL_CLOSURE, "€" * 50)
    assert len(cut) == 2 + 123 and cut[2:].decode() == "€" * 41
    cut = protocol.close_payload(CloseCode.NORMAL_CLOSURE, "a" + "€" * 50)
    assert len(cut) == 2 + 121 and cut[2:].decode() == "a" + "€" * 40


def test_binary_frames_are_taken_whole_and_text_as_it_comes() -> None:
    proto = ServerProtocol()
    # An uncompressed binary frame waits in the buffer until it is whole.
    proto.receive_data(frame(Opcode.BINARY, b"b" * 100)[: 6 + 10])
    assert proto.next_event() is None
    assert len(proto.buffer) == 10
    proto.receive_data(b"\x00" * 89)
    assert proto.next_event() is None and len(proto.buffer) == 99
    # Text is decoded as it comes: the buffer does not keep it.
    proto = ServerProtocol()
    proto.receive_data(text("t" * 100)[: 6 + 10])
    assert proto.next_event() is None
    assert len(proto.buffer) == 0
