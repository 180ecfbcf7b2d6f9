"""The load generator: a WebSocket client on picows (Cython) and uvloop, one
process, meant to be pinned to its own CPU (the runner does it with taskset).

    python bench/loadgen.py WORKLOAD URL --server-pid PID [options]

Prints one JSON object with the figures of the measurement window, the CPU
time the server (PID and its children) and this process used in it, and
the errors seen. Every phase has a deadline; the process exits by itself.

Workloads:

small      N connections (50), each sends a 32-byte text message and waits
           for the echo before sending the next: round trips/s, p50/p99 latency.
large      N connections (4), each sends a 1 MiB binary message and waits for
           the whole echo: MB/s (10^6 bytes of echoed payload per second).
handshake  N loops (20), each opens a connection (TCP + upgrade), closes it
           with a close handshake and waits for the TCP close: connections/s.
idle       Opens N connections (5,000), one echo on each, then leaves them
           idle: server RSS per connection (growth over the RSS before them).
           With --hold, keeps them open that long, then checks each with an echo.
fanout     Opens N connections (1,000) that join one room, then, round after
           round, asks the server over HTTP (POST --publish-url) to publish one
           message to the room: per round, the time from the request to the
           last client receiving the message. --protocol socketio speaks
           Engine.IO 4 / Socket.IO 5 over the WebSocket (for Flask-SocketIO).
compressed N connections (50), each echoing --size-byte (4 KiB) JSON messages
           (a cycle of --messages different ones) with permessage-deflate: like
           small, plus the TCP bytes on the wire per message each way.

permessage-deflate (bench/deflate.py): --deflate expect offers it on every
connection and counts a connection whose server did not accept it as an
error (the workload stops there: "no compression negotiated"); --deflate
refuse offers it and expects no server to accept it; without --deflate
nothing is offered. --message json sends the JSON messages of bench/deflate.py
(idle, fanout; compressed always does). Each result says what the servers
answered (``negotiation``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import socket
import struct
import sys
import time
import typing as t
from time import perf_counter_ns

import deflate
import psutil
import uvloop
from harness import raise_fd_limit
from picows import WSCloseCode
from picows import WSFrame
from picows import WSListener
from picows import WSMsgType
from picows import WSTransport
from picows import ws_connect

WARMUP, MEASURE, STOP = 0, 1, 2
TIMEOUT = 10.0
MAX_FRAME = 4 * 1024 * 1024


class Run:
    """State shared by all connections of one workload."""

    def __init__(self) -> None:
        self.phase = WARMUP
        self.latencies: list[int] = []  # ns, round trips completed in the window
        self.bytes = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.unexpected_closes = 0
        # permessage-deflate: messages from the server that came compressed
        # (RSV1) or not, and the WebSocket payload bytes each way in the window.
        self.compressed_in = 0
        self.plain_in = 0
        self.payload_in = 0
        self.payload_out = 0

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(message)


class Client(WSListener):  # type: ignore[misc]
    """What every client here has: its transport, a bounded close, and what
    the server answered to the permessage-deflate offer (``--deflate``)."""

    #: From --deflate: "" (no offer), "expect" or "refuse" (offer it; see the docstring).
    deflate_mode = ""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.closing = False
        self.disconnected = False
        #: The server's Sec-WebSocket-Extensions answer, and its parameters
        #: (None: no permessage-deflate); a bad answer in ``negotiation_error``.
        self.extensions: str | None = None
        self.params: dict[str, int | bool] | None = None
        self.negotiation_error = ""

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.deflate_mode:
            headers = transport.response.headers
            values = headers.getall("Sec-WebSocket-Extensions", [])
            self.extensions = ", ".join(values) if values else None
            try:
                self.params = deflate.negotiated(self.extensions)
            except ValueError as e:
                self.negotiation_error = str(e)

    async def close(self) -> None:
        """Close handshake, then wait for the TCP close (bounded)."""
        transport = self.transport
        if transport is None or self.disconnected:
            return
        self.closing = True
        try:
            transport.send_close(WSCloseCode.OK)
            await asyncio.wait_for(transport.wait_disconnected(), TIMEOUT)
        except (asyncio.TimeoutError, OSError):
            transport.disconnect(graceful=False)


class EchoClient(Client):
    """Sends a message, waits for the whole echo, repeats while the run lasts."""

    def __init__(self, run: Run, payload: bytes, msg_type: WSMsgType, loop_forever: bool) -> None:
        super().__init__()
        self.run = run
        self.payload = payload
        self.size = len(payload)
        self.msg_type = msg_type
        self.loop_forever = loop_forever
        self.received = 0
        self.sent_at = 0
        self.checked = False
        self.parts: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True
        if not self.closing:
            self.run.unexpected_closes += 1
            self._wake(ConnectionError("disconnected"))

    def _wake(self, exc: BaseException | None = None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def send(self) -> asyncio.Future[None]:
        """Send the message; the future completes when the echo has come
        back (when not looping) or when the run stops (when looping)."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.received = 0
        self.sent_at = perf_counter_ns()
        assert self.transport is not None
        self.transport.send(self.msg_type, self.payload)
        return self.waiter

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.CLOSE:
            if not self.closing:
                self.run.unexpected_closes += 1
                self.run.error(f"server closed: {frame.get_close_code()} {frame.get_close_reason()!r}")
            transport.disconnect()
            self._wake(None if self.closing else ConnectionError("closed by the server"))
            return
        if msg_type is WSMsgType.PING or msg_type is WSMsgType.PONG:
            return  # picows answers pings itself
        if not self.checked:
            self.parts.append(frame.get_payload_as_bytes())
        self.received += frame.payload_size
        if not frame.fin:
            return
        now = perf_counter_ns()
        if self.received != self.size:
            self.run.error(f"echo of {self.received} bytes for {self.size}")
        if not self.checked:
            self.checked = True
            if b"".join(self.parts) != self.payload:
                self.run.error("echo differs from the message sent")
            self.parts = []
        run = self.run
        if run.phase == MEASURE:
            run.latencies.append(now - self.sent_at)
            run.bytes += self.received
        if not self.loop_forever or run.phase == STOP:
            self._wake()
            return
        self.received = 0
        self.sent_at = now
        transport.send(self.msg_type, self.payload)


