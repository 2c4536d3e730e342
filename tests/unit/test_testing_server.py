"""The in-process XMPP server over real loopback TCP, driven by a minimal raw client."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import scramp
import trio
import trio.lowlevel
from lxml import etree

from jet_trio import JID
from jet_trio._xmpp import ns as ns
from jet_trio._xmpp.disco import DiscoInfo, caps_ver
from jet_trio._xmpp.xml import (
    Event,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    XMLStreamParser,
    serialize,
    stream_header,
)
from jet_trio.testing import Server, TestTLS, make_tls, serve

TIMEOUT = 5
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def parse(text: str) -> etree._Element:
    """An element from XML text whose top level is in ``jabber:client`` unless it says otherwise."""
    wrapped = f"<w xmlns='{ns.CLIENT}'>{text}</w>"
    return etree.fromstring(wrapped.encode())[0]


_OPEN: list[RawClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close the sockets of the raw clients a test left open.

    Synchronous on purpose: pytest-trio runs only the async fixtures a test names among its
    arguments, so an autouse async fixture never ran, and every client's socket stayed open
    until the interpreter exited ("unclosed socket" ResourceWarnings at the end of a run).
    After the test's trio.run a trio socket cannot be closed through trio: its descriptor is
    detached and closed.
    """
    yield
    while _OPEN:
        stream = _OPEN.pop().stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream), stream
        fd = stream.socket.detach()
        if fd >= 0:
            os.close(fd)


class RawClient:
    """Just enough of an XMPP client to drive the server byte by byte."""

    def __init__(self, stream: trio.abc.Stream, domain: str = "localhost") -> None:
        self.stream = stream
        self.domain = domain
        self.parser = XMLStreamParser()
        self.events: deque[Event] = deque()
        self.jid: JID | None = None
        self.closed = False
        _OPEN.append(self)

    async def send(self, data: bytes | str | etree._Element) -> None:
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            data = serialize(data)
        await self.stream.send_all(data)

    async def event(self) -> Event:
        with trio.fail_after(TIMEOUT):
            while not self.events:
                data = await self.stream.receive_some(65536)
                if not data:
                    self.closed = True
                    raise EOFError("server closed the connection")
                self.events.extend(self.parser.feed(data))
        return self.events.popleft()

    async def element(self) -> etree._Element:
        event = await self.event()
        assert isinstance(event, StanzaReceived), event
        return event.element

    async def stanza(self, tag: str, *, skip_presence: bool = True) -> etree._Element:
        """The next element with ``tag`` (Clark), skipping presences unless asked for."""
        while True:
            el = await self.element()
            if el.tag == tag:
                return el
            if not (skip_presence and el.tag == q(ns.CLIENT, "presence")):
                raise AssertionError(f"expected {tag}, got {etree.tostring(el)!r}")

    async def open(self, to: str | None = None) -> etree._Element:
        """Send our header; return the server's features."""
        self.parser = XMLStreamParser()
        self.events.clear()
        await self.send(stream_header(to=to or self.domain))
        opened = await self.event()
        assert isinstance(opened, StreamOpened)
        assert opened.attrs["version"] == "1.0" and opened.attrs["id"]
        features = await self.element()
        assert features.tag == q(ns.STREAM, "features")
        return features

    async def starttls(self, context: ssl.SSLContext) -> etree._Element:
        await self.send(f"<starttls xmlns='{ns.TLS}'/>")
        assert (await self.element()).tag == q(ns.TLS, "proceed")
        tls = trio.SSLStream(self.stream, context, server_hostname=self.domain)
        await tls.do_handshake()
        self.stream = tls
        return await self.open()

    async def scram(self, user: str, password: str, mech: str = "SCRAM-SHA-256") -> etree._Element:
        """Run SCRAM; return ``<success/>`` (server signature verified) or ``<failure/>``."""
        client = scramp.ScramClient([mech], user, password)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        await self.send(f"<auth xmlns='{ns.SASL}' mechanism='{mech}'>{first}</auth>")
        reply = await self.element()
        if reply.tag != q(ns.SASL, "challenge"):
            return reply
        client.set_server_first(base64.b64decode(reply.text or "").decode())
        final = base64.b64encode(client.get_client_final().encode()).decode()
        await self.send(f"<response xmlns='{ns.SASL}'>{final}</response>")
        reply = await self.element()
        if reply.tag == q(ns.SASL, "success"):
            client.set_server_final(base64.b64decode(reply.text or "").decode())
        return reply

    async def plain(self, user: str, password: str) -> etree._Element:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>")
        return await self.element()

    async def bind(self, resource: str | None = None) -> JID:
        features = await self.open()
        assert features.find(q(ns.BIND, "bind")) is not None
        res = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'>{res}</bind></iq>")
        reply = await self.element()
        assert reply.get("type") == "result", etree.tostring(reply)
        self.jid = JID(reply.findtext(f"{q(ns.BIND, 'bind')}/{q(ns.BIND, 'jid')}") or "")
        return self.jid

    async def iq(self, body: str, *, to: str | None = None, type: str = "get") -> etree._Element:
        """Send an iq and return the response with the same id (skipping other stanzas)."""
        iq_id = f"q{id(body)}"
        to_attr = f" to='{to}'" if to else ""
        await self.send(f"<iq type='{type}' id='{iq_id}'{to_attr}>{body}</iq>")
        while True:
            el = await self.element()
            if el.tag == q(ns.CLIENT, "iq") and el.get("id") == iq_id:
                return el

    async def expect_closed(self) -> None:
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    event = await self.event()
                except EOFError:
                    return
                except trio.BrokenResourceError:
                    return
                if isinstance(event, StreamClosed):
                    continue

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def connect(
    server: Server, user: str | None = None, resource: str | None = "r", tls: TestTLS | None = None
) -> RawClient:
    """A TCP connection; logged in and bound if ``user`` is given."""
    stream = await trio.open_tcp_stream(server.host, server.port)
    client = RawClient(stream, server.domain)
    if user is None:
        return client
    await client.open()
    if tls is not None:
        await client.starttls(tls.client_context)
    reply = await client.scram(user, PASSWORDS[user])
    assert reply.tag == q(ns.SASL, "success"), etree.tostring(reply)
    await client.bind(resource)
    return client


