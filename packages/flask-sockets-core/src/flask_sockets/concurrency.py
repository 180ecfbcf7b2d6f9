"""Running work beside a socket: in its gevent hub, or in a thread.

A socket served by :mod:`flask_sockets_gevent` (or the gunicorn worker)
lives in a gevent hub, and only greenlets of that hub may use it. A socket
served by Werkzeug's development server, or by
:class:`flask_sockets.testing.SocketTestClient`, lives in a thread and may
be used from any thread. A :class:`Runner` hides the difference: it is
captured in the socket's handler (:func:`current_runner`) and can then be
asked, from any thread or greenlet, to start work next to the socket
without ever blocking the caller.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import typing as t
import weakref

from .timers import process_timer

__all__ = ["GeventRunner", "Runner", "ThreadRunner", "current_runner"]


class Runner(t.Protocol):
    """Starts work where a socket can be used."""

    def spawn(self, function: t.Callable[..., object], *args: t.Any) -> None:
        """Run ``function(*args)`` concurrently, next to the socket. Safe to
        call from any thread or greenlet; never blocks."""
        ...

    def here(self) -> bool:
        """Whether the caller may use the socket directly (it runs where the
        socket lives)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Sleep in the runner's own way (from work it started)."""
        ...

    def call_with_timeout(self, function: t.Callable[[], object], timeout: float) -> bool:
        """Call ``function()`` (from work the runner started) and give up
        after ``timeout`` seconds; ``True`` if it returned in time."""
        ...

    def every(self, seconds: float, function: t.Callable[[], object]) -> t.Callable[[], None]:
        """Run ``function()`` every ``seconds`` next to the socket, whatever
        the caller does meanwhile, until the returned function is called.
        Call it where the socket lives (in its handler); ``function`` handles
        its own errors and must not block for long."""
        ...


class ThreadRunner:
    """Work in new daemon threads, periodic work in the process's one timer
    thread: for sockets that any thread may use (the development server's,
    gunicorn ``gthread``'s, the test client's). In a process gevent has
    monkey-patched, these threads are greenlets."""

    def here(self) -> bool:
        return True  # these sockets may be used from any thread

    def spawn(self, function: t.Callable[..., object], *args: t.Any) -> None:
        threading.Thread(target=function, args=args, name="flask-sockets writer", daemon=True).start()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def call_with_timeout(self, function: t.Callable[[], object], timeout: float) -> bool:
        worker = threading.Thread(target=function, name="flask-sockets closer", daemon=True)
        worker.start()
        worker.join(timeout)
        return not worker.is_alive()

    def every(self, seconds: float, function: t.Callable[[], object]) -> t.Callable[[], None]:
        """A call of the process's shared :class:`~flask_sockets.timers.Timer`:
        one thread for every socket's periodic work (not one per call),
        started by the first call in the process, gone when no call is
        left. The returned function cancels this one at once. ``function``
        runs in the timer's thread: it must not block (queue the work)."""
        return process_timer().every(seconds, function)


class GeventRunner:
    """Work in greenlets of one gevent hub: for sockets that live there.

    From the hub's own thread, :meth:`spawn` starts a greenlet directly;
    from any other thread it asks the hub's loop to start it (gevent's
    thread-safe ``run_callback_threadsafe``). The greenlets are gevent's
    raw ones (``gevent.spawn_raw``): a fan-out starts one per socket per
    message, and the work run here handles its own errors, so the extra
    machinery of a ``gevent.Greenlet`` (links, a result, error reporting)
    would only cost time.
    """

    def __init__(self, hub: t.Any) -> None:
        import gevent

        self.hub = hub
        self._spawn_raw = gevent.spawn_raw

    def here(self) -> bool:
        """Whether the caller runs in the hub's thread (in one of its
        greenlets, or the hub itself)."""
        return bool(self.hub.thread_ident == _os_thread_ident())

    def spawn(self, function: t.Callable[..., object], *args: t.Any) -> None:
        if self.here():
            self._spawn_raw(function, *args)
        else:
            self.hub.loop.run_callback_threadsafe(self._spawn_raw, function, *args)

    def sleep(self, seconds: float) -> None:
        import gevent

        gevent.sleep(seconds)

    def call_with_timeout(self, function: t.Callable[[], object], timeout: float) -> bool:
        import gevent

        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            function()
        except gevent.Timeout as e:
            if e is not timer:
                raise
            return False
        finally:
            timer.close()
        return True

    def every(self, seconds: float, function: t.Callable[[], object]) -> t.Callable[[], None]:
        """A repeating timer of the hub's loop (no greenlet while it waits;
        it does not keep the loop alive), each tick running ``function`` in
        a new raw greenlet."""
        timer = self.hub.loop.timer(seconds, seconds, ref=False)
        timer.start(self._spawn_raw, function)

        def stop() -> None:
            if self.here():
                timer.close()
            else:
                self.hub.loop.run_callback_threadsafe(timer.close)

        return stop


def current_runner() -> Runner:
    """The runner for a socket whose handler is the caller: a
    :class:`GeventRunner` inside a gevent greenlet, else a :class:`ThreadRunner`."""
    gevent = sys.modules.get("gevent")
    if gevent is not None and isinstance(gevent.getcurrent(), gevent.Greenlet):
        hub = gevent.get_hub()
        runner = _gevent_runners.get(hub)
        if runner is None:
            runner = _gevent_runners[hub] = GeventRunner(hub)
        return runner
    return _THREAD_RUNNER


# Runners hold no per-socket state: one per hub (forgotten with the hub), and
# one for threads, shared by every socket.
_gevent_runners: weakref.WeakKeyDictionary[t.Any, GeventRunner] = weakref.WeakKeyDictionary()
_THREAD_RUNNER = ThreadRunner()


def _os_thread_ident() -> int:
    """The identity of the OS thread, even where gevent patched ``threading``
    (whose ``get_ident`` then names greenlets)."""
    return _original_get_ident()()


@functools.cache
def _original_get_ident() -> t.Callable[[], int]:
    from gevent.monkey import get_original

    return t.cast("t.Callable[[], int]", get_original("_thread", "get_ident"))
