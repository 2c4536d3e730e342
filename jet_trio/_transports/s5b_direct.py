"""Direct SOCKS5 candidates: which local addresses are offered, and the listener serving them.

``direct_addresses`` of :func:`~jet_trio.open_file_transfer` is resolved here: ``"auto"`` means
every usable address of every interface that is up (see :mod:`jet_trio._transports.netif`),
gathered anew
for every offer; a list names addresses (IP literals or host names; an ``"auto"`` entry stands
for the gathered ones) in the order of preference; ``None`` offers no direct candidate.

One listening socket per address family (the wildcard ``::``, IPv6-only, and ``0.0.0.0``, on
the same port where possible) serves every gathered address; when only loopback addresses are
offered, only those are bound.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import trio

from .._jingle.machine import new_sid
from .._xmpp.jid import JID
from . import netif as _netif
from .s5b import Candidate, S5BListener, open_s5b_listener, priority

__all__ = ["DirectAddresses", "DirectCandidates", "open_direct_candidates"]

DirectAddresses: TypeAlias = Literal["auto"] | Sequence[str] | None

log = logging.getLogger(__name__)

_WILDCARD: Final = {socket.AF_INET6: "::", socket.AF_INET: "0.0.0.0"}


@dataclass(frozen=True, slots=True)
class _Entry:
    host: str  # what is offered: an IP literal or a host name
    families: frozenset[socket.AddressFamily]
    loopback: bool


def _literal_family(host: str) -> socket.AddressFamily | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


async def _explicit_entry(host: str) -> _Entry:
    family = _literal_family(host)
    if family is not None:
        return _Entry(host, frozenset({family}), ipaddress.ip_address(host).is_loopback)
    try:
        infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"direct address {host!r} does not resolve: {exc}") from None
    families = frozenset(socket.AddressFamily(info[0]) for info in infos) & set(_WILDCARD)
    loop = all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)
    if not families:
        raise ValueError(f"direct address {host!r} has no IPv4 or IPv6 address")
    return _Entry(host, families, loop)


def _gathered() -> list[_netif.LocalAddress]:
    return _netif.select_addresses(_netif.interface_addresses())


class DirectCandidates:
    """The listener and the direct candidates offered through it (see the module docstring)."""

    def __init__(self, listener: S5BListener, spec: Sequence[str], explicit: list[_Entry]) -> None:
        self.listener = listener
        self._spec = tuple(spec)
        self._explicit = {e.host: e for e in explicit}
        self._wild = {
            socket.AF_INET6 if ":" in host else socket.AF_INET
            for host, _ in listener.bound
            if host in ("::", "0.0.0.0")
        }

    def _servable(self, address: str, family: socket.AddressFamily, loopback: bool) -> bool:
        if family in self._wild:
            return True
        return loopback and any(host == address for host, _ in self.listener.bound)

    def addresses(self) -> list[tuple[str, int]]:
        """(host, local preference) of every direct address to offer now, best first."""
        out: list[tuple[str, int]] = []
        for n, item in enumerate(self._spec):
            if item == "auto":
                for a in _gathered():
                    if self._servable(a.address, a.family, a.kind == "loopback"):
                        out.append((a.address, a.preference))
            else:
                out.append((item, max(0, 0xFFFF - n)))
        seen: set[str] = set()
        unique = []
        for host, pref in out:
            if host not in seen:
                seen.add(host)
                unique.append((host, pref))
        return unique[: _netif.MAX_DIRECT_ADDRESSES]

    def candidates(self, me: JID) -> list[Candidate]:
        """Fresh direct candidates (new cids) for one offer."""
        found = [
            Candidate(
                new_sid(),
                host,
                self.listener.port_for(host),
                me,
                "direct",
                priority("direct", pref),
            )
            for host, pref in self.addresses()
        ]
        log.debug(
            "S5B: offering direct candidates %s",
            ", ".join(f"{c.host}:{c.port} (priority {c.priority})" for c in found) or "none",
        )
        return found


@asynccontextmanager
async def open_direct_candidates(
    direct_addresses: DirectAddresses,
) -> AsyncIterator[DirectCandidates | None]:
    """Resolve ``direct_addresses``, bind the listener(s); ``None`` if no direct candidate."""
    if direct_addresses is None:
        yield None
        return
    spec = [direct_addresses] if isinstance(direct_addresses, str) else list(direct_addresses)
    if not spec:
        yield None
        return
    explicit: list[_Entry] = []
    bind_wild: set[socket.AddressFamily] = set()
    bind_loop: list[str] = []
    for item in spec:
        if not isinstance(item, str) or not item:
            raise ValueError(f"invalid direct address {item!r}")
        if item == "auto":
            gathered = _gathered()
            for a in gathered:
                if a.kind == "loopback":
                    bind_loop.append(a.address)
                else:
                    bind_wild.add(a.family)
            continue
        entry = await _explicit_entry(item)
        explicit.append(entry)
        if entry.loopback and _literal_family(item) is not None:
            bind_loop.append(item)
        else:
            bind_wild |= entry.families
    hosts = [_WILDCARD[f] for f in (socket.AF_INET6, socket.AF_INET) if f in bind_wild]
    hosts += [h for h in dict.fromkeys(bind_loop) if _literal_family(h) not in bind_wild]
    if not hosts:  # "auto" on a host without any address at all
        yield None
        return
    async with open_s5b_listener(hosts) as listener:
        log.debug("S5B: listening on %s", ", ".join(f"[{h}]:{p}" for h, p in listener.bound))
        yield DirectCandidates(listener, spec, explicit)
