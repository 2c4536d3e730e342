"""The command's start-up and Python's cyclic garbage collector.

A command imports a few hundred modules before its first stanza (trio, lxml, cryptography, the
library, and an envelope's libraries: OMEMO's build pydantic models and protobuf descriptors).
They leave a few hundred thousand objects that live as long as the process. With the collector
at its defaults, Python scans them again and again while they pile up (the older generations
are collected each time enough young objects have survived) and all of them once more when the
process exits: about a fifth of the CPU of a 1 KiB OMEMO ``send`` (bench/README.md, "The
collector at start-up").

So the ``jet-trio`` process starts with only the youngest generation collected (:func:`pause`,
the console script's first step: what the imports throw away is still freed; a program using
the library is never touched). When the command's start-up is over (logged in, plugins loaded,
envelope sessions open, presence sent: :func:`~.sessions.open_account`), :func:`resume` moves
everything alive to the permanent generation (:func:`gc.freeze`: never scanned again, and never
collected, as it lives until the end anyway) and restores the collector's thresholds for what
the command makes from then on. A command that never gets there (``--help``, a failed login, a
command without an account) ends within its own bounded waits.
"""

from __future__ import annotations

import gc

__all__ = ["pause", "resume"]

# The middle generation is collected after this many young collections (instead of 10), and
# the oldest only after some of the middle one's: neither happens during a start-up. (From
# Python 3.14 on, the collector has two generations, and this value slows its scans of the old
# one by as much; the third value is ignored there.)
_NEVER = 1_000_000

_saved: tuple[int, int, int] | None = None


def pause() -> None:
    """Collect only the youngest generation until :func:`resume` (a no-op if the collector is
    off, or already paused)."""
    global _saved
    if _saved is None and gc.isenabled():
        _saved = gc.get_threshold()
        gc.set_threshold(_saved[0], _NEVER, _saved[2])


def resume() -> None:
    """End the start-up: freeze what it made and restore the thresholds (only after
    :func:`pause`; a no-op afterwards, or in a program that never paused)."""
    global _saved
    if _saved is not None:
        gc.freeze()
        gc.set_threshold(*_saved)
        _saved = None
