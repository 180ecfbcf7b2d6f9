"""The load generator's side of permessage-deflate (RFC 7692), with zlib on
top of picows, and the JSON messages of the compression workloads.

picows has no extensions, but it passes the RSV1 bit through both ways
(``WSFrame.rsv1``, ``WSTransport.send(..., rsv1=True)``), so the client
offers the extension itself (``OFFER``, what browsers send), reads what the
server answered (``negotiated``) and does the deflate here:

- **Sending.** The messages a client sends are known in advance (a cycle of
  ``JsonMessages``), so they are compressed once, before the window, into a
  ``Sequence`` that every connection walks in the same order from the
  start. When the server allowed client context takeover, they are
  compressed in that order by one compressor, as a browser's would be (each
  may refer to the ones before it, and the first to none, so the cycle can
  start over); otherwise each on its own. Either way the window is at most
  the negotiated ``client_max_window_bits``. This takes the client's
  compression out of the measured loop: the server still decompresses and
  compresses every message, but the load generator only masks and sends.
- **Receiving.** Every compressed message from the server is inflated, live,
  by one decompressor per connection (it keeps the server's context if the
  server uses one), and checked. One exception: when the server declared
  ``server_no_context_takeover``, each of its messages is a deflate stream
  of its own, so the same bytes always inflate to the same text; then the
  text of the last ``SHARED_LIMIT`` distinct payloads is kept, and a payload
  seen before (a fan-out message that 1,000 clients in this one process
  receive byte for byte alike; an echo of a message of the cycle) is not
  inflated again. A real client does its own inflating on its own CPU;
  here one process plays 1,000 of them, and this keeps it from measuring
  itself. ``counts`` says how many were inflated and how many shared.
"""

from __future__ import annotations

import json
import random
import zlib

OFFER = "permessage-deflate; client_max_window_bits"
#: What a deflate block ends with after a sync flush; RFC 7692 takes it off the wire.
TAIL = b"\x00\x00\xff\xff"

