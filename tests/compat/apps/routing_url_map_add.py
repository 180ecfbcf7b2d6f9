"""0.2 app with the Werkzeug 2 workaround: sockets.url_map.add(Rule(...,
endpoint=handler, websocket=True)), next to the decorator for the same URL
(issue 19, item 5)."""

from flask import Flask

from flask_sockets import Rule
from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route('/echo')
def echo_socket(ws):
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send(message)


def media_socket(ws, n):
    ws.send(f'media {n}')


sockets.url_map.add(Rule('/echo', endpoint=echo_socket, websocket=True))
sockets.url_map.add(Rule('/media/<int:n>', endpoint=media_socket, websocket=True))


@app.route('/')
def hello():
    return 'Hello World!'
