"""The hook specifications of jet-trio plugins (pluggy project name ``jet_trio``).

Every hook is synchronous and returns objects; asynchronous work lives on the returned objects'
methods (e.g. :meth:`EnvelopeMethod.encrypt`). None uses ``firstresult``. Call with keywords.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from .._jet.cipher import Cipher
from .._jet.envelope import EnvelopeMethod
from .._xmpp.jid import JID

__all__ = ["PROJECT", "PluginConfig", "hookimpl", "hookspec"]

PROJECT = "jet_trio"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class PluginConfig:
    """What plugins are told when they make their objects.

    ``allow_stub_envelope`` enables the insecure stub envelope (tests and demos only).
    ``account`` is our own JID, ``data_dir`` a directory a plugin may keep state in (under a
    subdirectory named after itself), ``client`` the XMPP client (for PEP access; ``None`` in
    sans-IO use), ``options`` free per-plugin settings keyed by plugin name.
    ``envelopes``, when not ``None``, lists the only envelope namespaces wanted (a command that
    already knows which method it uses): the plugin manager drops the other methods, and a
    plugin may return nothing for them without preparing anything.
    """

    allow_stub_envelope: bool = False
    account: JID | None = None
    data_dir: Path | None = None
    client: object | None = None
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    envelopes: frozenset[str] | None = None


class JetHookSpecs:
    """Hook specifications; see each method."""

    @hookspec
    def jet_register_ciphers(self) -> list[Cipher]:  # type: ignore[empty-body]
        """Return the :class:`~jet_trio._jet.cipher.Cipher` objects this plugin provides."""

    @hookspec
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:  # type: ignore[empty-body]
        """Return the :class:`~jet_trio._jet.envelope.EnvelopeMethod` objects this plugin provides.

        Return an empty list for a method that ``config`` does not allow.
        """
