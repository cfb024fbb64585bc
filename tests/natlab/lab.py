"""NAT lab: two private LANs behind masquerading routers and a public segment,
built from Linux network namespaces with ``ip`` and ``nft`` (root only).

::

    [a 10.99.1.2]--lan--[ra 10.99.1.1 | 100.64.0.2]--+
                                                     |
    [b 10.99.2.2]--lan--[rb 10.99.2.1 | 100.64.0.3]--+--br0 [pub 100.64.0.1 relay host]
                                                     |
                                   [c 100.64.0.4]----+

Each router has a NAT type of its own (``nat_types``, set per router):

- ``cone``: port-preserving masquerade (endpoint-independent mapping), drops
  unsolicited inbound traffic (input and forward);
- ``symmetric``: masquerade ``fully-random`` (a new port per flow), same filter;
- ``public``: a 1:1 NAT: the router's WAN address forwards every inbound
  connection to its host, so the host behaves as if it had a public address.

Routers have no route to the other LAN. Nothing is created in the root
namespace and no traffic leaves the lab's namespaces. A Python port of
``../shared/natlab.sh``.

Every lab gets a unique namespace prefix (``tmnl<pid>``), so parallel runs do
not collide; labs left behind by an aborted run (whose pid is gone) are
removed the next time a lab is built. The NAT type (``cone``/``symmetric``)
and the WAN packet loss (random drops on each router's WAN side, in both
directions) can be changed on a running lab; the NAT type per router with
``set_nat_type(type, router="ra")``.

Run a command in a namespace with ``prefix_for(node)`` (``["ip", "netns",
"exec", NS]``), which ``tests.harness.Proc``/``Node`` accept as ``prefix=``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.harness import Proc, ProcGroup, script
from tests.polling import poll

PUB = "100.64.0.1"
RA_WAN = "100.64.0.2"
RB_WAN = "100.64.0.3"
C = "100.64.0.4"
A = "10.99.1.2"
B = "10.99.2.2"
ADDRESSES = {"pub": PUB, "ra": RA_WAN, "rb": RB_WAN, "a": A, "b": B, "c": C}

NODES = ("pub", "ra", "rb", "a", "b", "c")
NAT_TYPES = ("public", "cone", "symmetric")
ROUTERS = ("ra", "rb")
PREFIX_PATTERN = re.compile(r"^tmnl(\d+)-(pub|ra|rb|a|b|c|probe)$")
TOOLS = {"ip": "iproute2", "nft": "nftables"}
INSTALL_HINT = "scripts/test.sh installs what is missing (apt-get install iproute2 nftables)"


def _check_nat_type(nat_type: str) -> None:
    if nat_type not in NAT_TYPES:
        raise ValueError(f"nat_type must be one of {NAT_TYPES}, not {nat_type!r}")


class NatLabUnavailable(RuntimeError):
    """The lab cannot be built on this machine; the message says exactly why."""


def unavailable_reason() -> str | None:
    """Why the lab cannot run here (not root, ``ip``/``nft`` missing), or None."""
    if os.geteuid() != 0:
        return (
            f"NAT lab skipped: not running as root (uid {os.geteuid()}); it needs root for network "
            f"namespaces and nftables. Run the tests as root; {INSTALL_HINT}"
        )
    missing = [f"`{tool}` (package {pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        return f"NAT lab skipped: {' and '.join(missing)} not found on PATH; {INSTALL_HINT}"
    return None


def _run(argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise NatLabUnavailable(f"`{' '.join(argv)}` failed ({res.returncode}): {res.stderr.strip()}")
    return res


def list_namespaces() -> list[str]:
    res = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def _namespace_pids(ns: str) -> list[int]:
    res = _run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def kill_namespace_processes(ns: str, grace: float = 2.0) -> None:
    """SIGTERM every process in ``ns`` (only lab processes live there), then SIGKILL leftovers."""
    pids = _namespace_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    poll(lambda: not _namespace_pids(ns), grace)
    for pid in _namespace_pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def delete_namespace(ns: str) -> None:
    kill_namespace_processes(ns)
    _run(["ip", "netns", "del", ns], check=False)  # veths and the bridge die with it


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_labs() -> list[str]:
    """Delete namespaces of labs whose owning test process no longer exists."""
    reaped = []
    for ns in list_namespaces():
        m = PREFIX_PATTERN.match(ns)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            delete_namespace(ns)
            reaped.append(ns)
    return reaped


class NatLab:
    """One NAT lab. ``up()`` builds it (idempotent: rebuilds from scratch), ``down()`` removes it."""

    def __init__(self, prefix: str | None = None, nat_type: str = "cone", wan_loss: int = 0) -> None:
        _check_nat_type(nat_type)
        self.prefix = prefix or f"tmnl{os.getpid()}"
        self.nat_types = dict.fromkeys(ROUTERS, nat_type)
        self.wan_loss = wan_loss
        self.addr = dict(ADDRESSES)

    # -- names ---------------------------------------------------------------

    def ns(self, node: str) -> str:
        if node == "relay":
            node = "pub"
        if node not in NODES:
            raise ValueError(f"unknown lab node {node!r} (one of {', '.join(NODES)})")
        return f"{self.prefix}-{node}"

    def prefix_for(self, node: str) -> list[str]:
        """Command prefix running a program inside ``node``'s namespace."""
        return ["ip", "netns", "exec", self.ns(node)]

    def exec(
        self, node: str, *argv: str, timeout: float = 30.0, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [*self.prefix_for(node), *argv], capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{node}: `{' '.join(argv)}` failed ({res.returncode}): {res.stderr}")
        return res

    def namespaces(self) -> list[str]:
        return [self.ns(n) for n in NODES]

    # -- build / tear down -----------------------------------------------------

    def up(self) -> NatLab:
        reason = unavailable_reason()
        if reason:
            raise NatLabUnavailable(reason)
        reap_stale_labs()
        self.down()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        present = set(list_namespaces())
        for ns in self.namespaces():
            if ns in present:
                delete_namespace(ns)

    def __enter__(self) -> NatLab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _ns_new(self, node: str) -> None:
        ns = self.ns(node)
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(
            [
                *self.prefix_for(node),
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                f"net.ipv4.ip_forward={1 if node in ('ra', 'rb') else 0}",
            ]
        )

    def _link_pub(self, node: str, ifname: str, addr: str) -> None:
        """A veth from ``node`` into the public bridge."""
        pub, ns, peer = self.ns("pub"), self.ns(node), f"p-{node}"
        _run(["ip", "-n", pub, "link", "add", peer, "type", "veth", "peer", "name", ifname, "netns", ns])
        _run(["ip", "-n", pub, "link", "set", peer, "master", "br0", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname])
        _run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def _build(self) -> None:
        pub = self.ns("pub")
        self._ns_new("pub")
        _run(["ip", "-n", pub, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", pub, "addr", "add", f"{PUB}/24", "dev", "br0"])
        _run(["ip", "-n", pub, "link", "set", "br0", "up"])
        self._router("a", RA_WAN, 1)
        self._router("b", RB_WAN, 2)
        self._ns_new("c")
        self._link_pub("c", "eth0", C)

    def _router(self, side: str, wan: str, x: int) -> None:
        r, h = f"r{side}", side
        rns, hns = self.ns(r), self.ns(h)
        self._ns_new(r)
        self._ns_new(h)
        self._link_pub(r, "wan0", wan)
        _run(["ip", "-n", rns, "route", "add", "default", "via", PUB])
        _run(["ip", "-n", rns, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", hns])
        _run(["ip", "-n", rns, "addr", "add", f"10.99.{x}.1/24", "dev", "lan0"])
        _run(["ip", "-n", rns, "link", "set", "lan0", "up"])
        _run(["ip", "-n", hns, "addr", "add", f"10.99.{x}.2/24", "dev", "eth0"])
        _run(["ip", "-n", hns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", hns, "route", "add", "default", "via", f"10.99.{x}.1"])
        ruleset = f"""
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    {self._masq_rule(r)}
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    {self._dnat_rule(r)}
  }}
}}
table inet fw {{
  chain prerouting {{
    type filter hook prerouting priority -300; policy accept;
    {self._loss_rule("iifname")}
  }}
  chain lossout {{
    type filter hook postrouting priority 300; policy accept;
    {self._loss_rule("oifname")}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state established,related accept
    iifname "wan0" icmp type echo-request accept
    iifname "wan0" counter drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
    iifname "wan0" oifname "lan0" ct status dnat accept
    counter
  }}
}}
"""
        _run([*self.prefix_for(r), "nft", "-f", "-"], input=ruleset)

    # -- runtime knobs -------------------------------------------------------------

    @property
    def nat_type(self) -> str:
        """The NAT type of both routers, or ``"mixed"`` when they differ."""
        types = set(self.nat_types.values())
        return types.pop() if len(types) == 1 else "mixed"

    def _masq_rule(self, router: str) -> str:
        random = " fully-random" if self.nat_types[router] == "symmetric" else ""
        return f'oifname "wan0" masquerade{random}'

    def _dnat_rule(self, router: str) -> str:
        """A ``public`` router forwards every new inbound connection to its host."""
        if self.nat_types[router] != "public":
            return ""
        host = A if router == "ra" else B
        return f'iifname "wan0" dnat to {host}'

    def _loss_rule(self, direction: str) -> str:
        if not self.wan_loss:
            return ""
        return f'{direction} "wan0" numgen random mod 100 < {int(self.wan_loss)} counter drop'

    def set_wan_loss(self, percent: int) -> None:
        """Drop ``percent``% of packets at random on each router's WAN side, both directions."""
        if not 0 <= percent < 100:
            raise ValueError("loss percent must be in [0, 100)")
        self.wan_loss = percent
        for r in ("ra", "rb"):
            script = "flush chain inet fw prerouting\nflush chain inet fw lossout\n"
            if percent:
                script += f"add rule inet fw prerouting {self._loss_rule('iifname')}\n"
                script += f"add rule inet fw lossout {self._loss_rule('oifname')}\n"
            _run([*self.prefix_for(r), "nft", "-f", "-"], input=script)

    def loss_drops(self) -> int:
        """Packets the loss rules have dropped on both routers since the loss was last set."""
        total = 0
        for r in ("ra", "rb"):
            out = _run([*self.prefix_for(r), "nft", "-j", "list", "table", "inet", "fw"]).stdout
            for item in json.loads(out)["nftables"]:
                rule = item.get("rule")
                if rule and rule["chain"] in ("prerouting", "lossout"):
                    total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        return total

    def set_nat_type(self, nat_type: str, router: str | None = None) -> None:
        """Switch one router (``"ra"``/``"rb"``; both when ``None``) to ``nat_type``
        (see the module docstring). Flows already tracked keep their mapping."""
        _check_nat_type(nat_type)
        if router is not None and router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, not {router!r}")
        for r in (router,) if router else ROUTERS:
            self.nat_types[r] = nat_type
            script = f"flush chain ip nat postrouting\nadd rule ip nat postrouting {self._masq_rule(r)}\n"
            script += "flush chain ip nat prerouting\n"
            if dnat := self._dnat_rule(r):
                script += f"add rule ip nat prerouting {dnat}\n"
            _run([*self.prefix_for(r), "nft", "-f", "-"], input=script)

    def reset(self) -> None:
        """Back to the defaults (cone, no loss) and no processes left in any namespace."""
        for ns in self.namespaces():
            kill_namespace_processes(ns)
        if self.wan_loss:
            self.set_wan_loss(0)
        if set(self.nat_types.values()) != {"cone"}:
            self.set_nat_type("cone")

    def processes(self) -> dict[str, list[int]]:
        return {node: pids for node in NODES if (pids := _namespace_pids(self.ns(node)))}


@contextlib.contextmanager
def running_lab(**kwargs: object) -> Iterator[NatLab]:
    """Build a lab for the duration of a ``with`` block; always torn down."""
    lab = NatLab(**kwargs)  # type: ignore[arg-type]
    with lab:
        yield lab


def probe_lab() -> str | None:
    """Why this machine cannot build a lab (including ``ip netns add`` failing), or None."""
    reason = unavailable_reason()
    if reason:
        return reason
    ns = f"tmnl{os.getpid()}-probe"
    res = _run(["ip", "netns", "add", ns], check=False)
    if res.returncode != 0:
        return (
            f"NAT lab cannot create network namespaces: `ip netns add` failed: {res.stderr.strip()} "
            "(needs root with CAP_SYS_ADMIN and a kernel/container that allows network namespaces)"
        )
    _run(["ip", "netns", "del", ns], check=False)
    return None


# -- tiny TCP tools for topology checks ------------------------------------------

PEER_ECHO_SERVER = r"""
import json, os, socket, sys
host, ready = sys.argv[1], sys.argv[sys.argv.index("--ready-file") + 1]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, 0))
srv.listen(64)
with open(ready + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "listen": "%s:%d" % srv.getsockname()}, f)
os.replace(ready + ".tmp", ready)
while True:
    conn, peer = srv.accept()
    conn.sendall(("%s %d\n" % peer).encode())
    conn.close()
"""

TCP_PROBE = r"""
import socket, sys
host, port, timeout, sport = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = socket.socket()
s.settimeout(timeout)
try:
    if sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", sport))
    s.connect((host, port))
    print(s.makefile().readline().strip())
except OSError as err:
    print("ERR %s: %s" % (type(err).__name__, err))
    sys.exit(1)
"""


def peer_echo_server(lab: NatLab, node: str, host: str, workdir: Path) -> Proc:
    """A TCP server in ``node`` bound to ``host``:0 that answers each connection with
    the peer address it sees (``"IP PORT"``) and closes. The caller stops it."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"echo-{node}-{host}"
    return Proc(
        [sys.executable, "-c", PEER_ECHO_SERVER, host],
        workdir / f"{name}.ready",
        workdir / f"{name}.log",
        prefix=lab.prefix_for(node),
    )


def tcp_probe(
    lab: NatLab, node: str, address: str, timeout: float = 1.0, source_port: int = 0
) -> tuple[bool, str]:
    """Connect from ``node`` to ``address`` (HOST:PORT); (True, "IP PORT" the server saw)
    or (False, error)."""
    host, _, port = address.rpartition(":")
    res = lab.exec(
        node,
        sys.executable,
        "-c",
        TCP_PROBE,
        host,
        port,
        str(timeout),
        str(source_port),
        timeout=timeout + 10,
    )
    out = res.stdout.strip()
    return res.returncode == 0, out


# -- the relay host in the public namespace ------------------------------------------

RELAY_NODE_ENV = {
    # Keep the outbox's backoff short so a lost frame costs seconds, not a minute.
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "500ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "3s",
    # These tests are about the relay and dialed direct paths: no hole punching
    # (tests/natlab/test_nat_punch.py turns it back on).
    "TMAX_MESH_DIRECT_PUNCH": "false",
}


def start_relay_host(lab: NatLab, procs: ProcGroup, workdir: Path, *extra: str) -> tuple[Proc, str]:
    """``tmax-host --listen 100.64.0.1:0`` in the public namespace; returns it and its ``grpc://`` URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    host = procs.add(
        Proc(
            [script("tmax-host"), "--listen", f"{PUB}:0", *extra],
            workdir / "host.ready",
            workdir / "host.log",
            prefix=lab.prefix_for("pub"),
        )
    )
    host.start()
    listen = host.ready["listen"]
    assert listen.startswith(f"{PUB}:") and not listen.endswith(":0"), host.ready
    return host, f"grpc://{listen}"
