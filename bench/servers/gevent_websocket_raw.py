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
from hostile_common import FIREHOSE_PAYLOAD  # noqa: E402
from hostile_common import Firehose  # noqa: E402
from hostile_common import ended_by  # noqa: E402


def firehose(ws):  # type: ignore[no-untyped-def]
    ws.receive()
    hose = Firehose()
    error = None
    try:
        while hose.more():
            ws.send(FIREHOSE_PAYLOAD, binary=True)
            hose.sent()
    except Exception as e:  # the connection is gone: the handler ends
        error = e
    except BaseException as e:  # a kill: report it, let it go on
        error = e
        raise
    finally:
        hose.done(ended_by(error))


def app(environ, start_response):  # type: ignore[no-untyped-def]
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Length", "0")])
        return [b""]
    if environ.get("PATH_INFO") == "/firehose":
        firehose(ws)
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
