"""OpenPGP envelope method for jet-trio: JET transport secrets in XEP-0373 ``<signcrypt>``.

No deployed client or XEP defines JET with OpenPGP; this is jet-trio's own extension (see the
protocol note ``docs/openpgp.rst``), used only with peers advertising :data:`FEATURE`.

::

    async with open_client(jid, password) as client, \\
            open_openpgp(client, data_dir) as pgp, \\
            open_file_transfer(client, extra_plugins=[pgp]) as ft:
        await ft.send_file(path, peer, encrypt="urn:xmpp:openpgp:0")
"""

from ._errors import (
    KeyStoreError,
    MalformedEnvelope,
    NoPublicKey,
    OpenPGPError,
    PeerNotSupported,
    ReplayedEnvelope,
    StaleEnvelope,
    UndecryptableEnvelope,
    UntrustedKey,
    WrongRecipient,
    WrongSigner,
)
from ._keys import KeyState, OwnKey
from ._openpgp import (
    KeyInfo,
    OpenPGP,
    OpenPGPEnvelope,
    TrustPolicy,
    format_fingerprint,
    open_openpgp,
)
from ._pep import PUBLIC_KEYS_NODE, key_node
from ._signcrypt import DEFAULT_MAX_CLOCK_SKEW, FEATURE, NS, PAYLOAD_NS

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW",
    "FEATURE",
    "NS",
    "PAYLOAD_NS",
    "PUBLIC_KEYS_NODE",
    "KeyInfo",
    "KeyState",
    "KeyStoreError",
    "MalformedEnvelope",
    "NoPublicKey",
    "OpenPGP",
    "OpenPGPEnvelope",
    "OpenPGPError",
    "OwnKey",
    "PeerNotSupported",
    "ReplayedEnvelope",
    "StaleEnvelope",
    "TrustPolicy",
    "UndecryptableEnvelope",
    "UntrustedKey",
    "WrongRecipient",
    "WrongSigner",
    "format_fingerprint",
    "key_node",
    "open_openpgp",
]
