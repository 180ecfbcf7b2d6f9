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
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import sys
import time
import typing as t
from time import perf_counter_ns

import psutil
import uvloop
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

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(message)


class EchoClient(WSListener):  # type: ignore[misc]
    """Sends a message, waits for the whole echo, repeats while the run lasts."""

    def __init__(self, run: Run, payload: bytes, msg_type: WSMsgType, loop_forever: bool) -> None:
        self.run = run
        self.payload = payload
        self.size = len(payload)
        self.msg_type = msg_type
        self.loop_forever = loop_forever
        self.transport: WSTransport | None = None
        self.received = 0
        self.sent_at = 0
        self.checked = False
        self.parts: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.closing = False
        self.disconnected = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

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


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1e6  # ms


async def connect(url: str, listener_factory: object, limit: asyncio.Semaphore | None = None) -> WSTransport:
    async def go() -> WSTransport:
        transport, _ = await asyncio.wait_for(
            ws_connect(listener_factory, url, max_frame_size=MAX_FRAME, websocket_handshake_timeout=TIMEOUT),
            TIMEOUT,
        )
        return transport

    if limit is None:
        return await go()
    async with limit:
        return await go()


async def open_clients(
    url: str, count: int, run: Run, payload: bytes, msg_type: WSMsgType, loop_forever: bool, concurrency: int
) -> list[EchoClient]:
    limit = asyncio.Semaphore(concurrency)
    clients = [EchoClient(run, payload, msg_type, loop_forever) for _ in range(count)]
    results = await asyncio.gather(*(connect(url, lambda *_, c=c: c, limit) for c in clients), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    for r in failed[:5]:
        run.error(f"connect: {r!r}")
    if failed:
        raise SystemExit(report({"error": f"{len(failed)} of {count} connections failed", "errors": run.errors}))
    return clients


async def close_all(clients: list[EchoClient], concurrency: int = 500) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def one(client: EchoClient) -> None:
        async with limit:
            await client.close()

    await asyncio.gather(*(one(c) for c in clients), return_exceptions=True)


# -- workloads ---------------------------------------------------------------


async def echo_loop(args: argparse.Namespace, payload: bytes, msg_type: WSMsgType) -> dict[str, object]:
    run = Run()
    clients = await open_clients(args.url, args.connections, run, payload, msg_type, True, args.connections)
    window = Window(args.server_pid)
    waiters = [c.send() for c in clients]
    await asyncio.sleep(args.warmup)
    run.phase = MEASURE
    window.start()
    await asyncio.sleep(args.duration)
    run.phase = STOP
    usage = window.stop()
    count, total_bytes = len(run.latencies), run.bytes
    done, pending = await asyncio.wait(waiters, timeout=TIMEOUT)
    stuck = len(pending) + sum(1 for w in done if w.exception() is not None)
    if stuck:
        run.error(f"{stuck} connections did not finish their last round trip")
    await close_all(clients)
    latencies = sorted(run.latencies)
    return {
        "connections": args.connections,
        "message_bytes": len(payload),
        "round_trips": count,
        "round_trips_per_s": count / window.elapsed,
        "mb_per_s": total_bytes / window.elapsed / 1e6,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        **usage,
        "errors": run.errors,
        "unexpected_closes": run.unexpected_closes,
    }


async def small(args: argparse.Namespace) -> dict[str, object]:
    return await echo_loop(args, b"x" * args.size, WSMsgType.TEXT)


async def large(args: argparse.Namespace) -> dict[str, object]:
    payload = os.urandom(args.size)
    return await echo_loop(args, payload, WSMsgType.BINARY)


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
    # Warm the server up with one connection, so lazy imports and first-use
    # allocations don't count as connection memory.
    (warm,) = await open_clients(args.url, 1, run, payload, WSMsgType.TEXT, False, 1)
    await asyncio.wait_for(warm.send(), TIMEOUT)
    await warm.close()
    await asyncio.sleep(1.0)
    server = process_tree(args.server_pid)
    before = rss_bytes(server)
    started = time.perf_counter()
    clients = await asyncio.wait_for(
        open_clients(args.url, args.connections, run, payload, WSMsgType.TEXT, False, args.concurrency),
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
    return {
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


WORKLOADS = {"small": small, "large": large, "handshake": handshake, "idle": idle}
DEFAULTS = {
    "small": {"connections": 50, "size": 32},
    "large": {"connections": 4, "size": 1024 * 1024},
    "handshake": {"connections": 20, "size": 0},
    "idle": {"connections": 5000, "size": 32},
}


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(needed, hard)))
    except (ValueError, OSError):  # raising the hard limit needs privileges
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
    parser.add_argument("--open-timeout", type=float, default=180.0, help="idle: seconds to open them all")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.workload].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    raise_fd_limit(args.connections + 500)
    result = uvloop.run(WORKLOADS[args.workload](args))
    result["workload"] = args.workload
    sys.stdout.write(report(result) + "\n")


if __name__ == "__main__":
    main()
