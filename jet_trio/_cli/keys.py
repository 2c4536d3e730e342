"""``jet-trio fingerprints`` and ``jet-trio trust``: the keys of the envelope methods.

Every loaded envelope method with a :attr:`~jet_trio.plugin.EnvelopeMethod.key_store` is
listed (a store shared by several methods once), whichever plugin provides it: the tool logs in
as ``send`` does (:func:`~.sessions.open_account`: envelope sessions, plugins), starts those
methods (e.g. an OpenPGP key is loaded, or made and published) and asks their stores. Trust
decisions made here are the ones ``send`` and ``receive`` apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from .._errors import JetError
from .._jet.envelope import KeyRecord, KeyStore
from .._xmpp.client import Client
from .._xmpp.jid import JID
from .account import AccountOptions
from .errors import CLIError, ExitCode
from .output import Output, shown
from .plugins import NO_METHOD_HINT
from .sessions import open_account, trust_command
from .transfer import _peer_jid

__all__ = ["FingerprintOptions", "TrustOptions", "run_fingerprints", "run_trust"]


@dataclass(frozen=True)
class KeyRow:
    """One device (OMEMO) or key (OpenPGP) of an account, as listed (``--json``)."""

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

    @classmethod
    def of(cls, store: KeyStore, key: KeyRecord) -> KeyRow:
        return cls(
            store.name,
            str(key.jid),
            key.fingerprint,
            key.trust.value,
            key.own,
            key.device_id,
            key.active,
        )


class _Keys:
    """The key stores of one login (one per store, in the order of the methods)."""

    def __init__(self, client: Client, stores: list[KeyStore]) -> None:
        self.client = client
        self.stores = stores


def _stores(envelopes: list[object]) -> list[KeyStore]:
    stores: list[KeyStore] = []
    for env in envelopes:
        store = getattr(env, "key_store", None)
        if isinstance(store, KeyStore) and all(store is not s for s in stores):
            stores.append(store)
    return stores


@asynccontextmanager
async def _open_keys(
    out: Output, account: AccountOptions, envelope: str | None
) -> AsyncIterator[_Keys]:
    if envelope is not None and not envelope.strip():
        raise CLIError(ExitCode.USAGE, "usage", "--envelope: give a method name", "")
    async with open_account(out, account, envelope=envelope, file_transfer=False) as opened:
        plugins = opened.plugins
        with_keys = [env for env in plugins.envelopes if env.key_store is not None]
        for env in with_keys:
            try:
                await env.start()  # e.g. OpenPGP: our key loaded (made and published)
            except JetError:
                raise
            except Exception as exc:
                out.warn(f"the {env.short_name or env.namespace} envelope could not start: {exc}")
                with_keys.remove(env)
        stores = _stores(list(with_keys))
        if not stores:
            what = (
                f"the {envelope.strip()!r} envelope method is not loaded, or"
                if envelope
                else ("no loaded envelope method")
            )
            raise CLIError(
                ExitCode.ENCRYPTION,
                "encryption",
                f"{what} has no keys to list or trust",
                f"See `jet-trio plugins` for what is loaded and why not (or {NO_METHOD_HINT}).",
            )
        yield _Keys(opened.client, stores)


def _row_text(row: KeyRow) -> str:
    device = f"device {row.device_id:<10} " if row.device_id is not None else ""
    trust = {
        "own": "[bold]this device[/]" if row.device_id is not None else "[bold]own key[/]",
        "verified": "[green]verified[/]",
        "distrusted": "[red]distrusted[/]",
        "undecided": "[yellow]undecided[/]",
        "tofu": "trusted on first use",
    }.get(row.trust, row.trust)
    gone = "" if row.active else "  [dim](inactive)[/]"
    return f"  {shown(row.jid)}  {device}{shown(row.fingerprint)}  {trust}{gone}"


@dataclass(frozen=True)
class FingerprintOptions:
    jids: tuple[str, ...]
    envelope: str | None


def check_key_envelope(envelope: str | None) -> None:
    """Before logging in: ``--envelope NAME`` names a method an installed plugin declares, and
    one that has keys (not a testing-only one): else a usage error (exit code 2)."""
    if envelope is None:
        return
    from .plugins import declared_envelopes

    name = envelope.strip()
    infos = [i for i in declared_envelopes() if name in (i.namespace, i.short_name)]
    if not infos:
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"--envelope {name!r}: no installed plugin provides this envelope method",
            "See `jet-trio plugins` for the installed methods.",
        )
    if all(i.testing_only for i in infos):
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"--envelope {name}: a testing-only method, without keys to list or trust",
            "See `jet-trio plugins` for the installed methods.",
        )


async def _rows(out: Output, store: KeyStore, jid: JID) -> list[KeyRow] | None:
    try:
        return [KeyRow.of(store, k) for k in await store.list_keys(jid)]
    except Exception as exc:  # e.g. no OMEMO device list: listed as nothing
        out.warn(f"cannot read the {store.name} keys of {jid}: {exc}")
        return None


async def run_fingerprints(out: Output, account: AccountOptions, opts: FingerprintOptions) -> int:
    check_key_envelope(opts.envelope)
    peers = [_peer_jid(j, "JID").bare for j in opts.jids]
    all_rows: list[KeyRow] = []
    async with _open_keys(out, account, opts.envelope) as keys:
        me = keys.client.jid.bare
        for store in keys.stores:
            out.say(f"[bold]{shown(store.title)}[/]")
            for jid in [me, *[p for p in peers if p != me]]:
                rows = await _rows(out, store, jid) or []
                all_rows += rows
                for row in rows:
                    out.say(_row_text(row))
                if not rows:
                    out.say(f"  {shown(jid)}  none published")
    out.emit({"status": "ok", "account": str(me), "keys": [asdict(r) for r in all_rows]})
    undecided = [r for r in all_rows if r.trust in ("undecided", "tofu")]
    for row in undecided:
        out.note(
            f"Compare {row.jid}'s fingerprint with its owner over another channel, then: "
            f"{trust_command(row.jid, row.fingerprint)} (or add --distrust)"
        )
    return ExitCode.OK


@dataclass(frozen=True)
class TrustOptions:
    jid: str
    fingerprint: str
    distrust: bool
    envelope: str | None


async def run_trust(out: Output, account: AccountOptions, opts: TrustOptions) -> int:
    check_key_envelope(opts.envelope)
    jid = _peer_jid(opts.jid, "JID").bare
    wanted = "".join(opts.fingerprint.replace(":", " ").split()).lower()
    if not wanted:
        raise CLIError(ExitCode.USAGE, "usage", "the fingerprint is empty", "")
    changed: list[KeyRow] = []
    async with _open_keys(out, account, opts.envelope) as keys:
        if jid == keys.client.jid.bare:
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                "trust decisions are about other accounts",
                "Pass the JID of the peer whose fingerprint you compared.",
            )
        for store in keys.stores:
            try:
                found = store.find(await store.list_keys(jid), wanted)
            except Exception as exc:
                out.warn(f"cannot read the {store.name} keys of {jid}: {exc}")
                continue
            for key in found:
                changed.append(KeyRow.of(store, await store.set_trust(key, not opts.distrust)))
        if not changed:
            names = " or ".join(s.name for s in keys.stores)
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                f"{jid} has no {names} key with fingerprint {opts.fingerprint!r}",
                f"List its keys with `jet-trio fingerprints {jid}`.",
            )
    for row in changed:
        out.emit({"status": "ok", **asdict(row)})
        what = (
            f"{row.envelope} device {row.device_id}"
            if row.device_id is not None
            else (f"{row.envelope} key")
        )
        out.say(f"{shown(row.jid)}'s {what} {shown(row.fingerprint)} is now {shown(row.trust)}")
    return ExitCode.OK
