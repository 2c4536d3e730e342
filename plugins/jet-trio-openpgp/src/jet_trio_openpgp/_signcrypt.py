"""The envelope codec, sans-IO: ``<signcrypt>`` builder/reader, its checks, and the OpenPGP layer.

The envelope is ``<openpgp xmlns='urn:xmpp:openpgp:0'>BASE64</openpgp>`` (XEP-0373), where
BASE64 is a binary OpenPGP message, signed by the sender and encrypted to the recipient's keys and
the sender's own, whose literal data is::

    <signcrypt xmlns='urn:xmpp:openpgp:0'>
      <to jid='bob@example.org'/>
      <time stamp='2026-11-22T03:40:00Z'/>
      <rpad>random padding</rpad>
      <payload>
        <jet-secret xmlns='urn:jet-trio:jet-openpgp:0'
                    cipher='urn:xmpp:ciphers:aes-256-gcm-nopadding'>BASE64(key ‖ IV)</jet-secret>
      </payload>
    </signcrypt>

Nothing here does I/O; the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import pysequoia
from jet_trio import JID, InvalidJID
from jet_trio.plugin import Cipher, TransportSecret
from lxml import etree

from ._errors import (
    MalformedEnvelope,
    ReplayedEnvelope,
    StaleEnvelope,
    UndecryptableEnvelope,
    WrongRecipient,
    WrongSigner,
)

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW",
    "FEATURE",
    "NS",
    "PAYLOAD_NS",
    "ReplayCache",
    "SignCrypt",
    "build_openpgp",
    "build_signcrypt",
    "check_signcrypt",
    "format_stamp",
    "open_message",
    "parse_openpgp",
    "parse_signcrypt",
    "seal_message",
]

NS: Final = "urn:xmpp:openpgp:0"
"""XEP-0373: the ``<openpgp>``/``<signcrypt>`` namespace, and the JET envelope ``type``."""
PAYLOAD_NS: Final = "urn:jet-trio:jet-openpgp:0"
"""This project's namespace of the ``<jet-secret>`` payload element."""
FEATURE: Final = "urn:jet-trio:jingle:jet-openpgp:0"
"""The disco#info feature: "I accept JET transport secrets in OpenPGP envelopes"."""

DEFAULT_MAX_CLOCK_SKEW: Final = timedelta(minutes=5)

_OPENPGP: Final = f"{{{NS}}}openpgp"
_SIGNCRYPT: Final = f"{{{NS}}}signcrypt"
_TO: Final = f"{{{NS}}}to"
_TIME: Final = f"{{{NS}}}time"
_RPAD: Final = f"{{{NS}}}rpad"
_PAYLOAD: Final = f"{{{NS}}}payload"
_SECRET: Final = f"{{{PAYLOAD_NS}}}jet-secret"

#: Upper bounds: the envelope is a few hundred bytes (padding included).
MAX_OPENPGP_CHARS: Final = 32 * 1024
MAX_SIGNCRYPT_BYTES: Final = 16 * 1024
_MAX_SECRET_CHARS: Final = 1024
_MAX_TO: Final = 16
_RPAD_ALPHABET: Final = string.ascii_letters + string.digits
_RPAD_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class SignCrypt:
    """A parsed ``<signcrypt>``: recipients, time stamp, and the secret it carries."""

    to: tuple[JID, ...]
    stamp: datetime
    cipher: str
    """The cipher URN the sender bound the secret to."""
    secret: bytes
    """key ‖ IV."""


