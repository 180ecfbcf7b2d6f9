"""0.2 app: two socket handlers with the same function name (issue 19, item 3)."""

from flask import Flask

from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route('/echo')
def echo_socket(ws):
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send('echo:' + message)


@sockets.route('/ws')
def echo_socket(ws):  # noqa: F811
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send('ws:' + message)


@app.route('/')
def hello():
    return 'Hello World!'
