"""Loading plugins (entry point group ``jet_trio`` and objects passed in code) and looking them up.

Each plugin is isolated: one that fails to import, has a misspelt or malformed hook, an async
hook, or returns garbage is skipped and reported in :attr:`PluginManager.load_errors` (and logged
once, on the ``jet_trio.plugins`` logger); the others load. Clashes load none of the contested
names: two distributions registering the same entry-point name, two plugins providing the same
cipher URN or envelope namespace are all refused, each error naming the other parties (a name
the built-ins provide stays theirs). The ciphers and envelope methods of third-party plugins are
handed out as guarded views (:mod:`jet_trio._plugins.guard`): a bug in one of them during a
transfer becomes a :class:`~jet_trio._plugins.guard.PluginError` and refuses that object alone.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from .._errors import JetError
from .._jet.cipher import Cipher, UnknownCipher
from .._jet.envelope import EnvelopeInfo, EnvelopeMethod, EnvelopeSession, KeyStore
from .._xmpp import ns as _ns
from . import builtin_ciphers as _builtin_ciphers
from . import guard as _guard
from . import hookspecs as _hookspecs
from . import stub_envelope as _stub_envelope
from .hookspecs import PluginConfig

__all__ = ["ENTRY_POINT_GROUP", "PluginLoadError", "PluginManager", "UnknownEnvelope"]

logger = logging.getLogger("jet_trio.plugins")
# Load errors are reported by the application from PluginManager.load_errors (the command-line
# tool does); without a logging configuration they must not be printed a second time by
# logging's last-resort handler.
logger.addHandler(logging.NullHandler())

ENTRY_POINT_GROUP = "jet_trio"
_BUILTINS: tuple[tuple[str, ModuleType], ...] = (
    ("builtin-ciphers", _builtin_ciphers),
    ("stub-envelope", _stub_envelope),
)
_BUILTIN_NAMES = frozenset(name for name, _ in _BUILTINS)


class UnknownEnvelope(JetError):
    """No loaded plugin handles this envelope namespace."""

    def __init__(self, namespace: str, known: Sequence[str] = (), hint: str = "") -> None:
        listed = f" (supported: {', '.join(known)})" if known else " (none is loaded)"
        super().__init__(f"unsupported JET envelope method {namespace!r}{listed}{hint}")
        self.namespace = namespace


@dataclass(frozen=True, slots=True)
class PluginLoadError:
    """A plugin that was skipped, and why."""

    name: str
    """The plugin's name (its entry-point name, or the name it was registered under)."""
    distribution: str | None
    """The installed distribution that provides it (``None`` for a plugin passed in code)."""
    reason: str
    """What is wrong, in words meant for the plugin's author."""

    def __str__(self) -> str:
        where = f" (from {self.distribution})" if self.distribution else ""
        return f"plugin {self.name!r}{where} skipped: {self.reason}"


