"""Two servers: alice@a.test on one Prosody, bob@b.test on another, federated over TLS.

The servers authenticate each other with certificates of the test CA (``s2s_secure_auth``: no
dialback) and find each other through SRV records served by a DNS server on loopback
(``_dns.py``): no lookup leaves the machine. Presence, disco, PEP (OMEMO device lists and
bundles, OpenPGP keys) and Jingle cross the server-to-server link; each server's proxy65 is
used by both parties; JET-OMEMO and OpenPGP transfers go both ways.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from lxml import etree

import jet_trio
from jet_trio import Client, open_client
from jet_trio._transfer.service import FileTransfer, open_file_transfer

from ._dns import LoopbackDNS
from ._servers import (
    PrivateEjabberd,
    PrivateProsody,
    PrivateServer,
    ServerInfo,
    ServerUnavailable,
    find_ejabberd,
    find_prosody,
    have_lua_unbound,
    missing_server,
)
from ._servers import on_ci as _on_ci

if not _on_ci():  # CI installs every plugins/*/ distribution: there, a missing one fails
    pytest.importorskip("jet_trio_omemo", reason="plugins/jet-trio-omemo is not installed")
    pytest.importorskip("jet_trio_openpgp", reason="plugins/jet-trio-openpgp is not installed")

from jet_trio_omemo import OLDMEMO, TWOMEMO, open_omemo
from jet_trio_openpgp import NS as OPENPGP
from jet_trio_openpgp import open_openpgp

pytestmark = pytest.mark.integration

SIZE = 120_000


@dataclass
class Federation:
    a: PrivateProsody
    b: PrivateServer
    dns: LoopbackDNS

    @property
    def alice(self) -> tuple[ServerInfo, str]:
        return self.a.info, "alice"

    @property
    def bob(self) -> tuple[ServerInfo, str]:
        return self.b.info, "bob"


@pytest.fixture(params=["prosody", "ejabberd"], ids=["b=prosody", "b=ejabberd"])
def federation(
    request: pytest.FixtureRequest, tmp_path: Path, xmpp_ca: trustme.CA
) -> Iterator[Federation]:
    """Prosody for a.test, Prosody or ejabberd for b.test, each user in the other's rosters."""
    yield from _federation(tmp_path, xmpp_ca, xmpp_ca, request.param)


@pytest.fixture
def federation_foreign_ca(tmp_path: Path, xmpp_ca: trustme.CA) -> Iterator[Federation]:
    """Two Prosodys, but b.test's certificate comes from a CA a.test does not trust."""
    yield from _federation(tmp_path, xmpp_ca, trustme.CA(), "prosody")


def _federation(
    tmp_path: Path, ca_a: trustme.CA, ca_b: trustme.CA, kind_b: str
) -> Iterator[Federation]:
    if find_prosody() is None:
        missing_server("prosody is not installed (apt-get install prosody lua-unbound)")
    if not have_lua_unbound():  # else Prosody would ask the system's resolvers
        missing_server("federation tests need lua-unbound (apt-get install lua-unbound)")
    if kind_b == "ejabberd" and find_ejabberd() is None:
        missing_server("ejabberd is not installed (apt-get install ejabberd)")
    dns = LoopbackDNS()
    with dns.running():
        a = PrivateProsody(
            tmp_path / "a",
            ca_a,
            users=("alice",),
            domain="a.test",
            s2s_dns=dns.forward,
            remote_contacts=("bob@b.test",),
        )
        b: PrivateServer
        if kind_b == "ejabberd":
            try:
                b = PrivateEjabberd(
                    ca_b,
                    users=("bob",),
                    domain="b.test",
                    s2s_dns=dns.forward,
                    remote_contacts=("alice@a.test",),
                )
            except ServerUnavailable as exc:
                missing_server(str(exc))
        else:
            b = PrivateProsody(
                tmp_path / "b",
                ca_b,
                users=("bob",),
                domain="b.test",
                s2s_dns=dns.forward,
                remote_contacts=("alice@a.test",),
            )
        try:
            a.start()
            b.start()
            assert isinstance(b, PrivateProsody | PrivateEjabberd)
            # ejabberd looks SRV records up with its own resolver (which asks the test's DNS
            # server) but the address of their target with the system's getaddrinfo, which would
            # ask the machine's resolvers: the SRV record it reads (a.test's) names the address
            # itself, which getaddrinfo takes without any lookup.
            a_target = "127.0.0.1." if kind_b == "ejabberd" else "a.test."
            dns.add("_xmpp-server._tcp.a.test", "SRV", f"0 0 {a.s2s_port} {a_target}")
            dns.add("_xmpp-server._tcp.b.test", "SRV", f"0 0 {b.s2s_port} b.test.")
            dns.add("a.test", "A", "127.0.0.1")
            dns.add("b.test", "A", "127.0.0.1")
            yield Federation(a, b, dns)
        except ServerUnavailable as exc:
            pytest.fail(f"could not start the federated servers: {exc}", pytrace=False)
        finally:
            a.stop()
            b.close()


