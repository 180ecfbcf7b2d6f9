"""The fan-out modules are layers: each imports alone, and their imports
form no cycle (issue 21)."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

import flask_sockets

PACKAGE = Path(flask_sockets.__file__).parent
#: The fan-out modules, and the old paths that re-export their names.
FANOUT = sorted(
    [f"flask_sockets.fanout.{p.stem}" for p in (PACKAGE / "fanout").glob("*.py") if p.stem != "__init__"]
    + ["flask_sockets.rooms", "flask_sockets.brokers", "flask_sockets.presence", "flask_sockets.redis_broker"]
)


def module_path(name: str) -> Path:
    parts = name.split(".")[1:]
    return PACKAGE.joinpath(*parts).with_suffix(".py")


def imports_of(name: str) -> set[str]:
    """The ``flask_sockets`` modules ``name`` imports at its top level (not
    under ``if TYPE_CHECKING`` and not inside functions)."""
    tree = ast.parse(module_path(name).read_text("utf-8"))
    package = name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("flask_sockets"):
                # ``from . import x`` imports the module x.
                if not node.module:
                    found.update(f"{target}.{alias.name}" for alias in node.names)
                else:
                    found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("flask_sockets"))
    return {module for module in found if module_path(module).exists() or module == "flask_sockets.fanout"}


@pytest.mark.slow  # (an interpreter each: the import graph test below is the fast check)
@pytest.mark.parametrize("name", FANOUT)
def test_each_fanout_module_imports_alone(name: str) -> None:
    code = f"import {name}; import sys; assert 'redis' not in sys.modules, 'redis-py imported eagerly'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_fanout_imports_have_no_cycle() -> None:
    graph = {name: imports_of(name) for name in FANOUT}
    assert graph["flask_sockets.fanout.membership"], "the parser found no imports: it is broken"
    # Depth-first search for a back edge among the fan-out modules.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in graph.get(name, ()):
            if target not in graph:
                continue
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name)


def test_the_fanout_package_imports_none_of_its_modules() -> None:
    tree = ast.parse((PACKAGE / "fanout" / "__init__.py").read_text("utf-8"))
    assert not [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_old_import_paths_still_work() -> None:
    from flask_sockets.brokers import Broker
    from flask_sockets.brokers import LocalBroker
    from flask_sockets.brokers import MessageQueueUnavailable
    from flask_sockets.brokers import broker_from_config
    from flask_sockets.presence import PresenceChange
    from flask_sockets.presence import RedisPresence
    from flask_sockets.redis_broker import RedisBroker
    from flask_sockets.redis_broker import RedisClusterBroker
    from flask_sockets.rooms import CLOSE_SLOW_CONSUMER
    from flask_sockets.rooms import Member
    from flask_sockets.rooms import Rooms

    assert issubclass(RedisClusterBroker, RedisBroker) and issubclass(RedisBroker, Broker)
    assert issubclass(LocalBroker, Broker) and MessageQueueUnavailable is flask_sockets.MessageQueueUnavailable
    assert callable(broker_from_config) and PresenceChange is flask_sockets.PresenceChange
    assert RedisPresence.__module__ == "flask_sockets.fanout.redis_presence"
    assert CLOSE_SLOW_CONSUMER == 1008 and Member.__name__ == "Member" and Rooms.__name__ == "Rooms"


def test_a_broker_written_before_history_still_works() -> None:
    """A Broker subclass with the two-argument publish() of before history
    keeps working; its rooms cannot be recovered (recovered=False)."""
    import json

    from flask import Flask

    from flask_sockets import Sockets
    from flask_sockets.brokers import Broker
    from flask_sockets.brokers import Deliver
    from flask_sockets.rooms import Rooms
    from flask_sockets.testing import SocketTestClient

    class OldBroker(Broker):
        def __init__(self) -> None:
            self.deliver: Deliver | None = None

        def start(self, deliver: Deliver) -> None:
            self.deliver = deliver

        def publish(self, room: str | None, message: t.Any) -> None:  # type: ignore[override]
            assert self.deliver is not None
            self.deliver(room, message)

    app = Flask(__name__)
    app.config["SOCKETS_MESSAGE_QUEUE"] = OldBroker()
    sockets = Sockets(app)

    @sockets.route("/r")
    def r(ws: t.Any) -> None:
        recovery = sockets.resume(ws, "r", (1, "e"))
        ws.send(json.dumps([recovery.recovered, recovery.position]))
        while ws.receive() is not None:
            pass

    try:
        with SocketTestClient(app).connect("/r") as ws:
            assert json.loads(t.cast(str, ws.receive(timeout=5))) == [False, None]
            assert sockets.publish("r", "plain", app=app) is None
            assert ws.receive(timeout=5) == "plain"
        app.config["SOCKETS_HISTORY_SIZE"] = 10
        with pytest.raises(TypeError):  # it cannot store history: it says so loudly
            sockets.publish("r", "x", app=app)
    finally:
        Rooms.of(app).close()
