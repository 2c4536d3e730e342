"""Checks before work: the output directory before logging in, the free space before accepting
an offer, option values before connecting; and refusals that tell the sender only what is its
business (not the receiver's paths or options)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ._run import arun, run
from .conftest import LocalServer
from .test_send_receive import payload, send_and_receive

# Nothing listens here: a check that ran only after connecting would fail with exit 3 instead.
NO_SERVER = {
    "JET_TRIO_ACCOUNT": "alice@localhost",
    "JET_TRIO_PASSWORD": "pw",
    "JET_TRIO_SERVER": "127.0.0.1:1",
}


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system (a tmpfs where mounting is allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "j18small", str(mnt)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only file system (permissions alone do not stop root)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "j18ro", str(mnt)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_receive_checks_the_output_directory_before_logging_in(
    tmp_path: Path, read_only_dir: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    ran = run(["receive", "-o", str(a_file), "--json"], tmp_path, NO_SERVER, timeout=30)
    assert ran.returncode == 2, ran.stderr  # the option's value: refused by the parser
    for path, problem in [
        (tmp_path / "missing", "does not exist"),
        (read_only_dir, "is not writable"),
    ]:
        ran = run(["receive", "-o", str(path), "--json"], tmp_path, NO_SERVER, timeout=30)
        assert ran.returncode == 10, ran.stderr
        failure = ran.one_json()
        assert failure["reason"] == "file", failure
        assert problem in failure["message"], failure


def test_unknown_cipher_is_a_usage_error_before_connecting(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"data")
    nope = ["--cipher", "nope", "--json"]
    ran = run(
        ["send", str(src), "--to", "bob@localhost", "--cipher", "aes-256", "--json"],
        tmp_path,
        NO_SERVER,
        timeout=30,
    )
    assert ran.returncode == 2, ran.stderr
    failure = ran.one_json()
    assert failure["reason"] == "usage", failure
    assert "aes-256" in failure["message"] and "--cipher" in failure["message"], failure
    assert "jet-trio plugins" in failure["hint"], failure
    (tmp_path / "in").mkdir()
    ran = run(
        ["request", "0" * 64, "--from", "bob@localhost", "-o", str(tmp_path / "in"), *nope],
        tmp_path,
        NO_SERVER,
        timeout=30,
    )
    assert ran.returncode == 2, ran.stderr


async def test_offer_larger_than_the_free_space_is_declined(
    tmp_path: Path, local_server: LocalServer, small_tmpfs: Path
) -> None:
    src = payload(tmp_path, size=3 * 1024 * 1024)
    results = {}
    stub = ["--envelope", "stub"]

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", "-o", str(small_tmpfs), "--accept-stub", "--json", "--timeout", "10"],
            tmp_path,
            local_server.env("bob"),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["send"] = await arun(
            ["send", str(src), "--to", "bob@localhost", "--json", "--wait", "20", *stub],
            tmp_path,
            local_server.env("alice"),
        )
    sent, received = results["send"], results["receive"]
    assert sent.returncode == 6, sent.stderr
    declined = sent.one_json()
    assert declined["reason"] == "declined", declined
    assert "needs 3.0 MiB, 2.0 MiB free" in declined["message"], declined
    assert str(small_tmpfs) not in declined["message"], declined
    refused = received.json_lines()[0]
    assert refused["status"] == "refused", refused
    assert "needs 3.0 MiB, 2.0 MiB free" in refused["reason"], refused
    assert os.listdir(small_tmpfs) == []


async def test_existing_file_refusal_does_not_show_the_receivers_path_or_options(
    tmp_path: Path, local_server: LocalServer
) -> None:
    src = payload(tmp_path, size=1000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / src.name).write_bytes(b"already here")
    sent, received = await send_and_receive(
        tmp_path, local_server, [str(src), "--envelope", "stub"], ["--accept-stub"], 5
    )
    assert sent.returncode == 6, sent.stderr
    declined = sent.one_json()
    assert declined["reason"] == "declined", declined
    assert "already" in declined["message"] and src.name in declined["message"], declined
    for leak in (str(inbox), "--overwrite", "--rename"):
        assert leak not in declined["message"], declined
        assert leak not in declined.get("hint", ""), declined
    refused = received.json_lines()[0]["reason"]
    assert str(inbox / src.name) in refused
    assert "--rename" in refused and "--overwrite" in refused
    assert (inbox / src.name).read_bytes() == b"already here"


def test_bad_direct_host_is_a_usage_error_before_connecting(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"data")
    (tmp_path / "in").mkdir()
    bad = ["--direct-host", "bad host!", "--json"]
    for args in (
        ["send", str(src), "--to", "bob@localhost", *bad],
        ["receive", "-o", str(tmp_path / "in"), *bad],
        ["request", "0" * 64, "--from", "bob@localhost", "-o", str(tmp_path / "in"), *bad],
        ["share", str(src), *bad],
    ):
        ran = run(args, tmp_path, NO_SERVER, timeout=30)
        assert ran.returncode == 2, (args, ran.stderr)
        assert "--direct-host" in ran.one_json()["message"], (args, ran.stdout)


def test_installed_ciphers_pass_the_check(tmp_path: Path) -> None:
    """Every cipher ``jet-trio plugins`` lists (aliases, plugins' ciphers) gets past the early
    check: the run goes on to connect (and fails there, exit 3, as nothing listens)."""
    listed = run(["plugins", "--json"], tmp_path, timeout=30).one_json()["ciphers"]
    src = tmp_path / "f.bin"
    src.write_bytes(b"data")
    names = [c["urn"] for c in listed] + [a for c in listed for a in c["aliases"]]
    assert "urn:xmpp:ciphers:aes-128-gcm-nopadding" in names
    for name in names:
        ran = run(
            ["send", str(src), "--to", "bob@localhost", "--cipher", name, "--json"],
            tmp_path,
            NO_SERVER,
            timeout=30,
        )
        assert ran.returncode == 3, (name, ran.stderr)


async def test_offers_received_at_once_share_the_free_space(
    tmp_path: Path, local_server: LocalServer, small_tmpfs: Path
) -> None:
    """Two 1.5 MiB offers at once into 2 MiB: the second is declined before it fills the disk
    (each alone would fit)."""
    import jet_trio

    from .test_exit_codes_e2e import library_peer

    srcs = [payload(tmp_path, size=1536 * 1024, name=f"half{i}.bin") for i in (1, 2)]
    outcomes: list[str] = []
    ran: dict[str, object] = {}
    # Two offers, of which one is refused: it waits for the second until --timeout.
    receive_opts = ["--count", "2", "--json", "--timeout", "8"]

    async with library_peer(local_server, "alice") as alice:

        async def receive() -> None:
            ran["receive"] = await arun(
                ["receive", "-o", str(small_tmpfs), "--accept-unencrypted", *receive_opts],
                tmp_path,
                local_server.env("bob"),
            )

        async def send(src: Path, to: jet_trio.JID) -> None:
            try:
                await alice.send_file(src, to, encrypt=None)
                outcomes.append("ok")
            except jet_trio.TransferDeclined as exc:
                outcomes.append(f"declined: {exc}")
            except jet_trio.TransferError as exc:
                outcomes.append(f"failed: {exc}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            with trio.fail_after(30):
                bob = await alice.client.wait_available(jet_trio.JID("bob@localhost"))
                async with trio.open_nursery() as senders:
                    for src in srcs:
                        senders.start_soon(send, src, bob)
    assert sorted(o.split(":")[0] for o in outcomes) == ["declined", "ok"], outcomes
    assert "needs 1.5 MiB" in next(o for o in outcomes if o != "ok"), outcomes
    assert len([p for p in os.listdir(small_tmpfs) if not p.startswith(".")]) == 1
