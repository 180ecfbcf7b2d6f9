"""Work done later, or every N seconds, by ONE thread shared by many sockets.

A :class:`Timer` keeps its calls in a heap and runs them, when they are
due, from one daemon thread: the thread starts with the first call
registered (:meth:`Timer.every`, :meth:`Timer.call_later`: an explicit
call, never the reading of a property), and ends when no call is left
(idle) or at :meth:`Timer.stop`. The sockets' ``ThreadRunner``
uses the process's timer (:func:`process_timer`) for the envelope's
heartbeats on threaded servers (Werkzeug's development server, gunicorn's
``gthread`` worker, the test client): ten thousand envelope sockets share
one timer thread instead of having one each (a parked thread costs about
16 KiB of RSS).

The calls run one after another in the timer's thread: each must return
at once (queue work, never wait for I/O or a lock held for long). A call
that raises is logged (``flask_sockets.timers``) and the others go on.

Fork-safe: a child process (gunicorn forks its workers after loading the
app) starts with an empty timer, a new lock and no thread; the calls
registered in the parent are for the parent's sockets and are dropped,
and the child's first call starts the child's own thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
import typing as t
import weakref

__all__ = ["Timer", "process_timer"]

logger = logging.getLogger("flask_sockets.timers")


class _Call:
    """One registered call (its time is its heap entry's): the function,
    how often it repeats (``None``: once), whether it was cancelled."""

    __slots__ = ("cancelled", "done", "function", "generation", "interval")

    def __init__(self, function: t.Callable[[], object], interval: float | None, generation: object) -> None:
        self.function = function
        self.generation = generation  # the timer's, when it was registered
        self.interval = interval
        self.cancelled = False
        self.done = False  # a call made once has been taken out to run


class Timer:
    """Runs registered calls when they are due, from one daemon thread.

    Thread-safe: register and cancel from any thread (the timer's own
    included, from a call it runs).

    :param name: The name of the timer's thread.
    """

    def __init__(self, name: str = "flask-sockets timer") -> None:
        self.name = name
        self._init()
        _timers.add(self)

    def _init(self) -> None:
        """An empty timer with no thread (also in a child after a fork)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        # (when, tie-breaker, call); cancelled calls stay until they come up.
        self._heap: list[tuple[float, int, _Call]] = []
        self._counter = itertools.count()
        self._live = 0  # calls registered and not cancelled (nor run, if once)
        self._thread: threading.Thread | None = None
        # The last thread started (it may still be ending after it was told
        # to, or went idle): what stop(wait=True) waits for.
        self._last: threading.Thread | None = None
        # Renewed by stop() and in a forked child: calls registered before are gone.
        self._generation = object()

    def every(self, seconds: float, function: t.Callable[[], object]) -> t.Callable[[], None]:
        """Call ``function()`` every ``seconds`` seconds, first ``seconds``
        from now, until the returned function is called (safe from any
        thread, any number of times). A call that runs late is not caught
        up: the next one is ``seconds`` after it was due, or after now if
        that has passed.

        :raises ValueError: If ``seconds`` is not positive.
        """
        if not seconds > 0:
            raise ValueError(f"The interval must be positive, not {seconds!r}")
        return self._add(time.monotonic() + seconds, function, float(seconds))

    def call_later(self, seconds: float, function: t.Callable[[], object]) -> t.Callable[[], None]:
        """Call ``function()`` once, ``seconds`` from now; the returned
        function cancels it (if it has not run yet)."""
        return self._add(time.monotonic() + max(0.0, float(seconds)), function, None)

    def call_at(self, when: float, function: t.Callable[[], object]) -> t.Callable[[], None]:
        """Call ``function()`` once, at ``when`` (:func:`time.monotonic`
        time; at once if that has passed); the returned function cancels
        it (if it has not run yet)."""
        return self._add(float(when), function, None)

    def _add(self, when: float, function: t.Callable[[], object], interval: float | None) -> t.Callable[[], None]:
        with self._lock:
            if self._pid != os.getpid():  # pragma: no cover - the fork hook did it already
                self._heap.clear()
                self._live = 0
                self._thread = None
                self._pid = os.getpid()
                self._generation = object()
            call = _Call(function, interval, self._generation)
            heapq.heappush(self._heap, (when, next(self._counter), call))
            self._live += 1
            if self._thread is None:
                # Started by the first call (in this process), ended when idle.
                self._thread = self._last = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is call:
                self._wakeup.notify()

        def cancel() -> None:
            with self._lock:
                if call.cancelled:
                    return
                call.cancelled = True
                if not call.done and call.generation is self._generation:
                    self._live -= 1
                    if not self._live:
                        self._wakeup.notify()  # idle: the thread ends now

        return cancel

    def stop(self, wait: bool = False) -> None:
        """Cancel every call and end the thread, from any thread (the
        timer's own included). No call starts after this returns (one
        running meanwhile finishes). A later registration starts a new
        thread.

        :param wait: Wait for the thread to end (the call it is running,
            if any, to return; a thread that went idle just now, to be
            gone), unless the caller is that thread; else return at once.
        """
        with self._lock:
            thread = self._last  # (the running one, or the last one, ending)
            for _, _, call in self._heap:
                call.cancelled = True
            self._heap.clear()
            self._live = 0
            self._thread = None
            self._generation = object()
            self._wakeup.notify_all()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        """Whether the timer has a thread (calls are registered)."""
        with self._lock:
            return self._thread is not None and self._pid == os.getpid()

    def _run(self) -> None:
        me = threading.current_thread()
        lock, heap = self._lock, self._heap
        while True:
            due: list[_Call] = []
            with lock:
                while True:
                    if self._thread is not me:
                        return  # stopped (or replaced after a stop and a new call)
                    if not self._live:
                        heap.clear()  # idle: no thread lingers
                        self._thread = None
                        return
                    now = time.monotonic()
                    while heap and (heap[0][2].cancelled or heap[0][0] <= now):
                        when, _, call = heapq.heappop(heap)
                        if call.cancelled:
                            continue
                        due.append(call)
                        if call.interval is None:
                            call.done = True
                            self._live -= 1
                        else:
                            # The next one (before this one runs, so that
                            # it may cancel itself).
                            later = when + call.interval
                            if later <= now:
                                later = now + call.interval
                            heapq.heappush(heap, (later, next(self._counter), call))
                    if due:
                        break
                    self._wakeup.wait(heap[0][0] - now if heap else None)
            for call in due:
                if self._thread is not me:
                    break  # stopped meanwhile: no call starts after stop() returned
                if call.cancelled:  # (by a call before it)
                    continue
                try:
                    call.function()
                except Exception:
                    logger.exception("A timer call failed: %r", call.function)


# Every timer of this process: a forked child resets them before it runs anything.
_timers: weakref.WeakSet[Timer] = weakref.WeakSet()
# The process's shared timer, made by the first process_timer() call of the
# process (after gevent's monkey-patching, if any: its lock is then gevent's).
_process_timer: Timer | None = None
_process_timer_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _process_timer, _process_timer_lock
    _process_timer, _process_timer_lock = None, threading.Lock()  # the parent's, with its calls
    for timer in list(_timers):
        timer._init()


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def process_timer() -> Timer:
    """This process's shared :class:`Timer`, made at the first call in the
    process (a forked child makes its own); its thread starts with its
    first registered call."""
    global _process_timer
    with _process_timer_lock:
        if _process_timer is None or _process_timer._pid != os.getpid():
            _process_timer = Timer()
        return _process_timer
