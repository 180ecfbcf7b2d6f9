"""Our stack on ``flask_sockets_gevent.run``: python ours_gevent.py PORT"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from flask_app import app  # noqa: E402

import flask_sockets_gevent  # noqa: E402

if __name__ == "__main__":
    flask_sockets_gevent.run(app, "127.0.0.1", int(sys.argv[1]), log=None)
