"""``jet-trio send`` and ``jet-trio receive``: one account against a real server."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from .._errors import JetError
from .._plugins.manager import PluginManager
from .._transfer.batch import BatchItem, BatchProgress, FileOutcome, send_files
from .._transfer.description import FileTransferError, safe_filename
from .._transfer.files import find_partials
from .._transfer.paths import PathSet, UnsafePath
from .._transfer.service import FileTransfer, IncomingOffer, open_file_transfer
from .._transfer.tree import FLAT_SEPARATOR, FlatNames, TreeEntry, walk_tree
from .._transfer.types import ProgressCallback, TransferError
from .._transports.s5b import candidate_host_problem
from .._transports.s5b_direct import DirectAddresses
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.jid import JID, InvalidJID
from .account import AccountOptions
from .config import cipher_preference, data_channel
from .contacts import wait_for_peer
from .errors import CLIError, ExitCode, Failure, classify
from .output import Output, ProgressBars, human_size, shown
from .plugins import (
    NO_METHOD_HINT,
    check_cipher,
    default_envelope,
    resolve_envelope,
    short_envelope_name,
    wants_stub,
)
from .sessions import check_send_envelope, open_account
from .sessions import report_load_errors as report_load_errors

__all__ = ["ReceiveOptions", "SendOptions", "run_receive", "run_send"]

Transport = Literal["auto", "webrtc", "s5b", "ibb"]


def _peer_jid(value: str, option: str) -> JID:
    try:
        return JID(value)
    except InvalidJID as exc:
        raise CLIError(
            ExitCode.USAGE, "usage", f"{option}: {exc}", "Write it like name@example.org."
        ) from None


def _direct_host(values: Sequence[str]) -> DirectAddresses:
    """The ``--direct-host`` values as ``open_file_transfer(direct_addresses=...)``."""
    words = [v.strip() for v in values if v.strip()]
    if any(v.lower() == "none" for v in words):
        if len(words) > 1:
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                "--direct-host none cannot be combined with other addresses",
                "Pass --direct-host none alone to offer only the server's proxy.",
            )
        return None
    words = ["auto" if v.lower() == "auto" else v for v in words]
    for word in words:
        problem = None if word == "auto" else candidate_host_problem(word)
        if problem is not None:
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                f"--direct-host: {problem}",
                "Give an IP address or host name of this machine, auto, or none.",
            )
    return "auto" if words in ([], ["auto"]) else words


def hint_partials(
    out: Output, directory: Path, sha256: str | None = None, *, name: str | None = None
) -> None:
    """After a failed download: say which partial downloads were kept and how to resume them
    (those of the file with that SHA-256, else of that name, else all)."""
    try:
        kept = [
            p
            for p in find_partials(directory)
            if (p.sha256 == sha256 if sha256 else name is None or p.name == name)
        ]
    except (OSError, TransferError):
        return
    for p in kept:
        if p.sha256:
            how = (
                f"the sender sending it again completes it, or `jet-trio resume {p.sidecar}` "
                "(the sender must run `jet-trio share` with the file)"
            )
        else:
            how = "the sender sending it again completes it"
        out.warn(f"kept {p.received} of {p.size} bytes of {p.name} from {p.peer.bare}: {how}")


@dataclass(frozen=True)
class SendOptions:
    files: tuple[Path, ...]
    to: str
    name: str | None
    parallel: int
    follow_symlinks: bool
    envelope: str | None
    cipher: str | None
    transport: Transport
    wait: float
    direct_host: tuple[str, ...]
    accept_timeout: float


STDIN = "-"


def _usage(message: str, hint: str) -> CLIError:
    return CLIError(ExitCode.USAGE, "usage", message, hint)


def _check_sources(opts: SendOptions) -> None:
    """Before logging in: the arguments name files, directories or standard input, once."""
    stdin = [f for f in opts.files if str(f) == STDIN]
    if len(stdin) > 1:
        raise _usage("- (standard input) can be given only once", "Pass - once.")
    if stdin and opts.name is None:
        raise _usage(
            "- (standard input) needs a name for the recipient",
            "Pass --name NAME, e.g. `tar c dir | jet-trio send - --name dir.tar --to JID`.",
        )
    if opts.name is not None:
        if not stdin and (len(opts.files) != 1 or opts.files[0].is_dir()):
            raise _usage(
                "--name names standard input (-) or the one FILE sent",
                "Pass --name with - or with a single file.",
            )
        if not opts.name.strip() or "/" in opts.name or "\\" in opts.name or "\0" in opts.name:
            raise _usage(f"--name {opts.name!r} is not a file name", "Give a name without /.")
    if stdin and sys.stdin.isatty():
        raise _usage(
            "- reads standard input, which is a terminal here",
            "Pipe the data in: `command | jet-trio send - --name NAME --to JID`.",
        )
    for f in opts.files:
        if str(f) == STDIN or f.is_dir():
            continue
        if not f.is_file():
            what = "does not exist" if not f.exists() else "is not a regular file or directory"
            raise CLIError(ExitCode.FILE, "file", f"{f} {what}", "Check the path.")


def _spool_stdin(dest: Path) -> None:
    """Standard input into ``dest`` (its hash is offered first, so it must be read whole)."""
    with dest.open("wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1024 * 1024)


@contextlib.asynccontextmanager
async def _sending(
    out: Output, account: AccountOptions, opts: SendOptions
) -> AsyncIterator[tuple[FileTransfer, JID, str | None]]:
    """Logged in, encryption chosen, the recipient online: the service, the JID to send to
    and the ``encrypt`` argument."""
    to = _peer_jid(opts.to, "--to")
    check_cipher(opts.cipher)
    direct = _direct_host(opts.direct_host)
    async with open_account(
        out,
        account,
        envelope=opts.envelope,
        allow_stub=wants_stub(opts.envelope),
        direct=direct,
        file_transfer=False,
        sending=True,
    ) as opened:
        client, plugins = opened.client, opened.plugins
        namespace = _choose_envelope(out, opts.envelope, plugins)
        async with open_file_transfer(
            client,
            plugins=plugins,
            direct_addresses=direct,
            cipher_preference=cipher_preference(str(account.jid())),
            **data_channel(str(account.jid())),
        ) as ft:
            await client.send_presence()  # now ready: keys published, features advertised
            out.note(f"logged in as {client.jid}; waiting for {to} to be online")
            peer = await wait_for_peer(
                client,
                to,
                opts.wait,
                "Check that the recipient is online, or wait longer with --wait.",
            )
            await _warn_unsupported(out, client, peer, namespace, plugins)
            out.note(f"{peer} is online; sending with {_how(namespace, plugins)}")
            yield ft, (to if to.is_bare else peer), namespace


async def run_send(out: Output, account: AccountOptions, opts: SendOptions) -> int:
    _check_sources(opts)
    with contextlib.ExitStack() as stack:
        files = list(opts.files)
        spooled: Path | None = None
        if STDIN in map(str, files):
            assert opts.name is not None
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jet-trio-")))
            spooled = tmp / "stdin"
            await trio.to_thread.run_sync(_spool_stdin, spooled, abandon_on_cancel=True)
            files = [spooled if str(f) == STDIN else f for f in files]
            opts = dataclasses.replace(opts, files=tuple(files))
        if len(files) == 1 and not files[0].is_dir():
            return await _send_one(out, account, opts, files[0])
        return await _send_batch(out, account, opts, spooled)
    raise AssertionError("unreachable")


async def _send_one(out: Output, account: AccountOptions, opts: SendOptions, file: Path) -> int:
    name = opts.name or file.name
    size = (await trio.Path(file).stat()).st_size
    async with _sending(out, account, opts) as (ft, to, namespace):
        out.note(f"offering {name} to {to}")
        with out.progress() as bars:
            result = await ft.send_file(
                file,
                to,
                encrypt=namespace,
                cipher=opts.cipher,
                transport=opts.transport,
                name=name,
                progress=bars.bar(f"sending {name}", size),
                accept_timeout=opts.accept_timeout,
            )
    out.transfer(result)
    return ExitCode.OK


def _count(opts: SendOptions) -> tuple[int, int]:
    """Files and bytes the batch will send (a walk of its directories, nothing opened)."""
    files = size = 0
    for f in opts.files:
        if f.is_dir():
            for entry in walk_tree(f, follow_symlinks=opts.follow_symlinks):
                if entry.kind == "file":
                    files += 1
                    size += entry.size
        else:
            files += 1
            size += f.stat().st_size
    return files, size


def _items(
    opts: SendOptions, report: Callable[[TreeEntry], None], stdin: Path | None
) -> Iterator[BatchItem]:
    """The files of the batch, lazily, with flat unique names (``stdin``: the file holding
    standard input, offered as ``--name``); the entries of its directories that are not sent
    go to ``report`` (called in the trio thread: this generator runs in a worker thread)."""
    names = FlatNames()
    for f in opts.files:
        if not f.is_dir():
            name = opts.name if f == stdin and opts.name else f.name
            try:
                size: int | None = f.stat().st_size
            except OSError:
                size = None  # gone since it was checked: its send says so
            yield BatchItem(f, names.name_for([name]), size=size)
            continue
        for entry in walk_tree(f, follow_symlinks=opts.follow_symlinks):
            if entry.kind != "file":
                trio.from_thread.run_sync(report, entry)
                continue
            parts = entry.relative[1:] or entry.relative
            yield BatchItem(entry.path, names.name_for(parts), entry.relative_path, entry.size)


def _report_skipped(out: Output, entry: TreeEntry) -> None:
    why = "an empty directory (only files are sent)" if entry.kind == "empty-dir" else entry.note
    out.warn(f"skipped {entry.relative_path}: {why}")
    out.emit(
        {
            "status": "skipped",
            "relative": entry.relative_path,
            "path": str(entry.path),
            "reason": why,
        }
    )


def _report_failed(out: Output, outcome: FileOutcome) -> Failure:
    assert outcome.error is not None
    failure = classify(outcome.error)
    item = outcome.item
    out.err.print(
        f"jet-trio: error: {shown(item.offered_name)}: {shown(failure.line())}", style="bold red"
    )
    extra: dict[str, object] = {"name": item.offered_name, "path": str(item.path)}
    if item.relative is not None:
        extra["relative"] = item.relative
    out.emit({**failure.as_json(), **extra})
    return failure


async def _send_batch(
    out: Output, account: AccountOptions, opts: SendOptions, stdin: Path | None
) -> int:
    files, total = await trio.to_thread.run_sync(_count, opts)
    folders = [f for f in opts.files if f.is_dir()]
    skipped = 0
    failures: list[Exception] = []

    def report(entry: TreeEntry) -> None:
        nonlocal skipped
        skipped += 1
        _report_skipped(out, entry)

    async with _sending(out, account, opts) as (ft, to, namespace):
        rebuilds = bool(folders) and await ft.rebuilds_folders(to)
        if folders and rebuilds:
            shown_dirs = ", ".join(f"{f}/" for f in folders)
            out.note(
                f"{to} rebuilds folders (jet-trio): the files of {shown_dirs} go with their "
                "paths (empty directories are not sent)"
            )
        elif folders:
            shown_dirs = ", ".join(f"{f}/" for f in folders)
            out.warn(
                f"the files of {shown_dirs} go as separate files with flat names "
                f"(a/b/c.txt as b{FLAT_SEPARATOR}c.txt): the recipient gets no folders"
            )
        out.note(f"offering {files} files ({human_size(total)}) to {to}, {opts.parallel} at once")
        with out.progress() as bars:
            overall = bars.bar(f"{files} files", total)
            removers: dict[int, Callable[[], None]] = {}

            def file_progress(item: BatchItem) -> ProgressCallback | None:
                update, remove = bars.removable(f"  {item.offered_name}", 0)
                removers[id(item)] = remove
                return update

            def progress(p: BatchProgress) -> None:
                if overall is not None:
                    overall(p.bytes_done, total)

            def ended(outcome: FileOutcome) -> None:
                removers.pop(id(outcome.item), lambda: None)()
                if outcome.result is not None:
                    extra = {"relative": outcome.item.relative} if outcome.item.relative else {}
                    out.transfer(outcome.result, **extra)
                else:
                    assert outcome.error is not None
                    failure = _report_failed(out, outcome)
                    if failure.code is ExitCode.INTERNAL and out.debug:
                        traceback.print_exception(outcome.error)
                    failures.append(outcome.error)

            batch = await send_files(
                ft,
                _items(opts, report, stdin),
                to,
                max_concurrent=opts.parallel,
                encrypt=namespace,
                cipher=opts.cipher,
                transport=opts.transport,
                accept_timeout=opts.accept_timeout,
                file_progress=file_progress,
                progress=progress,
                on_outcome=ended,
                total_bytes=total,
                keep_outcomes=False,
                folders=rebuilds,
            )
    code = classify(ExceptionGroup("batch", failures)).code if failures else ExitCode.OK
    out.say(
        f"{'[green]' if not failures else '[yellow]'}sent {batch.sent} of {batch.files} "
        f"files[/] ({human_size(batch.bytes_sent)}) to {shown(to)} in {batch.seconds:.2f} s"
        + (f", {batch.failed} failed" if batch.failed else "")
        + (f", {skipped} skipped" if skipped else "")
    )
    out.emit(
        {
            "status": "summary",
            "direction": "send",
            "peer": str(to),
            "files": batch.files,
            "sent": batch.sent,
            "failed": batch.failed,
            "skipped": skipped,
            "bytes": batch.bytes_sent,
            "seconds": round(batch.seconds, 6),
            "exit_code": int(code),
        }
    )
    return code


def _choose_envelope(out: Output, name: str | None, plugins: PluginManager) -> str | None:
    check_send_envelope(plugins.config.client, name)  # no quiet stand-in for a failed session
    if name is None:
        namespace = default_envelope(plugins)
        if namespace is None:
            raise CLIError(
                ExitCode.ENCRYPTION,
                "encryption",
                "no end-to-end encryption method is installed",
                f"{NO_METHOD_HINT[0].upper()}{NO_METHOD_HINT[1:]}, or pass --envelope none to "
                "send without end-to-end encryption.",
            )
        return "auto"  # the strongest method both sides support (OMEMO 2 before legacy OMEMO)
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


async def _warn_unsupported(
    out: Output, client: Client, peer: JID, namespace: str | None, plugins: PluginManager
) -> None:
    """Before offering with an explicitly chosen method: say when ``peer`` does not advertise
    it, and how they get it (the method's install hint); the offer is still made."""
    if namespace in (None, "auto"):
        return
    method = plugins.envelope(namespace)
    try:
        with trio.fail_after(10):
            info = await client.features_of(peer)
    except (trio.TooSlowError, JetError):
        return
    if info.has(*method.features):
        return
    get = f"; they can install it: {method.install_hint}" if method.install_hint else ""
    out.warn(
        f"{peer} does not advertise the {method.short_name or method.namespace} envelope method, "
        f"so it will probably refuse the offer{get}"
    )


def _how(namespace: str | None, plugins: PluginManager | None = None) -> str:
    if namespace == "auto":
        return "the strongest end-to-end encryption both sides support"
    return short_envelope_name(namespace, plugins) if namespace else "no end-to-end encryption"


@dataclass(frozen=True)
class ReceiveOptions:
    output_dir: Path
    count: int
    sender: str | None
    max_size: int | None
    accept_unencrypted: bool
    accept_stub: bool
    overwrite: bool
    rename: bool
    timeout: float | None
    direct_host: tuple[str, ...]
    parallel: int = 4
    max_files: int | None = None
    no_resume: bool = False


@dataclass(frozen=True)
class _Refusal:
    """Why an offer is refused: ``local`` for this side (paths, options to pass), ``peer``
    for the sender (nothing of the receiver's file system or options)."""

    local: str
    peer: str


def _refusal(
    offer: IncomingOffer,
    opts: ReceiveOptions,
    sender: JID | None,
    plugins: PluginManager,
    reserved: int = 0,
    accepted_bytes: int = 0,
) -> _Refusal | None:
    """Why ``offer`` is refused, or ``None`` to accept it (``reserved``: bytes the files being
    received may still write into the output directory; ``accepted_bytes``: the sizes of the
    files accepted so far in this run, which ``--max-size`` bounds with this one)."""
    if sender is not None and offer.peer.bare != sender.bare:
        return _Refusal(
            f"it comes from {offer.peer.bare}, not from {sender.bare} (--from)",
            "the recipient accepts files only from someone else",
        )
    if opts.max_size is not None and offer.size > opts.max_size:
        return _Refusal(
            f"it is {offer.size} bytes, more than --max-size {opts.max_size}",
            f"it is {offer.size} bytes, more than the recipient accepts ({opts.max_size})",
        )
    if opts.max_size is not None and accepted_bytes + offer.size > opts.max_size:
        return _Refusal(
            f"it is {offer.size} bytes and {accepted_bytes} were accepted already in this run, "
            f"more than --max-size {opts.max_size} in all",
            f"the recipient accepts no more than {opts.max_size} bytes in all",
        )
    if offer.envelope is None and not opts.accept_unencrypted:
        return _Refusal(
            "it is not end-to-end encrypted (pass --accept-unencrypted to allow that)",
            "it is not end-to-end encrypted, which the recipient does not accept",
        )
    if offer.envelope == _ns.JET_STUB and not opts.accept_stub:
        return _Refusal(
            "it uses the insecure stub envelope (pass --accept-stub to allow that, for tests)",
            "it uses the insecure stub envelope, which the recipient does not accept",
        )
    if offer.envelope is not None:
        loaded = {env.namespace for env in plugins.envelopes}
        if offer.envelope not in loaded:
            why = (
                f"it is encrypted with {short_envelope_name(offer.envelope, plugins)}, which is "
                "not installed here"
            )
            return _Refusal(why, why.replace("here", "at the recipient"))
    try:
        name = safe_filename(offer.name)
    except FileTransferError as exc:
        return _Refusal(f"its file name is unusable: {exc}", f"its file name is unusable: {exc}")
    try:
        where = offer.target(opts.output_dir)
    except UnsafePath:
        where = None  # accepting refuses it, saying why
    if where is not None and os.path.lexists(where) and not (opts.overwrite or opts.rename):
        shown_name = offer.path if where.name != name and offer.path else name
        return _Refusal(
            f"{where} already exists (pass --rename to store it under a free "
            "name, or --overwrite to replace it)",
            f"the recipient already has a file named {shown_name!r}",
        )
    free = _free_space(opts.output_dir)
    if free is not None:
        free = max(0, free - reserved)
    if free is not None and offer.size > free:
        needs = f"it needs {human_size(offer.size)}, {human_size(free)} free"
        return _Refusal(f"{needs} in {opts.output_dir}", f"{needs} at the recipient")
    return None


def _report_refusal(out: Output, offer: IncomingOffer, why: _Refusal) -> None:
    out.warn(f"refused {offer.name!r} from {offer.peer}: {why.local}")
    out.emit(
        {
            "status": "refused",
            "peer": str(offer.peer),
            "name": offer.name,
            "size": offer.size,
            "envelope": offer.envelope,
            "reason": why.local,
        }
    )


async def _reject_quietly(offer: IncomingOffer, why: _Refusal) -> None:
    with contextlib.suppress(Exception):
        await offer.reject("decline", f"refused: {why.peer}")


async def _receive_one(
    out: Output,
    opts: ReceiveOptions,
    offer: IncomingOffer,
    bars: ProgressBars,
    plugins: PluginManager | None = None,
    paths: PathSet | None = None,
) -> ExitCode:
    """Accept ``offer`` and report how it ended; the exit code it calls for."""
    how = (
        f"encrypted with {short_envelope_name(offer.envelope, plugins)}"
        if offer.envelope
        else "NOT encrypted"
    )
    shown_name = offer.path or offer.name
    out.note(f"accepting {shown_name} ({human_size(offer.size)}) from {offer.peer}, {how}")
    sha = next((h.digest.hex() for h in offer.file.hashes if h.algo == "sha-256"), None)
    try:
        result = await offer.accept(
            opts.output_dir,
            progress=bars.bar(f"receiving {shown_name}", offer.size),
            overwrite=opts.overwrite,
            rename=opts.rename,
            paths=paths,
            resume=not opts.no_resume,
        )
    except Exception as exc:
        hint_partials(out, _folder_of(offer, opts.output_dir), sha, name=offer.name)
        failure = classify(exc)
        if failure.code is ExitCode.INTERNAL:
            raise
        if isinstance(exc, UnsafePath):
            out.err.print(
                f"jet-trio: refused {shown(offer.name)} from {shown(str(offer.peer))}: "
                f"{shown(failure.line())}",
                style="bold red",
            )
            out.emit({**failure.as_json(), "name": offer.name, "relative": offer.path})
            return failure.code
        out.failure(failure)
        return failure.code
    except BaseException:  # Ctrl-C, --timeout
        hint_partials(out, _folder_of(offer, opts.output_dir), sha, name=offer.name)
        raise
    out.transfer(result, **({"relative": offer.path} if offer.path else {}))
    return ExitCode.OK


def _folder_of(offer: IncomingOffer, output_dir: Path) -> Path:
    """The directory ``offer`` is received into (a file of a folder: its own directory)."""
    try:
        return offer.target(output_dir).parent
    except (UnsafePath, OSError):
        return output_dir


def check_output_dir(path: Path) -> None:
    """Before logging in: ``path`` exists, is a directory and can be written to."""
    if not path.exists():
        problem = "does not exist"
    elif not path.is_dir():
        problem = "is not a directory"
    elif not os.access(path, os.W_OK | os.X_OK):  # also a read-only file system, even as root
        problem = "is not writable"
    else:
        return
    raise CLIError(
        ExitCode.FILE,
        "file",
        f"the output directory {path} {problem}",
        "Create it first (or fix its permissions), or choose another with --output-dir.",
    )


def _free_space(directory: Path) -> int | None:
    """Bytes an unprivileged user may still write under ``directory`` (``None``: unknown)."""
    try:
        st = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


async def run_receive(out: Output, account: AccountOptions, opts: ReceiveOptions) -> int:
    check_output_dir(opts.output_dir)
    direct = _direct_host(opts.direct_host)
    sender = _peer_jid(opts.sender, "--from") if opts.sender else None
    first_error = ExitCode.OK
    done = 0
    async with open_account(
        out,
        account,
        allow_stub=opts.accept_stub,
        direct=direct,
        file_transfer=False,
        prepare_sessions=True,  # offers may never need an envelope session's libraries
    ) as opened:
        client, plugins = opened.client, opened.plugins
        if not plugins.envelopes and not opts.accept_unencrypted:
            out.warn(
                "no end-to-end encryption method is installed: every offer will be refused "
                f"({NO_METHOD_HINT})"
            )
        async with open_file_transfer(
            client, plugins=plugins, direct_addresses=direct, **data_channel(str(client.jid))
        ) as ft:
            await client.send_presence()  # senders see us only once we can receive
            wanted = "files" if opts.count != 1 else "a file"
            from_ = f" from {sender}" if sender else ""
            out.note(f"logged in as {client.jid}; waiting for {wanted}{from_}")
            deadline = math.inf if opts.timeout is None else trio.current_time() + opts.timeout
            # Offers are answered as they come, and up to --parallel received at once: one
            # slow or silent sender does not hold up the others.
            slots = trio.Semaphore(opts.parallel)
            accepted = accepted_bytes = 0
            paths = PathSet()  # the relative paths of this run's files of folders
            # The files being received share the free space: each counts in full until it
            # ends (conservative: what it wrote already is counted twice meanwhile).
            reserved = 0
            with trio.move_on_at(deadline) as waiting, out.progress() as bars:
                async with trio.open_nursery() as nursery:
                    while not opts.count or accepted < opts.count:
                        await slots.acquire()
                        offer = await ft.next_offer()
                        why = _refusal(offer, opts, sender, plugins, reserved, accepted_bytes)
                        if why is None and opts.max_files and accepted >= opts.max_files:
                            why = _Refusal(
                                f"{accepted} files were accepted already (--max-files)",
                                "the recipient accepts no more files",
                            )
                        if why is not None:
                            slots.release()
                            _report_refusal(out, offer, why)
                            nursery.start_soon(_reject_quietly, offer, why)
                            continue
                        accepted += 1
                        accepted_bytes += offer.size
                        reserved += offer.size

                        async def take(offer: IncomingOffer = offer) -> None:
                            nonlocal first_error, done, reserved
                            try:
                                code = await _receive_one(out, opts, offer, bars, plugins, paths)
                            finally:
                                reserved -= offer.size
                                slots.release()
                            first_error = first_error or code
                            done += 1

                        nursery.start_soon(take)
            if waiting.cancelled_caught and opts.count:
                raise CLIError(
                    ExitCode.TIMEOUT,
                    "timeout",
                    f"{done} of {opts.count or 'any number of'} files arrived within "
                    f"{opts.timeout:g} s",
                    "Wait longer with --timeout, or check the sender.",
                )
    return first_error
