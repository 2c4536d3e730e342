"""Which local errors give way to the peer's reason when the peer ended the session first
(``FileTransfer._end_after_error``): only consequences of the ending, never a failed check."""

from __future__ import annotations

import pytest
import trio

from jet_trio import EncryptionFailed, IntegrityError, TransferCancelled, TransportFailed
from jet_trio._jet.cipher import TagMismatch
from jet_trio._jet.stream import TruncatedStream, UnexpectedTrailingData
from jet_trio._jingle.message import JingleLocalError
from jet_trio._transfer.reasons import consequence_of_ending as _consequence_of_ending


def _jet(cause: BaseException) -> EncryptionFailed:
    err = EncryptionFailed("encrypted transfer refused")
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    "exc",
    [
        JingleLocalError("cannot send transport-replace in state ENDED"),
        TransportFailed("the transport broke", "connectivity-error"),
        TransportFailed("no candidate", "failed-transport"),
        TransferCancelled("refused our transport-accept", "general-error"),
        trio.BrokenResourceError(),
        _jet(TruncatedStream("transport ended 300016 bytes early")),
        _jet(ExceptionGroup("data", [TruncatedStream("early")])),
    ],
    ids=repr,
)
def test_consequences_of_the_peer_ending(exc: BaseException) -> None:
    assert _consequence_of_ending(exc)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("hash mismatch", "media-error"),
        _jet(TagMismatch("bad tag")),
        _jet(UnexpectedTrailingData("more bytes")),
        _jet(ExceptionGroup("data", [TruncatedStream("early"), TagMismatch("bad tag")])),
        EncryptionFailed("no cause"),
        TransferCancelled("we were cancelled", "cancel"),
        OSError(28, "No space left on device"),
        trio.Cancelled._create(),
    ],
    ids=repr,
)
def test_failed_checks_and_our_own_errors_stay(exc: BaseException) -> None:
    assert not _consequence_of_ending(exc)
