"""Prometheus metrics (flask_sockets.metrics) scraped from a real two-worker
gunicorn in multiprocess mode: the sums across workers are exact."""

from __future__ import annotations

import collections
import contextlib
import socket
import textwrap
import time
import typing as t
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect

from tests.conftest import TIMEOUT
from tests.conftest import Process
from tests.conftest import wait_until
from tests.scrape import CountingSocket
from tests.scrape import scrape
from tests.scrape import value
from tests.scrape import wait_until_closed

pytest.importorskip("prometheus_client")

pytestmark = pytest.mark.slow

#: The app: each socket says which worker serves it, then echoes; ``close:CODE`` makes the server close.
APP_SOURCE = textwrap.dedent(
    """
    import os

    from flask import Flask
    from flask_sockets import Sockets
    from flask_sockets.metrics import metrics_view

    app = Flask(__name__)
    app.config["SOCKETS_METRICS"] = True
    sockets = Sockets(app)
    sockets.enable_metrics().flush_interval = 0.5  # (the workers' flushers: 5 s by default)
    app.add_url_rule("/metrics", view_func=metrics_view)


    @sockets.route("/work/<int:n>")
    def work(ws, n):
        ws.send(str(os.getpid()))
        while (message := ws.receive()) is not None:
            if message.startswith("close:"):
                ws.close(int(message[6:]), "bye")
                break
            ws.send(message)


    @sockets.route("/ping")
    def ping(ws):
        ws.ping_interval = 0.2
        ws.expire_in(None)  # (no session end: re-arms the socket's timer for the new interval)
        while (message := ws.receive()) is not None:
            ws.send(message)
    """
)

CONF_SOURCE = "from flask_sockets.metrics import child_exit  # noqa: F401\n"


