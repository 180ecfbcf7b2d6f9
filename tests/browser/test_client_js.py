"""flask-sockets.js in a real browser against a real server: headless
Chromium loads the module the extension serves (as an ES module, which
Chromium only runs with a JavaScript content type), connects to a socket
route, subscribes, and after the server cuts the connection and refuses it a
while, reconnects and resubscribes from its position: it gets what it
missed, once, and later, when the server's history was lost, an
``unrecovered`` event.

The server is a tiny one written here with the core's public raw API (a
socket route, ``join``, ``publish``) that speaks the envelope's frames by
hand (docs/client.rst): a hello, the answer to a subscribe with a replay,
an echo of app messages. Its replay starts one message early on purpose, so
that the client's duplicate check at the seam is what keeps the list exact.
The acceptance test against the package's envelope routes, through Redis,
is tests/browser/test_reliable.py.
"""

from __future__ import annotations

import json
import threading
import typing as t

import pytest
from flask import Flask
from flask import url_for

from flask_sockets import Sockets
from tests.conftest import Server

pytestmark = pytest.mark.slow

#: Seconds the page may take to show what the test waits for.
WAIT = 15
ROOM = "news"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>flask-sockets.js</title>
<script type="module">
import { SocketClient } from "%(client_url)s";
const log = (window.log = []);
const got = (window.got = []);
const client = (window.client = new SocketClient("/feed", %(options)s));
for (const type of ["open", "close", "subscribed", "recovered", "unrecovered", "message", "error"]) {
  client.on(type, (detail) => log.push([type, type == "error" ? String(detail.reason ?? detail.event?.type) : detail]));
}
client.subscribe("news", (data, m) => got.push([data, m.offset, m.epoch]));
client.connect();
window.loaded = true;
</script>
"""


class Feed:
    """One room's history and the test's switches, shared by the socket
    handlers (in the server's thread) and the test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sockets: Sockets | None = None
        self.epoch = "e1"
        self.history: list[t.Any] = []  # the data of offsets 1, 2, ...
        self.subscribes: list[dict[str, t.Any]] = []  # the sub frames received, in order
        self.cuts = 0  # bumped: every open socket closes with 1012
        self.down = False  # while set, a new socket is closed at once with 1013
        self.refused = 0

    def frame(self, offset: int) -> str:
        data = self.history[offset - 1]
        return json.dumps({"t": "msg", "room": ROOM, "offset": offset, "epoch": self.epoch, "data": data})

    def publish(self, data: t.Any) -> None:
        """Store the message, then send it to the room's sockets."""
        assert self.sockets is not None
        with self.lock:
            self.history.append(data)
            self.sockets.publish(ROOM, self.frame(len(self.history)))

    def lose_history(self) -> None:
        """As if Redis had been flushed: a new epoch, from offset 0."""
        with self.lock:
            self.epoch = "e2"
            self.history = []

    def subscribe(self, ws: t.Any, frame: dict[str, t.Any]) -> None:
        """Answer a sub frame, replay what the client missed, join the room;
        no publish in between (the lock)."""
        assert self.sockets is not None
        with self.lock:
            self.subscribes.append(frame)
            last = len(self.history)
            offset = frame.get("offset")
            recovered = isinstance(offset, int) and frame.get("epoch") == self.epoch and 0 <= offset <= last
            reply = {"t": "sub", "room": ROOM, "recovered": recovered, "offset": last, "epoch": self.epoch}
            ws.send(json.dumps(reply))
            if recovered:
                # From one early: the client has `offset` already and must drop it.
                for n in range(max(offset, 1), last + 1):
                    ws.send(self.frame(n))
            self.sockets.join(ws, ROOM)


def make_app(feed: Feed, options: str = "{ backoff: { min: 50, max: 300 } }") -> Flask:
    app = Flask(__name__)
    feed.sockets = sockets = Sockets(app)

    @app.route("/")
    def page() -> str:
        return PAGE % {"client_url": url_for("sockets_client"), "options": options}

    @sockets.route("/feed")
    def feed_socket(ws: t.Any) -> None:
        if feed.down:
            feed.refused += 1
            ws.close(1013, "try again later")
            return
        cuts = feed.cuts
        ws.send(json.dumps({"t": "hello", "ping": 25}))
        while feed.cuts == cuts:
            try:
                message = ws.receive(timeout=0.05)
            except TimeoutError:
                continue
            if message is None:
                return
            frame = json.loads(message)
            if frame["t"] == "sub":
                feed.subscribe(ws, frame)
            elif frame["t"] == "msg":
                ws.send(json.dumps({"t": "msg", "data": {"echo": frame["data"]}}))
        ws.close(1012, "cut by the test")

    return app


def page_state(driver: t.Any) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", driver.execute_script("return {log: window.log || [], got: window.got || []}"))


def events(driver: t.Any, kind: str) -> list[t.Any]:
    return [detail for k, detail in page_state(driver)["log"] if k == kind]


def test_the_client_resumes_after_the_server_cuts_it(
    serve: t.Callable[..., Server],
    browser: t.Callable[[], t.Any],  # after serve: the browser quits before the server stops
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    feed = Feed()
    server = serve(make_app(feed))
    driver = browser()
    wait = WebDriverWait(driver, WAIT)
    driver.get(server.http_url + "/")

    # The module loaded (a module script with a wrong content type does not run), left no global, subscribed.
    wait.until(lambda d: d.execute_script("return window.loaded === true"))
    assert driver.execute_script("return typeof window.SocketClient") == "undefined"
    wait.until(lambda d: events(d, "subscribed"))
    assert events(driver, "subscribed") == [{"room": ROOM, "recovered": False, "offset": 0, "epoch": "e1"}]
    assert feed.subscribes == [{"t": "sub", "room": ROOM}]

    # Live messages, and an app message echoed.
    feed.publish("m1")
    feed.publish({"n": 2})
    wait.until(lambda d: len(page_state(d)["got"]) == 2)
    driver.execute_script("window.client.send('hello')")
    wait.until(lambda d: events(d, "message"))
    assert events(driver, "message") == [{"data": {"echo": "hello"}}]

    # The server cuts the connection and refuses new ones for a while;
    # what is published meanwhile is only in its history.
    feed.down = True
    feed.cuts += 1
    wait.until(lambda d: feed.refused >= 2)
    feed.publish("m3")
    feed.publish("m4")
    feed.down = False
    wait.until(lambda d: events(d, "recovered"))
    closes = events(driver, "close")
    assert closes[0]["code"] == 1012 and closes[0]["reason"] == "cut by the test"
    assert {close["code"] for close in closes[1:]} == {1013}, closes
    assert all(close["willRetry"] for close in closes)
    assert feed.subscribes[-1] == {"t": "sub", "room": ROOM, "offset": 2, "epoch": "e1"}
    assert events(driver, "recovered") == [{"room": ROOM, "recovered": True, "offset": 4, "epoch": "e1"}]
    feed.publish("m5")
    wait.until(lambda d: len(page_state(d)["got"]) >= 5)
    # Everything, in order, once: the replayed copy of m2 was dropped.
    assert page_state(driver)["got"] == [
        ["m1", 1, "e1"],
        [{"n": 2}, 2, "e1"],
        ["m3", 3, "e1"],
        ["m4", 4, "e1"],
        ["m5", 5, "e1"],
    ]

    # The history is lost (a new epoch): the client is told, and takes the new numbering.
    feed.lose_history()
    feed.cuts += 1
    wait.until(lambda d: events(d, "unrecovered"))
    assert feed.subscribes[-1] == {"t": "sub", "room": ROOM, "offset": 5, "epoch": "e1"}
    assert events(driver, "unrecovered") == [{"room": ROOM, "recovered": False, "offset": 0, "epoch": "e2"}]
    feed.publish("n1")
    wait.until(lambda d: len(page_state(d)["got"]) == 6)
    assert page_state(driver)["got"][-1] == ["n1", 1, "e2"]
    # Refused sockets were accepted first (then closed with 1013): one open each.
    assert [kind for kind, _ in page_state(driver)["log"]].count("open") == 3 + feed.refused
    assert not events(driver, "error")


def test_back_online_the_client_reconnects_at_once(
    serve: t.Callable[..., Server],
    browser: t.Callable[[], t.Any],
) -> None:
    """In a real page: waiting a minute to retry (a long backoff), the
    client retries within its short window when the window says the browser
    is back online; after close() it listens no more."""
    from selenium.webdriver.support.ui import WebDriverWait

    feed = Feed()
    server = serve(make_app(feed, "{ backoff: { min: 250, max: 60000 } }"))
    driver = browser()
    wait = WebDriverWait(driver, WAIT)
    driver.get(server.http_url + "/")
    wait.until(lambda d: events(d, "subscribed"))
    # As after a long outage: the next delay is 0.99 * 60 s; the window's 0.99 * 1 s.
    driver.execute_script("Math.random = () => 0.99; window.client.attempt = 12")
    feed.cuts += 1
    wait.until(lambda d: events(d, "close"))
    assert events(driver, "close")[0]["delay"] == pytest.approx(0.99 * 60000)
    assert driver.execute_script("return window.client.state") == "waiting"
    driver.execute_script("window.dispatchEvent(new Event('online'))")
    wait.until(lambda d: len(events(d, "subscribed")) == 2)
    assert len(events(driver, "open")) == 2
    # Closed: the listeners are gone.
    driver.execute_script("window.client.close(); window.dispatchEvent(new Event('online'))")
    driver.execute_script("document.dispatchEvent(new Event('visibilitychange'))")
    assert driver.execute_script("return window.client.state") == "closed"
    assert len(events(driver, "open")) == 2
