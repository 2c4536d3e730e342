"""Jingle reasons and the API's exceptions: one table each way.

A session ended by the peer raises the exception class its reason condition names
(:func:`error_for`); a session that fails here is ended with the reason its exception names
(:func:`reason_for`). Both are pure functions (no I/O), used by the session machine and the
trio driver alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import trio

from .._errors import JetError, SecurityError
from .._jet.stream import TruncatedStream
from .._jingle.message import JingleLocalError, Reason, ReasonCondition
from .._trio_util import leaves
from .paths import UnsafePath
from .types import (
    EncryptionFailed,
    IntegrityError,
    TransferCancelled,
    TransferDeclined,
    TransferError,
    TransferTimeout,
    TransportFailed,
)

__all__ = [
    "REASON_ERRORS",
    "condition",
    "consequence_of_ending",
    "cut_short",
    "error_for",
    "leaves",
    "reason_for",
]

C = ReasonCondition

#: The exception a session ended by the peer with this reason raises (any other reason:
#: :class:`TransferError`).
REASON_ERRORS: Final[Mapping[ReasonCondition, type[TransferError]]] = MappingProxyType(
    {
        C.DECLINE: TransferDeclined,
        C.BUSY: TransferDeclined,
        C.CANCEL: TransferCancelled,
        C.GONE: TransferCancelled,
        C.EXPIRED: TransferCancelled,
        C.TIMEOUT: TransferTimeout,
        C.SECURITY_ERROR: EncryptionFailed,
        C.MEDIA_ERROR: IntegrityError,
        C.CONNECTIVITY_ERROR: TransportFailed,
        C.FAILED_TRANSPORT: TransportFailed,
        C.UNSUPPORTED_TRANSPORTS: TransportFailed,
    }
)

#: The reason a session is ended with after a local exception that carries none of its own
#: (a :class:`TransferError` carries its ``reason``), first match wins. A local
#: cancellation (Ctrl-C reaches trio as KeyboardInterrupt, a timeout or a closed nursery as
#: Cancelled) is the user's choice, not a failure: the peer reports "cancelled".
_EXCEPTION_REASONS: Final[
    tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], ReasonCondition], ...]
] = (
    ((trio.Cancelled, KeyboardInterrupt), C.CANCEL),
    (SecurityError, C.SECURITY_ERROR),
    (OSError, C.FAILED_APPLICATION),
)


def condition(name: str) -> ReasonCondition:
    """The reason condition called ``name`` (``general-error`` for an unknown one)."""
    try:
        return ReasonCondition(name)
    except ValueError:
        return ReasonCondition.GENERAL_ERROR


def error_for(reason: Reason | None, who: str) -> TransferError:
    """The exception for a session that ``who`` ended with ``reason``."""
    cond = str(reason.condition) if reason is not None else "general-error"
    text = f": {reason.text}" if reason is not None and reason.text else ""
    cls = REASON_ERRORS.get(condition(cond), TransferError)
    return cls(f"{who} ended the transfer ({cond}){text}", cond)


def reason_for(exc: BaseException) -> tuple[str, str | None]:
    """The Jingle reason (and text) to end a session with after ``exc``."""
    found = leaves(exc)
    exc = next((e for e in found if not isinstance(e, trio.Cancelled)), found[0])
    if isinstance(exc, TransferError):
        return exc.reason, str(exc)
    if isinstance(exc, UnsafePath):  # the offered path as given, never one of this machine
        return "failed-application", f"refused: {exc}"
    for kinds, cond in _EXCEPTION_REASONS:
        if isinstance(exc, kinds):
            if cond is C.CANCEL:
                return str(cond), None
            if cond is C.FAILED_APPLICATION:
                # Only what went wrong: the file name of an OSError is a path of this machine,
                # and its text may be ours, naming one: the system's text for its errno.
                assert isinstance(exc, OSError)
                what = os.strerror(exc.errno) if exc.errno else type(exc).__name__
                if isinstance(exc, FileExistsError):  # the offered name, so no path is needed
                    what += " (the offered name already exists here)"
                return str(cond), f"local I/O error: {what}"
            return str(cond), str(exc)
    return "general-error", str(exc) if isinstance(exc, JetError) else None


def consequence_of_ending(exc: BaseException) -> bool:
    """Whether ``exc`` is what a session ended by the peer looks like from here: our next
    Jingle request impossible or refused, or the transport broken or cut short. A failed
    integrity check, a bad tag or our own cancellation is never replaced."""
    if isinstance(exc, IntegrityError) or any(isinstance(e, trio.Cancelled) for e in leaves(exc)):
        return False
    if isinstance(exc, EncryptionFailed):  # only an early end (no tag at all), not a wrong one
        return cut_short(exc)
    if isinstance(exc, TransferError):
        return exc.reason in ("general-error", "connectivity-error", "failed-transport")
    return isinstance(exc, (JingleLocalError, trio.BrokenResourceError, trio.ClosedResourceError))


def cut_short(exc: BaseException) -> bool:
    """Whether ``exc`` says only that an encrypted stream ended early (before its tag), not
    that any data failed a check."""
    if isinstance(exc, TruncatedStream):
        return True
    if not isinstance(exc, EncryptionFailed) or exc.__cause__ is None:
        return False
    # Beside the early end, what the peer's going away also causes (its session-terminate,
    # "gone", a reset connection) is no sign of bad data; any other security error is.
    found = [e for e in leaves(exc.__cause__) if not isinstance(e, trio.Cancelled)]
    return any(isinstance(e, TruncatedStream) for e in found) and not any(
        isinstance(e, SecurityError) and not isinstance(e, TruncatedStream) for e in found
    )
