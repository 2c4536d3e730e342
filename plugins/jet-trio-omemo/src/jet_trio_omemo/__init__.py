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

from jet_trio.plugin import EnvelopeMethod, PluginConfig, hookimpl

from ._backends import OLDMEMO, TWOMEMO
from ._envelope import JET_OMEMO_FEATURE, NoKeyForDevice, OmemoEnvelope
from ._manager import TrustPolicy, UndecidedDevices, fingerprint_of
from ._session import (
    DeviceFingerprint,
    OmemoError,
    OmemoSession,
    attached_session,
    open_omemo,
)
from ._storage import SQLiteStorage

__all__ = [
    "JET_OMEMO_FEATURE",
    "OLDMEMO",
    "TWOMEMO",
    "DeviceFingerprint",
    "NoKeyForDevice",
    "OmemoEnvelope",
    "OmemoError",
    "OmemoSession",
    "SQLiteStorage",
    "TrustPolicy",
    "UndecidedDevices",
    "fingerprint_of",
    "jet_register_envelopes",
    "open_omemo",
]


@hookimpl
def jet_register_envelopes(config: PluginConfig) -> list[EnvelopeMethod]:
    """The envelope methods of the OMEMO session running on ``config.client``, if any."""
    session = attached_session(config.client)
    return [] if session is None else list(session.envelopes)
