"""Post into a chat room from a process that serves no sockets: a cron job,
a task queue worker, a shell.

It publishes through the same Redis as the chat servers, so every person in
the room sees the message, whichever worker or host they are connected to::

    SOCKETS_MESSAGE_QUEUE=redis://127.0.0.1:6379/0 python examples/chat/announce.py lobby "Back in 5 minutes"

Without ``SOCKETS_MESSAGE_QUEUE`` messages stay in the process that publishes
them, so there would be nobody to reach: the script refuses.
"""

import argparse
import sys

from app import app  # this folder's app.py

from flask_sockets import MessageQueueUnavailable
from flask_sockets.envelope import publish


def main(argv=None):
    parser = argparse.ArgumentParser(description="Post a message into a chat room through Redis.")
    parser.add_argument("room", help="the room, e.g. lobby")
    parser.add_argument("text", help="the message")
    parser.add_argument("--name", default="announcer", help="who says it (default: announcer)")
    args = parser.parse_args(argv)
    if not app.config["SOCKETS_MESSAGE_QUEUE"]:
        parser.error("set SOCKETS_MESSAGE_QUEUE to the chat servers' Redis URL (redis://host:6379/0)")
    event = {"type": "say", "id": "announcer", "name": args.name, "text": args.text}
    try:
        publish(args.room, event, app=app)
    except MessageQueueUnavailable as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
