"""Our key on disk (passphrase included) and the trust store."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from jet_trio import JID

from jet_trio_openpgp import KeyState, KeyStoreError
from jet_trio_openpgp._keys import PUBLIC_FILE, SECRET_FILE, TrustStore, load_or_create_key

ALICE = JID("alice@example.org/phone")


def test_key_made_then_loaded(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "openpgp", ALICE)
    path = tmp_path / "openpgp" / SECRET_FILE
    assert path.read_bytes().startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [str(u) for u in first.cert.user_ids] == ["xmpp:alice@example.org"]
    assert str(first.cert).startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert len(first.fingerprint) == 40 and first.fingerprint == first.fingerprint.upper()
    again = load_or_create_key(tmp_path / "openpgp", JID("alice@example.org/laptop"))
    assert again.fingerprint == first.fingerprint
    assert again.created == first.created


def test_public_key_kept_for_the_prepared_check(tmp_path: Path) -> None:
    """The binary public key is written beside the secret key (made, or loaded by an older
    version that did not write it, or holding another key) for the check without pysequoia."""
    key = load_or_create_key(tmp_path, JID("alice@example.org"))
    public = tmp_path / PUBLIC_FILE
    assert public.read_bytes() == bytes(key.cert)
    public.unlink()
    assert load_or_create_key(tmp_path, JID("alice@example.org")).fingerprint == key.fingerprint
    assert public.read_bytes() == bytes(key.cert)
    public.write_bytes(b"another key")
    load_or_create_key(tmp_path, JID("alice@example.org"))
    assert public.read_bytes() == bytes(key.cert)


async def test_prepared_start_checks_the_passphrase(tmp_path: Path) -> None:
    """A key protected by a passphrase is loaded at start (a wrong passphrase is said then, not
    at the first offer), before anything is read from the server."""
    from jet_trio_openpgp import KeyStoreError, PreparedOpenPGPEnvelope

    load_or_create_key(tmp_path, JID("alice@example.org"), passphrase="right")

    class NoServer:  # the check fails before it would read anything from a server
        jid = JID("alice@example.org/r")

    method = PreparedOpenPGPEnvelope(NoServer(), tmp_path, passphrase="wrong")  # type: ignore[arg-type]
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        await method.start()


def test_key_of_another_account_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path, ALICE)
    with pytest.raises(KeyStoreError, match=r"belongs to xmpp:alice@example\.org, not to xmpp:bob"):
        load_or_create_key(tmp_path, JID("bob@example.org"))


def test_passphrase(tmp_path: Path) -> None:
    made = load_or_create_key(tmp_path, ALICE, "correct horse")
    blob = (tmp_path / SECRET_FILE).read_bytes()
    assert blob.startswith(b"-----BEGIN PGP MESSAGE-----")
    assert b"PRIVATE KEY" not in blob
    with pytest.raises(KeyStoreError, match="protected by a passphrase"):
        load_or_create_key(tmp_path, ALICE)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_or_create_key(tmp_path, ALICE, "battery staple")
    assert load_or_create_key(tmp_path, ALICE, "correct horse").fingerprint == made.fingerprint


def test_garbage_key_file(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_bytes(b"not a key")
    with pytest.raises(KeyStoreError, match="unreadable OpenPGP key"):
        load_or_create_key(tmp_path, ALICE)


def test_trust_store_persists(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    store = TrustStore(path)
    bob = JID("bob@example.org/x")
    assert store.get(bob, "ab" * 20) is None
    store.set(bob, "ab" * 20, KeyState.TOFU)
    store.set(bob, "cd" * 20, KeyState.DISTRUSTED)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = TrustStore(path)
    assert reloaded.get(JID("bob@example.org"), "AB" * 20) is KeyState.TOFU
    assert reloaded.decisions(bob) == {"AB" * 20: KeyState.TOFU, "CD" * 20: KeyState.DISTRUSTED}


def test_trust_store_unreadable(tmp_path: Path) -> None:
    (tmp_path / "trust.json").write_text("{not json")
    with pytest.raises(KeyStoreError, match="unreadable trust store"):
        TrustStore(tmp_path / "trust.json")