async def online(server: Server, user: str, resource: str = "r", caps: str = "") -> RawClient:
    client = await connect(server, user, resource)
    await client.send(f"<presence>{caps}</presence>")
    return client


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serve(accounts=PASSWORDS) as srv:
        yield srv


def error_condition(stanza: etree._Element) -> str | None:
    error = stanza.find(q(ns.CLIENT, "error"))
    if error is None:
        return None
    for child in error:
        if etree.QName(child).namespace == ns.STANZAS_ERR:
            return etree.QName(child).localname
    return None


def stream_error_condition(el: etree._Element) -> str:
    assert el.tag == q(ns.STREAM, "error"), etree.tostring(el)
    return etree.QName(el[0]).localname


# -- negotiation -------------------------------------------------------------------------------


async def test_negotiation_without_tls_scram_sha256(server: Server) -> None:
    client = await connect(server)
    features = await client.open()
    mechanisms = [m.text for m in features.iter(q(ns.SASL, "mechanism"))]
    assert mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-1"]  # no PLAIN in the clear
    assert features.find(q(ns.TLS, "starttls")) is None
    assert (await client.scram("alice", "alice-pw")).tag == q(ns.SASL, "success")
    assert await client.bind("laptop") == JID("alice@localhost/laptop")
    assert server.connected_resources("alice") == ["laptop"]
    assert server.stats.auth_successes == 1 and server.stats.binds == 1