@dataclass
class Peer:
    client: Client
    plugins: list[object]


@asynccontextmanager
async def peer(
    where: tuple[ServerInfo, str], data: Path, envelope: str | None = None
) -> AsyncIterator[Peer]:
    server, user = where
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            open_client(
                f"{server.jid(user)}/{user}",
                server.accounts[user],
                host=server.host,
                port=server.port,
                ca_file=server.ca_file,
            )
        )
        plugins: list[object] = []
        if envelope == OPENPGP:
            plugins.append(await stack.enter_async_context(open_openpgp(client, data / user)))
        elif envelope in (OLDMEMO, TWOMEMO):
            await stack.enter_async_context(open_omemo(client, data / user))
        yield Peer(client, plugins)


async def meet(a: Peer, b: Peer) -> None:
    with trio.fail_after(20):
        await a.client.wait_available(b.client.jid)
        await b.client.wait_available(a.client.jid)


async def transfer(
    sender: FileTransfer, receiver: FileTransfer, src: Path, dest: Path, **kwargs: Any
) -> tuple[jet_trio.TransferResult, jet_trio.TransferResult]:
    results: dict[str, jet_trio.TransferResult] = {}

    async def receive() -> None:
        offer = await receiver.next_offer()
        results["recv"] = await offer.accept(dest)

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        results["send"] = await sender.send_file(src, receiver.client.jid, **kwargs)
    assert dest.read_bytes() == src.read_bytes()
    return results["send"], results["recv"]


def payload(tmp_path: Path) -> Path:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(SIZE))
    return src


async def test_presence_disco_and_pep_across_servers(
    federation: Federation, tmp_path: Path
) -> None:
    node = "urn:example:federation"
    with trio.fail_after(40):
        async with peer(federation.alice, tmp_path) as alice, peer(federation.bob, tmp_path) as bob:
            await meet(alice, bob)
            # disco#info of a full JID on the other server (through its entity caps)
            info = await alice.client.features_of(bob.client.jid)
            assert info.has("urn:xmpp:ping")
            assert [i.name for i in info.identities] == ["jet-trio"]
            # PEP across s2s: bob reads an item alice published (open access)
            await alice.client.publish(
                node,
                etree.Element(f"{{{node}}}x"),
                item_id="current",
                options={"pubsub#access_model": "open"},
            )
            items = await bob.client.get_items(alice.client.jid.bare, node)
            assert [i.id for i in items] == ["current"]
    # Found through SRV records on the loopback DNS server (nothing else was asked for them).
    assert ("_xmpp-server._tcp.b.test.", "SRV") in federation.dns.queries
    assert ("_xmpp-server._tcp.a.test.", "SRV") in federation.dns.queries
    # Over TLS, the peer server's certificate checked against the test CA, authenticated with
    # SASL EXTERNAL (the certificate), never dialback.
    for server, remote in ((federation.a, "b.test"), (federation.b, "a.test")):
        log = server.log_since(0)
        if isinstance(server, PrivateProsody):
            assert "certificate chain validation result: valid" in log
            assert f"SASL EXTERNAL with {remote} succeeded" in log
            assert f"Outgoing s2s connection {server.domain}->{remote} complete" in log
            assert "dialback" not in log
        else:  # ejabberd (its log is written with a delay)
            await trio.sleep(_LOG_DELAY["ejabberd"])
            log = server.log_since(0)
            assert (
                f"Accepted inbound s2s EXTERNAL authentication {remote} -> {server.domain}"
            ) in log
            assert (
                f"Accepted outbound s2s EXTERNAL authentication {server.domain} -> {remote}"
            ) in log


