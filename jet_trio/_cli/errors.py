"""Exit codes of the command-line tool and the mapping from exceptions to them.

Every failure becomes a :class:`Failure`: an exit code, a stable machine-readable ``reason``
(the ``reason`` of the ``--json`` error object), one sentence saying what happened and one
saying what to do. The table is documented in ``docs/cli.rst``; keep the two in step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._transfer.types import TransferError

# The exception classes are imported by the functions that classify: this module is imported at
# start-up, when the library (trio, the XMPP stack) is not loaded yet.

__all__ = ["CLIError", "ExitCode", "Failure", "classify"]


class ExitCode(enum.IntEnum):
    """The exit status of ``jet-trio``, one per class of failure."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONNECTION = 3
    TLS = 4
    AUTH = 5
    PEER = 6
    TRANSPORT = 7
    ENCRYPTION = 8
    INTEGRITY = 9
    FILE = 10
    TIMEOUT = 11
    TRANSFER = 12
    INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, for humans (``message`` + ``hint``) and for ``--json`` (``reason``)."""

    code: ExitCode
    reason: str
    message: str
    hint: str = ""
    jingle_reason: str | None = None

    def line(self) -> str:
        """The one line printed on standard error."""
        text = self.message.rstrip(".")
        return f"{text}. {self.hint}" if self.hint else f"{text}."

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": "error",
            "reason": self.reason,
            "exit_code": int(self.code),
            "message": self.message,
            "hint": self.hint,
        }
        if self.jingle_reason is not None:
            out["jingle_reason"] = self.jingle_reason
        return out


class CLIError(Exception):
    """A failure the command-line tool detected itself (bad option, missing file...)."""

    def __init__(
        self,
        code: ExitCode,
        reason: str,
        message: str,
        hint: str = "",
        *,
        jingle: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = Failure(code, reason, message, hint, jingle)


# Which failure to report when several happened at once (e.g. both sides of the demo failed):
# the most specific one first.
_RANK = [
    ExitCode.ENCRYPTION,
    ExitCode.INTEGRITY,
    ExitCode.TLS,
    ExitCode.AUTH,
    ExitCode.USAGE,
    ExitCode.FILE,
    ExitCode.TRANSPORT,
    ExitCode.CONNECTION,
    ExitCode.TIMEOUT,
    ExitCode.PEER,
    ExitCode.TRANSFER,
    ExitCode.INTERNAL,
    ExitCode.INTERRUPTED,
]


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` for ``exc`` (exception groups: their most specific member)."""
    import trio

    from .._trio_util import leaves

    found = [e for e in leaves(exc) if not isinstance(e, trio.Cancelled)] or [exc]
    failures = [_classify_one(e) for e in found]
    return min(failures, key=lambda f: _RANK.index(f.code))