class DeflateEchoClient(EchoClient):
    """Echoes ``messages`` (text, in turn) with permessage-deflate when the
    server accepted it: sends them precompressed (``deflate.Sequence``),
    inflates every echo and checks it against the message sent. Without
    the extension, sends them as they are."""

    def __init__(self, run: Run, messages: list[bytes], loop_forever: bool) -> None:
        super().__init__(run, messages[0], WSMsgType.TEXT, loop_forever)
        self.messages = messages
        self.index = 0
        self.sequence: deflate.Sequence | None = None
        self.inflater: deflate.Inflater | None = None
        self.compressed_echo = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        if self.params is not None:
            self.sequence = deflate.sequence_for(self.messages, self.params)
            self.inflater = deflate.Inflater(self.params)

    def _send_current(self, transport: WSTransport) -> None:
        self.payload = self.messages[self.index]
        self.size = len(self.payload)
        if self.sequence is not None:
            data = self.sequence.compressed[self.index]
            transport.send(WSMsgType.TEXT, data, rsv1=True)
        else:
            data = self.payload
            transport.send(WSMsgType.TEXT, data)
        if self.run.phase == MEASURE:
            self.run.payload_out += len(data)

    def send(self) -> asyncio.Future[None]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent_at = perf_counter_ns()
        assert self.transport is not None
        self._send_current(self.transport)
        return self.waiter

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.CLOSE or msg_type is WSMsgType.PING or msg_type is WSMsgType.PONG:
            super().on_ws_frame(transport, frame)
            return
        if msg_type is not WSMsgType.CONTINUATION:
            self.compressed_echo = bool(frame.rsv1)  # RFC 7692: RSV1 on the first frame only
        self.parts.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        now = perf_counter_ns()
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        run = self.run
        wire = len(data)
        if self.compressed_echo:
            run.compressed_in += 1
            if self.inflater is None:
                run.error("a compressed message on a connection without permessage-deflate")
                data = b""
            else:
                try:
                    data = self.inflater.inflate(data)
                except Exception as e:  # zlib.error: the stream is broken
                    run.error(f"inflate: {e!r}")
                    data = b""
        else:
            run.plain_in += 1
        if data != self.payload:
            run.error(f"echo of {len(data)} bytes differs from the {self.size}-byte message sent")
        if run.phase == MEASURE:
            run.latencies.append(now - self.sent_at)
            run.bytes += len(data)
            run.payload_in += wire
        if not self.loop_forever or run.phase == STOP:
            self._wake()
            return
        self.index = (self.index + 1) % len(self.messages)
        self.sent_at = now
        self._send_current(transport)