async def test_scram_sha1_and_generated_resource(server: Server) -> None:
    client = await connect(server)
    await client.open()
    assert (await client.scram("bob", "bob-pw", "SCRAM-SHA-1")).tag == q(ns.SASL, "success")
    jid = await client.bind(None)
    assert jid.bare == JID("bob@localhost") and jid.resource
    assert server.connected_resources("bob") == [jid.resource]


async def test_wrong_password_is_not_authorized_and_retry_works(server: Server) -> None:
    client = await connect(server)
    await client.open()
    failure = await client.scram("alice", "wrong")
    assert failure.tag == q(ns.SASL, "failure")
    assert failure.find(q(ns.SASL, "not-authorized")) is not None
    failure = await client.scram("nobody", "x")
    assert failure.find(q(ns.SASL, "not-authorized")) is not None
    assert (await client.scram("alice", "alice-pw")).tag == q(ns.SASL, "success")
    assert server.stats.auth_failures == 2


async def test_plain_refused_in_the_clear_unless_allowed() -> None:
    async with serve(accounts=PASSWORDS) as srv:
        client = await connect(srv)
        await client.open()
        failure = await client.plain("alice", "alice-pw")
        assert failure.find(q(ns.SASL, "invalid-mechanism")) is not None
    async with serve(accounts=PASSWORDS, allow_plain_without_tls=True) as srv:
        client = await connect(srv)
        features = await client.open()
        assert "PLAIN" in [m.text for m in features.iter(q(ns.SASL, "mechanism"))]
        assert (await client.plain("alice", "wrong")).tag == q(ns.SASL, "failure")
        assert (await client.plain("alice", "alice-pw")).tag == q(ns.SASL, "success")


async def test_starttls_required_then_plain(tmp_path: object) -> None:
    tls = make_tls("localhost")
    async with serve(tls=tls.server_context, accounts=PASSWORDS) as srv:
        client = await connect(srv)
        features = await client.open()
        starttls = features.find(q(ns.TLS, "starttls"))
        assert starttls is not None and starttls.find(q(ns.TLS, "required")) is not None
        assert features.find(q(ns.SASL, "mechanisms")) is None
        failure = await client.scram("alice", "alice-pw")
        assert failure.find(q(ns.SASL, "encryption-required")) is not None
        features = await client.starttls(tls.client_context)
        assert features.find(q(ns.TLS, "starttls")) is None
        assert "PLAIN" in [m.text for m in features.iter(q(ns.SASL, "mechanism"))]
        assert (await client.plain("alice", "alice-pw")).tag == q(ns.SASL, "success")
        assert await client.bind("x") == JID("alice@localhost/x")
        assert srv.stats.tls_handshakes == 1


async def test_starttls_full_login_and_routing() -> None:
    tls = make_tls("localhost")
    async with serve(tls=tls.server_context, accounts=PASSWORDS) as srv:
        alice = await connect(srv, "alice", tls=tls)
        bob = await connect(srv, "bob", tls=tls)
        await alice.send("<message to='bob@localhost/r'><body>hi</body></message>")
        msg = await bob.stanza(q(ns.CLIENT, "message"))
        assert msg.get("from") == "alice@localhost/r"


async def test_direct_tls(tmp_path: object) -> None:
    tls = make_tls("localhost")
    async with serve(tls=tls.server_context, direct_tls=True, accounts=PASSWORDS) as srv:
        tcp = await trio.open_tcp_stream(srv.host, srv.port)
        stream = trio.SSLStream(tcp, tls.client_context, server_hostname="localhost")
        client = RawClient(stream)
        features = await client.open()
        assert features.find(q(ns.TLS, "starttls")) is None
        assert (await client.plain("bob", "bob-pw")).tag == q(ns.SASL, "success")
        assert await client.bind("d") == JID("bob@localhost/d")


