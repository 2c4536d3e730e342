"""``jet-trio demo``: a whole encrypted transfer on this machine, in a few seconds.

It starts the in-process XMPP server of :mod:`jet_trio.testing` on 127.0.0.1 (STARTTLS with a
throwaway certificate authority, a SOCKS5 proxy), logs in two accounts, and sends a generated
(or given) file from one to the other with JET, exactly as ``jet-trio send`` / ``receive``
would through a real server.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from .._jet.envelope import KeyNotice
from .._plugins.manager import PluginManager
from .._transfer.types import TransferResult
from .._xmpp import ns as _ns
from .account import AccountOptions
from .errors import CLIError, ExitCode
from .output import Output, human_size, rate, shown
from .plugins import (
    NO_METHOD_HINT,
    check_cipher,
    resolve_envelope,
    short_envelope_name,
    wants_stub,
)
from .sessions import EnvelopeSessions, open_account
from .tls import make_demo_tls

__all__ = ["DemoOptions", "run_demo"]

DOMAIN = "localhost"
DEFAULT_SIZE = 8 * 1024 * 1024
MAX_GENERATED = 4 * 1024**3


@dataclass(frozen=True)
class DemoOptions:
    size: int
    file: Path | None
    envelope: str | None
    transport: Literal["auto", "webrtc", "s5b", "ibb"]
    output_dir: Path | None
    timeout: float
    cipher: str | None = None


def _generate(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 1024 * 1024)
            f.write(os.urandom(n))
            left -= n


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _check_options(opts: DemoOptions) -> None:
    check_cipher(opts.cipher)
    if opts.file is not None and not opts.file.is_file():
        raise CLIError(ExitCode.FILE, "file", f"{opts.file} is not a file", "Check the path.")
    if opts.file is None and not 0 <= opts.size <= MAX_GENERATED:
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"--size {opts.size} is out of range",
            f"Choose between 0 and {MAX_GENERATED} bytes.",
        )
    if opts.output_dir is not None and not opts.output_dir.is_dir():
        raise CLIError(
            ExitCode.FILE,
            "file",
            f"the output directory {opts.output_dir} does not exist",
            "Create it first.",
        )


async def run_demo(out: Output, opts: DemoOptions) -> int:
    _check_options(opts)
    with tempfile.TemporaryDirectory(prefix="jet-trio-demo-") as tmp:
        work = Path(tmp)
        with trio.fail_after(opts.timeout):
            result, sent = await _demo(out, opts, work)
        kept = opts.output_dir is not None
        if out.json_mode:
            out.emit(_json(result, sent, kept=kept))
        else:
            _summary(out, result, sent, kept)
    return ExitCode.OK


async def _demo(
    out: Output, opts: DemoOptions, work: Path
) -> tuple[TransferResult, TransferResult]:
    from ..testing import serve, serve_proxy65

    tls = make_demo_tls(DOMAIN, work)
    accounts = {"alice": secrets.token_urlsafe(16), "bob": secrets.token_urlsafe(16)}
    if opts.file is not None:
        src = opts.file
    else:
        (work / "outbox").mkdir()
        src = work / "outbox" / "demo-payload.bin"
        _generate(src, opts.size)
    dest_dir = opts.output_dir or (work / "inbox")
    dest_dir.mkdir(exist_ok=True)
    ca_file = work / "ca.pem"
    ca_file.write_bytes(tls.ca_pem)

    async with (
        serve_proxy65(jid=f"proxy.{DOMAIN}") as proxy,
        serve(DOMAIN, tls=tls.server_context, accounts=accounts, proxy65=proxy) as server,
    ):
        out.note(
            f"in-process XMPP server for {DOMAIN} on {server.host}:{server.port} (STARTTLS, "
            f"private CA), SOCKS5 proxy {proxy.jid} on {proxy.host}:{proxy.port}"
        )

        def login(user: str) -> AccountOptions:
            """The account options ``--account``, ``--password-file``, ``--server``,
            ``--ca-file`` and ``--data-dir`` would give: the demo logs in as send does."""
            password_file = work / f"{user}.password"
            password_file.touch(mode=0o600)
            password_file.write_text(accounts[user] + "\n", encoding="utf-8")
            return AccountOptions(
                account=str(server.jid(user, "demo")),
                password_file=password_file,
                server=f"{server.host}:{server.port}",
                ca_file=ca_file,
                direct_tls=False,
                data_dir=work / "data",
            )

        allow_stub = opts.envelope is None or wants_stub(opts.envelope)
        async with (
            # The start-up of every command that logs in (open_account). Two throwaway accounts
            # that trust each other on first use: no key notices to show. Both ends run in
            # this process: loopback is their direct path.
            open_account(
                out,
                login("alice"),
                allow_stub=allow_stub,
                direct=["127.0.0.1"],
                notify=_no_notices,
            ) as alice_account,
            open_account(
                out,
                login("bob"),
                allow_stub=allow_stub,
                direct=["127.0.0.1"],
                notify=_no_notices,
                report_errors=False,  # the same plugins as alice's: reported once
            ) as bob_account,
        ):
            alice, ft_alice = alice_account.client, alice_account.ft
            bob, ft_bob = bob_account.client, bob_account.ft
            assert ft_alice is not None and ft_bob is not None
            namespace = _envelope(out, opts.envelope, alice_account.plugins, alice_account.sessions)
            with trio.fail_after(10):
                await alice.wait_available(bob.jid)
            how = short_envelope_name(namespace) if namespace else "no end-to-end encryption"
            size = src.stat().st_size
            out.note(
                f"{alice.jid} sends {src.name} ({human_size(size)}) to {bob.jid}: {how}, "
                f"transport {opts.transport}"
            )
            results: dict[str, TransferResult] = {}
            with out.progress() as bars:

                async def receive() -> None:
                    offer = await ft_bob.next_offer()
                    results["receive"] = await offer.accept(
                        dest_dir,
                        overwrite=True,
                        progress=bars.bar(f"{bob.jid} receives", offer.size),
                    )

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(receive)
                    results["send"] = await ft_alice.send_file(
                        src,
                        bob.jid,
                        encrypt=namespace,
                        cipher=opts.cipher,
                        transport=opts.transport,
                        progress=bars.bar(f"{alice.jid} sends", size),
                    )
    received = results["receive"]
    if _sha256(received.path) != results["send"].sha256:
        raise CLIError(
            ExitCode.INTEGRITY,
            "integrity",
            "the received file differs from the sent one",
            "This is a bug in jet-trio; please report it.",
        )
    return received, results["send"]


def _no_notices(notice: KeyNotice) -> None:
    pass


def _envelope(
    out: Output, name: str | None, plugins: PluginManager, sessions: EnvelopeSessions
) -> str | None:
    if name is not None:
        namespace = resolve_envelope(name, plugins)
    else:
        # The first method of a running envelope session (OMEMO when installed): one that
        # needs no set-up of its own (no key to make and publish for a demo).
        running = sessions.default_envelopes or frozenset()
        namespace = next(
            (
                env.namespace
                for env in plugins.envelopes
                if not env.testing_only and (env.namespace in running or env.short_name in running)
            ),
            None,
        )
        if namespace is None:
            namespace = _ns.JET_STUB
            out.warn(
                "no envelope plugin with a session is installed, so this demo uses the INSECURE "
                "stub envelope: the file is encrypted, but its key travels in clear text "
                "through the server. Never use the stub for real files; "
                f"{NO_METHOD_HINT} for real end-to-end encryption."
            )
            return namespace
    if namespace == _ns.JET_STUB:
        out.warn("the stub envelope sends the key in clear text (testing and demos only)")
    elif namespace is None:
        out.warn("--envelope none: this demo transfer is NOT encrypted end to end")
    return namespace


def _json(received: TransferResult, sent: TransferResult, *, kept: bool) -> dict[str, object]:
    from .output import result_json

    return result_json(
        received,
        sender=str(received.peer),
        receiver=str(sent.peer),
        sender_seconds=round(sent.seconds, 6),
        kept=kept,
        demo=True,
    )


def _summary(out: Output, received: TransferResult, sent: TransferResult, kept: bool) -> None:
    seconds = received.seconds
    # Values are Rich markup: what came from elsewhere (names, paths) is escaped here.
    envelope = (
        shown(f"{short_envelope_name(received.envelope)} ({received.envelope})")
        if received.envelope
        else "[red]none: NOT encrypted[/]"
    )
    rows = [
        ("file", f"{shown(received.name)}, {received.size} bytes ({human_size(received.size)})"),
        ("envelope", envelope),
        ("cipher", shown(received.cipher or "none")),
        ("transport", received.transport),
        ("bytes on the wire", f"{received.wire_bytes}"),
        ("time", f"{seconds:.2f} s"),
        ("throughput", rate(received) or "not measured (less than 1 MiB moved)"),
        (
            "hash verified",
            f"[green]yes[/] (sha-256 {received.sha256[:16]}...)"
            if received.hash_verified
            else "[red]no[/]",
        ),
        (
            "received file",
            shown(received.path) if kept else "deleted (pass --output-dir to keep it)",
        ),
    ]
    out.say(f"[bold]{shown(received.peer)} -> {shown(sent.peer)}: transfer complete[/]")
    for key, value in rows:
        out.say(f"  {key + ':':<19}{value}")
