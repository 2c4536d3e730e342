"""Direct candidates: which local addresses are offered, and racing a peer's candidates.

Everything here contacts only 127.0.0.1 / ::1; the interface lists are made up, except in
the one test that reads this host's real interfaces (without contacting any of them).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time

import pytest
import trio

from jet_trio._transports import netif as _netif
from jet_trio._transports.netif import InterfaceAddress, select_addresses
from jet_trio._transports.s5b import (
    MAX_TRIED_CANDIDATES,
    Candidate,
    CandidateConnectError,
    S5BError,
    candidate_host_problem,
    connect_any,
    dstaddr,
    open_s5b_listener,
    parse_transport,
    priority,
)
from jet_trio._transports.s5b_direct import open_direct_candidates
from jet_trio._xmpp.jid import JID

ALICE = JID("alice@localhost/a")
BOB = JID("bob@localhost/b")
DST = dstaddr("sid1", ALICE, BOB)
V4, V6 = socket.AF_INET, socket.AF_INET6


def ifa(name: str, address: str, *, up: bool = True, loop: bool = False) -> InterfaceAddress:
    return InterfaceAddress(name, address, V6 if ":" in address else V4, up, loop)


# -- gathering ------------------------------------------------------------------------------------


def test_every_usable_address_ranked() -> None:
    chosen = select_addresses(
        [
            ifa("lo", "127.0.0.1", loop=True),
            ifa("lo", "::1", loop=True),
            ifa("docker0", "172.17.0.1"),
            ifa("eth0", "192.168.1.20"),
            ifa("eth0", "fe80::1"),  # link-local: never
            ifa("eth0", "2001:db8::20"),
            ifa("eth0", "fd00:1::20"),
            ifa("wlan0", "10.0.0.5"),
            ifa("eth1", "93.184.216.34"),
            ifa("eth2", "198.51.100.9", up=False),  # interface down
            ifa("eth0", "169.254.3.3"),  # IPv4 link-local
            ifa("eth0", "::ffff:10.0.0.1"),  # IPv4-mapped
        ]
    )
    assert [a.address for a in chosen] == [
        "2001:db8::20",
        "93.184.216.34",
        "192.168.1.20",
        "10.0.0.5",
        "fd00:1::20",
        "172.17.0.1",  # a container bridge comes last
    ]
    prefs = [a.preference for a in chosen]
    assert prefs == sorted(prefs, reverse=True) and len(set(prefs)) == len(prefs)
    assert all(0 <= p <= 0xFFFF for p in prefs)


def test_loopback_only_when_nothing_else() -> None:
    only_lo = [ifa("lo", "127.0.0.1", loop=True), ifa("lo", "::1", loop=True)]
    assert [a.address for a in select_addresses(only_lo)] == ["127.0.0.1", "::1"]
    with_lan = [*only_lo, ifa("eth0", "10.1.2.3")]
    assert [a.address for a in select_addresses(with_lan)] == ["10.1.2.3"]
    assert [a.address for a in select_addresses(with_lan, loopback="always")][-2:] == [
        "127.0.0.1",
        "::1",
    ]
    assert select_addresses(only_lo, loopback="never") == []


def test_offered_addresses_are_bounded_and_unique() -> None:
    many = [ifa(f"eth{i}", f"10.9.{i}.1") for i in range(40)] + [ifa("eth0", "10.9.0.1")]
    chosen = select_addresses(many)
    assert len(chosen) == _netif.MAX_DIRECT_ADDRESSES
    assert len({a.address for a in chosen}) == len(chosen)


@pytest.mark.real_interfaces
def test_this_hosts_interfaces_are_read() -> None:
    found = _netif.interface_addresses()
    assert any(a.address in ("127.0.0.1", "::1") for a in found)  # every host has loopback
    assert all(a.family in (V4, V6) and "%" not in a.address for a in found)


async def test_auto_on_a_loopback_only_host_listens_on_loopback_only() -> None:
    # (conftest makes the interface list loopback-only for in-process tests)
    async with open_direct_candidates("auto") as direct:
        assert direct is not None
        bound = {host for host, _ in direct.listener.bound}
        assert bound <= {"127.0.0.1", "::1"}
        cands = direct.candidates(ALICE)
        assert [c.host for c in cands] == ["127.0.0.1", "::1"]
        assert all(c.type == "direct" and c.priority >> 16 == 126 for c in cands)
        assert len({c.port for c in cands}) == 1  # the same port for both families
        assert len({c.cid for c in cands}) == 2


async def test_explicit_addresses_in_order_and_none() -> None:
    async with open_direct_candidates(["::1", "127.0.0.1"]) as direct:
        assert direct is not None
        cands = direct.candidates(ALICE)
        assert [c.host for c in cands] == ["::1", "127.0.0.1"]
        assert cands[0].priority > cands[1].priority
    async with open_direct_candidates(None) as nothing:
        assert nothing is None


async def test_auto_on_a_networked_host_binds_one_wildcard_per_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only binds: nothing connects to these addresses (they are made up).
    fake = [
        ifa("lo", "127.0.0.1", loop=True),
        ifa("eth0", "192.0.2.77"),
        ifa("eth0", "2001:db8::77"),
    ]
    monkeypatch.setattr(_netif, "interface_addresses", lambda: fake)
    async with open_direct_candidates("auto") as direct:
        assert direct is not None
        assert {host for host, _ in direct.listener.bound} == {"::", "0.0.0.0"}
        assert len({port for _, port in direct.listener.bound}) == 1
        assert [c.host for c in direct.candidates(ALICE)] == ["2001:db8::77", "192.0.2.77"]


# -- a peer's candidates: bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "fe80::1%j12nosuch0",
     "10.0.0.1%eth0", "bad host", "-x.example", "a..b", "x" * 300, "1.2.3.4.5", "host%lo"],
)  # fmt: skip
def test_bad_candidate_hosts_are_named(host: str) -> None:
    assert candidate_host_problem(host) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "fe80::1%lo", "proxy.example.org", "a-b"])
def test_good_candidate_hosts(host: str) -> None:
    assert candidate_host_problem(host) is None


def test_invalid_ports_reject_the_transport() -> None:
    from lxml import etree

    for port in ("0", "65536", "-1", "x"):
        el = etree.fromstring(
            f"<transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='s'>"
            f"<candidate cid='c' host='127.0.0.1' jid='a@b/c' port='{port}' priority='1'/>"
            "</transport>"
        )
        with pytest.raises(S5BError):
            parse_transport(el)


async def test_bad_hosts_are_skipped_without_a_wait() -> None:
    bad = [
        Candidate(f"c{i}", host, 1080, ALICE)
        for i, host in enumerate(["fe80::1%j12nosuch0", "bad host", "0.0.0.0"])
    ]
    with trio.fail_after(1):
        with pytest.raises(CandidateConnectError) as info:
            await connect_any(bad, DST)
    assert str(info.value).count("skipped") == 3


async def silent_listener() -> trio.SocketListener:
    """Accepts TCP (the kernel does) but never answers the SOCKS5 greeting."""
    return (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]


async def test_silent_candidate_is_bounded_and_the_next_one_wins() -> None:
    silent = await silent_listener()
    port = silent.socket.getsockname()[1]
    async with open_s5b_listener() as good:
        good.expect(DST)
        cands = [
            Candidate("silent", "127.0.0.1", port, ALICE, "direct", priority("direct", 9)),
            Candidate("good", good.host, good.port, ALICE, "direct", priority("direct", 1)),
        ]
        start = time.monotonic()
        with trio.fail_after(2):
            cand, stream = await connect_any(cands, DST, attempt_timeout=10, stagger=0.2)
        assert cand.cid == "good"
        assert time.monotonic() - start < 1.5  # the stagger, not the 10 s attempt bound
        await stream.aclose()
        with trio.fail_after(3):
            with pytest.raises(CandidateConnectError, match=r"silent.*timed out"):
                await connect_any(cands[:1], DST, attempt_timeout=0.5)
    silent.socket.close()


async def test_first_handshake_wins_and_the_others_are_closed() -> None:
    async with open_s5b_listener() as a, open_s5b_listener("::1") as b:
        a.expect(DST)
        b.expect(DST)
        cands = [
            Candidate("a", "127.0.0.1", a.port, ALICE, "direct", priority("direct", 5)),
            Candidate("b", "::1", b.port, ALICE, "direct", priority("direct", 4)),
        ]
        # No stagger: both race; exactly one stream is returned, the other side sees EOF.
        cand, stream = await connect_any(cands, DST, stagger=0)
        loser = b if cand.cid == "a" else a
        winner = a if cand.cid == "a" else b
        with trio.fail_after(2):
            served = await winner.accept(DST)
        await stream.send_all(b"x")
        assert await served.receive_some(1) == b"x"
        with trio.move_on_after(0.5):
            other = await loser.accept(DST)
            with contextlib.suppress(trio.BrokenResourceError):  # closed or reset by the peer
                assert await other.receive_some(1) == b""
            await other.aclose()
        await stream.aclose()
        await served.aclose()


async def test_hundreds_of_candidates_only_the_best_are_tried() -> None:
    async with open_s5b_listener() as closed:
        port = closed.port
    # 300 candidates on closed loopback ports: refused at once.
    cands = [
        Candidate(
            f"c{i}", "127.0.0.1", 1 + (port + i) % 65535, ALICE, "direct", priority("direct", i)
        )
        for i in range(300)
    ]
    with trio.fail_after(10):
        with pytest.raises(CandidateConnectError) as info:
            await connect_any(cands, DST, attempt_timeout=1)
    # One failure per candidate tried, "cN: why" or "cN (host:port): why": refused, timed out,
    # or (when another process happens to listen on one of these ports) a failed handshake.
    failures = str(info.value).split(": ", 1)[1].split("; ")
    assert len(failures) == MAX_TRIED_CANDIDATES
    assert all(re.match(r"c\d+[ :]", f) for f in failures)
    assert "c299:" in str(info.value) and "c0:" not in str(info.value)  # the best ones


async def test_accept_hands_over_the_connection_to_the_nominated_address() -> None:
    async with open_s5b_listener(["127.0.0.1", "::1"]) as listener:
        listener.expect(DST)
        streams = []
        for host in ("127.0.0.1", "::1"):  # the peer completed handshakes on both
            cand = Candidate(host, host, listener.port_for(host), ALICE)
            streams.append((await connect_any([cand], DST))[1])
        with trio.fail_after(2):
            got = await listener.accept(DST, "::1")
        assert got.socket.getsockname()[0] == "::1"
        await got.aclose()
        for s in streams:
            await s.aclose()


async def test_direct_candidates_get_a_head_start_over_proxies() -> None:
    """A peer's direct listener slow to answer (0.6 s, a loaded host) still wins over an
    instant proxy: proxies start only after ``type_stagger`` (or once every direct failed)."""
    from jet_trio._transports.s5b import serve_socks5_handshake

    slow = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]

    async def serve_slowly() -> None:
        async with await slow.accept() as stream:
            await trio.sleep(0.6)
            await serve_socks5_handshake(stream, lambda dst: True)
            await trio.sleep_forever()

    async with open_s5b_listener() as proxy, trio.open_nursery() as nursery:
        nursery.start_soon(serve_slowly)
        proxy.expect(DST)
        direct = Candidate("direct", "127.0.0.1", slow.socket.getsockname()[1], ALICE)
        relay = Candidate("proxy", proxy.host, proxy.port, BOB, "proxy")
        with trio.fail_after(3):
            cand, stream = await connect_any([relay, direct], DST, stagger=0.1, type_stagger=1.0)
        assert cand.cid == "direct"
        await stream.aclose()
        # Once every direct candidate failed, the proxy starts at once.
        async with open_s5b_listener() as gone:
            dead_port = gone.port
        dead = Candidate("dead", "127.0.0.1", dead_port, ALICE)
        start = time.monotonic()
        cand, stream = await connect_any([relay, dead], DST, stagger=0.1, type_stagger=5.0)
        assert cand.cid == "proxy" and time.monotonic() - start < 1.0
        await stream.aclose()
        nursery.cancel_scope.cancel()
    slow.socket.close()


def test_cli_direct_host_values() -> None:
    from jet_trio._cli.errors import CLIError, ExitCode
    from jet_trio._cli.transfer import _direct_host

    assert _direct_host(("auto",)) == "auto"
    assert _direct_host(()) == "auto"
    assert _direct_host(("AUTO",)) == "auto"
    assert _direct_host(("none",)) is None
    assert _direct_host(("::1", "auto", "host.example")) == ["::1", "auto", "host.example"]
    for bad in (("none", "::1"), ("bad host",), ("fe80::1%j12nosuch0",)):
        with pytest.raises(CLIError) as info:
            _direct_host(bad)
        assert info.value.failure.code is ExitCode.USAGE


async def test_accept_falls_back_to_another_address_after_the_grace() -> None:
    """A peer behind port forwarding reaches us on another local address than the candidate
    it reports: after ``grace`` that connection is handed over; a matching one that arrives
    within the grace is preferred."""
    async with open_s5b_listener(["127.0.0.1", "::1"]) as listener:
        listener.expect(DST)
        cand = Candidate("v4", "127.0.0.1", listener.port_for("127.0.0.1"), ALICE)
        mine = (await connect_any([cand], DST))[1]
        start = time.monotonic()
        with trio.fail_after(3):
            got = await listener.accept(DST, "192.0.2.1", grace=0.3)  # compared, not contacted
        assert time.monotonic() - start >= 0.25
        assert got.socket.getsockname()[0] == "127.0.0.1"
        await got.aclose()
        await mine.aclose()

        first = (await connect_any([cand], DST))[1]
        v6 = Candidate("v6", "::1", listener.port_for("::1"), ALICE)

        async def later() -> None:
            await trio.sleep(0.1)
            streams.append((await connect_any([v6], DST))[1])

        streams: list[trio.SocketStream] = [first]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            with trio.fail_after(3):
                got = await listener.accept(DST, "::1", grace=2)
        assert got.socket.getsockname()[0] == "::1"
        await got.aclose()
        for s in streams:
            await s.aclose()


async def test_an_address_that_cannot_be_bound_is_skipped() -> None:
    """An address family or address missing here (IPv6 disabled, an address that went away)
    does not stop the listener serving the others; none at all is an error."""
    absent = "198.51.100.254"  # bound, never contacted; not an address of this host
    async with open_s5b_listener([absent, "127.0.0.1"]) as listener:
        assert [host for host, _ in listener.bound] == ["127.0.0.1"]
    with pytest.raises(OSError):
        async with open_s5b_listener([absent]):
            pass
