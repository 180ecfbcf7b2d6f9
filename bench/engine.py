"""The protocol engines alone, without I/O: ours (the frame parser of
flask_sockets.protocol, and the connection our sockets drive,
flask_sockets.connection, over it) and websockets' sans-I/O ``ServerProtocol``,
parsing the same client bytes and building the same replies, in one process
(CPU time per message).

    hatch run bench:engine [--seconds S]

Workloads: 32-byte text messages (in batches of 64, as a busy connection
reads them), 1 MiB binary messages fed in 64 KiB reads, 4 KiB JSON
compressed with permessage-deflate (no context takeover both ways, both
engines negotiated the same way). The reply to each message is serialised
too (a frame for the same payload). Prints a table, writes
bench/results/engine.json and the table between RESULTS.md's ``engine:``
markers (unless --no-markdown).

The 1 MiB figure of this loop is mostly page faults: each message needs
fresh megabytes that glibc returns to the kernel between messages, and how
often depends on the allocator's state more than on the engine (this VM
takes ~4 us per fault). The server-to-server ``large`` workload of
``bench:all`` is the figure that counts for big messages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import typing as t
import zlib
from pathlib import Path

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame
from websockets.frames import Opcode
from websockets.protocol import OPEN
from websockets.protocol import SERVER
from websockets.protocol import Protocol

from flask_sockets.compression import Compression
from flask_sockets.compression import Deflate
from flask_sockets.connection import Connection
from flask_sockets.protocol import Opcode as OurOpcode
from flask_sockets.protocol import ServerProtocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import report  # noqa: E402

RESULTS = Path(__file__).with_name("results")
# Plain ints, as our sockets pass them (an IntEnum costs a little in every comparison).
OUR_TEXT, OUR_BINARY = int(OurOpcode.TEXT), int(OurOpcode.BINARY)
READ = 64 * 1024


def client_frames(messages: list[t.Any], compress: bool) -> bytes:
    """What a client sends: masked frames (compressed, no context kept)."""
    out = bytearray()
    for message in messages:
        opcode = Opcode.TEXT if isinstance(message, str) else Opcode.BINARY
        data = message.encode() if isinstance(message, str) else message
        extensions = [PerMessageDeflate(True, True, 15, 15)] if compress else []
        out += Frame(opcode, data).serialize(mask=True, extensions=extensions)
    return bytes(out)


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def make_ours(compress: bool) -> ServerProtocol:
    deflate = (
        Deflate(
            Compression(),
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=15,
            client_max_window_bits=15,
        )
        if compress
        else None
    )
    return ServerProtocol(16 * 1024 * 1024, deflate)


def run_ours(protocol: ServerProtocol, reads: list[bytes], count: int) -> int:
    got = 0
    for data in reads:
        protocol.buffer += data
        while (event := protocol.next_event()) is not None:
            if isinstance(event, str):
                header, payload = protocol.data_frame(OUR_TEXT, event.encode())
            else:
                header, payload = protocol.data_frame(OUR_BINARY, event)
            got += 1
    assert got == count, (got, count)
    return got


def make_connection(compress: bool) -> Connection:
    connection = Connection(16 * 1024 * 1024, make_ours(compress).deflate)
    connection.accept()
    return connection


def run_connection(connection: Connection, reads: list[bytes], count: int) -> int:
    """As a socket drives it: bytes in, events out, the reply queued and taken."""
    got = 0
    for data in reads:
        connection.receive_data(data)
        while (event := connection.next_event()) is not None:
            if isinstance(event, str):
                connection.send_text(event.encode(), True, event)
            else:
                connection.send_binary(event, True, event)
            connection.data_to_send()
            got += 1
    assert got == count, (got, count)
    return got


def make_websockets(compress: bool) -> Protocol:
    protocol = Protocol(SERVER, state=OPEN, max_size=16 * 1024 * 1024)
    if compress:
        protocol.extensions = [PerMessageDeflate(True, True, 15, 15)]
    return protocol


def run_websockets(protocol: Protocol, reads: list[bytes], count: int) -> int:
    got = 0
    for data in reads:
        protocol.receive_data(data)
        for frame in protocol.events_received():
            if frame.opcode is Opcode.TEXT:
                protocol.send_text(frame.data)
            else:
                protocol.send_binary(frame.data)
            got += 1
        protocol.data_to_send()
    assert got == count, (got, count)
    return got


def workloads() -> dict[str, tuple[list[bytes], int, bool]]:
    small = ["x" * 32] * 64
    large = [os.urandom(1024 * 1024)]
    record = {"id": 0, "user": "ada", "text": "hello there " * 4, "tags": ["a", "b", "c"], "score": 0.5}
    big_json = [json.dumps([dict(record, id=i + n) for i in range(40)])[:4096] for n in range(16)]
    return {
        "32 B text x64": (chunks(client_frames(small, False), READ), 64, False),
        "1 MiB binary": (chunks(client_frames(large, False), READ), 1, False),
        "4 KiB JSON, deflate": (chunks(client_frames(big_json, True), READ), 16, True),
    }


def measure(
    make: t.Callable[[bool], t.Any], engine: t.Callable[..., int], reads: list[bytes], count: int, compress: bool,
    seconds: float,
) -> float:
    """CPU microseconds per message (the best of 5 rounds of ``seconds``/5),
    on one connection's engine, as a server reuses it message after message."""
    best = float("inf")
    protocol = make(compress)
    for _ in range(5):
        messages, start = 0, time.process_time()
        while time.process_time() - start < seconds / 5:
            messages += engine(protocol, reads, count)
        best = min(best, (time.process_time() - start) / messages * 1e6)
    return best


