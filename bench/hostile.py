"""The hostile load generator: clients that misbehave, on raw asyncio
sockets and streams (and ``websockets``' sync client for the oversized
messages), one process on uvloop, pinned to its own CPU by the runner.

    python bench/hostile.py WORKLOAD URL --server-pid PID --scenario NAME [options]

URL is the server's echo route (``ws://127.0.0.1:PORT/echo``); the
``firehose`` workload uses ``/firehose`` on the same server. Prints one
JSON object. Everything is bounded in count and time and stops by itself,
whether the server closes the hostile connections or never does.

Workloads and their scenarios (``--scenario``):

fairness   A victim does 32-byte echo round trips, one at a time, while
           attackers flood: ``fragments-1``/``fragments-4``: 1 or 4
           connections each send 1-byte continuation frames of one never-ending
           binary message; ``frames-1``/``frames-4``: complete 8-byte binary
           messages, reading (and discarding) the echoes. The victim's round
           trips and what the server did to each attacker.
fragments  One connection (``empty-1``, ``byte-1``) or ten (``empty-10``,
           ``byte-10``) each send one never-ending binary message as empty or
           1-byte continuation frames, up to a bound: the server's RSS growth,
           and whether and when it closed the connections, with what code.
oversize   ``websockets``' sync client sends a message of ``2MiB``, ``4MiB``
           or ``20MiB`` (the limit is 1 MiB) ``--tries`` times: the close code
           the client saw each time.
slowloris  N connections (500) each send one byte of an upgrade request every
           3 s while a normal client opens a connection and does one echo every
           second: when the server drops them, and how the normal client fares.
firehose   A client asks ``/firehose`` for 64 KiB messages and never reads:
           whether and when the server's send gives up.
flood      ``messages-4``: a victim does a 32-byte echo every 20 ms, first
           alone (its quiet p99), then while 4 attackers flood complete 8-byte
           text messages: when the server closes the attackers (flood
           control), and the victim's p99 against its quiet p99.

The victims of ``fairness`` and ``flood`` start a round trip every 20 ms (50
a second, within our default flood control of 100 messages a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import struct
import sys
import time
import typing as t
from time import perf_counter

import psutil
import uvloop
from loadgen import ACCEPT
from loadgen import KEY
from loadgen import Window
from loadgen import cpu_seconds
from loadgen import process_tree
from loadgen import raise_fd_limit
from loadgen import report
from loadgen import rss_bytes

#: Seconds to wait for one step of a well-behaved exchange (connect, upgrade, an echo).
STEP_TIMEOUT = 5.0
#: Seconds the victim waits for the server to come back after an attack.
RECOVERY_TIMEOUT = 15.0
#: Masked with an all-zero key, a client frame's payload goes out as is:
#: the floods cost the load generator no masking.
ZERO_MASK = b"\0\0\0\0"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
#: Bytes of prebuilt frames written at a time by the floods.
CHUNK = 64 * 1024
#: Seconds between the starts of two of the victim's round trips: 50 a
#: second, a lively client well within our default flood control (100
#: messages a second), which closes a client sending back to back.
VICTIM_INTERVAL = 0.02
#: No close frame came: the connection just ended (RFC 6455, 7.1.5).
ABNORMAL = 1006
MIB = 1024 * 1024


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame (all-zero mask)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + ZERO_MASK + payload


CLOSE_1000 = client_frame(OP_CLOSE, struct.pack("!H", 1000))


def endpoint(url: str) -> tuple[str, int, str]:
    """``ws://HOST:PORT/PATH`` -> (host, port, /path)."""
    host, _, rest = url.removeprefix("ws://").partition(":")
    port, _, path = rest.partition("/")
    return host, int(port), "/" + path


