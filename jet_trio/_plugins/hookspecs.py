"""The hook specifications of jet-trio plugins (pluggy project name ``jet_trio``).

Every hook is synchronous and returns objects; asynchronous work lives on the returned objects'
methods (e.g. :meth:`EnvelopeMethod.encrypt`). None uses ``firstresult``. Call with keywords.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from .._jet.cipher import Cipher
from .._jet.envelope import EnvelopeInfo, EnvelopeMethod, EnvelopeSession, KeyNotice
from .._xmpp.client import Client
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
    ``envelopes``, when not ``None``, lists the only envelope methods wanted, by namespace or
    short name (a command that already knows which method it uses): the plugin manager drops the
    other methods, and a plugin may return nothing for them without preparing anything (ask
    :meth:`wants`). ``notify``, when set, shows a :class:`~jet_trio.plugin.KeyNotice` to the user
    (a new key trusted on first use, a device left out of a transfer); plugins call it instead
    of logging what the user must act on.
    """

    allow_stub_envelope: bool = False
    """Whether the insecure stub envelope may be offered (tests and demos only)."""
    account: JID | None = None
    """Our own JID."""
    data_dir: Path | None = None
    """A directory the plugin may keep state in, under a subdirectory named after itself."""
    client: Client | None = None
    """The logged-in XMPP client (for PEP access); ``None`` in sans-IO use."""
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per-plugin settings, keyed by the plugin's entry-point name."""
    envelopes: frozenset[str] | None = None
    """The only envelope methods wanted (namespaces or short names); ``None``: any."""
    notify: Callable[[KeyNotice], None] | None = None
    """Shows a :class:`~jet_trio.plugin.KeyNotice` to the user, when set."""

    def wants(self, namespace: str, short_name: str | None = None) -> bool:
        """Whether the envelope method ``namespace`` (short name ``short_name``) is wanted."""
        if self.envelopes is None:
            return True
        return namespace in self.envelopes or (
            short_name is not None and short_name in self.envelopes
        )

    def tell(self, notice: KeyNotice) -> None:
        """Pass ``notice`` to :attr:`notify`, if set."""
        if self.notify is not None:
            self.notify(notice)


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

    @hookspec
    def jet_envelope_sessions(self, config: PluginConfig) -> list[EnvelopeSession]:  # type: ignore[empty-body]
        """Return the :class:`~jet_trio._jet.envelope.EnvelopeSession` objects to run around
        the whole connection before the envelope methods are collected (``config.client`` is
        then the logged-in client). Return an empty list when ``config`` has no client, or does
        not want this plugin's methods (:meth:`PluginConfig.wants`). Optional."""

    @hookspec
    def jet_describe_envelopes(self) -> list[EnvelopeInfo]:  # type: ignore[empty-body]
        """Declare the envelope methods this plugin can offer, without making them or importing
        anything heavy (:class:`~jet_trio._jet.envelope.EnvelopeInfo`): their short names,
        install hints, what they need, their options. Optional; used to explain a method that
        is not loaded in this run."""