# -- measuring ---------------------------------------------------------------


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def cpu_busy(cpus: list[int]) -> tuple[float, float]:
    """(busy, total) jiffies of these CPUs, from /proc/stat."""
    busy = total = 0.0
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                    values = [float(v) for v in fields[:8]]
                    total += sum(values)
                    busy += sum(values) - values[3] - values[4]  # minus idle and iowait
    except OSError:
        pass
    return busy, total


class Window:
    """Over a window: wall time, CPU time of the server (its process tree)
    and of this client, and how busy each one's CPU was in all (the rest
    being other jobs on this machine, or interrupts)."""

    def __init__(self, server_pid: int) -> None:
        self.server = process_tree(server_pid)
        self.me = psutil.Process()
        try:
            self.server_cpus = self.server[-1].cpu_affinity() or []
        except (psutil.Error, AttributeError):
            self.server_cpus = []
        self.client_cpus = sorted(os.sched_getaffinity(0))

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.server0 = cpu_seconds(self.server)
        self.me0 = cpu_seconds([self.me])
        self.server_busy0 = cpu_busy(self.server_cpus)
        self.client_busy0 = cpu_busy(self.client_cpus)

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.t0
        self.elapsed = elapsed

        def share(now: tuple[float, float], then: tuple[float, float]) -> float:
            total = now[1] - then[1]
            return (now[0] - then[0]) / total if total else float("nan")

        return {
            "seconds": elapsed,
            "server_cpu": (cpu_seconds(self.server) - self.server0) / elapsed,
            "client_cpu": (cpu_seconds([self.me]) - self.me0) / elapsed,
            "server_cpu_busy": share(cpu_busy(self.server_cpus), self.server_busy0),
            "client_cpu_busy": share(cpu_busy(self.client_cpus), self.client_busy0),
        }


def tcp_counters(transport: WSTransport | None) -> tuple[int, int]:
    """(bytes sent and acknowledged, bytes received) of the connection's TCP
    socket, from the kernel (``TCP_INFO``: ``tcpi_bytes_acked`` and
    ``tcpi_bytes_received``): what went over the wire, headers included."""
    if transport is None:
        return 0, 0
    try:
        sock = transport.underlying_transport.get_extra_info("socket")
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return 0, 0
    if len(info) < 136:
        return 0, 0
    acked, received = struct.unpack_from("=QQ", info, 120)
    return int(acked), int(received)


def wire_totals(clients: t.Sequence[Client]) -> tuple[int, int]:
    sent = received = 0
    for c in clients:
        s, r = tcp_counters(c.transport)
        sent += s
        received += r
    return sent, received


def negotiation(clients: t.Sequence[Client]) -> tuple[dict[str, t.Any], str]:
    """What the servers answered to the permessage-deflate offer, and the
    error to report if that is not what ``--deflate`` expects ("" if it is)."""
    mode = Client.deflate_mode
    answers: dict[str, int] = {}
    params: dict[str, int] = {}
    bad = [c.negotiation_error for c in clients if c.negotiation_error]
    for c in clients:
        answers[c.extensions or "(none)"] = answers.get(c.extensions or "(none)", 0) + 1
        key = deflate.describe(c.params)
        params[key] = params.get(key, 0) + 1
    with_it = sum(1 for c in clients if c.params is not None)
    summary: dict[str, t.Any] = {
        "offered": deflate.OFFER if mode else None,
        "mode": mode or "none",
        "answers": answers,
        "params": params,
        "connections_with_deflate": with_it,
        "connections": len(clients),
    }
    error = ""
    if bad:
        error = f"invalid permessage-deflate answer on {len(bad)} connections: {bad[0]}"
    elif mode == "expect" and with_it < len(clients):
        error = f"no compression negotiated on {len(clients) - with_it} of {len(clients)} connections"
    elif mode == "refuse" and with_it:
        error = f"compression negotiated on {with_it} of {len(clients)} connections, expected none"
    return summary, error


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1e6  # ms


async def connect(url: str, listener_factory: object, limit: asyncio.Semaphore | None = None) -> WSTransport:
    async def go() -> WSTransport:
        transport, _ = await asyncio.wait_for(
            ws_connect(
                listener_factory, url, max_frame_size=MAX_FRAME, websocket_handshake_timeout=TIMEOUT,
                extra_headers={"Sec-WebSocket-Extensions": deflate.OFFER} if Client.deflate_mode else None,
            ),  # fmt: skip
            TIMEOUT,
        )
        return transport

    if limit is None:
        return await go()
    async with limit:
        return await go()


