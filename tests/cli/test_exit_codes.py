"""Every failure class maps to its documented exit code and JSON reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

import jet_trio
from jet_trio._cli.errors import CLIError, ExitCode, classify
from jet_trio._jet.envelope import EnvelopeError, EnvelopeSenderMismatch
from jet_trio._plugins.manager import UnknownEnvelope

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.rst"


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (jet_trio.AuthenticationError("wrong password"), 5, "authentication"),
        (jet_trio.NoCommonMechanism("none"), 5, "authentication"),
        (jet_trio.TLSError("certificate not trusted"), 4, "tls"),
        (jet_trio.DNSError("no such domain"), 3, "dns"),
        (jet_trio.ConnectionFailed("refused"), 3, "connection"),
        (jet_trio.ConnectionLost("gone"), 3, "connection"),
        (jet_trio.TransferDeclined("no", "decline"), 6, "declined"),
        (jet_trio.TransferCancelled("stop", "cancel"), 6, "cancelled"),
        (jet_trio.TransferError("offline", "gone"), 6, "peer-unavailable"),
        (jet_trio.TransportFailed("no route", "failed-transport"), 7, "transport"),
        (jet_trio.EncryptionFailed("bad tag"), 8, "encryption"),
        (EnvelopeError("cannot open"), 8, "encryption"),
        (EnvelopeSenderMismatch("mitm"), 8, "encryption"),
        (UnknownEnvelope("urn:x"), 8, "encryption"),
        (jet_trio.IntegrityError("hash mismatch", "media-error"), 9, "integrity"),
        (FileNotFoundError(2, "No such file"), 10, "file"),
        (FileExistsError(17, "exists"), 10, "file"),
        (trio.TooSlowError(), 11, "timeout"),
        (jet_trio.TransferTimeout("peer silent", "timeout"), 11, "timeout"),
        (jet_trio.TagTimeout("no tag", "proxy.example (192.0.2.1:7777)"), 11, "timeout"),
        (jet_trio.TransferError("odd", "general-error"), 12, "transfer"),
        (jet_trio.RemoteProtocolError("bad xml"), 12, "protocol"),
        (jet_trio.InvalidJID("@@"), 2, "usage"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (ZeroDivisionError("oops"), 1, "internal"),
    ],
)
def test_classify(exc: BaseException, code: int, reason: str) -> None:
    failure = classify(exc)
    assert (int(failure.code), failure.reason) == (code, reason)
    assert failure.message and failure.line().count("\n") == 0
    as_json = failure.as_json()
    assert as_json["status"] == "error" and as_json["exit_code"] == code


def test_group_reports_the_most_specific() -> None:
    group = BaseExceptionGroup(
        "both sides",
        [
            trio.Cancelled._create(),
            jet_trio.TransferError("peer ended"),
            jet_trio.EncryptionFailed("tag"),
        ],
    )
    assert classify(group).code is ExitCode.ENCRYPTION


@pytest.mark.parametrize("proxy", [None, "proxy.example (192.0.2.1:7777)"])
def test_tag_timeout_hint_names_the_proxy_not_the_peer(proxy: str | None) -> None:
    """A tag that never came is not reported as a peer that stopped responding; the hint
    names the proxy when there was one."""
    hint = classify(jet_trio.TagTimeout("all 10 bytes came but not the tag", proxy)).hint
    assert "peer stopped responding" not in hint
    assert "authentication tag" in hint
    assert (proxy in hint) if proxy else ("proxy" not in hint)


def test_cli_error_keeps_its_failure() -> None:
    err = CLIError(ExitCode.FILE, "file", "x is missing", "Check the path.")
    assert classify(err).line() == "x is missing. Check the path."


def test_documented_table_matches() -> None:
    """docs/cli.rst lists exactly the exit codes of ExitCode."""
    text = DOCS.read_text()
    table = text[text.index("Errors and exit codes") :]
    documented = {int(n) for n in re.findall(r"^   \* - (\d+)$", table, re.MULTILINE)}
    assert documented == {int(c) for c in ExitCode}
