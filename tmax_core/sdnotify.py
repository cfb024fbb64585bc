"""Readiness for systemd (``Type=notify`` units): the ``sd_notify`` datagram,
written here rather than pulling in a systemd library.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace); without it :func:`notify` does nothing, so the daemons call it
unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("tmax_mesh.sdnotify")

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify(*assignments: str) -> bool:
    """Send ``READY=1``, ``STOPPING=1``, ``STATUS=...`` to systemd; True if
    sent. A failure is logged, never raised: the daemon runs on without it."""
    address = os.environ.get(NOTIFY_SOCKET_ENV)
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError as err:
        log.warning("cannot notify systemd on %s: %s", address.replace("\0", "@"), err)
        return False
    return True
