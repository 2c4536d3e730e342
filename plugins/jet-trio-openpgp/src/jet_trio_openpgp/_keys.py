"""Our key pair on disk and the trust decisions about peers' keys (synchronous, small files).

Layout of ``<data_dir>/openpgp/``:

``secret-key.asc``
    Our transferable secret key, ASCII-armored (``PGP PRIVATE KEY BLOCK``), or, when a passphrase
    is used, that key encrypted with the passphrase as an OpenPGP message (``PGP MESSAGE``).
    Mode 0600.
``key.json``
    ``{"account": bare JID, "fingerprint": ..., "created": XEP-0082 date}``.
``public-key.pgp``
    Our public key, binary (what we publish), for the check that it is still published without
    loading pysequoia (:mod:`._prepared`).
``trust.json``
    ``{bare JID: {fingerprint: {"trust": "tofu"|"verified"|"distrusted", "since": date}}}``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pysequoia
from jet_trio import JID

from ._errors import KeyStoreError
from ._signcrypt import format_stamp

__all__ = ["KeyState", "OwnKey", "TrustStore", "load_or_create_key"]

SECRET_FILE: Final = "secret-key.asc"
META_FILE: Final = "key.json"
TRUST_FILE: Final = "trust.json"
PUBLIC_FILE: Final = "public-key.pgp"
"""Our public key (binary), kept so that a prepared start can compare it with the published one
without pysequoia (:mod:`._prepared`)."""
_ARMOR_MESSAGE: Final = b"-----BEGIN PGP MESSAGE-----"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _keep_public(directory: Path, cert: pysequoia.Cert) -> None:
    """Write :data:`PUBLIC_FILE` when it is missing or holds another key."""
    path, data = directory / PUBLIC_FILE, bytes(cert)
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    _write_private(path, data)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True)
class OwnKey:
    """Our key pair: the secret key, its public certificate, fingerprint and creation date."""

    secret: pysequoia.Tsk
    cert: pysequoia.Cert
    fingerprint: str
    created: str


def load_or_create_key(directory: Path, account: JID, passphrase: str | None = None) -> OwnKey:
    """Load our key from ``directory`` or make one (Curve25519, user ID ``xmpp:<bare JID>``).

    With ``passphrase`` a new key is stored encrypted with it, and a stored key is decrypted
    with it. Raises :class:`KeyStoreError` (wrong or missing passphrase, unreadable key, a key
    made for another account).
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_path, meta_path = directory / SECRET_FILE, directory / META_FILE
    bare = str(account.bare)
    if not secret_path.exists():
        tsk = pysequoia.Tsk.generate(f"xmpp:{bare}")
        cert = tsk.extract_certificate()
        fpr = cert.fingerprint.upper()
        created = format_stamp(datetime.now(UTC))
        blob = str(tsk).encode("ascii")
        if passphrase is not None:
            blob = pysequoia.encrypt(blob, passwords=[passphrase], armor=True)
        _write_private(secret_path, blob)
        meta = {"account": bare, "fingerprint": fpr, "created": created}
        _write_private(meta_path, json.dumps(meta, indent=1).encode())
        _keep_public(directory, cert)
        return OwnKey(tsk, cert, fpr, created)

    blob = secret_path.read_bytes()
    if blob.lstrip().startswith(_ARMOR_MESSAGE):
        if passphrase is None:
            raise KeyStoreError(
                f"the OpenPGP key in {secret_path} is protected by a passphrase: pass passphrase="
            )
        try:
            clear = pysequoia.decrypt(blob, passwords=[passphrase]).bytes
        except RuntimeError:
            raise KeyStoreError(f"wrong passphrase for the OpenPGP key in {secret_path}") from None
        if clear is None:
            raise KeyStoreError(f"cannot decrypt the OpenPGP key in {secret_path}")
        blob = clear
    try:
        tsk = pysequoia.Tsk.from_bytes(blob)
    except (RuntimeError, ValueError) as exc:
        raise KeyStoreError(
            f"unreadable OpenPGP key in {secret_path}: {_first_line(exc)}"
        ) from None
    cert = tsk.extract_certificate()
    uids = {str(u) for u in cert.user_ids}
    if f"xmpp:{bare}" not in uids:
        raise KeyStoreError(
            f"the OpenPGP key in {secret_path} belongs to {', '.join(sorted(uids)) or 'nobody'}, "
            f"not to xmpp:{bare}: use another data directory per account"
        )
    _keep_public(directory, cert)
    created = ""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        created = str(json.loads(meta_path.read_text()).get("created", ""))
    return OwnKey(tsk, cert, cert.fingerprint.upper(), created or format_stamp(datetime.now(UTC)))


class KeyState(enum.Enum):
    """A trust decision about one peer key."""

    TOFU = "tofu"
    """Accepted on first use (no key of that account was known before)."""
    VERIFIED = "verified"
    """The user compared the fingerprint and confirmed it."""
    DISTRUSTED = "distrusted"
    """The user refused the key: envelopes made with it are refused, nothing is encrypted to it."""


class TrustStore:
    """Trust decisions per (bare JID, fingerprint), kept in ``public-key.pgp``
        Our public key, binary (what we publish), for the check that it is still published without
        loading pysequoia (:mod:`._prepared`).
    ``trust.json`` if a path is given."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._data: dict[str, dict[str, dict[str, str]]] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise KeyStoreError(f"unreadable trust store {path}: {exc}") from None
            if isinstance(loaded, dict):
                self._data = {
                    str(j): {str(f): dict(v) for f, v in keys.items() if isinstance(v, dict)}
                    for j, keys in loaded.items()
                    if isinstance(keys, dict)
                }

    def get(self, jid: JID, fingerprint: str) -> KeyState | None:
        entry = self._data.get(str(jid.bare), {}).get(fingerprint.upper())
        if entry is None:
            return None
        try:
            return KeyState(entry.get("trust"))
        except ValueError:
            return None

    def decisions(self, jid: JID) -> dict[str, KeyState]:
        """Every decided fingerprint of ``jid``."""
        out: dict[str, KeyState] = {}
        for fpr in self._data.get(str(jid.bare), {}):
            state = self.get(jid, fpr)
            if state is not None:
                out[fpr] = state
        return out

    def set(self, jid: JID, fingerprint: str, state: KeyState) -> None:
        self._data.setdefault(str(jid.bare), {})[fingerprint.upper()] = {
            "trust": state.value,
            "since": format_stamp(datetime.now(UTC)),
        }
        self.save()

    def save(self) -> None:
        if self.path is not None:
            _write_private(self.path, json.dumps(self._data, indent=1, sort_keys=True).encode())