def upgrade_request(host: str, port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def open_ws(url: str, timeout: float = STEP_TIMEOUT) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP connect and upgrade; the streams, positioned after the 101's head."""
    host, port, path = endpoint(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20), timeout)
    try:
        writer.write(upgrade_request(host, port, path))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except BaseException:
        writer.transport.abort()
        raise
    if not head.startswith(b"HTTP/1.1 101") or ACCEPT not in head:
        writer.transport.abort()
        raise ConnectionError(f"upgrade refused: {head[:60]!r}")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """One server frame (unmasked): (fin, opcode, payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    if second & 0x80:
        await reader.readexactly(4)  # a server must not mask, but skip it if one does
    return bool(first & 0x80), first & 0x0F, await reader.readexactly(length)


def close_code(payload: bytes) -> int:
    """The code in a close frame's payload (1005 when it has none)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def pct(values: t.Sequence[float], q: float) -> float | None:
    """The q-quantile of ``values`` (nearest rank), or None."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Sampler:
    """Samples the server's process tree (RSS, open files, CPU) every
    ``interval`` seconds in the background: the baseline, the peak, the last."""

    def __init__(self, server_pid: int, interval: float = 0.1) -> None:
        self.server_pid = server_pid
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (t, rss, fds)
        self.task: asyncio.Task[None] | None = None
        self.t0 = perf_counter()

    def sample(self) -> tuple[float, int, int]:
        tree = process_tree(self.server_pid)
        fds = 0
        for p in tree:
            try:
                fds += p.num_fds()
            except psutil.Error:
                pass
        value = (perf_counter() - self.t0, rss_bytes(tree), fds)
        self.samples.append(value)
        return value

    async def _loop(self) -> None:
        while True:
            try:
                self.sample()
            except psutil.Error:
                return  # the server is gone
            await asyncio.sleep(self.interval)

    def start(self) -> Sampler:
        self.t0 = perf_counter()
        self.sample()
        self.task = asyncio.ensure_future(self._loop())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        try:
            self.sample()
        except psutil.Error:
            pass

    def summary(self) -> dict[str, t.Any]:
        first, peak_rss = self.samples[0], max(s[1] for s in self.samples)
        return {
            "rss_before_mib": round(first[1] / MIB, 1),
            "rss_peak_growth_mib": round((peak_rss - first[1]) / MIB, 1),
            "rss_end_growth_mib": round((self.samples[-1][1] - first[1]) / MIB, 1),
            "fds_before": first[2],
            "fds_peak": max(s[2] for s in self.samples),
            "fds_end": self.samples[-1][2],
        }


# -- fairness ----------------------------------------------------------------


async def open_raw(url: str, path: str | None = None) -> tuple[socket.socket, bytes]:
    """TCP connect and upgrade on a plain non-blocking socket (nothing reads
    from it unless asked, unlike asyncio streams): the socket, and whatever
    came after the 101's head."""
    loop = asyncio.get_running_loop()
    host, port, url_path = endpoint(url)
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), STEP_TIMEOUT)
        await loop.sock_sendall(sock, upgrade_request(host, port, path or url_path))
        head = b""
        while b"\r\n\r\n" not in head:
            more = await asyncio.wait_for(loop.sock_recv(sock, 4096), STEP_TIMEOUT)
            if not more:
                raise ConnectionError("closed during the upgrade")
            head += more
    except BaseException:
        sock.close()
        raise
    head, _, rest = head.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101") or ACCEPT not in head:
        sock.close()
        raise ConnectionError(f"upgrade refused: {head[:60]!r}")
    return sock, rest


