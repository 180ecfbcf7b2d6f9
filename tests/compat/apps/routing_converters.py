"""0.2 app: a URL converter registered on both URL maps (issue 19, item 5)."""

from flask import Flask
from werkzeug.routing import BaseConverter

from flask_sockets import Sockets


class RegexConverter(BaseConverter):
    def __init__(self, url_map, *items):
        super().__init__(url_map)
        self.regex = items[0]


app = Flask(__name__)
app.url_map.converters['regex'] = RegexConverter
sockets = Sockets(app)
sockets.url_map.converters['regex'] = RegexConverter


@sockets.route('/room/<regex("[a-z]+"):name>')
def room_socket(ws, name):
    ws.send('room ' + name)


@app.route('/room/<regex("[a-z]+"):name>')
def room_page(name):
    return 'the page of room ' + name
