"""The echo server the Autobahn cases run against.

python echo_server.py PORT ours    # flask_sockets_gevent.run (our handler)
python echo_server.py PORT stock   # the seed's pywsgi + stock gevent-websocket handler
python echo_server.py PORT dev     # app.run(): Werkzeug's development server + wsproto
"""

import sys

if sys.argv[2] != "dev":
    from gevent import monkey

    monkey.patch_all()

from flask import Flask  # noqa: E402

from flask_sockets import Sockets  # noqa: E402

app = Flask(__name__)
# Autobahn's case 9 sends messages of up to 16 MiB, and 4 MiB ones in 64-byte
# fragments: the limit (and the fragment bound that follows from it) must let them pass.
app.config["SOCKETS_MAX_MESSAGE_SIZE"] = 16 * 1024 * 1024
sockets = Sockets(app)


@sockets.route("/")
def echo(ws):
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)


def main() -> None:
    port, flavour = int(sys.argv[1]), sys.argv[2]
    if flavour == "dev":
        app.run(port=port)
    elif flavour == "ours":
        import flask_sockets_gevent

        flask_sockets_gevent.run(app, port=port, log=None)
    else:
        from gevent import pywsgi
        from geventwebsocket.handler import WebSocketHandler

        pywsgi.WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None).serve_forever()


if __name__ == "__main__":
    main()