async def test_make_tls_writes_ca_file(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    tls = make_tls("example.test", ca_file=tmp_path / "ca.pem")
    assert tls.ca_file is not None
    assert tls.ca_file.read_bytes() == tls.ca_pem
    assert tls.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")


async def test_wrong_host_is_host_unknown(server: Server) -> None:
    client = await connect(server)
    await client.send(stream_header(to="elsewhere.example"))
    assert isinstance(await client.event(), StreamOpened)
    assert stream_error_condition(await client.element()) == "host-unknown"
    await client.expect_closed()
    assert server.stats.stream_errors == ["host-unknown"]


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><x>&a;</x>", "restricted-xml"),
        (b"<presence><unclosed></presence>", "not-well-formed"),
    ],
)
async def test_hostile_xml_gets_a_stream_error(
    server: Server, payload: bytes, condition: str
) -> None:
    client = await connect(server)
    await client.open()
    await client.send(payload)
    assert stream_error_condition(await client.element()) == condition
    await client.expect_closed()


async def test_hostile_xml_before_the_header(server: Server) -> None:
    client = await connect(server)
    await client.send(b"<?xml version='1.0'?><!DOCTYPE stream>")
    assert isinstance(await client.event(), StreamOpened)  # the header comes first
    assert stream_error_condition(await client.element()) == "restricted-xml"
    await client.expect_closed()


async def test_stanza_before_auth_is_not_authorized(server: Server) -> None:
    client = await connect(server)
    await client.open()
    await client.send("<message to='bob@localhost'><body>x</body></message>")
    assert stream_error_condition(await client.element()) == "not-authorized"


async def test_bind_conflict_replaces_the_old_session(server: Server) -> None:
    old = await connect(server, "alice", "same")
    new = await connect(server, "alice", "same")
    assert stream_error_condition(await old.element()) == "conflict"
    await old.expect_closed()
    assert server.connected_resources("alice") == ["same"]
    assert await new.iq(f"<ping xmlns='{ns.PING}'/>") is not None


async def test_client_closing_its_stream(server: Server) -> None:
    client = await connect(server, "alice")
    await client.send("</stream:stream>")
    assert isinstance(await client.event(), StreamClosed)
    await client.expect_closed()  # EOF comes after the session was unbound
    assert server.connected_resources("alice") == []


# -- routing -------------------------------------------------------------------------------------


async def test_message_routing_between_accounts(server: Server) -> None:
    alice = await online(server, "alice", "a1")
    bob1 = await online(server, "bob", "b1")
    bob2 = await online(server, "bob", "b2")
    await alice.send(
        "<message to='bob@localhost/b2' id='m1' type='chat'><body>one</body></message>"
    )
    msg = await bob2.stanza(q(ns.CLIENT, "message"))
    assert msg.get("from") == "alice@localhost/a1" and msg.findtext(q(ns.CLIENT, "body")) == "one"
    # spoofed from is overwritten; bare JID goes to every available resource
    await alice.send(
        "<message from='bob@localhost/x' to='bob@localhost'><body>two</body></message>"
    )
    for bob in (bob1, bob2):
        msg = await bob.stanza(q(ns.CLIENT, "message"))
        assert msg.get("from") == "alice@localhost/a1"
        assert msg.findtext(q(ns.CLIENT, "body")) == "two"


