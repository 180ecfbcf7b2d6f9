"""0.2 app: route options that 0.2 ignored, websocket=True among them
(issue 19, item 5)."""

from flask import Flask

from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route('/echo', websocket=True)
def echo_socket(ws):
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send(message)


@sockets.route('/ping', methods=['GET'], endpoint='pinger')
def ping_socket(ws):
    ws.send('pong')