async def connect_all(url: str, clients: t.Sequence[Client], concurrency: int) -> list[BaseException]:
    """Connect every client, at most ``concurrency`` at a time: the failures."""
    limit = asyncio.Semaphore(concurrency)
    results = await asyncio.gather(*(connect(url, lambda *_, c=c: c, limit) for c in clients), return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]


async def open_clients(
    url: str,
    count: int,
    run: Run,
    payload: bytes,
    msg_type: WSMsgType,
    loop_forever: bool,
    concurrency: int,
    messages: list[bytes] | None = None,
) -> list[EchoClient]:
    """Connect ``count`` echo clients (``DeflateEchoClient`` of ``messages``
    if given); with --deflate, stop with an error unless every server answer
    is the one expected."""
    clients: list[EchoClient]
    if messages is not None:
        clients = [DeflateEchoClient(run, messages, loop_forever) for _ in range(count)]
    else:
        clients = [EchoClient(run, payload, msg_type, loop_forever) for _ in range(count)]
    failed = await connect_all(url, clients, concurrency)
    for r in failed[:5]:
        run.error(f"connect: {r!r}")
    if failed:
        raise SystemExit(report({"error": f"{len(failed)} of {count} connections failed", "errors": run.errors}))
    if Client.deflate_mode:
        summary, error = negotiation(clients)
        if error:
            await close_all(clients)
            raise SystemExit(report({"error": error, "negotiation": summary, "errors": run.errors}))
    return clients


async def close_all(clients: t.Sequence[Client], concurrency: int = 500) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def one(client: Client) -> None:
        async with limit:
            await client.close()

    await asyncio.gather(*(one(c) for c in clients), return_exceptions=True)


# -- workloads ---------------------------------------------------------------


async def echo_loop(
    args: argparse.Namespace, payload: bytes, msg_type: WSMsgType, messages: list[bytes] | None = None
) -> dict[str, object]:
    run = Run()
    clients = await open_clients(
        args.url, args.connections, run, payload, msg_type, True, args.connections, messages
    )  # fmt: skip
    window = Window(args.server_pid)
    waiters = [c.send() for c in clients]
    await asyncio.sleep(args.warmup)
    run.phase = MEASURE
    wire0 = wire_totals(clients)
    window.start()
    await asyncio.sleep(args.duration)
    run.phase = STOP
    usage = window.stop()
    wire1 = wire_totals(clients)
    count, total_bytes = len(run.latencies), run.bytes
    payload_in, payload_out, compressed_in, plain_in = run.payload_in, run.payload_out, run.compressed_in, run.plain_in
    done, pending = await asyncio.wait(waiters, timeout=TIMEOUT)
    stuck = len(pending) + sum(1 for w in done if w.exception() is not None)
    if stuck:
        run.error(f"{stuck} connections did not finish their last round trip")
    await close_all(clients)
    latencies = sorted(run.latencies)
    extra: dict[str, object] = {}
    if messages is not None:
        per = max(count, 1)
        extra = {
            "messages": len(messages),
            "negotiation": negotiation(clients)[0],
            # Per round trip in the window, from the kernel's TCP counters of
            # the client sockets: client -> server, server -> client.
            "wire_bytes_out_per_message": (wire1[0] - wire0[0]) / per,
            "wire_bytes_in_per_message": (wire1[1] - wire0[1]) / per,
            # WebSocket payloads (compressed if so): what the frames carried.
            "payload_bytes_out_per_message": payload_out / per,
            "payload_bytes_in_per_message": payload_in / per,
            "echoes_compressed": compressed_in,
            "echoes_uncompressed": plain_in,
        }
    return {
        "connections": args.connections,
        "message_bytes": len(messages[0]) if messages else len(payload),
        "round_trips": count,
        "round_trips_per_s": count / window.elapsed,
        "mb_per_s": total_bytes / window.elapsed / 1e6,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        **extra,
        **usage,
        "errors": run.errors,
        "unexpected_closes": run.unexpected_closes,
    }


async def small(args: argparse.Namespace) -> dict[str, object]:
    return await echo_loop(args, b"x" * args.size, WSMsgType.TEXT)


async def large(args: argparse.Namespace) -> dict[str, object]:
    payload = os.urandom(args.size)
    return await echo_loop(args, payload, WSMsgType.BINARY)


def json_messages(args: argparse.Namespace) -> list[bytes]:
    return [deflate.json_message(i, args.size) for i in range(args.messages)]


