"""File requests by hash (XEP-0391 4.2) and resumed encrypted downloads (4.3), through Prosody."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import FileTransfer, open_client, open_file_transfer
from jet_trio._transfer.files import find_partials
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.plugin import Cipher, TransportSecret

from ._servers import ServerInfo

# Interrupted sends are resumed by request here, which needs the hash in the offer.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offers_with_hash")]

SIZE = 4_000_000


@asynccontextmanager
async def pair(server: ServerInfo) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
    opts: dict[str, Any] = {"host": server.host, "port": server.port, "ca_file": server.ca_file}
    async with (
        open_client(server.jid("alice") + "/holder", server.accounts["alice"], **opts) as a,
        open_client(server.jid("bob") + "/fetcher", server.accounts["bob"], **opts) as b,
        open_file_transfer(a, allow_stub_envelope=True) as holder,
        open_file_transfer(b, allow_stub_envelope=True) as fetcher,
    ):
        with trio.fail_after(5):
            await b.wait_available(a.jid)
        yield holder, fetcher


@pytest.fixture
def src(tmp_path: Path) -> Path:
    f = tmp_path / "shared" / "report.pdf"
    f.parent.mkdir()
    f.write_bytes(os.urandom(SIZE))
    return f


@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
@pytest.mark.parametrize("transport", ["s5b", "ibb"])
async def test_request_by_hash(
    prosody: ServerInfo, src: Path, tmp_path: Path, encrypt: str | None, transport: str
) -> None:
    out = tmp_path / "downloads"
    out.mkdir()
    with trio.fail_after(30):
        async with pair(prosody) as (holder, fetcher):
            sha = await holder.share(src)
            result = await fetcher.request_file(
                holder.client.jid,
                sha,
                out,
                encrypt=encrypt,
                transport=transport,  # type: ignore[arg-type]
            )
    assert result.path == out / "report.pdf"
    assert result.path.read_bytes() == src.read_bytes()
    assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest() == sha
    assert result.envelope == encrypt and result.direction == "receive"
    assert result.wire_bytes == SIZE + (16 if encrypt else 0)


async def test_request_for_unshared_file_is_refused(
    prosody: ServerInfo, src: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with pair(prosody) as (holder, fetcher):
            sha = hashlib.sha256(src.read_bytes()).hexdigest()  # known, but not shared
            with pytest.raises(jet_trio.TransferError, match="no such file is shared"):
                await fetcher.request_file(holder.client.jid, sha, tmp_path, encrypt=JET_STUB)
    assert not (tmp_path / "report.pdf").exists()
    assert find_partials(tmp_path) == []


async def test_request_limited_to_other_contacts_is_refused(
    prosody: ServerInfo, src: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with pair(prosody) as (holder, fetcher):
            sha = await holder.share(src, to=[prosody.jid("carol")])
            with pytest.raises(jet_trio.TransferError):
                await fetcher.request_file(holder.client.jid, sha, tmp_path, encrypt=JET_STUB)


async def interrupted_offer(
    holder: FileTransfer, fetcher: FileTransfer, src: Path, dest: Path
) -> None:
    """The holder offers ``src``; the fetcher cancels its download after about a quarter."""

    async def send() -> None:
        with pytest.raises(jet_trio.TransferError):
            await holder.send_file(src, fetcher.client.jid, encrypt=JET_STUB)

    async with trio.open_nursery() as n:
        n.start_soon(send)
        offer = await fetcher.next_offer()
        with trio.CancelScope() as scope:

            def progress(done: int, total: int) -> None:
                if done > total // 4:
                    scope.cancel()

            await offer.accept(dest, progress=progress)
        assert scope.cancelled_caught


async def test_interrupted_encrypted_download_resumes_with_fresh_secret(
    prosody: ServerInfo, src: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "copy.pdf"
    with trio.fail_after(30):
        async with pair(prosody) as (holder, fetcher):
            await holder.share(src)
            await interrupted_offer(holder, fetcher, src, dest)
            assert not dest.exists()
            (partial,) = find_partials(tmp_path)
            kept = partial.received
            assert SIZE // 4 < kept < SIZE
            assert partial.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
            progress: list[int] = []
            result = await fetcher.resume(
                partial.sidecar, encrypt=JET_STUB, progress=lambda d, t: progress.append(d)
            )
    assert dest.read_bytes() == src.read_bytes()
    assert result.wire_bytes == SIZE - kept + 16  # only the rest was sent, encrypted anew
    assert progress[0] > kept and progress[-1] == SIZE
    assert find_partials(tmp_path) == []


async def test_resume_finds_the_sender_under_another_resource(
    prosody: ServerInfo, src: Path, tmp_path: Path
) -> None:
    """The partial names alice/holder; alice comes back as alice/away (and only so):
    resume() asks her available resource that supports file transfer instead."""
    dest = tmp_path / "copy.pdf"
    opts: dict[str, Any] = {"host": prosody.host, "port": prosody.port, "ca_file": prosody.ca_file}
    with trio.fail_after(30):
        async with pair(prosody) as (holder, fetcher):
            await interrupted_offer(holder, fetcher, src, dest)
        (partial,) = find_partials(tmp_path)
        assert partial.peer == jet_trio.JID(prosody.jid("alice") + "/holder")
        async with (
            open_client(prosody.jid("alice") + "/away", prosody.accounts["alice"], **opts) as a,
            open_client(prosody.jid("bob") + "/fetcher", prosody.accounts["bob"], **opts) as b,
            open_file_transfer(a, allow_stub_envelope=True) as holder,
            open_file_transfer(b, allow_stub_envelope=True) as fetcher,
        ):
            await holder.share(src)
            await b.wait_available(a.jid)
            result = await fetcher.resume(partial, encrypt=JET_STUB)
    assert result.peer == a.jid
    assert result.hash_verified and dest.read_bytes() == src.read_bytes()


async def test_resume_with_corrupted_partial_fails_the_full_hash(
    prosody: ServerInfo, src: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "copy.pdf"
    with trio.fail_after(30):
        async with pair(prosody) as (holder, fetcher):
            await holder.share(src)
            await interrupted_offer(holder, fetcher, src, dest)
            (partial,) = find_partials(tmp_path)
            with partial.part.open("r+b") as f:  # damage the kept prefix
                first = f.read(1)
                f.seek(0)
                f.write(bytes([first[0] ^ 0xFF]))
            with pytest.raises(jet_trio.IntegrityError, match="hash"):
                await fetcher.resume(partial, encrypt=JET_STUB)
    assert not dest.exists()
    assert find_partials(tmp_path) == []


async def test_every_session_of_a_resumed_download_gets_a_fresh_secret(
    prosody: ServerInfo, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[TransportSecret] = []
    generate = TransportSecret.generate

    def spy(cipher: Cipher) -> TransportSecret:
        secret = generate(cipher)
        made.append(secret)
        return secret

    monkeypatch.setattr(TransportSecret, "generate", staticmethod(spy))
    dest = tmp_path / "copy.pdf"
    with trio.fail_after(30):
        async with pair(prosody) as (holder, fetcher):
            await holder.share(src)
            await interrupted_offer(holder, fetcher, src, dest)
            (partial,) = find_partials(tmp_path)
            await fetcher.resume(partial, encrypt=JET_STUB)
    assert dest.read_bytes() == src.read_bytes()
    assert len(made) >= 2  # the interrupted offer, then the resume request
    keys = [s.key for s in made]
    ivs = [s.iv for s in made]
    assert len(set(keys)) == len(keys) and len(set(ivs)) == len(ivs)
    assert all(s.key[: len(s.iv)] != s.iv for s in made)


@pytest.mark.parametrize("transport", ["s5b", "ibb"])
async def test_interrupted_offer_completed_by_sending_again(
    prosody: ServerInfo, src: Path, tmp_path: Path, transport: str
) -> None:
    """The holder offers the file again after the fetcher's download was interrupted: the
    fetcher's session-accept asks for the rest (XEP-0234 range) through Prosody, only that is
    sent, and the whole file verifies."""
    out = tmp_path / "downloads"
    out.mkdir()
    dest = out / "report.pdf"
    with trio.fail_after(60):
        async with pair(prosody) as (holder, fetcher):
            await interrupted_offer(holder, fetcher, src, dest)
            (partial,) = find_partials(out)
            kept = partial.received
            assert 0 < kept < SIZE
            sent: list[jet_trio.TransferResult] = []

            async def send() -> None:
                sent.append(
                    await holder.send_file(
                        src,
                        fetcher.client.jid,
                        encrypt=JET_STUB,
                        transport=transport,  # type: ignore[arg-type]
                    )
                )

            async with trio.open_nursery() as n:
                n.start_soon(send)
                got = await (await fetcher.next_offer()).accept(out)
    assert got.reused_bytes == sent[0].reused_bytes == kept
    assert got.wire_bytes == sent[0].wire_bytes == SIZE - kept + 16
    assert got.hash_verified and dest.read_bytes() == src.read_bytes()
    assert find_partials(out) == []
