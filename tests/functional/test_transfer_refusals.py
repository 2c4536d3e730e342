"""Transfers that must not start, or must stop before any data: declines, missing peers,
missing or refused envelopes, unknown ciphers, bad key material, a forged envelope sender,
unsafe file names, existing targets."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
import jet_trio._transfer.service
from jet_trio import EncryptionFailed, TransferDeclined, TransferError
from jet_trio._transfer.service import FileTransfer, IncomingOffer
from jet_trio._xmpp.ns import JET_STUB

from .conftest import (
    TEST_CIPHER_URN,
    TEST_ENVELOPE_NS,
    CipherPlugin,
    CorruptingCipher,
    Net,
    TestEnvelope,
    TestEnvelopePlugin,
    assert_nothing_stored,
    leftovers,
    make_file,
    run_transfer,
)


async def expect_next_offer_is(fa: FileTransfer, fb: FileTransfer, tmp_path: Path) -> None:
    """Prove that nothing reached ``fb`` before: the next offer it sees is a fresh marker."""
    marker = tmp_path / "marker" / "marker.txt"
    marker.parent.mkdir()
    marker.write_bytes(b"marker")
    async with trio.open_nursery() as n:
        n.start_soon(partial(fa.send_file, marker, fb.client.jid, encrypt=None))
        with trio.fail_after(5):
            offer = await fb.next_offer()
        assert offer.name == "marker.txt", f"an earlier offer reached the receiver: {offer}"
        await offer.accept(marker.parent / "got.txt")


# -- decline, missing peers ---------------------------------------------------------------------


async def test_decline(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "declined.bin"

    async def reject(offer: IncomingOffer) -> None:
        await offer.reject()

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, accept=reject, encrypt=JET_STUB)
        exc = out.send.raised(TransferDeclined)
        assert exc.reason == "decline"
        assert str(fb.client.jid) in str(exc) and "decline" in str(exc)
        assert out.recv.error is None
        assert out.recv.offer is not None
        # A second answer to the same offer is refused clearly.
        with pytest.raises(TransferError, match="already"):
            await out.recv.offer.accept(dest)
    assert_nothing_stored(dest)
    assert out.send.progress == []


async def test_reject_with_busy(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    src = make_file(tmp_path, 1000)

    async def busy(offer: IncomingOffer) -> None:
        await offer.reject("busy", "on the phone")

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, accept=busy, encrypt=None)
    exc = out.send.raised(TransferDeclined)
    assert exc.reason == "busy" and "on the phone" in str(exc)


async def test_send_to_offline_bare_jid(net: Net, tmp_path: Path) -> None:
    src = make_file(tmp_path, 1000)
    async with net.pair() as (fa, _fb):
        with trio.fail_after(5), pytest.raises(TransferError) as info:
            await fa.send_file(src, net.server.jid("carol"), encrypt=None)
    assert "carol@localhost" in str(info.value) and "no available resource" in str(info.value)
    assert info.value.reason == "gone"


@pytest.mark.parametrize("encrypt", [None, "auto", JET_STUB])
async def test_send_to_offline_full_jid(net: Net, tmp_path: Path, encrypt: str | None) -> None:
    src = make_file(tmp_path, 1000)
    carol = net.server.jid("carol", "nowhere")
    async with net.pair() as (fa, _fb):
        with trio.fail_after(5), pytest.raises(TransferError) as info:
            await fa.send_file(src, carol, encrypt=encrypt)
    assert str(carol) in str(info.value)
    assert "unavailable" in str(info.value)


async def test_send_to_peer_that_left(net: Net, tmp_path: Path) -> None:
    """The receiver went offline before the offer: the bare JID has no resource any more."""
    src = make_file(tmp_path, 1000)
    async with net.client("alice", "send") as a, jet_trio.open_file_transfer(a) as fa:
        async with net.client("bob", "gone") as b, jet_trio.open_file_transfer(b):
            with trio.fail_after(5):
                await a.wait_available(b.jid)
        with trio.fail_after(5):
            while a.resources(b.jid.bare):
                await a.wait_available(net.server.jid("carol"))  # any presence change wakes
        with trio.fail_after(5), pytest.raises(TransferError, match="no available resource"):
            await fa.send_file(src, b.jid.bare, encrypt=None)


# -- envelopes ----------------------------------------------------------------------------------


async def test_auto_encrypt_without_common_envelope(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """encrypt='auto' and a peer with no envelope method: a clear error, nothing sent."""
    src = make_file(tmp_path, 1000)
    async with net.pair(receiver={"allow_stub_envelope": False}) as (fa, fb):
        with trio.fail_after(5), pytest.raises(EncryptionFailed) as info:
            await fa.send_file(src, fb.client.jid)  # encrypt="auto"
        assert "supports none of our JET envelope methods" in str(info.value)
        assert "encrypt=None" in str(info.value)
        await expect_next_offer_is(fa, fb, tmp_path)
    assert not list(dest_dir.iterdir())


async def test_explicit_unknown_envelope_on_sender(net: Net, tmp_path: Path) -> None:
    src = make_file(tmp_path, 1000)
    async with net.pair(sender={"allow_stub_envelope": False}) as (fa, fb):
        with trio.fail_after(5), pytest.raises(jet_trio.JetError) as info:
            await fa.send_file(src, fb.client.jid, encrypt=JET_STUB)
        assert "allow_stub_envelope" in str(info.value)
        await expect_next_offer_is(fa, fb, tmp_path)


async def test_stub_envelope_refused_by_receiver(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "stub.bin"
    async with net.pair(receiver={"allow_stub_envelope": False}) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
        await expect_next_offer_is(fa, fb, tmp_path)  # no unencrypted retry
    assert out.recv.offer is not None and out.recv.offer.envelope == JET_STUB
    err = out.recv.raised(EncryptionFailed)
    assert err.reason == "security-error"
    assert "stub envelope is disabled" in str(err)
    sent = out.send.raised(EncryptionFailed)
    assert sent.reason == "security-error" and "stub envelope is disabled" in str(sent)
    assert_nothing_stored(dest)
    assert out.send.progress == [] and out.recv.progress == []


async def test_unknown_cipher_on_receiver(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """The sender uses a cipher (from a plugin) the receiver does not have, although the
    receiver (wrongly) advertises it: the receiver refuses, nothing is written."""
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "cipher.bin"
    sender = {"extra_plugins": [CipherPlugin(CorruptingCipher())]}
    async with net.pair(sender=sender) as (fa, fb):
        await fb.client.add_features(TEST_CIPHER_URN)
        with trio.fail_after(5):
            while not (await fa.client.features_of(fb.client.jid)).has(TEST_CIPHER_URN):
                await fa.client.wait_available(net.server.jid("carol"))  # next presence
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, cipher=TEST_CIPHER_URN)
    assert out.recv.offer is not None, out.send.error
    assert out.recv.offer.cipher == TEST_CIPHER_URN
    err = out.recv.raised(EncryptionFailed)
    assert err.reason == "security-error"
    assert "unsupported JET cipher" in str(err) and TEST_CIPHER_URN in str(err)
    sent = out.send.raised(EncryptionFailed)
    assert sent.reason == "security-error" and TEST_CIPHER_URN in str(sent)
    assert_nothing_stored(dest)


async def test_cipher_the_peer_does_not_advertise(net: Net, tmp_path: Path) -> None:
    """The sender has a cipher the receiver does not advertise: refused before sending."""
    src = make_file(tmp_path, 1000)
    sender = {"extra_plugins": [CipherPlugin(CorruptingCipher())]}
    async with net.pair(sender=sender) as (fa, fb):
        with trio.fail_after(5), pytest.raises(EncryptionFailed) as info:
            await fa.send_file(src, fb.client.jid, encrypt=JET_STUB, cipher=TEST_CIPHER_URN)
        assert TEST_CIPHER_URN in str(info.value) and str(fb.client.jid) in str(info.value)
        await expect_next_offer_is(fa, fb, tmp_path)


async def test_unknown_cipher_asked_of_sender(net: Net, tmp_path: Path) -> None:
    src = make_file(tmp_path, 1000)
    async with net.pair() as (fa, fb):
        with trio.fail_after(5), pytest.raises(jet_trio.SecurityError, match="unsupported"):
            await fa.send_file(src, fb.client.jid, encrypt=JET_STUB, cipher="urn:example:rot13")
        await expect_next_offer_is(fa, fb, tmp_path)


def envelope_pair() -> tuple[TestEnvelope, dict[str, Any], dict[str, Any]]:
    env = TestEnvelope()
    sender = {"extra_plugins": [TestEnvelopePlugin(env)]}
    receiver = {"extra_plugins": [TestEnvelopePlugin(TestEnvelope())]}
    return env, sender, receiver


async def test_test_envelope_works(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """Control for the envelope tests below: the test envelope, unchanged, transfers fine.
    Also: every session gets a fresh random key and IV, and the key is not the IV."""
    src = make_file(tmp_path, 50_000)
    env, sender, receiver = envelope_pair()
    async with net.pair(sender=sender, receiver=receiver) as (fa, fb):
        for name in ("ok1.bin", "ok2.bin", "ok3.bin"):
            out = await run_transfer(fa, fb, src, dest_dir / name, encrypt=TEST_ENVELOPE_NS)
            assert out.send.error is None and out.recv.error is None, (
                out.send.error,
                out.recv.error,
            )
            assert (dest_dir / name).read_bytes() == src.read_bytes()
    assert len(env.sent) == 3
    assert len({s.key for s in env.sent}) == 3 and len({s.iv for s in env.sent}) == 3
    for s in env.sent:
        assert len(s.key) == 32 and len(s.iv) == 12
        assert s.iv not in s.key


@pytest.mark.parametrize("iv_len", [8, 13, 32])
async def test_iv_of_wrong_length(net: Net, tmp_path: Path, dest_dir: Path, iv_len: int) -> None:
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "iv.bin"
    env, sender, receiver = envelope_pair()
    env.iv_override = bytes(range(1, iv_len + 1))
    async with net.pair(sender=sender, receiver=receiver) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=TEST_ENVELOPE_NS)
    err = out.recv.raised(EncryptionFailed)
    assert err.reason == "security-error"
    assert f"IV is {iv_len} bytes" in str(err)
    out.send.raised(EncryptionFailed)
    assert_nothing_stored(dest)


async def test_envelope_sender_is_not_the_initiator(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """The envelope authenticates carol, the session comes from alice: refused (XEP-0391 §7)."""
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "mitm.bin"
    env, sender, receiver = envelope_pair()
    env.claim = net.server.jid("carol")
    async with net.pair(sender=sender, receiver=receiver) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=TEST_ENVELOPE_NS)
    err = out.recv.raised(EncryptionFailed)
    assert err.reason == "security-error"
    assert "carol@localhost" in str(err) and "alice@localhost" in str(err)
    assert "man-in-the-middle" in str(err)
    assert isinstance(err.__context__ or err, Exception)
    sent = out.send.raised(EncryptionFailed)
    assert sent.reason == "security-error" and "man-in-the-middle" in str(sent)
    assert_nothing_stored(dest)
    assert out.recv.progress == []


# -- file names and targets ---------------------------------------------------------------------


def visible_files(tmp_path: Path) -> list[Path]:
    """Files in the test's directory tree and directly in its parent (where ``../../x``
    from the inbox would land)."""
    return sorted(p for p in [*tmp_path.rglob("*"), *tmp_path.parent.glob("*")] if p.is_file())


@pytest.fixture
def raw_name(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the sender put a name of the test's choosing into its offer verbatim (a hostile
    or buggy peer: our own sender refuses such names): append it to the returned list."""
    names: list[str] = []
    real = jet_trio._transfer.service.build_description  # type: ignore[attr-defined]

    def build(file: Any, *, request: bool = False) -> Any:
        el = real(file, request=request)
        if names and not request:
            found = el.find(".//{urn:xmpp:jingle:apps:file-transfer:5}name")
            assert found is not None
            found.text = names[0]
        return el

    monkeypatch.setattr(jet_trio._transfer.service, "build_description", build)
    return names


