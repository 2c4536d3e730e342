"""The ``jet-trio`` command line: option parsing and the run/exit-code shell of every command.

The commands' work lives in ``_cli_demo``, ``_cli_transfer``, ``_cli_files``, ``_cli_keys`` and
``_cli_plugins``; what they print in ``_cli_output``; exit codes in ``_cli_errors``.
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import click

from .. import __version__
from .errors import CLIError, ExitCode, Failure

if TYPE_CHECKING:
    from .account import AccountOptions
    from .output import Output

# Start-up time matters (``jet-trio --help`` should answer at once): trio, rich and the library
# itself are imported by the command that runs, not by this module.

# The library's default (``jet_trio._xmpp.connect.DEFAULT_LOGIN_TIMEOUT``), written here so that
# building the command line imports nothing heavy; tests/cli/test_startup.py checks they agree.
DEFAULT_LOGIN_TIMEOUT = 30.0

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])
TRANSPORTS = ("auto", "webrtc", "s5b", "ibb")


def _run(out: Output, fn: Callable[[], Awaitable[int]]) -> int:
    """Run ``fn`` under trio; turn any exception into its exit code (and one error line)."""
    import trio

    from .errors import classify

    try:
        return int(trio.run(_interruptible, fn))
    except BaseException as exc:  # every failure becomes an exit code
        if isinstance(exc, SystemExit):
            raise
        failure = classify(exc)
        if out.debug:
            traceback.print_exception(exc)
        out.failure(failure)
        return int(failure.code)


async def _interruptible(fn: Callable[[], Awaitable[int]]) -> int:
    """Run ``fn``; Ctrl-C (SIGINT) cancels it, then raises :class:`KeyboardInterrupt` (exit
    code 130). A cancellation, unlike a KeyboardInterrupt that trio may raise anywhere, lets
    every session end cleanly: the peer is told ``cancel`` before the connection closes."""
    import signal

    import trio

    interrupted = False
    result = 0
    work = trio.CancelScope()

    async def on_sigint(signals: AsyncIterator[int]) -> None:
        nonlocal interrupted
        async for _ in signals:
            interrupted = True
            work.cancel()
            return

    with trio.open_signal_receiver(signal.SIGINT) as signals:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_sigint, signals)
                try:
                    with work:
                        result = await fn()
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # what fn raised, not the nursery's wrapping
                raise group.exceptions[0] from None
            raise
    if interrupted:
        raise KeyboardInterrupt
    return result


def _refuse_password(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            "a password is not accepted on the command line (other users can read it with ps, "
            "and it stays in the shell history)",
            "Use --password-file FILE, the JET_TRIO_PASSWORD environment variable, or the prompt.",
        )


def output_options(fn: F) -> F:
    fn = click.option(
        "--debug",
        is_flag=True,
        help="As -vv: log everything (the protocol, the plugins' libraries) on standard error; "
        "tracebacks on errors.",
    )(fn)
    fn = click.option(
        "--verbose",
        "-v",
        count=True,
        help="-v: also show jet-trio's own steps (login, candidates, fallbacks); -vv: everything, "
        "as --debug.",
    )(fn)
    fn = click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="Only results, warnings and errors: no progress notes or bars.",
    )(fn)
    fn = click.option(
        "--json",
        "json_mode",
        is_flag=True,
        help="Print one JSON object per line (per transfer, per error) on standard output.",
    )(fn)
    return fn


plugin_option = click.option(
    "--plugin-option",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="An option for the plugin NAME (as `jet-trio plugins` lists it); repeatable. "
    "Overrides [plugins.NAME] of the configuration file.",
)


def account_options(fn: F) -> F:
    options = [
        click.option(
            "--account",
            "-a",
            envvar="JET_TRIO_ACCOUNT",
            metavar="JID",
            help="Your XMPP address (or set JET_TRIO_ACCOUNT).",
        ),
        click.option(
            "--password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="JET_TRIO_PASSWORD_FILE",
            help="Read the password from the first line of this file. Otherwise it comes from "
            "JET_TRIO_PASSWORD or a prompt; never from an argument.",
        ),
        click.option(
            "--password",
            hidden=True,
            expose_value=False,
            is_eager=True,
            callback=_refuse_password,
        ),
        click.option(
            "--server",
            envvar="JET_TRIO_SERVER",
            metavar="HOST[:PORT]",
            help="Connect here instead of looking up the domain's SRV records.",
        ),
        click.option(
            "--ca-file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="JET_TRIO_CA_FILE",
            help="Trust the server certificates issued by this CA (PEM) instead of the system's.",
        ),
        click.option(
            "--direct-tls",
            is_flag=True,
            help="TLS from the first byte (XEP-0368); servers found without it must offer "
            "STARTTLS.",
        ),
        click.option(
            "--login-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_LOGIN_TIMEOUT,
            show_default=True,
            envvar="JET_TRIO_LOGIN_TIMEOUT",
            metavar="SECONDS",
            help="Give up logging in after this long; each stage of one server (connect, TLS, "
            "stream, SASL, bind) gets a third of it before the next server is tried.",
        ),
        click.option(
            "--no-plain",
            is_flag=True,
            envvar="JET_TRIO_NO_PLAIN",
            help="Never send the password with SASL PLAIN, even over TLS (SCRAM only).",
        ),
        click.option(
            "--save-password",
            is_flag=True,
            help="After a successful login, keep the password in the system keyring (needs "
            "jet-trio[keyring]); later runs take it from there. Never done without this option.",
        ),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="JET_TRIO_DATA_DIR",
            help="Where plugins keep their keys and state (default: $XDG_DATA_HOME/jet-trio, "
            "one subdirectory per account).",
        ),
        plugin_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _account(kw: dict[str, Any]) -> AccountOptions:
    from .account import AccountOptions

    return AccountOptions(
        account=kw.pop("account"),
        password_file=kw.pop("password_file"),
        server=kw.pop("server"),
        ca_file=kw.pop("ca_file"),
        direct_tls=kw.pop("direct_tls"),
        data_dir=kw.pop("data_dir"),
        login_timeout=kw.pop("login_timeout"),
        allow_plain=not kw.pop("no_plain"),
        save_password=kw.pop("save_password"),
    )


_Opts = TypeVar("_Opts")


def _options(cls: type[_Opts], kw: dict[str, Any], **given: Any) -> _Opts:
    """A command's options dataclass from the click values of the same names (``given``
    supplies the fields that are not plain click values)."""
    names = [f.name for f in dataclasses.fields(cast(Any, cls))]
    return cls(**{n: given[n] if n in given else kw[n] for n in names})


def command(fn: Callable[..., Callable[[Output], Awaitable[int]]]) -> Callable[..., int]:
    """Wrap a command body returning ``async fn(out) -> exit code`` into the run shell."""

    @wraps(fn)
    def wrapper(*, json_mode: bool, debug: bool, verbose: int, quiet: bool, **kw: Any) -> int:
        from .config import activate
        from .output import DEBUG, Output, setup_logging

        if quiet and (verbose or debug):
            failure = Failure(
                ExitCode.USAGE,
                "usage",
                "-q cannot be combined with -v or --debug",
                "Choose one.",
            )
            Output(json_mode=json_mode, debug=False).failure(failure)
            return int(failure.code)
        verbosity = DEBUG if debug else -1 if quiet else min(verbose, DEBUG)
        setup_logging(verbosity)
        out = Output(json_mode=json_mode, debug=False, verbosity=verbosity)
        try:
            activate(kw)  # the configuration file and --plugin-option
            body = fn(**kw)
        except CLIError as exc:
            out.failure(exc.failure)
            return int(exc.failure.code)
        return _run(out, lambda: body(out))

    return wrapper


# Options shared by several commands.
direct_host_option = click.option(
    "--direct-host",
    multiple=True,
    default=("auto",),
    show_default=True,
    envvar="JET_TRIO_DIRECT_HOST",
    metavar="ADDR|auto|none",
    help="Address offered for direct SOCKS5 connections; repeat for several. auto: every "
    "address of every interface that is up; none: only the server's proxy.",
)
transport_option = click.option(
    "--transport", type=click.Choice(TRANSPORTS), default="auto", show_default=True
)
cipher_option = click.option(
    "--cipher",
    metavar="URN",
    help="The JET cipher. Default: AES-256-GCM; with legacy OMEMO to a peer that does not "
    "advertise it (Dino, Conversations), AES-128-GCM, the only one they accept. The result "
    "says which was used.",
)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="jet-trio")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """End-to-end encrypted file transfer over XMPP (XEP-0391 Jingle Encrypted Transports).

    Start with `jet-trio demo`. Exit codes: 0 ok, 1 internal error, 2 usage, 3 connection,
    4 TLS certificate, 5 login, 6 peer declined/cancelled/offline/not a contact, 7 transport,
    8 encryption, 9 integrity, 10 local file, 11 timeout, 12 other transfer failure,
    130 interrupted (the documentation has the whole table).

    Defaults, accounts and plugin options can be set in $XDG_CONFIG_HOME/jet-trio/config.toml.
    """
    from .config import load_into

    load_into(ctx)


@cli.command()
@click.option(
    "--size",
    type=click.IntRange(min=0),
    default=8 * 1024 * 1024,
    show_default=True,
    metavar="BYTES",
    help="Size of the generated random file.",
)
@click.option(
    "--file",
    type=click.Path(exists=False, dir_okay=False, path_type=Path),
    help="Send this file instead of a generated one.",
)
@click.option(
    "--envelope",
    metavar="NAME",
    help="omemo, openpgp, stub, a namespace, or none. Default: omemo if installed, else the "
    "insecure stub (with a warning).",
)
@cipher_option
@transport_option
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the received file here (default: a temporary directory, deleted afterwards).",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds.")
@plugin_option
@output_options
@command
def demo(
    size: int,
    file: Path | None,
    envelope: str | None,
    cipher: str | None,
    transport: Literal["auto", "webrtc", "s5b", "ibb"],
    output_dir: Path | None,
    timeout: float,
) -> Callable[[Output], Awaitable[int]]:
    """Send a file between two accounts of an in-process server on this machine.

    Starts an XMPP server with TLS and a SOCKS5 proxy on 127.0.0.1, logs in alice and bob, and
    sends a file from alice to bob with JET; shows progress and a summary.
    """
    from .demo import DemoOptions, run_demo

    opts = DemoOptions(size, file, envelope, transport, output_dir, timeout, cipher)
    return lambda out: run_demo(out, opts)


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE|DIR|-...", type=Path)
@click.option("--to", required=True, metavar="JID", help="The recipient (bare or full JID).")
@click.option(
    "--name",
    metavar="NAME",
    help="The name to offer for standard input (-), or for the one FILE sent.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Send up to this many files at once.",
)
@click.option(
    "--follow-symlinks",
    is_flag=True,
    help="In a DIR, send what symbolic links point to (default: skip them, with a note).",
)
@click.option(
    "--envelope",
    metavar="NAME",
    help="omemo, openpgp, stub (testing only), a namespace, or none (NOT encrypted). "
    "Default: omemo if installed, else another installed method.",
)
@cipher_option
@transport_option
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the recipient to be online.",
)
@click.option(
    "--accept-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up when the recipient has not accepted or declined within this time.",
)
@direct_host_option
@account_options
@output_options
@command
def send(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Send files to another XMPP account, end-to-end encrypted.

    Several FILEs, and every file in each DIR, are sent as separate offers with flat names
    (photos/2023/a.jpg as 2023__a.jpg), --parallel at a time. - reads standard input (with
    --name). The exit code is the worst outcome of the files.
    """
    from .transfer import SendOptions, run_send

    account = _account(kw)
    opts = _options(SendOptions, kw)
    return lambda out: run_send(out, account, opts)


