"""A complete agent on the tmax-mesh SDK: watch the inbox, handle each
message, reply to its sender, ack it. docs/sdk.md walks through it.

    python examples/agent_loop.py                  # the node tmax-mesh would use
    python examples/agent_loop.py --state-dir DIR  # or name one
    python examples/agent_loop.py --count 1        # stop after one message

The handler answers ``ping`` with ``pong`` and any other text with its word
count; replace :func:`handle` with your agent's work.
"""

from __future__ import annotations

import argparse
import sys

from tmax_core import InboxItem, MeshError, NodeClient


def handle(message: InboxItem) -> str:
    """The agent's work: the reply's text for one message."""
    text = message.text.strip()
    if text.lower() == "ping":
        return "pong"
    return f"{len(text.split())} words from {message.sender}"


def run(client: NodeClient, count: int | None) -> int:
    """Handle messages as they arrive (unread ones first); return how many were handled."""
    handled = 0
    for message in client.inbox_watch(include_existing_unread=True):
        reply = client.msg_send(to=message.from_node_id, text=handle(message), reply_to=message.message_id)
        # Ack only once the reply is queued: a crash before this line means the
        # message is still unread and is handled again on the next start.
        client.inbox_ack([message.message_id], sender=message.from_node_id)
        print(f"{message.message_id} from {message.sender}: replied {reply.message_id}", flush=True)
        handled += 1
        if count is not None and handled >= count:
            break
    return handled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", help="the node's state folder (default: as tmax-mesh finds it)")
    parser.add_argument("--count", type=int, help="stop after handling this many messages")
    args = parser.parse_args(argv)
    try:
        with NodeClient(state_dir=args.state_dir) as client:
            print(f"agent on node {client.node_info().node_id}", flush=True)
            run(client, args.count)
    except MeshError as err:
        print(f"agent_loop: error: {err} ({err.code})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
