"""flask_sockets.timers: many periodic calls on ONE thread (the envelope's
heartbeats on threaded servers), stopped at once, an error not stopping
the others, fork-safe."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import typing as t

import pytest

from flask_sockets.concurrency import ThreadRunner
from flask_sockets.timers import Timer
from flask_sockets.timers import process_timer
from tests.conftest import TIMEOUT
from tests.conftest import wait_until

_names = itertools.count()


def named_timer() -> tuple[Timer, t.Callable[[], int]]:
    """A timer whose thread has a name of its own, and the count of such threads."""
    name = f"test timer {next(_names)}"

    def threads() -> int:
        return sum(thread.name == name for thread in threading.enumerate())

    return Timer(name), threads


def test_many_periodic_calls_share_one_thread_which_ends_when_idle() -> None:
    timer, threads = named_timer()
    assert threads() == 0 and not timer.running  # nothing registered: no thread
    counts = [0] * 200

    def tick(i: int) -> None:
        counts[i] += 1

    cancels = [timer.every(0.01, lambda i=i: tick(i)) for i in range(len(counts))]
    assert threads() == 1
    wait_until(lambda: min(counts) >= 3)
    assert threads() == 1
    for cancel in cancels[:-1]:
        cancel()
    assert threads() == 1  # one call left
    cancels[-1]()
    cancels[-1]()  # (twice: harmless)
    wait_until(lambda: threads() == 0)  # idle: the thread is gone
    assert not timer.running
    before = list(counts)
    time.sleep(0.05)
    assert counts == before  # cancelled: no more calls
    # The next registration starts a new thread.
    done = threading.Event()
    timer.call_later(0, done.set)
    assert done.wait(TIMEOUT)
    wait_until(lambda: threads() == 0)


def test_stop_from_another_thread_and_from_a_call() -> None:
    timer, threads = named_timer()
    calls: list[int] = []
    for i in range(10):
        timer.every(0.01, lambda i=i: calls.append(i))
    wait_until(lambda: len(calls) >= 30)
    stopper = threading.Thread(target=timer.stop)
    stopper.start()
    stopper.join(TIMEOUT)
    seen = len(calls)  # (a call running while stop() ran may still finish)
    wait_until(lambda: threads() == 0)
    time.sleep(0.05)
    assert len(calls) <= seen + 1 and not timer.running

    # From a call: the rest of its batch does not start either.
    ran: list[str] = []
    timer.every(0.01, lambda: (ran.append("stop"), timer.stop()))
    for _ in range(5):
        timer.every(0.01, lambda: ran.append("other"))
    wait_until(lambda: threads() == 0)
    after = list(ran)
    time.sleep(0.05)
    assert ran == after and "stop" in ran


def test_an_exception_is_logged_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    timer, threads = named_timer()
    good: list[float] = []

    def bad() -> None:
        raise RuntimeError("a broken heartbeat")

    with caplog.at_level(logging.ERROR, logger="flask_sockets.timers"):
        stop_bad = timer.every(0.01, bad)
        stop_good = timer.every(0.01, lambda: good.append(time.monotonic()))
        wait_until(lambda: len(good) >= 10)
        wait_until(lambda: sum("a broken heartbeat" in (r.exc_text or "") for r in caplog.records) >= 3)
    assert threads() == 1
    stop_bad()
    stop_good()
    wait_until(lambda: threads() == 0)


def test_calls_come_in_time_order_never_early() -> None:
    timer, threads = named_timer()
    order: list[tuple[str, float]] = []
    start = time.monotonic()
    for name, delay in (("c", 0.06), ("a", 0.02), ("b", 0.04), ("cancelled", 0.03)):
        cancel = timer.call_later(delay, lambda name=name: order.append((name, time.monotonic())))
    cancel()
    wait_until(lambda: len(order) == 3)
    assert [name for name, _ in order] == ["a", "b", "c"]
    # Never before they are due.
    assert all(at - start >= delay for (_, at), delay in zip(order, (0.02, 0.04, 0.06)))
    wait_until(lambda: threads() == 0)  # one-off calls done: idle
    time.sleep(0.05)
    assert len(order) == 3  # each ran once

    # A periodic call is every N seconds from when it was due, not earlier.
    ticks: list[float] = []
    registered = time.monotonic()
    stop = timer.every(0.02, lambda: ticks.append(time.monotonic()))
    wait_until(lambda: len(ticks) >= 5)
    stop()
    assert all(at - registered >= 0.02 * (i + 1) for i, at in enumerate(ticks[:5]))


def test_a_bad_interval_is_refused() -> None:
    timer, _ = named_timer()
    for seconds in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            timer.every(seconds, lambda: None)
    assert not timer.running


def test_thread_runner_every_shares_the_process_timer() -> None:
    """ThreadRunner.every (the envelope's heartbeats on threaded servers):
    a thousand sockets' heartbeats, one thread."""
    before = threading.active_count()
    counts = [0] * 1000

    def tick(i: int) -> None:
        counts[i] += 1

    stops = [ThreadRunner().every(0.05, lambda i=i: tick(i)) for i in range(len(counts))]
    try:
        assert process_timer().running
        assert threading.active_count() <= before + 1
        wait_until(lambda: min(counts) >= 2)
        assert threading.active_count() <= before + 1
    finally:
        for stop in stops:
            stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_its_own_timer_without_the_parent_s_calls() -> None:
    """gunicorn forks its workers after loading the app: a child has no
    timer thread (and must not count on the parent's), drops the parent's
    calls, and its own first call starts its own thread."""
    parent_calls: list[int] = []
    stop = process_timer().every(0.01, lambda: parent_calls.append(os.getpid()))
    read, write = os.pipe()
    try:
        wait_until(lambda: parent_calls)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child (reports through its exit status)
            status = 1
            try:
                os.close(read)
                timer = process_timer()
                mine: list[int] = []
                assert not timer.running
                timer.every(0.01, lambda: mine.append(os.getpid()))
                deadline = time.monotonic() + TIMEOUT
                while len(mine) < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                ok = len(mine) >= 3 and set(mine) == {os.getpid()}
                ok = ok and all(p != os.getpid() for p in parent_calls)  # the parent's calls stayed behind
                os.write(write, b"ok" if ok else b"no")
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        answer = os.read(read, 16)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert answer == b"ok"
        count = len(parent_calls)
        wait_until(lambda: len(parent_calls) > count)  # the parent's thread goes on
    finally:
        stop()
        os.close(read)
