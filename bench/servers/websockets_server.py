"""``websockets`` (its asyncio server) on uvloop: python websockets_server.py PORT

``/echo`` echoes; ``/firehose`` (the hostile ``firehose`` workload), after one
message from the client, sends 64 KiB binary messages until sending fails.
With ``BENCH_DEFAULT_LIMITS=1`` (the hostile workloads) the message limit
is websockets' default 1 MiB, otherwise 2 MiB; keepalive pings stay at
its defaults (every 20 s, 20 s timeout) either way.
"""

from __future__ import annotations

import sys

import uvloop
from hostile_common import PING_INTERVAL
from hostile_common import PING_TIMEOUT
from hostile_common import afirehose
from hostile_common import max_message_size
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def firehose(ws: ServerConnection) -> None:
    await ws.recv()
    await afirehose(ws.send)


async def route(ws: ServerConnection) -> None:
    assert ws.request is not None
    await (firehose if ws.request.path == "/firehose" else echo)(ws)


async def main(port: int) -> None:
    async with serve(
        route, "127.0.0.1", port, max_size=max_message_size(), ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
