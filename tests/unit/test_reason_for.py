"""The Jingle reason (and text) a session ends with after a local exception: what the peer
is told."""

from __future__ import annotations

import errno

import pytest
import trio

from jet_trio._transfer.reasons import reason_for as _reason_for


@pytest.mark.parametrize(
    "exc",
    [
        KeyboardInterrupt(),
        BaseExceptionGroup("g", [KeyboardInterrupt()]),
        BaseExceptionGroup("g", [trio.Cancelled._create(), KeyboardInterrupt()]),
    ],
)
def test_local_interruption_is_a_cancel(exc: BaseException) -> None:
    assert _reason_for(exc) == ("cancel", None)


def test_local_io_error_does_not_tell_the_peer_local_paths() -> None:
    exc = PermissionError(errno.EACCES, "Permission denied", "/home/bob/private/inbox/f.part")
    reason, text = _reason_for(exc)
    assert reason == "failed-application"
    assert text == "local I/O error: Permission denied"
    full = OSError(errno.ENOSPC, "No space left on device")
    assert _reason_for(full) == ("failed-application", "local I/O error: No space left on device")
