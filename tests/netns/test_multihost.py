"""File transfers between hosts: real network stacks (namespaces), real Prosody, the real CLI.

Every case builds its own topology (see ``_topology.py``); the only addresses in it are those
given here.  The receiver and the sender are ``jet-trio receive`` / ``jet-trio send`` processes
with default options (stub envelope, to keep key set-up out of the measured paths), run with
``--debug`` so their logs show the candidates offered and tried and when the SOCKS5 stream was
ready.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.integration._servers import ServerInfo

from ._peer import Peer, Ran
from ._topology import Host, Topology

pytestmark = [pytest.mark.netns, pytest.mark.real_interfaces, pytest.mark.integration]

StartServer = Callable[..., ServerInfo]
MakePeer = Callable[[Host, str, ServerInfo], Peer]

#: ``S5B: s5b-direct ready with bob@... in 0.12 s`` (the sender's log, see
#: jet_trio/_transfer/transports.py)
_READY = re.compile(r"S5B: (s5b-direct|s5b-proxy) ready with \S+ in ([0-9.]+) s")
_FALLBACK = re.compile(r"S5B failed with \S+ after ([0-9.]+) s, falling back to IBB")


def payload(directory: Path, size: int = 300_000) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / "payload.bin"
    src.write_bytes(os.urandom(size))
    return src


class Transfer:
    """The outcome of one ``send`` / ``receive`` pair."""

    def __init__(self, sent: Ran, received: Ran, src: Path) -> None:
        self.sent = sent
        self.received = received
        self.src = src
        assert sent.returncode == 0, f"send failed:\n{sent.stderr}"
        assert received.returncode == 0, f"receive failed:\n{received.stderr}"
        self.send_result = _one_json(sent)
        self.receive_result = _one_json(received)

    @property
    def transport(self) -> str:
        assert self.send_result["transport"] == self.receive_result["transport"]
        return str(self.send_result["transport"])

    def ready_seconds(self) -> float:
        """How long the sender took from its session-accept to a SOCKS5 stream."""
        found = _READY.search(self.sent.stderr)
        assert found, self.sent.stderr
        return float(found[2])

    def check_content(self) -> None:
        digest = hashlib.sha256(self.src.read_bytes()).hexdigest()
        assert self.send_result["sha256"] == self.receive_result["sha256"] == digest
        assert Path(self.receive_result["path"]).read_bytes() == self.src.read_bytes()


def _one_json(ran: Ran) -> dict[str, Any]:
    lines = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (ran.stdout, ran.stderr)
    obj = lines[0]
    assert isinstance(obj, dict)
    return obj


async def transfer(
    sender: Peer,
    receiver: Peer,
    tmp_path: Path,
    send_args: tuple[str, ...] = (),
    receive_args: tuple[str, ...] = (),
    envelope: str | None = "stub",
) -> Transfer:
    """``sender`` sends a random file to ``receiver``; ``envelope=None``: the command's default
    (OMEMO, negotiated)."""
    src = payload(tmp_path / f"out-{sender.user}")
    inbox = tmp_path / f"in-{receiver.user}"
    inbox.mkdir(exist_ok=True)
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["r"] = await receiver.run(
            ["receive", "--debug", "--output-dir", str(inbox), "--timeout", "60", "--json",
             "--accept-stub", *receive_args]
        )  # fmt: skip

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["s"] = await sender.run(
            ["send", "--debug", str(src), "--to", receiver.jid, "--json", "--wait", "30",
             *(("--envelope", envelope) if envelope else ()), *send_args]
        )  # fmt: skip
    done = Transfer(results["s"], results["r"], src)
    ready = _READY.search(done.sent.stderr) or _FALLBACK.search(done.sent.stderr)
    print(  # shown with -s (and in the CI log of a failure): the numbers of the issue note
        f"\n{sender.jid} -> {receiver.jid}: {done.send_result['transport']}, "
        f"{done.send_result.get('envelope')}, stream after "
        f"{ready[ready.lastindex or 0] if ready else '?'} s, "
        f"{float(done.receive_result['seconds']):.2f} s transfer"
    )
    return done


def offered_hosts(ran: Ran) -> list[str]:
    """The hosts of the direct candidates a peer offered (from its --debug log)."""
    hosts: list[str] = []
    for line in ran.stderr.splitlines():
        if "S5B: offering direct candidates" in line:
            hosts += re.findall(r"(\S+):\d+ \(priority", line.split("candidates", 1)[1])
    return hosts


def lan(topology: Topology, v4: bool = True, v6: bool = False) -> tuple[Host, Host, Host]:
    """One LAN with the server's host ``xmpp`` (.1) and hosts ``ha`` (.2) and ``hb`` (.3)."""
    switch = topology.lan("lan")
    hosts = []
    for n, name in enumerate(("xmpp", "ha", "hb"), start=1):
        host = topology.host(name)
        addresses = ([f"10.12.1.{n}/24"] if v4 else []) + ([f"fd12:1::{n}/64"] if v6 else [])
        host.attach(switch, *addresses)
        hosts.append(host)
    return hosts[0], hosts[1], hosts[2]


