"""``jet-trio share``, ``request`` and ``resume``: files fetched by their SHA-256.

``share`` serves XEP-0234 file requests (and the ranged requests of resumed downloads) for the
files it names; ``request`` fetches a file by hash (XEP-0391 4.2: the requester makes the
transport secret); ``resume`` completes an interrupted download from its ``.part`` file and
sidecar (XEP-0391 4.3).
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from .._plugins.manager import PluginManager
from .._transfer.files import SIDECAR_SUFFIX, Partial, find_partials
from .._transfer.service import FileTransfer, ServedRequest, open_file_transfer
from .._transfer.types import TransferError
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.jid import JID
from .account import AccountOptions
from .config import data_channel
from .contacts import wait_for_peer
from .errors import CLIError, ExitCode
from .output import Output, human_size, shown
from .plugins import NO_METHOD_HINT, check_cipher, wants_stub
from .sessions import open_account
from .transfer import (
    Transport,
    _choose_envelope,
    _direct_host,
    _how,
    _peer_jid,
    check_output_dir,
    hint_partials,
)

__all__ = [
    "RequestOptions",
    "ResumeOptions",
    "ShareOptions",
    "run_list_partials",
    "run_request",
    "run_resume",
    "run_share",
]


@asynccontextmanager
async def _file_transfer(
    out: Output, account: AccountOptions, *, allow_stub: bool, direct_host: tuple[str, ...]
) -> AsyncIterator[tuple[Client, FileTransfer]]:
    """Log in, start the envelope plugins and file transfer; presence is sent by the caller."""
    direct = _direct_host(direct_host)  # a bad value is a usage error before connecting
    async with open_account(
        out, account, allow_stub=allow_stub, direct=direct, presence=False
    ) as opened:
        assert opened.ft is not None
        yield opened.client, opened.ft


async def _wait_for(client: Client, peer: JID, wait: float) -> JID:
    return await wait_for_peer(
        client,
        peer,
        wait,
        "Check that the peer is online and runs `jet-trio share`, or wait longer with --wait.",
    )


# -- share ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareOptions:
    files: tuple[Path, ...]
    to: tuple[str, ...]
    timeout: float | None
    accept_stub: bool
    direct_host: tuple[str, ...]


async def run_share(out: Output, account: AccountOptions, opts: ShareOptions) -> int:
    for f in opts.files:
        if not f.is_file():
            what = "does not exist" if not f.exists() else "is not a regular file"
            raise CLIError(ExitCode.FILE, "file", f"{f} {what}", "Check the path.")
    allowed = [_peer_jid(j, "--to").bare for j in opts.to] or None
    _direct_host(opts.direct_host)  # a bad value is a usage error before connecting
    deadline = math.inf if opts.timeout is None else trio.current_time() + opts.timeout
    async with open_account(
        out,
        account,
        allow_stub=opts.accept_stub,
        file_transfer=False,
        prepare_sessions=True,  # requests may never need an envelope session's libraries
    ) as opened:
        client, plugins = opened.client, opened.plugins
        if not plugins.envelopes:
            out.warn(
                "no end-to-end encryption method is installed: only unencrypted requests can "
                f"be served ({NO_METHOD_HINT})"
            )
        await _serve_shared(out, client, plugins, opts, allowed, deadline)
    return ExitCode.OK


async def _serve_shared(
    out: Output,
    client: Client,
    plugins: PluginManager,
    opts: ShareOptions,
    allowed: list[JID] | None,
    deadline: float,
) -> None:
    async with open_file_transfer(
        client,
        plugins=plugins,
        direct_addresses=_direct_host(opts.direct_host),
        **data_channel(str(client.jid)),
    ) as ft:
        for f in opts.files:
            out.note(f"hashing {f} ({human_size(f.stat().st_size)})")
            sha = await ft.share(f, to=allowed, on_served=partial(_served, out))
            out.emit(
                {
                    "status": "shared",
                    "name": f.name,
                    "path": str(f.resolve()),
                    "size": f.stat().st_size,
                    "sha256": sha,
                    "to": None if allowed is None else [str(j) for j in allowed],
                }
            )
            out.say(f"{sha}  {shown(f.name)}")
        await client.send_presence()  # requesters see us once the files are shared
        who = ", ".join(str(j) for j in allowed) if allowed else "anyone who knows the hash"
        until = "Ctrl-C" if opts.timeout is None else f"{opts.timeout:g} s or Ctrl-C"
        out.note(
            f"logged in as {client.jid}; serving to {who} until {until}. Fetch with: "
            f"jet-trio request SHA256 --from {client.jid.bare} --output-dir DIR"
        )
        await trio.sleep_until(deadline)


def _served(out: Output, served: ServedRequest) -> None:
    """Say who fetched what (standard output: it is what share is run for)."""
    part = "" if served.offset == 0 else f", resumed from byte {served.offset}"
    what = f"{shown(served.name)} ({human_size(served.length)}{part})"
    if served.error is None:
        out.say(f"{shown(served.peer)} fetched {what}")
        status = "served"
    else:
        out.say(f"[yellow]{shown(served.peer)} did not get {what}: {shown(served.error)}[/]")
        status = "failed"
    out.emit(
        {
            "status": status,
            "peer": str(served.peer),
            "name": served.name,
            "sha256": served.sha256,
            "offset": served.offset,
            "length": served.length,
            **({} if served.error is None else {"error": str(served.error)}),
        }
    )


# -- request ----------------------------------------------------------------------------------


def _check_sha256(value: str) -> str:
    sha = value.strip().lower()
    if len(sha) != 64 or any(c not in string.hexdigits for c in sha):
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"{value!r} is not a SHA-256 (64 hexadecimal digits)",
            "Copy the hash that `jet-trio share` printed.",
        )
    return sha


def _not_available(exc: TransferError, peer: JID) -> CLIError | None:
    """The peer refused the request because it does not share the file (with us)."""
    if exc.reason != "failed-application":
        return None
    return CLIError(
        ExitCode.PEER,
        "not-available",
        f"{peer} does not provide that file: {exc}",
        "Check the hash, and that the peer shares the file with you (jet-trio share --to).",
        jingle=exc.reason,
    )


@dataclass(frozen=True)
class RequestOptions:
    sha256: str
    sender: str
    output_dir: Path
    envelope: str | None
    cipher: str | None
    transport: Transport
    overwrite: bool
    rename: bool
    wait: float
    direct_host: tuple[str, ...]


async def run_request(out: Output, account: AccountOptions, opts: RequestOptions) -> int:
    sha = _check_sha256(opts.sha256)
    check_output_dir(opts.output_dir)
    check_cipher(opts.cipher)
    peer = _peer_jid(opts.sender, "--from")
    async with _file_transfer(
        out, account, allow_stub=wants_stub(opts.envelope), direct_host=opts.direct_host
    ) as (client, ft):
        namespace = _choose_envelope(out, opts.envelope, ft.plugins)
        await client.send_presence()
        out.note(f"logged in as {client.jid}; waiting for {peer} to be online")
        full = await _wait_for(client, peer, opts.wait)
        how = _how(namespace)
        out.note(f"requesting {sha} from {full} ({how})")
        try:
            with out.progress() as bars:
                result = await ft.request_file(
                    peer if peer.is_bare else full,
                    sha,
                    opts.output_dir,
                    encrypt=namespace,
                    cipher=opts.cipher,
                    transport=opts.transport,
                    progress=bars.bar(f"receiving {sha[:12]}", 0),
                    overwrite=opts.overwrite,
                    rename=opts.rename,
                )
        except TransferError as exc:
            refused = _not_available(exc, peer)
            if refused is not None:
                raise refused from exc
            hint_partials(out, opts.output_dir, sha)
            raise
        except BaseException:
            hint_partials(out, opts.output_dir, sha)
            raise
    out.transfer(result)
    return ExitCode.OK


# -- resume -----------------------------------------------------------------------------------


def load_partial(path: Path) -> Partial:
    """The partial download of a sidecar or ``.part`` path (exit code 10 if there is none)."""
    sidecar = (
        path if path.name.endswith(SIDECAR_SUFFIX) else path.with_name(path.name + SIDECAR_SUFFIX)
    )
    if not sidecar.is_file():
        raise CLIError(
            ExitCode.FILE,
            "file",
            f"{path} is not a partial download (there is no {sidecar.name} beside it)",
            "List the partial downloads of a directory with `jet-trio resume --list DIR`.",
        )
    try:
        return Partial.load(sidecar)
    except TransferError as exc:
        raise CLIError(
            ExitCode.FILE,
            "file",
            str(exc),
            "jet-trio did not write this sidecar here, or it is damaged: delete the partial "
            "download and fetch the file again (jet-trio request).",
        ) from None


def partial_json(p: Partial) -> dict[str, object]:
    return {
        "status": "partial",
        "name": p.name,
        "peer": str(p.peer),
        "received": p.received,
        "size": p.size,
        "sha256": p.sha256,
        "envelope": p.envelope,
        "path": str(p.dest),
        "part": str(p.part),
        "sidecar": str(p.sidecar),
    }


def run_list_partials(out: Output, directory: Path) -> int:
    if not directory.is_dir():
        raise CLIError(
            ExitCode.FILE, "file", f"the directory {directory} does not exist", "Check the path."
        )
    try:
        partials = find_partials(directory)
    except TransferError as exc:
        raise CLIError(
            ExitCode.FILE, "file", str(exc), "Remove the damaged sidecar file."
        ) from None
    for p in partials:
        out.emit(partial_json(p))
        percent = 100 * p.received / p.size if p.size else 100.0
        out.say(
            f"{shown(p.name)}: {human_size(p.received)} of {human_size(p.size)} "
            f"({percent:.0f} %) from {shown(p.peer.bare)}"
        )
        if p.sha256:
            out.say(f"  completed when {shown(p.peer.bare)} sends it again, or by:")
            out.say(f"  jet-trio resume {shown(p.sidecar)}")
        else:  # offered without a hash: it cannot be requested by one
            out.say(f"  completed when {shown(p.peer.bare)} sends it again")
    if not partials:
        out.note(f"no partial downloads in {directory}")
    return ExitCode.OK


@dataclass(frozen=True)
class ResumeOptions:
    partial: Path
    envelope: str | None
    cipher: str | None
    transport: Transport
    wait: float
    direct_host: tuple[str, ...]


def _resume_envelope(
    out: Output, name: str | None, partial: Partial, ft: FileTransfer
) -> str | None:
    """``--envelope``, else the partial's own envelope method when it is loaded, else the
    default (never unencrypted without ``--envelope none``)."""
    if name is None and partial.envelope is not None:
        loaded = {env.namespace for env in ft.plugins.envelopes}
        if partial.envelope in loaded:
            if partial.envelope == _ns.JET_STUB:
                out.warn(
                    "the stub envelope sends the key in clear text: this transfer has NO "
                    "end-to-end confidentiality (testing only)"
                )
            return partial.envelope
    return _choose_envelope(out, name, ft.plugins)


async def run_resume(out: Output, account: AccountOptions, opts: ResumeOptions) -> int:
    partial = load_partial(opts.partial)
    check_cipher(opts.cipher)
    if not partial.hash_known:
        raise CLIError(
            ExitCode.FILE,
            "file",
            f"{partial.name} cannot be requested again: its sender announced the hash for after "
            "the data, which did not arrive; it is completed when the sender offers it again",
            "Ask the sender to send the file again.",
        )
    if not partial.dest.parent.is_dir():
        raise CLIError(
            ExitCode.FILE, "file", f"{partial.dest.parent} does not exist", "Check the path."
        )
    stub = wants_stub(opts.envelope) or (opts.envelope is None and partial.envelope == _ns.JET_STUB)
    peer = partial.peer.bare  # its resource has probably changed since
    async with _file_transfer(out, account, allow_stub=stub, direct_host=opts.direct_host) as (
        client,
        ft,
    ):
        namespace = _resume_envelope(out, opts.envelope, partial, ft)
        await client.send_presence()
        out.note(f"logged in as {client.jid}; waiting for {peer} to be online")
        full = await _wait_for(client, peer, opts.wait)
        offset = partial.received
        how = _how(namespace)
        out.note(
            f"resuming {partial.name} from {full} at {human_size(offset)} of "
            f"{human_size(partial.size)} ({how})"
        )
        try:
            with out.progress() as bars:
                result = await ft.resume(
                    dataclasses.replace(partial, peer=peer),
                    encrypt=namespace,
                    cipher=opts.cipher,
                    transport=opts.transport,
                    progress=bars.bar(f"receiving {partial.name}", partial.size),
                )
        except TransferError as exc:
            refused = _not_available(exc, peer)
            if refused is not None:
                raise refused from exc
            hint_partials(out, partial.dest.parent, partial.sha256)
            raise
        except BaseException:
            hint_partials(out, partial.dest.parent, partial.sha256)
            raise
    out.transfer(result, resumed_from=offset)
    return ExitCode.OK