def format_stamp(when: datetime) -> str:
    """XEP-0082 DateTime in UTC with seconds: ``2026-11-22T03:40:00Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_padding() -> str:
    return "".join(secrets.choice(_RPAD_ALPHABET) for _ in range(secrets.randbelow(_RPAD_MAX + 1)))


def build_signcrypt(
    secret: TransportSecret, to: JID, when: datetime, *, rpad: str | None = None
) -> bytes:
    """The serialised ``<signcrypt>`` carrying ``secret`` for the bare JID ``to``."""
    root = etree.Element(_SIGNCRYPT, nsmap={None: NS})  # type: ignore[dict-item]
    etree.SubElement(root, _TO, {"jid": str(to.bare)})
    etree.SubElement(root, _TIME, {"stamp": format_stamp(when)})
    etree.SubElement(root, _RPAD).text = _random_padding() if rpad is None else rpad
    payload = etree.SubElement(root, _PAYLOAD)
    el = etree.SubElement(payload, _SECRET, {"cipher": secret.cipher.urn}, nsmap={None: PAYLOAD_NS})  # type: ignore[dict-item]
    el.text = base64.b64encode(secret.to_bytes()).decode("ascii")
    return etree.tostring(root)  # ASCII with character references, no XML declaration


_PARSER: Final = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=False,
)


def _parse_xml(data: bytes) -> etree._Element:
    """A standalone element, parsed without DTDs, entities, comments or processing instructions."""
    if len(data) > MAX_SIGNCRYPT_BYTES:
        raise MalformedEnvelope(f"the signcrypt element is too large ({len(data)} bytes)")
    if b"<!" in data or b"<?" in data:
        raise MalformedEnvelope(
            "the signcrypt element holds a DOCTYPE, comment, CDATA section or processing "
            "instruction: refused"
        )
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise MalformedEnvelope(f"the signcrypt element is not well-formed XML: {exc}") from None
    for node in root.iter():
        if not isinstance(node.tag, str):
            raise MalformedEnvelope("the signcrypt element holds comments, PIs or entities")
    if root.getprevious() is not None or root.getnext() is not None:
        raise MalformedEnvelope("the signcrypt element has siblings (comments or PIs)")
    return root


def parse_signcrypt(data: bytes) -> SignCrypt:
    """Read a serialised ``<signcrypt>``; raises :class:`MalformedEnvelope`."""
    root = _parse_xml(data)
    if root.tag != _SIGNCRYPT:
        raise MalformedEnvelope(f"expected <signcrypt xmlns='{NS}'>, got {root.tag!r}")
    tos = root.findall(_TO)
    if not tos:
        raise MalformedEnvelope("the signcrypt has no <to> recipient")
    if len(tos) > _MAX_TO:
        raise MalformedEnvelope("the signcrypt has too many <to> recipients")
    to: list[JID] = []
    for el in tos:
        try:
            to.append(JID(el.get("jid", "")))
        except InvalidJID as exc:
            raise MalformedEnvelope(f"the signcrypt has an invalid <to jid>: {exc}") from None
    times = root.findall(_TIME)
    if len(times) != 1:
        raise MalformedEnvelope("the signcrypt must have exactly one <time>")
    stamp_text = times[0].get("stamp", "")
    try:
        stamp = datetime.fromisoformat(stamp_text)
    except ValueError:
        raise MalformedEnvelope(
            f"the signcrypt <time stamp> is not a date: {stamp_text!r}"
        ) from None
    if stamp.tzinfo is None:
        raise MalformedEnvelope("the signcrypt <time stamp> has no time zone")
    payloads = root.findall(_PAYLOAD)
    if len(payloads) != 1:
        raise MalformedEnvelope("the signcrypt must have exactly one <payload>")
    found = payloads[0].findall(_SECRET)
    if len(found) != 1:
        raise MalformedEnvelope(
            f"the signcrypt payload must hold one <jet-secret xmlns='{PAYLOAD_NS}'>"
        )
    el = found[0]
    cipher = el.get("cipher", "")
    if not cipher:
        raise MalformedEnvelope("<jet-secret> has no cipher attribute")
    text = "".join((el.text or "").split())
    if not text or len(text) > _MAX_SECRET_CHARS:
        raise MalformedEnvelope("<jet-secret> is empty or oversized")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEnvelope("<jet-secret> is not valid base64") from None
    return SignCrypt(tuple(to), stamp, cipher, raw)


def check_signcrypt(
    sc: SignCrypt,
    account: JID,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    cipher: Cipher | None = None,
) -> None:
    """The receiver's checks (XEP-0373 section 3.2 and this project's replay window).

    ``account`` must be among the ``<to>`` recipients (:class:`WrongRecipient`); the ``<time>``
    must be within ``max_skew`` of ``now`` (:class:`StaleEnvelope`); if ``cipher`` is given, the
    cipher the secret was bound to must be it (:class:`MalformedEnvelope`).
    """
    if account.bare not in {t.bare for t in sc.to}:
        listed = ", ".join(str(t) for t in sc.to)
        raise WrongRecipient(
            f"the OpenPGP envelope is addressed to {listed}, not to {account.bare}: "
            "a forwarded envelope, refused"
        )
    skew = sc.stamp - now
    if abs(skew) > max_skew:
        direction = "old" if skew < timedelta(0) else "in the future"
        raise StaleEnvelope(
            f"the OpenPGP envelope was made at {format_stamp(sc.stamp)}, "
            f"{abs(skew).total_seconds():.0f} s {direction} (accepted: ±"
            f"{max_skew.total_seconds():.0f} s): possible replay, refused"
        )
    if cipher is not None and sc.cipher not in cipher.names:
        raise MalformedEnvelope(
            f"the OpenPGP envelope binds the secret to cipher {sc.cipher!r}, but the transfer "
            f"announces {cipher.urn!r}: refused"
        )


class ReplayCache:
    """Digests of accepted ``<signcrypt>`` elements, kept while their time stamp is acceptable."""

    def __init__(self, max_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW, max_entries: int = 100_000):
        self.max_skew = max_skew
        self.max_entries = max_entries
        self._seen: dict[bytes, datetime] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, signcrypt: bytes, stamp: datetime, now: datetime) -> None:
        """Record ``signcrypt``; raises :class:`ReplayedEnvelope` if it was recorded before."""
        for digest, expiry in list(self._seen.items()):
            if expiry < now:
                del self._seen[digest]
        digest = hashlib.sha256(signcrypt).digest()
        if digest in self._seen:
            raise ReplayedEnvelope(
                "this OpenPGP envelope was already used for another transfer: a replay, refused"
            )
        if len(self._seen) >= self.max_entries:
            # Oldest first: dicts keep insertion order.
            del self._seen[next(iter(self._seen))]
        self._seen[digest] = stamp + self.max_skew


# -- the <openpgp> element and the OpenPGP layer ---------------------------------------------


def build_openpgp(message: bytes) -> etree._Element:
    """``<openpgp xmlns='urn:xmpp:openpgp:0'>`` holding a binary OpenPGP message in base64."""
    el = etree.Element(_OPENPGP, nsmap={None: NS})  # type: ignore[dict-item]
    el.text = base64.b64encode(message).decode("ascii")
    return el


def parse_openpgp(element: etree._Element) -> bytes:
    """The binary OpenPGP message of an ``<openpgp>`` element."""
    if element.tag != _OPENPGP:
        raise MalformedEnvelope(f"expected <openpgp xmlns='{NS}'>, got {element.tag!r}")
    text = "".join((element.text or "").split())
    if not text:
        raise MalformedEnvelope("the <openpgp> element is empty")
    if len(text) > MAX_OPENPGP_CHARS:
        raise MalformedEnvelope(f"the <openpgp> element is too large ({len(text)} characters)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEnvelope("the <openpgp> element is not valid base64") from None


def _first_line(exc: BaseException) -> str:
    # pysequoia raises RuntimeError whose text may carry a Rust backtrace after the first line.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def seal_message(
    plaintext: bytes, recipients: Sequence[pysequoia.Cert], signer: pysequoia.Tsk
) -> bytes:
    """Sign with ``signer`` and encrypt to every certificate of ``recipients`` (binary output)."""
    return pysequoia.encrypt(plaintext, list(recipients), signer=signer.signer(), armor=False)


def open_message(
    message: bytes, own: pysequoia.Tsk, signers: Sequence[pysequoia.Cert], sender: JID
) -> tuple[bytes, str]:
    """Decrypt with ``own`` and verify against ``signers`` (the sender's published certificates).

    Returns the plaintext and the fingerprint (upper-case hex) of the certificate that signed.
    Raises :class:`UndecryptableEnvelope` (not for us, altered, garbage) or :class:`WrongSigner`
    (decrypted, but not signed by any of ``signers``).
    """
    by_fpr = {c.fingerprint.upper(): c for c in signers}

    def store(_key_ids: list[str]) -> list[pysequoia.Cert]:
        return list(by_fpr.values())

    try:
        decrypted = pysequoia.decrypt(message, decryptor=own.decryptor(), store=store)
    except RuntimeError as exc:
        reason = _first_line(exc)
        if "signature" in reason.lower():
            raise WrongSigner(
                f"the OpenPGP envelope is not signed by any key {sender.bare} published "
                f"({', '.join(by_fpr) or 'none'}): refused ({reason})"
            ) from None
        raise UndecryptableEnvelope(
            f"the OpenPGP envelope from {sender.bare} cannot be decrypted with our key "
            f"(not encrypted to it, or altered in transit): {reason}"
        ) from None
    plaintext = decrypted.bytes
    signed_by = [str(s.certificate).upper() for s in decrypted.valid_sigs]
    signed_by = [f for f in signed_by if f in by_fpr]
    if plaintext is None or not signed_by:
        raise WrongSigner(
            f"the OpenPGP envelope is not signed by any key {sender.bare} published: refused"
        )
    return plaintext, signed_by[0]
