"""Network topologies built from Linux network namespaces, for multi-host tests.

A :class:`Topology` creates namespaces ("hosts"), LANs (a Linux bridge inside a namespace of its
own, so nothing is added to the machine's own network stack), veth links between them,
addresses, routes, nftables rules and ``/etc/netns/<ns>/hosts`` files, and removes all of it
again in :meth:`Topology.close`.  Every name starts with the topology's prefix, so parallel
users with other prefixes never collide; only the addresses given here (documentation and
private ranges inside the namespaces) exist in these stacks, so a test can contact nothing else.

Typical use (see ``conftest.py`` for the fixtures)::

    topo = Topology("n4")
    lan = topo.lan("lan")
    a = topo.host("a")
    a.attach(lan, "10.12.1.2/24", "fd12:1::2/64")
    topo.run(a, "ping", "-c1", "10.12.1.3")
    topo.close()

Needs root, ``ip`` (iproute2) and ``nft`` (nftables).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Host", "Lan", "NetnsUnavailable", "Topology", "in_netns", "netns_problem"]

_CLONE_NEWNET = 0x40000000


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be built here (not root, tools missing, no kernel support)."""


def netns_problem() -> str | None:
    """Why namespaces cannot be built on this machine, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return None


def _run(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if check and proc.returncode != 0:
        raise NetnsUnavailable(
            f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Run the calling thread inside network namespace ``ns`` for the ``with`` block.

    Sockets created inside stay in ``ns`` after the block.  Uses ``setns(2)``, which moves
    only the calling thread.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - cannot happen as root
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(own)


@dataclass
class Lan:
    """A broadcast domain: a bridge in its own namespace."""

    name: str  # the namespace holding the bridge
    ports: int = 0


@dataclass
class Host:
    """A network namespace standing for one machine."""

    topo: Topology = field(repr=False)
    name: str  # short name given by the test
    ns: str  # namespace name (prefixed)
    addresses: list[str] = field(default_factory=list)  # every address added, without prefix
    interfaces: list[str] = field(default_factory=list)

    def attach(
        self,
        lan: Lan,
        *addresses: str,
        ifname: str | None = None,
    ) -> str:
        """Link this host to ``lan`` with a new veth interface carrying ``addresses`` (CIDR)."""
        return self.topo.attach(self, lan, *addresses, ifname=ifname)

    def link(self, other: Host, *addresses: str, ifname: str | None = None) -> str:
        """A point-to-point veth to ``other``; ``addresses`` go on this host's end."""
        return self.topo.link(self, other, *addresses, ifname=ifname)

    def ip(self, *args: str) -> str:
        return self.topo.run(self, "ip", *args).stdout

    def route(self, *args: str) -> None:
        """``ip route replace ARGS`` (``-6`` first for IPv6) inside this host."""
        if args and args[0] == "-6":
            self.ip("-6", "route", "replace", *args[1:])
        else:
            self.ip("route", "replace", *args)

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset (``nft -f -``) inside this host."""
        self.topo.run(self, "nft", "-f", "-", input=ruleset)

    def forwarding(self) -> None:
        """Make this host a router (IPv4 and IPv6 forwarding)."""
        self.topo.run(self, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.topo.run(self, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")

    def hosts_file(self, entries: dict[str, str]) -> None:
        """Write ``/etc/netns/<ns>/hosts`` (name -> address), seen by ``ip netns exec``."""
        directory = Path("/etc/netns") / self.ns
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        lines += [f"{addr} {name}" for name, addr in entries.items()]
        (directory / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def command(self, *args: str) -> list[str]:
        """``args`` as a command line run inside this host."""
        return ["ip", "netns", "exec", self.ns, *args]

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(*args), **kwargs)


class Topology:
    """Namespaces, bridges, links and rules with one name prefix; :meth:`close` removes them."""

    def __init__(self, prefix: str) -> None:
        problem = netns_problem()
        if problem is not None:
            raise NetnsUnavailable(problem)
        if not prefix.isalnum() or len(prefix) > 5:
            raise ValueError("the prefix must be at most 5 letters or digits")
        self.prefix = prefix
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._links = 0
        self._closed = False
        self._sweep()  # leftovers of a run that was killed

    # -- building -----------------------------------------------------------------------------

    def _namespace(self, name: str) -> str:
        if not name.startswith(_OUR_NAMES) or not name.isalnum():
            raise ValueError(f"names start with one of {_OUR_NAMES}, got {name!r}")
        ns = f"{self.prefix}{name}"
        if ns in self._namespaces:
            raise ValueError(f"namespace {ns} exists already")
        _run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # Names are resolved from /etc/netns/<ns>/hosts only; no DNS server is reachable.
        directory = Path("/etc/netns") / ns
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "resolv.conf").write_text("nameserver 127.0.0.1\n", encoding="utf-8")
        return ns

    def host(self, name: str) -> Host:
        """A new host (namespace ``<prefix><name>``) with only loopback up."""
        host = Host(self, name, self._namespace(name))
        self.hosts[name] = host
        return host

    def lan(self, name: str) -> Lan:
        """A new LAN: bridge ``br0`` in namespace ``<prefix><name>``."""
        ns = self._namespace(name)
        _run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", ns, "link", "set", "br0", "up"])
        return Lan(ns)

    def _addresses(self, host: Host, ifname: str, addresses: Sequence[str]) -> None:
        for cidr in addresses:
            iface = ipaddress.ip_interface(cidr)
            extra = ["nodad"] if iface.version == 6 else []
            _run(["ip", "-n", host.ns, "addr", "add", cidr, "dev", ifname, *extra])
            host.addresses.append(str(iface.ip))
        _run(["ip", "-n", host.ns, "link", "set", ifname, "up"])

    def attach(self, host: Host, lan: Lan, *addresses: str, ifname: str | None = None) -> str:
        ifname = ifname or f"eth{len(host.interfaces)}"
        lan.ports += 1
        port = f"p{lan.ports}"
        _run(
            [
                "ip", "link", "add", ifname, "netns", host.ns, "type", "veth",
                "peer", "name", port, "netns", lan.name,
            ]
        )  # fmt: skip
        _run(["ip", "-n", lan.name, "link", "set", port, "master", "br0", "up"])
        host.interfaces.append(ifname)
        self._addresses(host, ifname, addresses)
        return ifname

    def link(self, a: Host, b: Host, *addresses: str, ifname: str | None = None) -> str:
        """A veth between ``a`` and ``b``: ``addresses`` on ``a``'s end; returns b's end name."""
        a_if = ifname or f"eth{len(a.interfaces)}"
        b_if = f"eth{len(b.interfaces)}"
        _run(
            [
                "ip", "link", "add", a_if, "netns", a.ns, "type", "veth",
                "peer", "name", b_if, "netns", b.ns,
            ]
        )  # fmt: skip
        a.interfaces.append(a_if)
        b.interfaces.append(b_if)
        self._addresses(a, a_if, addresses)
        _run(["ip", "-n", b.ns, "link", "set", b_if, "up"])
        return b_if

    def add_address(self, host: Host, ifname: str, *addresses: str) -> None:
        self._addresses(host, ifname, addresses)

    # -- running --------------------------------------------------------------------------------

    def run(
        self, host: Host, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``host`` to completion (raises on failure with ``check``)."""
        proc = subprocess.run(
            host.command(*args),
            input=input,
            capture_output=True,
            text=True,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"in {host.ns}: {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    # -- cleaning up ------------------------------------------------------------------------------

    def _sweep(self) -> None:
        listed = _run(["ip", "netns", "list"], check=False).stdout.split()
        # Only our own prefix followed by a lower-case name we could have made; never another's
        # (``n4`` must not sweep ``n4d...``: our names never start with "d" after the prefix).
        for ns in listed:
            if ns.startswith(self.prefix) and ns[len(self.prefix) :].startswith(_OUR_NAMES):
                _run(["ip", "netns", "delete", ns], check=False)
                shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)

    def close(self) -> None:
        """Delete every namespace (and so every interface and rule) this topology made."""
        if self._closed:
            return
        self._closed = True
        for ns in reversed(self._namespaces):
            _run(["ip", "netns", "delete", ns], check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        self._namespaces.clear()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The names tests give to hosts and LANs start with one of these (the sweep of leftovers
#: deletes only those).
_OUR_NAMES = ("h", "lan", "xmpp", "rt", "nat", "wan")
