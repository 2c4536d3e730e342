"""The test server's router, sans-IO: sessions, routing, presence, caps, PEP notifications."""

from __future__ import annotations

from lxml import etree

from jet_trio import JID
from jet_trio._xmpp import ns as ns
from jet_trio._xmpp.disco import DiscoInfo, caps_ver
from jet_trio._xmpp.xml import serialize
from jet_trio.testing._router import (
    Activate,
    Deliver,
    Disconnect,
    ProxyInfo,
    Router,
    RouterAction,
    Session,
)

FEATURES = frozenset({"urn:n+notify", "urn:x"})
VER = caps_ver(DiscoInfo(features=FEATURES))
CAPS = f"<c xmlns='{ns.CAPS}' hash='sha-1' node='n' ver='{VER}'/>"


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def stanza(text: str) -> etree._Element:
    return etree.fromstring(f"<w xmlns='{ns.CLIENT}'>{text}</w>".encode())[0]


def router(proxy: ProxyInfo | None = None) -> Router:
    return Router("localhost", {"alice": "a", "bob": "b", "carol": "c"}, proxy)


def deliveries(actions: list[RouterAction]) -> list[tuple[str, etree._Element]]:
    out = []
    for action in actions:
        assert isinstance(action, Deliver), action
        out.append((str(action.session.jid), action.element))
    return out


def only(actions: list[RouterAction]) -> tuple[str, etree._Element]:
    (single,) = deliveries(actions)
    return single


def condition(el: etree._Element) -> str:
    error = el.find(q(ns.CLIENT, "error"))
    assert error is not None, etree.tostring(el)
    return etree.QName(error[0]).localname


def bind(r: Router, user: str, resource: str, presence: str | None = None) -> Session:
    session, actions = r.bind(user, resource)
    assert actions == []
    if presence is not None:
        r.receive(session, stanza(presence))
    return session


def test_bind_generates_resources_and_replaces_on_conflict() -> None:
    r = router()
    first, _ = r.bind("alice", None)
    assert first.jid.bare == JID("alice@localhost") and first.jid.resource
    old = bind(r, "alice", "x", "<presence/>")
    bob = bind(r, "bob", "b", "<presence/>")
    new, actions = r.bind("alice", "x")
    assert [type(a) for a in actions] == [Deliver, Disconnect]
    unavailable = actions[0]
    assert isinstance(unavailable, Deliver) and unavailable.session is bob
    assert unavailable.element.get("type") == "unavailable"
    assert actions[1] == Disconnect(old, "conflict")
    assert r.session(JID("alice@localhost/x")) is new
    assert r.unbind(old) == []  # the old one is already gone


def test_message_routing_rules() -> None:
    r = router()
    alice = bind(r, "alice", "a")
    bob1 = bind(r, "bob", "1", "<presence/>")
    bind(r, "bob", "2", "<presence><priority>-1</priority></presence>")
    bob3 = bind(r, "bob", "3")  # bound but never available
    to_bare = deliveries(r.receive(alice, stanza("<message to='bob@localhost'/>")))
    assert [jid for jid, _ in to_bare] == [str(bob1.jid)]
    jid, _ = only(r.receive(alice, stanza("<message to='bob@localhost/3'/>")))
    assert jid == str(bob3.jid)
    # chat to an unbound full JID falls back to the bare JID; headline is dropped
    jid, _ = only(r.receive(alice, stanza("<message type='chat' to='bob@localhost/zz'/>")))
    assert jid == str(bob1.jid)
    assert r.receive(alice, stanza("<message type='headline' to='bob@localhost/zz'/>")) == []
    assert r.receive(alice, stanza("<message to='carol@localhost'/>")) == []  # nobody online
    jid, error = only(r.receive(alice, stanza("<message to='nobody@localhost'/>")))
    assert jid == str(alice.jid) and condition(error) == "service-unavailable"
    _, error = only(r.receive(alice, stanza("<message to='x@elsewhere.example'/>")))
    assert condition(error) == "remote-server-not-found"
    _, error = only(r.receive(alice, stanza("<message to='@@bad'/>")))
    assert condition(error) == "jid-malformed"