# -- 1. one IPv4 LAN, default options -----------------------------------------------------------

#: The server implementations a case runs against. With ejabberd the transfers use the
#: default envelope (OMEMO 2 between jet-trio peers), so its PEP (device lists, bundles) is
#: exercised across hosts too.
SERVERS = pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
OMEMO2 = "urn:xmpp:omemo:2"


def envelope_for(kind: str) -> str | None:
    return None if kind == "ejabberd" else "stub"


@SERVERS
async def test_ipv4_lan_direct_both_ways(
    topology: Topology, xmpp_server: StartServer, peer: MakePeer, tmp_path: Path, kind: str
) -> None:
    srv, ha, hb = lan(topology)
    server = xmpp_server(srv, "10.12.1.1", kind=kind)
    alice, bob = peer(ha, "alice", server), peer(hb, "bob", server)
    for sender, receiver, address in ((alice, bob, "10.12.1.2"), (bob, alice, "10.12.1.3")):
        done = await transfer(sender, receiver, tmp_path, envelope=envelope_for(kind))
        done.check_content()
        assert done.transport == "s5b-direct", done.sent.stderr
        assert offered_hosts(done.sent) == [address]  # its LAN address, not loopback
        if kind == "ejabberd":
            assert done.send_result["envelope"] == done.receive_result["envelope"] == OMEMO2, (
                done.sent.stderr[-20000:]
            )


# -- 2. an IPv6-only LAN ------------------------------------------------------------------------


async def test_ipv6_only_lan_direct_both_ways(
    topology: Topology, xmpp_server: StartServer, peer: MakePeer, tmp_path: Path
) -> None:
    srv, ha, hb = lan(topology, v4=False, v6=True)
    server = xmpp_server(srv, "fd12:1::1")
    alice, bob = peer(ha, "alice", server), peer(hb, "bob", server)
    for sender, receiver, address in ((alice, bob, "fd12:1::2"), (bob, alice, "fd12:1::3")):
        done = await transfer(sender, receiver, tmp_path)
        done.check_content()
        assert done.transport == "s5b-direct", done.sent.stderr
        assert offered_hosts(done.sent) == [address]


# -- 3. the receiver's host drops inbound connections --------------------------------------------

DROP_INBOUND = """
table inet n4fw {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname "lo" accept
        ct state established,related accept
        meta l4proto tcp ct state new drop
    }
}
"""


async def test_receiver_drops_inbound_direct_through_sender_candidate(
    topology: Topology, xmpp_server: StartServer, peer: MakePeer, tmp_path: Path
) -> None:
    srv, ha, hb = lan(topology)
    server = xmpp_server(srv, "10.12.1.1")
    hb.nft(DROP_INBOUND)
    alice, bob = peer(ha, "alice", server), peer(hb, "bob", server)
    done = await transfer(alice, bob, tmp_path)
    done.check_content()
    assert done.transport == "s5b-direct", done.sent.stderr
    # bob reached alice's candidate; alice's attempt at bob's was dropped and bounded.
    assert "connected to candidate" in done.received.stderr
    assert "10.12.1.2" in done.received.stderr.split("connected to candidate", 1)[1].split("\n")[0]
    assert done.ready_seconds() < 8, done.sent.stderr


# -- 4. two LANs behind NAT, reachable only through the server's host ---------------------------

#: A home router: masquerades what leaves through its uplink (eth1) and, like the Internet,
#: silently drops what is sent towards other private networks.
NAT_ROUTER = """
table ip n4nat {
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "eth1" masquerade
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        oifname "eth1" ip daddr 10.0.0.0/8 drop
    }
}
"""