async def test_iq_routing_and_offline_resource(server: Server) -> None:
    alice = await connect(server, "alice", "a")
    bob = await connect(server, "bob", "b")
    await alice.send(
        f"<iq type='get' id='x1' to='bob@localhost/b'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    request = await bob.stanza(q(ns.CLIENT, "iq"))
    assert request.get("from") == "alice@localhost/a"
    await bob.send("<iq type='result' id='x1' to='alice@localhost/a'/>")
    reply = await alice.stanza(q(ns.CLIENT, "iq"))
    assert (reply.get("type"), reply.get("id"), reply.get("from")) == (
        "result",
        "x1",
        "bob@localhost/b",
    )
    error = await alice.iq(f"<query xmlns='{ns.DISCO_INFO}'/>", to="bob@localhost/gone")
    assert error.get("type") == "error" and error_condition(error) == "service-unavailable"
    assert error.find(q(ns.CLIENT, "error")).get("type") == "cancel"  # type: ignore[union-attr]
    assert error.get("from") == "bob@localhost/gone"
    error = await alice.iq("<unknown xmlns='urn:example'/>", to="localhost")
    assert error_condition(error) == "service-unavailable"


async def test_presence_broadcast_probe_and_unavailable_on_disconnect(server: Server) -> None:
    alice = await online(server, "alice", "a")
    bob = await connect(server, "bob", "b")
    await bob.send("<presence><show>away</show></presence>")
    seen = await alice.stanza(q(ns.CLIENT, "presence"), skip_presence=False)
    assert seen.get("from") == "bob@localhost/b" and seen.findtext(q(ns.CLIENT, "show")) == "away"
    # the newcomer is told who is already there
    seen = await bob.stanza(q(ns.CLIENT, "presence"), skip_presence=False)
    assert seen.get("from") == "alice@localhost/a"
    await bob.aclose()
    gone = await alice.stanza(q(ns.CLIENT, "presence"), skip_presence=False)
    assert (gone.get("from"), gone.get("type")) == ("bob@localhost/b", "unavailable")


async def test_kick_drops_the_connection_and_broadcasts(server: Server) -> None:
    alice = await online(server, "alice", "a")
    bob = await online(server, "bob", "b")
    await alice.stanza(q(ns.CLIENT, "presence"), skip_presence=False)
    assert server.kick("bob") == 1
    await bob.expect_closed()
    gone = await alice.stanza(q(ns.CLIENT, "presence"), skip_presence=False)
    assert gone.get("type") == "unavailable"
    assert server.connected_resources("bob") == []
    assert server.kick(server.jid("alice", "a")) == 1
    assert server.stats.kicks == 2


async def test_server_services(server: Server) -> None:
    alice = await connect(server, "alice")
    roster = await alice.iq(f"<query xmlns='{ns.ROSTER}'/>")
    items = {(i.get("jid"), i.get("subscription")) for i in roster.iter(q(ns.ROSTER, "item"))}
    assert items == {("bob@localhost", "both"), ("carol@localhost", "both")}
    assert roster.get("from") is None
    info = await alice.iq(f"<query xmlns='{ns.DISCO_INFO}'/>", to="localhost")
    identity = info.find(f"{q(ns.DISCO_INFO, 'query')}/{q(ns.DISCO_INFO, 'identity')}")
    assert identity is not None and identity.get("category") == "server"
    features = {f.get("var") for f in info.iter(q(ns.DISCO_INFO, "feature"))}
    assert {ns.PING, f"{ns.PUBSUB}#publish-options", ns.DISCO_ITEMS} <= features
    info = await alice.iq(f"<query xmlns='{ns.DISCO_INFO}'/>", to="bob@localhost")
    identity = info.find(f"{q(ns.DISCO_INFO, 'query')}/{q(ns.DISCO_INFO, 'identity')}")
    assert identity is not None and (identity.get("category"), identity.get("type")) == (
        "pubsub",
        "pep",
    )
    ping = await alice.iq(f"<ping xmlns='{ns.PING}'/>", to="localhost")
    assert ping.get("type") == "result" and ping.get("from") == "localhost"
    session = await alice.iq(f"<session xmlns='{ns.SESSION}'/>", type="set")
    assert session.get("type") == "result"
    items_reply = await alice.iq(f"<query xmlns='{ns.DISCO_ITEMS}'/>", to="localhost")
    assert items_reply.get("type") == "result" and len(items_reply[0]) == 0


# -- PEP ----------------------------------------------------------------------------------------

DEVICES = "eu.siacs.conversations.axolotl.devicelist"
ITEM = "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>"


def publish(node: str, item_id: str, payload: str, options: dict[str, str] | None = None) -> str:
    form = ""
    if options:
        fields = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in options.items())
        form = (
            f"<publish-options><x xmlns='{ns.DATA_FORMS}' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{ns.PUBSUB}#publish-options</value>"
            f"</field>{fields}</x></publish-options>"
        )
    return (
        f"<pubsub xmlns='{ns.PUBSUB}'><publish node='{node}'><item id='{item_id}'>{payload}</item>"
        f"</publish>{form}</pubsub>"
    )


