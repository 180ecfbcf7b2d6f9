"""The gunicorn command line of the fan-out tests."""

from __future__ import annotations

import sys
from pathlib import Path


def gunicorn_argv(port: int, app: str, *, workers: int = 2, chdir: Path | None = None) -> list[str]:
    """``python -m gunicorn`` with our worker, ``workers`` processes on
    127.0.0.1:``port`` and short grace periods, serving ``app``."""
    from gunicorn.config import KNOWN_SETTINGS

    argv = [sys.executable, "-m", "gunicorn", "-k", "flask_sockets_gunicorn.worker", "-w", str(workers)]
    argv += ["-b", f"127.0.0.1:{port}", "--graceful-timeout", "1", "--timeout", "10"]
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        argv.append("--no-control-socket")  # gunicorn >= 24: no socket shared by parallel servers under $HOME
    if chdir is not None:
        argv += ["--chdir", str(chdir)]
    return [*argv, app]