@cli.command()
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    help="Store received files here (an existing directory; default: the current one).",
)
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Exit after this many offers were handled (0: never).",
)
@click.option("--from", "sender", metavar="JID", help="Refuse offers from anyone else.")
@click.option(
    "--max-size",
    type=click.IntRange(min=0),
    metavar="BYTES",
    help="Accept at most BYTES in this run (all files together); refuse the offers beyond.",
)
@click.option(
    "--max-files",
    type=click.IntRange(min=1),
    metavar="N",
    help="Accept at most N files in this run; refuse the offers after them.",
)
@click.option(
    "--accept-unencrypted", is_flag=True, help="Also accept files sent without encryption."
)
@click.option(
    "--accept-stub", is_flag=True, help="Accept the insecure stub envelope (testing only)."
)
@click.option("--overwrite", is_flag=True, help="Replace existing files of the same name.")
@click.option(
    "--rename",
    is_flag=True,
    help='Store a file whose name is taken as "name (1).ext", "name (2).ext"...',
)
@click.option(
    "--no-resume",
    is_flag=True,
    help="Receive every file whole, even one sent again after an interrupted transfer "
    "(by default only the rest of it is asked for).",
)
@click.option("--timeout", type=float, help="Give up after this many seconds.")
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Receive up to this many files at once.",
)
@direct_host_option
@account_options
@output_options
@command
def receive(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Wait for files and store them in --output-dir, or the current directory (verified
    before they get their name)."""
    from .transfer import ReceiveOptions, run_receive

    account = _account(kw)
    # Absolute, so that the names shown and the partial-download records agree on the
    # directory (the library keeps a relative one's .part files under an absolute name).
    try:
        kw["output_dir"] = kw["output_dir"].absolute()
    except FileNotFoundError as exc:  # the current directory was removed
        raise CLIError(
            ExitCode.FILE,
            "file",
            "the current directory no longer exists",
            "Change to an existing directory, or choose one with --output-dir.",
        ) from exc
    opts = _options(ReceiveOptions, kw)
    return lambda out: run_receive(out, account, opts)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--to",
    multiple=True,
    metavar="JID",
    help="Serve only these accounts (repeatable). Default: anyone who knows the hash.",
)
@click.option("--timeout", type=float, help="Stop serving after this many seconds.")
@click.option(
    "--accept-stub", is_flag=True, help="Serve requests made with the insecure stub envelope."
)
@direct_host_option
@account_options
@output_options
@command
def share(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Serve FILES to peers who request them by SHA-256 (jet-trio request, resume).

    Prints each file's SHA-256 and name, then serves until --timeout or Ctrl-C. The requester
    chooses the encryption and makes the key.
    """
    from .files import ShareOptions, run_share

    account = _account(kw)
    opts = _options(ShareOptions, kw)
    return lambda out: run_share(out, account, opts)


@cli.command()
@click.argument("sha256")
@click.option("--from", "sender", required=True, metavar="JID", help="Who shares the file.")
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Store the file here (an existing directory), under the name the peer gives it.",
)
@click.option(
    "--envelope",
    metavar="NAME",
    help="omemo, openpgp, stub (testing only), a namespace, or none (NOT encrypted). "
    "Default: omemo if installed, else another installed method.",
)
@cipher_option
@transport_option
@click.option("--overwrite", is_flag=True, help="Replace an existing file of the same name.")
@click.option(
    "--rename",
    is_flag=True,
    help='Store the file under "name (1).ext"... when its name is taken.',
)
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the peer to be online.",
)
@direct_host_option
@account_options
@output_options
@command
def request(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Fetch the file with this SHA256 from a peer running `jet-trio share`, end-to-end
    encrypted; verified before it gets its name, kept for `jet-trio resume` if interrupted."""
    from .files import RequestOptions, run_request

    account = _account(kw)
    opts = _options(RequestOptions, kw)
    return lambda out: run_request(out, account, opts)


@cli.command()
@click.argument("partial", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--list",
    "list_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="List the partial downloads kept in DIR instead (no login).",
)
@click.option(
    "--envelope",
    metavar="NAME",
    help="omemo, openpgp, stub, a namespace, or none. Default: the method of the interrupted "
    "download if installed, else as for request.",
)
@cipher_option
@transport_option
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the peer to be online.",
)
@direct_host_option
@account_options
@output_options
@command
def resume(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Complete an interrupted download (PARTIAL: its .part file or .jet-partial.json sidecar),
    or list the partial downloads of a directory (--list DIR).

    The peer must share the file (jet-trio share); the rest is requested with a fresh key and
    the whole file is verified against its SHA-256 before it gets its name.
    """
    from .files import ResumeOptions, run_list_partials, run_resume

    account = _account(kw)
    partial: Path | None = kw["partial"]
    list_dir: Path | None = kw["list_dir"]
    if (partial is None) == (list_dir is None):
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            "give either a partial download or --list DIR",
            "See jet-trio resume --help.",
        )
    if list_dir is not None:

        async def listing(out: Output) -> int:
            return run_list_partials(out, list_dir)

        return listing
    assert partial is not None
    opts = _options(ResumeOptions, kw, partial=partial)
    return lambda out: run_resume(out, account, opts)


