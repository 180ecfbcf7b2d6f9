"""picows (Cython) echo on uvloop, frame by frame: python picows_server.py PORT"""

from __future__ import annotations

import sys

import uvloop
from picows import WSFrame
from picows import WSListener
from picows import WSMsgType
from picows import WSTransport
from picows import ws_create_server

_DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


class Echo(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type in _DATA:
            transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


async def main(port: int) -> None:
    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port, max_frame_size=2 * 1024 * 1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
