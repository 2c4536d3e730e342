"""PEP publish-options negotiation: what ``Client.publish`` sends when a server refuses them.

The far end is scripted with the answers real servers give (ejabberd 23.01 answers an unknown
publish-options field with ``resource-constraint``; Prosody a mismatching node with
``precondition-not-met``). The real servers are exercised in
``tests/integration/test_servers_envelopes.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from lxml import etree

from jet_trio import JID, StanzaError
from jet_trio._xmpp.client import Client
from jet_trio._xmpp.ns import PUBSUB, PUBSUB_ERRORS, PUBSUB_OWNER
from jet_trio._xmpp.pubsub import PublishRecovery, create_request, publish_recovery
from jet_trio._xmpp.stanza import E, error_reply, make_result
from jet_trio._xmpp.xml import StanzaReceived, XMLStreamParser, serialize, stream_header

ME = JID("me@example.org/r")
OPTIONS = {"pubsub#access_model": "open", "pubsub#max_items": "max"}
NODE = "urn:example:node"
DATA = "jabber:x:data"
PRECONDITION = f"{{{PUBSUB_ERRORS}}}precondition-not-met"


class Peer:
    """The server end of the client's stream, driven by the test."""

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

    async def send(self, el: etree._Element) -> None:
        await self.stream.send_all(serialize(el))


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


def describe(iq: etree._Element) -> str:
    """A short name of a pubsub request: publish+options, publish, configure, create."""
    (ps,) = iq
    if ps.tag == f"{{{PUBSUB_OWNER}}}pubsub":
        assert ps[0].tag == f"{{{PUBSUB_OWNER}}}configure" and ps[0].get("node") == NODE
        return "configure"
    if ps.find(f"{{{PUBSUB}}}create") is not None:
        assert ps.find(f"{{{PUBSUB}}}create").get("node") == NODE  # type: ignore[union-attr]
        return "create"
    assert ps.find(f"{{{PUBSUB}}}publish").get("node") == NODE  # type: ignore[union-attr]
    return "publish+options" if ps.find(f"{{{PUBSUB}}}publish-options") is not None else "publish"


def form_values(iq: etree._Element) -> dict[str, str]:
    form = iq.find(f".//{{{DATA}}}x")
    assert form is not None
    return {
        f.get("var", ""): f.findtext(f"{{{DATA}}}value") or ""
        for f in form.iterfind(f"{{{DATA}}}field")
    }


def refuse(
    iq: etree._Element, condition: str, app: str | None = None, type_: str = "cancel"
) -> etree._Element:
    return error_reply(iq, condition, type_, app_condition=None if app is None else E(app))


Answer = str | tuple[str, str | None] | tuple[str, str | None, str]
#: ejabberd 23.01 (mnesia) when two accounts create PEP nodes at once and the node-index
#: transaction deadlocks: the create is aborted with "Database failure".
DATABASE_FAILURE = ("internal-server-error", None, "wait")


async def serve(peer: Peer, answers: Sequence[Answer]) -> list[str]:
    """Answer the client's requests in order: ``"ok"`` or an error condition (with app)."""
    seen = []
    for answer in answers:
        iq = await peer.next()
        seen.append(describe(iq))
        if seen[-1] in ("configure", "create", "publish+options"):
            values = form_values(iq)
            assert {k: v for k, v in values.items() if k != "FORM_TYPE"} == OPTIONS
        if answer == "ok":
            await peer.send(make_result(iq))
        elif isinstance(answer, tuple):
            await peer.send(refuse(iq, *answer))
        else:
            await peer.send(refuse(iq, answer))
    return seen


async def publish_against(answers: Sequence[Answer], times: int = 1) -> list[str]:
    async with client_and_peer() as (client, peer):
        seen: list[str] = []

        async def server() -> None:
            seen.extend(await serve(peer, answers))

        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                n.start_soon(server)
                for _ in range(times):
                    await client.publish(NODE, E("{urn:example}x"), item_id="1", options=OPTIONS)
        return seen


