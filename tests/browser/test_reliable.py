"""The acceptance test of reliable rooms (issue 21), in headless Chromium
against a real server and a real Redis, and again on a real Redis Cluster.

Eight clients of flask-sockets.js (eight :class:`SocketClient`, each with
its own WebSocket, in two pages) subscribe to a room with history; a
publisher in the test's process (another process than the server's, so
every message goes through Redis) sends 50 messages a second for 30
seconds, while every 2 seconds the server cuts a random client's
connection, by turns dropping the TCP connection without a close frame
(the browser sees 1006, as after a network drop) and closing it with 1012
(a restart). Every client ends with every message, in order, once: the
data and the offsets are checked.

Then a ninth client, the probe, is cut while the server refuses it a while
(1013), and reconnects to find its position trimmed away (a room keeping 5
messages), expired (a room keeping its messages 1 second), and lost
(FLUSHALL): it gets ``unrecovered`` for exactly those rooms, ``recovered``
for the others.

The same run with history off shows what history prevents: the loss is
printed (``-s``), not asserted.

The server is one gevent process (tests/browser/reliable_app.py); the
publisher is another process (this one), so the fan-out goes through Redis
as it would between workers; a cut endpoint of the server needs the
socket in the same process, which rules out gunicorn's several workers.
"""

from __future__ import annotations

import itertools
import random
import sys
import threading
import time
import typing as t
import urllib.request

import pytest

from flask_sockets.envelope import publish
from flask_sockets.rooms import Rooms
from tests.conftest import Process
from tests.conftest import free_port
from tests.redisserver import RedisClusterServer
from tests.redisserver import RedisServer
from tests.redisserver import command

pytestmark = pytest.mark.slow

#: Clients in each page, and pages.
PER_PAGE, PAGES = 4, 2
#: Messages a second, and seconds.
RATE, SECONDS = 50, 30
TOTAL = RATE * SECONDS
#: Seconds between cuts.
CUT_EVERY = 2.0
#: Seconds the clients may take to catch up after the last message, and to
#: show an event.
WAIT = 30
HISTORY_SIZE = 2000


class Run:
    """The server, the pages, the publisher and the cuts of one run."""

    def __init__(self, redis_url: str, history_size: int, spawn: t.Callable[..., Process], tag: str) -> None:
        from tests.browser.reliable_app import make_app

        port = free_port()
        env = {"REDIS_URL": redis_url, "HISTORY_SIZE": str(history_size), "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = spawn([sys.executable, "-m", "tests.browser.reliable_app", str(port)], port=port, env=env)
        self.base = self.process.server.http_url
        self.app, self.sockets = make_app(redis_url, history_size)
        suffix = f"{tag}-{random.randrange(1 << 30):x}"
        self.feed, self.small, self.short = f"feed-{suffix}", f"small-{suffix}", f"short-{suffix}"
        self.ids = [f"c{i}" for i in range(PER_PAGE * PAGES)]
        self.drivers: list[t.Any] = []
        self.cuts: list[str] = []

    def post(self, path: str) -> str:
        request = urllib.request.Request(self.base + path, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return t.cast(str, response.read().decode())
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}"

    def open_page(self, driver: t.Any, ids: list[str], rooms: list[str]) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(f"{self.base}/?ids={','.join(ids)}&rooms={','.join(rooms)}")
        WebDriverWait(driver, WAIT).until(lambda d: d.execute_script("return window.loaded === true"))
        self.drivers.append(driver)

    def wait(self, driver: t.Any, script: str, timeout: float = WAIT) -> t.Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(script))

    def publish_all(self) -> float:
        """``TOTAL`` messages to the feed at ``RATE`` a second, in this
        thread; cuts one client every ``CUT_EVERY`` seconds from another.
        The seconds it took."""
        stop = threading.Event()
        hows = itertools.cycle(["abort", "1012"])

        def cutter() -> None:
            while not stop.wait(CUT_EVERY):
                how = next(hows)
                self.cuts.append(f"{self.post(f'/cut?how={how}')}:{how}")

        thread = threading.Thread(target=cutter, daemon=True)
        started = time.monotonic()
        thread.start()
        try:
            for n in range(TOTAL):
                late = started + n / RATE - time.monotonic()
                if late > 0:
                    time.sleep(late)
                publish(self.feed, {"n": n}, app=self.app)
        finally:
            stop.set()
            thread.join(10)
        return time.monotonic() - started

    def each_client(self, expression: str) -> dict[str, t.Any]:
        """``expression`` (JavaScript, of ``r``: a client's record in
        ``window.clients``) for each client of every page, by id."""
        found: dict[str, t.Any] = {}
        for driver in self.drivers:
            entries = f"Object.entries(window.clients).map(([id, r]) => [id, {expression}])"
            found.update(driver.execute_script(f"return Object.fromEntries({entries})"))
        return found

    def got(self, room: str) -> dict[str, list[list[t.Any]]]:
        """What each client got in ``room``: [offset, epoch, n] each."""
        return self.each_client(f"r.got[{room!r}] || []")

    def counts(self) -> dict[str, int]:
        return self.each_client(f"(r.got[{self.feed!r}] || []).length")

    def stats(self) -> dict[str, t.Any]:
        """Each client's opens, recovered and unrecovered events, and the codes of its closes."""
        count = "r.events.filter(([k]) => k == '%s').length"
        return self.each_client(
            f"({{opens: r.opens, recovered: {count % 'recovered'}, unrecovered: {count % 'unrecovered'},"
            " closes: r.events.filter(([k]) => k == 'close').map(([, d]) => d.code)})"
        )

    def close(self) -> None:
        Rooms.of(self.app).close()