@cli.command()
@click.argument("jids", nargs=-1, metavar="[JID]...")
@click.option(
    "--envelope",
    metavar="NAME",
    help="Only this method, e.g. omemo or openpgp (default: every one with keys).",
)
@account_options
@output_options
@command
def fingerprints(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Show your keys (OMEMO devices, OpenPGP key...) and those of each JID, with their trust."""
    from .keys import FingerprintOptions, run_fingerprints

    account = _account(kw)
    opts = _options(FingerprintOptions, kw)
    return lambda out: run_fingerprints(out, account, opts)


@cli.command()
@click.argument("jid")
@click.argument("fingerprint")
@click.option("--distrust", is_flag=True, help="Refuse this device or key from now on.")
@click.option(
    "--envelope",
    metavar="NAME",
    help="Only look at this method, e.g. omemo or openpgp (default: every one with keys).",
)
@account_options
@output_options
@command
def trust(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Mark JID's device or key FINGERPRINT verified (or, with --distrust, refused).

    FINGERPRINT as `jet-trio fingerprints JID` shows it (quote it, or leave out the spaces), or
    an OMEMO device id. Compare it with its owner over another channel first.
    """
    from .keys import TrustOptions, run_trust

    account = _account(kw)
    opts = _options(TrustOptions, kw)
    return lambda out: run_trust(out, account, opts)


@cli.command()
@account_options
@output_options
@command
def plugins(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """List the installed envelope methods and ciphers, their disco features and load errors.

    With --account, logs in first (as send does): envelope methods that need a connection,
    such as OpenPGP, are only loaded then.
    """
    from .plugins import describe_plugins, make_plugins, print_plugins
    from .sessions import open_account

    opts = _account(kw)

    async def body(out: Output) -> int:
        if opts.account:
            # The start-up of every command that logs in; the load errors are listed below.
            async with open_account(
                out, opts, allow_stub=True, file_transfer=False, report_errors=False
            ) as opened:
                manager = opened.plugins
        else:
            manager = make_plugins(account=None, client=None, data_dir=None, allow_stub=True)
        info = describe_plugins(manager)
        info["logged_in"] = bool(opts.account)
        if out.json_mode:
            out.emit({"status": "ok", **info})
        else:
            print_plugins(out, info)
        return ExitCode.OK

    return body


@cli.group()
def contact() -> None:
    """Your contacts (the roster): who sees whom online.

    jet-trio can only send to someone whose presence you see: add them, and have them add you.
    """


@contact.command("add")
@click.argument("jid")
@click.option("--name", help="A name for the contact in your roster.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for them to accept (0: do not wait; the server keeps the request).",
)
@account_options
@output_options
@command
def contact_add(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Add JID to your contacts: ask to see their presence and let them see yours."""
    from .contacts import ContactOptions, run_contact_add

    account = _account(kw)
    opts = _options(ContactOptions, kw)
    return lambda out: run_contact_add(out, account, opts)


@contact.command("remove")
@click.argument("jid")
@account_options
@output_options
@command
def contact_remove(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Remove JID from your contacts (both subscriptions are cancelled)."""
    from .contacts import ContactOptions, run_contact_remove

    account = _account(kw)
    opts = ContactOptions(jid=kw["jid"])
    return lambda out: run_contact_remove(out, account, opts)


@contact.command("list")
@account_options
@output_options
@command
def contact_list(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """List your contacts, who sees whom online, and requests waiting for your answer."""
    from .contacts import run_contact_list

    account = _account(kw)
    return lambda out: run_contact_list(out, account)


@cli.group()
def account() -> None:
    """Your account: create it on a server that allows it, forget a saved password."""


@account.command("register")
@account_options
@output_options
@command
def account_register(**kw: Any) -> Callable[[Output], Awaitable[int]]:
    """Create the account --account on its server, if the server allows it (XEP-0077).

    The password is asked twice on a terminal (or taken from --password-file or
    JET_TRIO_PASSWORD). The new account then logs in once; with --save-password the password
    goes to the system keyring.
    """
    from .account import connect, register

    opts = _account(kw)
    jid = opts.jid()
    opts.account_data_dir(jid)  # checked before the work, as every command does

    async def body(out: Output) -> int:
        password = await register(opts, jid)
        out.note(f"created {jid.bare}; logging in")
        async with connect(opts, jid, presence=False, password=password) as client:
            logged_in = str(client.jid)
        if out.json_mode:
            out.emit({"status": "ok", "registered": str(jid.bare), "logged_in": logged_in})
        else:
            out.say(f"created the account {jid.bare} and logged in as {logged_in}")
        return ExitCode.OK

    return body


@account.command("forget-password")
@click.option(
    "--account",
    "-a",
    "account_",
    envvar="JET_TRIO_ACCOUNT",
    metavar="JID",
    help="Your XMPP address (or set JET_TRIO_ACCOUNT).",
)
@output_options
@command
def forget_password(account_: str | None) -> Callable[[Output], Awaitable[int]]:
    """Remove the password that --save-password kept in the system keyring."""
    from .account import AccountOptions, forget_password

    opts = AccountOptions(account_, None, None, None, False, None)
    jid = opts.jid()

    async def body(out: Output) -> int:
        removed = forget_password(jid)
        if out.json_mode:
            out.emit({"status": "ok", "account": str(jid.bare), "removed": removed})
        elif removed:
            out.say(f"removed the saved password of {jid.bare} from the system keyring")
        else:
            out.say(f"no password of {jid.bare} was saved in the system keyring")
        return ExitCode.OK

    return body


COMPLETION_SHELLS = ("bash", "zsh", "fish")


@cli.command()
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    Load it from your shell's start-up file:
      ~/.bashrc:                   eval "$(jet-trio completion bash)"
      ~/.zshrc:                    eval "$(jet-trio completion zsh)"
      ~/.config/fish/config.fish:  jet-trio completion fish | source
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    # What `_JET_TRIO_COMPLETE={shell}_source jet-trio` prints: the script calls jet-trio
    # back with that variable to complete each word.
    script = cls(cli, {}, "jet-trio", "_JET_TRIO_COMPLETE").source()
    click.echo(script)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: parse, run, exit with the command's code."""
    args = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in args
    try:
        code = cli.main(args, prog_name="jet-trio", standalone_mode=False)
    except CLIError as exc:
        _usage_failure(exc.failure, json_mode)
        code = exc.failure.code
    except click.exceptions.Abort:
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        if json_mode:
            _usage_failure(
                Failure(ExitCode.USAGE, "usage", exc.format_message(), "See jet-trio --help."),
                json_mode,
            )
        else:
            exc.show()
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    sys.exit(int(cast(int, code or 0)))


def _usage_failure(failure: Failure, json_mode: bool) -> None:
    from .output import Output

    out = Output(json_mode=json_mode, debug=False)
    out.failure(failure)
