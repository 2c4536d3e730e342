"""The user's configuration file and ``--plugin-option``: defaults, accounts, plugin options.

The file is ``$XDG_CONFIG_HOME/jet-trio/config.toml`` (by default
``~/.config/jet-trio/config.toml``), read with :mod:`tomllib`; a missing file is no error. Its
tables (``docs/cli.rst`` documents them):

``[defaults]``
    Values for command-line options not given on the command line or in the environment:
    ``account``, ``envelope``, ``cipher``, ``transport``, ``direct_host`` (a list), and
    ``cipher_preference`` (a list of cipher URNs to use when the peer supports them), ``webrtc``
    (offer and accept the WebRTC data channel) and ``relay_only`` (its relayed candidates
    only, and no S5B in sessions this side starts); these three have no command-line option.
``[accounts."JID"]``
    Login settings of one account, used when it is the ``--account``: ``server``,
    ``password_file``, ``ca_file``, ``direct_tls``, ``no_plain``, ``login_timeout``,
    ``data_dir``, and ``cipher_preference``, ``webrtc``, ``relay_only`` (replace the defaults for
    that account).
``[plugins.NAME]``
    Options of the plugin NAME (its entry-point name): ``PluginConfig.options[NAME]``.
    ``--plugin-option NAME.KEY=VALUE`` sets or overrides one of them.

What is given on the command line wins over the environment, which wins over the file. An
unknown table or key, or a value of the wrong type, is a usage error (exit code 2) naming the
file and the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypedDict

import click

from .errors import CLIError, ExitCode

__all__ = [
    "DataChannel",
    "UserConfig",
    "activate",
    "cipher_preference",
    "config_path",
    "data_channel",
    "load_config",
    "parse_plugin_options",
    "plugin_options",
]

# Keys of [defaults] -> the command-line parameter they give a default to, and their type.
_DEFAULTS: Final[dict[str, type]] = {
    "account": str,
    "envelope": str,
    "cipher": str,
    "transport": str,
    "direct_host": list,
    "cipher_preference": list,
    "webrtc": bool,
    "relay_only": bool,
}
# Keys of [accounts."JID"] -> their type (each is the parameter of the same name).
_ACCOUNT: Final[dict[str, type | tuple[type, ...]]] = {
    "server": str,
    "password_file": str,
    "ca_file": str,
    "direct_tls": bool,
    "no_plain": bool,
    "login_timeout": (int, float),
    "data_dir": str,
    "cipher_preference": list,
    "webrtc": bool,
    "relay_only": bool,
}
# Keys read by the commands themselves (no command-line option).
_NO_OPTION: Final = ("cipher_preference", "webrtc", "relay_only")
_PATHS: Final = frozenset({"password_file", "ca_file", "data_dir"})


@dataclass(frozen=True)
class UserConfig:
    """What the configuration file (and ``--plugin-option``) says."""

    path: Path | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    accounts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    plugins: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def account(self, jid: str | None) -> Mapping[str, Any]:
        """The settings of the account ``jid`` (matched as written, or as its bare JID)."""
        if not jid:
            return {}
        bare = jid.split("/", 1)[0]
        for name in (jid, bare, bare.lower()):
            if name in self.accounts:
                return self.accounts[name]
        return {}


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/jet-trio/config.toml``, by default ``~/.config/jet-trio/config.toml``."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "jet-trio" / "config.toml"


def _bad(path: Path, message: str) -> CLIError:
    return CLIError(
        ExitCode.USAGE,
        "usage",
        f"{path}: {message}",
        "Fix the configuration file (see `jet-trio --help` and the documentation of the "
        "command line).",
    )


def _check(path: Path, where: str, key: str, value: object, kind: type | tuple[type, ...]) -> Any:
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(path, f"{where}.{key} must be a list of strings, not {value!r}")
        return tuple(value)
    if isinstance(value, bool) and kind is not bool:
        raise _bad(path, f"{where}.{key} must not be true or false")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _bad(path, f"{where}.{key} must be a {names}, not {value!r}")
    return value


def _option_text(path: Path, where: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _bad(path, f"{where} must be a string, a number or true/false, not {value!r}")


def load_config(path: Path | None = None) -> UserConfig:
    """Read the configuration file (``path``, by default :func:`config_path`); an empty
    configuration when there is none. Raises :class:`CLIError` (exit code 2) when it is
    malformed."""
    path = path if path is not None else config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return UserConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, f"cannot be read: {exc}") from None
    import tomllib  # only when there is a file

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "accounts", "plugins"})
    if unknown:
        raise _bad(path, f"unknown table [{unknown[0]}] (known: [defaults], [accounts], [plugins])")
    for table in ("defaults", "accounts", "plugins"):
        if not isinstance(data.get(table, {}), dict):
            raise _bad(path, f"{table} must be a table ([{table}])")

    defaults: dict[str, Any] = {}
    for key, value in data.get("defaults", {}).items():
        if key not in _DEFAULTS:
            raise _bad(path, f"unknown key defaults.{key} (known: {', '.join(_DEFAULTS)})")
        defaults[key] = _check(path, "defaults", key, value, _DEFAULTS[key])

    accounts: dict[str, dict[str, Any]] = {}
    for jid, table in data.get("accounts", {}).items():
        where = f'accounts."{jid}"'
        if not isinstance(table, dict):
            raise _bad(path, f"{where} must be a table")
        settings: dict[str, Any] = {}
        for key, value in table.items():
            if key not in _ACCOUNT:
                raise _bad(path, f"unknown key {where}.{key} (known: {', '.join(_ACCOUNT)})")
            value = _check(path, where, key, value, _ACCOUNT[key])
            if key in _PATHS:
                # Relative to the file's directory, "~" expanded: the file works from anywhere.
                value = path.parent / Path(value).expanduser()
            settings[key] = value
        accounts[jid] = settings

    plugins: dict[str, dict[str, str]] = {}
    for name, table in data.get("plugins", {}).items():
        if not isinstance(table, dict):
            raise _bad(path, f"plugins.{name} must be a table of options")
        plugins[name] = {
            key: _option_text(path, f"plugins.{name}.{key}", value) for key, value in table.items()
        }
    return UserConfig(path, defaults, accounts, plugins)


def parse_plugin_options(given: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--plugin-option NAME.KEY=VALUE`` values as ``{NAME: {KEY: VALUE}}``.

    NAME is the plugin's name (its entry-point name; it may contain dots), KEY the text
    between the last dot before ``=`` and the ``=``. Raises :class:`CLIError` (exit code 2).
    """
    out: dict[str, dict[str, str]] = {}
    for item in given:
        target, eq, value = item.partition("=")
        name, dot, key = target.rpartition(".")
        if not eq or not dot or not name.strip() or not key.strip():
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                f"--plugin-option {item!r}: expected NAME.KEY=VALUE",
                "NAME is the plugin's name as `jet-trio plugins` lists it, e.g. "
                "--plugin-option psk-envelope.key_file=bob.key.",
            )
        out.setdefault(name.strip(), {})[key.strip()] = value
    return out


