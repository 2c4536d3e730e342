"""Sessions that envelope plugins need around the whole connection.

``EnvelopeMethod.start()`` (awaited by :func:`~jet_trio.open_file_transfer`) covers one-off
set-up such as publishing keys. ``jet-trio-omemo`` needs more: an OMEMO session that runs for the
whole connection and must exist before the plugin manager is made (its hook offers the running
session's envelope methods). The command-line tool opens it here when the plugin is installed,
imported by name so that it is not a dependency.
"""

from __future__ import annotations

import importlib
import sys
import weakref
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .._xmpp.client import Client
from .errors import CLIError, ExitCode
from .output import Output
from .plugins import ENVELOPE_NAMES

__all__ = ["EnvelopeSessions", "check_send_envelope", "envelope_sessions", "omemo_running"]


@dataclass
class EnvelopeSessions:
    """What :func:`envelope_sessions` could not start, for the commands to act on."""

    failures: dict[str, str] = field(default_factory=dict)
    """Short envelope name (``omemo``) -> why its set-up failed in this run."""

    def check_send_envelope(self, envelope: str | None) -> None:
        """Refuse a send that would silently lose the envelope whose set-up failed.

        ``envelope`` is the ``--envelope`` value (``None``: the default, OMEMO). Sending with
        another method than the one asked for, or than the default, is never done quietly.
        """
        cause = self.failures.get("omemo")
        if cause is None:
            return
        key = None if envelope is None else envelope.strip().lower()
        if key is not None and key != "omemo" and key not in ENVELOPE_NAMES["omemo"]:
            return  # another method was chosen explicitly
        raise CLIError(
            ExitCode.ENCRYPTION,
            "encryption",
            f"OMEMO could not be set up, so this transfer cannot use it: {cause}",
            "Fix the cause and try again, or choose another method explicitly with "
            "--envelope (openpgp: understood by jet-trio peers only).",
        )


_RUNNING: weakref.WeakKeyDictionary[Client, EnvelopeSessions] = weakref.WeakKeyDictionary()


def check_send_envelope(client: object, envelope: str | None) -> None:
    """:meth:`EnvelopeSessions.check_send_envelope` for the sessions running on ``client``."""
    if isinstance(client, Client) and client in _RUNNING:
        _RUNNING[client].check_send_envelope(envelope)


def _optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


@asynccontextmanager
async def envelope_sessions(
    out: Output, client: Client, data_dir: Path | None, *, omemo_wanted: bool = True
) -> AsyncIterator[EnvelopeSessions]:
    """Run the sessions of installed envelope plugins while the block runs (before plugins load).

    A plugin that fails to start is left out, with a warning naming the cause and what it
    means for this run, and recorded (:func:`check_send_envelope`: a command that sends then
    refuses to fall back to another method on its own); the others go on.
    ``omemo_wanted=False`` (a command that cannot use OMEMO, such as ``send --envelope stub``)
    leaves the OMEMO session, and the import of its libraries, out.
    """
    sessions = EnvelopeSessions()
    async with AsyncExitStack() as stack:
        _RUNNING[client] = sessions
        stack.callback(_RUNNING.pop, client, None)
        omemo: Any = _optional("jet_trio_omemo") if omemo_wanted else None
        if omemo is not None and data_dir is not None:
            try:
                # The plugin imports its libraries here (on first use): a missing or broken
                # one raises now, and is reported like any other failure to start.
                open_omemo = getattr(omemo, "open_omemo", None)
                if open_omemo is not None:
                    await stack.enter_async_context(open_omemo(client, data_dir))
            except Exception as exc:  # a broken plugin must not stop the others
                sessions.failures["omemo"] = str(exc)
                out.warn(
                    f"OMEMO is NOT available in this run: its set-up for {client.jid.bare} "
                    f"failed: {exc}. OMEMO-encrypted offers are refused; other methods "
                    "are used only when chosen with --envelope."
                )
        yield sessions


def omemo_running(client: Client) -> bool:
    """Whether an OMEMO session runs on ``client`` (as :func:`envelope_sessions` starts it)."""
    session = sys.modules.get("jet_trio_omemo._session")  # never imported: none runs
    return session is not None and session.attached_session(client) is not None