class PluginManager:
    """The loaded JET plugins: ciphers and envelope methods.

    ``plugins`` are plugin objects (modules, instances) registered in code after the built-ins,
    either a mapping from plugin name to object or the objects alone; ``entry_points=False``
    skips the installed plugins (the built-ins are always loaded).

    **The name of a plugin** (its key in ``PluginConfig.options``, the ``NAME`` of
    ``--plugin-option NAME.KEY=VALUE``,
    the name in :attr:`plugin_names` and :attr:`load_errors`) is its entry-point name in the
    ``jet_trio`` group. A plugin passed in code has the name it is given in the mapping; without
    one, the entry-point name its distribution declares for that module (so it is the same in
    code and installed), else its ``__name__``.
    """

    def __init__(
        self,
        config: PluginConfig | None = None,
        *,
        plugins: Iterable[object] | Mapping[str, object] = (),
        entry_points: bool = True,
    ) -> None:
        #: What the plugins are told (:class:`~jet_trio.plugin.PluginConfig`).
        self.config = config if config is not None else PluginConfig()
        #: The plugins, ciphers and envelope methods skipped, and why (each also logged once).
        self.load_errors: list[PluginLoadError] = []
        self._pm = pluggy.PluginManager(_hookspecs.PROJECT)
        self._pm.add_hookspecs(_hookspecs.JetHookSpecs)
        self._dists: dict[str, str | None] = {}
        self._ciphers: dict[str, Cipher] = {}
        self._cipher_list: list[Cipher] = []
        self._envelopes: dict[str, EnvelopeMethod] = {}
        self._envelope_owners: dict[str, str] = {}
        self._cipher_owners: dict[str, str] = {}

        for name, module in _BUILTINS:
            self._register(module, name, None)
        if entry_points:
            self._load_entry_points()
        named: Iterable[tuple[str | None, object]] = (
            plugins.items() if isinstance(plugins, Mapping) else ((None, obj) for obj in plugins)
        )
        declared: dict[str, tuple[str, str | None]] | None = None
        for given, obj in named:
            plugin_name, dist = given, None
            if plugin_name is None:
                if declared is None:
                    declared = _declared_names()
                module_name = getattr(obj, "__name__", None)
                if isinstance(module_name, str) and module_name in declared:
                    plugin_name, dist = declared[module_name]
                elif isinstance(module_name, str):
                    plugin_name = module_name
            self._register(obj, plugin_name, dist)
        self._collect()

    # -- loading ---------------------------------------------------------------------------------

    def _fail(self, name: str, dist: str | None, reason: str) -> None:
        err = PluginLoadError(name, dist, reason)
        self.load_errors.append(err)
        logger.error("%s", err)

    def _load_entry_points(self) -> None:
        by_name: dict[str, list[metadata.EntryPoint]] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            by_name.setdefault(ep.name, []).append(ep)
        for name, eps in by_name.items():
            dists = sorted({_dist_name(ep) or "?" for ep in eps})
            if len(eps) > 1:
                self._fail(
                    name,
                    ", ".join(dists),
                    f"the entry-point name {name!r} is registered by several distributions "
                    f"({', '.join(dists)}); none of them is loaded",
                )
                continue
            (ep,) = eps
            dist = _dist_name(ep)
            try:
                obj = ep.load()
            except Exception as exc:
                self._fail(name, dist, f"import failed: {type(exc).__name__}: {exc}")
                continue
            if self._pm.is_registered(obj):
                continue  # a built-in, already registered from code
            self._register(obj, name, dist)

    def _register(self, obj: object, name: str | None, dist: str | None) -> None:
        label = name or _plugin_label(obj)
        try:
            for hookname in _hook_functions(obj):
                fn = getattr(obj, hookname)
                if not hasattr(fn, _hookspecs.PROJECT + "_impl"):
                    raise TypeError(_unmarked(hookname, fn))
                if inspect.iscoroutinefunction(fn):
                    raise TypeError(f"hook {hookname} is async; jet_trio hooks must be synchronous")
            registered = self._pm.register(obj, name)
            if registered is None:
                raise ValueError("it is blocked")
            try:
                self._pm.check_pending()
            except pluggy.PluginValidationError:
                self._pm.unregister(obj)
                raise
        except Exception as exc:
            self._fail(label, dist, f"{type(exc).__name__}: {exc}")
            return
        self._dists[self._pm.get_name(obj) or label] = dist

    def _call_each(self, hookname: str, kind: type, **kwargs: object) -> list[tuple[str, Any]]:
        """Call one hook plugin by plugin, so that one raising or returning garbage is skipped."""
        out: list[tuple[str, Any]] = []
        caller = getattr(self._pm.hook, hookname)
        # Registration order (get_hookimpls() gives it; pluggy itself calls last-registered first).
        for impl in caller.get_hookimpls():
            name = impl.plugin_name
            try:
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
                if not isinstance(result, list | tuple) or not all(
                    isinstance(item, kind) for item in result
                ):
                    raise TypeError(f"{hookname} must return a list of {kind.__name__}")
            except Exception as exc:
                self._fail(name, self._dists.get(name), f"{type(exc).__name__}: {exc}")
                self._pm.unregister(name=name)
                continue
            out.extend((name, item) for item in result)
        return out

    def _party(self, plugin: str) -> str:
        dist = self._dists.get(plugin)
        return f"plugin {plugin!r}" + (f" (distribution {dist})" if dist else "")

    def _clash(self, plugin: str, what: str, name: str, owners: list[str]) -> str | None:
        """Why ``plugin`` may not have ``name`` that ``owners`` (``plugin`` included) all
        provide, or ``None`` when it keeps it (a built-in keeps its names)."""
        if len(owners) < 2 or plugin in _BUILTIN_NAMES:
            return None
        builtin = next((p for p in owners if p in _BUILTIN_NAMES), None)
        if builtin is not None:
            return (
                f"{what} {name!r} is provided by jet-trio itself ({builtin}); "
                "a plugin cannot replace it"
            )
        others = [self._party(p) for p in dict.fromkeys(owners) if p != plugin]
        if len(others) < len(owners) - 1:
            others.append(f"another {what} of {self._party(plugin)}")
        return (
            f"{what} {name!r} is provided by {self._party(plugin)} and by {', '.join(others)}; "
            "none of them is loaded"
        )

    def _collect(self) -> None:
        offered: dict[str, int] = {}
        kept: dict[str, int] = {}

        ciphers: list[tuple[str, Cipher]] = []
        for plugin, cipher in self._call_each("jet_register_ciphers", Cipher):
            offered[plugin] = offered.get(plugin, 0) + 1
            problem = _problem(_cipher_problem, cipher)
            if problem is not None:
                self._fail(plugin, self._dists.get(plugin), problem)
                continue
            ciphers.append((plugin, cipher))
        claims: dict[str, list[str]] = {}
        for plugin, cipher in ciphers:
            for n in dict.fromkeys(cipher.names):
                claims.setdefault(n, []).append(plugin)
        for plugin, cipher in ciphers:
            clash = next(
                (
                    why
                    for n in cipher.names
                    if (why := self._clash(plugin, "cipher", n, claims[n])) is not None
                ),
                None,
            )
            if clash is not None:
                self._fail(plugin, self._dists.get(plugin), clash)
                continue
            if plugin not in _BUILTIN_NAMES:
                cipher = self._guard_cipher(plugin, cipher)
            for n in cipher.names:
                self._ciphers.setdefault(n, cipher)  # a built-in's own aliases: the first
            self._cipher_list.append(cipher)
            kept[plugin] = kept.get(plugin, 0) + 1
            self._cipher_owners[cipher.urn] = plugin

        wanted = self.config.envelopes
        envelopes: list[tuple[str, EnvelopeMethod]] = []
        for plugin, env in self._call_each(
            "jet_register_envelopes", EnvelopeMethod, config=self.config
        ):
            offered[plugin] = offered.get(plugin, 0) + 1
            problem = _problem(_envelope_problem, env)
            if problem is not None:
                self._fail(plugin, self._dists.get(plugin), problem)
                continue
            envelopes.append((plugin, env))
        owners: dict[str, list[str]] = {}
        for plugin, env in envelopes:
            owners.setdefault(env.namespace, []).append(plugin)
        for plugin, env in envelopes:
            clash = self._clash(plugin, "envelope", env.namespace, owners[env.namespace])
            if clash is not None:
                self._fail(plugin, self._dists.get(plugin), clash)
                continue
            kept[plugin] = kept.get(plugin, 0) + 1
            if wanted is not None and not self.config.wants(env.namespace, env.short_name):
                continue  # not used by this run: never started, not advertised
            if env.namespace in self._envelopes:
                continue  # a built-in returned it twice
            if plugin not in _BUILTIN_NAMES:
                env = self._guard_envelope(plugin, env)
            self._envelopes[env.namespace] = env
            self._envelope_owners[env.namespace] = plugin

        # A plugin all of whose ciphers and envelope methods were refused is not loaded.
        for plugin, count in offered.items():
            if count and not kept.get(plugin) and self._pm.get_plugin(plugin) is not None:
                self._pm.unregister(name=plugin)

    def _guard_cipher(self, plugin: str, cipher: Cipher) -> Cipher:
        def refuse(problem: str) -> None:
            if any(c is view for c in self._cipher_list):
                self._cipher_list.remove(view)
                for n in [n for n, c in self._ciphers.items() if c is view]:
                    del self._ciphers[n]
                self._fail(plugin, self._dists.get(plugin), problem)

        view = _guard.GuardedCipher(cipher, plugin, self._dists.get(plugin), refuse)
        return view

    def _guard_envelope(self, plugin: str, env: EnvelopeMethod) -> EnvelopeMethod:
        def refuse(problem: str) -> None:
            if self._envelopes.get(view.namespace) is view:
                del self._envelopes[view.namespace]
                self._envelope_owners.pop(view.namespace, None)
                self._fail(plugin, self._dists.get(plugin), problem)

        view = _guard.GuardedEnvelope(env, plugin, self._dists.get(plugin), refuse)
        return view

    def _refuse_envelope(self, env: EnvelopeMethod, reason: str) -> None:
        """Unload ``env`` after it failed (e.g. its ``start()`` raised): recorded in
        :attr:`load_errors` under its plugin's name and distribution."""
        if self._envelopes.get(env.namespace) is not env:
            return
        del self._envelopes[env.namespace]
        plugin = self._envelope_owners.pop(env.namespace, _plugin_label(env))
        self._fail(plugin, self._dists.get(plugin), f"envelope {env.namespace!r}: {reason}")

    async def _start_envelopes(self) -> None:
        """Start each envelope method. A :class:`~jet_trio.JetError` (a failure the plugin
        explains, e.g. a wrong passphrase) propagates; any other exception is a bug of the
        plugin: that method alone is unloaded and the error recorded in :attr:`load_errors`."""
        for env in self.envelopes:
            try:
                await env.start()
            except JetError:
                raise
            except Exception as exc:
                self._refuse_envelope(env, f"start() raised {type(exc).__name__}: {exc}")

    # -- optional hooks: sessions and declarations -----------------------------------------------

    def envelope_sessions(self) -> list[tuple[str, EnvelopeSession]]:
        """The sessions the plugins run around the connection (``jet_envelope_sessions``), with
        the name of each one's plugin; a plugin whose hook fails is skipped and reported."""
        return self._call_each("jet_envelope_sessions", EnvelopeSession, config=self.config)

    def describe_envelopes(self) -> list[tuple[str, EnvelopeInfo]]:
        """The envelope methods each plugin declares (``jet_describe_envelopes``), loaded in
        this run or not, with the plugin's name."""
        return self._call_each("jet_describe_envelopes", EnvelopeInfo)

    def owner(self, item: EnvelopeMethod | Cipher) -> str | None:
        """The name of the plugin that provided a loaded envelope method or cipher."""
        if isinstance(item, EnvelopeMethod):
            return self._envelope_owners.get(item.namespace)
        return self._cipher_owners.get(item.urn)

    def distribution(self, plugin: str) -> str | None:
        """The distribution (package) a plugin came from, if known."""
        return self._dists.get(plugin)

    # -- lookups ---------------------------------------------------------------------------------

    @property
    def plugin_names(self) -> list[str]:
        """Names of the registered plugins, in registration order."""
        return [n for n, _ in self._pm.list_name_plugin()]

    @property
    def ciphers(self) -> list[Cipher]:
        """Loaded ciphers, in registration order (the built-ins first)."""
        return list(self._cipher_list)

    @property
    def envelopes(self) -> list[EnvelopeMethod]:
        """Loaded envelope methods, in registration order."""
        return list(self._envelopes.values())

    def cipher(self, urn: str) -> Cipher:
        """The cipher named ``urn`` or one of its aliases; raises :class:`UnknownCipher`."""
        try:
            return self._ciphers[urn]
        except KeyError:
            raise UnknownCipher(urn, tuple(c.urn for c in self._cipher_list)) from None

    def envelope(self, namespace: str) -> EnvelopeMethod:
        """The envelope method for ``namespace``; raises :class:`UnknownEnvelope`."""
        try:
            return self._envelopes[namespace]
        except KeyError:
            hint = ""
            if namespace == _ns.JET_STUB and not self.config.allow_stub_envelope:
                hint = "; the insecure stub envelope is disabled (allow_stub_envelope)"
            raise UnknownEnvelope(namespace, list(self._envelopes), hint) from None

    def disco_features(self) -> list[str]:
        """Disco#info features for what is loaded: JET and each envelope method's features.

        Empty when no envelope method is loaded (JET is then unusable).
        """
        if not self._envelopes:
            return []
        features = {_ns.JET}
        for env in self._envelopes.values():
            features.update(env.features)
        return sorted(features)


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = ep.dist
    return dist.name if dist is not None else None


