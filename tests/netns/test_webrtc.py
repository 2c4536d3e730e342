"""The WebRTC data-channel transport between network namespaces: LAN, two NATs with STUN,
symmetric NATs through TURN (coturn), relay-only, a DTLS man in the middle, a silent peer and
blocked UDP.

Each peer's asyncio thread is moved into its host's namespace, so ICE sees only the addresses
these tests create. Signalling goes through the element codec (build, parse) as the Jingle
driver will carry it; the offer and answer travel without candidates and the candidates are
trickled, as Conversations sends them.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import os
import shutil
import subprocess
import time
from base64 import b64encode
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from lxml import etree

from jet_trio._jet.cipher import TransportSecret
from jet_trio._jet.stream import DecryptingReceiveStream, EncryptingSendStream
from jet_trio._plugins.builtin_ciphers import AES256GCM
from jet_trio._transports import webrtc_element as we
from jet_trio._transports.webrtc import (
    DataChannelStalled,
    DataChannelTimeout,
    DtlsFingerprintMismatch,
    IceFailed,
    IceGatheringTimeout,
    IceServer,
    TooManyRemoteCandidates,
    WebRTCConfig,
    WebRTCSession,
    WebRTCStream,
    open_webrtc_session,
)
from tests.integration._servers import ServerInfo, missing_server, on_ci

from ._peer import Peer, Ran
from ._topology import Host, Topology
from .conftest import topology_for

try:  # the optional extra ``webrtc``: CI installs it, so there a missing aiortc fails
    import aiortc  # noqa: F401
except ImportError:
    if on_ci():
        raise
    pytest.skip("aiortc is not installed (pip install 'jet-trio[webrtc]')", allow_module_level=True)

pytestmark = [pytest.mark.netns, pytest.mark.integration]

PREFIX = "w5"
TURN_SECRET = "w5-test-secret"
TURN_HOST = "198.51.100.1"


@pytest.fixture
def topology() -> Iterator[Topology]:
    with topology_for(PREFIX) as topo:
        yield topo


def in_ns(host: Host) -> Callable[[], None]:
    """``thread_init`` moving the WebRTC event-loop thread into ``host``'s namespace."""

    def enter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{host.ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)

    return enter


def lan_pair(topo: Topology) -> tuple[Host, Host]:
    lan = topo.lan("lan")
    a, b = topo.host("ha"), topo.host("hb")
    a.attach(lan, "10.44.1.2/24")
    b.attach(lan, "10.44.1.3/24")
    return a, b


#: A home router: masquerade out of the uplink (eth1); private networks unreachable beyond it.
#: CONE: endpoint-independent mapping and filtering ("full cone", port-preserving) for the one
#: host behind it. Without it Linux NAT is port-restricted and, when the peer's first check
#: arrives before our own packet left, conntrack remaps our port: hole punching then fails.
NAT = """
table ip w5nat {
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        CONE
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "eth1" masquerade MODE
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        oifname "eth1" ip daddr 10.0.0.0/8 drop
        BLOCK
    }
}
"""


