"""0.2 app: socket handlers named like HTTP views, declared before and after
them (issue 19, item 3): /chat and /chat/socket, /feed/socket and /feed."""

from flask import Flask

from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@app.route('/chat')
def chat():
    return 'the chat page'


@sockets.route('/chat/socket')
def chat(ws):  # noqa: F811
    ws.send('the chat socket')


@sockets.route('/feed/socket')
def feed(ws):
    ws.send('the feed socket')


@app.route('/feed')
def feed():  # noqa: F811
    return 'the feed page'