_WORDS = (
    "order", "customer", "shipping", "invoice", "pending", "delivered", "warehouse", "priority", "standard",
    "express", "refund", "payment", "account", "north", "south", "east", "west", "central", "retail", "online",
)  # fmt: skip
_NAMES = ("Alice", "Bob", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Julia", "Kofi", "Lena")
_STATUS = ("active", "pending", "shipped", "delivered", "cancelled", "on-hold")
_TAGS = ("new", "sale", "gift", "fragile", "bulk", "backorder", "vip", "eco", "import", "local")


def json_message(number: int, size: int) -> bytes:
    """A ``size``-byte JSON document (a page of order records, as an API or
    a live dashboard would push), different for every ``number`` but alike
    in shape: keys and many values repeat, ids, prices and times do not.
    It starts with ``{"seq":"NNNNNNN",`` (``number``, 7 digits)."""
    rnd = random.Random(number)
    doc: dict[str, object] = {
        "seq": f"{number:07d}",
        "type": "orders.page",
        "ts": 1767225600000 + number * 37,
        "region": rnd.choice(_WORDS[13:18]),
        "items": [],
        "note": "",
    }
    items: list[dict[str, object]] = doc["items"]  # type: ignore[assignment]

    def encode() -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    while True:
        items.append({
            "id": rnd.randrange(10**6, 10**7),
            "customer": f"{rnd.choice(_NAMES)} {rnd.choice(_NAMES)}",
            "status": rnd.choice(_STATUS),
            "price": round(rnd.uniform(1, 500), 2),
            "qty": rnd.randrange(1, 100),
            "tags": rnd.sample(_TAGS, 2),
            "updated": f"2026-01-{rnd.randrange(1, 29):02d}T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z",
        })  # fmt: skip
        if len(encode()) > size:
            items.pop()
            break
    room = size - len(encode())
    words: list[str] = []
    while len(" ".join(words)) < room:
        words.append(rnd.choice(_WORDS))
    doc["note"] = " ".join(words)[:room]
    data = encode()
    if len(data) != size:
        raise ValueError(f"a {size}-byte JSON message is too small to build (got {len(data)})")
    return data


def negotiated(header: str | None) -> dict[str, int | bool] | None:
    """The parameters of the server's ``Sec-WebSocket-Extensions`` answer:
    ``None`` without permessage-deflate; ``ValueError`` if it is not one
    valid permessage-deflate (a client must then fail the connection)."""
    if not header or not header.strip():
        return None
    offers = [o for o in header.split(",") if o.strip()]
    if len(offers) != 1:
        raise ValueError(f"more than one extension accepted: {header!r}")
    name, *params = [p.strip() for p in offers[0].split(";")]
    if name.lower() != "permessage-deflate":
        raise ValueError(f"unknown extension accepted: {header!r}")
    found: dict[str, int | bool] = {}
    for param in params:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        if key in found:
            raise ValueError(f"{key} twice: {header!r}")
        if key in ("server_no_context_takeover", "client_no_context_takeover") and not value:
            found[key] = True
        elif key in ("server_max_window_bits", "client_max_window_bits") and value.isdigit():
            bits = int(value)
            if not 8 <= bits <= 15:
                raise ValueError(f"{key}={bits}: {header!r}")
            found[key] = bits
        else:
            raise ValueError(f"bad parameter {param!r}: {header!r}")
    return found


def describe(params: dict[str, int | bool] | None) -> str:
    """Short, for tables: ``srv no-takeover, cli 12 bits`` and so on."""
    if params is None:
        return "none"
    if not params:
        return "permessage-deflate"
    return "; ".join(k if v is True else f"{k}={v}" for k, v in params.items())


class Sequence:
    """``messages`` compressed for the client-to-server direction, in order,
    as the server's parameters allow (see the module docstring)."""

    def __init__(self, messages: list[bytes], params: dict[str, int | bool], level: int = 6) -> None:
        # zlib refuses an 8-bit raw deflate window (it makes it 9); no server here asks for 8.
        bits = max(9, int(params.get("client_max_window_bits", 15)))
        takeover = not params.get("client_no_context_takeover", False)
        self.takeover = takeover
        self.window_bits = bits
        self.plain = messages
        self.compressed: list[bytes] = []
        compressor = None
        for message in messages:
            if compressor is None or not takeover:
                compressor = zlib.compressobj(level, zlib.DEFLATED, -bits, 8)
            data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(TAIL)
            self.compressed.append(data[:-4])
        self.count = len(messages)


_sequences: dict[tuple[tuple[str, int | bool], ...], Sequence] = {}


def sequence_for(messages: list[bytes], params: dict[str, int | bool]) -> Sequence:
    """One ``Sequence`` per distinct set of parameters (every connection to
    one server gets the same answer, so it is built once)."""
    key = tuple(sorted((k, v) for k, v in params.items() if k.startswith("client_")))
    found = _sequences.get(key)
    if found is None or found.plain is not messages:
        found = _sequences[key] = Sequence(messages, params)
    return found


#: Inflated texts of independent (server_no_context_takeover) payloads, by payload.
SHARED_LIMIT = 1024
_shared: dict[bytes, bytes] = {}
#: Messages inflated, and messages whose identical payload was inflated before.
counts = {"inflated": 0, "shared": 0}


class Inflater:
    """The receiving side of one connection: inflates the server's
    compressed messages with its negotiated window, keeping the context
    (see the module docstring for the payloads it does not inflate twice)."""

    def __init__(self, params: dict[str, int | bool]) -> None:
        self.bits = int(params.get("server_max_window_bits", 15))
        self.independent = bool(params.get("server_no_context_takeover", False))
        self.decompressor = zlib.decompressobj(-self.bits)

    def inflate(self, data: bytes | memoryview) -> bytes:
        if self.independent:
            key = bytes(data)
            text = _shared.get(key)
            if text is not None:
                counts["shared"] += 1
                return text
        d = self.decompressor
        text = d.decompress(data) + d.decompress(TAIL)
        counts["inflated"] += 1
        if self.independent:
            if len(_shared) >= SHARED_LIMIT:
                _shared.clear()
            _shared[key] = text
        return text
