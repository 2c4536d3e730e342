"""The command line when an envelope method cannot be set up, and OMEMO by default on ejabberd.

A failed OMEMO set-up used to leave only a warning, after which ``send`` quietly took another
method (OpenPGP). Now the warning says what the run loses, and ``send`` refuses to choose for the
user: the error names the cause.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration._servers import ServerInfo
from tests.integration.conftest import ejabberd

from ._run import COMMAND, Ran, arun, cli_env, run
from .conftest import LocalServer

__all__ = ["ejabberd"]

HAVE_OMEMO = importlib.util.find_spec("jet_trio_omemo") is not None
pytestmark = pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")


def payload(tmp_path: Path, size: int = 100_000) -> Path:
    src = tmp_path / "outbox" / "payload.bin"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(os.urandom(size))
    return src


def break_omemo_store(tmp_path: Path, account: str) -> None:
    """Make the OMEMO store of ``account`` impossible to open (its directory is a file)."""
    account_dir = tmp_path / "xdg" / "jet-trio" / account
    account_dir.mkdir(parents=True, mode=0o700)
    (account_dir / "omemo").write_text("not a directory")


async def test_send_refuses_to_drop_omemo_silently(
    tmp_path: Path, local_server: LocalServer
) -> None:
    break_omemo_store(tmp_path, "alice@localhost")
    src = payload(tmp_path)
    for envelope in ([], ["--envelope", "omemo"]):
        ran = await arun(
            ["send", str(src), "--to", "bob@localhost", "--json", "--wait", "1", *envelope],
            tmp_path,
            local_server.env("alice"),
        )
        failure = ran.one_json()
        assert (ran.returncode, failure["reason"]) == (8, "encryption"), ran.stderr
        assert "OMEMO could not be set up" in failure["message"]
        assert "cannot open the OMEMO store" in failure["message"]  # the cause, named
        assert "OMEMO is NOT available in this run" in ran.stderr
        assert "--envelope" in failure["hint"]


async def test_request_refuses_to_drop_omemo_silently(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """``request`` chooses its envelope as ``send`` does: the same refusal."""
    break_omemo_store(tmp_path, "alice@localhost")
    out = tmp_path / "downloads"
    out.mkdir()
    ran = await arun(
        ["request", "ab" * 32, "--from", "bob@localhost", "-o", str(out), "--json", "--wait", "1"],
        tmp_path,
        local_server.env("alice"),
    )
    failure = ran.one_json()
    assert (ran.returncode, failure["reason"]) == (8, "encryption"), ran.stderr
    assert "cannot open the OMEMO store" in failure["message"]


async def test_other_method_chosen_explicitly_goes_on(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """With ``--envelope`` naming another method the send goes on (here: waits for bob); the
    broken OMEMO store is not even opened, since a send that cannot use OMEMO does not start it
    (so no OMEMO warning either)."""
    break_omemo_store(tmp_path, "alice@localhost")
    src = payload(tmp_path)
    ran = await arun(
        ["send", str(src), "--to", "bob@localhost", "--json", "--wait", "1", "--envelope", "none"],
        tmp_path,
        local_server.env("alice"),
    )
    assert (ran.returncode, ran.one_json()["reason"]) == (6, "peer-unavailable"), ran.stderr
    assert "OMEMO" not in ran.stderr


async def test_receive_says_what_omemo_failure_means(
    tmp_path: Path, local_server: LocalServer
) -> None:
    break_omemo_store(tmp_path, "bob@localhost")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ran = await arun(
        ["receive", "-o", str(inbox), "--timeout", "0.5", "--json"],
        tmp_path,
        local_server.env("bob"),
    )
    assert "OMEMO is NOT available in this run" in ran.stderr
    assert "cannot open the OMEMO store" in ran.stderr
    assert "OMEMO-encrypted offers are refused" in ran.stderr


def server_env(server: ServerInfo, user: str) -> dict[str, str]:
    return {
        "JET_TRIO_ACCOUNT": server.jid(user),
        "JET_TRIO_PASSWORD": server.password(user),
        "JET_TRIO_SERVER": f"{server.host}:{server.port}",
        "JET_TRIO_CA_FILE": server.ca_file,
    }


@pytest.mark.integration
def test_ejabberd_send_receive_default_is_omemo(ejabberd: ServerInfo, tmp_path: Path) -> None:
    """The reported case: a plain ``jet-trio send`` against ejabberd 23.01 uses OMEMO (OMEMO 2,
    the strongest both sides advertise)."""
    src = payload(tmp_path, 300_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    receiver = subprocess.Popen(
        [*COMMAND, "receive", "-o", str(inbox), "--timeout", "60", "--json", "--count=1"],
        env=cli_env(tmp_path / "bob", server_env(ejabberd, "bob")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start = time.monotonic()
        sent = run(
            ["send", str(src), "--to", ejabberd.jid("bob"), "--json", "--wait", "30"],
            tmp_path / "alice",
            server_env(ejabberd, "alice"),
        )
        out, err = receiver.communicate(timeout=max(5.0, 90 - (time.monotonic() - start)))
    finally:
        receiver.kill()
        receiver.wait()
    assert sent.returncode == 0, sent.stderr
    assert "OMEMO is NOT available" not in sent.stderr, sent.stderr
    assert receiver.returncode == 0, err
    received = Ran(0, out, err).one_json()
    assert received["envelope"] == sent.one_json()["envelope"] == "urn:xmpp:omemo:2", sent.stderr
    assert received["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (inbox / src.name).read_bytes() == src.read_bytes()
