"""What ``tmax-host`` needs to start a cluster member (``--cluster``) without
importing the NATS client: a standalone host parses the flag and pays nothing
else, and NATS is loaded only when a cluster is joined (:mod:`clusterjoin`).

A NATS URL may carry credentials (``nats://user:pass@HOST:PORT``,
``nats://token@HOST:PORT``): every error and log line shows it through
:func:`without_credentials` or :func:`scrub`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from tmax_core.errors import MeshError

SCHEMES = ("nats", "tls")
HIDDEN = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class ClusterError(MeshError):
    """The cluster cannot be joined (reported as one line, exit 1)."""

    code = "cluster"


def _credentials(url: str) -> tuple[str, str, str]:
    """``url`` as (scheme and ``//``, what precedes its last ``@``, what follows it).

    Everything before the last ``@`` counts as credentials, whatever URL parsing
    would make of it: a password holding ``@``, ``/`` or ``#`` unescaped stays hidden.
    """
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    secret, _, rest = url[start:].rpartition("@")
    return url[:start], secret, rest


def without_credentials(url: str) -> str:
    """``url`` as logs and errors may show it: a user, password or token replaced by ``***``."""
    head, secret, rest = _credentials(url)
    return f"{head}{HIDDEN}@{rest}" if secret else url


def scrub(text: str, urls: Iterable[str]) -> str:
    """``text`` (an error from the NATS client, say) with the credentials of ``urls`` hidden."""
    for url in urls:
        _, secret, _ = _credentials(url)
        if secret:
            text = text.replace(f"{secret}@", f"{HIDDEN}@")
    return text


def parse_cluster_urls(text: str) -> list[str]:
    """``nats://HOST:PORT[,nats://...]`` (``tls://`` too) as a list; ValueError says what is wrong."""
    urls = [part.strip() for part in str(text).split(",") if part.strip()]
    if not urls:
        raise ValueError("give at least one NATS server URL, e.g. nats://127.0.0.1:4222")
    for n, url in enumerate(urls, 1):
        try:
            parts = urlsplit(url)
            valid = parts.scheme in SCHEMES and bool(parts.hostname) and parts.port is not None
        except ValueError:  # a port out of range or not a number, a broken IPv6 address
            valid = False
        if valid:
            continue
        if "@" in url or "@" not in text:
            raise ValueError(f"{without_credentials(url)!r} is not a NATS server URL like nats://HOST:PORT")
        # A piece with no "@" of a value that has one: maybe a password cut at a comma.
        raise ValueError(
            f"URL {n} of {len(urls)} is not a NATS server URL like nats://HOST:PORT "
            "(not shown: the value holds credentials, and ',' separates URLs)"
        )
    return urls
