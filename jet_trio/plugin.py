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
    EnvelopeMethod,
    EnvelopeSenderMismatch,
    Trust,
    UntrustedEnvelope,
)
from ._plugins.hookspecs import PluginConfig, hookimpl, hookspec
from ._plugins.manager import PluginLoadError, PluginManager, UnknownEnvelope

__all__ = [
    "Cipher",
    "CipherError",
    "DecryptedEnvelope",
    "EnvelopeError",
    "EnvelopeMethod",
    "EnvelopeSenderMismatch",
    "PlaintextLimitExceeded",
    "PluginConfig",
    "PluginLoadError",
    "PluginManager",
    "StreamDecryptor",
    "StreamEncryptor",
    "TagMismatch",
    "TransportSecret",
    "Trust",
    "UnknownCipher",
    "UnknownEnvelope",
    "UntrustedEnvelope",
    "hookimpl",
    "hookspec",
]
