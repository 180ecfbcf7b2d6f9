"""Google's App Engine flexible environment WebSocket sample (Flask-Sockets
0.2), as published: every message goes to every client of the process
through gevent-websocket's ``ws.handler.server.clients``."""

from flask import Flask

from flask_sockets import Sockets

app = Flask(__name__)
sockets = Sockets(app)


@sockets.route("/chat")
def chat_socket(ws):
    while not ws.closed:
        message = ws.receive()
        if message is None:  # message is "None" if the client has closed.
            continue
        # Send the message to all clients connected to this webserver
        # process. (To support multiple processes or instances, an
        # extra-instance storage or messaging system would be required.)
        clients = ws.handler.server.clients.values()
        for client in clients:
            client.ws.send(message)


@sockets.route("/whoami")
def whoami(ws):
    # gevent-websocket's handler also had the connection's own Client.
    client = ws.handler.active_client
    ws.send(f"{client.address[0]}:{client.address[1]} {client.ws is ws}")
    while not ws.closed:
        ws.receive()
