"""uvicorn (uvloop, httptools, its default ``websockets`` sans-I/O protocol)
with a Starlette echo route: python uvicorn_starlette.py PORT [--ws IMPL]

``--ws websockets`` picks uvicorn's other implementation on ``websockets``
(its legacy asyncio protocol) instead of the default ``auto``
(``websockets-sansio``). Per-message deflate stays on (``ws_per_message_deflate``,
uvicorn's default) either way; the two offer different parameters.

``/firehose`` (the hostile ``firehose`` workload): after one message from the
client, sends 64 KiB binary messages until sending fails. With
``BENCH_DEFAULT_LIMITS=1`` (the hostile workloads) the message limit is
1 MiB (uvicorn's own default is 16 MiB), otherwise 2 MiB; pings every 20 s,
20 s timeout (uvicorn's defaults) either way.
"""

from __future__ import annotations

import sys

import uvicorn
from hostile_common import PING_INTERVAL
from hostile_common import PING_TIMEOUT
from hostile_common import afirehose
from hostile_common import max_message_size
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            break
        text = message.get("text")
        if text is not None:
            await websocket.send_text(text)
        else:
            await websocket.send_bytes(message["bytes"])


async def firehose(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive()
    await afirehose(websocket.send_bytes)


app = Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/firehose", firehose)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws_max_size=max_message_size(),
        ws_ping_interval=PING_INTERVAL,
        ws_ping_timeout=PING_TIMEOUT,
        ws=sys.argv[sys.argv.index("--ws") + 1] if "--ws" in sys.argv else "auto",
        ws_per_message_deflate=True,
    )