# -- the configuration of this run -----------------------------------------------------------
# One command runs per process (tests that call the command line in-process go through
# ``activate`` on every invocation), so the run's configuration is module state.

_active: UserConfig = UserConfig()
_error: CLIError | None = None


def load_into(ctx: click.Context) -> None:
    """Read the configuration file for this run (from the ``jet-trio`` group, before the
    command's options are parsed) and give the commands its ``[defaults]`` as click
    defaults (``ctx.default_map``). A malformed file is reported by :func:`activate`, inside
    the command (with ``--json`` and the usage exit code)."""
    global _active, _error
    _active, _error = UserConfig(), None
    try:
        _active = load_config()
    except CLIError as exc:
        _error = exc
        return
    defaults = dict(_active.defaults)
    for key in _NO_OPTION:  # no command-line option: read by the commands
        defaults.pop(key, None)
    if not defaults or not isinstance(ctx.command, click.Group):
        return
    default_map: dict[str, dict[str, Any]] = {}
    for name, command in ctx.command.commands.items():
        params = {p.name for p in command.params}
        given = {k: v for k, v in defaults.items() if k in params}
        if given:
            default_map[name] = given
    ctx.default_map = default_map


def activate(kw: dict[str, Any]) -> None:
    """Apply the configuration to a command's click values ``kw`` (in place): the account's
    settings for the login options the command line and the environment left at their
    defaults, and ``--plugin-option`` (popped from ``kw``) over the file's plugin options."""
    global _active
    if _error is not None:
        raise _error
    given = parse_plugin_options(kw.pop("plugin_option", ()) or ())
    merged = {name: dict(opts) for name, opts in _active.plugins.items()}
    for name, opts in given.items():
        merged.setdefault(name, {}).update(opts)
    _active = UserConfig(_active.path, _active.defaults, _active.accounts, merged)
    settings = _active.account(kw.get("account"))
    if not settings:
        return
    ctx = click.get_current_context(silent=True)
    for key, value in settings.items():
        if key in _NO_OPTION or key not in kw:
            continue
        source = ctx.get_parameter_source(key) if ctx is not None else None
        if source in (None, click.core.ParameterSource.DEFAULT) or kw[key] is None:
            kw[key] = value


def plugin_options() -> Mapping[str, Mapping[str, str]]:
    """The plugin options of this run: ``PluginConfig.options``."""
    return _active.plugins


def cipher_preference(account: str | None = None) -> tuple[str, ...]:
    """The cipher URNs to prefer: the account's ``cipher_preference``, else the default one."""
    settings = _active.account(account)
    pref = settings.get("cipher_preference", _active.defaults.get("cipher_preference", ()))
    return tuple(pref)


class DataChannel(TypedDict):
    """The data-channel arguments of :func:`open_file_transfer` from the configuration."""

    webrtc: bool
    relay_only: bool


def data_channel(account: str | None = None) -> DataChannel:
    """The ``webrtc`` and ``relay_only`` arguments of :func:`open_file_transfer` for
    ``account``: the account's settings, else the defaults; both off unless set."""
    settings = _active.account(account)

    def get(key: str) -> bool:
        return bool(settings.get(key, _active.defaults.get(key, False)))

    return DataChannel(webrtc=get("webrtc"), relay_only=get("relay_only"))
