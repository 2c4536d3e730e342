"""The local addresses offered as direct SOCKS5 candidates (XEP-0260), and their ranking.

Interfaces and their addresses come from :mod:`psutil` (``net_if_addrs`` / ``net_if_stats``):
a maintained, typed-at-the-boundary, cross-platform library with wheels for every platform we
run on, that also tells whether an interface is up and whether it is a loopback device.  The
rest is pure: :func:`select_addresses` filters and ranks a list of :class:`InterfaceAddress`,
so the policy is unit-tested with made-up interfaces.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = [
    "MAX_DIRECT_ADDRESSES",
    "AddressClass",
    "InterfaceAddress",
    "LocalAddress",
    "address_class",
    "interface_addresses",
    "local_preference",
    "select_addresses",
]

AddressClass: TypeAlias = Literal[
    "ipv6-global", "ipv4-public", "ipv4-private", "ipv6-ula", "loopback", "link-local", "unusable"
]

#: How the address classes rank (first best): global IPv6 needs no NAT, public IPv4 neither; a
#: private IPv4 or a unique-local IPv6 address only works inside its own network.
_CLASS_RANK: Final[dict[AddressClass, int]] = {
    "ipv6-global": 0,
    "ipv4-public": 1,
    "ipv4-private": 2,
    "ipv6-ula": 3,
    "loopback": 6,
}

#: Interfaces of containers, virtual machines and VPN software (bridges to local guests): ranked
#: after the host's own interfaces, since a peer on another machine can rarely reach them.
_VIRTUAL_PREFIXES: Final = (
    "docker",
    "br-",
    "virbr",
    "veth",
    "lxcbr",
    "lxdbr",
    "vmnet",
    "vboxnet",
    "cni",
    "flannel",
    "podman",
    "zt",
)

#: At most this many local addresses are offered (a host with many interfaces or addresses
#: would otherwise make the peer try them all).
MAX_DIRECT_ADDRESSES: Final = 8

_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
_ULA: Final = ipaddress.IPv6Network("fc00::/7")


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address of one network interface, as the system reports it."""

    interface: str
    address: str  # without a ``%scope`` suffix
    family: socket.AddressFamily
    up: bool = True
    loopback_interface: bool = False


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """A local address chosen as a direct candidate, with its XEP-0260 local preference."""

    interface: str
    address: str
    family: socket.AddressFamily
    kind: AddressClass
    preference: int  # 0..65535, higher is better


def address_class(address: str) -> AddressClass:
    """Classify an IP address literal (a ``%scope`` suffix is ignored)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unusable"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "unusable"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None or ip.sixtofour is not None or ip.teredo is not None:
            return "unusable"
        if ip in _ULA:
            return "ipv6-ula"
        return "ipv6-global"
    if ip.is_private or ip in _CGNAT:
        return "ipv4-private"
    return "ipv4-public"


def _is_virtual(interface: str) -> bool:
    return interface.lower().startswith(_VIRTUAL_PREFIXES)


def local_preference(kind: AddressClass, virtual: bool, index: int) -> int:
    """The XEP-0260 local preference (0..65535) of the ``index``-th address of its class."""
    rank = _CLASS_RANK[kind] + (8 if virtual else 0)
    return max(0, 65535 - rank * 1024 - min(index, 1023))


def select_addresses(
    addresses: Iterable[InterfaceAddress],
    *,
    loopback: Literal["auto", "never", "always"] = "auto",
    limit: int = MAX_DIRECT_ADDRESSES,
) -> list[LocalAddress]:
    """The usable addresses of the interfaces that are up, best first, at most ``limit``.

    Global and unique-local IPv6, public and private IPv4 are kept; link-local addresses are
    not (they need a scope the peer cannot know), nor multicast, unspecified or IPv4-mapped
    ones.  Loopback addresses are kept only when nothing else is (``loopback="auto"``: a host
    without a network, such as a test namespace), or always/never as asked.
    """
    kept: list[tuple[int, int, InterfaceAddress, AddressClass, bool]] = []
    loop: list[InterfaceAddress] = []
    seen: set[str] = set()
    for order, a in enumerate(addresses):
        if not a.up or a.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        kind = address_class(a.address)
        key = a.address.lower()
        if key in seen:
            continue
        if kind == "loopback" or (a.loopback_interface and kind != "unusable"):
            seen.add(key)
            loop.append(a)
            continue
        if kind in ("link-local", "unusable"):
            continue
        seen.add(key)
        virtual = _is_virtual(a.interface)
        kept.append((_CLASS_RANK[kind] + (8 if virtual else 0), order, a, kind, virtual))
    kept.sort(key=lambda t: (t[0], t[1]))
    out: list[LocalAddress] = []
    per_class: dict[tuple[AddressClass, bool], int] = {}
    for _, _, a, kind, virtual in kept:
        n = per_class.get((kind, virtual), 0)
        per_class[(kind, virtual)] = n + 1
        out.append(
            LocalAddress(a.interface, a.address, a.family, kind, local_preference(kind, virtual, n))
        )
    if loopback == "always" or (loopback == "auto" and not out):
        for n, a in enumerate(loop):
            out.append(
                LocalAddress(
                    a.interface,
                    a.address,
                    a.family,
                    "loopback",
                    local_preference("loopback", False, n),
                )
            )
    return out[:limit]


def interface_addresses() -> Sequence[InterfaceAddress]:
    """Every IPv4 and IPv6 address of every interface of this host (network namespace)."""
    import psutil

    stats = psutil.net_if_stats()
    found: list[InterfaceAddress] = []
    for name, addrs in psutil.net_if_addrs().items():
        stat = stats.get(name)
        up = bool(stat.isup) if stat is not None else False
        flags = str(getattr(stat, "flags", "")) if stat is not None else ""
        is_loop = "loopback" in flags.split(",")
        for snic in addrs:
            family = snic.family
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = str(snic.address).split("%", 1)[0]
            found.append(InterfaceAddress(str(name), address, family, up, is_loop))
    return found