def run_feed(run: Run, browser: t.Callable[[], t.Any]) -> tuple[dict[str, list[list[t.Any]]], dict[str, t.Any]]:
    """The 30 s run: the clients subscribe, the feed is published under
    cuts, the clients catch up (or stop getting more); what each got."""
    for page in range(PAGES):
        run.open_page(browser(), run.ids[page * PER_PAGE : (page + 1) * PER_PAGE], [run.feed])
    subscribed = "return Object.values(window.clients).every((r) => r.events.some(([k]) => k == 'subscribed'))"
    for driver in run.drivers:
        run.wait(driver, subscribed)
    took = run.publish_all()
    # Until every client has everything, or nobody got anything new for 5 s.
    deadline, last, still = time.monotonic() + WAIT, None, time.monotonic()
    while time.monotonic() < deadline:
        counts = run.counts()
        if all(n >= TOTAL for n in counts.values()):
            break
        if counts != last:
            last, still = counts, time.monotonic()
        elif time.monotonic() - still > 5:
            break
        time.sleep(0.2)
    print(f"\n{run.feed}: {TOTAL} messages published in {took:.1f} s, cuts: {run.cuts}")
    return run.got(run.feed), run.stats()


@pytest.fixture
def redis_cluster_flushed(redis_cluster: RedisClusterServer) -> RedisClusterServer:
    for port in redis_cluster.master_ports():
        command(port, "FLUSHALL")
    return redis_cluster


def flushall(redis: RedisServer | RedisClusterServer) -> None:
    if isinstance(redis, RedisClusterServer):
        for port in redis.master_ports():
            command(port, "FLUSHALL")
    else:
        command(redis.port, "FLUSHALL")


