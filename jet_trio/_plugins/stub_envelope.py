"""The XEP-0391 stub envelope: the transport secret in clear text. Testing and demos only.

The envelope is ``<encrypted xmlns='urn:xmpp:encryption:stub:0'><payload>base64(key ‖ IV)
</payload></encrypted>``. It gives **no confidentiality** (anyone who sees the stanza, the servers
included, can decrypt the file) and its "authentication" is only the iq's ``from``, which the
servers vouch for. It is therefore only offered when :class:`PluginConfig` has
``allow_stub_envelope=True``, and every use logs a WARNING on the ``jet_trio.stub_envelope`` logger
(logging rather than :mod:`warnings`, so that it is loud in applications without turning into an
error under ``-W error``).
"""

from __future__ import annotations

import base64
import binascii
import logging

from lxml import etree

from .._jet.cipher import Cipher, TransportSecret
from .._jet.envelope import DecryptedEnvelope, EnvelopeError, EnvelopeInfo, EnvelopeMethod, Trust
from .._xmpp import ns as _ns
from .._xmpp.jid import JID
from .hookspecs import PluginConfig, hookimpl

__all__ = ["StubEnvelope", "jet_describe_envelopes", "jet_register_envelopes"]

logger = logging.getLogger("jet_trio.stub_envelope")

_ENCRYPTED = f"{{{_ns.JET_STUB}}}encrypted"
_PAYLOAD = f"{{{_ns.JET_STUB}}}payload"
_MAX_PAYLOAD = 1024


class StubEnvelope(EnvelopeMethod):
    """Key material in clear text, "authenticated" only by the stanza's ``from``: testing only."""

    namespace = _ns.JET_STUB
    features = (_ns.JET_STUB_FEATURE,)
    short_name = "stub"
    testing_only = True

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        """Put ``secret`` in clear text into a stub envelope for ``peer``."""
        logger.warning(
            "INSECURE: sending the JET transport secret to %s in clear text (stub envelope); "
            "anyone who sees the stanza can decrypt the file",
            peer,
        )
        encrypted = etree.Element(_ENCRYPTED, nsmap={None: _ns.JET_STUB})  # type: ignore[dict-item]
        payload = etree.SubElement(encrypted, _PAYLOAD)
        payload.text = base64.b64encode(secret.to_bytes()).decode("ascii")
        return encrypted

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        """Read the secret; the identity reported is the bare ``sender`` (no crypto at all)."""
        logger.warning(
            "INSECURE: the JET transport secret from %s came in clear text (stub envelope); "
            "the transfer has no end-to-end confidentiality",
            sender,
        )
        if element.tag != _ENCRYPTED:
            raise EnvelopeError(f"stub envelope: expected <encrypted>, got {element.tag!r}")
        payload = element.find(_PAYLOAD)
        if payload is None or not payload.text:
            raise EnvelopeError("stub envelope: no <payload>")
        text = "".join(payload.text.split())
        if len(text) > _MAX_PAYLOAD:
            raise EnvelopeError("stub envelope: oversized <payload>")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise EnvelopeError("stub envelope: <payload> is not valid base64") from None
        secret = TransportSecret.from_bytes(raw, cipher)
        return DecryptedEnvelope(
            secret=secret,
            sender_identity=sender.bare,
            trust=Trust.NONE,
            detail="stub envelope: not encrypted, not authenticated (testing only)",
        )


@hookimpl
def jet_register_envelopes(config: PluginConfig) -> list[EnvelopeMethod]:
    if not config.allow_stub_envelope:
        return []
    logger.warning("INSECURE: the JET stub envelope is enabled (testing and demos only)")
    return [StubEnvelope()]


@hookimpl
def jet_describe_envelopes() -> list[EnvelopeInfo]:
    return [
        EnvelopeInfo(
            _ns.JET_STUB,
            "stub",
            requires="to be enabled (allow_stub_envelope; --envelope stub, --accept-stub)",
            testing_only=True,
        )
    ]
