"""``jet-trio demo`` run as a subprocess."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pty
import subprocess
from pathlib import Path

import pytest

from ._run import COMMAND, cli_env, run

STUB = "urn:xmpp:encryption:stub:0"
AES256 = "urn:xmpp:ciphers:aes-256-gcm-nopadding"
SIZE = 1024 * 1024 + 17


def omemo_installed() -> bool:
    return importlib.util.find_spec("jet_trio_omemo") is not None


@pytest.mark.parametrize(
    ("transport", "expected"),
    [("auto", {"s5b-direct", "s5b-proxy"}), ("s5b", {"s5b-direct", "s5b-proxy"}), ("ibb", {"ibb"})],
)
def test_demo_stub_json(tmp_path: Path, transport: str, expected: set[str]) -> None:
    ran = run(
        ["demo", "--envelope", "stub", "--size", str(SIZE), "--transport", transport, "--json"],
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    result = ran.one_json()
    assert result["status"] == "ok"
    assert result["size"] == SIZE
    assert result["envelope"] == STUB
    assert result["cipher"] == AES256
    assert result["transport"] in expected
    assert result["hash_verified"] is True
    assert result["wire_bytes"] == SIZE + 16
    assert len(result["sha256"]) == 64
    assert result["seconds"] > 0
    assert result["name"] == "demo-payload.bin"
    assert {"path", "sender", "receiver"} <= result.keys()
    assert "stub envelope" in ran.stderr  # the warning is there, also with --json


def test_demo_default_human(tmp_path: Path) -> None:
    """Without options: 8 MiB, a summary on stdout, no progress bar (stdout is a pipe)."""
    ran = run(["demo"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout
    for label in ("envelope:", "cipher:", "transport:", "throughput:", "hash verified:"):
        assert label in out
    assert "8388608 bytes" in out
    assert "yes" in out
    assert "━" not in out and "\x1b" not in out and "\r" not in out
    if omemo_installed():  # the default is OMEMO, without warnings
        assert "omemo (eu.siacs.conversations.axolotl)" in out
        assert "warning" not in ran.stderr
    else:
        assert "stub (urn:xmpp:encryption:stub:0)" in out
        assert "INSECURE stub envelope" in ran.stderr


def test_demo_given_file_kept(tmp_path: Path) -> None:
    src = tmp_path / "hello world.txt"
    src.write_bytes(os.urandom(5000))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ran = run(
        ["demo", "--file", str(src), "--output-dir", str(inbox), "--envelope", "stub", "--json"],
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    result = ran.one_json()
    assert result["name"] == "hello world.txt"
    assert result["kept"] is True
    received = Path(result["path"])
    assert received.parent == inbox
    assert received.read_bytes() == src.read_bytes()
    assert result["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_demo_unencrypted(tmp_path: Path) -> None:
    ran = run(["demo", "--envelope", "none", "--size", "1000", "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = ran.one_json()
    assert result["envelope"] is None and result["cipher"] is None
    assert result["wire_bytes"] == 1000
    assert "NOT encrypted" in ran.stderr


def test_demo_unknown_envelope(tmp_path: Path) -> None:
    ran = run(["demo", "--envelope", "urn:example:nope", "--json"], tmp_path)
    assert ran.returncode == 8
    error = ran.one_json()
    assert error["status"] == "error"
    assert error["reason"] == "encryption"
    assert "urn:example:nope" in error["message"]
    assert ran.stderr.count("jet-trio: error:") == 1
    assert "Traceback" not in ran.stderr


def test_demo_missing_file(tmp_path: Path) -> None:
    ran = run(["demo", "--file", str(tmp_path / "nope.bin")], tmp_path)
    assert ran.returncode == 10
    assert "nope.bin" in ran.stderr
    assert ran.stdout == ""


def test_demo_debug_shows_traceback(tmp_path: Path) -> None:
    ran = run(["demo", "--envelope", "urn:example:nope", "--debug"], tmp_path)
    assert ran.returncode == 8
    assert "Traceback" in ran.stderr


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    """On a pseudo-terminal the progress bars are drawn; with --json they are not."""

    def on_pty(args: list[str]) -> str:
        primary, secondary = pty.openpty()
        proc = subprocess.Popen(
            [*COMMAND, *args],
            env=cli_env(tmp_path, {"TERM": "xterm"}),
            stdin=subprocess.DEVNULL,
            stdout=secondary,
            stderr=subprocess.DEVNULL,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(primary)
        assert proc.wait(timeout=60) == 0
        return b"".join(chunks).decode("utf-8", "replace")

    drawn = on_pty(["demo", "--envelope", "stub", "--size", str(SIZE)])
    assert "━" in drawn and "transfer complete" in drawn
    quiet = on_pty(["demo", "--envelope", "stub", "--size", str(SIZE), "--json"])
    assert "━" not in quiet
    assert '"status": "ok"' in quiet


OMEMO = "eu.siacs.conversations.axolotl"


@pytest.mark.skipif(not omemo_installed(), reason="jet-trio-omemo is not installed")
def test_demo_omemo(tmp_path: Path) -> None:
    ran = run(["demo", "--envelope", "omemo", "--size", str(SIZE), "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = ran.one_json()
    assert result["envelope"] == OMEMO
    assert result["hash_verified"] is True
    assert "warning" not in ran.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("jet_trio_openpgp") is None,
    reason="plugins/jet-trio-openpgp not installed",
)
def test_demo_openpgp(tmp_path: Path) -> None:
    ran = run(["demo", "--envelope", "openpgp", "--size", str(SIZE), "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = ran.one_json()
    assert result["envelope"] == "urn:xmpp:openpgp:0"
    assert result["hash_verified"] is True and result["size"] == SIZE