async def test_refused_form_configures_then_publishes_plain_and_remembers() -> None:
    """ejabberd 23.01: the form is refused, the node does not exist yet: create it configured,
    then publish without the form; a later publish goes straight to configure + publish."""
    seen = await publish_against(
        ["resource-constraint", "item-not-found", "ok", "ok", "ok", "ok"], times=2
    )
    assert seen == ["publish+options", "configure", "create", "publish", "configure", "publish"]


async def test_existing_node_is_configured_not_created() -> None:
    seen = await publish_against(["feature-not-implemented", "ok", "ok"])
    assert seen == ["publish+options", "configure", "publish"]


async def test_node_created_meanwhile_is_configured() -> None:
    seen = await publish_against(["bad-request", "item-not-found", "conflict", "ok", "ok"])
    assert seen == ["publish+options", "configure", "create", "configure", "publish"]


async def test_precondition_not_met_reconfigures_and_retries_with_options() -> None:
    seen = await publish_against([("conflict", PRECONDITION), "ok", "ok"])
    assert seen == ["publish+options", "configure", "publish+options"]


async def test_nothing_published_when_the_configuration_is_refused_too() -> None:
    """The item never goes to a node the options were not applied to."""
    async with client_and_peer() as (client, peer):
        seen: list[str] = []

        async def server() -> None:
            seen.extend(await serve(peer, ["resource-constraint", "item-not-found", "forbidden"]))

        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                n.start_soon(server)
                with pytest.raises(StanzaError) as info:
                    await client.publish(NODE, E("{urn:example}x"), options=OPTIONS)
        assert seen == ["publish+options", "configure", "create"]
        assert info.value.condition == "forbidden"
        assert "publish-options refused (resource-constraint" in str(info.value)
        assert "node configuration refused" in str(info.value)
        # and nothing further was sent
        with trio.move_on_after(0.2) as scope:
            await peer.next()
        assert scope.cancelled_caught


async def test_publish_whose_implicit_creation_failed_creates_the_node() -> None:
    """ejabberd 23.01 answers a publish with ``item-not-found`` when the node it would create
    for it could not be created (a deadlock with another account's node creation): the node
    is created explicitly, configured, and the item published again with its options."""
    seen = await publish_against(["item-not-found", "item-not-found", "ok", "ok"])
    assert seen == ["publish+options", "configure", "create", "publish+options"]


async def test_database_failure_on_create_is_retried() -> None:
    """The sequence ejabberd 23.01 answered when alice's and bob's OMEMO set-ups overlapped:
    the form is refused, the node is missing, and its creation aborts with a temporary
    ``internal-server-error`` (type ``wait``); the create is sent again and succeeds."""
    seen = await publish_against(
        ["resource-constraint", "item-not-found", DATABASE_FAILURE, "ok", "ok"]
    )
    assert seen == ["publish+options", "configure", "create", "create", "publish"]


async def test_both_races_at_once() -> None:
    """The implicit creation fails, then the explicit one once too."""
    seen = await publish_against(
        [
            "item-not-found",
            "item-not-found",
            DATABASE_FAILURE,
            "ok",
            "resource-constraint",
            "ok",
            "ok",
        ]
    )
    assert seen == [
        "publish+options",
        "configure",
        "create",
        "create",
        "publish+options",
        "configure",
        "publish",
    ]


async def test_temporary_failures_are_retried_a_bounded_number_of_times() -> None:
    async with client_and_peer() as (client, peer):
        seen: list[str] = []

        async def server() -> None:
            seen.extend(await serve(peer, [DATABASE_FAILURE] * 3))

        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                n.start_soon(server)
                with pytest.raises(StanzaError) as info:
                    await client.publish(NODE, E("{urn:example}x"), options=OPTIONS)
        assert seen == ["publish+options"] * 3
        assert (info.value.condition, info.value.type) == ("internal-server-error", "wait")
        with trio.move_on_after(0.5) as scope:
            await peer.next()
        assert scope.cancelled_caught


