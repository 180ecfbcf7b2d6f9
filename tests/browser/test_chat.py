"""The chat example (examples/chat) in real browsers: two headless Chromium
pages pick names, join one room, see each other in its presence list and
chat, on one process and on two gunicorn workers (one page on each) fanned
out through Redis. Chromium offers permessage-deflate, and the chat's
sockets must have negotiated it (seen in the browser's own DevTools log),
with every message still going through."""

from __future__ import annotations

import contextlib
import re
import sys
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.devtools import HandshakeLog
from tests.conftest import EXAMPLES
from tests.conftest import Process
from tests.conftest import free_port
from tests.integration.gunicorn import gunicorn_argv
from tests.redisserver import RedisServer

pytestmark = pytest.mark.slow

CHAT = EXAMPLES / "chat"
#: Seconds a page may take to show what the test waits for.
WAIT = 15
#: How often a page may reconnect to land on the other gunicorn worker.
RECONNECTS = 20


def serve_chat(kind: str, spawn: t.Callable[..., Process], request: pytest.FixtureRequest) -> Process:
    port = free_port()
    if kind == "one process":
        return spawn([sys.executable, str(CHAT / "app.py"), "--port", str(port)], port=port)
    redis: RedisServer = request.getfixturevalue("redis_server")
    argv = gunicorn_argv(port, "app:app", workers=2, chdir=CHAT)
    env = {"SOCKETS_MESSAGE_QUEUE": redis.url, "GUNICORN_CMD_ARGS": "", "PYTHONDONTWRITEBYTECODE": "1"}
    return spawn(argv, port=port, cwd=CHAT, env=env)


def enter_room(driver: t.Any, base: str, name: str, room: str) -> None:
    """As a person would: open the site, type a name, then a room."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "save-name").click()
    room_input = WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "room"))
    room_input.clear()
    room_input.send_keys(room)
    driver.find_element(By.ID, "join").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "status").text == "connected")


def assert_compressed(driver: t.Any, base: str) -> None:
    """The page's socket to the chat server negotiated permessage-deflate, as
    Chromium's DevTools Network events show the 101's response headers."""
    host = urlsplit(base).netloc
    seen = HandshakeLog(driver).read()
    handshakes = [h for h in seen if urlsplit(h.url).netloc == host]
    assert handshakes, f"Chromium logged no WebSocket handshake to {host}: {seen}"
    for handshake in handshakes:
        assert handshake.status == 101, handshake
        assert handshake.permessage_deflate, (
            f"{handshake.url}: the 101 has no permessage-deflate, "
            f"Sec-WebSocket-Extensions: {handshake.headers.get('sec-websocket-extensions')!r}"
        )


def served_by(driver: t.Any) -> int:
    """The pid of the process serving the page's socket, as the page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    text = WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "served-by").text)
    match = re.fullmatch(r"Served by process (\d+)\.", text)
    assert match, text
    return int(match.group(1))


def members(driver: t.Any) -> list[str]:
    """The names in the page's list of who is there, read at once (the page
    replaces the items at each presence message: items found first and read
    after could be gone)."""
    script = "return [...document.querySelectorAll('#members li')].map((item) => item.innerText)"
    return t.cast("list[str]", driver.execute_script(script))


def messages(driver: t.Any) -> str:
    from selenium.webdriver.common.by import By

    return t.cast(str, driver.find_element(By.ID, "messages").text)