def natted(topo: Topology, *, symmetric: bool = False, block_udp: bool = False) -> tuple[Host, ...]:
    """``ha`` and ``hb`` behind routers ``rta``/``rtb`` on the "Internet" ``wan``, where
    ``xmpp`` (198.51.100.1) runs the STUN/TURN server. ``symmetric``: a new random port per
    destination (endpoint-dependent mapping), which defeats STUN hole punching."""
    wan = topo.lan("wan")
    srv = topo.host("xmpp")
    srv.attach(wan, f"{TURN_HOST}/24")
    # Like a server on the Internet, it has a default route (to a next hop that never answers):
    # without one, relaying towards a peer's private address fails with ENETUNREACH, and coturn
    # 4.6.1 then closes the whole allocation.
    srv.route("default", "via", "198.51.100.254")
    ends = []
    for n, side in ((1, "a"), (2, "b")):
        cone = "" if symmetric else f'iifname "eth1" udp dport 1024-65535 dnat to 10.44.{n}.2'
        rules = (
            NAT.replace("MODE", "random" if symmetric else "")
            .replace("BLOCK", "meta l4proto udp drop" if block_udp else "")
            .replace("CONE", cone)
        )
        home = topo.lan(f"lan{side}")
        router = topo.host(f"rt{side}")
        router.attach(home, f"10.44.{n}.1/24")
        router.attach(wan, f"198.51.100.{n + 1}/24")
        router.forwarding()
        router.nft(rules)
        host = topo.host(f"h{side}")
        host.attach(home, f"10.44.{n}.2/24")
        host.route("default", "via", f"10.44.{n}.1")
        ends.append(host)
    return srv, ends[0], ends[1]


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Callable[[Host], None]]:
    """``start(host)``: coturn on ``TURN_HOST``:3478 (STUN + TURN, REST-API shared secret)."""
    binary = shutil.which("turnserver")
    procs: list[subprocess.Popen[bytes]] = []

    def start(host: Host) -> None:
        if binary is None:
            missing_server("coturn is not installed (apt-get install coturn)")
        log = tmp_path / "turn.log"
        args = [
            binary, "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
            f"--listening-ip={TURN_HOST}", "--listening-port=3478", f"--relay-ip={TURN_HOST}",
            "--min-port=49152", "--max-port=49352", "--realm=w5.test", "--use-auth-secret",
            "--allowed-peer-ip=198.51.100.0-198.51.100.255",
            f"--static-auth-secret={TURN_SECRET}", f"--log-file={log}", "--simple-log",
            "--no-stdout-log", f"--pidfile={tmp_path / 'turn.pid'}",
        ]  # fmt: skip
        proc = subprocess.Popen(
            host.command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = subprocess.run(
                host.command("ss", "-uln"), capture_output=True, text=True, check=False
            ).stdout
            if f"{TURN_HOST}:3478" in out:
                return
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"coturn did not start: {log.read_text() if log.exists() else ''}")

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def turn_credentials() -> tuple[str, str]:
    """TURN REST API credentials (what Prosody's mod_external_services hands out)."""
    username = str(int(time.time()) + 3600)
    digest = hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest()
    return username, b64encode(digest).decode()


def stun_turn() -> tuple[IceServer, ...]:
    user, password = turn_credentials()
    return (
        IceServer((f"stun:{TURN_HOST}:3478",)),
        IceServer((f"turn:{TURN_HOST}:3478?transport=udp",), user, password),
    )


def wire(info: we.WebRTCTransportInfo) -> we.WebRTCTransportInfo:
    """Through the codec, as the Jingle driver carries it (offer/answer without candidates)."""
    bare = replace(info, candidates=())
    return we.parse_transport(we.build_transport(bare))


async def trickle(info: we.WebRTCTransportInfo, to: WebRTCSession) -> None:
    """Each candidate in its own transport-info, as Conversations trickles them."""
    assert to.remote is not None
    for el in we.trickle_infos(info):
        await to.add_remote_candidates(we.parse_trickle(el, to.remote))


async def negotiate(sa: WebRTCSession, sb: WebRTCSession) -> None:
    offer = await sa.create_offer()
    answer = await sb.create_answer(wire(offer))
    await sa.accept_answer(wire(answer))
    await trickle(offer, sb)
    await trickle(answer, sa)


async def connect_both(sa: WebRTCSession, sb: WebRTCSession) -> tuple[WebRTCStream, WebRTCStream]:
    streams: dict[str, WebRTCStream] = {}

    async def one(name: str, s: WebRTCSession) -> None:
        streams[name] = await s.connect()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "a", sa)
        nursery.start_soon(one, "b", sb)
    return streams["a"], streams["b"]


async def jet_both_ways(a: WebRTCStream, b: WebRTCStream, size: int) -> None:
    """JET (AES-256-GCM, test keys) over the channel in both directions at once, byte for byte."""

    async def one_way(src: WebRTCStream, dst: WebRTCStream) -> None:
        secret = TransportSecret.generate(AES256GCM)
        data = os.urandom(size)
        sender = EncryptingSendStream(src, secret, expected_size=size)
        receiver = DecryptingReceiveStream(dst, secret, expected_size=size)
        got = bytearray()

        async def receive() -> None:
            while chunk := await receiver.receive_some(65536):
                got.extend(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for start in range(0, size, 100_000):
                await sender.send_all(data[start : start + 100_000])
            await sender.finish()
            await src.send_eof()  # half-close: our channel closes, the peer reads end of file
        assert receiver.verified
        assert bytes(got) == data

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one_way, a, b)
        nursery.start_soon(one_way, b, a)