def test_iq_routing_rules() -> None:
    r = router()
    alice = bind(r, "alice", "a")
    bob = bind(r, "bob", "b")
    jid, request = only(
        r.receive(
            alice, stanza("<iq type='get' id='1' to='bob@localhost/b'><x xmlns='urn:t'/></iq>")
        )
    )
    assert jid == str(bob.jid) and request.get("from") == str(alice.jid)
    jid, _ = only(r.receive(bob, stanza("<iq type='result' id='1' to='alice@localhost/a'/>")))
    assert jid == str(alice.jid)
    assert r.receive(bob, stanza("<iq type='result' id='1' to='alice@localhost/gone'/>")) == []
    _, error = only(
        r.receive(
            alice, stanza("<iq type='set' id='2' to='bob@localhost/gone'><x xmlns='urn:t'/></iq>")
        )
    )
    assert condition(error) == "service-unavailable" and error.get("id") == "2"
    _, error = only(r.receive(alice, stanza("<iq type='get' id='3'/>")))
    assert condition(error) == "bad-request"
    _, error = only(
        r.receive(
            alice,
            stanza(f"<iq type='get' id='4' to='bob@localhost'><query xmlns='{ns.ROSTER}'/></iq>"),
        )
    )
    assert condition(error) == "forbidden"


def test_presence_initial_exchange_probe_and_unavailable() -> None:
    r = router()
    alice = bind(r, "alice", "a", "<presence><status>here</status></presence>")
    alice2 = bind(r, "alice", "a2", "<presence/>")
    bob = bind(r, "bob", "b")
    sent = deliveries(r.receive(bob, stanza("<presence/>")))
    broadcast = {(to, el.get("from")) for to, el in sent}
    assert broadcast == {
        (str(alice.jid), str(bob.jid)),
        (str(alice2.jid), str(bob.jid)),
        (str(bob.jid), str(alice.jid)),
        (str(bob.jid), str(alice2.jid)),
    }
    # a presence update is broadcast but does not resend everyone's presence
    assert len(r.receive(bob, stanza("<presence><show>away</show></presence>"))) == 2
    probe = deliveries(r.receive(bob, stanza("<presence type='probe' to='alice@localhost'/>")))
    assert {el.get("from") for _, el in probe} == {str(alice.jid), str(alice2.jid)}
    assert all(to == str(bob.jid) for to, _ in probe)
    gone = deliveries(r.receive(alice2, stanza("<presence type='unavailable'/>")))
    assert {to for to, _ in gone} == {str(alice.jid), str(bob.jid)}
    assert all(el.get("type") == "unavailable" for _, el in gone)
    directed = deliveries(r.receive(bob, stanza("<presence to='alice@localhost/a'/>")))
    assert [to for to, _ in directed] == [str(alice.jid)]


def test_caps_resolution_is_cached_and_drives_notifications() -> None:
    r = router()
    alice = bind(r, "alice", "a")
    publish = stanza(
        f"<iq type='set' id='p'><pubsub xmlns='{ns.PUBSUB}'><publish node='urn:n'>"
        "<item id='cur'><v xmlns='urn:t'/></item></publish></pubsub></iq>"
    )
    assert len(r.receive(alice, publish)) == 1  # the result; nobody listens yet
    bob = bind(r, "bob", "b")
    actions = deliveries(r.receive(bob, stanza(f"<presence>{CAPS}</presence>")))
    queries = [el for to, el in actions if el.tag == q(ns.CLIENT, "iq")]
    assert len(queries) == 1 and queries[0].get("to") == str(bob.jid)
    assert queries[0].find(q(ns.DISCO_INFO, "query")).get("node") == f"n#{VER}"  # type: ignore[union-attr]
    carol = bind(r, "carol", "c")
    later = deliveries(r.receive(carol, stanza(f"<presence>{CAPS}</presence>")))
    assert not [el for _, el in later if el.tag == q(ns.CLIENT, "iq")]  # query already pending
    answer = disco_answer(queries[0], FEATURES)
    last_items = deliveries(r.receive(bob, answer))
    assert sorted(to for to, _ in last_items) == [str(bob.jid), str(carol.jid)]
    assert all(el.get("from") == "alice@localhost" for _, el in last_items)
    assert r.stats.caps_queries == 1
    # a new resource with the known ver: no query, last item straight away
    bob2 = bind(r, "bob", "b2")
    fresh = deliveries(r.receive(bob2, stanza(f"<presence>{CAPS}</presence>")))
    assert [to for to, el in fresh if el.tag == q(ns.CLIENT, "message")] == [str(bob2.jid)]
    # publishing notifies the owner (online) and the +notify contacts
    r.receive(alice, stanza("<presence/>"))
    notes = deliveries(r.receive(alice, publish))[1:]
    assert sorted(to for to, _ in notes) == sorted(str(s.jid) for s in (alice, bob, bob2, carol))


def disco_answer(query: etree._Element, features: frozenset[str]) -> etree._Element:
    info = serialize(DiscoInfo(features=features).to_element()).decode()
    return stanza(f"<iq type='result' id='{query.get('id')}' to='localhost'>{info}</iq>")


def caps_queries(actions: list[RouterAction]) -> list[etree._Element]:
    return [el for _, el in deliveries(actions) if el.tag == q(ns.CLIENT, "iq")]


