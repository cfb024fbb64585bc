"""The Prometheus endpoint of both daemons: ``/metrics`` (any other path too,
as prometheus_client serves it) and ``/healthz`` for load balancers and
probes, from one small threaded HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from tmax_core.errors import ConfigError

HEALTHZ = "/healthz"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log lines
        return None


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serving in a daemon thread from construction; ``bound`` is ``HOST:PORT``
    with the real port (when asked for port 0)."""

    def __init__(
        self, listen: str, registry: CollectorRegistry, healthy: Callable[[], bool] = lambda: True
    ) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        metrics = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == HEALTHZ:
                ok = healthy()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
                )
                return [b"ok\n" if ok else b"unhealthy\n"]
            return metrics(environ, start_response)

        server_class: type[WSGIServer] = _Server6 if ":" in host else ThreadingWSGIServer
        try:
            self._httpd = make_server(host, int(port), app, server_class, handler_class=_QuietHandler)
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"cannot serve metrics on {listen}: {getattr(err, 'strerror', None) or err}"
            ) from None
        self.bound = f"{listen.rpartition(':')[0]}:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