class Attacker:
    """Floods one connection with a prebuilt chunk of frames as fast as the
    server takes them (TCP back-pressure is the only brake), while reading
    and discarding whatever the server sends, watching for its close frame.
    Stops at its deadline, at its frame bound, or when the server closes.

    A plain socket: the flood is ``sock_sendall`` of one prebuilt 64 KiB
    chunk after another, and what comes back is read in bulk every few
    milliseconds (a stream would wake up for every small echo segment, which
    made the load generator the bottleneck)."""

    POLL = 0.005

    def __init__(self, first: bytes, frame: bytes, max_frames: int | None = None, linger: float = 0.5) -> None:
        self.first = first  # sent once, before the flood (the message's opening frame)
        self.frame = frame
        self.frames_per_chunk = max(1, CHUNK // len(frame))
        self.chunk = frame * self.frames_per_chunk
        self.max_frames = max_frames
        # Seconds the connection stays open after the flood, watching for a late close frame.
        self.linger = linger
        self.sent = 0  # bytes the kernel took (whole chunks; a chunk cut short by the end is not counted)
        self.received = 0  # bytes the server sent back
        self.echoes = 0  # complete data frames the server sent back
        self.started = 0.0
        self.closed_code: int | None = None  # the server's close frame, 1006 if none
        self.closed_after: float | None = None  # seconds from the flood's start
        self.close_reason = ""
        self.error = ""
        self.buffer = b""

    @property
    def frames_sent(self) -> int:
        """Flood frames the kernel took (the server has read at most these)."""
        return max(0, self.sent - len(self.first)) // len(self.frame)

    def _closed(self, code: int, reason: str = "") -> None:
        if self.closed_code is None:
            self.closed_code = code
            self.closed_after = perf_counter() - self.started
            self.close_reason = reason

    def _scan(self, data: bytes) -> None:
        """Count the whole frames in ``data`` (after what was left over), stop at a close frame."""
        buffer = self.buffer + data
        at, end = 0, len(buffer)
        while end - at >= 2:
            first, length = buffer[at], buffer[at + 1] & 0x7F
            start = at + 2
            if length == 126:
                if end - at < 4:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 4], "big"), at + 4
            elif length == 127:
                if end - at < 10:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 10], "big"), at + 10
            if end < start + length:
                break
            opcode = first & 0x0F
            if opcode == OP_CLOSE:
                payload = buffer[start : start + length]
                self._closed(close_code(payload), payload[2:].decode("utf-8", "replace"))
                return
            if opcode < OP_CLOSE and first & 0x80:
                self.echoes += 1
            at = start + length
        self.buffer = buffer[at:]

    async def _watch(self, sock: socket.socket) -> None:
        """Every few milliseconds, read everything the server sent (one
        ``recv`` gets many echoes), until its close frame or the end of TCP."""
        try:
            while self.closed_code is None:
                while True:
                    try:
                        data = sock.recv(1 << 20)
                    except BlockingIOError:
                        break
                    if not data:
                        self._closed(ABNORMAL, "EOF")
                        return
                    self.received += len(data)
                    self._scan(data)
                    if self.closed_code is not None:
                        return
                await asyncio.sleep(self.POLL)
        except OSError as e:
            self._closed(ABNORMAL, type(e).__name__)

    async def run(self, url: str, until: float) -> None:
        """Connect and flood until ``until`` (perf_counter), the frame bound or the server's close."""
        loop = asyncio.get_running_loop()
        try:
            sock, rest = await open_raw(url)
        except (OSError, asyncio.TimeoutError) as e:
            self.error = f"connect: {e!r}"
            return
        self.started = perf_counter()
        self._scan(rest)
        watcher = asyncio.ensure_future(self._watch(sock))

        async def flood() -> None:
            try:
                await loop.sock_sendall(sock, self.first)
                self.sent += len(self.first)
                while self.closed_code is None and perf_counter() < until:
                    if self.max_frames is not None and self.frames_sent >= self.max_frames:
                        break
                    await asyncio.wait_for(loop.sock_sendall(sock, self.chunk), max(0.01, until - perf_counter()))
                    self.sent += len(self.chunk)
            except asyncio.TimeoutError:
                pass  # the server stopped reading: the deadline ends the flood
            except OSError as e:
                self._closed(ABNORMAL, type(e).__name__)

        # The server's close frame ends the flood at once (a send blocked on a
        # server that no longer reads would otherwise wait for its TCP close).
        sender = asyncio.ensure_future(flood())
        await asyncio.wait([sender, watcher], return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        if self.closed_code is None:
            # The server may still be reading what is in flight: a close frame may yet come.
            await asyncio.wait([watcher], timeout=self.linger)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        # Abort (RST): a client that floods does not linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def summary(self) -> dict[str, t.Any]:
        return {
            "frames_sent": self.frames_sent,
            "bytes_sent": self.sent,
            "echoes_read": self.echoes,
            "closed_code": self.closed_code,  # None: still open when the flood stopped at its bound
            "closed_after_s": None if self.closed_after is None else round(self.closed_after, 3),
            "close_reason": self.close_reason[:80],
            "error": self.error,
        }


class Victim:
    """A well-behaved client: 32-byte text echoes, one at a time, each
    timed from the send to the whole echo."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.message = client_frame(OP_TEXT, b"v" * 32)
        self.latencies: list[float] = []
        self.waiting_since: float | None = None
        self.error = ""

    async def connect(self) -> None:
        self.reader, self.writer = await open_ws(self.url)

    async def echo(self, timeout: float) -> float:
        """One round trip; answers pings on the way. Raises on timeout or close."""
        started = self.waiting_since = perf_counter()
        self.writer.write(self.message)

        async def wait() -> None:
            while True:
                _, opcode, payload = await read_frame(self.reader)
                if opcode == OP_PING:
                    self.writer.write(client_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    raise ConnectionError(f"closed by the server: {close_code(payload)}")
                elif opcode in (OP_TEXT, OP_BINARY):
                    return

        await asyncio.wait_for(wait(), timeout)
        self.waiting_since = None
        return perf_counter() - started

    async def loop(self, until: float, interval: float = VICTIM_INTERVAL) -> None:
        """Round trips until ``until``, one every ``interval`` seconds (or
        back to back if a round trip takes longer); the one under way then
        may finish later (not counted)."""
        try:
            began, n = perf_counter(), 0
            while perf_counter() < until:
                self.latencies.append(await self.echo(max(0.001, until - perf_counter())))
                n += 1
                await asyncio.sleep(max(0.0, min(until, began + n * interval) - perf_counter()))
        except asyncio.TimeoutError:
            pass  # an echo outstanding at the end of the window
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            self.error = repr(e)

    async def close(self) -> None:
        try:
            self.writer.write(CLOSE_1000)
            await asyncio.wait_for(self.writer.drain(), 1.0)
        except (OSError, asyncio.TimeoutError):
            pass
        self.writer.transport.abort()


async def fairness(args: argparse.Namespace) -> dict[str, t.Any]:
    kind, _, count = args.scenario.partition("-")
    attackers_n = int(count)
    if kind == "fragments":
        # Opening frame of a binary message (1 byte, not final), then 1-byte continuations forever.
        first, frame = client_frame(OP_BINARY, b"\x00", fin=False), client_frame(OP_CONTINUATION, b"\x00", fin=False)
    elif kind == "frames":
        first, frame = b"", client_frame(OP_BINARY, b"abcdefgh")
    else:
        raise SystemExit(f"unknown fairness scenario {args.scenario!r}")
    victim = Victim(args.url)
    await victim.connect()
    # The victim's baseline, before any attack.
    baseline = []
    for _ in range(50):
        baseline.append(await victim.echo(STEP_TIMEOUT))
        await asyncio.sleep(VICTIM_INTERVAL)
    window = Window(args.server_pid)
    attackers = [Attacker(first, frame) for _ in range(attackers_n)]
    started = perf_counter()
    flood_until = started + args.duration + 1.0
    tasks = [asyncio.ensure_future(a.run(args.url, flood_until)) for a in attackers]
    await asyncio.sleep(1.0)  # let the floods reach full speed (or be closed)
    window.start()
    await victim.loop(perf_counter() + args.duration)
    usage = window.stop()
    stalled = None if victim.waiting_since is None else perf_counter() - victim.waiting_since
    await asyncio.gather(*tasks)
    attack_ended = perf_counter()
    # Does the victim's connection still work once the attack is over, and how soon?
    recovered: float | str
    try:
        if victim.waiting_since is not None:
            # Its last echo is still owed: wait for that first.
            async def owed() -> None:
                while True:
                    _, opcode, _ = await read_frame(victim.reader)
                    if opcode in (OP_TEXT, OP_BINARY):
                        return

            await asyncio.wait_for(owed(), RECOVERY_TIMEOUT)
        await victim.echo(RECOVERY_TIMEOUT)
        recovered = round(perf_counter() - attack_ended, 3)
    except (asyncio.TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError) as e:
        recovered = f"not within {RECOVERY_TIMEOUT:.0f} s: {type(e).__name__}"
    await victim.close()
    lat = victim.latencies
    return {
        "scenario": args.scenario,
        "attackers": attackers_n,
        "attack": "1-byte continuation frames of one endless binary message"
        if kind == "fragments"
        else "complete 8-byte binary messages, echoes read and discarded",
        "victim_baseline_p50_ms": ms(pct(baseline, 0.5) or 0.0),
        "victim_echoes": len(lat),
        "victim_p50_ms": None if not lat else ms(pct(lat, 0.5) or 0.0),
        "victim_p90_ms": None if not lat else ms(pct(lat, 0.9) or 0.0),
        "victim_p99_ms": None if not lat else ms(pct(lat, 0.99) or 0.0),
        "victim_max_ms": None if not lat else ms(max(lat)),
        # An echo still outstanding when the window ended, waited for this long (a lower bound).
        "victim_stalled_ms": None if stalled is None else ms(stalled),
        "victim_error": victim.error,
        # Seconds from the attackers' end (they abort their connections) to the victim's next echo.
        "victim_recovered_after_s": recovered,
        "attackers_detail": [a.summary() for a in attackers],
        **usage,
    }


# -- flood (valid messages) ------------------------------------------------------


async def flood(args: argparse.Namespace) -> dict[str, t.Any]:
    """A victim's echo round trips (one every 20 ms) for the window with no
    attack (its quiet figures), then for the window again from the moment 4
    attackers start flooding complete 8-byte text messages (reading and
    discarding the echoes) for the window and a second more: whether and
    when the server closed each attacker, and the victim's p99 under attack
    against its quiet p99."""
    _, _, count = args.scenario.partition("-")
    attackers_n = int(count)
    victim = Victim(args.url)
    await victim.connect()
    await victim.loop(perf_counter() + 1.0)  # warm-up
    victim.latencies = []
    await victim.loop(perf_counter() + args.duration)
    quiet = victim.latencies
    victim.latencies = []
    window = Window(args.server_pid)
    attackers = [Attacker(b"", client_frame(OP_TEXT, b"abcdefgh")) for _ in range(attackers_n)]
    started = perf_counter()
    tasks = [asyncio.ensure_future(a.run(args.url, started + args.duration + 1.0)) for a in attackers]
    window.start()
    await victim.loop(started + args.duration)
    usage = window.stop()
    stalled = None if victim.waiting_since is None else perf_counter() - victim.waiting_since
    await asyncio.gather(*tasks)
    await victim.close()
    lat = victim.latencies
    quiet_p99, p99 = pct(quiet, 0.99), pct(lat, 0.99)
    cut = [a.closed_after for a in attackers if a.closed_code is not None and a.closed_code != ABNORMAL]
    return {
        "scenario": args.scenario,
        "attackers": attackers_n,
        "attack": "complete 8-byte text messages, echoes read and discarded",
        "victim_quiet_echoes": len(quiet),
        "victim_quiet_p50_ms": None if not quiet else ms(pct(quiet, 0.5) or 0.0),
        "victim_quiet_p99_ms": None if quiet_p99 is None else ms(quiet_p99),
        "victim_echoes": len(lat),
        "victim_p50_ms": None if not lat else ms(pct(lat, 0.5) or 0.0),
        "victim_p99_ms": None if p99 is None else ms(p99),
        "victim_max_ms": None if not lat else ms(max(lat)),
        "victim_p99_ratio": None if not quiet_p99 or p99 is None else round(p99 / quiet_p99, 2),
        "victim_stalled_ms": None if stalled is None else ms(stalled),
        "victim_error": victim.error,
        # Attackers closed with a close frame, and the last of them after (s).
        "attackers_cut": len(cut),
        "attackers_cut_within_s": None if len(cut) < attackers_n else round(max(t.cast("list[float]", cut)), 3),
        "attackers_detail": [a.summary() for a in attackers],
        **usage,
    }


# -- fragments (memory) --------------------------------------------------------


async def fragments(args: argparse.Namespace) -> dict[str, t.Any]:
    kind, _, count = args.scenario.partition("-")
    connections = int(count)
    if kind == "empty":
        payload, bound = b"", args.empty_fragments
    elif kind == "byte":
        payload, bound = b"\x00", args.byte_fragments
    else:
        raise SystemExit(f"unknown fragments scenario {args.scenario!r}")
    first = client_frame(OP_BINARY, payload, fin=False)
    frame = client_frame(OP_CONTINUATION, payload, fin=False)
    await asyncio.sleep(0.5)
    sampler = Sampler(args.server_pid, 0.1).start()
    window = Window(args.server_pid)
    window.start()
    started = perf_counter()
    until = started + args.deadline
    # After the flood each connection stays open --settle seconds (the server
    # works through what is in flight, and may still close it), then aborts.
    attackers = [Attacker(first, frame, max_frames=bound, linger=args.settle) for _ in range(connections)]
    await asyncio.gather(*(a.run(args.url, until) for a in attackers))
    flood_s = perf_counter() - started
    await asyncio.sleep(1.0)  # the attackers are gone: does the memory come back?
    usage = window.stop()
    await sampler.stop()
    closed = [a for a in attackers if a.closed_code is not None]
    codes: dict[str, int] = {}
    for a in attackers:
        key = "still open at the bound" if a.closed_code is None else str(a.closed_code)
        codes[key] = codes.get(key, 0) + 1
    return {
        "scenario": args.scenario,
        "connections": connections,
        "fragment_payload_bytes": len(payload),
        "bound_frames_per_connection": bound,
        "deadline_s": args.deadline,
        "flood_s": round(flood_s, 2),  # including the --settle seconds
        "frames_sent": sum(a.frames_sent for a in attackers),
        "bytes_sent": sum(a.sent for a in attackers),
        "close_codes": codes,
        "closed_after_s_max": max((a.closed_after or 0.0 for a in closed), default=None),
        "closed_after_frames_max": max((a.frames_sent for a in closed), default=None),
        "attackers_detail": [a.summary() for a in attackers][:10],
        **sampler.summary(),
        **usage,
    }


# -- oversized messages --------------------------------------------------------


def oversize_tries(url: str, size: int, tries: int, deadline: float) -> dict[str, t.Any]:
    """``tries`` connections with ``websockets``' sync client, each sending one
    ``size``-byte binary message: the close codes the client saw."""
    from websockets.exceptions import ConnectionClosed
    from websockets.exceptions import InvalidHandshake
    from websockets.sync.client import connect

    # The client logs the server's abrupt end of the connection as an "unexpected internal error"
    # (a traceback per try); the close code it reports is what counts here.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    payload = os.urandom(size)
    codes: dict[str, int] = {}
    seconds: list[float] = []
    errors: list[str] = []
    done = 0
    for _ in range(tries):
        if time.monotonic() > deadline:
            break
        started = perf_counter()
        code: int | str
        try:
            with connect(url, max_size=None, open_timeout=STEP_TIMEOUT, close_timeout=2.0) as ws:
                try:
                    ws.send(payload)
                    ws.recv(timeout=STEP_TIMEOUT)  # the server should close first
                    code = "echoed"
                except ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd is not None else ABNORMAL
                except TimeoutError:
                    code = "no answer"
        except (OSError, InvalidHandshake, TimeoutError) as e:
            code = "connect failed"
            if len(errors) < 5:
                errors.append(repr(e))
        except ConnectionClosed as e:  # closed before the send completed, inside connect's cleanup
            code = e.rcvd.code if e.rcvd is not None else ABNORMAL
        seconds.append(perf_counter() - started)
        codes[str(code)] = codes.get(str(code), 0) + 1
        done += 1
    return {
        "tries": done,
        "close_codes": codes,
        "share_1009": codes.get("1009", 0) / done if done else None,
        "try_p50_ms": ms(pct(seconds, 0.5) or 0.0),
        "errors": errors,
    }


async def oversize(args: argparse.Namespace) -> dict[str, t.Any]:
    size = int(args.scenario.removesuffix("MiB")) * MIB
    window = Window(args.server_pid)
    window.start()
    result = await asyncio.to_thread(oversize_tries, args.url, size, args.tries, time.monotonic() + args.deadline)
    return {"scenario": args.scenario, "message_bytes": size, **result, **window.stop()}


# -- slowloris ---------------------------------------------------------------


class Loris:
    """One connection that sends its upgrade request one byte at a time."""

    def __init__(self) -> None:
        self.opened: float | None = None
        self.dropped_after: float | None = None
        self.how = ""
        self.sent = 0
        self.error = ""

    async def run(
        self, host: str, port: int, request: bytes, every: float, until: float, limit: asyncio.Semaphore
    ) -> None:
        try:
            async with limit:  # bounded connects at once; then each drips on its own
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            self.error = repr(e)
            return
        self.opened = perf_counter()

        async def drip() -> None:
            for i in range(len(request)):
                writer.write(request[i : i + 1])
                self.sent += 1
                await asyncio.sleep(every)

        async def watch() -> None:
            data = await reader.read(4096)  # the server answers (408/400) or closes
            self.how = f"answered {data[:12]!r}" if data else "closed (EOF)"

        dripping, watching = asyncio.ensure_future(drip()), asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait(
                [dripping, watching], timeout=max(0.0, until - perf_counter()), return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                self.dropped_after = perf_counter() - self.opened
                for task in done:
                    error = task.exception()
                    if error is not None:
                        self.how = f"{type(error).__name__}"
        finally:
            for task in (dripping, watching):
                task.cancel()
            await asyncio.gather(dripping, watching, return_exceptions=True)
            writer.transport.abort()


async def normal_client(url: str, results: list[dict[str, t.Any]]) -> None:
    """Connect, one 32-byte echo, close: the times, or what failed."""
    started = perf_counter()
    entry: dict[str, t.Any] = {"at_s": 0.0}
    try:
        reader, writer = await open_ws(url)
    except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError) as e:
        entry["error"] = f"connect: {type(e).__name__}"
        results.append(entry)
        return
    entry["connect_ms"] = ms(perf_counter() - started)
    try:
        sent = perf_counter()
        writer.write(client_frame(OP_TEXT, b"n" * 32))

        async def wait() -> None:
            while True:
                _, opcode, payload = await read_frame(reader)
                if opcode in (OP_TEXT, OP_BINARY):
                    return
                if opcode == OP_CLOSE:
                    raise ConnectionError(f"closed {close_code(payload)}")

        await asyncio.wait_for(wait(), STEP_TIMEOUT)
        entry["echo_ms"] = ms(perf_counter() - sent)
        writer.write(CLOSE_1000)
    except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError) as e:
        entry["error"] = f"echo: {type(e).__name__}"
    finally:
        writer.transport.abort()
    results.append(entry)


async def slowloris(args: argparse.Namespace) -> dict[str, t.Any]:
    host, port, path = endpoint(args.url)
    request = upgrade_request(host, port, path)
    sampler = Sampler(args.server_pid, 0.5).start()
    window = Window(args.server_pid)
    window.start()
    started = perf_counter()
    until = started + args.deadline
    loris = [Loris() for _ in range(args.connections)]
    limit = asyncio.Semaphore(100)
    tasks = [asyncio.ensure_future(lo.run(host, port, request, args.every, until, limit)) for lo in loris]
    normal: list[dict[str, t.Any]] = []
    pending: set[asyncio.Task[None]] = set()
    while perf_counter() < until:
        task = asyncio.ensure_future(normal_client(args.url, normal))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(1.0)
        if all(task.done() for task in tasks):
            break  # every slow connection is gone: nothing left to measure
    await asyncio.gather(*tasks)
    await asyncio.gather(*pending)
    usage = window.stop()
    await sampler.stop()
    opened = [lo for lo in loris if lo.opened is not None]
    dropped = [lo.dropped_after for lo in opened if lo.dropped_after is not None]
    hows: dict[str, int] = {}
    for lo in opened:
        if lo.dropped_after is not None:
            hows[lo.how] = hows.get(lo.how, 0) + 1
    ok = [n for n in normal if "error" not in n]
    connect_times = [n["connect_ms"] for n in ok]
    echo_times = [n["echo_ms"] for n in ok]
    failures: dict[str, int] = {}
    for n in normal:
        if "error" in n:
            failures[n["error"]] = failures.get(n["error"], 0) + 1
    return {
        "scenario": args.scenario,
        "connections": args.connections,
        "byte_every_s": args.every,
        "deadline_s": args.deadline,
        "ran_s": round(perf_counter() - started, 1),
        "opened": len(opened),
        "connect_failures": args.connections - len(opened),
        "dropped": len(dropped),
        "drop_p50_s": None if not dropped else round(pct(dropped, 0.5) or 0.0, 2),
        "drop_max_s": None if not dropped else round(max(dropped), 2),
        "drop_how": hows,
        "request_bytes_sent_max": max((lo.sent for lo in loris), default=0),
        "normal_attempts": len(normal),
        "normal_ok": len(ok),
        "normal_failures": failures,
        "normal_connect_p50_ms": pct(connect_times, 0.5),
        "normal_connect_max_ms": max(connect_times, default=None),
        "normal_echo_p50_ms": pct(echo_times, 0.5),
        "normal_echo_max_ms": max(echo_times, default=None),
        **sampler.summary(),
        **usage,
    }


# -- firehose ----------------------------------------------------------------


def server_tcp_state(tree: list[psutil.Process], client_port: int) -> str:
    """The state of the server's end of the connection from ``client_port``
    ("gone" once the server has closed it and the kernel let it go)."""
    for p in tree:
        try:
            connections = p.net_connections(kind="tcp")
        except psutil.Error:
            continue
        for c in connections:
            if c.raddr and c.raddr.port == client_port:
                return str(c.status)
    return "gone"


def firehose_line(log: str | None, offset: int) -> dict[str, t.Any] | None:
    """The ``FIREHOSE {...}`` line the server's handler prints when its send loop ends."""
    if not log:
        return None
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("FIREHOSE "):
            return t.cast("dict[str, t.Any]", json.loads(line[len("FIREHOSE ") :]))
    return None


async def firehose(args: argparse.Namespace) -> dict[str, t.Any]:
    loop = asyncio.get_running_loop()
    offset = os.path.getsize(args.server_log) if args.server_log else 0
    sampler = Sampler(args.server_pid, 0.5).start()
    # A plain socket, so that nothing reads for us (asyncio streams would buffer up to
    # their limit). The server sends nothing before the client's message.
    try:
        sock, _ = await open_raw(args.url, "/firehose")
    except (OSError, asyncio.TimeoutError) as e:
        raise SystemExit(report({"error": f"connect: {e!r}"})) from None
    client_port = sock.getsockname()[1]
    await loop.sock_sendall(sock, client_frame(OP_TEXT, b"go"))
    started = perf_counter()
    tree = process_tree(args.server_pid)
    state, gone_after, line = "ESTABLISHED", None, None
    while perf_counter() - started < args.deadline:
        await asyncio.sleep(0.5)
        line = line or firehose_line(args.server_log, offset)
        state = server_tcp_state(tree, client_port)
        if state != "ESTABLISHED" and gone_after is None:
            gone_after = perf_counter() - started
        if line is not None and state != "ESTABLISHED":
            break
    waited = perf_counter() - started
    gave_up = (line is not None and "its own bound" not in str(line.get("ended"))) or gone_after is not None
    received, seen_code = 0, None
    reader_done = "not read: the server was still sending at the bound"
    if gave_up:
        # Read what was queued for us (bounded): did a close frame come at the end?
        reader_done = "still open after 3 s of reading"
        buffer = bytearray()
        drain_until = perf_counter() + 3.0
        try:
            while perf_counter() < drain_until:
                data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), max(0.01, drain_until - perf_counter()))
                if not data:
                    reader_done = "EOF"
                    break
                received += len(data)
                buffer += data
                while len(buffer) >= 2:  # skip whole frames; look at close frames
                    length, start = buffer[1] & 0x7F, 2
                    if length == 126:
                        length, start = int.from_bytes(buffer[2:4], "big"), 4
                    elif length == 127:
                        length, start = int.from_bytes(buffer[2:10], "big"), 10
                    if len(buffer) < start + length:
                        break
                    if buffer[0] & 0x0F == OP_CLOSE and seen_code is None:
                        seen_code = close_code(bytes(buffer[start : start + length]))
                    del buffer[: start + length]
        except asyncio.TimeoutError:
            pass
        except OSError as e:
            reader_done = type(e).__name__
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    await sampler.stop()
    return {
        "scenario": args.scenario,
        "deadline_s": args.deadline,
        "waited_s": round(waited, 1),
        "gave_up": gave_up,
        # From the handler's own report: seconds from its first send to the end of its loop.
        "server_send_gave_up_after_s": None if line is None else line["seconds"],
        "server_sent_bytes": None if line is None else line["bytes"],
        "server_send_ended": None if line is None else line["ended"],
        "server_tcp_state": state,
        "server_tcp_left_established_after_s": None if gone_after is None else round(gone_after, 1),
        "client_read_after_bytes": received,
        "client_close_code_seen": seen_code,
        "client_read_ended": reader_done,
        **sampler.summary(),
    }


