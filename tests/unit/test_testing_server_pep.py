"""The test server's PEP node store, sans-IO."""

from __future__ import annotations

import pytest
from lxml import etree

from jet_trio import JID
from jet_trio._xmpp import ns as ns
from jet_trio.testing._elements import StanzaError
from jet_trio.testing._pep import PepService

ALICE = JID("alice@localhost/a")
BOB = JID("bob@localhost/b")


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def iq(body: str, type: str = "set") -> etree._Element:
    return etree.fromstring(f"<iq xmlns='{ns.CLIENT}' type='{type}' id='1'>{body}</iq>".encode())


def form(**fields: str) -> str:
    values = "".join(
        f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items()
    )
    return f"<x xmlns='{ns.DATA_FORMS}' type='submit'>{values}</x>"


def publish(
    node: str, item_id: str | None = "i", payload: str = "<p xmlns='urn:t'/>", **opts: str
) -> etree._Element:
    id_attr = f" id='{item_id}'" if item_id else ""
    options = f"<publish-options>{form(**opts)}</publish-options>" if opts else ""
    return iq(
        f"<pubsub xmlns='{ns.PUBSUB}'><publish node='{node}'><item{id_attr}>{payload}</item>"
        f"</publish>{options}</pubsub>"
    )


def items(node: str, extra: str = "", children: str = "") -> etree._Element:
    return iq(
        f"<pubsub xmlns='{ns.PUBSUB}'><items node='{node}'{extra}>{children}</items></pubsub>",
        "get",
    )


def ids(result: etree._Element | None) -> list[str | None]:
    assert result is not None
    return [i.get("id") for i in result.iter(q(ns.PUBSUB, "item"))]


def test_publish_creates_the_node_and_notifies() -> None:
    pep = PepService()
    result, notes = pep.handle(ALICE, ALICE, publish("n", None))
    assert result is not None
    (item_id,) = ids(result)
    assert item_id
    assert len(notes) == 1 and notes[0].owner == ALICE.bare and notes[0].node == "n"
    event_item = notes[0].event.find(f"{q(ns.PUBSUB_EVENT, 'items')}/{q(ns.PUBSUB_EVENT, 'item')}")
    assert event_item is not None and event_item.get("id") == item_id
    assert event_item[0].tag == "{urn:t}p"
    assert pep.nodes(ALICE)["n"].access_model == "presence"


def test_items_all_by_id_and_max_items() -> None:
    pep = PepService()
    for i in "abc":
        pep.handle(ALICE, ALICE, publish("n", i))
    pep.handle(ALICE, ALICE, publish("n", "a"))  # republishing moves it to the end
    assert ids(pep.handle(ALICE, BOB, items("n"))[0]) == ["b", "c", "a"]
    assert ids(pep.handle(ALICE, BOB, items("n", " max_items='2'"))[0]) == ["c", "a"]
    assert ids(pep.handle(ALICE, BOB, items("n", children="<item id='b'/>"))[0]) == ["b"]
    last = pep.last_item_event(ALICE, "n")
    assert last is not None and last.find(f".//{q(ns.PUBSUB_EVENT, 'item')}").get("id") == "a"  # type: ignore[union-attr]


def test_max_items_option_trims() -> None:
    pep = PepService()
    for i in "abc":
        pep.handle(ALICE, ALICE, publish("n", i, max_items="2"))
    assert list(pep.nodes(ALICE)["n"].items) == ["b", "c"]


def test_publish_options_precondition() -> None:
    pep = PepService()
    pep.handle(ALICE, ALICE, publish("n", access_model="open"))
    pep.handle(ALICE, ALICE, publish("n", access_model="open", persist_items="1"))  # matches
    with pytest.raises(StanzaError) as info:
        pep.handle(ALICE, ALICE, publish("n", access_model="whitelist"))
    assert info.value.condition == "conflict" and info.value.app is not None
    assert info.value.app.tag == q(ns.PUBSUB_ERRORS, "precondition-not-met")
    with pytest.raises(StanzaError, match="conflict"):
        pep.handle(ALICE, ALICE, publish("other", access_model="bogus"))
    assert "other" not in pep.nodes(ALICE)