def test_a_caps_answer_not_matching_its_hash_is_not_shared() -> None:
    r = router()
    bob = bind(r, "bob", "b")
    (query,) = caps_queries(r.receive(bob, stanza(f"<presence>{CAPS}</presence>")))
    r.receive(bob, disco_answer(query, frozenset({"urn:other+notify"})))
    assert bob.notify == frozenset({"urn:other"})  # believed for bob himself
    carol = bind(r, "carol", "c")
    assert len(caps_queries(r.receive(carol, stanza(f"<presence>{CAPS}</presence>")))) == 1


def test_caps_query_error_means_no_interest() -> None:
    r = router()
    bob = bind(r, "bob", "b")
    (query,) = [
        el
        for _, el in deliveries(r.receive(bob, stanza(f"<presence>{CAPS}</presence>")))
        if el.tag == q(ns.CLIENT, "iq")
    ]
    error = stanza(f"<iq type='error' id='{query.get('id')}' to='localhost'/>")
    assert r.receive(bob, error) == []
    assert bob.notify == frozenset()


def test_proxy_requests() -> None:
    proxy = ProxyInfo(JID("proxy.localhost"), "127.0.0.1", 1080)
    r = router(proxy)
    alice = bind(r, "alice", "a")
    get = stanza(
        f"<iq type='get' id='1' to='proxy.localhost'><query xmlns='{ns.BYTESTREAMS}'/></iq>"
    )
    _, reply = only(r.receive(alice, get))
    host = reply.find(f".//{q(ns.BYTESTREAMS, 'streamhost')}")
    assert host is not None and host.get("port") == "1080"
    info = stanza(
        f"<iq type='get' id='2' to='proxy.localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    _, reply = only(r.receive(alice, info))
    assert reply.find(f".//{q(ns.DISCO_INFO, 'identity')}").get("category") == "proxy"  # type: ignore[union-attr]
    activate = stanza(
        f"<iq type='set' id='3' to='proxy.localhost'><query xmlns='{ns.BYTESTREAMS}' sid='s'>"
        "<activate>bob@localhost/b</activate></query></iq>"
    )
    (action,) = r.receive(alice, activate)
    assert isinstance(action, Activate)
    assert (action.sid, action.target, action.session) == ("s", JID("bob@localhost/b"), alice)
    _, reply = only(r.activation_done(action, "item-not-found"))
    assert condition(reply) == "item-not-found" and reply.get("from") == "proxy.localhost"
    no_sid = stanza(
        f"<iq type='set' id='4' to='proxy.localhost'><query xmlns='{ns.BYTESTREAMS}'/></iq>"
    )
    _, reply = only(r.receive(alice, no_sid))
    assert condition(reply) == "bad-request"


def test_disco_items_of_an_account_lists_readable_nodes() -> None:
    r = router()
    alice = bind(r, "alice", "a")
    bob = bind(r, "bob", "b")
    for node, model in (("open", "open"), ("secret", "whitelist")):
        body = (
            f"<pubsub xmlns='{ns.PUBSUB}'><create node='{node}'/><configure>"
            f"<x xmlns='{ns.DATA_FORMS}' type='submit'><field var='pubsub#access_model'>"
            f"<value>{model}</value></field></x></configure></pubsub>"
        )
        _, reply = only(r.receive(alice, stanza(f"<iq type='set' id='c'>{body}</iq>")))
        assert reply.get("type") == "result"
    query = f"<iq type='get' id='i' to='alice@localhost'><query xmlns='{ns.DISCO_ITEMS}'/></iq>"
    _, reply = only(r.receive(bob, stanza(query)))
    assert [i.get("node") for i in reply.iter(q(ns.DISCO_ITEMS, "item"))] == ["open"]
    _, reply = only(r.receive(alice, stanza(query)))
    assert [i.get("node") for i in reply.iter(q(ns.DISCO_ITEMS, "item"))] == ["open", "secret"]


def test_caps_query_moves_on_when_the_asked_resource_leaves() -> None:
    r = router()
    bob = bind(r, "bob", "b")
    carol = bind(r, "carol", "c")
    (first,) = caps_queries(r.receive(bob, stanza(f"<presence>{CAPS}</presence>")))
    assert caps_queries(r.receive(carol, stanza(f"<presence>{CAPS}</presence>"))) == []
    assert r.receive(carol, disco_answer(first, FEATURES)) == []  # not carol's to answer
    (second,) = caps_queries(r.unbind(bob))
    assert second.get("to") == str(carol.jid)
    r.receive(carol, disco_answer(second, FEATURES))
    assert carol.notify == frozenset({"urn:n"})
