"""Serve an app module of ``tests/compat/apps`` the way a 0.2 app served
itself: ``python serve.py PATH MODULE PORT``, PATH being

``run``
    ``flask_sockets_gevent.run(app)``, after gevent's monkey-patching;
``pywsgi``
    Flask-Sockets 0.2's README snippet: gevent's ``WSGIServer`` with
    gevent-websocket's own ``WebSocketHandler``, after monkey-patching.

(The third path, ``gunicorn -k flask_sockets.worker``, is gunicorn's own
command line: see ``conftest.py``.)
"""

from gevent import monkey

monkey.patch_all()

import importlib  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main(path: str, module: str, port: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
    app = importlib.import_module(module).app
    if path == "run":
        import flask_sockets_gevent

        flask_sockets_gevent.run(app, "127.0.0.1", port, shutdown_timeout=1)
    elif path == "pywsgi":
        from gevent import pywsgi
        from geventwebsocket.handler import WebSocketHandler

        server = pywsgi.WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler)
        server.serve_forever()
    else:
        raise SystemExit(f"unknown serving path {path!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