def test_only_the_owner_publishes_and_whitelist_is_private() -> None:
    pep = PepService()
    with pytest.raises(StanzaError, match="forbidden"):
        pep.handle(ALICE, BOB, publish("n"))
    pep.handle(ALICE, ALICE, publish("n", access_model="whitelist"))
    with pytest.raises(StanzaError, match="forbidden"):
        pep.handle(ALICE, BOB, items("n"))
    assert ids(pep.handle(ALICE, ALICE, items("n"))[0]) == ["i"]


def test_retract_and_delete() -> None:
    pep = PepService()
    pep.handle(ALICE, ALICE, publish("n", "a"))
    pep.handle(ALICE, ALICE, publish("n", "b"))
    retract = (
        f"<pubsub xmlns='{ns.PUBSUB}'><retract node='n'{{}}><item id='{{}}'/></retract></pubsub>"
    )
    _, notes = pep.handle(ALICE, ALICE, iq(retract.format("", "a")))
    assert notes == []
    _, notes = pep.handle(ALICE, ALICE, iq(retract.format(" notify='true'", "b")))
    assert notes[0].event.find(f".//{q(ns.PUBSUB_EVENT, 'retract')}").get("id") == "b"  # type: ignore[union-attr]
    with pytest.raises(StanzaError, match="item-not-found"):
        pep.handle(ALICE, ALICE, iq(retract.format("", "b")))
    delete = iq(f"<pubsub xmlns='{ns.PUBSUB_OWNER}'><delete node='n'/></pubsub>")
    with pytest.raises(StanzaError, match="forbidden"):
        pep.handle(ALICE, BOB, delete)
    _, notes = pep.handle(ALICE, ALICE, delete)
    assert notes[0].event.find(q(ns.PUBSUB_EVENT, "delete")) is not None
    with pytest.raises(StanzaError, match="item-not-found"):
        pep.handle(ALICE, BOB, items("n"))


def test_configure_get_and_set() -> None:
    pep = PepService()
    pep.handle(ALICE, ALICE, publish("n"))
    get = iq(f"<pubsub xmlns='{ns.PUBSUB_OWNER}'><configure node='n'/></pubsub>", "get")
    result, _ = pep.handle(ALICE, ALICE, get)
    assert result is not None
    values = {
        f.get("var"): f.findtext(q(ns.DATA_FORMS, "value"))
        for f in result.iter(q(ns.DATA_FORMS, "field"))
    }
    assert values["FORM_TYPE"] == f"{ns.PUBSUB}#node_config"
    assert values["pubsub#access_model"] == "presence"
    configure = f"<configure node='n'>{form(access_model='open')}</configure>"
    body = f"<pubsub xmlns='{ns.PUBSUB_OWNER}'>{configure}</pubsub>"
    pep.handle(ALICE, ALICE, iq(body))
    assert pep.nodes(ALICE)["n"].access_model == "open"
    pep.handle(ALICE, ALICE, publish("n", access_model="open"))  # now matches


def test_malformed_requests() -> None:
    pep = PepService()
    two = "<a xmlns='urn:t'/><b xmlns='urn:t'/>"
    with pytest.raises(StanzaError, match="bad-request"):
        pep.handle(ALICE, ALICE, publish("n", payload=two))
    with pytest.raises(StanzaError, match="bad-request"):
        pep.handle(ALICE, ALICE, publish(""))
    with pytest.raises(StanzaError, match="feature-not-implemented"):
        pep.handle(ALICE, ALICE, iq(f"<pubsub xmlns='{ns.PUBSUB}'><subscribe node='n'/></pubsub>"))