@pytest.mark.parametrize(
    "offered",
    [
        "../../escape.bin",
        "/etc/passwd",
        "sub/dir/nested.bin",
        "..\\..\\win.bin",
        "..",
        ".",
        "del\x7f",
        "invoice\u202egpj.exe",
        "csi\x9b31m",
        "line\u2028sep",
        ".X.part.jet-partial.json",
    ],
)
async def test_offer_with_unsafe_name_is_refused(
    net: Net, tmp_path: Path, dest_dir: Path, raw_name: list[str], offered: str
) -> None:
    """A name with a path separator, ``..`` or a control character: the receiver refuses the
    offer itself (the application never sees it), the sender is told why, nothing is stored."""
    src = make_file(tmp_path, 10_000)
    before = visible_files(tmp_path)
    raw_name.append(offered)
    async with net.pair() as (fa, fb):
        with trio.fail_after(5), pytest.raises(TransferError) as info:
            await fa.send_file(src, fb.client.jid, encrypt=JET_STUB, name="placeholder.bin")
        raw_name.clear()
        await expect_next_offer_is(fa, fb, tmp_path)
    err = info.value
    assert type(err) is TransferError, err
    assert err.reason == "failed-application"
    assert "file name" in str(err) and str(fb.client.jid) in str(err)
    created = [p for p in visible_files(tmp_path) if p not in before]
    assert all(p.is_relative_to(tmp_path / "marker") for p in created), created
    assert not list(dest_dir.iterdir())


