"""The shutdown schedule (:mod:`flask_sockets.shutdown`): batches, the window
cut to the grace period, the close code, config checked at ``init_app``.
(Real servers closing 2,000 sockets: tests/gunicorn/test_shutdown_drain.py.)"""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from flask_sockets import Sockets
from flask_sockets.shutdown import MIN_BATCH
from flask_sockets.shutdown import ShutdownPolicy
from flask_sockets.shutdown import config_of
from flask_sockets.shutdown import drain


def test_defaults_are_1012_over_10_seconds() -> None:
    policy = ShutdownPolicy()
    assert (policy.window, policy.code, policy.reason) == (10.0, 1012, "Server restarting")
    assert ShutdownPolicy(code=1001).reason == "Server shutting down"


def test_batches_cover_every_socket_once_evenly_over_the_window() -> None:
    batches = ShutdownPolicy(window=2.0).batches(2000)
    assert len(batches) == 20
    assert [start for _, start, _ in batches] == [stop - 100 for _, _, stop in batches]
    assert (batches[0][1], batches[-1][2]) == (0, 2000)
    assert [round(delay, 6) for delay, _, _ in batches] == [round(i * 0.1, 6) for i in range(20)]


def test_few_sockets_or_no_window_close_at_once() -> None:
    assert ShutdownPolicy(window=10.0).batches(MIN_BATCH) == [(0.0, 0, MIN_BATCH)]
    assert ShutdownPolicy(window=0.0).batches(5000) == [(0.0, 0, 5000)]
    assert ShutdownPolicy().batches(0) == []
    # 250 sockets: 3 batches (at least MIN_BATCH... to one socket), over the window.
    assert ShutdownPolicy(window=3.0).batches(250) == [(0.0, 0, 83), (1.0, 83, 166), (2.0, 166, 250)]


def test_the_window_fits_in_the_grace_period_less_the_close_timeout() -> None:
    config = {"SOCKETS_SHUTDOWN_WINDOW": 10.0, "SOCKETS_CLOSE_TIMEOUT": 5.0}
    assert ShutdownPolicy.from_config(config, grace=30).window == 10.0
    assert ShutdownPolicy.from_config(config, grace=12).window == 7.0
    assert ShutdownPolicy.from_config(config, grace=3).window == 0.0
    assert ShutdownPolicy.from_config(config).window == 10.0
    assert ShutdownPolicy.from_config({"SOCKETS_SHUTDOWN_CODE": 1001}).code == 1001


@pytest.mark.parametrize(
    ("key", "value"),
    [("SOCKETS_SHUTDOWN_CODE", 1006), ("SOCKETS_SHUTDOWN_CODE", 999), ("SOCKETS_SHUTDOWN_WINDOW", -1)],
)
def test_bad_settings_stop_the_app_at_init_app(key: str, value: object) -> None:
    app = Flask(__name__)
    app.config[key] = value
    with pytest.raises(ValueError, match=key):
        Sockets(app)


def test_a_server_stopping_with_a_bad_setting_still_closes_everything(caplog) -> None:
    app = Flask(__name__)
    Sockets(app)
    app.config["SOCKETS_SHUTDOWN_CODE"] = 1006  # changed after init_app
    with caplog.at_level(logging.ERROR, "flask_sockets.shutdown"):
        policy = ShutdownPolicy.for_app(app, grace=30)
    assert (policy.window, policy.code) == (0.0, 1012)
    assert "SOCKETS_SHUTDOWN_CODE: 1006" in caplog.text


def test_config_of_finds_the_flask_app_under_middleware() -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = Flask(__name__)
    app.config["SOCKETS_SHUTDOWN_WINDOW"] = 3.0
    assert config_of(app) is app.config
    assert config_of(ProxyFix(app)) is app.config
    assert config_of(lambda environ, start_response: []) == {}


def test_drain_sleeps_between_batches_and_closes_each_socket_once() -> None:
    clock = [0.0]
    closed: list[tuple[float, int]] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    drain(range(300), lambda ws: closed.append((clock[0], ws)), ShutdownPolicy(window=1.5), sleep, lambda: clock[0])
    assert [ws for _, ws in closed] == list(range(300))
    assert sleeps == [0.5, 0.5]
    assert {when for when, _ in closed} == {0.0, 0.5, 1.0}


def test_a_late_batch_moves_the_next_ones_instead_of_a_burst_to_catch_up() -> None:
    """10 batches 0.2 s apart over 2 s; the process gets no CPU for 0.7 s
    after the second: the batches after it keep their spacing (not four at
    once), up to the window's end, where the rest go."""
    clock = [0.0]
    closed: list[tuple[float, int]] = []

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if round(clock[0], 6) == 0.2:  # the second batch is due: stalled
            clock[0] += 0.7

    drain(range(1000), lambda ws: closed.append((clock[0], ws)), ShutdownPolicy(window=2.0), sleep, lambda: clock[0])
    assert [ws for _, ws in closed] == list(range(1000))
    times = sorted({round(when, 6) for when, _ in closed})
    assert times == [0.0, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9, 2.0]
    at_end = [ws for when, ws in closed if round(when, 6) == 2.0]
    assert len(at_end) == 300, "the three batches the window had no room left for go at its end"


def test_drain_closes_the_sockets_accepted_meanwhile_after_the_last_batch() -> None:
    closed: list[int] = []
    open_now = list(range(200))
    drain(
        list(open_now),
        closed.append,
        ShutdownPolicy(window=0.5),
        sleep=lambda seconds: open_now.append(1000 + len(open_now)),  # one more accepted while it waits
        late=lambda: open_now,
    )
    assert closed[:200] == list(range(200))
    assert sorted(closed[200:]) == [1200], "the late one, once, after the batches"