CAPS_NODE = "https://example.test"
CAPS_INFO = DiscoInfo(features=frozenset({f"{DEVICES}+notify"}))


def caps() -> str:
    return f"<c xmlns='{ns.CAPS}' hash='sha-1' node='{CAPS_NODE}' ver='{caps_ver(CAPS_INFO)}'/>"


async def answer_caps_query(client: RawClient) -> None:
    query = await client.stanza(q(ns.CLIENT, "iq"))
    assert query.get("from") == "localhost" and query.get("type") == "get"
    disco = query.find(q(ns.DISCO_INFO, "query"))
    assert disco is not None and disco.get("node") == f"{CAPS_NODE}#{caps_ver(CAPS_INFO)}"
    reply = etree.Element(q(ns.CLIENT, "iq"), {"type": "result", "id": query.get("id", "")})
    reply.append(CAPS_INFO.to_element())
    await client.send(reply)


async def test_pep_publish_then_items(server: Server) -> None:
    alice = await connect(server, "alice")
    reply = await alice.iq(
        publish(DEVICES, "current", ITEM, {"pubsub#access_model": "open"}), type="set"
    )
    assert reply.get("type") == "result", etree.tostring(reply)
    published = reply.find(
        f"{q(ns.PUBSUB, 'pubsub')}/{q(ns.PUBSUB, 'publish')}/{q(ns.PUBSUB, 'item')}"
    )
    assert published is not None and published.get("id") == "current"
    bob = await connect(server, "bob")
    items = await bob.iq(
        f"<pubsub xmlns='{ns.PUBSUB}'><items node='{DEVICES}'/></pubsub>", to="alice@localhost"
    )
    item = items.find(f".//{q(ns.PUBSUB, 'item')}")
    assert item is not None and item.get("id") == "current"
    assert item[0].tag == "{eu.siacs.conversations.axolotl}list"
    missing = await bob.iq(
        f"<pubsub xmlns='{ns.PUBSUB}'><items node='nope'/></pubsub>", to="alice@localhost"
    )
    assert error_condition(missing) == "item-not-found"
    forbidden = await bob.iq(publish(DEVICES, "x", ITEM), to="alice@localhost", type="set")
    assert error_condition(forbidden) == "forbidden"
    assert [i.get("id") for i in server.pep_items("alice", DEVICES)] == ["current"]


async def test_publish_options_conflict(server: Server) -> None:
    alice = await connect(server, "alice")
    ok = await alice.iq(publish("n", "1", ITEM, {"pubsub#access_model": "open"}), type="set")
    assert ok.get("type") == "result"
    clash = await alice.iq(
        publish("n", "2", ITEM, {"pubsub#access_model": "whitelist"}), type="set"
    )
    assert error_condition(clash) == "conflict"
    assert clash.find(f".//{q(ns.PUBSUB_ERRORS, 'precondition-not-met')}") is not None
    assert [i.get("id") for i in server.pep_items("alice", "n")] == ["1"]


