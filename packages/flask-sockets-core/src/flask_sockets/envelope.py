"""The envelope: an opt-in JSON wire format for rooms, spoken by the browser
client ``flask-sockets.js``: subscribe with a position, recovered or not,
room messages with their offset and epoch, heartbeats. Apps that own their
wire format never meet it: their sockets get published messages as they
are.

In a socket handler, iterate :meth:`Sockets.envelope
<flask_sockets.Sockets.envelope>`; it answers the client's ``sub`` and
``unsub`` frames, sends the room messages wrapped, sends ``ping`` frames,
and yields the ``data`` of the client's application messages::

    @sockets.route("/live")
    def live(ws):
        envelope = sockets.envelope(ws, authorize=lambda room: room.startswith("chat:"))
        for data in envelope:
            envelope.send({"echo": data})

Publish to envelope sockets with :func:`publish` (any JSON value); a
message published with ``sockets.publish(room, text)`` reaches them as a
JSON string. Frames (see the envelope's reference in :doc:`/reliable`):

- server to client: ``{"t":"hello","ping":25}``, ``{"t":"ping"}``,
  ``{"t":"sub","room":R,"recovered":B,"offset":N,"epoch":E}``,
  ``{"t":"msg","room":R,"offset":N,"epoch":E,"data":D}``,
  ``{"t":"msg","data":D}`` (:meth:`Envelope.send`),
  ``{"t":"error","room":R,"reason":S}``;
- client to server: ``{"t":"sub","room":R}`` (with ``"offset"`` and
  ``"epoch"`` to resume), ``{"t":"unsub","room":R}``, ``{"t":"pong"}``,
  ``{"t":"msg","data":D}``. Unknown ``t`` values are ignored.

A client that breaks the format is closed: 1003 for a binary frame, 1007
for a text frame that is not a JSON object.
"""

from __future__ import annotations

import base64
import json
import logging
import typing as t

from flask import current_app

from .fanout.delivery import ENVELOPE_JSON
from .fanout.history import Position
from .fanout.history import Recovery
from .fanout.membership import Rooms
from .options import DEFAULTS
from .protocol import CloseCode

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from .fanout.delivery import Member
    from .typing import BasicWebSocket
    from .typing import Message
    from .typing import WebSocket

__all__ = ["ENVELOPE_JSON", "Envelope", "envelope", "publish", "room_frame", "sub_frame"]

logger = logging.getLogger("flask_sockets.envelope")

#: The longest room name a client may subscribe to, in characters.
_MAX_ROOM = 200
#: The heartbeat.
_PING = '{"t":"ping"}'


def publish(room: str, data: t.Any, *, app: Flask | None = None) -> Position | None:
    """Publish ``data`` (any JSON-serialisable value) to the envelope
    sockets in ``room``, in every process: they get
    ``{"t":"msg","room":room,"offset":...,"epoch":...,"data":data}``.
    Sockets of the room that do not speak the envelope get the JSON text
    of ``data``, as if it had been published with
    ``sockets.publish(room, json.dumps(data))``: a room may mix both kinds.

    :returns: The message's position, ``None`` if the room keeps no history.
    :raises TypeError: If ``data`` is not JSON-serialisable.
    """
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"Envelope data must be JSON-serialisable: {e}") from None
    return _rooms(app).publish(room, ENVELOPE_JSON + text)


def _rooms(app: Flask | None) -> Rooms:
    return Rooms.of(app if app is not None else t.cast("Flask", current_app._get_current_object()))  # type: ignore[attr-defined]


def _data(message: Message) -> str:
    """The JSON of a room message's ``data``."""
    if isinstance(message, str):
        if message.startswith(ENVELOPE_JSON):
            return message[1:]
        return json.dumps(message, ensure_ascii=False)
    # Binary: base64 text (the envelope is text frames only).
    return json.dumps(base64.b64encode(bytes(message)).decode("ascii"))


def room_frame(room: str | None, message: Message, position: Position | None) -> str:
    """The ``msg`` frame of a room message (or of a broadcast: ``room`` null)."""
    offset, epoch = (position.offset, json.dumps(position.epoch)) if position is not None else ("null", "null")
    name = json.dumps(room, ensure_ascii=False)
    return f'{{"t":"msg","room":{name},"offset":{offset},"epoch":{epoch},"data":{_data(message)}}}'


def sub_frame(room: str, recovery: Recovery) -> str:
    """The answer to a ``sub``."""
    position = recovery.position
    return json.dumps(
        {
            "t": "sub",
            "room": room,
            "recovered": recovery.recovered,
            "offset": position.offset if position is not None else None,
            "epoch": position.epoch if position is not None else None,
        },
        ensure_ascii=False,
    )


