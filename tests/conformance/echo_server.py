"""The echo server the Autobahn cases run against.

python echo_server.py PORT ours    # flask_sockets_gevent.run (our handler)
python echo_server.py PORT stock   # the seed's pywsgi + stock gevent-websocket handler
python echo_server.py PORT dev     # app.run(): Werkzeug's development server
python echo_server.py PORT gthread # gunicorn -k gthread: the threaded socket, no gevent
python echo_server.py PORT websockets  # the reference: the websockets library's asyncio server

Ours and dev offer permessage-deflate (``SOCKETS_COMPRESSION``, on by
default: set here explicitly); websockets does by default.
"""

import sys

if sys.argv[2] in ("ours", "stock"):
    from gevent import monkey

    monkey.patch_all()

from flask import Flask  # noqa: E402

from flask_sockets import Sockets  # noqa: E402

app = Flask(__name__)
# Autobahn's case 9 sends messages of up to 16 MiB, and 4 MiB ones in 64-byte
# fragments: the limit (and the fragment bound that follows from it) must let them pass.
MAX_SIZE = 16 * 1024 * 1024
app.config["SOCKETS_MAX_MESSAGE_SIZE"] = MAX_SIZE
# Autobahn's 12.* and 13.*: permessage-deflate with every parameter the client
# offers. Every message is compressed (threshold 0, not the default 128):
# kosoku's compression cases hash the text of a message that comes back
# uncompressed as str and stop with "Strings must be encoded before hashing"
# (its bug; RFC 7692 lets a server leave any message uncompressed, and
# tests/core/test_compression_serving.py checks that we do below the threshold).
app.config["SOCKETS_COMPRESSION"] = {"threshold": 0}
# Autobahn's 9.7.* and 9.8.* send 1,000 messages as fast as they can: flood
# control (on by default) would close them with 1008. A conformance run
# tests the protocol, not the limits.
app.config.update(SOCKETS_MESSAGE_RATE=None, SOCKETS_BYTE_RATE=None, SOCKETS_CONTROL_RATE=None)
sockets = Sockets(app)


@sockets.route("/")
def echo(ws):
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)


def serve_websockets(port: int) -> None:
    """The reference: the websockets library's asyncio server (permessage-deflate on by default)."""
    import asyncio
    import os

    # Case 9.3.1 sends 4 MiB in 64-byte fragments; websockets stops at 4096
    # fragments (1009) unless told otherwise: allow one per 64 bytes of the
    # limit, as ours does. Read when websockets.asyncio.messages is imported.
    os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(MAX_SIZE // 64))

    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=MAX_SIZE, ping_interval=None) as server:
            await server.serve_forever()

    asyncio.run(main())


def main() -> None:
    port, flavour = int(sys.argv[1]), sys.argv[2]
    if flavour == "websockets":
        serve_websockets(port)
    elif flavour == "dev":
        app.run(port=port)
    elif flavour == "gthread":
        import os

        # gunicorn's own thread worker: one thread per open socket (kosoku runs a few at once).
        argv = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "16", "-w", "1"]
        argv += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", "--chdir", os.path.dirname(__file__)]
        os.execv(sys.executable, [*argv, "echo_server:app"])
    elif flavour == "ours":
        import flask_sockets_gevent

        flask_sockets_gevent.run(app, port=port, log=None)
    else:
        from gevent import pywsgi
        from geventwebsocket.handler import WebSocketHandler

        pywsgi.WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None).serve_forever()


if __name__ == "__main__":
    main()
