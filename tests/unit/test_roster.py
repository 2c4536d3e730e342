"""The roster and subscription stanzas of RFC 6121, sans-IO."""

from __future__ import annotations

import pytest
from lxml import etree

from jet_trio._errors import RemoteProtocolError
from jet_trio._xmpp.jid import JID
from jet_trio._xmpp.roster import (
    MAX_ROSTER_ITEMS,
    RosterItem,
    SubscriptionRequest,
    parse_roster,
    parse_roster_push,
    parse_subscription_presence,
    roster_query,
    roster_remove,
    roster_set,
    subscription_presence,
)

NS = "jabber:iq:roster"
OWN = JID("alice@example.org/phone")


def _query(*items: str) -> etree._Element:
    return etree.fromstring(f"<query xmlns='{NS}'>{''.join(items)}</query>")


def _push(frm: str | None, *items: str) -> etree._Element:
    attr = f" from='{frm}'" if frm is not None else ""
    return etree.fromstring(
        f"<iq xmlns='jabber:client' type='set' id='p1'{attr}>"
        f"<query xmlns='{NS}'>{''.join(items)}</query></iq>"
    )


def test_builders() -> None:
    assert etree.tostring(roster_query()) == f'<query xmlns="{NS}"/>'.encode()
    item = roster_set(JID("bob@example.org/x"), name="Bob", groups=("work",))[0]
    assert (item.get("jid"), item.get("name"), item[0].text) == ("bob@example.org", "Bob", "work")
    removed = roster_remove(JID("bob@example.org"))[0]
    assert removed.get("subscription") == "remove"
    p = subscription_presence(JID("bob@example.org/x"), "subscribe")
    assert (p.tag, p.get("to"), p.get("type")) == (
        "{jabber:client}presence",
        "bob@example.org",
        "subscribe",
    )
    with pytest.raises(ValueError):
        subscription_presence(JID("bob@example.org"), "probe")  # type: ignore[arg-type]


def test_parse_roster_states() -> None:
    items = parse_roster(
        _query(
            "<item jid='carol@example.org' subscription='both'/>",
            "<item jid='bob@example.org' subscription='none' ask='subscribe' name='Bob'>"
            "<group>friends</group><group> </group></item>",
            "<item jid='dave@example.org'/>",
        )
    )
    assert items == [
        RosterItem(JID("bob@example.org"), "none", True, "Bob", ("friends",)),
        RosterItem(JID("carol@example.org"), "both"),
        RosterItem(JID("dave@example.org"), "none"),
    ]
    assert items[1].we_see_them and items[1].they_see_us
    assert not items[0].we_see_them
    assert parse_roster(None) == []


@pytest.mark.parametrize(
    "item",
    [
        "<item subscription='both'/>",
        "<item jid='bad@@x' subscription='both'/>",
        "<item jid='bob@example.org' subscription='remove'/>",
        "<item jid='bob@example.org' subscription='maybe'/>",
    ],
)
def test_parse_roster_rejects_malformed_items(item: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_roster(_query(item))


def test_parse_roster_is_bounded() -> None:
    many = "".join(f"<item jid='u{i}@example.org'/>" for i in range(MAX_ROSTER_ITEMS + 1))
    with pytest.raises(RemoteProtocolError, match="more than"):
        parse_roster(_query(many))


def test_roster_push_only_from_own_account() -> None:
    item = "<item jid='bob@example.org' subscription='to'/>"
    assert parse_roster_push(_push(None, item), OWN) == (
        JID("bob@example.org"),
        RosterItem(JID("bob@example.org"), "to"),
    )
    assert parse_roster_push(_push("alice@example.org", item), OWN)[1] is not None
    # A contact (or anyone else) must not rewrite our roster (RFC 6121 2.1.6).
    for sender in ("bob@example.org", "alice@example.org/other", "example.org", "@@"):
        with pytest.raises(RemoteProtocolError, match="not from our own account"):
            parse_roster_push(_push(sender, item), OWN)
    removed = "<item jid='bob@example.org' subscription='remove'/>"
    assert parse_roster_push(_push(None, removed), OWN) == (JID("bob@example.org"), None)
    with pytest.raises(RemoteProtocolError, match="one item"):
        parse_roster_push(_push(None, item, item), OWN)


def test_parse_subscription_presence() -> None:
    def presence(attrs: str) -> etree._Element:
        return etree.fromstring(f"<presence xmlns='jabber:client' {attrs}/>")

    assert parse_subscription_presence(
        presence("from='bob@example.org/x' type='subscribe'")
    ) == SubscriptionRequest(JID("bob@example.org"), "subscribe")
    assert parse_subscription_presence(presence("from='bob@example.org'")) is None
    assert parse_subscription_presence(presence("type='subscribed'")) is None
    assert parse_subscription_presence(presence("from='@@' type='subscribe'")) is None
