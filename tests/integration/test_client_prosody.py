"""The client against a real Prosody on loopback."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
from lxml import etree

import jet_trio
from jet_trio import JID, Client, open_client
from jet_trio._xmpp.ns import BYTESTREAMS, DISCO_INFO
from jet_trio._xmpp.stanza import E

from ._servers import ServerInfo

pytestmark = pytest.mark.integration

NODE = "urn:example:jet-trio:test"


def connect(
    server: ServerInfo, user: str, resource: str | None = None, **kwargs: Any
) -> AbstractAsyncContextManager[Client]:
    jid = server.jid(user) + (f"/{resource}" if resource else "")
    return open_client(
        jid,
        server.accounts[user],
        host=server.host,
        port=server.port,
        ca_file=server.ca_file,
        **kwargs,
    )


async def test_login_starttls_verified_and_ping(prosody: ServerInfo) -> None:
    with trio.fail_after(10):
        async with connect(prosody, "alice", "phone") as alice:
            assert alice.jid == JID(prosody.jid("alice") + "/phone")
            rtt = await alice.ping()
            assert 0 <= rtt < 5


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "PLAIN"])
async def test_each_sasl_mechanism_prosody_offers(prosody: ServerInfo, mechanism: str) -> None:
    with trio.fail_after(10):
        async with connect(prosody, "bob", mechanisms=[mechanism]) as bob:
            assert bob.jid.bare == JID(prosody.jid("bob"))


async def test_scram_sha_256_not_offered_gives_clear_error(prosody: ServerInfo) -> None:
    # Prosody 0.12 with internal_hashed stores SCRAM-SHA-1 keys only.
    with trio.fail_after(10), pytest.raises(jet_trio.NoCommonMechanism, match="SCRAM-SHA-1"):
        async with connect(prosody, "bob", mechanisms=["SCRAM-SHA-256"]):
            pass


async def test_wrong_password(prosody: ServerInfo) -> None:
    with trio.fail_after(10), pytest.raises(jet_trio.AuthenticationError, match="wrong password"):
        async with open_client(
            prosody.jid("alice"),
            "not-the-password",
            host=prosody.host,
            port=prosody.port,
            ca_file=prosody.ca_file,
        ):
            pass


async def test_untrusted_certificate_is_refused(prosody: ServerInfo) -> None:
    with trio.fail_after(10), pytest.raises(jet_trio.TLSError, match="not trusted"):
        async with open_client(
            prosody.jid("alice"),
            prosody.accounts["alice"],
            host=prosody.host,
            port=prosody.port,
            ssl_context=ssl.create_default_context(),  # system store: no test CA
        ):
            pass


async def test_connection_refused(prosody: ServerInfo) -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with trio.fail_after(10), pytest.raises(jet_trio.ConnectionFailed, match="could not connect"):
        async with open_client("alice@localhost", "x", host="127.0.0.1", port=port):
            pass


async def test_disco_of_the_server_and_proxy(prosody: ServerInfo) -> None:
    with trio.fail_after(10):
        async with connect(prosody, "alice") as alice:
            info = await alice.disco(prosody.domain)
            assert info.has(DISCO_INFO)
            assert any(i.category == "server" for i in info.identities)
            items = await alice.disco_items(prosody.domain)
            assert prosody.proxy_jid in {i.jid for i in items}
            proxy = await alice.disco(prosody.proxy_jid)
            assert proxy.has(BYTESTREAMS)


async def test_iq_to_offline_resource_raises_stanza_error(prosody: ServerInfo) -> None:
    with trio.fail_after(10):
        async with connect(prosody, "alice") as alice:
            with pytest.raises(jet_trio.StanzaError) as info:
                await alice.disco(prosody.jid("bob") + "/nowhere")
            assert info.value.condition in {"service-unavailable", "item-not-found"}


async def test_disco_and_caps_between_two_clients(prosody: ServerInfo) -> None:
    with trio.fail_after(10):
        async with connect(prosody, "alice", "a") as alice, connect(prosody, "bob", "b") as bob:
            await alice.add_features("urn:example:feature")
            with trio.fail_after(5):
                await bob.wait_available(alice.jid)
            info = await bob.features_of(alice.jid)
            assert info.has("urn:example:feature", DISCO_INFO)


async def test_pep_publish_retrieve_notify_retract(prosody: ServerInfo) -> None:
    events_in, events = trio.open_memory_channel[tuple[JID, jet_trio.PubSubEvent]](16)

    def on_event(publisher: JID, event: jet_trio.PubSubEvent) -> None:
        events_in.send_nowait((publisher, event))

    async def next_event(
        match: Callable[[jet_trio.PubSubEvent], bool],
    ) -> tuple[JID, jet_trio.PubSubEvent]:
        # The server may also send the last item again once it has resolved our new caps.
        async for publisher, event in events:
            if match(event):
                return publisher, event
        raise AssertionError("no more events")

    with trio.fail_after(15):
        async with connect(prosody, "alice", "a") as alice, connect(prosody, "bob", "b") as bob:
            await bob.on_pep(NODE, on_event)
            payload = E(f"{{{NODE}}}data", text="hello")
            await alice.publish(
                NODE, payload, item_id="current", options={"pubsub#access_model": "open"}
            )
            items = await bob.get_items(alice.jid.bare, NODE)
            assert [(i.id, i.payload is not None and i.payload.text) for i in items] == [
                ("current", "hello")
            ]
            publisher, event = await next_event(lambda e: bool(e.items))
            assert publisher == alice.jid.bare
            assert event.node == NODE and event.items[0].id == "current"
            await alice.retract(NODE, "current")
            _, event = await next_event(lambda e: bool(e.retracted))
            assert event.retracted == ("current",)
            assert await bob.get_items(alice.jid.bare, NODE) == []


async def test_publish_options_precondition_reconfigures(prosody: ServerInfo) -> None:
    node = NODE + ":precondition"
    with trio.fail_after(10):
        async with connect(prosody, "carol") as carol:
            await carol.publish(
                node, E(f"{{{NODE}}}v", text="1"), options={"pubsub#access_model": "presence"}
            )
            await carol.publish(
                node, E(f"{{{NODE}}}v", text="2"), options={"pubsub#access_model": "open"}
            )
            items = await carol.get_items(carol.jid.bare, node)
            assert items[-1].payload is not None and items[-1].payload.text == "2"


async def test_incoming_iq_handler_and_unhandled_request(prosody: ServerInfo) -> None:
    tag = f"{{{NODE}}}echo"

    async def echo(iq: etree._Element) -> etree._Element:
        return E(tag, text=(iq[0].text or "")[::-1])

    with trio.fail_after(10):
        async with connect(prosody, "alice", "h") as alice, connect(prosody, "bob", "h") as bob:
            bob.register_iq_handler("get", tag, echo)
            answer = await alice.request("get", E(tag, text="abc"), bob.jid)
            assert answer is not None and answer.text == "cba"
            with pytest.raises(jet_trio.StanzaError) as err:
                await alice.request("get", E(f"{{{NODE}}}unknown"), bob.jid)
            assert err.value.condition == "service-unavailable"


async def test_cancelled_iq_is_cleaned_up(prosody: ServerInfo) -> None:
    tag = f"{{{NODE}}}slow"
    release = trio.Event()

    async def slow(iq: etree._Element) -> None:
        await release.wait()

    with trio.fail_after(10):
        async with connect(prosody, "alice", "c") as alice, connect(prosody, "bob", "c") as bob:
            bob.register_iq_handler("get", tag, slow)
            with trio.move_on_after(0.2) as scope:
                await alice.request("get", E(tag), bob.jid)
            assert scope.cancelled_caught
            assert alice._pending == {}
            release.set()
            assert await alice.ping() >= 0


async def test_server_killed_mid_session(prosody_factory: Callable[..., object]) -> None:
    server = prosody_factory()
    info: ServerInfo = server.info  # type: ignore[attr-defined]
    with trio.fail_after(15), pytest.raises(jet_trio.ConnectionLost):
        async with connect(info, "alice") as alice:
            await alice.ping()
            server.kill()  # type: ignore[attr-defined]
            await trio.sleep_forever()
