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
from hostile_common import FIREHOSE_PAYLOAD
from hostile_common import PING_INTERVAL
from hostile_common import PING_TIMEOUT
from hostile_common import Firehose
from hostile_common import ended_by
from hostile_common import max_message_size
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def firehose(ws: ServerConnection) -> None:
    await ws.recv()
    hose = Firehose()
    error: BaseException | None = None
    try:
        while hose.more():
            await ws.send(FIREHOSE_PAYLOAD)
            hose.sent()
    except Exception as e:  # the connection is gone: the handler ends
        error = e
    except BaseException as e:  # cancelled: report it, let it go on
        error = e
        raise
    finally:
        hose.done(ended_by(error))


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
