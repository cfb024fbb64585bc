"""``tmax-host --punch-listen``: where the hole-punching observer listens."""

from __future__ import annotations

import socket
import subprocess

from tests.harness import ProcGroup, script
from tests.unit.test_punch_link import _free_port


def test_punch_listen_fixes_the_observer_port(procs: ProcGroup) -> None:
    port = _free_port()
    host = procs.host("host", "--punch-listen", f"127.0.0.1:{port}")
    assert host.ready["punch_port"] == port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.settimeout(5)
        assert conn.recv(1) == b""  # no node waits to map from here: closed at once


def test_punch_listen_in_use_is_a_clean_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run(
            [script("tmax-host"), "--listen", "127.0.0.1:0", "--punch-listen", busy],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"cannot listen on {busy} (--punch-listen)" in done.stderr and "Traceback" not in done.stderr