def _transfer_failure(exc: TransferError) -> Failure:
    from .._transfer.types import (
        EncryptionFailed,
        IntegrityError,
        NameTaken,
        TagTimeout,
        TransferCancelled,
        TransferDeclined,
        TransferTimeout,
        TransportFailed,
    )

    msg, jingle = str(exc), exc.reason
    if jingle == "failed-application" and "refused: unsafe path" in msg:
        return Failure(
            ExitCode.PEER,
            "unsafe-path",
            msg,
            "The recipient cannot store this file under its path inside the folder; rename "
            "it (or the folders around it) and send it again.",
            jingle,
        )
    if isinstance(exc, NameTaken):
        return Failure(
            ExitCode.FILE,
            "name-taken",
            msg,
            "Nothing was replaced and the received file was kept under the name shown; pass "
            "--rename to store files under a free name without an error.",
            jingle,
        )
    if isinstance(exc, IntegrityError):
        return Failure(
            ExitCode.INTEGRITY,
            "integrity",
            msg,
            "Nothing was kept. Try again; if it keeps happening the data is altered on the way.",
            jingle,
        )
    if isinstance(exc, EncryptionFailed) and "supports none of our JET envelope methods" in msg:
        # The library's own advice (encrypt=None) is for programs; say it in options.
        peer, _, tried = msg.partition(" supports none of our JET envelope methods ")
        return Failure(
            ExitCode.ENCRYPTION,
            "encryption",
            f"{peer} advertises none of the encryption methods tried "
            f"{tried.partition(';')[0].strip()}",
            "If they use OpenPGP, pass --envelope openpgp (jet-trio plugins lists what is "
            "installed here); --envelope none sends without end-to-end encryption.",
            jingle,
        )
    if isinstance(exc, EncryptionFailed):
        return Failure(
            ExitCode.ENCRYPTION,
            "encryption",
            msg,
            "The transfer was aborted; nothing was stored under the file's name. Check the "
            "encryption set-up of both sides (jet-trio plugins).",
            jingle,
        )
    if isinstance(exc, TransferDeclined):
        return Failure(ExitCode.PEER, "declined", msg, "The peer said no.", jingle)
    if isinstance(exc, TransferCancelled):
        return Failure(ExitCode.PEER, "cancelled", msg, "Start the transfer again.", jingle)
    if isinstance(exc, TagTimeout):
        where = f"the SOCKS5 proxy {exc.proxy} held it back" if exc.proxy else "it never came"
        return Failure(
            ExitCode.TIMEOUT,
            "timeout",
            msg,
            f"The file arrived but not its authentication tag ({where}); nothing was stored "
            "under its name. Resume it if it was kept, or ask for it again.",
            jingle,
        )
    if isinstance(exc, TransferTimeout):
        return Failure(
            ExitCode.TIMEOUT, "timeout", msg, "The peer stopped responding; try again.", jingle
        )
    if isinstance(exc, TransportFailed):
        return Failure(
            ExitCode.TRANSPORT,
            "transport",
            msg,
            "No connection between the two clients worked; try --transport ibb, or a server "
            "with a SOCKS5 proxy.",
            jingle,
        )
    if exc.reason == "gone":
        return Failure(
            ExitCode.PEER,
            "peer-unavailable",
            msg,
            "Check that the recipient is online and runs a client that supports Jingle file "
            "transfer.",
            jingle,
        )
    return Failure(ExitCode.TRANSFER, "transfer", msg, "Try again.", jingle)


def _plugin_bug(exc: BaseException) -> Failure | None:
    """A plugin's bug (:class:`~jet_trio._plugins.guard.PluginError`, or an error caused by
    one): pinned on the plugin, not reported as a bug in jet-trio."""
    from .._plugins.guard import PluginError
    from .._transfer.types import TransferError

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, PluginError):
        cause = cause.__cause__
    if cause is None:
        return None
    who = cause.distribution or f"the plugin {cause.plugin!r}"
    return Failure(
        ExitCode.ENCRYPTION,
        "encryption",
        str(exc),
        f"The transfer was aborted; nothing was kept. This is a bug in a plugin, not in "
        f"jet-trio: report it to the authors of {who} (`jet-trio plugins` lists what is "
        "installed).",
        exc.reason if isinstance(exc, TransferError) else None,
    )