async def test_notification_to_notify_contact_and_last_item_on_presence(server: Server) -> None:
    alice = await online(server, "alice", "a", caps())
    await answer_caps_query(alice)
    bob = await online(server, "bob", "b", caps())  # same ver: cached, no second query
    await alice.stanza(q(ns.CLIENT, "presence"), skip_presence=False)
    assert server.stats.caps_queries == 1
    carol = await online(server, "carol", "c")  # no caps: no notifications
    await alice.iq(publish(DEVICES, "current", ITEM), type="set")
    for client in (alice, bob):
        event = await client.stanza(q(ns.CLIENT, "message"))
        assert event.get("from") == "alice@localhost" and event.get("type") == "headline"
        items = event.find(f"{q(ns.PUBSUB_EVENT, 'event')}/{q(ns.PUBSUB_EVENT, 'items')}")
        assert items is not None and items.get("node") == DEVICES
        assert items[0].get("id") == "current"
    # a resource coming online with +notify gets the last item
    bob2 = await online(server, "bob", "b2", caps())
    event = await bob2.stanza(q(ns.CLIENT, "message"))
    assert event.find(f".//{q(ns.PUBSUB_EVENT, 'item')}") is not None
    # carol was not notified: the next thing she sees is her own ping reply
    await carol.send(f"<iq type='get' id='p'><ping xmlns='{ns.PING}'/></iq>")
    pong = await carol.stanza(q(ns.CLIENT, "iq"))  # a message first would fail here
    assert pong.get("id") == "p"
    # retract with notify
    await alice.iq(
        f"<pubsub xmlns='{ns.PUBSUB}'><retract node='{DEVICES}' notify='true'>"
        f"<item id='current'/></retract></pubsub>",
        type="set",
    )
    event = await bob.stanza(q(ns.CLIENT, "message"))
    assert event.find(f".//{q(ns.PUBSUB_EVENT, 'retract')}") is not None


# -- proxy65 --------------------------------------------------------------------------------


class FakeProxy:
    jid = "proxy.localhost"
    host = "127.0.0.1"
    port = 7777

    def __init__(self) -> None:
        self.activated: list[tuple[str, JID, JID]] = []

    async def activate(self, sid: str, requester: JID, target: JID) -> None:
        await trio.lowlevel.checkpoint()
        if sid == "bad":
            raise KeyError(sid)
        self.activated.append((sid, requester, target))


async def test_proxy65_streamhost_and_activate() -> None:
    proxy = FakeProxy()
    async with serve(accounts=PASSWORDS, proxy65=proxy) as srv:
        alice = await connect(srv, "alice")
        items = await alice.iq(f"<query xmlns='{ns.DISCO_ITEMS}'/>", to="localhost")
        assert [i.get("jid") for i in items.iter(q(ns.DISCO_ITEMS, "item"))] == ["proxy.localhost"]
        reply = await alice.iq(f"<query xmlns='{ns.BYTESTREAMS}'/>", to="proxy.localhost")
        host = reply.find(f"{q(ns.BYTESTREAMS, 'query')}/{q(ns.BYTESTREAMS, 'streamhost')}")
        assert host is not None
        assert (host.get("jid"), host.get("host"), host.get("port")) == (
            "proxy.localhost",
            "127.0.0.1",
            "7777",
        )
        body = (
            f"<query xmlns='{ns.BYTESTREAMS}' sid='s1'><activate>bob@localhost/r</activate></query>"
        )
        reply = await alice.iq(body, to="proxy.localhost", type="set")
        assert reply.get("type") == "result" and reply.get("from") == "proxy.localhost"
        assert proxy.activated == [("s1", JID("alice@localhost/r"), JID("bob@localhost/r"))]
        body = body.replace("s1", "bad")
        reply = await alice.iq(body, to="proxy.localhost", type="set")
        assert error_condition(reply) == "item-not-found"


async def test_exit_closes_connections_and_exceptions_pass_through() -> None:
    with pytest.raises(ZeroDivisionError):
        async with serve(accounts=PASSWORDS) as srv:
            client = await connect(srv, "alice")
            1 / 0  # noqa: B018
    await client.expect_closed()


async def socks5_connect(host: str, port: int, dst: str) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"\x05\x01\x00")
    assert await stream.receive_some(2) == b"\x05\x00"
    await stream.send_all(b"\x05\x01\x00\x03" + bytes([len(dst)]) + dst.encode() + b"\x00\x00")
    reply = b""
    with trio.fail_after(TIMEOUT):
        while len(reply) < 7 + len(dst):
            reply += await stream.receive_some(64)
    assert reply[:2] == b"\x05\x00"
    return stream


