"""The in-process XEP-0065 proxy used by tests and the demo."""

from __future__ import annotations

import hashlib

import pytest
import trio
import trio.testing

from jet_trio._transports.s5b import connect_candidate, dstaddr
from jet_trio._transports.socks5 import ReplyCode, Socks5Error, Socks5ReplyError
from jet_trio._xmpp.jid import JID
from jet_trio.testing._proxy65 import ActivationError, Proxy65, serve_proxy65

ALICE = JID("alice@localhost/a")
BOB = JID("bob@localhost/b")
SID = "tsid"
DST = dstaddr(SID, ALICE, BOB)


async def _pair(proxy: Proxy65) -> tuple[trio.SocketStream, trio.SocketStream]:
    a = await connect_candidate(proxy.host, proxy.port, DST)
    b = await connect_candidate(proxy.host, proxy.port, DST)
    return a, b


async def test_relay_both_ways_after_activation() -> None:
    async with serve_proxy65() as proxy:
        assert proxy.jid == JID("proxy.localhost")
        a, b = await _pair(proxy)
        async with a, b:
            assert proxy.waiting == 2
            proxy.activate(SID, ALICE, BOB)
            assert proxy.waiting == 0
            await a.send_all(b"hello")
            assert await b.receive_some(100) == b"hello"
            await b.send_all(b"world")
            assert await a.receive_some(100) == b"world"
            await a.send_eof()
            assert await b.receive_some(100) == b""
            await b.send_all(b"still open")  # half-close propagated, other way still works
            assert await a.receive_some(100) == b"still open"


async def test_no_relay_before_activation() -> None:
    async with serve_proxy65() as proxy:
        a, b = await _pair(proxy)
        async with a, b:
            await a.send_all(b"too early")
            with trio.move_on_after(0.1) as scope:
                await b.receive_some(100)
            assert scope.cancelled_caught
            proxy.activate(SID, str(ALICE), str(BOB))
            assert await b.receive_some(100) == b"too early"


async def test_activate_errors() -> None:
    async with serve_proxy65() as proxy:
        with pytest.raises(ActivationError, match="0 connection") as info:
            proxy.activate(SID, ALICE, BOB)
        assert info.value.condition == "item-not-found"
        a = await connect_candidate(proxy.host, proxy.port, DST)
        async with a:
            with pytest.raises(ActivationError, match="1 connection"):
                proxy.activate(SID, ALICE, BOB)
            b = await connect_candidate(proxy.host, proxy.port, DST)
            async with b:
                # requester/target swapped is another DST.ADDR
                with pytest.raises(ActivationError):
                    proxy.activate(SID, BOB, ALICE)
                with pytest.raises(Socks5ReplyError) as refused:
                    await connect_candidate(proxy.host, proxy.port, DST)
                assert refused.value.reply == ReplyCode.NOT_ALLOWED
                proxy.activate(SID, ALICE, BOB)


async def test_bounded_pending() -> None:
    async with serve_proxy65(max_pending=2) as proxy:
        a, b = await _pair(proxy)
        async with a, b:
            other = dstaddr("other", ALICE, BOB)
            # Dropped before the handshake: seen as a closed connection.
            with pytest.raises(Socks5Error, match="closed"):
                await connect_candidate(proxy.host, proxy.port, other)


async def test_shutdown_closes_waiting_and_relays() -> None:
    async with serve_proxy65() as proxy:
        a, b = await _pair(proxy)
        c = await connect_candidate(proxy.host, proxy.port, dstaddr("x", ALICE, BOB))
        proxy.activate(SID, ALICE, BOB)
        await trio.testing.wait_all_tasks_blocked()
        assert proxy.active_relays == 1
    async with a, b, c:
        with trio.fail_after(5):
            assert await a.receive_some(10) == b""
            assert await c.receive_some(10) == b""


async def test_body_exception_is_not_wrapped() -> None:
    with pytest.raises(KeyError):
        async with serve_proxy65():
            raise KeyError("boom")


async def test_relay_16mib_sha256() -> None:
    size = 16 * 1024 * 1024
    block = bytes(range(256)) * 512
    async with serve_proxy65() as proxy:
        a, b = await _pair(proxy)
        proxy.activate(SID, ALICE, BOB)
        digest = hashlib.sha256()
        received = 0

        async def send() -> None:
            async with a:
                for _ in range(size // len(block)):
                    await a.send_all(block)

        async def receive() -> None:
            nonlocal received
            async with b:
                while data := await b.receive_some(1 << 18):
                    digest.update(data)
                    received += len(data)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                nursery.start_soon(receive)
    assert received == size
    assert digest.digest() == hashlib.sha256(block * (size // len(block))).digest()
    assert proxy.relayed_bytes == size