def _classify_one(exc: BaseException) -> Failure:
    import trio

    from .._errors import JetError, ProtocolError, SecurityError
    from .._jet.cipher import UnknownCipher
    from .._jet.envelope import EnvelopeSenderMismatch, UntrustedEnvelope
    from .._plugins.manager import UnknownEnvelope
    from .._transfer.paths import UnsafePath
    from .._transfer.types import TransferError
    from .._xmpp.connect import ConnectionFailed, DNSError, LoginTimeout
    from .._xmpp.jid import InvalidJID
    from .._xmpp.negotiation import ConnectionLost, TLSError
    from .._xmpp.sasl import AuthenticationError, NoCommonMechanism
    from .._xmpp.stanza import StreamError

    msg = str(exc) or type(exc).__name__
    if isinstance(exc, CLIError):
        return exc.failure
    plugin_bug = _plugin_bug(exc)
    if plugin_bug is not None:
        return plugin_bug
    if isinstance(exc, KeyboardInterrupt):
        return Failure(ExitCode.INTERRUPTED, "interrupted", "interrupted", "")
    decision = _trust_decision_needed(exc)
    if decision is not None:
        return Failure(ExitCode.ENCRYPTION, "encryption", msg, _trust_hint(decision))
    if isinstance(exc, TransferError):
        return _transfer_failure(exc)
    if isinstance(exc, UnsafePath):
        return Failure(
            ExitCode.PEER,
            "unsafe-path",
            msg,
            "The sender named a path that cannot be stored safely here; that file was refused "
            "and nothing of it was written.",
            "failed-application",
        )
    if isinstance(exc, UnknownEnvelope | UnknownCipher):
        return Failure(
            ExitCode.ENCRYPTION,
            "encryption",
            msg,
            "See `jet-trio plugins` for what is installed.",
        )
    if isinstance(exc, EnvelopeSenderMismatch | UntrustedEnvelope):
        return Failure(ExitCode.ENCRYPTION, "encryption", msg, "Do not trust this transfer.")
    if isinstance(exc, SecurityError):
        return Failure(
            ExitCode.ENCRYPTION, "encryption", msg, "The transfer was aborted; nothing was kept."
        )
    if isinstance(exc, NoCommonMechanism):
        return Failure(
            ExitCode.AUTH,
            "authentication",
            msg,
            "The server offers no login method jet-trio supports (SCRAM or PLAIN over TLS).",
        )
    if isinstance(exc, AuthenticationError):
        return Failure(
            ExitCode.AUTH,
            "authentication",
            msg,
            "Check the account (--account) and the password (--password-file, "
            "JET_TRIO_PASSWORD or the prompt).",
        )
    if isinstance(exc, TLSError):
        return Failure(
            ExitCode.TLS,
            "tls",
            msg.replace(" (use ca_file= for a private CA)", ""),
            "If the server uses a private certificate authority, pass its certificate with "
            "--ca-file; otherwise you may not be talking to your server.",
        )
    if isinstance(exc, DNSError):
        return Failure(
            ExitCode.CONNECTION,
            "dns",
            msg,
            "Check the domain of the account, or give the server with --server HOST:PORT.",
        )
    if isinstance(exc, LoginTimeout):
        return Failure(
            ExitCode.CONNECTION,
            "connection",
            msg,
            "The server did not answer in time; check the server and your network, or allow "
            "more time with --login-timeout.",
        )
    if isinstance(exc, ConnectionFailed):
        return Failure(
            ExitCode.CONNECTION,
            "connection",
            msg,
            "Check the server name and port (--server HOST:PORT) and your network.",
        )
    if isinstance(exc, ConnectionLost | StreamError):
        return Failure(
            ExitCode.CONNECTION,
            "connection",
            msg,
            "The server closed the connection; try again later.",
        )
    if isinstance(exc, InvalidJID):
        return Failure(
            ExitCode.USAGE, "usage", msg, "A JID looks like name@example.org (or with /resource)."
        )
    if isinstance(exc, trio.TooSlowError):
        return Failure(
            ExitCode.TIMEOUT, "timeout", "timed out", "Try again, or allow more time (--timeout)."
        )
    if isinstance(exc, FileExistsError):
        return Failure(ExitCode.FILE, "file", msg, "Remove it, or pass --overwrite.")
    if isinstance(exc, OSError):
        return Failure(
            ExitCode.FILE, "file", msg, "Check the path and its permissions and free space."
        )
    if isinstance(exc, ProtocolError | JetError):
        return Failure(
            ExitCode.TRANSFER, "protocol", msg, "Try again; run with --debug to see more."
        )
    return Failure(
        ExitCode.INTERNAL,
        "internal",
        f"internal error: {type(exc).__name__}: {msg}",
        "This is a bug in jet-trio; run with --debug and report the traceback.",
    )


def trust_command(jid: object, fingerprint: str, *, distrust: bool = False) -> str:
    """The command line that records a trust decision (the fingerprint without spaces)."""
    compact = "".join(fingerprint.replace(":", " ").split()).lower()
    return f"jet-trio trust {jid} {compact}" + (" --distrust" if distrust else "")


def _trust_decision_needed(exc: BaseException) -> Any:
    """The :class:`~jet_trio.plugin.TrustDecisionNeeded` behind ``exc`` (itself or a cause)."""
    from .._jet.envelope import TrustDecisionNeeded

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, TrustDecisionNeeded) and seen.keys:
            return seen
        seen = seen.__cause__
    return None


def _trust_hint(decision: Any) -> str:
    """What to run for each key a transfer needs a decision about."""
    from .._jet.envelope import KeyTrust

    hints = []
    for key in decision.keys:
        what = f"device {key.device_id}" if key.device_id is not None else "key"
        if key.trust is KeyTrust.DISTRUSTED:
            hints.append(
                f"You distrusted {key.jid}'s {decision.method} {what}; if that was a mistake, "
                f"run `{trust_command(key.jid, key.fingerprint)}`."
            )
        else:
            hints.append(
                f"Compare {key.jid}'s {decision.method} {what} fingerprint {key.fingerprint} "
                "with them over another channel, then run "
                f"`{trust_command(key.jid, key.fingerprint)}` (or "
                f"`{trust_command(key.jid, key.fingerprint, distrust=True)}` to refuse it), and "
                "try again."
            )
    return " ".join(hints)
