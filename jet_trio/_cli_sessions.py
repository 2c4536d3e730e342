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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ._cli_output import Output
from ._client import Client

__all__ = ["envelope_sessions", "omemo_running"]


def _optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


@asynccontextmanager
async def envelope_sessions(
    out: Output, client: Client, data_dir: Path | None, *, omemo_wanted: bool = True
) -> AsyncIterator[None]:
    """Run the sessions of installed envelope plugins while the block runs (before plugins load).

    A plugin that fails to start is reported as a warning and left out; the others go on.
    ``omemo_wanted=False`` (a command that cannot use OMEMO, such as ``send --envelope stub``)
    leaves the OMEMO session, and the import of its libraries, out.
    """
    async with AsyncExitStack() as stack:
        omemo: Any = _optional("jet_trio_omemo") if omemo_wanted else None
        if omemo is not None and data_dir is not None:
            try:
                # The plugin imports its libraries here (on first use): a missing or broken
                # one raises now, and is reported like any other failure to start.
                open_omemo = getattr(omemo, "open_omemo", None)
                if open_omemo is not None:
                    await stack.enter_async_context(open_omemo(client, data_dir))
            except Exception as exc:  # a broken plugin must not stop the others
                out.warn(f"OMEMO could not start for {client.jid.bare}, it is not used: {exc}")
        yield


def omemo_running(client: Client) -> bool:
    """Whether an OMEMO session runs on ``client`` (as :func:`envelope_sessions` starts it)."""
    session = sys.modules.get("jet_trio_omemo._session")  # never imported: none runs
    return session is not None and session.attached_session(client) is not None