@pytest.mark.parametrize(
    ("offered", "stored"),
    [
        pytest.param("  spaced.bin  ", "spaced.bin", id="spaces"),
        pytest.param(".hidden", "_.hidden", id="hidden"),
        pytest.param(".X.part", "_.X.part", id="temporary-name"),
        pytest.param("zero\u200bwidth.txt", "zerowidth.txt", id="zero-width"),
        pytest.param("ünïcödé ✓.txt", "ünïcödé ✓.txt", id="unicode"),
        pytest.param("a" * 400 + ".bin", "a" * 251 + ".bin", id="long"),
        pytest.param("é" * 200, "é" * 127, id="long-multibyte"),
    ],
)
async def test_offered_name_is_stored_safely(
    net: Net, tmp_path: Path, dest_dir: Path, raw_name: list[str], offered: str, stored: str
) -> None:
    """Accepted into a directory: stored under a sanitised name inside it, and nowhere else."""
    src = make_file(tmp_path, 10_000)
    before = visible_files(tmp_path)
    raw_name.append(offered)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, encrypt=JET_STUB, name="placeholder")
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert out.recv.offer is not None and out.recv.offer.name == offered.strip()
    assert out.recv.result is not None and out.recv.result.path == dest_dir / stored
    assert len(stored.encode()) <= 255
    assert (dest_dir / stored).read_bytes() == src.read_bytes()
    after = visible_files(tmp_path)
    assert [p for p in after if p not in before] == [dest_dir / stored]


