"""The baseline: stock gevent-websocket (its own ``WebSocketHandler``) with a
plain WSGI echo app, no Flask: python gevent_websocket_raw.py PORT

``/firehose`` (the hostile ``firehose`` workload): after one message from the
client, sends 64 KiB binary messages until sending fails. gevent-websocket
0.10.1 has no message size limit and no keepalive to configure.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402
from hostile_common import firehose  # noqa: E402


def app(environ, start_response):  # type: ignore[no-untyped-def]
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Length", "0")])
        return [b""]
    if environ.get("PATH_INFO") == "/firehose":
        ws.receive()
        firehose(lambda data: ws.send(data, binary=True))
        return []
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)
    return []


if __name__ == "__main__":
    server = pywsgi.WSGIServer(("127.0.0.1", int(sys.argv[1])), app, handler_class=WebSocketHandler, log=None)
    server.serve_forever()