async def compressed(args: argparse.Namespace) -> dict[str, object]:
    """``small`` with ``--size`` JSON messages and permessage-deflate (--deflate expect)."""
    return await echo_loop(args, b"", WSMsgType.TEXT, json_messages(args))


class Handshake(asyncio.Protocol):
    """One open+close cycle over a bare asyncio protocol: send the upgrade,
    check the 101 and its Sec-WebSocket-Accept, send a close frame, wait for
    the server's close frame and for the server to close TCP (RFC 6455, 7.1.1).
    Leaner than picows's ``ws_connect``, which made the client the bottleneck."""

    def __init__(self, request: bytes, done: asyncio.Future[int]) -> None:
        self.request = request
        self.done = done
        self.buffer = b""
        self.state = 0  # 0: upgrade sent, 1: close sent, 2: close received
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t.cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if self.state == 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            head, buffer = buffer[:end], buffer[end + 4 :]
            if not head.startswith(b"HTTP/1.1 101") or ACCEPT not in head:
                self.fail(ConnectionError(f"bad upgrade response: {head[:80]!r}"))
                return
            self.state = 1
            assert self.transport is not None
            self.transport.write(CLOSE_FRAME)
        while self.state == 1 and len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2 if length < 126 else (4 if length == 126 else 10)
            if len(buffer) < start:
                break
            if length >= 126:
                length = int.from_bytes(buffer[2:start], "big")
            if len(buffer) < start + length:
                break
            if buffer[0] & 0x0F == 0x8:
                self.state = 2
            buffer = buffer[start + length :]
        self.buffer = buffer

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if self.state == 2:
            self.done.set_result(perf_counter_ns())
        else:
            self.done.set_exception(ConnectionError(f"connection lost in state {self.state}: {exc!r}"))


#: RFC 6455's sample key and its accept value.
KEY, ACCEPT = b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#: A masked close frame with code 1000 (mask 0x00000000 leaves the payload as is).
CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


