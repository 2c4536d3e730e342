"""``jet-trio send`` and ``jet-trio receive``: one account against a real server."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from . import _ns
from ._cli_account import AccountOptions, connect
from ._cli_errors import CLIError, ExitCode, classify
from ._cli_output import Output, human_size
from ._cli_plugins import (
    ENVELOPE_NAMES,
    default_envelope,
    make_plugins,
    may_use_omemo,
    resolve_envelope,
    short_envelope_name,
    wanted_envelopes,
    wants_stub,
)
from ._cli_sessions import envelope_sessions, omemo_running
from ._file_transfer import FileTransferError, safe_filename
from ._jid import JID, InvalidJID
from ._plugins import PluginManager
from ._transfer import IncomingOffer, open_file_transfer
from ._transfer_files import find_partials
from ._transfer_types import TransferError

__all__ = ["ReceiveOptions", "SendOptions", "run_receive", "run_send"]

Transport = Literal["auto", "s5b", "ibb"]


def _peer_jid(value: str, option: str) -> JID:
    try:
        return JID(value)
    except InvalidJID as exc:
        raise CLIError(
            ExitCode.USAGE, "usage", f"{option}: {exc}", "Write it like name@example.org."
        ) from None


def _direct_host(value: str) -> str | None:
    return None if value.lower() == "none" else value


def hint_partials(out: Output, directory: Path, sha256: str | None = None) -> None:
    """After a failed download: say which partial downloads were kept and how to resume them."""
    try:
        kept = [p for p in find_partials(directory) if sha256 is None or p.sha256 == sha256]
    except (OSError, TransferError):
        return
    for p in kept:
        out.warn(
            f"kept {p.received} of {p.size} bytes of {p.name}: complete it with "
            f"`jet-trio resume {p.sidecar}` (the sender must run `jet-trio share` with the file)"
        )


def report_load_errors(out: Output, plugins: PluginManager) -> None:
    for err in plugins.load_errors:
        out.warn(str(err))


@dataclass(frozen=True)
class SendOptions:
    file: Path
    to: str
    envelope: str | None
    cipher: str | None
    transport: Transport
    wait: float
    direct_host: str


def _choose_envelope(out: Output, name: str | None, plugins: PluginManager) -> str | None:
    if name is None:
        namespace = default_envelope(plugins)
        if namespace is None:
            raise CLIError(
                ExitCode.ENCRYPTION,
                "encryption",
                "no end-to-end encryption method is installed",
                "Install the OMEMO plugin (pip install plugins/jet-trio-omemo), or pass "
                "--envelope none to send without end-to-end encryption.",
            )
        return namespace
    namespace = resolve_envelope(name, plugins)
    if namespace is None:
        out.warn(
            "sending WITHOUT end-to-end encryption (--envelope none): the servers can read the file"
        )
    elif namespace == _ns.JET_STUB:
        out.warn(
            "the stub envelope sends the key in clear text: this transfer has NO end-to-end "
            "confidentiality (testing only)"
        )
    return namespace


async def run_send(out: Output, account: AccountOptions, opts: SendOptions) -> int:
    if not opts.file.is_file():
        what = "does not exist" if not opts.file.exists() else "is not a regular file"
        raise CLIError(ExitCode.FILE, "file", f"{opts.file} {what}", "Check the path.")
    to = _peer_jid(opts.to, "--to")
    jid = account.jid()
    data_dir = account.account_data_dir(jid)
    async with (
        connect(account, jid, presence=False) as client,
        envelope_sessions(out, client, data_dir, omemo_wanted=may_use_omemo(opts.envelope)),
    ):
        wanted = wanted_envelopes(opts.envelope)
        if wanted is None and omemo_running(client):
            # The default is OMEMO whenever it runs: the other methods would be prepared (an
            # OpenPGP key loaded or made, and published) for nothing.
            wanted = frozenset(ENVELOPE_NAMES["omemo"])
        plugins = make_plugins(
            account=client.jid,
            client=client,
            data_dir=data_dir,
            allow_stub=wants_stub(opts.envelope),
            envelopes=wanted,
        )
        report_load_errors(out, plugins)
        namespace = _choose_envelope(out, opts.envelope, plugins)
        async with open_file_transfer(
            client, plugins=plugins, direct_host=_direct_host(opts.direct_host)
        ) as ft:
            await client.send_presence()  # now ready: keys published, features advertised
            out.note(f"logged in as {client.jid}; waiting for {to} to be online")
            try:
                with trio.fail_after(opts.wait):
                    peer = await client.wait_available(to)
            except trio.TooSlowError:
                raise CLIError(
                    ExitCode.PEER,
                    "peer-unavailable",
                    f"{to} did not come online within {opts.wait:g} s",
                    "Check that the recipient is online (and that you are in each other's "
                    "contact lists), or wait longer with --wait.",
                ) from None
            how = short_envelope_name(namespace) if namespace else "no end-to-end encryption"
            out.note(f"offering {opts.file.name} to {peer} ({how})")
            with out.progress() as bars:
                result = await ft.send_file(
                    opts.file,
                    to if to.is_bare else peer,
                    encrypt=namespace,
                    cipher=opts.cipher,
                    transport=opts.transport,
                    progress=bars.bar(f"sending {opts.file.name}", opts.file.stat().st_size),
                )
    out.transfer(result)
    return ExitCode.OK


@dataclass(frozen=True)
class ReceiveOptions:
    output_dir: Path
    count: int
    sender: str | None
    max_size: int | None
    accept_unencrypted: bool
    accept_stub: bool
    overwrite: bool
    timeout: float | None
    direct_host: str


def _refusal(
    offer: IncomingOffer, opts: ReceiveOptions, sender: JID | None, plugins: PluginManager
) -> str | None:
    """Why ``offer`` is refused, or ``None`` to accept it."""
    if sender is not None and offer.peer.bare != sender.bare:
        return f"it comes from {offer.peer.bare}, not from {sender.bare} (--from)"
    if opts.max_size is not None and offer.size > opts.max_size:
        return f"it is {offer.size} bytes, more than --max-size {opts.max_size}"
    if offer.envelope is None and not opts.accept_unencrypted:
        return "it is not end-to-end encrypted (pass --accept-unencrypted to allow that)"
    if offer.envelope == _ns.JET_STUB and not opts.accept_stub:
        return "it uses the insecure stub envelope (pass --accept-stub to allow that, for tests)"
    if offer.envelope is not None:
        loaded = {env.namespace for env in plugins.envelopes}
        if offer.envelope not in loaded:
            return (
                f"it is encrypted with {short_envelope_name(offer.envelope)}, which is not "
                "installed here"
            )
    try:
        name = safe_filename(offer.name)
    except FileTransferError as exc:
        return f"its file name is unusable: {exc}"
    if (opts.output_dir / name).exists() and not opts.overwrite:
        return f"{opts.output_dir / name} already exists (pass --overwrite to replace it)"
    return None


async def run_receive(out: Output, account: AccountOptions, opts: ReceiveOptions) -> int:
    if not opts.output_dir.is_dir():
        raise CLIError(
            ExitCode.FILE,
            "file",
            f"the output directory {opts.output_dir} does not exist",
            "Create it first, or choose another with --output-dir.",
        )
    sender = _peer_jid(opts.sender, "--from") if opts.sender else None
    jid = account.jid()
    data_dir = account.account_data_dir(jid)
    first_error = ExitCode.OK
    done = 0
    async with (
        connect(account, jid, presence=False) as client,
        envelope_sessions(out, client, data_dir),
    ):
        plugins = make_plugins(
            account=client.jid, client=client, data_dir=data_dir, allow_stub=opts.accept_stub
        )
        report_load_errors(out, plugins)
        if not plugins.envelopes and not opts.accept_unencrypted:
            out.warn(
                "no end-to-end encryption method is installed: every offer will be refused "
                "(install the OMEMO plugin)"
            )
        async with open_file_transfer(
            client, plugins=plugins, direct_host=_direct_host(opts.direct_host)
        ) as ft:
            await client.send_presence()  # senders see us only once we can receive
            wanted = "files" if opts.count != 1 else "a file"
            from_ = f" from {sender}" if sender else ""
            out.note(f"logged in as {client.jid}; waiting for {wanted}{from_}")
            deadline = math.inf if opts.timeout is None else trio.current_time() + opts.timeout
            with trio.move_on_at(deadline) as waiting:
                while not opts.count or done < opts.count:
                    offer = await ft.next_offer()
                    why = _refusal(offer, opts, sender, plugins)
                    if why is not None:
                        out.warn(f"refused {offer.name!r} from {offer.peer}: {why}")
                        out.emit(
                            {
                                "status": "refused",
                                "peer": str(offer.peer),
                                "name": offer.name,
                                "size": offer.size,
                                "envelope": offer.envelope,
                                "reason": why,
                            }
                        )
                        with contextlib.suppress(Exception):
                            await offer.reject("decline", f"refused: {why}")
                        continue
                    how = (
                        f"encrypted with {short_envelope_name(offer.envelope)}"
                        if offer.envelope
                        else "NOT encrypted"
                    )
                    out.note(
                        f"accepting {offer.name} ({human_size(offer.size)}) from {offer.peer}, "
                        f"{how}"
                    )
                    sha = next(
                        (h.digest.hex() for h in offer.file.hashes if h.algo == "sha-256"), None
                    )
                    try:
                        with out.progress() as bars:
                            result = await offer.accept(
                                opts.output_dir,
                                progress=bars.bar(f"receiving {offer.name}", offer.size),
                                overwrite=opts.overwrite,
                            )
                    except Exception as exc:
                        if sha is not None:
                            hint_partials(out, opts.output_dir, sha)
                        failure = classify(exc)
                        if failure.code is ExitCode.INTERNAL:
                            raise
                        out.failure(failure)
                        first_error = first_error or failure.code
                    except BaseException:  # Ctrl-C, --timeout
                        if sha is not None:
                            hint_partials(out, opts.output_dir, sha)
                        raise
                    else:
                        out.transfer(result)
                    done += 1
            if waiting.cancelled_caught and opts.count:
                raise CLIError(
                    ExitCode.TIMEOUT,
                    "timeout",
                    f"{done} of {opts.count or 'any number of'} files arrived within "
                    f"{opts.timeout:g} s",
                    "Wait longer with --timeout, or check the sender.",
                )
    return first_error
