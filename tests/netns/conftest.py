"""Fixtures for the multi-host tests: topologies of network namespaces built per test.

``topology``
    A fresh :class:`~tests.netns._topology.Topology` (prefix ``n4``), removed after the test;
    :func:`topology_for` gives one with another prefix (a module's own fixture uses it).
``xmpp_server``
    ``start(host, address, proxy65=True, kind="prosody")`` runs a private Prosody (or, with
    ``kind="ejabberd"``, ejabberd with its mod_proxy65) inside ``host`` (a namespace of the
    topology) listening on ``address``; stopped after the test.
``peer``
    ``peer(host, user, server)``: a :class:`Peer` that runs the real ``jet-trio`` command inside
    ``host`` as ``user`` of ``server`` (see ``_peer.py``).

Building namespaces needs root, iproute2 and nftables: the fixtures skip, naming what is
missing, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.integration._servers import (
    PrivateEjabberd,
    PrivateProsody,
    PrivateServer,
    ServerInfo,
    ServerUnavailable,
    missing_server,
)

from ._peer import Peer
from ._topology import Host, NetnsUnavailable, Topology, netns_problem

PREFIX = "n4"
DOMAIN = "lan.test"


@contextlib.contextmanager
def topology_for(prefix: str) -> Iterator[Topology]:
    """A fresh :class:`Topology` whose namespaces and interfaces are named with ``prefix``,
    removed at the end; skips (fails on CI) when namespaces cannot be built here."""
    problem = netns_problem()
    if problem is not None:
        missing_server(f"network namespaces unavailable: {problem}")
    try:
        topo = Topology(prefix)
    except NetnsUnavailable as exc:
        missing_server(f"network namespaces unavailable: {exc}")
    try:
        yield topo
    finally:
        topo.close()


@pytest.fixture
def topology() -> Iterator[Topology]:
    with topology_for(PREFIX) as topo:
        yield topo


@pytest.fixture
def xmpp_server(tmp_path: Path) -> Iterator[Callable[..., ServerInfo]]:
    servers: list[PrivateServer] = []
    ca = trustme.CA()

    def start(
        host: Host, address: str, *, proxy65: bool = True, kind: str = "prosody"
    ) -> ServerInfo:
        server: PrivateServer
        if kind == "ejabberd":
            assert proxy65, "the ejabberd set-up always has mod_proxy65"
            try:
                server = PrivateEjabberd(ca, domain=DOMAIN, host=address, netns=host.ns)
            except ServerUnavailable as exc:
                missing_server(str(exc))
            servers.append(server)
            return server.start()
        server = PrivateProsody(
            tmp_path / f"prosody-{len(servers)}",
            ca,
            domain=DOMAIN,
            netns=host.ns,
            host=address,
            proxy65=proxy65,
            stanza_debug=False,
        )
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def peer(tmp_path: Path) -> Callable[[Host, str, ServerInfo], Peer]:
    def make(host: Host, user: str, server: ServerInfo) -> Peer:
        return Peer(host, user, server, tmp_path / f"{host.name}-{user}")

    return make
