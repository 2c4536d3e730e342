"""Every envelope over every transport on both server implementations (Prosody and ejabberd).

Each test gets a fresh server (OMEMO device lists and PEP nodes start empty) and moves a file in
both directions with legacy OMEMO, OMEMO 2 and OpenPGP, over S5B with a direct candidate, S5B
through the server's proxy65, IBB, and the fallback from S5B (no candidate) to IBB. ejabberd
23.01 rejects ``pubsub#max_items`` in publish-options (OMEMO 2 bundles need it): these tests
fail if the client does not negotiate.
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
from jet_trio import Client, StanzaError, open_client
from jet_trio._transfer.service import FileTransfer, open_file_transfer

from ._servers import (
    PrivateEjabberd,
    ProsodyFactory,
    ServerInfo,
    ServerUnavailable,
    find_ejabberd,
    missing_server,
    on_ci,
)

if not on_ci():  # CI installs every plugins/*/ distribution: there, a missing one fails
    pytest.importorskip("jet_trio_omemo", reason="plugins/jet-trio-omemo is not installed")
    pytest.importorskip("jet_trio_openpgp", reason="plugins/jet-trio-openpgp is not installed")

from jet_trio_omemo import OLDMEMO, TWOMEMO, open_omemo
from jet_trio_omemo._backends import DEVICE_LIST_OPTIONS, node_spec
from jet_trio_openpgp import NS as OPENPGP
from jet_trio_openpgp import PUBLIC_KEYS_NODE, key_node, open_openpgp

pytestmark = pytest.mark.integration

SIZE = 150_000
NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
DATA_FORMS = "jabber:x:data"

#: (FileTransfer options, send_file options, the transport the result must name)
TRANSPORTS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({}, {}, "s5b-direct"),
    ({"direct_addresses": None}, {}, "s5b-proxy"),
    ({}, {"transport": "ibb"}, "ibb"),
    ({"direct_addresses": None, "use_proxies": False}, {}, "ibb"),  # no S5B candidate: fallback
]


@pytest.fixture(params=["prosody", "ejabberd"])
def fresh_server(
    request: pytest.FixtureRequest, prosody_factory: ProsodyFactory, xmpp_ca: trustme.CA
) -> Iterator[ServerInfo]:
    """A new Prosody or ejabberd for this test only: PEP starts empty."""
    if request.param == "prosody":
        yield prosody_factory().info
        return
    if find_ejabberd() is None:
        missing_server("ejabberd is not installed (apt-get install ejabberd)")
    try:
        server = PrivateEjabberd(xmpp_ca)
    except ServerUnavailable as exc:
        missing_server(str(exc))
    try:
        yield server.start()
    finally:
        server.close()


@dataclass
class Peer:
    client: Client
    plugins: list[object]


@asynccontextmanager
async def peer(server: ServerInfo, user: str, data: Path, envelope: str) -> AsyncIterator[Peer]:
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
        else:  # the running OMEMO session offers both OMEMO envelopes through the plugin hook
            await stack.enter_async_context(open_omemo(client, data / user))
        yield Peer(client, plugins)


async def transfer(
    a: FileTransfer, b: FileTransfer, src: Path, dest: Path, **send_kwargs: Any
) -> tuple[jet_trio.TransferResult, jet_trio.TransferResult]:
    results: dict[str, jet_trio.TransferResult] = {}

    async def receive() -> None:
        offer = await b.next_offer()
        results["recv"] = await offer.accept(dest)

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        results["send"] = await a.send_file(src, b.client.jid, **send_kwargs)
    return results["send"], results["recv"]


async def both_ways(
    alice: Peer, bob: Peer, tmp_path: Path, envelope: str
) -> list[tuple[str, str, str]]:
    """Alice to Bob and back over each transport; returns (direction, transport, envelope)."""
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(SIZE))
    done: list[tuple[str, str, str]] = []
    for i, (ft_kwargs, send_kwargs, transport) in enumerate(TRANSPORTS):
        async with (
            open_file_transfer(alice.client, extra_plugins=alice.plugins, **ft_kwargs) as fa,
            open_file_transfer(bob.client, extra_plugins=bob.plugins, **ft_kwargs) as fb,
        ):
            for name, x, y in (("a2b", fa, fb), ("b2a", fb, fa)):
                dest = tmp_path / f"{name}-{i}-{transport}.bin"
                sent, got = await transfer(x, y, src, dest, encrypt=envelope, **send_kwargs)
                assert dest.read_bytes() == src.read_bytes()
                assert sent.transport == got.transport == transport
                assert sent.envelope == got.envelope == envelope
                assert got.hash_verified and got.wire_bytes == SIZE + 16
                done.append((name, got.transport, got.envelope))
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))
    return done


@pytest.mark.parametrize("envelope", [OLDMEMO, TWOMEMO, OPENPGP], ids=["omemo", "omemo2", "pgp"])
async def test_envelope_over_every_transport(
    fresh_server: ServerInfo, tmp_path: Path, envelope: str
) -> None:
    with trio.fail_after(90):
        async with (
            peer(fresh_server, "alice", tmp_path / "keys", envelope) as alice,
            peer(fresh_server, "bob", tmp_path / "keys", envelope) as bob,
        ):
            await alice.client.wait_available(bob.client.jid)
            await bob.client.wait_available(alice.client.jid)
            done = await both_ways(alice, bob, tmp_path, envelope)
    assert len(done) == 2 * len(TRANSPORTS)


async def _node_config(client: Client, node: str) -> dict[str, list[str]]:
    """The owner's view of one of its PEP nodes' configuration."""
    query = etree.Element(f"{{{PUBSUB_OWNER}}}pubsub")
    etree.SubElement(query, f"{{{PUBSUB_OWNER}}}configure", node=node)
    result = await client.request("get", query, client.jid.bare)
    assert result is not None
    form = result.find(f"{{{PUBSUB_OWNER}}}configure/{{{DATA_FORMS}}}x")
    assert form is not None
    return {
        f.get("var", ""): [v.text or "" for v in f.iterfind(f"{{{DATA_FORMS}}}value")]
        for f in form.iterfind(f"{{{DATA_FORMS}}}field")
    }


async def test_omemo_nodes_configured_as_asked(fresh_server: ServerInfo, tmp_path: Path) -> None:
    """Whatever way the server took the options, the nodes end up open, OMEMO 2 bundles unlimited.

    With two devices of one account, both OMEMO 2 bundles stay (ejabberd's default
    ``max_items`` of PEP nodes is 1: without the configuration the second device's bundle
    would replace the first's).
    """
    with trio.fail_after(60):
        async with (
            peer(fresh_server, "alice", tmp_path / "one", TWOMEMO) as one,
            open_client(
                f"{fresh_server.jid('alice')}/two",
                fresh_server.accounts["alice"],
                host=fresh_server.host,
                port=fresh_server.port,
                ca_file=fresh_server.ca_file,
            ) as client_two,
            open_omemo(client_two, tmp_path / "two") as two,
        ):
            own = one.client.jid.bare
            spec = node_spec(TWOMEMO)
            config = await _node_config(one.client, spec.bundle_node(0))
            assert config["pubsub#access_model"] == ["open"]
            assert config["pubsub#max_items"] not in (["1"], [])
            items = await one.client.get_items(own, spec.bundle_node(0))
            ids = {item.id for item in items}
            assert str((await two.own_device()).device_id) in ids
            assert len(ids) == 2
            for ns in (OLDMEMO, TWOMEMO):
                config = await _node_config(one.client, node_spec(ns).device_list_node)
                for var, value in DEVICE_LIST_OPTIONS.items():
                    assert config[var] == [value]


async def test_openpgp_nodes_open(fresh_server: ServerInfo, tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with peer(fresh_server, "alice", tmp_path, OPENPGP) as alice:
            (pgp,) = alice.plugins
            fpr = getattr(pgp, "fingerprint")  # noqa: B009 - plugins is a list of objects
            for node in (PUBLIC_KEYS_NODE, key_node(fpr)):
                config = await _node_config(alice.client, node)
                assert config["pubsub#access_model"] == ["open"]


async def test_publish_options_negotiated(fresh_server: ServerInfo, tmp_path: Path) -> None:
    """``Client.publish`` with options the server refuses in publish-options (ejabberd 23.01:
    ``pubsub#max_items``) still publishes and configures the node; a second publish works too,
    and a plain error that has nothing to do with the options is still raised."""
    options = {"pubsub#access_model": "open", "pubsub#max_items": "max"}
    payload = etree.Element("{urn:example:test}x")
    with trio.fail_after(30):
        async with open_client(
            f"{fresh_server.jid('alice')}/t",
            fresh_server.accounts["alice"],
            host=fresh_server.host,
            port=fresh_server.port,
            ca_file=fresh_server.ca_file,
        ) as client:
            for item in ("1", "2", "3"):
                await client.publish("urn:example:test", payload, item_id=item, options=options)
            config = await _node_config(client, "urn:example:test")
            assert config["pubsub#access_model"] == ["open"]
            assert config["pubsub#max_items"] not in (["1"], [])
            items = await client.get_items(client.jid.bare, "urn:example:test")
            assert {i.id for i in items} == {"1", "2", "3"}
            # An option value no server accepts is an error, never a silent publish without it.
            with pytest.raises(StanzaError):
                await client.publish(
                    "urn:example:test",
                    payload,
                    item_id="4",
                    options={"pubsub#access_model": "no-such-model"},
                )
