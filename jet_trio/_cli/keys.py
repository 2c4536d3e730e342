"""``jet-trio fingerprints`` and ``jet-trio trust``: the keys of the OMEMO and OpenPGP plugins.

Both plugins are optional and imported by name. OMEMO runs through the session the tool starts
for every login (``_cli_sessions``); OpenPGP is opened here with ``open_openpgp`` on the same
data directory its entry point uses, so trust decisions made here apply to ``send`` and
``receive``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from .._xmpp.client import Client
from .._xmpp.jid import JID
from .account import AccountOptions, connect
from .errors import CLIError, ExitCode
from .output import Output, shown
from .sessions import envelope_sessions
from .transfer import _peer_jid

__all__ = ["FingerprintOptions", "TrustOptions", "run_fingerprints", "run_trust"]

METHODS = ("omemo", "openpgp")
_MODULES = {"omemo": "jet_trio_omemo", "openpgp": "jet_trio_openpgp"}
_INSTALL = {
    "omemo": "pip install plugins/jet-trio-omemo",
    "openpgp": "pip install plugins/jet-trio-openpgp",
}


@dataclass(frozen=True)
class KeyRow:
    """One device (OMEMO) or key (OpenPGP) of an account, as listed."""

    envelope: str
    jid: str
    fingerprint: str
    trust: str
    """``verified``, ``distrusted``, ``undecided`` (OMEMO: trusted blindly until one device of
    the account is verified), ``tofu`` (OpenPGP: accepted on first use), or ``own``."""
    own: bool
    """This device (OMEMO), our key (OpenPGP)."""
    device_id: int | None = None
    active: bool = True
    """OMEMO: the device is in the account's device list; OpenPGP: the key is published."""

    def compact(self) -> str:
        return "".join(self.fingerprint.split()).lower()


def _optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _wanted_methods(envelope: str | None) -> list[str]:
    if envelope is None:
        found = [m for m in METHODS if _optional(_MODULES[m]) is not None]
        if not found:
            raise CLIError(
                ExitCode.ENCRYPTION,
                "encryption",
                "neither the OMEMO nor the OpenPGP plugin is installed",
                f"Install one ({_INSTALL['omemo']}).",
            )
        return found
    name = envelope.strip().lower()
    if name not in METHODS:
        raise CLIError(
            ExitCode.USAGE, "usage", f"--envelope {envelope!r}: choose omemo or openpgp", ""
        )
    if _optional(_MODULES[name]) is None:
        raise CLIError(
            ExitCode.ENCRYPTION,
            "encryption",
            f"the {name} plugin is not installed",
            f"Install it ({_INSTALL[name]}).",
        )
    return [name]


class _Keys:
    """The running key services of one login: ``omemo`` (an OmemoSession), ``openpgp``."""

    def __init__(self, client: Client, omemo: Any, pgp: Any) -> None:
        self.client = client
        self.omemo = omemo
        self.pgp = pgp

    @property
    def methods(self) -> list[str]:
        return [m for m, s in (("omemo", self.omemo), ("openpgp", self.pgp)) if s is not None]

    async def rows(self, method: str, jid: JID) -> list[KeyRow]:
        if method == "omemo":
            devices = await self.omemo.devices(jid, refresh=True)
            return [
                KeyRow(
                    "omemo",
                    d.jid,
                    d.fingerprint,
                    "own" if d.own else d.trust,
                    d.own,
                    d.device_id,
                    d.active,
                )
                for d in devices
            ]
        keys = await self.pgp.fingerprints(jid)
        mine = self.pgp.fingerprint if jid.bare == self.client.jid.bare else None
        return [
            KeyRow(
                "openpgp",
                str(k.jid),
                k.display,
                "own" if k.fingerprint == mine else (k.state.value if k.state else "undecided"),
                k.fingerprint == mine,
                None,
                k.published,
            )
            for k in keys
        ]


@asynccontextmanager
async def _open_keys(
    out: Output, account: AccountOptions, methods: list[str]
) -> AsyncIterator[_Keys]:
    jid = account.jid()
    data_dir = account.account_data_dir(jid)
    async with (
        connect(account, jid, presence=False) as client,
        envelope_sessions(out, client, data_dir),
        AsyncExitStack() as stack,
    ):
        omemo = pgp = None
        if "omemo" in methods:
            module: Any = _optional(_MODULES["omemo"])
            omemo = module.attached_session(client) if module is not None else None
            if omemo is None:
                out.warn("OMEMO is not running for this account (see the warning above)")
        if "openpgp" in methods:
            module = _optional(_MODULES["openpgp"])
            if module is not None:
                pgp = await stack.enter_async_context(module.open_openpgp(client, data_dir))
        keys = _Keys(client, omemo, pgp)
        if not keys.methods:
            raise CLIError(
                ExitCode.ENCRYPTION,
                "encryption",
                "no key-based envelope method could be started",
                "Run with --debug to see why.",
            )
        yield keys