def _declared_names() -> dict[str, tuple[str, str | None]]:
    """Module name -> (entry-point name, distribution) of the installed ``jet_trio`` plugins."""
    out: dict[str, tuple[str, str | None]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not ep.attr:
            out.setdefault(ep.module, (ep.name, _dist_name(ep)))
    return out


def _plugin_label(obj: object) -> str:
    name = getattr(obj, "__name__", None)
    return name if isinstance(name, str) else type(obj).__name__


def _unmarked(hookname: str, fn: object) -> str:
    """Why ``fn`` (a ``jet_*`` function without the ``jet_trio`` hookimpl mark) is refused."""
    marks = sorted(
        a[: -len("_impl")]
        for a in getattr(fn, "__dict__", {})
        if a.endswith("_impl") and isinstance(getattr(fn, a), dict)
    )
    if not marks:
        return f"{hookname} is not marked with @hookimpl (use jet_trio.plugin.hookimpl)"
    return (
        f"{hookname} is marked with a hookimpl marker made for {marks[0]!r}, not for "
        f"{_hookspecs.PROJECT!r}: use jet_trio.plugin.hookimpl, or "
        f"pluggy.HookimplMarker({_hookspecs.PROJECT!r}) with an underscore"
    )


def _hook_functions(obj: object) -> list[str]:
    return [n for n in dir(obj) if n.startswith("jet_") and callable(getattr(obj, n, None))]


_T = TypeVar("_T")


def _problem(check: Callable[[_T], str | None], obj: _T) -> str | None:
    """``check(obj)``; an attribute that raises when read is a problem too."""
    try:
        return check(obj)
    except Exception as exc:
        return (
            f"{type(obj).__qualname__}: reading its attributes raised {type(exc).__name__}: {exc}"
        )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _cipher_problem(cipher: Cipher) -> str | None:
    """Why ``cipher`` cannot be used (a missing or malformed attribute), or ``None``."""
    what = f"cipher {type(cipher).__qualname__}"
    for attr in ("urn", "key_size", "iv_size", "accepted_iv_sizes", "tag_size"):
        if not hasattr(cipher, attr):
            return f"{what} has no attribute {attr!r}"
    if not hasattr(cipher, "max_plaintext_size"):
        return f"{what} has no attribute 'max_plaintext_size'"
    if not isinstance(cipher.urn, str) or not cipher.urn:
        return f"{what}: urn must be a non-empty string, not {cipher.urn!r}"
    aliases = getattr(cipher, "aliases", ())
    if not isinstance(aliases, tuple) or not all(isinstance(a, str) and a for a in aliases):
        return f"{what} ({cipher.urn}): aliases must be a tuple of strings, not {aliases!r}"
    for attr in ("key_size", "iv_size", "tag_size", "max_plaintext_size"):
        if not _positive_int(getattr(cipher, attr)):
            return (
                f"{what} ({cipher.urn}): {attr} must be a positive int, "
                f"not {getattr(cipher, attr)!r}"
            )
    sizes = cipher.accepted_iv_sizes
    if not isinstance(sizes, frozenset | set) or not all(_positive_int(n) for n in sizes):
        return f"{what} ({cipher.urn}): accepted_iv_sizes must be a set of positive ints"
    if cipher.iv_size not in sizes:
        return f"{what} ({cipher.urn}): iv_size {cipher.iv_size} is not in accepted_iv_sizes"
    return None


def _envelope_problem(env: EnvelopeMethod) -> str | None:
    """Why ``env`` cannot be used (a missing or malformed attribute), or ``None``."""
    what = f"envelope {type(env).__qualname__}"
    for attr in ("namespace", "features"):
        if not hasattr(env, attr):
            return f"{what} has no attribute {attr!r}"
    if not isinstance(env.namespace, str) or not env.namespace:
        return f"{what}: namespace must be a non-empty string, not {env.namespace!r}"
    features = env.features
    if not isinstance(features, tuple | list) or not all(
        isinstance(f, str) and f for f in features
    ):
        return f"{what} ({env.namespace}): features must be a tuple of strings, not {features!r}"
    short = env.short_name
    if short is not None and (not isinstance(short, str) or not short or short != short.strip()):
        return f"{what} ({env.namespace}): short_name must be None or a word, not {short!r}"
    for attr in ("preferred_cipher", "install_hint"):
        if not isinstance(getattr(env, attr), str):
            return f"{what} ({env.namespace}): {attr} must be a string"
    strength = env.strength
    if strength is not None and (not isinstance(strength, int) or isinstance(strength, bool)):
        return f"{what} ({env.namespace}): strength must be None or an int, not {strength!r}"
    if not isinstance(env.testing_only, bool):
        return f"{what} ({env.namespace}): testing_only must be a bool"
    if env.key_store is not None and not isinstance(env.key_store, KeyStore):
        return f"{what} ({env.namespace}): key_store must be None or a KeyStore"
    return None
