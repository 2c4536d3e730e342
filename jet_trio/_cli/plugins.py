"""Envelope methods and ciphers as the command-line tool sees them: names, defaults, listing."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from .._plugins.hookspecs import PluginConfig
from .._plugins.manager import PluginManager
from .._xmpp import ns as _ns
from .._xmpp.jid import JID
from .errors import CLIError, ExitCode

__all__ = [
    "ENVELOPE_NAMES",
    "OMEMO",
    "OPENPGP",
    "check_cipher",
    "default_envelope",
    "describe_plugins",
    "loaded_omemo",
    "make_plugins",
    "may_use_omemo",
    "resolve_envelope",
    "short_envelope_name",
    "wanted_envelopes",
]

OMEMO: Final = "eu.siacs.conversations.axolotl"
"""The (legacy, 0.3) OMEMO namespace, the one deployed clients use for JET."""
OMEMO2: Final = "urn:xmpp:omemo:2"
OPENPGP: Final = "urn:xmpp:openpgp:0"

#: Short names accepted by ``--envelope``, each mapped to the namespaces it stands for, in order
#: of preference (the first loaded one is used).
ENVELOPE_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "omemo": (OMEMO, OMEMO2),
    "openpgp": (OPENPGP,),
    "stub": (_ns.JET_STUB,),
}

_INSTALL_HINT: Final = {
    "omemo": "install the OMEMO plugin (pip install plugins/jet-trio-omemo)",
    "openpgp": "install the OpenPGP plugin (pip install plugins/jet-trio-openpgp)",
}


def short_envelope_name(namespace: str) -> str:
    """``omemo``, ``openpgp``, ``stub``, or the namespace itself for anything else."""
    for short, namespaces in ENVELOPE_NAMES.items():
        if namespace in namespaces:
            return short
    return namespace


def make_plugins(
    *,
    account: JID | None,
    client: object | None,
    data_dir: Path | None,
    allow_stub: bool,
    envelopes: frozenset[str] | None = None,
) -> PluginManager:
    """The plugin manager for one account (state of plugins under ``data_dir``); only the
    envelope methods ``envelopes`` when given (see :func:`wanted_envelopes`)."""
    from .config import plugin_options

    config = PluginConfig(
        allow_stub_envelope=allow_stub,
        account=account,
        data_dir=data_dir,
        client=client,
        options=plugin_options(),  # the configuration file and --plugin-option
        envelopes=envelopes,
    )
    return PluginManager(config)


def wanted_envelopes(name: str | None) -> frozenset[str] | None:
    """The namespaces ``--envelope name`` can resolve to (``None``: any, as for the default);
    the other methods need not be loaded or started (no key loaded or published for them)."""
    if name is None:
        return None
    key = name.strip()
    if key.lower() == "none":
        return frozenset()
    return frozenset(ENVELOPE_NAMES.get(key.lower(), (key,)))


def may_use_omemo(name: str | None) -> bool:
    """Whether ``--envelope name`` can end up with OMEMO (the default can): the OMEMO session is
    started only then."""
    wanted = wanted_envelopes(name)
    return wanted is None or not wanted.isdisjoint(ENVELOPE_NAMES["omemo"])


def wants_stub(name: str | None) -> bool:
    """Whether ``--envelope name`` asks for the stub envelope (which must then be enabled)."""
    return name is not None and name.strip().lower() in ("stub", _ns.JET_STUB)


def resolve_envelope(name: str, plugins: PluginManager) -> str | None:
    """The envelope namespace for ``--envelope name``; ``None`` for ``none`` (unencrypted).

    Raises :class:`CLIError` (exit code 8) when no loaded plugin provides it.
    """
    key = name.strip()
    if key.lower() == "none":
        return None
    loaded = {env.namespace for env in plugins.envelopes}
    candidates = ENVELOPE_NAMES.get(key.lower(), (key,))
    for namespace in candidates:
        if namespace in loaded:
            return namespace
    available = ", ".join(sorted(short_envelope_name(ns) for ns in loaded)) or "none"
    hint = _INSTALL_HINT.get(key.lower(), "see `jet-trio plugins` for what is installed")
    raise CLIError(
        ExitCode.ENCRYPTION,
        "encryption",
        f"the envelope method {key!r} is not available (loaded: {available})",
        f"{hint[0].upper()}{hint[1:]}, or choose another with --envelope.",
    )


def loaded_omemo(plugins: PluginManager) -> str | None:
    """The namespace of the loaded OMEMO envelope method, if any."""
    loaded = {env.namespace for env in plugins.envelopes}
    return next((ns for ns in ENVELOPE_NAMES["omemo"] if ns in loaded), None)


def default_envelope(plugins: PluginManager) -> str | None:
    """The envelope used without ``--envelope``: OMEMO when loaded, else another real method.

    ``None`` when only the stub (or nothing) is loaded.
    """
    loaded = [env.namespace for env in plugins.envelopes if env.namespace != _ns.JET_STUB]
    return loaded_omemo(plugins) or (loaded[0] if loaded else None)


def describe_plugins(plugins: PluginManager) -> dict[str, object]:
    """What ``jet-trio plugins`` reports (its ``--json`` object, ``status`` aside)."""
    return {
        "envelopes": [
            {
                "name": short_envelope_name(env.namespace),
                "namespace": env.namespace,
                "features": list(env.features),
                # __class__: the plugin's class also behind the manager's guard.
                "provider": f"{env.__class__.__module__}.{env.__class__.__qualname__}",
                "testing_only": env.namespace == _ns.JET_STUB,
            }
            for env in plugins.envelopes
        ],
        "ciphers": [
            {
                "urn": c.urn,
                "aliases": list(c.aliases),
                "key_size": c.key_size,
                "iv_size": c.iv_size,
                "tag_size": c.tag_size,
                "provider": f"{c.__class__.__module__}.{c.__class__.__qualname__}",
            }
            for c in plugins.ciphers
        ],
        "disco_features": plugins.disco_features(),
        "plugins": plugins.plugin_names,
        "load_errors": [
            {"plugin": e.name, "distribution": e.distribution, "reason": e.reason}
            for e in plugins.load_errors
        ],
    }


def check_cipher(urn: str | None) -> None:
    """Refuse an unknown ``--cipher`` before connecting: a usage error (exit code 2)."""
    if urn is None:
        return
    from .._jet.cipher import UnknownCipher

    manager = make_plugins(
        account=None, client=None, data_dir=None, allow_stub=False, envelopes=frozenset()
    )
    try:
        manager.cipher(urn)
    except UnknownCipher as exc:
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"--cipher: {exc}",
            "See `jet-trio plugins` for the installed ciphers.",
        ) from None