WORKLOADS: dict[str, t.Callable[[argparse.Namespace], t.Awaitable[dict[str, t.Any]]]] = {
    "fairness": fairness,
    "fragments": fragments,
    "oversize": oversize,
    "slowloris": slowloris,
    "firehose": firehose,
    "flood": flood,
}
#: Each workload's scenarios; the runner starts a fresh server for each one.
SCENARIOS = {
    "fairness": ("fragments-1", "fragments-4", "frames-1", "frames-4"),
    "fragments": ("empty-1", "byte-1", "empty-10", "byte-10"),
    "oversize": ("2MiB", "4MiB", "20MiB"),
    "slowloris": ("500",),
    "firehose": ("64KiB",),
    "flood": ("messages-4",),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("url", help="the server's echo route, ws://127.0.0.1:PORT/echo")
    parser.add_argument("--server-pid", type=int, required=True, help="the server process (children included)")
    parser.add_argument("--scenario", help="one of the workload's scenarios (default: the first)")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="fairness, flood: seconds the victim is measured (flood: twice)"
    )
    parser.add_argument("--deadline", type=float, help="seconds the hostile clients keep at it, at most")
    parser.add_argument("--empty-fragments", type=int, default=3_000_000, help="fragments: per connection, at most")
    parser.add_argument("--byte-fragments", type=int, default=1_000_000, help="fragments: per connection, at most")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="fragments: seconds the connections stay open after the flood"
    )
    parser.add_argument("--tries", type=int, default=100, help="oversize: messages sent, each on a new connection")
    parser.add_argument("--connections", type=int, default=500, help="slowloris: slow connections")
    parser.add_argument("--every", type=float, default=3.0, help="slowloris: seconds between two bytes")
    parser.add_argument("--server-log", help="firehose: the server's log, where its handler reports")
    args = parser.parse_args(argv)
    args.scenario = args.scenario or SCENARIOS[args.workload][0]
    if args.workload != "slowloris" and args.scenario not in SCENARIOS[args.workload]:
        parser.error(f"unknown scenario {args.scenario!r} for {args.workload}: {SCENARIOS[args.workload]}")
    if args.deadline is None:
        args.deadline = {"fragments": 15.0, "oversize": 45.0, "slowloris": 30.0, "firehose": 40.0}.get(
            args.workload, 0.0
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit(args.connections + 500)
    me = psutil.Process()
    cpu0 = cpu_seconds([me])
    started = perf_counter()
    result = uvloop.run(WORKLOADS[args.workload](args))
    elapsed = perf_counter() - started
    result["workload"] = args.workload
    # The load generator's CPU share over the whole scenario (client_cpu is the measured window's).
    result["loadgen_cpu_total"] = round((cpu_seconds([me]) - cpu0) / elapsed, 3) if elapsed else None
    result["loadgen_seconds"] = round(elapsed, 1)
    sys.stdout.write(report(result) + "\n")


if __name__ == "__main__":
    main()
