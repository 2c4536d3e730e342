"""The client shell over an in-memory stream: IQ matching, handlers, errors (no server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from lxml import etree

from jet_trio import JID, ConnectionLost, StanzaError, XMLError
from jet_trio._xmpp.client import Client
from jet_trio._xmpp.stanza import E, error_reply, make_iq, make_result
from jet_trio._xmpp.xml import StanzaReceived, XMLStreamParser, serialize, stream_header

ME = JID("me@example.org/r")
PING = "{urn:xmpp:ping}ping"


class Peer:
    """The far end of the client's stream, driven by the test."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = XMLStreamParser()
        self.parser.feed(stream_header())
        self.queue: list[etree._Element] = []

    async def next(self) -> etree._Element:
        while not self.queue:
            data = await self.stream.receive_some()
            assert data, "client closed"
            self.queue += [
                e.element for e in self.parser.feed(data) if isinstance(e, StanzaReceived)
            ]
        return self.queue.pop(0)

    async def send(self, el: etree._Element | bytes) -> None:
        await self.stream.send_all(el if isinstance(el, bytes) else serialize(el))


@asynccontextmanager
async def client_and_peer() -> AsyncIterator[tuple[Client, Peer]]:
    a, b = trio.testing.memory_stream_pair()
    parser = XMLStreamParser()
    parser.feed(stream_header())
    async with trio.open_nursery() as nursery:
        client = Client(a, parser, ME, nursery)
        nursery.start_soon(client._run_reader, [])
        yield client, Peer(b)
        nursery.cancel_scope.cancel()


async def test_iq_result_matched_by_id_and_sender() -> None:
    async with client_and_peer() as (client, peer):
        async with trio.open_nursery() as n:
            results: list[etree._Element] = []

            async def ask() -> None:
                results.append(await client.iq(make_iq("get", E(PING), to="x@example.org/y")))

            n.start_soon(ask)
            req = await peer.next()
            # a spoofed answer from someone else is ignored
            spoof = make_result(req)
            spoof.set("from", "evil@example.org/z")
            await peer.send(spoof)
            real = make_result(req)
            real.set("from", "x@example.org/y")
            await peer.send(real)
        assert results[0].get("from") == "x@example.org/y"
        assert client._pending == {}


async def test_iq_error_raises_stanza_error() -> None:
    async with client_and_peer() as (client, peer):
        async with trio.open_nursery() as n:

            async def answer() -> None:
                req = await peer.next()
                await peer.send(error_reply(req, "item-not-found", text="no such thing"))

            n.start_soon(answer)
            with pytest.raises(StanzaError, match="no such thing") as info:
                await client.request("get", E(PING), "x@example.org/y")
        assert info.value.condition == "item-not-found" and info.value.type == "cancel"


async def test_cancelled_request_is_forgotten_and_late_answer_dropped() -> None:
    async with client_and_peer() as (client, peer):
        with trio.move_on_after(0.05):
            await client.request("get", E(PING), "x@example.org/y")
        assert client._pending == {}
        req = await peer.next()
        late = make_result(req)
        late.set("from", "x@example.org/y")
        await peer.send(late)  # no pending request: dropped without error
        await trio.testing.wait_all_tasks_blocked()


async def test_unhandled_request_gets_service_unavailable_and_ping_is_answered() -> None:
    async with client_and_peer() as (_client, peer):
        await peer.send(make_iq("get", E("{urn:example}nope"), to=str(ME), from_="a@b/c", id="q1"))
        reply = await peer.next()
        assert reply.get("type") == "error" and reply.get("id") == "q1"
        assert reply.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None
        await peer.send(make_iq("get", E(PING), to=str(ME), from_="a@b/c", id="p1"))
        pong = await peer.next()
        assert (pong.get("type"), pong.get("id"), pong.get("to")) == ("result", "p1", "a@b/c")


async def test_handler_stanza_error_becomes_error_reply() -> None:
    async def handler(iq: etree._Element) -> etree._Element:
        raise StanzaError("not-acceptable", "modify", "too big")

    async with client_and_peer() as (client, peer):
        client.register_iq_handler("set", "{urn:example}x", handler)
        await peer.send(make_iq("set", E("{urn:example}x"), from_="a@b/c", id="h1"))
        reply = await peer.next()
        assert reply.find("{jabber:client}error").get("type") == "modify"  # type: ignore[union-attr]


async def test_hostile_xml_from_server_sends_stream_error_and_fails_pending() -> None:
    with pytest.raises(BaseExceptionGroup) as info:
        async with client_and_peer() as (client, peer), trio.open_nursery() as n:

            async def ask() -> None:
                with pytest.raises(ConnectionLost):
                    await client.request("get", E(PING), "x@example.org/y")

            n.start_soon(ask)
            await peer.next()
            await peer.send(b"<message><!DOCTYPE boom></message>")
            data = b""
            while b"</stream:stream>" not in data:
                chunk = await peer.stream.receive_some()
                if not chunk:
                    break
                data += chunk
            assert b"restricted-xml" in data
    assert info.group_contains(XMLError)


