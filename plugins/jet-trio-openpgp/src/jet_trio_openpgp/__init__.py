"""OpenPGP envelope method for jet-trio: JET transport secrets in XEP-0373 ``<signcrypt>``.

No deployed client or XEP defines JET with OpenPGP; this is jet-trio's own extension (see the
protocol note ``docs/openpgp.rst``), used only with peers advertising :data:`FEATURE`.

::

    async with open_client(jid, password) as client, \\
            open_openpgp(client, data_dir) as pgp, \\
            open_file_transfer(client, extra_plugins=[pgp]) as ft:
        await ft.send_file(path, peer, encrypt="urn:xmpp:openpgp:0")
"""

from typing import TYPE_CHECKING

# The names are imported on first use (PEP 562): the plugin manager imports this package for
# the entry point (``_hooks``) in every process, also when OpenPGP is not used, and pysequoia
# with the rest would cost start-up time and memory. Type checkers see the imports below.
if TYPE_CHECKING:
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
    from ._prepared import PreparedOpenPGPEnvelope
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
    "PreparedOpenPGPEnvelope",
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

_LAZY: dict[str, str] = {
    "KeyStoreError": "_errors",
    "MalformedEnvelope": "_errors",
    "NoPublicKey": "_errors",
    "OpenPGPError": "_errors",
    "PeerNotSupported": "_errors",
    "ReplayedEnvelope": "_errors",
    "StaleEnvelope": "_errors",
    "UndecryptableEnvelope": "_errors",
    "UntrustedKey": "_errors",
    "WrongRecipient": "_errors",
    "WrongSigner": "_errors",
    "KeyState": "_keys",
    "OwnKey": "_keys",
    "KeyInfo": "_openpgp",
    "OpenPGP": "_openpgp",
    "OpenPGPEnvelope": "_openpgp",
    "TrustPolicy": "_openpgp",
    "format_fingerprint": "_openpgp",
    "open_openpgp": "_openpgp",
    "PUBLIC_KEYS_NODE": "_pep",
    "key_node": "_pep",
    "PreparedOpenPGPEnvelope": "_prepared",
    "DEFAULT_MAX_CLOCK_SKEW": "_signcrypt",
    "FEATURE": "_signcrypt",
    "NS": "_signcrypt",
    "PAYLOAD_NS": "_signcrypt",
}

# Hidden from type checkers: for them the names are the imports above.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
