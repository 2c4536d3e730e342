"""The JET-OMEMO envelope methods (XEP-0396).

Legacy OMEMO (``eu.siacs.conversations.axolotl``), as Dino and Conversations send it::

    <encrypted xmlns='eu.siacs.conversations.axolotl'>
      <header sid='SENDER DEVICE'>
        <key rid='RECIPIENT DEVICE' [prekey='true']>OMEMO-encrypted 16-byte AES key</key>
        <iv>12-byte IV</iv>
      </header>
    </encrypted>

a key transport message: no ``<payload>``; the per-device key material is the transport key
alone, the IV travels in the header; the cipher is AES-128-GCM. On receive the Smack/aTalk form
is accepted too: a full OMEMO message whose ``<payload>`` decrypts to the text base64(key ‖ IV).

OMEMO 2 (``urn:xmpp:omemo:2``, this project's design, no deployed client uses it for JET yet): the
same idea, an OMEMO 2 message without ``<payload>`` whose per-device key material is the whole
transport secret, key ‖ IV (OMEMO 2 headers have no IV). The default cipher (AES-256-GCM) is used.
On receive a ``<payload>`` decrypting to base64(key ‖ IV) is accepted as for legacy OMEMO.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import oldmemo.oldmemo
import omemo
import twomemo.twomemo
from jet_trio import JID
from jet_trio._xmpp.ns import CIPHER_AES128_GCM
from jet_trio.plugin import (
    Cipher,
    CipherError,
    DecryptedEnvelope,
    EnvelopeError,
    EnvelopeMethod,
    KeyEvent,
    KeyRecord,
    KeyTrust,
    TransportSecret,
    Trust,
    TrustDecisionNeeded,
    UntrustedEnvelope,
)
from lxml import etree

from . import _codecs
from ._backends import OLDMEMO, KeyTransport
from ._manager import JetTrust, TrustLevelName, UndecidedDevices, fingerprint_of

if TYPE_CHECKING:
    from ._session import DeviceFingerprint, OmemoSession

__all__ = [
    "JET_OMEMO_FEATURE",
    "KeyElement",
    "NoKeyForDevice",
    "OldmemoEnvelopeHeader",
    "OmemoEnvelope",
    "parse_oldmemo_header",
]

log = logging.getLogger("jet_trio_omemo")

JET_OMEMO_FEATURE: Final = "urn:xmpp:jingle:jet-omemo:0"
_MAX_PAYLOAD_TEXT: Final = 4096
_DIGITS: Final = re.compile(r"[0-9]{1,10}")


class NoKeyForDevice(EnvelopeError):
    """The OMEMO envelope carries no key for this device."""


@dataclass(frozen=True, slots=True)
class KeyElement:
    """One ``<key>`` of a legacy OMEMO header."""

    rid: int
    prekey: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class OldmemoEnvelopeHeader:
    """What a legacy OMEMO ``<encrypted>`` element says before any decryption (sans-IO)."""

    sid: int
    keys: tuple[KeyElement, ...]
    iv: bytes
    has_payload: bool


def parse_oldmemo_header(element: etree._Element) -> OldmemoEnvelopeHeader:
    """Read the header of a legacy OMEMO ``<encrypted>``; raises :class:`EnvelopeError`."""
    ns = OLDMEMO
    if element.tag != f"{{{ns}}}encrypted":
        raise EnvelopeError(f"OMEMO envelope: expected <encrypted xmlns='{ns}'>")
    header = element.find(f"{{{ns}}}header")
    if header is None:
        raise EnvelopeError("OMEMO envelope: no <header>")
    sid = _device_id(header.get("sid"), "sid")
    keys = []
    for key in header.iterfind(f"{{{ns}}}key"):
        prekey = key.get("prekey", "false")
        if prekey not in ("true", "1", "false", "0"):
            raise EnvelopeError(f"OMEMO envelope: bad prekey attribute {prekey!r}")
        keys.append(
            KeyElement(
                _device_id(key.get("rid"), "rid"),
                prekey in ("true", "1"),
                _b64(key.text, "key"),
            )
        )
    iv = _b64(header.findtext(f"{{{ns}}}iv"), "iv")
    if len(iv) not in (12, 16):
        raise EnvelopeError(f"OMEMO envelope: {len(iv)}-byte <iv>, 12 or 16 expected")
    has_payload = element.find(f"{{{ns}}}payload") is not None
    return OldmemoEnvelopeHeader(sid, tuple(keys), iv, has_payload)


def _device_id(text: str | None, what: str) -> int:
    if text is None or not _DIGITS.fullmatch(text) or not 0 < int(text) < 2**32:
        raise EnvelopeError(f"OMEMO envelope: bad or missing {what} {text!r}")
    return int(text)


def _b64(text: str | None, what: str) -> bytes:
    if not text:
        raise EnvelopeError(f"OMEMO envelope: empty or missing <{what}>")
    compact = "".join(text.split())
    if len(compact) > _MAX_PAYLOAD_TEXT:
        raise EnvelopeError(f"OMEMO envelope: oversized <{what}>")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"OMEMO envelope: <{what}> is not valid base64") from None


class OmemoEnvelope(EnvelopeMethod):
    """One JET-OMEMO envelope method (legacy OMEMO or OMEMO 2) of an :class:`OmemoSession`.

    Sending encrypts to the peer's trusted devices: a device without a decision that the trust
    policy does not allow is left out (and the user told, :attr:`OmemoSession.notify`), as
    Conversations and Dino do; with no trusted device left, :class:`TrustDecisionNeeded` names
    the devices to decide on. A device used by blind trust is announced once (trusted on first
    use).
    """

    short_name = "omemo"
    install_hint = "pip install jet-trio-omemo"

    def __init__(self, session: OmemoSession, namespace: str) -> None:
        self._session = session
        self.key_store = session.key_store
        self.namespace = namespace
        devices_node = (
            f"{OLDMEMO}.devicelist" if namespace == OLDMEMO else "urn:xmpp:omemo:2:devices"
        )
        self.features = (JET_OMEMO_FEATURE, f"{devices_node}+notify")
        if namespace == OLDMEMO:
            # Dino and Conversations accept exactly this cipher with legacy OMEMO.
            self.preferred_cipher = CIPHER_AES128_GCM

    # -- sending -------------------------------------------------------------------------------

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        """Make sure we have sessions with each of ``peer``'s devices (fetching the device list
        and bundles as needed), then encrypt the transport secret to them."""
        async with self._session.manager.lock:
            return await self._encrypt(secret, peer)

    async def _encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        session = self._session
        manager = session.manager
        bare = str(peer.bare)
        if self.namespace == OLDMEMO:
            plaintext = KeyTransport(secret.key, secret.iv)
        else:
            plaintext = KeyTransport(secret.to_bytes(), b"")
        found = JetTrust()
        try:
            await session._refresh_devices(bare, max_age=_max_age())
            token = manager._jet_recipient.set(bare)
            found_token = manager._jet_trust.set(found)
            try:
                messages, errors = await manager.encrypt(
                    frozenset({bare}),
                    {ns: plaintext for ns in session.namespaces},
                    backend_priority_order=[self.namespace],
                )
            finally:
                manager._jet_trust.reset(found_token)
                manager._jet_recipient.reset(token)
        except UndecidedDevices as exc:
            raise UntrustedEnvelope(
                f"cannot send an OMEMO-encrypted transfer to {bare}: {exc}"
            ) from None
        except omemo.NoEligibleDevices:
            if found.left_out:
                undecided = [_key_record(d, KeyTrust.UNDECIDED) for d in found.left_out.values()]
                listed = "; ".join(f"device {k.device_id} {k.fingerprint}" for k in undecided)
                raise TrustDecisionNeeded(
                    f"no trusted OMEMO device of {bare} to encrypt to: a trust decision is "
                    f"needed first about {listed}",
                    "omemo",
                    undecided,
                ) from None
            raise EnvelopeError(
                f"{bare} has no trusted {self.namespace} OMEMO device we could encrypt to "
                "(no published device list or bundles, or all devices distrusted)"
            ) from None
        except omemo.OMEMOException as exc:
            raise EnvelopeError(f"OMEMO encryption to {bare} failed: {exc}") from None
        for error in errors:
            log.warning(
                "OMEMO: device %d of %s left out of the transfer key: %s",
                error.device_id,
                error.bare_jid,
                error.exception,
            )
        message = next((m for m in messages if m.namespace == self.namespace), None)
        if message is None:
            raise EnvelopeError(f"{bare} has no {self.namespace} OMEMO device")
        used = {material.device_id for material, _ in message.keys}
        for device in found.left_out.values():
            session.tell(KeyEvent.LEFT_OUT, _device_fingerprint(device))
        for device in found.blind.values():
            if device.device_id in used:
                await session.announce_first_use(device)
        return _codecs.serialize_message(message)

    # -- receiving -----------------------------------------------------------------------------

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        """Open an envelope from ``sender`` (the iq's ``from``): the key must come from one of
        the devices of ``sender``'s bare JID, trusted under the policy in force."""
        async with self._session.manager.lock:
            return await self._decrypt(element, sender, cipher)

    async def _decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        session = self._session
        manager = session.manager
        ns = self.namespace
        bare = sender.bare
        if element.tag != f"{{{ns}}}encrypted":
            raise EnvelopeError(f"OMEMO envelope: expected <encrypted xmlns='{ns}'>")
        iv: bytes | None = None
        if ns == OLDMEMO:
            parsed = parse_oldmemo_header(element)
            sid, iv = parsed.sid, parsed.iv
        else:
            header = element.find(f"{{{ns}}}header")
            sid = _device_id(header.get("sid") if header is not None else None, "sid")
        own = await session.own_device()
        own_bare = str(session.client.jid.bare)
        if not _has_key_for(element, ns, own.device_id, own_bare):
            raise NoKeyForDevice(
                f"the OMEMO envelope from {sender} carries no key for this device "
                f"(id {own.device_id}): the sender has no OMEMO session with it yet (Dino does "
                'this before any OMEMO message was exchanged: "not encrypted for targeted '
                'device"); exchange an OMEMO message first or make the sender fetch our '
                "device list"
            )
        # Sender binding and trust, before any decryption touches a session or a pre key.
        device = await self._sender_device(bare, sid)
        fingerprint = fingerprint_of(device.identity_key)
        level = await manager._evaluate_custom_trust_level(device)
        if level is omemo.TrustLevel.DISTRUSTED:
            raise TrustDecisionNeeded(
                f"the transfer from {bare} is encrypted by its OMEMO device {sid} with "
                f"fingerprint {fingerprint}, which is marked untrusted: refused",
                "omemo",
                [_key_record(device, KeyTrust.DISTRUSTED)],
            )
        if level is omemo.TrustLevel.UNDECIDED:
            raise TrustDecisionNeeded(
                f"the transfer from {bare} is encrypted by its OMEMO device {sid} with "
                f"fingerprint {fingerprint}, which is not trusted yet "
                f"(trust policy {session.trust_policy.value}): refused",
                "omemo",
                [_key_record(device, KeyTrust.UNDECIDED)],
            )
        try:
            if ns == OLDMEMO:
                message = _codecs.parse_oldmemo_message(
                    element, str(bare), own_bare, device.identity_key
                )
            else:
                message = _codecs.parse_twomemo_message(element, str(bare))
        except _codecs.MalformedOmemoElement as exc:
            raise EnvelopeError(f"malformed OMEMO envelope from {bare}: {exc}") from None
        try:
            plaintext, info, key_material = await manager.decrypt(message)
        except omemo.SenderDistrusted:
            raise UntrustedEnvelope(
                f"OMEMO device {sid} of {bare} (fingerprint {fingerprint}) is distrusted"
            ) from None
        except omemo.MessageNotForUs:
            raise NoKeyForDevice(
                f"the OMEMO envelope from {sender} carries no key for this device"
            ) from None
        except (omemo.OMEMOException, ValueError) as exc:
            raise EnvelopeError(
                f"cannot decrypt the OMEMO envelope from device {sid} of {bare}: "
                f"{type(exc).__name__}: {exc or 'authentication failed'}"
            ) from None
        if info.bare_jid != str(bare) or info.device_id != sid:  # pragma: no cover - defensive
            raise EnvelopeError("OMEMO: the decrypting session is not the sender's device")
        secret = self._secret(plaintext, key_material, cipher, iv)
        if info.trust_level_name != TrustLevelName.VERIFIED:
            await session.announce_first_use(device)  # blind trust: said once per key
        trust = (
            Trust.VERIFIED
            if info.trust_level_name == TrustLevelName.VERIFIED
            else (Trust.UNDECIDED)
        )
        return DecryptedEnvelope(
            secret=secret,
            sender_identity=bare,
            trust=trust,
            detail=f"OMEMO device {sid} of {bare}, fingerprint {fingerprint} "
            f"({info.trust_level_name})",
        )

    async def _sender_device(self, bare: JID, sid: int) -> omemo.DeviceInformation:
        manager = self._session.manager
        for attempt in range(2):
            for device in await manager.get_device_information(str(bare)):
                if device.device_id == sid:
                    return device
            if attempt == 0:
                try:
                    await self._session._refresh_devices(bare)
                except omemo.OMEMOException as exc:
                    raise EnvelopeError(
                        f"cannot fetch the OMEMO device list of {bare}: {exc}"
                    ) from None
        raise EnvelopeError(
            f"the OMEMO envelope names device {sid}, which is not a device of {bare}: "
            "the key does not come from the sender of the transfer; refused"
        )

    def _secret(
        self, plaintext: bytes | None, key_material: object, cipher: Cipher, iv: bytes | None
    ) -> TransportSecret:
        try:
            if plaintext is not None:
                # Smack / aTalk: the payload is the text base64(key ‖ IV).
                text = plaintext.decode("ascii").strip()
                if len(text) > _MAX_PAYLOAD_TEXT:
                    raise EnvelopeError("OMEMO envelope: oversized payload")
                return TransportSecret.from_bytes(base64.b64decode(text, validate=True), cipher)
            if isinstance(key_material, oldmemo.oldmemo.PlainKeyMaterialImpl):
                raw = key_material.key + key_material.auth_tag
                if iv is None:  # pragma: no cover - parse_oldmemo_header requires it
                    raise EnvelopeError("OMEMO envelope: key transport without <iv>")
                return TransportSecret.from_bytes(raw, cipher, iv=iv)
            if isinstance(key_material, twomemo.twomemo.PlainKeyMaterialImpl):
                raw = key_material.key + key_material.auth_tag
                return TransportSecret.from_bytes(raw, cipher)
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"OMEMO envelope: malformed key material ({exc})") from None
        except CipherError as exc:
            raise EnvelopeError(f"OMEMO envelope: {exc}") from None
        raise EnvelopeError("OMEMO envelope: unexpected key material")  # pragma: no cover


def _device_fingerprint(device: omemo.DeviceInformation) -> DeviceFingerprint:
    from ._session import _fingerprint

    return _fingerprint(device)


def _key_record(device: omemo.DeviceInformation, trust: KeyTrust) -> KeyRecord:
    return KeyRecord(
        JID(device.bare_jid), fingerprint_of(device.identity_key), trust, device.device_id
    )


def _has_key_for(element: etree._Element, ns: str, device_id: int, own_bare: str) -> bool:
    if ns == OLDMEMO:
        keys = element.iterfind(f"{{{ns}}}header/{{{ns}}}key")
    else:
        keys = (
            key
            for group in element.iterfind(f"{{{ns}}}header/{{{ns}}}keys")
            if group.get("jid") == own_bare
            for key in group.iterfind(f"{{{ns}}}key")
        )
    return any(key.get("rid") == str(device_id) for key in keys)


def _max_age() -> float:
    from ._session import DEVICE_LIST_MAX_AGE

    return DEVICE_LIST_MAX_AGE
