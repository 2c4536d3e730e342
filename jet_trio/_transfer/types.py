"""Public result, progress and error types of file transfers."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._errors import JetError, SecurityError
from .._xmpp.jid import JID

__all__ = [
    "IntegrityError",
    "NameTaken",
    "ProgressCallback",
    "TransferCancelled",
    "TransferDeclined",
    "TransferError",
    "TransferResult",
    "TransferTimeout",
    "TransportFailed",
]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` while data moves."""

TransportName = Literal["webrtc", "s5b-direct", "s5b-proxy", "ibb"]


@dataclass(frozen=True, slots=True)
class TransferResult:
    """A finished, verified transfer.

    ``size`` and ``sha256`` describe the plaintext file; ``wire_bytes`` what crossed the
    transport (``size`` + 16 for AES-GCM). ``envelope`` and ``cipher`` are ``None`` for an
    unencrypted transfer. ``path`` is where the receiver stored the file (the sender's source).
    """

    #: ``"send"`` or ``"receive"``: our side of the transfer.
    direction: Literal["send", "receive"]
    #: The other side (full JID).
    peer: JID
    #: The file name as offered.
    name: str
    size: int
    sha256: str
    #: The transport that carried the data: ``"webrtc"`` (the WebRTC data channel),
    #: ``"s5b-direct"``, ``"s5b-proxy"`` or ``"ibb"``.
    transport: TransportName
    envelope: str | None
    cipher: str | None
    #: How long the transfer took, in seconds.
    seconds: float
    path: Path
    wire_bytes: int
    #: Whether the file's hash was checked against the hash announced for it.
    hash_verified: bool
    choice: str = ""
    """Why this envelope and cipher were used (sender: chosen by ``encrypt="auto"`` or asked
    for; receiver: what the sender chose), or why the transfer was not encrypted."""
    reused_bytes: int = 0
    """Bytes of the file the receiver already held from an earlier, interrupted transfer and
    that were not sent again (a XEP-0234 range: :meth:`FileTransfer.resume`, or the same file
    offered again); ``wire_bytes`` counts only the rest."""


class TransferError(JetError):
    """A transfer did not complete. ``reason`` is the Jingle reason condition it ended with."""

    def __init__(self, message: str, reason: str = "general-error") -> None:
        super().__init__(message)
        self.reason = reason


class TransferDeclined(TransferError):
    """The peer declined the offer (or is busy)."""


class TransferCancelled(TransferError):
    """The transfer was cancelled, by us (cancel scope) or by the peer."""


class TransferTimeout(TransferError):
    """The peer stopped answering, or no data moved for ``stall_timeout`` seconds."""


class NameTaken(TransferError):
    """The target name was taken while the file was being received (a concurrent transfer,
    another program, a directory, a fifo...): nothing was replaced. The verified file was kept
    beside it under the unique name ``kept`` (``name (1).ext``...); ``path`` is the name that was
    taken. The transfer itself succeeded (the sender was told so); ``result`` describes it.
    """

    # pathlib.Path spelt out: the reference docs read the unevaluated annotation of an
    # exception's __init__ and must find the class by that name.
    def __init__(self, path: pathlib.Path, kept: pathlib.Path) -> None:
        super().__init__(
            f"{path} appeared during the transfer and was not replaced; the received file was "
            f"kept as {kept}",
            "failed-application",
        )
        self.path = path
        self.kept = kept
        self.result: TransferResult | None = None


class TagTimeout(TransferTimeout):
    """Every byte of an encrypted file arrived but not the authentication tag that follows
    them, within ``stall_timeout``: nothing was stored under the file's name (a download
    with a hash is kept for resuming). ``proxy`` names the SOCKS5 proxy the stream went
    through, if any: a relay that holds back the end of a stream (see the interop notes)."""

    def __init__(self, message: str, proxy: str | None = None) -> None:
        super().__init__(message, "timeout")
        self.proxy = proxy


class TransportFailed(TransferError):
    """No transport could be established, or it broke during the transfer."""


class IntegrityError(TransferError, SecurityError):
    """The data did not match the announced size or hash: nothing was kept."""


class EncryptionFailed(TransferError, SecurityError):
    """The encryption layer (JET) failed: unknown cipher, bad envelope, wrong sender, bad
    tag... (Called ``JETError`` before 0.x; that name is a deprecated alias.)"""

    def __init__(self, message: str, reason: str = "security-error") -> None:
        super().__init__(message, reason)