@pytest.mark.parametrize("kind", ["one process", "two gunicorn workers and Redis"])
def test_two_people_chat_in_one_room(
    kind: str,
    spawn: t.Callable[..., Process],
    browser: t.Callable[[], t.Any],  # after spawn: the browsers quit before the server stops
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    server = serve_chat(kind, spawn, request)
    alice, bob = browser(), browser()
    enter_room(alice, server.server.http_url, "Alice", "tea")
    enter_room(bob, server.server.http_url, "Bob", "tea")
    if kind == "one process":
        assert served_by(alice) == served_by(bob) == server.popen.pid
    else:
        # The workers share the listening socket: Bob reconnects (reloads)
        # until the other worker serves him.
        for _ in range(RECONNECTS):
            if served_by(bob) != served_by(alice):
                break
            bob.refresh()
            WebDriverWait(bob, WAIT).until(lambda d: d.find_element(By.ID, "status").text == "connected")
        assert served_by(bob) != served_by(alice), "gunicorn served every page from one worker"

    # Both sockets negotiated permessage-deflate; the chat below goes through them.
    assert_compressed(alice, server.server.http_url)
    assert_compressed(bob, server.server.http_url)

    # Each sees who is there, whichever worker serves them: presence.
    WebDriverWait(alice, WAIT).until(lambda d: members(d) == ["Alice (you)", "Bob"])
    WebDriverWait(bob, WAIT).until(lambda d: members(d) == ["Alice", "Bob (you)"])
    assert alice.find_element(By.ID, "member-count").text == "2"

    # A message typed in one page appears in the other.
    alice.find_element(By.ID, "text").send_keys("Hello Bob, milk or lemon?", Keys.ENTER)
    WebDriverWait(bob, WAIT).until(lambda d: "Alice: Hello Bob, milk or lemon?" in messages(d))
    bob.find_element(By.ID, "text").send_keys("Lemon, thanks!")
    bob.find_element(By.ID, "send").click()
    WebDriverWait(alice, WAIT).until(lambda d: "Bob: Lemon, thanks!" in messages(d))
    WebDriverWait(bob, WAIT).until(lambda d: "Bob: Lemon, thanks!" in messages(d))

    screenshot = tmp_path / f"chat-{kind.replace(' ', '-')}.png"
    assert bob.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 1000

    # Bob leaves the room: Alice sees it.
    left_before = messages(alice).count("Bob left.")  # his reconnections, if any
    bob.get(server.server.http_url + "/")
    WebDriverWait(alice, WAIT).until(lambda d: members(d) == ["Alice (you)"])
    assert messages(alice).count("Bob left.") == left_before + 1
    print(f"screenshot: {screenshot}")


class CuttingProxy:
    """A TCP proxy on a free loopback port in front of ``upstream``: the
    test cuts every connection through it (RST to both sides, as a network
    drop or a dying load balancer does) and refuses new ones for a while."""

    def __init__(self, upstream: int) -> None:
        import socket
        import threading

        self.upstream = upstream
        self.refusing = False
        self.pairs: list[tuple[t.Any, t.Any]] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                self._reset(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                self._reset(client)
                continue
            server.settimeout(None)
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: t.Any, target: t.Any) -> None:
        import socket

        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    @staticmethod
    def _reset(sock: t.Any) -> None:
        import socket
        import struct

        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv() on it
        with contextlib.suppress(OSError):
            sock.close()

    def cut(self) -> int:
        """Reset every connection through the proxy; how many."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for client, server in pairs:
            self._reset(server)
            self._reset(client)
        return len(pairs)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()


def test_a_page_cut_off_gets_what_it_missed_once(
    spawn: t.Callable[..., Process],
    browser: t.Callable[[], t.Any],  # after spawn: the browsers quit before the server stops
) -> None:
    """Bob's page reaches the chat through a proxy that cuts its connection
    and refuses it while Alice says five things; when it lets him back, his
    page resumes the room from its position (``recovered``) and shows each
    of them once, in order. A page opened later shows the room's last
    messages (its history) before the live ones."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    server = spawn([sys.executable, str(CHAT / "app.py"), "--port", str(port)], port=port)
    proxy = CuttingProxy(port)
    try:
        alice, bob = browser(), browser()
        enter_room(alice, server.server.http_url, "Alice", "tea")
        enter_room(bob, f"http://127.0.0.1:{proxy.port}", "Bob", "tea")
        WebDriverWait(alice, WAIT).until(lambda d: members(d) == ["Alice (you)", "Bob"])
        alice.find_element(By.ID, "text").send_keys("before", Keys.ENTER)
        WebDriverWait(bob, WAIT).until(lambda d: "Alice: before" in messages(d))
        bob.execute_script(
            "window.seen = [];"
            "for (const k of ['close', 'recovered', 'unrecovered'])"
            "  window.chat.client.on(k, (d) => window.seen.push([k, d.room ?? d.code]));"
        )

        proxy.refusing = True
        assert proxy.cut() >= 1
        WebDriverWait(bob, WAIT).until(lambda d: d.find_element(By.ID, "status").text == "reconnecting…")
        WebDriverWait(alice, WAIT).until(lambda d: members(d) == ["Alice (you)"])  # his socket left
        said = [f"while Bob was away {i}" for i in range(5)]
        for text in said:
            alice.find_element(By.ID, "text").send_keys(text, Keys.ENTER)
        WebDriverWait(alice, WAIT).until(lambda d: f"Alice: {said[-1]}" in messages(d))
        assert not any(text in messages(bob) for text in said)
        proxy.refusing = False

        WebDriverWait(bob, WAIT).until(lambda d: f"Alice: {said[-1]}" in messages(d))
        WebDriverWait(bob, WAIT).until(lambda d: d.find_element(By.ID, "status").text == "connected")
        shown = messages(bob)
        for text in ["before", *said]:
            assert shown.count(f"Alice: {text}") == 1, shown
        positions = [shown.index(f"Alice: {text}") for text in said]
        assert positions == sorted(positions), shown
        seen = bob.execute_script("return window.seen")
        assert ["recovered", "tea"] in seen and not [k for k, _ in seen if k == "unrecovered"], seen
        assert seen[0][0] == "close" and seen[0][1] == 1006, seen
        offsets = [offset for offset, _ in bob.execute_script("return window.chat.events")]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets
        assert "Some messages may be missing" not in shown
        WebDriverWait(alice, WAIT).until(lambda d: members(d) == ["Alice (you)", "Bob"])

        # Someone who comes now sees what was said (the room's history), then the live messages.
        carol = browser()
        enter_room(carol, server.server.http_url, "Carol", "tea")
        WebDriverWait(carol, WAIT).until(lambda d: f"Alice: {said[-1]}" in messages(d))
        history = messages(carol)
        assert all(history.count(f"Alice: {text}") == 1 for text in ["before", *said]), history
        bob.find_element(By.ID, "text").send_keys("back!", Keys.ENTER)
        WebDriverWait(carol, WAIT).until(lambda d: "Bob: back!" in messages(d))
        assert messages(carol).index("Bob: back!") > messages(carol).index(f"Alice: {said[-1]}")
    finally:
        proxy.close()
