"""Exit codes 7 (transport) and 9 (integrity) end to end: the console script against a peer
driven by the library in the test process, which misbehaves on purpose."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import jet_trio
from jet_trio import FileTransfer, open_client, open_file_transfer
from jet_trio._transfer.files import HashCache
from jet_trio._xmpp.connect import make_ssl_context

from ._run import Ran, arun
from .conftest import LocalServer


@asynccontextmanager
async def library_peer(server: LocalServer, user: str) -> AsyncIterator[FileTransfer]:
    ctx = make_ssl_context(str(server.ca_file))
    async with (
        open_client(
            f"{user}@localhost/lib",
            server.accounts[user],
            host=server.server.host,
            port=server.server.port,
            ssl_context=ctx,
        ) as client,
        open_file_transfer(client) as ft,
    ):
        yield ft


async def test_receiver_exit_9_when_the_announced_hash_does_not_match(
    tmp_path: Path, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(100_000))
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    def wrong_hash(self: HashCache, path: Path, key: object) -> bytes:
        return b"\x00" * 32  # the offer announces a hash the data will not have

    monkeypatch.setattr(HashCache, "cached", wrong_hash)
    results: dict[str, Ran] = {}
    async with library_peer(local_server, "alice") as alice:

        async def receive() -> None:
            results["cli"] = await arun(
                ["receive", "-o", str(inbox), "--accept-unencrypted", "--json"],
                tmp_path,
                local_server.env("bob"),
            )

        async with trio.open_nursery() as n:
            n.start_soon(receive)
            with trio.fail_after(30):
                # The CLI announces presence only once it can receive.
                bob = await alice.client.wait_available(jet_trio.JID("bob@localhost"))
                with pytest.raises(jet_trio.IntegrityError):
                    await alice.send_file(src, bob, encrypt=None)
    ran = results["cli"]
    assert ran.returncode == 9, ran.stderr
    failure = ran.json_lines()[-1]
    assert failure["status"] == "error" and failure["reason"] == "integrity"
    assert "hash" in failure["message"]
    assert list(inbox.iterdir()) == []


async def test_sender_exit_7_when_the_peer_reports_failed_transport(
    tmp_path: Path, local_server: LocalServer
) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(10_000))
    results: dict[str, Ran] = {}
    async with library_peer(local_server, "bob") as bob:

        async def send() -> None:
            results["cli"] = await arun(
                ["send", str(src), "--to", "bob@localhost/lib", "--envelope", "none", "--json"],
                tmp_path,
                local_server.env("alice"),
            )

        async with trio.open_nursery() as n:
            n.start_soon(send)
            with trio.fail_after(30):
                offer = await bob.next_offer()
            await offer.reject("failed-transport", "no transport works from here")
    ran = results["cli"]
    assert ran.returncode == 7, ran.stderr
    failure = ran.one_json()
    assert failure["status"] == "error" and failure["reason"] == "transport"
    assert "failed-transport" in failure["message"]