async def handshake(args: argparse.Namespace) -> dict[str, object]:
    run = Run()
    window = Window(args.server_pid)
    loop = asyncio.get_running_loop()
    host, _, rest = args.url.removeprefix("ws://").partition(":")
    port_text, _, path = rest.partition("/")
    request = (
        f"GET /{path} HTTP/1.1\r\nHost: {host}:{port_text}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + args.warmup + args.duration + 2 * TIMEOUT
    durations: list[int] = []

    async def loop_once() -> None:
        while run.phase != STOP and time.monotonic() < deadline:
            started = perf_counter_ns()
            done: asyncio.Future[int] = loop.create_future()
            try:
                await asyncio.wait_for(
                    loop.create_connection(functools.partial(Handshake, request, done), host, int(port_text)), TIMEOUT
                )
                finished = await asyncio.wait_for(done, TIMEOUT)
            except Exception as e:  # any failure counts as an error
                run.error(f"handshake loop: {e!r}")
                await asyncio.sleep(0.05)
                continue
            if run.phase == MEASURE:
                durations.append(finished - started)

    tasks = [asyncio.ensure_future(loop_once()) for _ in range(args.connections)]
    await asyncio.sleep(args.warmup)
    run.phase = MEASURE
    window.start()
    await asyncio.sleep(args.duration)
    run.phase = STOP
    usage = window.stop()
    count = len(durations)
    await asyncio.wait(tasks, timeout=2 * TIMEOUT)
    durations.sort()
    return {
        "loops": args.connections,
        "connections": count,
        "connections_per_s": count / window.elapsed,
        "p50_ms": percentile(durations, 0.50),
        "p99_ms": percentile(durations, 0.99),
        **usage,
        "errors": run.errors,
        "error_count": run.error_count,
    }


async def idle(args: argparse.Namespace) -> dict[str, object]:
    run = Run()
    server = process_tree(args.server_pid)
    payload = b"x" * 32
    # --message json: the JSON messages (with --deflate, compressed both ways
    # if the server accepts it, so that its compressors exist).
    messages = [deflate.json_message(0, args.size)] if args.message == "json" else None
    # Warm the server up with one connection, so lazy imports and first-use
    # allocations don't count as connection memory.
    (warm,) = await open_clients(args.url, 1, run, payload, WSMsgType.TEXT, False, 1, messages)
    await asyncio.wait_for(warm.send(), TIMEOUT)
    await warm.close()
    run.compressed_in = run.plain_in = 0  # count the measured connections' echoes only
    await asyncio.sleep(1.0)
    server = process_tree(args.server_pid)
    before = rss_bytes(server)
    started = time.perf_counter()
    clients = await asyncio.wait_for(
        open_clients(args.url, args.connections, run, payload, WSMsgType.TEXT, False, args.concurrency, messages),
        args.open_timeout,
    )
    opened_in = time.perf_counter() - started

    async def echo_each() -> int:
        results = await asyncio.gather(
            *(asyncio.wait_for(c.send(), TIMEOUT) for c in clients if not c.disconnected), return_exceptions=True
        )
        bad = [r for r in results if isinstance(r, BaseException)]
        for r in bad[:5]:
            run.error(f"echo: {r!r}")
        return len(bad) + sum(1 for c in clients if c.disconnected)

    failed_first = await echo_each()
    # Let the server settle (freed handshake buffers, greenlets parked), then read RSS.
    await asyncio.sleep(args.settle)
    server = process_tree(args.server_pid)
    after = rss_bytes(server)
    held = 0.0
    failed_after_hold = 0
    if args.hold > 0:
        hold_started = time.perf_counter()
        await asyncio.sleep(args.hold)
        held = time.perf_counter() - hold_started
        failed_after_hold = await echo_each()
        after_hold = rss_bytes(process_tree(args.server_pid))
    else:
        after_hold = after
    server_cpu = cpu_seconds(process_tree(args.server_pid))
    await close_all(clients)
    extra: dict[str, object] = {}
    if messages is not None:
        extra = {
            "message_bytes": len(messages[0]),
            "echoes_compressed": run.compressed_in,
            "echoes_uncompressed": run.plain_in,
        }
    if Client.deflate_mode:
        extra["negotiation"] = negotiation(clients)[0]
    return {
        **extra,
        "connections": args.connections,
        "opened_in_s": opened_in,
        "rss_before": before,
        "rss_after": after,
        "rss_after_hold": after_hold,
        "rss_per_connection": (after - before) / args.connections,
        "held_s": held,
        "failed_echoes": failed_first,
        "failed_echoes_after_hold": failed_after_hold,
        "unexpected_closes": run.unexpected_closes,
        "server_cpu_seconds_total": server_cpu,
        "errors": run.errors,
    }


class Fanout:
    """The state of the fan-out rounds, shared by all clients."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.round = -1
        self.remaining = 0
        self.times: list[int] = []  # ns at which each client got this round's message
        self.done: asyncio.Future[None] | None = None
        self.errors: list[str] = []
        self.error_count = 0

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(message)

    def start(self, number: int) -> asyncio.Future[None]:
        self.round = number
        self.remaining = self.count
        self.times = []
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def got(self, number: int, now: int) -> None:
        if number != self.round:
            self.error(f"message of round {number} arrived in round {self.round}")
            return
        self.times.append(now)
        self.remaining -= 1
        if self.remaining == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)


class FanoutClient(Client):
    """A member of the room. With ``socketio``, speaks just enough of
    Engine.IO 4 / Socket.IO 5 over the WebSocket transport: answers the open
    packet with a namespace CONNECT (``40``), takes the server's ``40{...}``
    as "joined", answers pings (``2`` -> ``3``), and reads events
    ``42["fanout", "<round>:..."]``. Without it, the server says ``joined``
    and then sends the bare messages ``<round>:...``. The JSON messages
    (--message json) start with ``{"seq":"<round>"`` and are found by that
    (``42["fanout",{"seq":"<round>",...}]`` with Socket.IO) without parsing
    the rest. With permessage-deflate, compressed messages are inflated."""

    def __init__(self, fanout: Fanout, socketio: bool) -> None:
        super().__init__()
        self.fanout = fanout
        self.socketio = socketio
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last = -1
        self.inflater: deflate.Inflater | None = None
        self.compressed = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        if self.params is not None:
            self.inflater = deflate.Inflater(self.params)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True
        if not self.closing:
            self.fanout.error("a client was disconnected")
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("disconnected before joining"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = perf_counter_ns()
        if frame.msg_type is WSMsgType.CLOSE:
            if not self.closing:
                self.fanout.error(f"server closed: {frame.get_close_code()} {frame.get_close_reason()!r}")
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return  # picows answers pings itself
        if frame.rsv1:
            if self.inflater is None:
                self.fanout.error("a compressed message on a connection without permessage-deflate")
                return
            self.compressed += 1
            text = self.inflater.inflate(frame.get_payload_as_memoryview()).decode()
        else:
            text = frame.get_payload_as_utf8_text()
        seq = text.find('"seq":"', 0, 40)
        if seq >= 0:
            number = int(text[seq + 7 : seq + 14])
            if number <= self.last:
                self.fanout.error(f"round {number} again after {self.last}")
            self.last = number
            self.fanout.got(number, now)
            return
        if self.socketio:
            if text.startswith("42"):
                event, text = json.loads(text[2:])
            elif text.startswith("2"):
                transport.send(WSMsgType.TEXT, b"3")  # Engine.IO ping -> pong
                return
            elif text.startswith("0"):
                transport.send(WSMsgType.TEXT, b"40")  # Engine.IO open -> connect to namespace /
                return
            elif text.startswith("40"):
                self.joined.set_result(None)
                return
            else:
                self.fanout.error(f"unexpected Socket.IO packet {text[:40]!r}")
                return
        elif text == "joined":
            self.joined.set_result(None)
            return
        number, _, _ = text.partition(":")
        if int(number) <= self.last:
            self.fanout.error(f"round {number} again after {self.last}")
        self.last = int(number)
        self.fanout.got(int(number), now)



async def post(url: str, body: bytes, content_type: str) -> tuple[int, asyncio.Task[int]]:
    """Connect to ``url`` and send a POST of ``body``; returns the send time
    (ns, taken after the TCP connect) and a task reading the status code."""
    host, _, rest = url.removeprefix("http://").partition(":")
    port, _, path = rest.partition("/")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), TIMEOUT)
    request = (
        f"POST /{path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body

    async def status() -> int:
        try:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            await asyncio.wait_for(reader.read(), TIMEOUT)
        finally:
            writer.close()
        return int(line.split()[1]) if line.startswith(b"HTTP/1.") else 0

    sent = perf_counter_ns()
    writer.write(request)
    return sent, asyncio.ensure_future(status())


async def fanout(args: argparse.Namespace) -> dict[str, object]:
    state = Fanout(args.connections)
    socketio = args.protocol == "socketio"
    clients = [FanoutClient(state, socketio) for _ in range(args.connections)]
    failed = await connect_all(args.url, clients, args.concurrency)
    if failed:
        raise SystemExit(report({"error": f"{len(failed)} of {len(clients)} connections failed: {failed[0]!r}"}))
    try:
        await asyncio.wait_for(asyncio.gather(*(c.joined for c in clients)), args.open_timeout)
    except (asyncio.TimeoutError, ConnectionError) as e:
        joined = sum(1 for c in clients if c.joined.done() and not c.joined.exception())
        raise SystemExit(report({"error": f"only {joined} of {len(clients)} clients joined the room: {e!r}"})) from None
    summary: dict[str, t.Any] | None = None
    if Client.deflate_mode:
        summary, error = negotiation(clients)
        if error:
            await close_all(clients)
            raise SystemExit(report({"error": error, "negotiation": summary}))
    await asyncio.sleep(0.5)  # let the server finish its part of the handshakes
    window = Window(args.server_pid)
    wire0 = (0, 0)
    # ns from sending the POST: to the last client, to the first, to each.
    to_all: list[int] = []
    to_first: list[int] = []
    to_each: list[int] = []
    missed = 0
    padding = "x" * max(0, args.size - 8)
    for number in range(args.warmup_rounds + args.rounds):
        measured = number >= args.warmup_rounds
        if number == args.warmup_rounds:
            wire0 = wire_totals(clients)
            window.start()
        done = state.start(number)
        if args.message == "json":
            body, content_type = deflate.json_message(number, args.size), "application/json"
        else:
            body, content_type = f"{number:07d}:{padding}".encode(), "text/plain; charset=utf-8"
        sent, status = await post(args.publish_url, body, content_type)
        try:
            await asyncio.wait_for(asyncio.shield(done), TIMEOUT)
        except asyncio.TimeoutError:
            missed += state.remaining
            state.error(f"round {number}: {state.remaining} of {state.count} clients got nothing in {TIMEOUT:.0f} s")
        code = await status
        if code not in (200, 204):
            state.error(f"round {number}: POST answered {code}")
        if measured and state.times:
            times = sorted(state.times)
            to_all.append(times[-1] - sent)
            to_first.append(times[0] - sent)
            to_each += [x - sent for x in times]
        await asyncio.sleep(args.gap)
    usage = window.stop()
    wire1 = wire_totals(clients)
    compressed_deliveries = sum(c.compressed for c in clients)
    await close_all(clients)
    to_all.sort()
    to_first.sort()
    to_each.sort()
    median_all = percentile(to_all, 0.5)
    return {
        "connections": args.connections,
        "rounds": args.rounds,
        "message_bytes": len(body),
        "message": args.message,
        "protocol": args.protocol,
        **({"negotiation": summary} if summary is not None else {}),
        # From the kernel's TCP counters of the client sockets over the
        # measured rounds: what each client received per message (frame
        # headers, Socket.IO framing and pings included).
        "wire_bytes_in_per_delivery": (wire1[1] - wire0[1]) / (args.connections * args.rounds),
        "deliveries_compressed": compressed_deliveries,
        "all_received_p50_ms": median_all,
        "all_received_p90_ms": percentile(to_all, 0.9),
        "all_received_max_ms": percentile(to_all, 1.0),
        "first_received_p50_ms": percentile(to_first, 0.5),
        "delivery_p50_ms": percentile(to_each, 0.5),
        "deliveries_per_s": args.connections / (median_all / 1e3) if to_all and median_all else 0.0,
        # Server CPU time per published message (the HTTP request, the publish and
        # every delivery): what the fan-out costs the server, whatever else runs.
        "server_cpu_ms_per_round": usage["server_cpu"] * usage["seconds"] * 1e3 / args.rounds,
        # The same for this process: near the all-received time, the load
        # generator is what limits the figure (then a lower bound).
        "client_cpu_ms_per_round": usage["client_cpu"] * usage["seconds"] * 1e3 / args.rounds,
        "missed": missed,
        **usage,
        "errors": state.errors,
        "error_count": state.error_count,
    }


WORKLOADS = {
    "small": small, "large": large, "handshake": handshake, "idle": idle, "fanout": fanout, "compressed": compressed,
}  # fmt: skip
DEFAULTS = {
    "compressed": {"connections": 50, "size": 4096},
    "small": {"connections": 50, "size": 32},
    "large": {"connections": 4, "size": 1024 * 1024},
    "handshake": {"connections": 20, "size": 0},
    "idle": {"connections": 5000, "size": 32},
    "fanout": {"connections": 1000, "size": 32},
}


def report(result: dict[str, object]) -> str:
    return json.dumps(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("url")
    parser.add_argument("--server-pid", type=int, required=True, help="the server process (children included)")
    parser.add_argument("--connections", type=int, help="connections (loops for handshake)")
    parser.add_argument("--size", type=int, help="message size in bytes")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=100, help="idle: connections opened at once")
    parser.add_argument("--settle", type=float, default=3.0, help="idle: seconds before reading RSS")
    parser.add_argument("--hold", type=float, default=0.0, help="idle: seconds to keep the connections open")
    parser.add_argument("--open-timeout", type=float, default=180.0, help="idle, fanout: seconds to open them all")
    parser.add_argument("--publish-url", help="fanout: the URL to POST each round's message to")
    parser.add_argument("--protocol", choices=("plain", "socketio"), default="plain", help="fanout: the client's")
    parser.add_argument("--rounds", type=int, default=30, help="fanout: measured rounds")
    parser.add_argument("--warmup-rounds", type=int, default=3, help="fanout: rounds before the measured ones")
    parser.add_argument("--gap", type=float, default=0.05, help="fanout: seconds between rounds")
    parser.add_argument(
        "--deflate", choices=("", "expect", "refuse"), default="",
        help="offer permessage-deflate on every connection; expect: error without it; refuse: error with it",
    )  # fmt: skip
    parser.add_argument(
        "--message", choices=("filler", "json"), default="filler",
        help="idle, fanout: 'x' filler (the default) or --size-byte JSON documents (bench/deflate.py)",
    )  # fmt: skip
    parser.add_argument("--messages", type=int, default=256, help="compressed: distinct JSON messages, in a cycle")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.workload].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    raise_fd_limit(args.connections + 500)
    Client.deflate_mode = args.deflate
    if args.workload == "compressed":
        args.message = "json"
    try:
        result = uvloop.run(WORKLOADS[args.workload](args))
    except SystemExit as e:
        # A workload that stops early says why as a JSON report: on stdout too,
        # so that the runner keeps its details (the negotiation, the errors).
        if not (isinstance(e.code, str) and e.code.startswith("{")):
            raise
        failed = json.loads(e.code)
        failed["workload"] = args.workload
        sys.stdout.write(report(failed) + "\n")
        raise SystemExit(1) from None
    result["workload"] = args.workload
    if args.deflate:
        result["inflates"] = deflate.counts["inflated"]
        result["inflates_shared"] = deflate.counts["shared"]
    sys.stdout.write(report(result) + "\n")


if __name__ == "__main__":
    main()
