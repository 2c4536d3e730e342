"""The start-up of every command that logs in: sessions of envelope plugins, plugins, file transfer.

``EnvelopeMethod.start()`` (awaited by :func:`~jet_trio.open_file_transfer`) covers one-off
set-up such as publishing keys. Some plugins need more: state that runs for the whole connection
and must exist before the plugin manager is made (the OMEMO session: its hook offers the running
session's envelope methods). Any plugin asks for that through the ``jet_envelope_sessions`` hook
(:class:`~jet_trio.plugin.EnvelopeSession`); :func:`envelope_sessions` opens what they return,
with no plugin named here. :func:`open_account` is the whole start-up sequence, written once:
connect, envelope sessions, plugins (load errors reported), file transfer, presence.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .._jet.envelope import EnvelopeSession, KeyEvent, KeyNotice
from .._plugins.hookspecs import PluginConfig
from .._plugins.manager import PluginManager
from .._xmpp.client import Client
from . import startup
from .errors import CLIError, ExitCode, trust_command
from .output import Output

if TYPE_CHECKING:
    from .._transfer.service import FileTransfer
    from .._transports.s5b_direct import DirectAddresses
    from .account import AccountOptions

__all__ = [
    "Account",
    "EnvelopeSessions",
    "check_send_envelope",
    "envelope_sessions",
    "key_notices",
    "open_account",
    "report_load_errors",
    "trust_command",
]


@dataclass
class EnvelopeSessions:
    """The envelope sessions of one connection: which run, and which could not start."""

    running: list[EnvelopeSession] = field(default_factory=list)
    failures: list[tuple[EnvelopeSession, str]] = field(default_factory=list)
    """Each session whose set-up failed in this run, and why."""

    @property
    def default_envelopes(self) -> frozenset[str] | None:
        """The methods a command without ``--envelope`` loads: those of the running sessions
        when any runs (the others would be prepared for nothing: an OpenPGP key loaded, or made
        and published), else any (``None``)."""
        if not self.running:
            return None
        return frozenset(m for s in self.running for m in s.methods)

    def check_send_envelope(self, envelope: str | None) -> None:
        """Refuse a send that would silently lose a method whose set-up failed.

        ``envelope`` is the ``--envelope`` value (``None``: the default). Sending with another
        method than the one asked for, or than the default, is never done quietly.
        """
        for session, cause in self.failures:
            if envelope is not None:
                key = envelope.strip()
                names = {m.lower() for m in session.methods} | set(session.methods)
                if key not in names and key.lower() not in names:
                    continue  # another method was chosen explicitly
            raise CLIError(
                ExitCode.ENCRYPTION,
                "encryption",
                f"{_label(session)} could not be set up, so this transfer cannot use it: {cause}",
                "Fix the cause and try again, or choose another method explicitly with "
                "--envelope (see `jet-trio plugins`).",
            )


def _label(session: EnvelopeSession) -> str:
    return session.label or type(session).__qualname__


_RUNNING: weakref.WeakKeyDictionary[Client, EnvelopeSessions] = weakref.WeakKeyDictionary()


def check_send_envelope(client: object, envelope: str | None) -> None:
    """:meth:`EnvelopeSessions.check_send_envelope` for the sessions running on ``client``."""
    if isinstance(client, Client) and client in _RUNNING:
        _RUNNING[client].check_send_envelope(envelope)


def key_notices(out: Output) -> Callable[[KeyNotice], None]:
    """What the plugins' key notices (:attr:`PluginConfig.notify`) show: each with the command
    that records a decision."""

    def notify(notice: KeyNotice) -> None:
        key = notice.key
        what = f"device {key.device_id}" if key.device_id is not None else "key"
        name = f"{notice.method} {what} for {key.jid}: {key.fingerprint}"
        decide = (
            f"compare it with {key.jid} over another channel, then run "
            f"`{trust_command(key.jid, key.fingerprint)}` (or add --distrust to refuse it)"
        )
        if notice.event is KeyEvent.FIRST_USE:
            out.warn(f"new {name} (trusted on first use); {decide}")
        elif notice.event is KeyEvent.LEFT_OUT:
            out.warn(f"{name} has no trust decision and was LEFT OUT of this transfer; {decide}")
        else:
            out.warn(f"{name} was refused; {decide}")

    return notify


@asynccontextmanager
async def envelope_sessions(
    out: Output,
    client: Client,
    data_dir: Path | None,
    *,
    envelopes: frozenset[str] | None = None,
    notify: Callable[[KeyNotice], None] | None = None,
    prepare: bool = False,
) -> AsyncIterator[EnvelopeSessions]:
    """Run the sessions the installed plugins ask for while the block runs (before the plugin
    manager of the connection is made).

    ``envelopes`` are the methods the command can use (:func:`~.plugins.wanted_envelopes`): a
    plugin offers no session for a method not wanted (``send --envelope stub`` starts no OMEMO
    session, and does not import its libraries). A session that fails to start is left out,
    with a warning naming the cause and what it means for this run, and recorded
    (:func:`check_send_envelope`: a command that sends then refuses to fall back to another
    method on its own); the others go on. ``prepare``: the command may never use the methods
    (it waits for offers), so each session is entered with :meth:`EnvelopeSession.prepare
    <jet_trio.plugin.EnvelopeSession.prepare>` (its costly part starts when first used).
    """
    from .plugins import plugin_config

    sessions = EnvelopeSessions()
    async with AsyncExitStack() as stack:
        _RUNNING[client] = sessions
        stack.callback(_RUNNING.pop, client, None)
        if data_dir is not None:
            config = plugin_config(
                account=client.jid,
                client=client,
                data_dir=data_dir,
                allow_stub=False,
                # No envelope method is collected by this manager: it only asks for sessions.
                envelopes=frozenset() if envelopes is None else envelopes,
                notify=notify or key_notices(out),
            )
            # Its load errors are the real manager's, reported with it; only the failures of
            # the session hook are reported here.
            with _quiet_loading():
                probe = PluginManager(config)
                errors = len(probe.load_errors)
                # The hook runs with the methods the command wants, not the empty set above.
                probe.config = _with_envelopes(config, envelopes)
                found = probe.envelope_sessions()
            for err in probe.load_errors[errors:]:  # the session hook of a plugin failed
                out.warn(str(err))
            for _, session in found:
                try:
                    # A plugin imports its libraries here (on first use): a missing or broken
                    # one raises now, and is reported like any other failure to start.
                    await stack.enter_async_context(
                        session.prepare() if prepare else session.open()
                    )
                except Exception as exc:  # a broken plugin must not stop the others
                    sessions.failures.append((session, str(exc)))
                    label = _label(session)
                    out.warn(
                        f"{label} is NOT available in this run: its set-up for "
                        f"{client.jid.bare} failed: {exc}. {label}-encrypted offers are "
                        "refused; other methods are used only when chosen with --envelope."
                    )
                else:
                    sessions.running.append(session)
        yield sessions


@contextmanager
def _quiet_loading() -> Iterator[None]:
    log = logging.getLogger("jet_trio.plugins")
    before = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = before


def _with_envelopes(config: PluginConfig, envelopes: frozenset[str] | None) -> PluginConfig:
    return replace(config, envelopes=envelopes)


def report_load_errors(out: Output, plugins: PluginManager) -> None:
    for err in plugins.load_errors:
        out.warn(str(err))


@dataclass
class Account:
    """What :func:`open_account` opened: the client, its plugins, its envelope sessions, and the
    file transfer service (``None`` when not asked for)."""

    client: Client
    plugins: PluginManager
    sessions: EnvelopeSessions
    data_dir: Path
    ft: FileTransfer | None = None


@asynccontextmanager
async def open_account(
    out: Output,
    account: AccountOptions,
    *,
    envelope: str | None = None,
    allow_stub: bool = False,
    direct: DirectAddresses = "auto",
    file_transfer: bool = True,
    presence: bool = True,
    sending: bool = False,
    report_errors: bool = True,
    notify: Callable[[KeyNotice], None] | None = None,
    prepare_sessions: bool = False,
) -> AsyncIterator[Account]:
    """The start-up of a command that logs in, in one place: connect; open the envelope
    sessions the plugins ask for; make the plugin manager (only the methods ``--envelope
    envelope`` can resolve to, or the default's) and report its load errors; open the file
    transfer service (``direct``: its ``direct_addresses``); send
    presence (only then do peers see us able to receive). ``sending``: a command that sends
    with the default method loads only the methods of the running envelope sessions, if any runs
    (:attr:`EnvelopeSessions.default_envelopes`); a receiving one loads all.
    ``report_errors=False``: the caller shows the load errors itself (``plugins``) or another
    account of this process already did (``demo``). ``notify`` replaces the key notices shown
    to the user. ``prepare_sessions``: a command that waits for offers enters the envelope
    sessions with :meth:`~jet_trio.plugin.EnvelopeSession.prepare` (see
    :func:`envelope_sessions`). When all this is done, so is the process's start-up
    (:func:`.startup.resume`).
    """
    from .._transfer.service import open_file_transfer
    from .account import connect
    from .config import cipher_preference, data_channel
    from .plugins import make_plugins, wanted_envelopes

    jid = account.jid()
    data_dir = account.account_data_dir(jid)
    wanted = wanted_envelopes(envelope)
    if notify is None:
        notify = key_notices(out)
    async with (
        connect(account, jid, presence=False) as client,
        envelope_sessions(
            out, client, data_dir, envelopes=wanted, notify=notify, prepare=prepare_sessions
        ) as sessions,
    ):
        if wanted is None and sending:
            wanted = sessions.default_envelopes
        plugins = make_plugins(
            account=client.jid,
            client=client,
            data_dir=data_dir,
            allow_stub=allow_stub,
            envelopes=wanted,
            notify=notify,
        )
        if report_errors:
            report_load_errors(out, plugins)
        opened = Account(client, plugins, sessions, data_dir)
        if not file_transfer:
            startup.resume()
            yield opened
            return
        async with open_file_transfer(
            client,
            plugins=plugins,
            direct_addresses=direct,
            cipher_preference=cipher_preference(str(jid)),
            **data_channel(str(jid)),
        ) as ft:
            opened.ft = ft
            if presence:
                await client.send_presence()  # now ready: keys published, features advertised
            startup.resume()
            yield opened