async def test_lan_jet_both_directions_and_eof(topology: Topology) -> None:
    ha, hb = lan_pair(topology)
    cfg = WebRTCConfig(connect_timeout=20)
    with trio.fail_after(90):
        async with (
            open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            a, b = await connect_both(sa, sb)
            assert await sa.selected_candidate_types() == ("host", "host")
            await jet_both_ways(a, b, 2_000_000)
            assert await b.receive_some() == b""  # end of file stays end of file
            with pytest.raises(trio.ClosedResourceError):
                await a.send_all(b"after eof")
            await a.aclose()
            await b.aclose()


async def test_two_nats_connect_through_stun(
    topology: Topology, coturn: Callable[[Host], None]
) -> None:
    srv, ha, hb = natted(topology)
    coturn(srv)
    cfg = WebRTCConfig(ice_servers=(IceServer((f"stun:{TURN_HOST}:3478",)),), connect_timeout=30)
    with trio.fail_after(120):
        async with (
            open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            assert sa.local is not None
            kinds = {c.type for c in sa.local.candidates}
            assert "srflx" in kinds, sa.local.candidates
            a, b = await connect_both(sa, sb)
            # The local side of a pair is always a base (our host socket); the peer is reached at
            # its server-reflexive address: the private addresses cannot reach each other.
            assert await sa.selected_candidate_types() == ("host", "srflx")
            assert await sb.selected_candidate_types() == ("host", "srflx")
            await jet_both_ways(a, b, 1_000_000)


async def test_symmetric_nats_connect_through_turn(
    topology: Topology, coturn: Callable[[Host], None]
) -> None:
    srv, ha, hb = natted(topology, symmetric=True)
    coturn(srv)
    cfg = WebRTCConfig(ice_servers=stun_turn(), connect_timeout=40)
    with trio.fail_after(150):
        async with (
            open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            a, b = await connect_both(sa, sb)
            assert "relay" in await sa.selected_candidate_types()
            await jet_both_ways(a, b, 1_000_000)


async def test_symmetric_nats_defeat_stun_alone(
    topology: Topology, coturn: Callable[[Host], None]
) -> None:
    """The control of the TURN test: without a relay, the symmetric NATs are not traversed."""
    srv, ha, hb = natted(topology, symmetric=True)
    coturn(srv)
    cfg = WebRTCConfig(ice_servers=(IceServer((f"stun:{TURN_HOST}:3478",)),), connect_timeout=8)
    with trio.fail_after(60):
        async with (
            open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            with pytest.raises(IceFailed):
                await sa.connect()


async def test_relay_only_reveals_no_address(
    topology: Topology, coturn: Callable[[Host], None]
) -> None:
    srv, ha, hb = natted(topology)
    coturn(srv)
    relay = WebRTCConfig(ice_servers=stun_turn(), relay_only=True, connect_timeout=40)
    plain = WebRTCConfig(ice_servers=stun_turn(), connect_timeout=40)
    with trio.fail_after(150):
        async with (
            open_webrtc_session(relay, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(plain, thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            assert sa.local is not None and sa.local.candidates
            assert {c.type for c in sa.local.candidates} == {"relay"}
            # Neither the host address nor the router's public one appears in what we send.
            sent = b"".join(
                __import__("lxml.etree").etree.tostring(el) for el in we.trickle_infos(sa.local)
            )
            assert b"10.44.1.2" not in sent and b"198.51.100.2" not in sent
            a, b = await connect_both(sa, sb)
            assert (await sa.selected_candidate_types())[0] == "relay"
            await jet_both_ways(a, b, 200_000)


async def test_dtls_fingerprint_mismatch_aborts(topology: Topology) -> None:
    ha, hb = lan_pair(topology)
    cfg = WebRTCConfig(connect_timeout=20)
    with trio.fail_after(60):
        async with (
            open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
        ):
            offer = await sa.create_offer()
            answer = await sb.create_answer(wire(offer))
            # A man in the middle rewrites the fingerprint in the signalling.
            forged = we.Fingerprint("sha-256", ":".join(["AB"] * 32), answer.setup)
            await sa.accept_answer(replace(wire(answer), fingerprints=(forged,)))
            await trickle(offer, sb)
            await trickle(answer, sa)
            start = time.monotonic()
            with pytest.raises(DtlsFingerprintMismatch, match="man in the middle"):
                await sa.connect()
            assert time.monotonic() - start < 20


async def test_peer_that_never_opens_its_channel_is_bounded(topology: Topology) -> None:
    ha, hb = lan_pair(topology)
    with trio.fail_after(60):
        async with (
            open_webrtc_session(WebRTCConfig(connect_timeout=6), thread_init=in_ns(ha)) as sa,
            open_webrtc_session(WebRTCConfig(connect_timeout=6), thread_init=in_ns(hb)) as sb,
        ):
            sb._open_channel = False  # a peer that negotiates but never opens its channel
            await negotiate(sa, sb)
            start = time.monotonic()
            with pytest.raises(DataChannelTimeout):
                await sa.connect()
            assert time.monotonic() - start < 12


async def test_open_channel_that_never_sends_is_bounded(topology: Topology) -> None:
    ha, hb = lan_pair(topology)
    quiet = WebRTCConfig(connect_timeout=20, idle_timeout=2)
    with trio.fail_after(60):
        async with (
            open_webrtc_session(quiet, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(WebRTCConfig(), thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            a, _b = await connect_both(sa, sb)
            start = time.monotonic()
            with pytest.raises(DataChannelStalled):
                await a.receive_some()
            assert 1.5 < time.monotonic() - start < 10


async def test_udp_blocked_fails_typed_within_bound(
    topology: Topology, coturn: Callable[[Host], None]
) -> None:
    srv, ha, hb = natted(topology, block_udp=True)
    coturn(srv)
    cfg = WebRTCConfig(ice_servers=stun_turn(), connect_timeout=8)
    with trio.fail_after(90):
        async with (
            open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            start = time.monotonic()
            with pytest.raises(IceFailed):
                await sa.connect()
            assert time.monotonic() - start < 8 + 5


async def test_receive_backpressure_reaches_the_sender(topology: Topology) -> None:
    """A receiver that does not read stalls the sender: unread bytes stay bounded."""
    ha, hb = lan_pair(topology)
    small = WebRTCConfig(receive_buffer=64 * 1024)
    size = 6 * 1024 * 1024
    data = os.urandom(size)
    sent = 0
    with trio.fail_after(120):
        async with (
            open_webrtc_session(WebRTCConfig(), thread_init=in_ns(ha)) as sa,
            open_webrtc_session(small, thread_init=in_ns(hb)) as sb,
        ):
            await negotiate(sa, sb)
            a, b = await connect_both(sa, sb)

            async def send() -> None:
                nonlocal sent
                for start in range(0, size, 64 * 1024):
                    await a.send_all(data[start : start + 64 * 1024])
                    sent += 64 * 1024
                await a.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await trio.sleep(6)  # not reading
                # Our buffer (64 KiB), the SCTP windows and the sender's 256 KiB: far below
                # what 6 s of sending would move (the channel carries over 1 MB/s here).
                assert sent <= 2 * 1024 * 1024, sent
                got = bytearray()
                while chunk := await b.receive_some():
                    got.extend(chunk)
            assert bytes(got) == data


async def test_remote_candidate_flood_is_bounded(topology: Topology) -> None:
    ha, hb = lan_pair(topology)
    cfg = WebRTCConfig(max_remote_candidates=64)
    with trio.fail_after(30):
        async with (
            open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
            open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
        ):
            offer = await sa.create_offer()
            await sb.create_answer(wire(offer))
            flood = [
                we.IceCandidate("1", 1, "10.44.1.200", 1000 + i, 100, "host", id=f"c{i}")
                for i in range(we.MAX_CANDIDATES)
            ]
            await sb.add_remote_candidates(flood)
            await sb.add_remote_candidates(flood)  # 64: the bound itself
            with pytest.raises(TooManyRemoteCandidates):
                await sb.add_remote_candidates(flood[:1])


async def test_gathering_is_bounded_when_the_servers_are_unreachable(
    topology: Topology, coturn: Callable[[Host], None]
) -> None:
    srv, ha, _hb = natted(topology, block_udp=True)
    coturn(srv)
    cfg = WebRTCConfig(ice_servers=stun_turn(), gather_timeout=2)
    with trio.fail_after(30):
        async with open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa:
            start = time.monotonic()
            with pytest.raises(IceGatheringTimeout):
                await sa.create_offer()
            assert time.monotonic() - start < 4


async def test_cancelled_sender_closes_the_peer_connection(topology: Topology) -> None:
    """Cancelling the trio side mid-transfer closes the peer connection in the asyncio thread:
    the receiver sees the channel end at once, not after ICE consent expires (30 s)."""
    ha, hb = lan_pair(topology)
    cfg = WebRTCConfig(connect_timeout=20)
    with trio.fail_after(60):
        async with open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb:
            with trio.CancelScope() as a_scope:
                async with open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa:
                    await negotiate(sa, sb)
                    a, b = await connect_both(sa, sb)

                    async def pump() -> None:
                        while True:
                            await a.send_all(b"x" * 65536)

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(pump)
                        assert await b.receive_some()
                        a_scope.cancel()
            assert a_scope.cancelled_caught
            start = time.monotonic()
            with trio.fail_after(10):
                try:
                    while await b.receive_some():
                        pass
                except trio.BrokenResourceError:
                    pass
            assert time.monotonic() - start < 10


async def test_cancellation_reaches_the_asyncio_side(topology: Topology) -> None:
    """Cancelling a connect leaves no thread behind: the block joins the loop's thread."""
    import threading

    ha, _hb = lan_pair(topology)
    before = {t.ident for t in threading.enumerate()}
    with trio.move_on_after(1.0) as scope:
        async with open_webrtc_session(WebRTCConfig(), thread_init=in_ns(ha)) as sa:
            await sa.create_offer()
            await sa.connect()  # no peer: only the cancel scope ends this
    assert scope.cancelled_caught
    assert {t.ident for t in threading.enumerate() if t.name == "jet-trio-webrtc"} <= before


async def test_stream_conformance(topology: Topology) -> None:
    """trio's own conformance checks for a half-closeable stream, over real data channels."""
    import contextlib

    import trio.testing

    ha, hb = lan_pair(topology)
    cfg = WebRTCConfig(connect_timeout=20)
    with trio.fail_after(300):
        async with contextlib.AsyncExitStack() as stack:

            async def maker() -> tuple[WebRTCStream, WebRTCStream]:
                sa = await stack.enter_async_context(
                    open_webrtc_session(cfg, thread_init=in_ns(ha))
                )
                sb = await stack.enter_async_context(
                    open_webrtc_session(cfg, thread_init=in_ns(hb))
                )
                await negotiate(sa, sb)
                return await connect_both(sa, sb)

            await trio.testing.check_half_closeable_stream(maker, None)


SIGNAL_NS = "urn:example:jet-trio:w5-signal"


async def test_two_clients_on_prosody_signal_and_cross_symmetric_nats(
    topology: Topology, coturn: Callable[[Host], None], tmp_path: Path
) -> None:
    """End to end without the Jingle driver: two real clients behind symmetric NATs log in to a
    Prosody on the "Internet" host, get the STUN/TURN servers (with TURN REST credentials for
    coturn) from its XEP-0215 service, carry offer, answer and trickled candidates in iqs
    through the server, connect through the relay and move JET bytes both ways."""
    import contextlib

    import trustme

    from jet_trio import open_client
    from jet_trio._transports.webrtc import ice_servers_from_services
    from jet_trio._xmpp.client import Client
    from jet_trio._xmpp.extdisco import discover_external_services
    from jet_trio._xmpp.stanza import E
    from tests.integration._servers import ServerUnavailable, lua_string
    from tests.integration.test_extdisco_prosody import ExtdiscoProsody

    from ._topology import in_netns

    srv, ha, hb = natted(topology, symmetric=True)
    coturn(srv)
    services = f"""
external_services = {{
    {{ type = "stun", transport = "udp", host = "{TURN_HOST}", port = 3478 }};
    {{ type = "turn", transport = "udp", host = "{TURN_HOST}", port = 3478,
       secret = {lua_string(TURN_SECRET)} }};
}}
"""
    try:
        prosody = ExtdiscoProsody(
            tmp_path / "prosody", trustme.CA(), domain="w5.test", netns=srv.ns,
            host=TURN_HOST, proxy65=False, extra_config=services, stanza_debug=False,
        )  # fmt: skip
    except ServerUnavailable as exc:
        missing_server(str(exc))
    info = prosody.start()
    try:
        streams: dict[str, WebRTCStream] = {}
        with trio.fail_after(150):
            async with contextlib.AsyncExitStack() as stack:
                clients: dict[str, Client] = {}
                inboxes: dict[str, trio.MemoryReceiveChannel[tuple[str, etree._Element]]] = {}
                for user, host in (("alice", ha), ("bob", hb)):
                    with in_netns(host.ns):  # the client's TCP socket lives in its host
                        client = await stack.enter_async_context(
                            open_client(
                                info.jid(user),
                                info.password(user),
                                host=TURN_HOST,
                                port=info.port,
                                ca_file=info.ca_file,
                            )
                        )
                    send, receive = trio.open_memory_channel[tuple[str, etree._Element]](64)
                    inboxes[user] = receive

                    async def handler(
                        iq: etree._Element,
                        send: trio.MemorySendChannel[tuple[str, etree._Element]] = send,
                    ) -> None:
                        signal = iq[0]
                        send.send_nowait((signal.get("kind") or "", signal[0]))

                    client.register_iq_handler("set", f"{{{SIGNAL_NS}}}signal", handler)
                    clients[user] = client

                async def signal(me: Client, to: Client, kind: str, el: etree._Element) -> None:
                    await me.request("set", E(f"{{{SIGNAL_NS}}}signal", {"kind": kind}, el), to.jid)

                async def side(user: str, peer: str, host: Host, initiator: bool) -> None:
                    me, other, inbox = clients[user], clients[peer], inboxes[user]
                    ice = ice_servers_from_services(await discover_external_services(me))
                    assert any(s.is_turn for s in ice)
                    cfg = WebRTCConfig(ice_servers=ice, connect_timeout=40)
                    session = await stack.enter_async_context(
                        open_webrtc_session(cfg, thread_init=in_ns(host))
                    )
                    if initiator:
                        local = await session.create_offer()
                        await signal(
                            me, other, "offer", we.build_transport(replace(local, candidates=()))
                        )
                        kind, el = await inbox.receive()
                        assert kind == "answer"
                        await session.accept_answer(we.parse_transport(el))
                    else:
                        kind, el = await inbox.receive()
                        assert kind == "offer"
                        local = await session.create_answer(we.parse_transport(el))
                        await signal(
                            me, other, "answer", we.build_transport(replace(local, candidates=()))
                        )
                    for el in we.trickle_infos(local):
                        await signal(me, other, "candidate", el)

                    async def take_candidates() -> None:
                        assert session.remote is not None
                        async for kind, el in inbox:
                            assert kind == "candidate"
                            await session.add_remote_candidates(
                                we.parse_trickle(el, session.remote)
                            )

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(take_candidates)
                        streams[user] = await session.connect()
                        nursery.cancel_scope.cancel()
                    assert "relay" in await session.selected_candidate_types()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(side, "alice", "bob", ha, True)
                    nursery.start_soon(side, "bob", "alice", hb, False)
                await jet_both_ways(streams["alice"], streams["bob"], 300_000)
    finally:
        prosody.stop()


# -- Jingle sessions over the data channel: two real jet-trio commands ------------------------

#: Prosody's XEP-0215 services: coturn's STUN and TURN (TURN REST credentials).
SERVICES = f"""
external_services = {{
    {{ type = "stun", transport = "udp", host = "{TURN_HOST}", port = 3478 }};
    {{ type = "turn", transport = "udp", host = "{TURN_HOST}", port = 3478,
       secret = "{TURN_SECRET}" }};
}}
"""
OMEMO2 = "urn:xmpp:omemo:2"


@contextlib.contextmanager
def prosody_with_turn(tmp_path: Path, srv: Host) -> Iterator[ServerInfo]:
    """Prosody on the "Internet" host, without proxy65, announcing coturn (XEP-0215)."""
    import trustme

    from tests.integration._servers import ServerUnavailable
    from tests.integration.test_extdisco_prosody import ExtdiscoProsody

    try:
        prosody = ExtdiscoProsody(
            tmp_path / "prosody", trustme.CA(), domain="w5.test", netns=srv.ns,
            host=TURN_HOST, proxy65=False, extra_config=SERVICES, stanza_debug=False,
        )  # fmt: skip
    except ServerUnavailable as exc:
        missing_server(str(exc))
    info = prosody.start()
    try:
        yield info
    finally:
        prosody.stop()


def data_channel_peer(host: Host, user: str, server: ServerInfo, tmp_path: Path) -> Peer:
    """The ``jet-trio`` command in ``host`` with the data channel switched on in its
    configuration file (``[defaults] webrtc = true``)."""
    peer = Peer(host, user, server, tmp_path / f"{host.name}-{user}")
    config = peer.home / ".config" / "jet-trio" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[defaults]\nwebrtc = true\n", encoding="utf-8")
    return peer


async def test_jingle_file_transfer_over_the_data_channel_through_nats(
    topology: Topology, coturn: Callable[[Host], None], tmp_path: Path
) -> None:
    """Two jet-trio commands behind symmetric NATs, Prosody with no proxy65 announcing
    coturn: each sends the other a file in a Jingle session over the data channel (relayed
    by TURN: nothing else crosses these NATs), with the default envelope (JET-OMEMO), byte
    for byte, and the result names the transport."""
    from .test_multihost import transfer

    srv, ha, hb = natted(topology, symmetric=True)
    coturn(srv)
    with prosody_with_turn(tmp_path, srv) as server, trio.fail_after(400):
        alice = data_channel_peer(ha, "alice", server, tmp_path)
        bob = data_channel_peer(hb, "bob", server, tmp_path)
        for sender, receiver in ((alice, bob), (bob, alice)):
            done = await transfer(sender, receiver, tmp_path, envelope=None)
            done.check_content()
            assert done.transport == "webrtc", done.sent.stderr[-20000:]
            assert done.send_result["envelope"] == done.receive_result["envelope"] == OMEMO2
            assert "data channel ready with" in done.sent.stderr
            assert "relay" in done.sent.stderr.split("data channel ready with", 1)[1][:200]


async def test_jingle_data_channel_with_udp_blocked_falls_back_to_ibb(
    topology: Topology, coturn: Callable[[Host], None], tmp_path: Path
) -> None:
    """UDP blocked on both home networks: the data channel cannot connect, the initiator
    replaces it (transport-replace) by IBB within the bound and the file still arrives,
    encrypted, byte for byte."""
    from .test_multihost import transfer

    srv, ha, hb = natted(topology, block_udp=True)
    coturn(srv)
    with prosody_with_turn(tmp_path, srv) as server, trio.fail_after(300):
        alice = data_channel_peer(ha, "alice", server, tmp_path)
        bob = data_channel_peer(hb, "bob", server, tmp_path)
        start = time.monotonic()
        done = await transfer(alice, bob, tmp_path, envelope="stub")
        took = time.monotonic() - start
        done.check_content()
        assert done.transport == "ibb", done.sent.stderr[-20000:]
        assert done.send_result["envelope"] is not None  # JET stays on over the fallback
        assert "replacing it by IBB" in done.sent.stderr, done.sent.stderr[-20000:]
        # Gathering (at most 10 s), the connect bound (30 s), the fallback: well within 90 s.
        assert took < 90, took


async def test_requested_file_comes_over_the_data_channel(
    topology: Topology, coturn: Callable[[Host], None], tmp_path: Path
) -> None:
    """XEP-0391's other direction: Bob requests a file Alice shares, so the requester starts
    the session over the data channel and the responder sends (behind symmetric NATs,
    relayed by TURN), JET-OMEMO, byte for byte."""
    import hashlib
    import json
    import os

    srv, ha, hb = natted(topology, symmetric=True)
    coturn(srv)
    src = tmp_path / "shared" / "report.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(200_000))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with prosody_with_turn(tmp_path, srv) as server, trio.fail_after(300):
        alice = data_channel_peer(ha, "alice", server, tmp_path)
        bob = data_channel_peer(hb, "bob", server, tmp_path)
        shared: dict[str, Ran] = {}

        async def share() -> None:
            shared["s"] = await alice.run(
                ["share", str(src), "--timeout", "45", "--json", "--debug"], limit=120
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(share)
            got = await bob.run(
                ["request", sha, "--from", alice.jid, "-o", str(inbox), "--json", "--wait",
                 "40", "--debug"], limit=120,
            )  # fmt: skip
        assert got.returncode == 0, got.stderr[-20000:]
        result = json.loads(got.stdout.strip().splitlines()[-1])
        assert result["transport"] == "webrtc", got.stderr[-20000:]
        assert result["envelope"] == OMEMO2 and result["hash_verified"] is True
        assert (inbox / "report.bin").read_bytes() == src.read_bytes()
        assert "data channel ready with" in shared["s"].stderr