def natted_lans(topology: Topology) -> tuple[Host, Host, Host]:
    """``ha`` behind router ``rta``, ``hb`` behind ``rtb``; both routers and the server's host
    ``xmpp`` (198.51.100.1) share the "Internet" LAN ``wan``."""
    wan = topology.lan("wan")
    srv = topology.host("xmpp")
    srv.attach(wan, "198.51.100.1/24")
    ends = []
    for n, side in ((1, "a"), (2, "b")):
        home = topology.lan(f"lan{side}")
        router = topology.host(f"rt{side}")
        router.attach(home, f"10.12.{n}.1/24")  # eth0
        router.attach(wan, f"198.51.100.{n + 1}/24")  # eth1: the uplink
        router.forwarding()
        router.route("default", "via", "198.51.100.1")
        router.nft(NAT_ROUTER)
        host = topology.host(f"h{side}")
        host.attach(home, f"10.12.{n}.2/24")
        host.route("default", "via", f"10.12.{n}.1")
        ends.append(host)
    return srv, ends[0], ends[1]


@SERVERS
async def test_nat_both_sides_proxy_within_bound(
    topology: Topology, xmpp_server: StartServer, peer: MakePeer, tmp_path: Path, kind: str
) -> None:
    srv, ha, hb = natted_lans(topology)
    server = xmpp_server(srv, "198.51.100.1", kind=kind)
    alice, bob = peer(ha, "alice", server), peer(hb, "bob", server)
    for sender, receiver in ((alice, bob), (bob, alice)):
        done = await transfer(sender, receiver, tmp_path, envelope=envelope_for(kind))
        done.check_content()
        assert done.transport == "s5b-proxy", done.sent.stderr
        # The peers' private addresses were offered and were unreachable (SYNs dropped).
        assert offered_hosts(done.sent) == [f"10.12.{1 if sender is alice else 2}.2"]
        assert done.ready_seconds() < 4.0, done.sent.stderr


# -- 5. no proxy and no direct path: in-band ----------------------------------------------------


async def test_no_proxy_no_path_ibb_with_note(
    topology: Topology, xmpp_server: StartServer, peer: MakePeer, tmp_path: Path
) -> None:
    srv, ha, hb = natted_lans(topology)
    server = xmpp_server(srv, "198.51.100.1", proxy65=False)
    alice, bob = peer(ha, "alice", server), peer(hb, "bob", server)
    done = await transfer(alice, bob, tmp_path)
    done.check_content()
    assert done.transport == "ibb"
    for result in (done.send_result, done.receive_result):
        assert "in-band" in result["note"] and "no direct or proxy" in result["note"]
    fallback = _FALLBACK.search(done.sent.stderr)
    assert fallback, done.sent.stderr
    assert float(fallback[1]) < 8, done.sent.stderr  # the attempt bound, not TCP's timeout


# -- 6. two interfaces, one blackholed towards the peer ------------------------------------------


async def test_two_interfaces_one_blackholed(
    topology: Topology, xmpp_server: StartServer, peer: MakePeer, tmp_path: Path
) -> None:
    switch, other = topology.lan("lan"), topology.lan("lanb")
    srv, ha, hb = topology.host("xmpp"), topology.host("ha"), topology.host("hb")
    srv.attach(switch, "10.12.1.1/24")
    # ha's first interface (eth0) is the one that does not reach bob: its address ranks first.
    ha.attach(other, "10.12.6.2/24")
    ha.attach(switch, "10.12.1.2/24")
    hb.attach(switch, "10.12.1.3/24")
    hb.route("10.12.6.0/24", "via", "10.12.1.2")
    # Packets for 10.12.6.2 arriving from the LAN vanish: a blackhole, SYNs silently dropped.
    ha.nft(
        """
table inet n4bh {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname "eth1" ip daddr 10.12.6.2 drop
    }
}
"""
    )
    server = xmpp_server(srv, "10.12.1.1")
    alice, bob = peer(ha, "alice", server), peer(hb, "bob", server)
    done = await transfer(alice, bob, tmp_path)
    done.check_content()
    assert done.transport == "s5b-direct", done.sent.stderr
    assert offered_hosts(done.sent) == ["10.12.6.2", "10.12.1.2"]  # best first
    assert re.search(r"trying candidate \S+ 10\.12\.6\.2:", done.received.stderr)
    line = done.received.stderr.split("connected to candidate", 1)[1].split("\n")[0]
    assert "10.12.1.2" in line, done.received.stderr
    assert done.ready_seconds() < 4.0, done.sent.stderr