async def test_activation_through_the_real_proxy65() -> None:
    from jet_trio._transports.socks5 import dstaddr
    from jet_trio.testing._proxy65 import serve_proxy65

    async with serve_proxy65() as proxy, serve(accounts=PASSWORDS, proxy65=proxy) as srv:
        alice = await connect(srv, "alice")
        body = (
            f"<query xmlns='{ns.BYTESTREAMS}' sid='s1'><activate>bob@localhost/r</activate></query>"
        )
        early = await alice.iq(body, to=str(proxy.jid), type="set")
        assert error_condition(early) == "item-not-found"  # nobody connected yet
        dst = dstaddr("s1", "alice@localhost/r", "bob@localhost/r")
        a = await socks5_connect(proxy.host, proxy.port, dst)
        b = await socks5_connect(proxy.host, proxy.port, dst)
        async with a, b:
            with trio.fail_after(TIMEOUT):
                # the proxy files a connection just after replying to it: nothing to wait on
                while proxy.waiting < 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            reply = await alice.iq(body, to=str(proxy.jid), type="set")
            assert reply.get("type") == "result"
            await a.send_all(b"ping")
            with trio.fail_after(TIMEOUT):
                assert await b.receive_some(4) == b"ping"


async def test_deeply_nested_stanza_is_a_policy_violation(server: Server) -> None:
    client = await connect(server, "alice")
    await client.send("<message>" + "<a>" * 40)
    assert stream_error_condition(await client.stanza(q(ns.STREAM, "error"))) == "policy-violation"
    await client.expect_closed()
    assert server.connected_resources("alice") == []


async def test_unknown_top_level_element_after_bind(server: Server) -> None:
    client = await connect(server, "alice")
    await client.send("<enable xmlns='urn:xmpp:sm:3'/>")
    error = await client.stanza(q(ns.STREAM, "error"))
    assert stream_error_condition(error) == "unsupported-stanza-type"


async def test_tls_options_need_a_context() -> None:
    with pytest.raises(ValueError, match="tls context"):
        async with serve(direct_tls=True):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="tls context"):
        async with serve(require_tls=True):
            pass  # pragma: no cover


async def test_clients_vanishing_mid_negotiation_do_not_hurt_the_server() -> None:
    tls = make_tls("localhost")
    async with serve(tls=tls.server_context, accounts=PASSWORDS) as srv:
        half = await connect(srv)
        await half.send(b"<?xml version='1.0'?><stream:stream xmlns='jabber:cl")
        await half.aclose()
        during_tls = await connect(srv)
        await during_tls.open()
        await during_tls.send(f"<starttls xmlns='{ns.TLS}'/>")
        assert (await during_tls.element()).tag == q(ns.TLS, "proceed")
        await during_tls.send(b"\x16\x03\x01\x00\x05hello")  # a bogus ClientHello
        await during_tls.expect_closed()
        client = await connect(srv, "alice", tls=tls)
        assert (await client.iq(f"<ping xmlns='{ns.PING}'/>")).get("type") == "result"
        assert srv.stats.connections == 3 and srv.stats.tls_handshakes == 1


async def test_silent_connection_is_dropped_after_the_negotiation_timeout() -> None:
    async with serve(accounts=PASSWORDS, negotiation_timeout=0.2) as srv:
        silent = await connect(srv)
        await silent.expect_closed()
        client = await connect(srv, "alice")
        await trio.sleep(0.3)  # bound sessions are not subject to it
        assert (await client.iq(f"<ping xmlns='{ns.PING}'/>")).get("type") == "result"


def test_raw_clients_leave_no_socket_open() -> None:
    """Tests of this file that leave clients connected leave no socket for the interpreter to
    find at exit (each was an "unclosed socket" ResourceWarning)."""
    here = "tests/unit/test_testing_server.py"
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{here}::test_negotiation_without_tls_scram_sha256",
            f"{here}::test_message_routing_between_accounts",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "2 passed" in proc.stdout
    assert "unclosed" not in proc.stderr, proc.stderr[-2000:]
