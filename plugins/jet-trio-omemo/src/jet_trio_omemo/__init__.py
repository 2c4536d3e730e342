"""jet-trio-omemo: JET-OMEMO envelopes (XEP-0396) for jet-trio, on python-omemo.

Usage::

    async with open_client(...) as client, open_omemo(client, data_dir) as omemo:
        async with open_file_transfer(client) as ft:
            await ft.send_file(path, peer)          # "auto" picks JET-OMEMO if the peer has it

The installed plugin (entry point ``omemo`` in the ``jet_trio`` group) offers the envelope
methods of the :class:`OmemoSession` running on the client handed to it; with none running it
offers nothing. For explicit registration pass :attr:`OmemoSession.envelopes` through a plugin
object of your own, or use :data:`plugin_for`.
"""

from __future__ import annotations

import sys
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from jet_trio import Client
from jet_trio.plugin import (
    EnvelopeInfo,
    EnvelopeMethod,
    EnvelopeSession,
    PluginConfig,
    hookimpl,
)

# The OMEMO libraries (oldmemo, twomemo, doubleratchet, protobuf...) take a long time to import:
# the plugin manager loads this module in every process, also when OMEMO is not used (stub or
# OpenPGP envelope, no OMEMO session). So the public names are imported on first use (PEP 562);
# the imports below are what type checkers see.
if TYPE_CHECKING:
    from ._backends import OLDMEMO, TWOMEMO
    from ._codecs import MalformedOmemoElement
    from ._envelope import JET_OMEMO_FEATURE, NoKeyForDevice, OmemoEnvelope
    from ._manager import TrustPolicy, UndecidedDevices, fingerprint_of
    from ._prepared import OmemoError, PreparedOmemo, prepare_omemo
    from ._session import (
        DeviceFingerprint,
        OmemoSession,
        open_omemo,
    )
    from ._storage import SQLiteStorage

__all__ = [
    "JET_OMEMO_FEATURE",
    "OLDMEMO",
    "TWOMEMO",
    "DeviceFingerprint",
    "MalformedOmemoElement",
    "NoKeyForDevice",
    "OmemoEnvelope",
    "OmemoError",
    "OmemoSession",
    "PreparedOmemo",
    "SQLiteStorage",
    "TrustPolicy",
    "UndecidedDevices",
    "fingerprint_of",
    "jet_describe_envelopes",
    "jet_envelope_sessions",
    "jet_register_envelopes",
    "open_omemo",
    "prepare_omemo",
]

# The namespaces as in _backends, without importing the OMEMO libraries for a declaration.
_NAMESPACES = ("eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2")
SHORT_NAME = "omemo"
INSTALL_HINT = "pip install jet-trio-omemo"
OPTIONS = {"trust": "btbv (default: blind trust before verification) or manual"}


@hookimpl
def jet_register_envelopes(config: PluginConfig) -> list[EnvelopeMethod]:
    """The envelope methods of the OMEMO session running (or prepared) on ``config.client``."""
    if f"{__name__}._prepared" not in sys.modules:
        return []  # no session can run before its module is imported: nothing to load for
    from ._prepared import attached_prepared

    prepared = attached_prepared(config.client)
    if prepared is not None:
        return list(prepared.envelopes)  # they start the full session when used
    if f"{__name__}._session" not in sys.modules:
        return []
    from ._session import attached_session

    session = attached_session(config.client)
    return [] if session is None else list(session.envelopes)


@hookimpl
def jet_describe_envelopes() -> list[EnvelopeInfo]:
    """Legacy OMEMO and OMEMO 2, both ``--envelope omemo``."""
    return [
        EnvelopeInfo(
            ns,
            SHORT_NAME,
            INSTALL_HINT,
            requires="a login (pass --account): the OMEMO session runs on the connection",
            options=OPTIONS,
        )
        for ns in _NAMESPACES
    ]


class _Session(EnvelopeSession):
    """The OMEMO session of the connection: :func:`open_omemo` on ``config.client``."""

    label = "OMEMO"
    methods = frozenset({SHORT_NAME, *_NAMESPACES})

    def __init__(self, config: PluginConfig) -> None:
        self._config = config

    def open(self) -> AbstractAsyncContextManager[object]:
        # The OMEMO libraries are imported here: a missing or broken one is a failure to open.
        from ._session import open_omemo

        config = self._config
        assert isinstance(config.client, Client) and config.data_dir is not None
        trust = config.options.get(SHORT_NAME, {}).get("trust", "btbv")
        return open_omemo(config.client, config.data_dir, trust=trust, notify=config.notify)

    def prepare(self) -> AbstractAsyncContextManager[object]:
        # Without the OMEMO libraries: they are imported when an envelope is used, or when our
        # published device or bundle must be published again (see _prepared).
        from ._prepared import prepare_omemo

        config = self._config
        assert isinstance(config.client, Client) and config.data_dir is not None
        trust = config.options.get(SHORT_NAME, {}).get("trust", "btbv")
        return prepare_omemo(config.client, config.data_dir, trust=trust, notify=config.notify)


@hookimpl
def jet_envelope_sessions(config: PluginConfig) -> list[EnvelopeSession]:
    """The OMEMO session, when ``config`` has a client and a data directory and wants OMEMO."""
    if not isinstance(config.client, Client) or config.data_dir is None:
        return []
    if not any(config.wants(ns, SHORT_NAME) for ns in _NAMESPACES):
        return []
    return [_Session(config)]


_LAZY: dict[str, str] = {
    "OLDMEMO": "_backends",
    "TWOMEMO": "_backends",
    "MalformedOmemoElement": "_codecs",
    "JET_OMEMO_FEATURE": "_envelope",
    "NoKeyForDevice": "_envelope",
    "OmemoEnvelope": "_envelope",
    "TrustPolicy": "_manager",
    "UndecidedDevices": "_manager",
    "fingerprint_of": "_manager",
    "DeviceFingerprint": "_session",
    "OmemoError": "_prepared",
    "PreparedOmemo": "_prepared",
    "prepare_omemo": "_prepared",
    "OmemoSession": "_session",
    "attached_session": "_session",
    "open_omemo": "_session",
    "SQLiteStorage": "_storage",
}


# Hidden from type checkers: for them the names are the imports above, so a misspelt name is
# still an error.
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
