"""A plugin's bug in a real transfer (in-process server): the transfer ends with a fitting Jingle
reason and a text the peer can read that names the plugin, the method alone is refused, and the
next transfer with another method works."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import FileTransfer, open_client, open_file_transfer
from jet_trio._plugins.guard import PluginError
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.plugin import PluginConfig, PluginManager
from jet_trio.testing import make_tls, serve

from ..unit.test_plugin_isolation import NS, URN, Plugin


@asynccontextmanager
async def pair(
    receiver_bug: str, sender_bug: str = ""
) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
    """alice has the plugin with the bug ``sender_bug`` (none by default), bob with
    ``receiver_bug``."""
    tls = make_tls("localhost")
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            serve("localhost", tls=tls.server_context, accounts={"a": "pw", "b": "pw"})
        )
        opts: dict[str, Any] = {
            "host": server.host,
            "port": server.port,
            "ssl_context": tls.client_context,
        }
        a = await stack.enter_async_context(open_client("a@localhost/s", "pw", **opts))
        b = await stack.enter_async_context(open_client("b@localhost/r", "pw", **opts))
        fts = []
        for client, bug in ((a, sender_bug), (b, receiver_bug)):
            pm = PluginManager(
                PluginConfig(allow_stub_envelope=True),
                plugins={"buggy": Plugin(bug)},
                entry_points=False,
            )
            assert pm.load_errors == []
            fts.append(
                await stack.enter_async_context(
                    open_file_transfer(client, plugins=pm, direct_addresses=["127.0.0.1"])
                )
            )
        await a.wait_available(b.jid)
        yield fts[0], fts[1]


async def _transfer(
    fa: FileTransfer, fb: FileTransfer, tmp: Path, **kw: object
) -> tuple[BaseException | jet_trio.TransferResult, BaseException | jet_trio.TransferResult]:
    src = tmp / "f.bin"
    src.write_bytes(os.urandom(200_000))
    out: dict[str, BaseException | jet_trio.TransferResult] = {}

    async def receive() -> None:
        offer = await fb.next_offer()
        try:
            out["b"] = await offer.accept(tmp / "out", overwrite=True)
        except jet_trio.JetError as exc:
            out["b"] = exc

    async def send() -> None:
        try:
            out["a"] = await fa.send_file(src, fb.client.jid, **kw)  # type: ignore[arg-type]
        except jet_trio.JetError as exc:
            out["a"] = exc

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        n.start_soon(send)
    return out["a"], out["b"]


def _cause(exc: BaseException) -> BaseException:
    """The PluginError in the ``__cause__`` chain of ``exc``, else its last cause."""
    while exc.__cause__ is not None and not isinstance(exc, PluginError):
        exc = exc.__cause__
    return exc


@pytest.mark.parametrize(
    ("bug", "problem"),
    [
        ("decrypt-raises", f"envelope method {NS!r}: decrypt() raised ValueError"),
        ("dec-update-raises", f"cipher {URN!r}: decryptor update() raised KeyError"),
        ("finalize-false", f"cipher {URN!r}: decryptor finalize() returned False"),
    ],
)
async def test_receiver_plugin_bug_ends_the_transfer_and_refuses_that_method(
    bug: str, problem: str, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    with trio.fail_after(30):
        async with pair(bug) as (fa, fb):
            assert NS in fb.features and URN in fb.features
            sent, received = await _transfer(fa, fb, tmp_path, encrypt=NS, cipher=URN)

            # The receiver: a typed error whose cause names the plugin, not an internal error.
            assert isinstance(received, jet_trio.TransferError), received
            assert received.reason == "security-error"
            assert isinstance(_cause(received), PluginError)
            assert f"bug in the plugin 'buggy': {problem}" in str(received)
            # The sender reads the same in the Jingle reason text.
            assert isinstance(sent, jet_trio.EncryptionFailed), sent
            assert sent.reason == "security-error"
            assert f"bug in the plugin 'buggy': {problem}" in str(sent)
            assert list((tmp_path / "out").iterdir()) == []  # nothing stored

            # Only that method is refused; the next transfer with the stub envelope works.
            assert [e.name for e in fb.plugins.load_errors] == ["buggy"]
            assert problem in fb.plugins.load_errors[0].reason
            sent, received = await _transfer(fa, fb, tmp_path, encrypt=JET_STUB)
            assert isinstance(sent, jet_trio.TransferResult), sent
            assert isinstance(received, jet_trio.TransferResult), received


async def test_sender_cipher_bug_ends_the_transfer_and_the_receiver_reads_why(
    tmp_path: Path,
) -> None:
    (tmp_path / "out").mkdir()
    problem = f"cipher {URN!r}: encryptor update() raised ValueError: update exploded"
    with trio.fail_after(30):
        async with pair("", sender_bug="update-raises") as (fa, fb):
            sent, received = await _transfer(fa, fb, tmp_path, encrypt=NS, cipher=URN)
            assert isinstance(sent, jet_trio.TransferError), sent
            assert isinstance(_cause(sent), PluginError)
            assert f"bug in the plugin 'buggy': {problem}" in str(sent)
            # The receiver is told why, in the Jingle reason's text.
            assert isinstance(received, jet_trio.TransferError), received
            assert received.reason == "security-error"
            assert f"bug in the plugin 'buggy': {problem}" in str(received)
            assert list((tmp_path / "out").iterdir()) == []
            assert [e.name for e in fa.plugins.load_errors] == ["buggy"]
