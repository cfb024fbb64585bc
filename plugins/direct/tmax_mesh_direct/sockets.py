"""The punch port's sockets: every one bound to the same port (DESIGN §16)."""

from __future__ import annotations

import socket
import struct


def bind_punch_socket(port: int) -> socket.socket:
    """A non-blocking TCP socket bound to ``port`` (0: pick one) that shares it with the others."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def close_with_reset(sock: socket.socket) -> socket.socket:
    """Make ``close()`` send a reset, not a FIN: a connection that died (its
    path cut) must not hold the punch port's 4-tuple in FIN_WAIT while the
    next punch to the same friend needs it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock
