"""XEP-0260 S5B: candidates, transport codec, nomination, and the trio shell on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
import trio
import trio.testing
from lxml import etree

from jet_trio._transports.s5b import (
    Activated,
    Candidate,
    CandidateConnectError,
    CandidateError,
    CandidateUsed,
    Nomination,
    ProxyError,
    S5BError,
    S5BTransport,
    StreamHost,
    build_activate,
    build_streamhost_query,
    build_streamhost_result,
    build_transport,
    connect_any,
    connect_candidate,
    connection_order,
    dedupe_candidates,
    dstaddr,
    nominate,
    open_s5b_listener,
    parse_activate,
    parse_streamhosts,
    parse_transport,
    priority,
)
from jet_trio._transports.socks5 import ReplyCode, Socks5Error, Socks5ReplyError
from jet_trio._xmpp import ns as ns
from jet_trio._xmpp.jid import JID

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dino"
ALICE = JID("alice@localhost/dino")
BOB = JID("bob@localhost/dino2")


def _iqs(name: str) -> list[etree._Element]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return [
        etree.fromstring(line.encode(), parser)
        for line in (FIXTURES / name).read_text().splitlines()
        if line.startswith("<iq")
    ]


def _transport(iq: etree._Element) -> etree._Element:
    el = iq.find(f".//{{{ns.JINGLE_S5B}}}transport")
    assert el is not None
    return el


# --- pure part ----------------------------------------------------------------------------


def test_priority_formula() -> None:
    assert priority("direct") == 126 << 16
    assert priority("assisted", 5) == (120 << 16) + 5
    assert priority("tunnel") == 110 * 65536
    assert priority("proxy", 32768) == 688128  # Dino's proxy candidate
    with pytest.raises(ValueError):
        priority("direct", 70000)


def test_candidate_defaults_and_validation() -> None:
    c = Candidate("c1", "127.0.0.1", 1234, ALICE)
    assert c.type == "direct"
    assert c.priority == priority("direct")
    with pytest.raises(ValueError):
        Candidate("c1", "127.0.0.1", 0, ALICE)
    with pytest.raises(ValueError):
        Candidate("", "127.0.0.1", 1, ALICE)


def test_parse_dino_session_initiate() -> None:
    iqs = _iqs("dino2dino_jet_omemo_s5b.xml")
    t = parse_transport(_transport(iqs[0]))
    assert t.sid == "ccd1f6c6-118e-462b-a2a0-bbd534bc7970"
    assert t.dstaddr == dstaddr(t.sid, ALICE, BOB) == "caa56b740a1996245f8b006320f56a2d05b51d62"
    assert [c.type for c in t.candidates] == ["proxy", "proxy"]
    assert t.candidates[0].jid == JID("proxy.localhost")
    assert t.candidates[0].port == 5000
    # Dino lists its proxy twice: one survives, the higher-priority one.
    assert dedupe_candidates(t.candidates) == (t.candidates[0],)
    assert connection_order(t.candidates) == (t.candidates[0],)
    accept = parse_transport(_transport(iqs[1]))
    assert accept.dstaddr == dstaddr(t.sid, BOB, ALICE)
    infos = [parse_transport(_transport(iq)).info for iq in iqs[2:5]]
    assert infos == [
        CandidateUsed("6cba60cd-0888-4b84-9601-71a75952cabf"),
        CandidateUsed("c000c3b5-e6f3-4388-898a-0b70fe17b039"),
        Activated("6cba60cd-0888-4b84-9601-71a75952cabf"),
    ]


def test_dino_tie_nomination_matches_capture() -> None:
    """Both picked a proxy with priority 688128; Dino (initiator) activated its own candidate."""
    iqs = _iqs("dino2dino_jet_omemo_s5b.xml")
    initiator_cands = {c.cid: c for c in parse_transport(_transport(iqs[0])).candidates}
    responder_cands = {c.cid: c for c in parse_transport(_transport(iqs[1])).candidates}
    responder_used = initiator_cands["6cba60cd-0888-4b84-9601-71a75952cabf"]
    initiator_used = responder_cands["c000c3b5-e6f3-4388-898a-0b70fe17b039"]
    nom = nominate(initiator_used=initiator_used, responder_used=responder_used)
    assert nom == Nomination(responder_used, "initiator")
    assert nom.needs_activation
    activated = parse_transport(_transport(iqs[4])).info
    assert activated == Activated(nom.candidate.cid)


def test_parse_dino_receive_fixture() -> None:
    iqs = _iqs("dino_sent_s5b_receive.xml")
    t = parse_transport(_transport(iqs[0]))
    # Dino (alice@localhost/dino) answered bob@localhost/peerlab's offer; offerer first.
    assert t.dstaddr == dstaddr(t.sid, "alice@localhost/dino", "bob@localhost/peerlab")
    assert parse_transport(_transport(iqs[1])).info == CandidateUsed("bobdirect1")


def test_nomination_rules() -> None:
    hi = Candidate("hi", "10.0.0.1", 1, ALICE, "direct")
    lo = Candidate("lo", "10.0.0.2", 1, BOB, "proxy")
    assert nominate(initiator_used=None, responder_used=None) is None
    assert nominate(initiator_used=lo, responder_used=None) == Nomination(lo, "responder")
    assert nominate(initiator_used=None, responder_used=lo) == Nomination(lo, "initiator")
    assert nominate(initiator_used=hi, responder_used=lo) == Nomination(hi, "responder")
    assert nominate(initiator_used=lo, responder_used=hi) == Nomination(hi, "initiator")
    assert not Nomination(hi, "initiator").needs_activation


def test_transport_roundtrip_and_infos() -> None:
    cands = (
        Candidate("a", "127.0.0.1", 7777, ALICE, "direct", priority("direct", 10)),
        Candidate("b", "127.0.0.1", 5000, JID("proxy.localhost"), "proxy"),
    )
    t = S5BTransport("tsid", dstaddr("tsid", ALICE, BOB), candidates=cands)
    el = build_transport(t)
    assert el.get("mode") == "tcp"
    assert parse_transport(etree.fromstring(etree.tostring(el))) == t
    assert build_transport(t, include_mode=False).get("mode") is None
    for info in (CandidateUsed("a"), CandidateError(), Activated("b"), ProxyError()):
        t2 = S5BTransport("tsid", info=info)
        el2 = build_transport(t2)
        assert el2.get("mode") is None
        assert parse_transport(etree.fromstring(etree.tostring(el2))) == t2


def _t(inner: str, attrs: str = "sid='s'") -> etree._Element:
    return etree.fromstring(f"<transport xmlns='{ns.JINGLE_S5B}' {attrs}>{inner}</transport>")


@pytest.mark.parametrize(
    ("inner", "attrs"),
    [
        ("", ""),
        ("", "sid='s' mode='udp'"),
        ("", "sid='s' dstaddr='nothex'"),
        ("<candidate cid='a' host='h' jid='j@x' priority='1' port='70000'/>", "sid='s'"),
        ("<candidate cid='a' host='h' jid='j@x' priority='-1'/>", "sid='s'"),
        ("<candidate cid='a' host='h' jid='j@x'/>", "sid='s'"),
        ("<candidate cid='a' host='h' jid='j@x' priority='1' type='magic'/>", "sid='s'"),
        ("<candidate host='h' jid='j@x' priority='1'/>", "sid='s'"),
        ("<candidate cid='a' host='h' jid='@@' priority='1'/>", "sid='s'"),
        (
            "<candidate cid='a' host='h' jid='j@x' priority='1'/>"
            "<candidate cid='a' host='i' jid='j@x' priority='1'/>",
            "sid='s'",
        ),
        ("<candidate-used cid='a'/><candidate-error/>", "sid='s'"),
        ("<candidate cid='a' host='h' jid='j@x' priority='1'/><proxy-error/>", "sid='s'"),
        ("<candidate-used/>", "sid='s'"),
    ],
)
def test_parse_transport_rejects(inner: str, attrs: str) -> None:
    with pytest.raises(S5BError) as info:
        parse_transport(_t(inner, attrs))
    assert info.value.condition == "bad-request"


def test_parse_transport_default_port_and_foreign_children() -> None:
    t = parse_transport(
        _t("<candidate cid='a' host='h' jid='j@x' priority='1'/><x xmlns='urn:other'/>")
    )
    assert t.candidates[0].port == 1080


def test_activation_and_streamhost_elements() -> None:
    q = build_activate("tsid", BOB)
    assert q.tag == f"{{{ns.BYTESTREAMS}}}query"
    assert q.get("sid") == "tsid"
    assert parse_activate(etree.fromstring(etree.tostring(q))) == ("tsid", BOB)
    with pytest.raises(S5BError):
        parse_activate(etree.fromstring(f"<query xmlns='{ns.BYTESTREAMS}' sid='x'/>"))
    host = StreamHost(JID("proxy.localhost"), "127.0.0.1", 5000)
    assert parse_streamhosts(build_streamhost_result(host)) == (host,)
    with pytest.raises(S5BError):
        parse_streamhosts(build_streamhost_query())
    c = host.to_candidate("p1", 32768)
    assert (c.type, c.priority, c.port) == ("proxy", 688128, 5000)


# --- trio shell ---------------------------------------------------------------------------

DST = dstaddr("tsid", ALICE, BOB)


async def test_direct_64mib_sha256() -> None:
    size = 64 * 1024 * 1024
    chunk = bytes(range(256)) * 1024  # 256 KiB
    async with open_s5b_listener("127.0.0.1", 0) as listener:
        listener.expect(DST)
        expected = hashlib.sha256()
        got = hashlib.sha256()
        received = 0

        async def sender() -> None:
            stream = await listener.accept(DST)
            async with stream:
                for i in range(size // len(chunk)):
                    block = chunk[i % 256 :] + chunk[: i % 256]
                    expected.update(block)
                    await stream.send_all(block)

        async def receiver() -> None:
            nonlocal received
            stream = await connect_candidate(listener.host, listener.port, DST)
            async with stream:
                while data := await stream.receive_some(1 << 18):
                    got.update(data)
                    received += len(data)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                nursery.start_soon(receiver)
    assert received == size
    assert got.digest() == expected.digest()


async def test_wrong_dstaddr_refused() -> None:
    async with open_s5b_listener() as listener:
        listener.expect(DST)
        with pytest.raises(Socks5ReplyError) as info:
            await connect_candidate(listener.host, listener.port, dstaddr("x", ALICE, BOB))
        assert info.value.reply == ReplyCode.NOT_ALLOWED
        # The right one still gets through afterwards.
        client = await connect_candidate(listener.host, listener.port, DST)
        stream = await listener.accept(DST)
        await stream.aclose()
        await client.aclose()


async def test_garbage_client_is_dropped() -> None:
    async with open_s5b_listener() as listener:
        listener.expect(DST)
        async with await trio.open_tcp_stream(listener.host, listener.port) as raw:
            await raw.send_all(b"GET / HTTP/1.0\r\n\r\n")
            # Closed with unread input: a reset is as good as an EOF here.
            with trio.fail_after(5), contextlib.suppress(trio.BrokenResourceError):
                assert await raw.receive_some(100) == b""
        with trio.move_on_after(0.1) as scope:
            await listener.accept(DST)
        assert scope.cancelled_caught


async def test_handshake_timeout_and_truncation() -> None:
    async with open_s5b_listener(handshake_timeout=0.2) as listener:
        raw = await trio.open_tcp_stream(listener.host, listener.port)
        async with raw:
            await raw.send_all(b"\x05\x01")  # truncated greeting, then silence
            with trio.fail_after(5):
                assert await raw.receive_some(100) == b""


async def test_accept_unexpected_dstaddr_raises() -> None:
    async with open_s5b_listener() as listener:
        with pytest.raises(KeyError):
            await listener.accept(DST)
        listener.expect(DST)
        listener.forget(DST)
        with pytest.raises(Socks5ReplyError):
            await connect_candidate(listener.host, listener.port, DST)


async def test_connect_refused_is_typed() -> None:
    async with open_s5b_listener() as listener:
        port = listener.port
    with pytest.raises(CandidateConnectError):
        await connect_candidate("127.0.0.1", port, DST)


async def test_server_closing_mid_handshake_is_typed() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def rude_server() -> None:
        stream = await listeners[0].accept()
        await stream.receive_some(3)
        await stream.send_all(b"\x05")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(rude_server)
        with pytest.raises(Socks5Error, match="closed"):
            await connect_candidate("127.0.0.1", port, DST)
    await listeners[0].aclose()


async def test_connect_any_skips_dead_candidates() -> None:
    async with open_s5b_listener() as listener:
        listener.expect(DST)
        async with open_s5b_listener() as dead:
            dead_port = dead.port
        good = Candidate("good", listener.host, listener.port, ALICE, "proxy")
        bad = Candidate("bad", "127.0.0.1", dead_port, ALICE, "direct")
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listener.accept(DST))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            cand, stream = await connect_any([good, bad], DST)
        assert cand is good
        await stream.aclose()
        await accepted[0].aclose()
        with pytest.raises(CandidateConnectError, match="bad"):
            await connect_any([bad], DST)


async def test_handed_over_streams_pass_trio_conformance() -> None:
    async with open_s5b_listener() as listener:
        listener.expect(DST)

        async def stream_maker() -> tuple[trio.SocketStream, trio.SocketStream]:
            client: list[trio.SocketStream] = []

            async def connect() -> None:
                client.append(await connect_candidate(listener.host, listener.port, DST))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(connect)
                server = await listener.accept(DST)
            return client[0], server

        await trio.testing.check_half_closeable_stream(stream_maker, None)


async def test_handshake_bounded_by_callers_cancel_scope() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    silent: list[trio.SocketStream] = []

    async def silent_server() -> None:
        silent.append(await listeners[0].accept())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(silent_server)
        with trio.move_on_after(0.2) as scope:
            await connect_candidate("127.0.0.1", port, DST)
        assert scope.cancelled_caught
    for s in silent:
        await s.aclose()
    await listeners[0].aclose()
