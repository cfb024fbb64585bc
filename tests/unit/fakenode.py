"""A fake local node API for tests of what the CLI and the SDK make of a reply:
whatever listens on the node socket answers, so replies here are any protobuf."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tmax_core.proto import node_pb2 as pb


def serve_replies(sock: Path, replies: dict[str, Any]) -> grpc.Server:
    """A local API on ``sock`` answering each RPC named in ``replies`` with that reply."""

    def handler(reply: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            lambda _request, _context: reply,
            request_deserializer=lambda b: b,
            response_serializer=type(reply).SerializeToString,
        )

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "tmax_mesh.node.v1.NodeApi", {name: handler(r) for name, r in replies.items()}
            )
        ]
    )
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    return server


def status_reply(details_json: str, name: str = "relay", state: str = "connected") -> pb.NodeStatusReply:
    """A NodeStatus reply with one transport whose details are ``details_json``."""
    return pb.NodeStatusReply(
        node_id="0x" + "00" * 20,
        transports=[pb.TransportStatus(name=name, state=state, details_json=details_json)],
    )
