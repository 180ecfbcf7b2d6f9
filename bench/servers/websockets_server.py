"""``websockets`` (its asyncio server) echo on uvloop: python websockets_server.py PORT"""

from __future__ import annotations

import sys

import uvloop
from websockets.asyncio.server import serve


async def echo(ws):  # type: ignore[no-untyped-def]
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=2 * 1024 * 1024) as server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
