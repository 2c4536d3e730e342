"""The server fixtures work: checked with raw XML over trio, without jet-trio's client.

Most tests run against each server kind (``xmpp_server``: Prosody, then ejabberd).
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from lxml import etree

from ._servers import (
    ProsodyFactory,
    ServerInfo,
    lua_string,
    missing_server,
    prosody_path_encode,
    roster_lua,
)

pytestmark = pytest.mark.integration

STREAM_NS = "http://etherx.jabber.org/streams"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
ROSTER_NS = "jabber:iq:roster"


class RawStream:
    """Just enough XMPP to check a server: a stream header and top-level elements."""

    def __init__(self, stream: trio.abc.Stream, domain: str) -> None:
        self.stream = stream
        self.domain = domain
        self._parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False)
        self._depth = 0
        self._ready: list[etree._Element] = []

    async def send(self, data: str) -> None:
        await self.stream.send_all(data.encode())

    async def open(self) -> etree._Element:
        """Send a stream header (with a fresh parser) and return ``<stream:features/>``."""
        self._parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False)
        self._depth = 0
        await self.send(
            f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' "
            f"xmlns='jabber:client' xmlns:stream='{STREAM_NS}'>"
        )
        features = await self.next_element()
        assert features.tag == f"{{{STREAM_NS}}}features"
        return features

    async def next_element(self) -> etree._Element:
        while not self._ready:
            data = await self.stream.receive_some(65536)
            assert data, "server closed the connection"
            self._parser.feed(bytes(data))
            for event, elem in self._parser.read_events():
                assert isinstance(elem, etree._Element)
                if event == "start":
                    self._depth += 1
                else:
                    self._depth -= 1
                    if self._depth == 1:
                        self._ready.append(elem)
        return self._ready.pop(0)


@asynccontextmanager
async def connect(server: ServerInfo) -> AsyncIterator[RawStream]:
    tcp = await trio.open_tcp_stream(server.host, server.port)
    async with tcp:
        yield RawStream(tcp, server.domain)


async def starttls(raw: RawStream, context: ssl.SSLContext) -> None:
    await raw.send(f"<starttls xmlns='{TLS_NS}'/>")
    proceed = await raw.next_element()
    assert proceed.tag == f"{{{TLS_NS}}}proceed"
    tls = trio.SSLStream(raw.stream, context, server_hostname="localhost")
    await tls.do_handshake()
    raw.stream = tls


def mechanisms(features: etree._Element) -> list[str]:
    path = f"{{{SASL_NS}}}mechanisms/{{{SASL_NS}}}mechanism"
    return [m.text or "" for m in features.iterfind(path)]


async def test_starttls_then_scram_offered(xmpp_server: ServerInfo) -> None:
    server = xmpp_server
    with trio.fail_after(10):
        async with connect(server) as raw:
            features = await raw.open()
            starttls_el = features.find(f"{{{TLS_NS}}}starttls")
            assert starttls_el is not None
            assert starttls_el.find(f"{{{TLS_NS}}}required") is not None
            # c2s_require_encryption: no authentication before TLS.
            assert mechanisms(features) == []

            await starttls(raw, ssl.create_default_context(cafile=server.ca_file))
            features = await raw.open()
            mechs = mechanisms(features)
            assert "SCRAM-SHA-1" in mechs
            assert "PLAIN" in mechs
            assert features.find(f"{{{TLS_NS}}}starttls") is None


async def test_certificate_is_from_the_fixture_ca(xmpp_server: ServerInfo) -> None:
    server = xmpp_server
    with trio.fail_after(10):
        async with connect(server) as raw:
            await raw.open()
            # The system trust store does not know the test CA: verification must fail.
            with pytest.raises(trio.BrokenResourceError) as exc_info:
                await starttls(raw, ssl.create_default_context())
            assert isinstance(exc_info.value.__cause__, ssl.SSLCertVerificationError)


async def login_and_get_roster(server: ServerInfo, user: str) -> dict[str, str]:
    """PLAIN over TLS, bind, roster get: returns {contact jid: subscription}."""
    async with connect(server) as raw:
        await raw.open()
        await starttls(raw, server.ssl_context())
        await raw.open()
        creds = base64.b64encode(f"\0{user}\0{server.password(user)}".encode()).decode()
        await raw.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{creds}</auth>")
        result = await raw.next_element()
        assert result.tag == f"{{{SASL_NS}}}success", etree.tostring(result)
        features = await raw.open()
        assert features.find(f"{{{BIND_NS}}}bind") is not None
        await raw.send(f"<iq type='set' id='b1'><bind xmlns='{BIND_NS}'/></iq>")
        bound = await raw.next_element()
        assert bound.get("type") == "result", etree.tostring(bound)
        await raw.send(f"<iq type='get' id='r1'><query xmlns='{ROSTER_NS}'/></iq>")
        roster = await raw.next_element()
        assert roster.get("type") == "result", etree.tostring(roster)
        await raw.send("</stream:stream>")
        return {
            item.get("jid", ""): item.get("subscription", "")
            for item in roster.iterfind(f"{{{ROSTER_NS}}}query/{{{ROSTER_NS}}}item")
        }


async def test_accounts_and_mutual_rosters(xmpp_server: ServerInfo) -> None:
    server = xmpp_server
    assert set(server.accounts) == {"alice", "bob", "carol"}
    assert len(set(server.accounts.values())) == 3
    with trio.fail_after(20):
        for user in server.accounts:
            roster = await login_and_get_roster(server, user)
            others = {server.jid(u) for u in server.accounts if u != user}
            assert roster == dict.fromkeys(others, "both")


async def test_wrong_password_is_refused(xmpp_server: ServerInfo) -> None:
    server = xmpp_server
    bad = dataclasses.replace(server, accounts={"alice": server.password("alice") + "x"})
    with trio.fail_after(10), pytest.raises(AssertionError, match="failure"):
        await login_and_get_roster(bad, "alice")


async def test_proxy65_accepts_socks5(xmpp_server: ServerInfo) -> None:
    server = xmpp_server
    assert server.proxy_jid == "proxy.localhost"
    assert server.proxy_port not in (0, server.port)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(server.proxy_host, server.proxy_port)
        async with stream:
            await stream.send_all(b"\x05\x01\x00")  # SOCKS5, one method: no authentication
            assert await stream.receive_some(2) == b"\x05\x00"


def test_server_info_fields(xmpp_server: ServerInfo) -> None:
    server = xmpp_server
    assert server.kind in ("prosody", "ejabberd")
    assert server.domain == "localhost"
    assert server.host == "127.0.0.1"
    assert Path(server.log_path).is_file()
    assert Path(server.ca_file).is_file()
    assert server.jid("bob") == "bob@localhost"
    with pytest.raises(KeyError):
        server.jid("mallory")


def test_factory_kill_and_restart(prosody_factory: ProsodyFactory) -> None:
    server = prosody_factory(users=["dave"], tuned_network=True)
    info = server.info
    assert set(info.accounts) == {"dave"}
    assert "network_settings" in server.config_path.read_text()
    assert server.running
    socket.create_connection((info.host, info.port), timeout=5).close()

    server.kill()
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((info.host, info.port), timeout=5).close()

    assert server.start() == info  # same ports, accounts and data
    socket.create_connection((info.host, info.port), timeout=5).close()
    assert server.stop() == 0  # clean exit on SIGTERM


async def test_factory_without_stanza_debug(prosody_factory: ProsodyFactory) -> None:
    server = prosody_factory(users=["erin", "frank"], stanza_debug=False)
    config = server.config_path.read_text()
    assert "stanza_debug" not in config
    assert "log = { info =" in config
    with trio.fail_after(20):
        roster = await login_and_get_roster(server.info, "erin")
    assert roster == {"frank@localhost": "both"}
    assert "<iq" not in Path(server.info.log_path).read_text()  # no stanzas in the log


async def test_factory_instance_is_independent(
    prosody: ServerInfo, prosody_factory: ProsodyFactory
) -> None:
    other = prosody_factory().info
    assert other.port != prosody.port
    assert other.accounts["alice"] != prosody.accounts["alice"]
    with trio.fail_after(20):
        roster = await login_and_get_roster(other, "carol")
    assert set(roster) == {"alice@localhost", "bob@localhost"}


def test_missing_server_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        missing_server("no server")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        missing_server("no server")


def test_lua_helpers() -> None:
    assert lua_string('a"b\\c\n') == '"a\\"b\\\\c\\010"'
    assert lua_string("é") == '"\\195\\169"'
    assert prosody_path_encode("proxy.localhost") == "proxy%2elocalhost"
    text = roster_lua("alice", ["alice", "bob"], "localhost")
    assert '["bob@localhost"]' in text
    assert "alice@localhost" not in text
