"""Fixtures for the multi-host tests: topologies of network namespaces built per test.

``topology``
    A fresh :class:`~tests.netns._topology.Topology` (prefix ``j12``), removed after the test.
``xmpp_server``
    ``start(host, address, proxy65=True)`` runs a private Prosody inside ``host`` (a
    namespace of the topology) listening on ``address``; stopped after the test.
``peer``
    ``peer(host, user, server)``: a :class:`Peer` that runs the real ``jet-trio`` command inside
    ``host`` as ``user`` of ``server``.

Building namespaces needs root, iproute2 and nftables: the fixtures skip, naming what is
missing, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme

from tests.integration._servers import PrivateProsody, ServerInfo, missing_server

from ._topology import Host, NetnsUnavailable, Topology, netns_problem

PREFIX = "j12"
DOMAIN = "lan.test"


@pytest.fixture
def topology() -> Iterator[Topology]:
    problem = netns_problem()
    if problem is not None:
        missing_server(f"network namespaces unavailable: {problem}")
    try:
        topo = Topology(PREFIX)
    except NetnsUnavailable as exc:
        missing_server(f"network namespaces unavailable: {exc}")
    try:
        yield topo
    finally:
        topo.close()


@pytest.fixture
def xmpp_server(tmp_path: Path) -> Iterator[Callable[..., ServerInfo]]:
    servers: list[PrivateProsody] = []
    ca = trustme.CA()

    def start(host: Host, address: str, *, proxy65: bool = True) -> ServerInfo:
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
            server.stop()


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


class Peer:
    """The ``jet-trio`` command run inside a namespace as one account."""

    def __init__(self, host: Host, user: str, server: ServerInfo, home: Path) -> None:
        self.host = host
        self.user = user
        self.jid = server.jid(user)
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        address = f"[{server.host}]" if ":" in server.host else server.host
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "xdg"),
            "COLUMNS": "200",
            "JET_TRIO_ACCOUNT": self.jid,
            "JET_TRIO_PASSWORD": server.password(user),
            "JET_TRIO_SERVER": f"{address}:{server.port}",
            "JET_TRIO_CA_FILE": server.ca_file,
        }

    async def run(self, args: Sequence[str], limit: float = 90) -> Ran:
        with trio.fail_after(limit):
            proc = await trio.run_process(
                self.host.command(sys.executable, "-m", "jet_trio", *args),
                env=self.env,
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture
def peer(tmp_path: Path) -> Callable[[Host, str, ServerInfo], Peer]:
    def make(host: Host, user: str, server: ServerInfo) -> Peer:
        return Peer(host, user, server, tmp_path / f"{host.name}-{user}")

    return make
