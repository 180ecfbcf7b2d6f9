"""``python -m tests.transports.run_gevent PORT``: the transports' app under ``flask_sockets_gevent.run``."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import flask_sockets_gevent  # noqa: E402
from tests.transports.app import app  # noqa: E402

flask_sockets_gevent.run(app, port=int(sys.argv[1]), shutdown_timeout=1)