async def test_existing_target_without_overwrite(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """FileExistsError, and the offer is answered at once: the sender learns why (it used to
    stay open, and a receiver that only logged the error left the sender waiting for ever)."""
    src = make_file(tmp_path, 10_000)
    dest = dest_dir / "exists.bin"
    dest.write_bytes(b"precious")
    raised: list[BaseException] = []

    async def accept(offer: IncomingOffer) -> jet_trio.TransferResult:
        with pytest.raises(FileExistsError) as info:
            await offer.accept(dest_dir)  # a directory: the offered name exists there
        raised.append(info.value)
        with pytest.raises(jet_trio.TransferError, match="already accepted or rejected"):
            await offer.accept(dest_dir / "other.bin")
        raise info.value

    async with net.pair() as (fa, fb):
        with trio.fail_after(10):
            out = await run_transfer(
                fa, fb, src, dest, accept=accept, encrypt=JET_STUB, name="exists.bin"
            )
    assert "exists.bin" in str(raised[0]) and "overwrite" in str(raised[0])
    err = out.send.raised(jet_trio.TransferError)
    assert err.reason == "failed-application" and "already exists" in str(err)
    assert dest.read_bytes() == b"precious"
    assert not (dest_dir / "other.bin").exists()
    assert not leftovers(dest_dir)


async def test_existing_target_then_reject(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """After a failed accept the offer is answered: a late reject is refused."""
    src = make_file(tmp_path, 10_000)
    dest = dest_dir / "exists.bin"
    dest.write_bytes(b"precious")

    async def accept(offer: IncomingOffer) -> None:
        with pytest.raises(FileExistsError):
            await offer.accept(dest)
        with pytest.raises(jet_trio.TransferError, match="already accepted or rejected"):
            await offer.reject()

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, accept=accept, encrypt=None)
    assert out.send.raised(jet_trio.TransferError).reason == "failed-application"
    assert dest.read_bytes() == b"precious"
    assert not leftovers(dest_dir)
