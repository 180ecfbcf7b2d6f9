"""Handlers that keep the socket and wait for something else to send, as
0.2 apps wrote them: a module-level ``clients`` list filled by the socket
route and fed by an HTTP route (a relay waiting for an HTTP callback), and a
"subscribe, then push" route that sends only after a while."""

import gevent
from flask import Flask
from flask import request

from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)

clients = []


@sockets.route("/listen")
def listen(ws):
    clients.append(ws)
    while not ws.closed:
        gevent.sleep(0.1)
    clients.remove(ws)


@app.route("/clients")
def count_clients():
    return str(len(clients))


@app.route("/callback")
def callback():
    message = request.args["message"]
    for ws in list(clients):
        ws.send(message)
    return str(len(clients))


@sockets.route("/later")
def later(ws):
    gevent.sleep(3)
    ws.send("pushed")
    while not ws.closed:
        ws.receive()


@sockets.route("/silent")
def silent(ws):
    while not ws.closed:
        gevent.sleep(0.1)
