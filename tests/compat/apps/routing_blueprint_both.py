"""0.2 app: one blueprint registered with app.register_blueprint and
sockets.register_blueprint, with Flask-Sockets 0.2's other names imported
(issue 19, item 5)."""

from flask import Blueprint
from flask import Flask

from flask_sockets import Map  # noqa: F401
from flask_sockets import Rule  # noqa: F401
from flask_sockets import SocketMiddleware
from flask_sockets import Sockets

chat = Blueprint('chat', __name__)


@chat.route('/')
def index():
    return 'the chat page'


@chat.route('/socket')
def chat_socket(ws):
    while not ws.closed:
        message = ws.receive()
        if message is not None:
            ws.send('chat:' + message)


app = Flask(__name__)
sockets = Sockets(app)
app.register_blueprint(chat, url_prefix='/chat')
sockets.register_blueprint(chat, url_prefix='/chat')
app.wsgi_app = SocketMiddleware(app.wsgi_app, app, sockets)


# The other order: the extension first, then the app.
live = Blueprint('live', __name__)


@live.route('/')
def live_page():
    return 'the live page'


@live.route('/socket')
def live_socket(ws):
    ws.send('live')


sockets.register_blueprint(live, url_prefix='/live')
app.register_blueprint(live, url_prefix='/live')