async def test_missing_node_is_created_only_once() -> None:
    async with client_and_peer() as (client, peer):
        seen: list[str] = []

        async def server() -> None:
            seen.extend(
                await serve(peer, ["item-not-found", "item-not-found", "ok", "item-not-found"])
            )

        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                n.start_soon(server)
                with pytest.raises(StanzaError) as info:
                    await client.publish(NODE, E("{urn:example}x"), options=OPTIONS)
        assert seen == ["publish+options", "configure", "create", "publish+options"]
        assert info.value.condition == "item-not-found"
        with trio.move_on_after(0.2) as scope:
            await peer.next()
        assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("condition", "type_"),
    [("forbidden", "auth"), ("not-authorized", "auth"), ("internal-server-error", "cancel")],
)
async def test_errors_not_about_the_options_are_raised(condition: str, type_: str) -> None:
    async with client_and_peer() as (client, peer):
        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                n.start_soon(serve, peer, [(condition, None, type_)])
                with pytest.raises(StanzaError) as info:
                    await client.publish(NODE, E("{urn:example}x"), options=OPTIONS)
        assert info.value.condition == condition


@pytest.mark.parametrize("condition", ["forbidden", "not-authorized", "item-not-found"])
async def test_without_options_errors_are_raised(condition: str) -> None:
    async with client_and_peer() as (client, peer):
        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                n.start_soon(serve, peer, [condition])
                with pytest.raises(StanzaError) as info:
                    await client.publish(NODE, E("{urn:example}x"))
        assert info.value.condition == condition


async def test_without_options_nothing_is_negotiated() -> None:
    async with client_and_peer() as (client, peer):
        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                n.start_soon(serve, peer, ["resource-constraint"])
                with pytest.raises(StanzaError):
                    await client.publish(NODE, E("{urn:example}x"))


@pytest.mark.parametrize(
    ("condition", "app", "with_options", "step"),
    [
        ("conflict", PRECONDITION, True, PublishRecovery.CONFIGURE_AND_RETRY),
        ("resource-constraint", None, True, PublishRecovery.CONFIGURE_THEN_PUBLISH_PLAIN),
        ("not-acceptable", None, True, PublishRecovery.CONFIGURE_THEN_PUBLISH_PLAIN),
        ("feature-not-implemented", None, True, PublishRecovery.CONFIGURE_THEN_PUBLISH_PLAIN),
        ("bad-request", None, True, PublishRecovery.CONFIGURE_THEN_PUBLISH_PLAIN),
        ("item-not-found", None, True, PublishRecovery.CREATE_AND_RETRY),
        ("item-not-found", None, False, PublishRecovery.RAISE),
        ("forbidden", None, True, PublishRecovery.RAISE),
        ("conflict", None, True, PublishRecovery.RAISE),
        ("resource-constraint", None, False, PublishRecovery.RAISE),
        ("conflict", PRECONDITION, False, PublishRecovery.RAISE),
    ],
)
def test_publish_recovery_table(
    condition: str, app: str | None, with_options: bool, step: PublishRecovery
) -> None:
    assert publish_recovery(condition, app, with_options) is step


def test_create_request_carries_the_node_configuration() -> None:
    el = create_request(NODE, {"pubsub#max_items": "max"})
    assert el.tag == f"{{{PUBSUB}}}pubsub"
    create, configure = el
    assert create.tag == f"{{{PUBSUB}}}create" and create.get("node") == NODE
    assert configure.tag == f"{{{PUBSUB}}}configure"
    form = configure[0]
    assert form.get("type") == "submit"
    fields = {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in form}
    assert fields == {
        "FORM_TYPE": "http://jabber.org/protocol/pubsub#node_config",
        "pubsub#max_items": "max",
    }