ENGINES = {
    "ours": (make_ours, run_ours),
    "connection": (make_connection, run_connection),
    "websockets": (make_websockets, run_websockets),
}


def in_child(engine: str, workload: str, seconds: float) -> float:
    """Measure in a fresh process: large messages cost page faults that
    depend on the state of the allocator, which one engine must not leave
    to the other."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", engine, workload, "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, timeout=60 + 10 * seconds,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine and workload (default 2)")
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite bench/RESULTS.md")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, workload = args.child
        make, run = ENGINES[engine]
        reads, count, compress = workloads()[workload]
        measure(make, run, reads, count, compress, args.seconds / 2)  # warm-up: the allocator settles
        print(measure(make, run, reads, count, compress, args.seconds))
        return
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = {}
    for name in workloads():
        ours = in_child("ours", name, args.seconds)
        connection = in_child("connection", name, args.seconds)
        theirs = in_child("websockets", name, args.seconds)
        rows[name] = {
            "ours_us": ours,
            "connection_us": connection,
            "websockets_us": theirs,
            "speedup": theirs / ours,
            "connection_speedup": theirs / connection,
        }
    table = [["Workload", "parser us/message", "connection us/message", "websockets us/message",
              "parser faster by", "connection faster by"]]
    table += [[name, f"{r['ours_us']:.2f}", f"{r['connection_us']:.2f}", f"{r['websockets_us']:.2f}",
               f"{r['speedup']:.2f}x", f"{r['connection_speedup']:.2f}x"]
              for name, r in rows.items()]  # fmt: skip
    text = "\n".join([
        f"Latest run: {started.isoformat(timespec='seconds')}, `{harness.command_line('engine')}`,"
        f" {harness.machine()['git_commit']}, Python {sys.version.split()[0]}, zlib {zlib.ZLIB_RUNTIME_VERSION}:"
        " CPU time per message, best of 5 rounds, each engine in a fresh process. A shared machine: noisy.",
        "", *report.md_table(table),
    ])  # fmt: skip
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(
        json.dumps({"python": sys.version.split()[0], "zlib": zlib.ZLIB_RUNTIME_VERSION, "rows": rows}, indent=2)
    )
    if not args.no_markdown:
        print(f"table: {report.write_block('engine', text, 'The protocol engines alone').relative_to(harness.ROOT)}")


if __name__ == "__main__":
    main()