@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_every_client_gets_every_message_under_cuts(
    backend: str,
    spawn: t.Callable[..., Process],
    browser: t.Callable[[], t.Any],  # after spawn: the browsers quit before the server stops
    request: pytest.FixtureRequest,
) -> None:
    redis: RedisServer | RedisClusterServer = request.getfixturevalue(
        "redis_server" if backend == "redis" else "redis_cluster_flushed"
    )
    run = Run(redis.url, HISTORY_SIZE, spawn, backend)
    try:
        got, stats = run_feed(run, browser)
        print(f"clients: {stats}")
        assert len(run.cuts) >= SECONDS / CUT_EVERY - 2, run.cuts
        assert not [c for c in run.cuts if c.startswith("HTTP")], run.cuts
        for client, messages in got.items():
            numbers = [n for _, _, n in messages]
            missing = sorted(set(range(TOTAL)) - set(numbers))
            assert numbers == list(range(TOTAL)), f"{client}: {len(numbers)} messages, missing {missing[:20]}"
            offsets = [offset for offset, _, _ in messages]
            assert offsets == list(range(offsets[0], offsets[0] + TOTAL)), f"{client}: offsets not consecutive"
            assert len({epoch for _, epoch, _ in messages}) == 1, f"{client}: more than one epoch"
        # The cuts happened and were recovered from: every client that was cut resumed with recovered=true.
        assert sum(s["opens"] - 1 for s in stats.values()) >= len(run.cuts)
        assert sum(s["recovered"] for s in stats.values()) >= len(run.cuts)
        assert not any(s["unrecovered"] for s in stats.values()), stats
        codes = {code for s in stats.values() for code in s["closes"]}
        assert {1006, 1012} <= codes, codes

        # The probe: unrecovered exactly when its position cannot be honoured.
        probe(run, browser(), redis)
    finally:
        run.close()


def probe(run: Run, driver: t.Any, redis: RedisServer | RedisClusterServer) -> None:
    rooms = [run.feed, run.small, run.short]
    run.open_page(driver, ["probe"], rooms)
    run.wait(driver, "return window.clients.probe.events.filter(([k]) => k == 'subscribed').length == 3")
    for room in rooms:
        publish(room, {"n": 0}, app=run.app)
    run.wait(driver, "return Object.values(window.clients.probe.got).every((g) => g.length == 1)")

    def away(while_away: t.Callable[[], None]) -> dict[str, str]:
        """Cut the probe, refuse it while ``while_away()`` runs, let it
        back: how each room resumed."""
        before = driver.execute_script("return window.clients.probe.events.length")
        assert run.post("/hold?on=1") == "True"
        assert run.post("/cut?id=probe&how=abort") == "probe"
        while_away()
        assert run.post("/hold?on=0") == "False"
        script = (
            f"const e = window.clients.probe.events.slice({before})"
            ".filter(([k]) => k == 'recovered' || k == 'unrecovered');"
            "return e.length == 3 ? Object.fromEntries(e.map(([k, d]) => [d.room, k])) : null"
        )
        return t.cast("dict[str, str]", run.wait(driver, script))

    def trim() -> None:  # MAXLEN ~ trims whole stream nodes (100 entries): well past 5
        for n in range(1, 300):
            publish(run.small, {"n": n}, app=run.app)

    assert away(trim) == {run.feed: "recovered", run.small: "unrecovered", run.short: "recovered"}

    def expire() -> None:
        publish(run.short, {"n": 1}, app=run.app)
        time.sleep(2.5)  # the room's TTL is 1 s

    assert away(expire) == {run.feed: "recovered", run.small: "recovered", run.short: "unrecovered"}
    assert away(lambda: flushall(redis)) == {room: "unrecovered" for room in rooms}
    # And live messages flow again, in the new epoch.
    publish(run.feed, {"n": 1}, app=run.app)
    got = run.wait(driver, f"const g = window.clients.probe.got[{run.feed!r}]; return g.length == 2 && g")
    assert got[1][2] == 1 and got[1][1] != got[0][1], got


def test_without_history_the_cuts_lose_messages(
    redis_server: RedisServer,
    spawn: t.Callable[..., Process],
    browser: t.Callable[[], t.Any],
) -> None:
    """The same run with history off: what the clients lose (printed, not
    asserted: it depends on the timing), and nothing arrives twice or out
    of order."""
    run = Run(redis_server.url, 0, spawn, "off")
    try:
        got, stats = run_feed(run, browser)
        lost = {}
        for client, messages in got.items():
            numbers = [n for _, _, n in messages]
            assert numbers == sorted(set(numbers)), f"{client}: duplicates or disorder"
            assert all(offset is None for offset, _, _ in messages)
            lost[client] = TOTAL - len(numbers)
        total = sum(lost.values())
        delivered = 100 * (1 - total / (TOTAL * len(got)))
        print(f"history off: {total} of {TOTAL * len(got)} messages lost ({delivered:.1f}% delivered)")
        print(f"lost per client: {lost}")
        print(f"clients: {stats}")
    finally:
        run.close()