@pytest.mark.parametrize("worker", ["flask_sockets.worker", "gthread"])
def test_metrics_sum_across_two_gunicorn_workers(
    gunicorn: t.Callable[..., Process], app_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker: str
) -> None:
    (app_dir / "metricsapp.py").write_text(APP_SOURCE)
    (app_dir / "gunicorn.conf.py").write_text(CONF_SOURCE)
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(prom_dir))  # inherited by gunicorn (start_process)
    # gthread: a socket holds a thread; leave some for the scrapes (16 sockets at most).
    threads = ("--threads", "20") if worker == "gthread" else ()
    server = gunicorn("-c", str(app_dir / "gunicorn.conf.py"), *threads, worker=worker, workers=2, app="metricsapp:app")
    url = server.server.http_url
    ws_url = server.server.ws_url
    route = "/work/<int:n>"

    # Open sockets until each worker serves 4 (one worker may start, or
    # accept, first): a socket of a worker that has 4 already is closed at
    # once and counted as such (bounded: 200 connections, TIMEOUT seconds).
    # Each client counts the bytes it sends and receives after its handshake.
    sockets: list[ClientConnection] = []
    counted: list[CountingSocket] = []

    def client_bytes() -> tuple[int, int]:
        """What the clients sent and received after their handshakes: the server's wire bytes in and out."""
        return sum(sock.sent for sock in counted), sum(sock.received for sock in counted)

    def wire_bytes() -> tuple[float, float]:
        samples = scrape(url)
        return tuple(  # type: ignore[return-value]
            value(samples, "flask_sockets_wire_bytes_total", route=route, direction=d) for d in ("in", "out")
        )

    per_pid: collections.Counter[str] = collections.Counter()
    extra = 0
    deadline = time.monotonic() + TIMEOUT
    with contextlib.ExitStack() as stack:
        for n in range(200):
            if (len(per_pid) == 2 and min(per_pid.values()) >= 4) or time.monotonic() > deadline:
                break
            sock = CountingSocket.connect_to(server.server.host, server.server.port, TIMEOUT)
            ws = connect(f"{ws_url}/work/{n}", sock=sock, open_timeout=TIMEOUT, close_timeout=TIMEOUT).__enter__()
            counted.append(sock)
            pid = t.cast(str, ws.recv(timeout=TIMEOUT))
            if per_pid[pid] >= 4:
                ws.close(1000)
                extra += 1
                continue
            per_pid[pid] += 1
            sockets.append(ws)
            stack.callback(ws.close)
        assert len(per_pid) == 2, f"one worker served all {len(sockets) + extra} sockets"
        opened = len(sockets)
        wait_until(lambda: value(scrape(url), "flask_sockets_open_sockets", route=route) == opened)

        samples = scrape(url)
        assert value(samples, "flask_sockets_open_sockets", route=route) == opened
        assert value(samples, "flask_sockets_handshakes_total", route=route, status="101") == opened + extra

        # 3 messages each, echoed.
        for ws in sockets:
            for i in range(3):
                ws.send(f"m{i}")
            for i in range(3):
                assert ws.recv(timeout=TIMEOUT) == f"m{i}"
        # Counted while the sockets are open, on both workers: the one that
        # answers the scrape at once, the other by its flusher, which runs
        # every 0.5 s (one scrape after four times that: a scrape only
        # flushes the worker that answers it).
        time.sleep(2.0)
        samples = scrape(url)
        assert value(samples, "flask_sockets_messages_total", route=route, direction="in") == 3 * opened
        wire_in, wire_out = client_bytes()
        assert value(samples, "flask_sockets_wire_bytes_total", route=route, direction="in") == wire_in
        assert value(samples, "flask_sockets_wire_bytes_total", route=route, direction="out") == wire_out
        # Half closed by the clients (1000), half by the server (4001).
        client_closed = sockets[: opened // 2]
        server_closed = sockets[opened // 2 :]
        for ws in client_closed:
            ws.close(1000)
        for ws in server_closed:
            ws.send("close:4001")
            with pytest.raises(ConnectionClosed) as excinfo:
                ws.recv(timeout=TIMEOUT)
            assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 4001

    # A refused origin: 403, counted as a refused handshake.
    with pytest.raises(InvalidStatus) as excinfo, connect(
        f"{ws_url}/work/0", origin="http://evil.example", open_timeout=TIMEOUT  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover
    assert excinfo.value.response.status_code == 403

    # Silent sockets are pinged: the pongs' round-trip times are counted (at a flush, or their close).
    pinged = [connect(f"{ws_url}/ping", open_timeout=TIMEOUT).__enter__() for _ in range(4)]
    time.sleep(0.5)
    for ws in pinged:
        ws.send("back")
        assert ws.recv(timeout=TIMEOUT) == "back"
        ws.close()
    # Refused by the gevent handler before the app (worker flask_sockets.worker only: gthread is gunicorn's HTTP).
    refused = 4 if worker == "flask_sockets.worker" else 0
    for _ in range(refused):
        with socket.create_connection((server.server.host, server.server.port), timeout=TIMEOUT) as sock:
            sock.sendall(
                b"GET /work/0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 426 ")

    samples = wait_until_closed(url, route, "/ping")
    n_client, n_server = len(client_closed) + extra, len(server_closed)
    assert value(samples, "flask_sockets_handshakes_total", route=route, status="403") == 1
    assert value(samples, "flask_sockets_messages_total", route=route, direction="in") == opened * 3 + n_server
    assert value(samples, "flask_sockets_messages_total", route=route, direction="out") == opened * 4 + extra
    # Payload bytes: "m0".."m2" (2 bytes) and "close:4001" (10) in; the pid and the echoes out.
    bytes_in = value(samples, "flask_sockets_payload_bytes_total", route=route, direction="in")
    assert bytes_in == opened * 6 + n_server * 10
    # Wire bytes (frames, compressed with permessage-deflate, and the close frames): what the clients saw.
    assert wire_bytes() == client_bytes()
    assert value(samples, "flask_sockets_closes_total", route=route, code="1000", side="client") == n_client
    assert value(samples, "flask_sockets_closes_total", route=route, code="4001", side="server") == n_server
    assert value(samples, "flask_sockets_socket_duration_seconds_count", route=route) == opened + extra
    # Each flush observes a socket's latest round trip since the last: with the flusher's 0.5 s, a socket
    # pinged twice in its 0.5 s of silence (every 0.2 s) may count both.
    assert len(pinged) <= value(samples, "flask_sockets_ping_rtt_seconds_count", route="/ping") <= 3 * len(pinged)
    assert 0 < value(samples, "flask_sockets_ping_rtt_seconds_sum", route="/ping") < len(pinged) * TIMEOUT
    assert value(samples, "flask_sockets_handshakes_total", route="unrouted", status="426") == refused
    # Both workers wrote values: the sums above are across processes.
    assert len({p.name.rsplit("_", 1)[-1] for p in prom_dir.glob("counter_*.db")}) >= 2
