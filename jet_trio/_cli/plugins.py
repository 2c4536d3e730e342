"""Envelope methods and ciphers as the command-line tool sees them: names, defaults, listing."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .._jet.envelope import EnvelopeInfo, EnvelopeMethod, KeyNotice
from .._plugins.hookspecs import PluginConfig
from .._plugins.manager import PluginManager
from .._xmpp import ns as _ns
from .._xmpp.jid import JID
from .errors import CLIError, ExitCode

if TYPE_CHECKING:
    from .._xmpp.client import Client
    from .output import Output

__all__ = [
    "check_cipher",
    "default_envelope",
    "describe_plugins",
    "make_plugins",
    "print_plugins",
    "resolve_envelope",
    "short_envelope_name",
    "wanted_envelopes",
    "wants_stub",
]

#: What to say when no envelope method at all is installed (no plugin can say it for itself).
NO_METHOD_HINT: Final = (
    "install an envelope plugin (jet-trio-omemo for OMEMO, as Dino and Conversations use)"
)


def short_envelope_name(namespace: str, plugins: PluginManager | None = None) -> str:
    """The short name of the loaded envelope method ``namespace`` (or of one a plugin declares)
    in ``plugins`` (default: the plugin managers :func:`make_plugins` made), else the namespace
    itself."""
    for manager in [plugins] if plugins is not None else list(_MADE):
        for env in manager.envelopes:
            if env.namespace == namespace and env.short_name:
                return env.short_name
        for _, info in _declared(manager):
            if info.namespace == namespace and info.short_name:
                return info.short_name
    return "stub" if namespace == _ns.JET_STUB else namespace


def _declared(plugins: PluginManager) -> list[tuple[str, EnvelopeInfo]]:
    """The envelope methods the plugins declare (``jet_describe_envelopes``), computed once."""
    cached = _DECLARED.get(plugins)
    if cached is None:
        cached = _DECLARED[plugins] = plugins.describe_envelopes()
    return cached


_MADE: weakref.WeakSet[PluginManager] = weakref.WeakSet()
_DECLARED: weakref.WeakKeyDictionary[PluginManager, list[tuple[str, EnvelopeInfo]]] = (
    weakref.WeakKeyDictionary()
)


def make_plugins(
    *,
    account: JID | None,
    client: Client | None,
    data_dir: Path | None,
    allow_stub: bool,
    envelopes: frozenset[str] | None = None,
    notify: Callable[[KeyNotice], None] | None = None,
) -> PluginManager:
    """The plugin manager for one account (state of plugins under ``data_dir``); only the
    envelope methods ``envelopes`` when given (see :func:`wanted_envelopes`)."""
    manager = PluginManager(
        plugin_config(
            account=account,
            client=client,
            data_dir=data_dir,
            allow_stub=allow_stub,
            envelopes=envelopes,
            notify=notify,
        )
    )
    _MADE.add(manager)
    return manager


def plugin_config(
    *,
    account: JID | None,
    client: Client | None,
    data_dir: Path | None,
    allow_stub: bool,
    envelopes: frozenset[str] | None = None,
    notify: Callable[[KeyNotice], None] | None = None,
) -> PluginConfig:
    """What the plugins of one account are told (see :func:`make_plugins`)."""
    from .config import plugin_options

    return PluginConfig(
        allow_stub_envelope=allow_stub,
        account=account,
        data_dir=data_dir,
        client=client,
        options=plugin_options(),  # the configuration file and --plugin-option
        envelopes=envelopes,
        notify=notify,
    )


def wanted_envelopes(name: str | None) -> frozenset[str] | None:
    """The envelope methods ``--envelope name`` can resolve to, as :attr:`PluginConfig.envelopes`
    takes them (a namespace or a short name; ``None``: any, as for the default); the other
    methods need not be loaded or started (no key loaded or published for them)."""
    if name is None:
        return None
    key = name.strip()
    if key.lower() == "none":
        return frozenset()
    if ":" in key:
        return frozenset({key})  # a namespace: case matters
    return frozenset({key.lower()})


def wants_stub(name: str | None) -> bool:
    """Whether ``--envelope name`` asks for the stub envelope (which must then be enabled)."""
    return name is not None and name.strip().lower() in ("stub", _ns.JET_STUB)


def _matches(env: EnvelopeMethod | EnvelopeInfo, key: str) -> bool:
    return env.namespace == key or (
        env.short_name is not None and env.short_name.lower() == key.lower()
    )


def resolve_envelope(name: str, plugins: PluginManager) -> str | None:
    """The envelope namespace for ``--envelope name`` (a short name or a namespace; of several
    loaded methods with that short name, the first loaded); ``None`` for ``none``.

    Raises :class:`CLIError` (exit code 8) when no loaded plugin provides it, saying which
    installed plugin would, and what it needs, or how to get one.
    """
    key = name.strip()
    if key.lower() == "none":
        return None
    for env in plugins.envelopes:
        if _matches(env, key):
            return env.namespace
    available = ", ".join(sorted({env.short_name or env.namespace for env in plugins.envelopes}))
    hint = "see `jet-trio plugins` for what is installed and why it is not loaded"
    for plugin, info in _declared(plugins):
        if _matches(info, key):
            dist = plugins.distribution(plugin)
            where = f"plugin {plugin!r}" + (f" ({dist})" if dist else "")
            needs = f"; it needs {info.requires}" if info.requires else ""
            hint = f"it is provided by {where} but not loaded in this run{needs}"
            break
    raise CLIError(
        ExitCode.ENCRYPTION,
        "encryption",
        f"the envelope method {key!r} is not available (loaded: {available or 'none'})",
        f"{hint[0].upper()}{hint[1:]}; or choose another with --envelope.",
    )


def default_envelope(plugins: PluginManager) -> str | None:
    """A method the default (``auto``) can use: the first loaded one that is not for testing
    only. ``None`` when there is none."""
    return next((env.namespace for env in plugins.envelopes if not env.testing_only), None)


def _why_not_loaded(plugins: PluginManager, info: EnvelopeInfo) -> str:
    config = plugins.config
    if not config.wants(info.namespace, info.short_name):
        return "not wanted by this command"
    if info.testing_only and not config.allow_stub_envelope:
        return f"needs {info.requires}" if info.requires else "disabled (testing only)"
    if config.client is None:
        return f"needs {info.requires}" if info.requires else "needs a login (pass --account)"
    if info.requires:
        return f"its plugin did not offer it in this run (it needs {info.requires})"
    return "its plugin did not offer it in this run"


def describe_plugins(plugins: PluginManager) -> dict[str, object]:
    """What ``jet-trio plugins`` reports (its ``--json`` object, ``status`` aside)."""
    loaded = {env.namespace for env in plugins.envelopes}
    by_plugin: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        if name not in by_plugin:
            by_plugin[name] = {
                "name": name,
                "distribution": plugins.distribution(name),
                "envelopes": [],
                "ciphers": [],
                "features": [],
                "not_loaded": [],
                "options": {},
            }
        return by_plugin[name]

    for name in plugins.plugin_names:
        entry(name)
    envelopes = []
    for env in plugins.envelopes:
        owner = plugins.owner(env) or "?"
        envelopes.append(
            {
                "name": env.short_name or env.namespace,
                "namespace": env.namespace,
                "features": list(env.features),
                # __class__: the plugin's class also behind the manager's guard.
                "provider": f"{env.__class__.__module__}.{env.__class__.__qualname__}",
                "plugin": owner,
                "testing_only": env.testing_only,
                "install_hint": env.install_hint,
                "key_store": env.key_store is not None,
            }
        )
        item = entry(owner)
        item["envelopes"].append(env.short_name or env.namespace)
        item["features"] += [f for f in env.features if f not in item["features"]]
    ciphers = []
    for c in plugins.ciphers:
        owner = plugins.owner(c) or "?"
        ciphers.append(
            {
                "urn": c.urn,
                "aliases": list(c.aliases),
                "key_size": c.key_size,
                "iv_size": c.iv_size,
                "tag_size": c.tag_size,
                "provider": f"{c.__class__.__module__}.{c.__class__.__qualname__}",
                "plugin": owner,
                "install_hint": c.install_hint,
            }
        )
        entry(owner)["ciphers"].append(c.urn)
    features = plugins.disco_features()
    for name, info in _declared(plugins):
        item = entry(name)
        prefix = name  # the options key of a plugin is its entry-point name
        item["options"].update({f"{prefix}.{k}": v for k, v in info.options.items()})
        if info.namespace not in loaded:
            item["not_loaded"].append(
                {
                    "name": info.short_name or info.namespace,
                    "namespace": info.namespace,
                    "why": _why_not_loaded(plugins, info),
                    "install_hint": info.install_hint,
                }
            )
    for err in plugins.load_errors:
        item = entry(err.name)
        item["not_loaded"].append({"name": err.name, "namespace": None, "why": err.reason})
    if features:  # the ciphers are advertised with JET (by the file transfer service)
        for item in by_plugin.values():
            item["features"] += [u for u in item["ciphers"] if u not in item["features"]]
    return {
        "envelopes": envelopes,
        "ciphers": ciphers,
        "disco_features": features,
        "plugins": plugins.plugin_names,
        "by_plugin": list(by_plugin.values()),
        "load_errors": [
            {"plugin": e.name, "distribution": e.distribution, "reason": e.reason}
            for e in plugins.load_errors
        ],
    }


def print_plugins(out: Output, info: dict[str, Any]) -> None:
    """The human form of ``jet-trio plugins``: one block per plugin (its methods by short name,
    its ciphers, the features it makes us advertise, what is not loaded and why); each
    namespace or URN is printed once."""
    from .output import shown

    out.say("[bold]Plugins[/] (--envelope NAME, --cipher URN)")
    envelopes = {e["name"]: e for e in info["envelopes"]}
    ciphers = {c["urn"]: c for c in info["ciphers"]}
    listed = {f for item in info["by_plugin"] for f in item["features"]}
    for item in info["by_plugin"]:
        missing = [m for m in item["not_loaded"] if m["namespace"]]  # skipped: listed below
        empty = not (item["envelopes"] or item["ciphers"] or missing or item["options"])
        if empty and item["name"] in {e["plugin"] for e in info["load_errors"]}:
            continue
        dist = f" ({item['distribution']})" if item["distribution"] else ""
        out.say(f"  [bold]{shown(item['name'])}[/]{shown(dist)}")
        printed: set[str] = set()
        for name in item["envelopes"]:
            env = envelopes[name]
            note = "  [yellow](INSECURE, testing only)[/]" if env["testing_only"] else ""
            ns = "" if env["namespace"] == name else f" {shown(env['namespace'])}"
            out.say(f"    envelope {shown(name)}{ns}{note}")
            printed.add(env["namespace"])
        for urn in item["ciphers"]:
            c = ciphers[urn]
            aliases = f" (also {', '.join(c['aliases'])})" if c["aliases"] else ""
            advertised = ", advertised" if urn in item["features"] else ""
            out.say(
                f"    cipher   {shown(urn)}{shown(aliases)}: key {c['key_size']} B, "
                f"IV {c['iv_size']} B, tag {c['tag_size']} B{advertised}"
            )
            printed.add(urn)
        features = [f for f in item["features"] if f not in printed]
        if features:
            out.say(f"    advertises {shown(', '.join(features))}")
        for key, what in sorted(item["options"].items()):
            out.say(f"    option   {shown(key)}: {shown(what)}")
        for miss in missing:
            label = f"envelope {miss['name']}"
            if miss["namespace"] != miss["name"]:
                label += f" {miss['namespace']}"
            out.say(f"    [yellow]not loaded[/]: {shown(label)}: {shown(miss['why'])}")
    real = [e for e in info["envelopes"] if not e["testing_only"]]
    if not real:
        if info["logged_in"]:
            out.say(
                f"  [yellow]no real end-to-end encryption method is loaded[/] ({NO_METHOD_HINT})"
            )
        else:
            out.say(
                "  [dim]No real end-to-end encryption method is loaded without a login: methods "
                "that need one are listed as not loaded; pass --account to load them.[/]"
            )
    others = [f for f in info["disco_features"] if f not in listed]
    if info["disco_features"]:
        out.say(
            "[bold]Disco features advertised[/]: "
            + shown(", ".join([*others, "and those listed above"] if listed else others))
        )
    else:
        out.say("[bold]Disco features advertised[/]: none (no envelope method is loaded)")
    if info["load_errors"]:
        out.say("[bold red]Plugins skipped[/]")
        for err in info["load_errors"]:
            dist = f" (from {err['distribution']})" if err["distribution"] else ""
            out.say(f"  {shown(err['plugin'] + dist)}: {shown(err['reason'])}")
    else:
        out.say("[bold]Plugins skipped[/]: none")


def declared_envelopes() -> list[EnvelopeInfo]:
    """The envelope methods the installed plugins declare, without logging in (a plugin
    manager without a client; nothing is made)."""
    manager = make_plugins(
        account=None, client=None, data_dir=None, allow_stub=False, envelopes=frozenset()
    )
    return [info for _, info in _declared(manager)]


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
