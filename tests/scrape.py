"""Scraping a real server's ``/metrics`` in tests (flask_sockets.metrics):
the Prometheus text format read with prometheus_client's own parser, and
a socket that counts the bytes a ``websockets`` client really sent and
received, to hold the server's ``flask_sockets_wire_bytes_total`` against."""

from __future__ import annotations

import socket
import typing as t

from tests.conftest import wait_until
from tests.gunicorn.conftest import http_get

#: The samples of a scrape, by ``(name, sorted labels)``.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """The samples of ``url``/metrics (prometheus_client must be installed)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(url + "/metrics")
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (0 if absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until_closed(url: str, *routes: str) -> Samples:
    """Wait until no socket of ``routes`` is open; the scrape that showed it."""
    last: list[Samples] = []

    def closed() -> bool:
        last[:] = [scrape(url)]
        return sum(value(last[0], "flask_sockets_open_sockets", route=route) for route in routes) == 0

    wait_until(closed)
    return last[0]


class CountingSocket(socket.socket):
    """A TCP socket that counts the WebSocket bytes it sent (``sendall``,
    ``send``) and received (``recv``): what follows the HTTP heads of the
    handshake. Hand it to ``websockets.sync.client.connect(..., sock=...)``."""

    def __init__(self, *args: t.Any) -> None:
        super().__init__(*args)
        #: WebSocket bytes sent and received (frames, after the handshake).
        self.sent = self.received = 0
        # The heads (request, response) while they are not over.
        self._heads: dict[str, bytes | None] = {"sent": b"", "received": b""}

    @classmethod
    def connect_to(cls, host: str, port: int, timeout: float) -> CountingSocket:
        with socket.create_connection((host, port), timeout=timeout) as plain:
            sock = cls(plain.family, plain.type, plain.proto, plain.detach())
        sock.settimeout(None)
        return sock

    def _count(self, way: str, data: bytes) -> None:
        head = self._heads[way]
        if head is not None:
            head += data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self._heads[way] = head
                return
            self._heads[way] = None
            data = head[end + 4 :]
        setattr(self, way, getattr(self, way) + len(data))

    def sendall(self, data: t.Any, *args: t.Any) -> None:
        super().sendall(data, *args)
        self._count("sent", bytes(data))

    def send(self, data: t.Any, *args: t.Any) -> int:
        n = super().send(data, *args)
        self._count("sent", bytes(memoryview(data)[:n]))
        return n

    def recv(self, size: int, *args: t.Any) -> bytes:
        data = super().recv(size, *args)
        self._count("received", data)
        return data