async def test_server_closing_stream_is_connection_lost() -> None:
    with pytest.raises(BaseExceptionGroup) as info:
        async with client_and_peer() as (_client, peer):
            await peer.send(b"</stream:stream>")
            await trio.sleep_forever()
    assert info.group_contains(ConnectionLost)


async def test_send_is_independent_of_reader_and_concurrent_safe() -> None:
    async with client_and_peer() as (client, peer):
        async with trio.open_nursery() as n:
            for i in range(20):
                n.start_soon(client.send, E("{jabber:client}message", {"id": str(i)}))
        ids = {(await peer.next()).get("id") for _ in range(20)}
        assert ids == {str(i) for i in range(20)}


class GatedStream(trio.abc.Stream):
    """Records every write; the first one waits for ``gate`` (and may then fail)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writes: list[bytes] = []
        self.gate = trio.Event()
        self.writing = trio.Event()
        self.fail = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        if len(self.writes) == 1:
            self.writing.set()
            await self.gate.wait()
            if self.fail:
                raise trio.BrokenResourceError("reset by peer")
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def gated_client() -> AsyncIterator[tuple[Client, Peer, GatedStream]]:
    a, b = trio.testing.memory_stream_pair()
    gated = GatedStream(a)
    parser = XMLStreamParser()
    parser.feed(stream_header())
    async with trio.open_nursery() as nursery:
        client = Client(gated, parser, ME, nursery)
        nursery.start_soon(client._run_reader, [])
        yield client, Peer(b), gated
        nursery.cancel_scope.cancel()


async def _send_in_turn(
    client: Client, i: int, turn: list[trio.Event], errors: list[BaseException]
) -> None:
    if i:
        await turn[i - 1].wait()
    turn[i].set()  # the next sender runs only once this one has queued (send does not yield)
    try:
        await client.send(E("{jabber:client}message", {"id": str(i)}))
    except ConnectionLost as exc:
        errors.append(exc)


async def _queue_behind_blocked_write(
    client: Client, gated: GatedStream, count: int, *, fail: bool
) -> list[BaseException]:
    """``count`` tasks send in turn while the first write is held; then it goes on (or
    fails). Returns the ConnectionLost errors the senders raised."""
    turn = [trio.Event() for _ in range(count)]
    errors: list[BaseException] = []
    async with trio.open_nursery() as n:
        for i in range(count):
            n.start_soon(_send_in_turn, client, i, turn, errors)
        await gated.writing.wait()
        await turn[-1].wait()
        gated.fail = fail
        gated.gate.set()
    return errors


async def test_stanzas_queued_during_a_write_go_out_together_in_call_order() -> None:
    async with gated_client() as (client, peer, gated):
        errors = await _queue_behind_blocked_write(client, gated, 20, fail=False)
        ids = [(await peer.next()).get("id") for _ in range(20)]
    assert ids == [str(i) for i in range(20)] and not errors
    assert len(gated.writes) == 2  # the first stanza, then the 19 queued behind it at once


async def test_a_failed_write_fails_every_stanza_queued_behind_it() -> None:
    async with gated_client() as (client, _peer, gated):
        errors = await _queue_behind_blocked_write(client, gated, 5, fail=True)
    # The writer's own stanza and the four queued behind it: none is silently lost, and
    # nothing more is written to the broken stream.
    assert len(errors) == 5 and all("reset by peer" in str(e) for e in errors), errors
    assert len(gated.writes) == 1


async def test_cancelling_a_sender_mid_write_still_writes_its_stanza_whole() -> None:
    """Regression: a cancellation while a stanza was being written left half of it in the
    stream (and broke a TLS stream for good, so the whole client). The write is shielded:
    the stanza goes out whole and the client keeps working."""
    scope = trio.CancelScope()

    async def sender(client: Client) -> None:
        with scope:
            await client.send(E("{jabber:client}message", {"id": "cut"}))
            await trio.sleep_forever()

    with trio.fail_after(5):
        async with gated_client() as (client, peer, gated):
            async with trio.open_nursery() as n:
                n.start_soon(sender, client)
                await gated.writing.wait()
                scope.cancel()  # the sender is blocked inside its write
                await trio.sleep(0.01)
                gated.gate.set()
            assert scope.cancelled_caught
            assert (await peer.next()).get("id") == "cut"
            await client.send(E("{jabber:client}message", {"id": "after"}))
            assert (await peer.next()).get("id") == "after"
