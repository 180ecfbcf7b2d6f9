"""The 0.2 routing patterns of tests/compat/apps/routing_*.py, each served on
every serving path of 0.2 apps (``run``, ``gunicorn -k flask_sockets.worker``,
the pywsgi snippet: see conftest.py) and talked to with a real client: what
each URL answers, over HTTP and WebSocket, and no traceback in the log."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

#: module -> [(path, message to send or None, expected reply)]: WebSocket checks.
SOCKETS: dict[str, list[tuple[str, str | None, str]]] = {
    "routing_same_name": [("/echo", "hi", "echo:hi"), ("/ws", "hi", "ws:hi")],
    "routing_view_and_socket_names": [
        ("/chat/socket", None, "the chat socket"),
        ("/feed/socket", None, "the feed socket"),
    ],
    "routing_decorated_twice": [("/echo", "hi", "hi"), ("/ws", "hi", "hi")],
    "routing_url_map_add": [("/echo", "hi", "hi"), ("/media/7", None, "media 7")],
    "routing_converters": [("/room/lobby", None, "room lobby")],
    "routing_route_options": [("/echo", "hi", "hi"), ("/ping", None, "pong")],
    "routing_blueprint_both": [("/chat/socket", "hi", "chat:hi"), ("/live/socket", None, "live")],
}

#: module -> [(path, expected status, expected body)]: plain HTTP checks.
PAGES: dict[str, list[tuple[str, int, bytes]]] = {
    "routing_same_name": [("/", 200, b"Hello World!")],
    "routing_view_and_socket_names": [("/chat", 200, b"the chat page"), ("/feed", 200, b"the feed page")],
    "routing_decorated_twice": [("/echo", 426, b"")],
    "routing_url_map_add": [("/", 200, b"Hello World!")],
    "routing_converters": [("/room/lobby", 200, b"the page of room lobby"), ("/room/42", 404, b"")],
    "routing_route_options": [("/ping", 426, b"")],
    "routing_blueprint_both": [("/chat/", 200, b"the chat page"), ("/live/", 200, b"the live page")],
}


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("name", sorted(SOCKETS))
def test_routing_app(served, path, name):
    process = served(name, path)
    server = process.server
    for path, message, expected in SOCKETS[name]:
        with connect(f"{server.ws_url}{path}", open_timeout=5) as ws:
            if message is not None:
                ws.send(message)
            assert ws.recv(timeout=5) == expected, path
    for path, status, body in PAGES[name]:
        got_status, got_body = http_get(f"{server.http_url}{path}")
        assert got_status == status, path
        if status == 200:
            assert got_body == body, path
    assert "Traceback" not in process.output()