class Envelope:
    """One socket speaking the envelope; made by :meth:`Sockets.envelope
    <flask_sockets.Sockets.envelope>`. Iterate it for the client's
    application messages; the iteration ends when the client leaves.

    :param ws: The socket.
    :param rooms: The app's rooms.
    :param authorize: ``authorize(room)``: whether the client may subscribe
        to ``room`` (a falsy answer sends ``{"t":"error","room":R,
        "reason":"refused"}``); by default every room.
    :param presence: ``presence(room)``: the socket's presence payload in
        ``room`` (see :meth:`~flask_sockets.Sockets.join`), or ``None``.
    :param ping: Seconds between heartbeats (``SOCKETS_ENVELOPE_PING``).
    :param max_rooms: Rooms one socket may be in (``SOCKETS_ENVELOPE_MAX_ROOMS``).
    """

    def __init__(
        self,
        ws: WebSocket | BasicWebSocket,
        rooms: Rooms,
        *,
        authorize: t.Callable[[str], object] | None = None,
        presence: t.Callable[[str], t.Any] | None = None,
        ping: float = DEFAULTS["SOCKETS_ENVELOPE_PING"],
        max_rooms: int = DEFAULTS["SOCKETS_ENVELOPE_MAX_ROOMS"],
    ) -> None:
        if not ping > 0:
            raise ValueError(f"SOCKETS_ENVELOPE_PING must be positive, not {ping!r}")
        self.ws = ws
        self.rooms = rooms
        self.authorize = authorize
        self.presence = presence
        self.ping = float(ping)
        self.max_rooms = int(max_rooms)
        self._member: Member | None = None

    def _start(self) -> Member:
        """Accept the socket, wrap its room messages, send ``hello`` (once)."""
        if self._member is not None:
            return self._member
        member = self.rooms.register(self.ws)
        if not member.sock.accepted:
            member.sock.accept()
        self.rooms.set_format(self.ws, room_frame)
        ping = int(self.ping) if float(int(self.ping)) == self.ping else self.ping
        member.offer(json.dumps({"t": "hello", "ping": ping}), force=True)
        self._member = member
        return member

    def send(self, data: t.Any) -> None:
        """Send ``{"t":"msg","data":data}`` to this client (queued after
        the room messages already queued for it; before the iteration
        starts, after ``hello``).

        :raises TypeError: If ``data`` is not JSON-serialisable.
        """
        try:
            frame = json.dumps({"t": "msg", "data": data}, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"Envelope data must be JSON-serialisable: {e}") from None
        self._queue(frame)

    def _queue(self, frame: str) -> None:
        self._start().offer(frame, force=True)

    def __iter__(self) -> t.Iterator[t.Any]:
        """The client's application messages, while a timer sends a
        ``ping`` every ``ping`` seconds: from the socket's runner (a timer
        of its gevent hub, or a thread), not from this loop, so the
        heartbeats go on while the loop body handles a message, however
        long it takes (as long as it waits the server's way: a gevent
        server can run nothing while a handler computes without yielding).
        They stop when the iteration ends (or the socket closes)."""
        member = self._start()
        ws = member.sock  # the socket, or the adapter of another server's

        def beat() -> None:  # queued after the frames already queued
            if ws.closed:
                stop()  # an iteration the app left unfinished
            else:
                member.offer(_PING, force=True)

        stop = member.runner.every(self.ping, beat)
        try:
            while True:
                frame = ws.receive()
                if frame is None:
                    return
                data = self._handle(frame)
                if data is _CLOSED:
                    return
                if data is not _NOTHING:
                    yield data
        finally:
            stop()

    def _handle(self, frame: Message) -> t.Any:
        if not isinstance(frame, str):
            self.ws.close(int(CloseCode.UNSUPPORTED_DATA), "The envelope is JSON text frames")
            return _CLOSED
        try:
            message = json.loads(frame)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.ws.close(int(CloseCode.INVALID_DATA), "Not a JSON object")
            return _CLOSED
        kind = message.get("t")
        if kind == "msg":
            return message.get("data")
        if kind == "sub":
            self._subscribe(message)
        elif kind == "unsub":
            room = message.get("room")
            if isinstance(room, str):
                self.rooms.leave(self.ws, room)
        return _NOTHING  # "pong", and unknown frames: ignored

    def _subscribe(self, message: dict[str, t.Any]) -> None:
        room = message.get("room")
        if not isinstance(room, str) or not room or len(room) > _MAX_ROOM:
            self._queue(json.dumps({"t": "error", "reason": "bad room"}))
            return
        if room not in self.rooms.rooms_of(self.ws) and len(self.rooms.rooms_of(self.ws)) >= self.max_rooms:
            self._queue(json.dumps({"t": "error", "room": room, "reason": "too many rooms"}, ensure_ascii=False))
            return
        if self.authorize is not None and not self.authorize(room):
            self._queue(json.dumps({"t": "error", "room": room, "reason": "refused"}, ensure_ascii=False))
            return
        offset, epoch = message.get("offset"), message.get("epoch")
        position = None
        if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 and isinstance(epoch, str):
            position = Position(offset, epoch)
        presence = self.presence(room) if self.presence is not None else None
        try:
            self.rooms.resume(self.ws, room, position, presence, reply=lambda recovery: sub_frame(room, recovery))
        except ValueError as e:  # a name the broker cannot carry
            self._queue(json.dumps({"t": "error", "room": room, "reason": str(e)}, ensure_ascii=False))


class _Marker:
    pass


_NOTHING: t.Any = _Marker()
_CLOSED: t.Any = _Marker()


def envelope(
    ws: WebSocket | BasicWebSocket,
    rooms: Rooms,
    *,
    authorize: t.Callable[[str], object] | None = None,
    presence: t.Callable[[str], t.Any] | None = None,
) -> Envelope:
    """The :class:`Envelope` of ``ws`` in ``rooms``, with the app's
    ``SOCKETS_ENVELOPE_PING`` and ``SOCKETS_ENVELOPE_MAX_ROOMS``."""
    config = rooms.config
    return Envelope(
        ws,
        rooms,
        authorize=authorize,
        presence=presence,
        ping=float(config.get("SOCKETS_ENVELOPE_PING", DEFAULTS["SOCKETS_ENVELOPE_PING"])),
        max_rooms=int(config.get("SOCKETS_ENVELOPE_MAX_ROOMS", DEFAULTS["SOCKETS_ENVELOPE_MAX_ROOMS"])),
    )