async def test_omemo_and_openpgp_both_directions(federation: Federation, tmp_path: Path) -> None:
    """Device lists, bundles and OpenPGP keys are fetched across s2s; transfers both ways."""
    src = payload(tmp_path)
    for envelope in (OLDMEMO, TWOMEMO, OPENPGP):
        with trio.fail_after(60):
            async with (
                peer(federation.alice, tmp_path / "keys", envelope) as alice,
                peer(federation.bob, tmp_path / "keys", envelope) as bob,
            ):
                await meet(alice, bob)
                async with (
                    open_file_transfer(alice.client, extra_plugins=alice.plugins) as fa,
                    open_file_transfer(bob.client, extra_plugins=bob.plugins) as fb,
                ):
                    for name, x, y in (("a2b", fa, fb), ("b2a", fb, fa)):
                        dest = tmp_path / f"{name}-{envelope.rsplit(':', 1)[-1]}.bin"
                        sent, got = await transfer(x, y, src, dest, encrypt=envelope)
                        assert sent.envelope == got.envelope == envelope
                        assert got.hash_verified


#: What each server's SOCKS5 proxy logs when a bytestream is activated.
_ACTIVATED = {"prosody": "Transfer activated", "ejabberd": "Activated bytestream for"}
#: ejabberd (Erlang's logger) writes its log with a delay of up to about 2 s.
_LOG_DELAY = {"prosody": 0.0, "ejabberd": 2.5}


def _activations(server: PrivateServer, since: int) -> int:
    return server.log_since(since).count(_ACTIVATED[server.kind])


async def test_each_servers_proxy_used_by_both(federation: Federation, tmp_path: Path) -> None:
    """alice offers only proxy.a.test, bob nothing: bob connects to alice's server's proxy;
    then the other way round through proxy.b.test. JET-OMEMO both times."""
    src = payload(tmp_path)
    with trio.fail_after(60):
        async with (
            peer(federation.alice, tmp_path / "keys", OLDMEMO) as alice,
            peer(federation.bob, tmp_path / "keys", OLDMEMO) as bob,
        ):
            await meet(alice, bob)
            for sender, receiver, proxy, other, name in (
                (alice, bob, federation.a, federation.b, "via-a.bin"),
                (bob, alice, federation.b, federation.a, "via-b.bin"),
            ):
                marks = (proxy.log_size(), other.log_size())
                async with (
                    open_file_transfer(sender.client, direct_addresses=None) as fs,
                    open_file_transfer(
                        receiver.client, direct_addresses=None, use_proxies=False
                    ) as fr,
                ):
                    sent, got = await transfer(fs, fr, src, tmp_path / name, encrypt=OLDMEMO)
                assert sent.transport == got.transport == "s5b-proxy"
                assert got.envelope == OLDMEMO
                await trio.sleep(max(_LOG_DELAY[proxy.kind], _LOG_DELAY[other.kind]))
                assert _activations(proxy, marks[0]) == 1
                assert _activations(other, marks[1]) == 0


async def test_server_with_untrusted_certificate_is_refused(
    federation_foreign_ca: Federation, tmp_path: Path
) -> None:
    """A peer server whose certificate the test CA did not issue gets no federation."""
    fed = federation_foreign_ca
    with trio.fail_after(30):
        async with peer(fed.alice, tmp_path) as alice:
            with pytest.raises(jet_trio.StanzaError) as info:
                await alice.client.disco("bob@b.test")
    # Prosody 0.12 answers the queued stanzas with remote-server-timeout in this case.
    assert info.value.condition in ("remote-server-not-found", "remote-server-timeout")
    log = fed.a.log_since(0)
    assert (
        "Forbidding insecure connection to/from b.test because its certificate is not trusted"
        in log
    )
    assert "SASL EXTERNAL with b.test succeeded" not in log