def _row_text(row: KeyRow) -> str:
    device = f"device {row.device_id:<10} " if row.device_id is not None else ""
    trust = {
        "own": "[bold]this device[/]" if row.envelope == "omemo" else "[bold]own key[/]",
        "verified": "[green]verified[/]",
        "distrusted": "[red]distrusted[/]",
        "undecided": "[yellow]undecided[/]",
        "tofu": "trusted on first use",
    }.get(row.trust, row.trust)
    gone = "" if row.active else "  [dim](inactive)[/]"
    return f"  {shown(row.jid)}  {device}{shown(row.fingerprint)}  {trust}{gone}"


_TITLES = {"omemo": "OMEMO devices", "openpgp": "OpenPGP keys"}


@dataclass(frozen=True)
class FingerprintOptions:
    jids: tuple[str, ...]
    envelope: str | None


async def run_fingerprints(out: Output, account: AccountOptions, opts: FingerprintOptions) -> int:
    methods = _wanted_methods(opts.envelope)
    peers = [_peer_jid(j, "JID").bare for j in opts.jids]
    all_rows: list[KeyRow] = []
    async with _open_keys(out, account, methods) as keys:
        me = keys.client.jid.bare
        for method in keys.methods:
            out.say(f"[bold]{_TITLES[method]}[/]")
            for jid in [me, *[p for p in peers if p != me]]:
                try:
                    rows = await keys.rows(method, jid)
                except Exception as exc:  # e.g. no OMEMO device list: listed as nothing
                    out.warn(f"cannot read the {method} keys of {jid}: {exc}")
                    rows = []
                all_rows += rows
                for row in rows:
                    out.say(_row_text(row))
                if not rows:
                    out.say(f"  {shown(jid)}  none published")
    out.emit({"status": "ok", "account": str(me), "keys": [asdict(r) for r in all_rows]})
    if any(r.trust == "undecided" for r in all_rows):
        out.note(
            "Compare fingerprints with their owner over another channel, then: "
            "jet-trio trust JID FINGERPRINT (or --distrust)"
        )
    return ExitCode.OK


@dataclass(frozen=True)
class TrustOptions:
    jid: str
    fingerprint: str
    distrust: bool
    envelope: str | None


def _matches(row: KeyRow, wanted: str) -> bool:
    if row.compact() == wanted:
        return True
    return row.device_id is not None and wanted.isdigit() and int(wanted) == row.device_id


async def run_trust(out: Output, account: AccountOptions, opts: TrustOptions) -> int:
    methods = _wanted_methods(opts.envelope)
    jid = _peer_jid(opts.jid, "JID").bare
    wanted = "".join(opts.fingerprint.replace(":", " ").split()).lower()
    if not wanted:
        raise CLIError(ExitCode.USAGE, "usage", "the fingerprint is empty", "")
    changed: list[KeyRow] = []
    async with _open_keys(out, account, methods) as keys:
        if jid == keys.client.jid.bare:
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                "trust decisions are about other accounts",
                "Pass the JID of the peer whose fingerprint you compared.",
            )
        for method in keys.methods:
            try:
                rows = await keys.rows(method, jid)
            except Exception as exc:
                out.warn(f"cannot read the {method} keys of {jid}: {exc}")
                continue
            for row in rows:
                if not _matches(row, wanted):
                    continue
                if method == "omemo":
                    await keys.omemo.set_trust(jid, row.device_id, not opts.distrust)
                elif opts.distrust:
                    keys.pgp.distrust(jid, row.fingerprint)
                else:
                    keys.pgp.verify(jid, row.fingerprint)
                after = [r for r in await keys.rows(method, jid) if _matches(r, wanted)]
                changed += after
        if not changed:
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                f"{jid} has no {' or '.join(keys.methods)} key with fingerprint "
                f"{opts.fingerprint!r}",
                f"List its keys with `jet-trio fingerprints {jid}`.",
            )
    for row in changed:
        out.emit({"status": "ok", **asdict(row)})
        what = f"OMEMO device {row.device_id}" if row.device_id is not None else "OpenPGP key"
        out.say(f"{shown(row.jid)}'s {what} {shown(row.fingerprint)} is now {shown(row.trust)}")
    return ExitCode.OK
