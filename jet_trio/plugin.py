"""The API for plugin authors: everything needed to write a JET envelope method or a cipher.

A plugin is a module (or any object) with functions marked :data:`hookimpl`, registered under the
``jet_trio`` entry point group. See the plugin author guide in the documentation.
"""

from ._jet.cipher import (
    Cipher,
    CipherError,
    PlaintextLimitExceeded,
    StreamDecryptor,
    StreamEncryptor,
    TagMismatch,
    TransportSecret,
    UnknownCipher,
)
from ._jet.envelope import (
    DecryptedEnvelope,
    EnvelopeError,
    EnvelopeInfo,
    EnvelopeMethod,
    EnvelopeSenderMismatch,
    EnvelopeSession,
    KeyEvent,
    KeyNotice,
    KeyRecord,
    KeyStore,
    KeyTrust,
    Trust,
    TrustDecisionNeeded,
    UntrustedEnvelope,
)
from ._plugins.hookspecs import PluginConfig, hookimpl, hookspec
from ._plugins.manager import PluginLoadError, PluginManager, UnknownEnvelope

__all__ = [
    "Cipher",
    "CipherError",
    "DecryptedEnvelope",
    "EnvelopeError",
    "EnvelopeInfo",
    "EnvelopeMethod",
    "EnvelopeSenderMismatch",
    "EnvelopeSession",
    "KeyEvent",
    "KeyNotice",
    "KeyRecord",
    "KeyStore",
    "KeyTrust",
    "PlaintextLimitExceeded",
    "PluginConfig",
    "PluginLoadError",
    "PluginManager",
    "StreamDecryptor",
    "StreamEncryptor",
    "TagMismatch",
    "TransportSecret",
    "Trust",
    "TrustDecisionNeeded",
    "UnknownCipher",
    "UnknownEnvelope",
    "UntrustedEnvelope",
    "hookimpl",
    "hookspec",
]
