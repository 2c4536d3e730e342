"""``jet-trio share``, ``request`` and ``resume`` against the in-process server."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ._run import COMMAND, arun, cli_env, run
from .conftest import LocalServer
from .test_send_receive import STUB, payload

SHA_ZERO = "0" * 64


class Running:
    """A ``jet-trio`` process running in the background (``share``, ``receive``)."""

    def __init__(self, proc: trio.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr_file = stderr
        self.stdout = b""
        assert proc.stdout is not None
        self._stream = proc.stdout

    async def json_objects(self, count: int) -> list[dict[str, Any]]:
        """Wait for the first ``count`` JSON lines of standard output."""
        while self.stdout.count(b"\n") < count:
            chunk = await self._stream.receive_some()
            assert chunk, f"the process ended early: {self.stdout!r}"
            self.stdout += chunk
        return [json.loads(line) for line in self.stdout.splitlines()[:count]]

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text()

    async def interrupt(self) -> int:
        """Ctrl-C; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            while chunk := await self._stream.receive_some():
                self.stdout += chunk
            return await self.proc.wait()


@asynccontextmanager
async def background(
    args: Sequence[str], tmp_path: Path, env: dict[str, str]
) -> AsyncIterator[Running]:
    stderr = tmp_path / f"{args[0]}.stderr"
    with stderr.open("wb") as err:
        proc = await trio.lowlevel.open_process(
            [*COMMAND, *args],
            env=cli_env(tmp_path, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        yield Running(proc, stderr)
    finally:
        with trio.CancelScope(shield=True):
            proc.kill()
            await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()


async def test_share_and_request(tmp_path: Path, local_server: LocalServer) -> None:
    first = payload(tmp_path, 150_000, "first.bin")
    second = payload(tmp_path, 1000, "second.txt")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    args = ["share", str(first), str(second), "--accept-stub", "--timeout", "60", "--json"]
    async with background(args, tmp_path, local_server.env("alice")) as share:
        with trio.fail_after(30):
            shared = await share.json_objects(2)
        assert [s["status"] for s in shared] == ["shared", "shared"]
        assert [s["name"] for s in shared] == ["first.bin", "second.txt"]
        assert shared[0]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
        assert shared[0]["size"] == 150_000 and shared[0]["to"] is None

        request = ["request", "--from", "alice@localhost", "-o", str(inbox), "--json"]
        ran = await arun(
            [*request, shared[0]["sha256"], "--envelope", "stub"],
            tmp_path,
            local_server.env("bob"),
        )
        assert ran.returncode == 0, ran.stderr
        got = ran.one_json()
        assert got["status"] == "ok" and got["direction"] == "receive"
        assert got["name"] == "first.bin" and got["size"] == 150_000
        assert got["sha256"] == shared[0]["sha256"]
        assert got["envelope"] == STUB and got["cipher"]
        assert got["transport"] in ("s5b-direct", "s5b-proxy", "ibb")
        assert got["seconds"] >= 0 and got["hash_verified"] is True
        assert Path(got["path"]) == inbox / "first.bin"
        assert (inbox / "first.bin").read_bytes() == first.read_bytes()
        # share says who fetched what.
        with trio.fail_after(30):
            served = (await share.json_objects(3))[2]
        assert served["status"] == "served"
        assert served["peer"].startswith("bob@localhost/")
        assert (served["name"], served["length"], served["offset"]) == ("first.bin", 150_000, 0)
        assert served["sha256"] == shared[0]["sha256"]

        # The same file again: it exists, and nothing is kept of the second download.
        ran = await arun(
            [*request, shared[0]["sha256"], "--envelope", "stub"],
            tmp_path,
            local_server.env("bob"),
        )
        assert ran.returncode == 10, (ran.stderr, share.stderr)
        assert ran.one_json()["reason"] == "file"
        assert sorted(p.name for p in inbox.iterdir()) == ["first.bin"]
        # With --rename it is stored beside it, under the next free name.
        ran = await arun(
            [*request, shared[0]["sha256"], "--envelope", "stub", "--rename"],
            tmp_path,
            local_server.env("bob"),
        )
        assert ran.returncode == 0, (ran.stderr, share.stderr)
        assert Path(ran.one_json()["path"]) == inbox / "first (1).bin"
        assert (inbox / "first (1).bin").read_bytes() == first.read_bytes()
        assert sorted(p.name for p in inbox.iterdir()) == ["first (1).bin", "first.bin"]
        with trio.fail_after(30):
            await share.json_objects(4)  # the second request served

        # A hash nobody shares.
        ran = await arun(
            [*request, SHA_ZERO, "--envelope", "stub"], tmp_path, local_server.env("bob")
        )
        assert ran.returncode == 6, (ran.stderr, share.stderr)
        assert ran.one_json()["reason"] == "not-available", (ran.stderr, share.stderr)

        # Unencrypted, in-band, by the upper-case hash.
        ran = await arun(
            [*request, shared[1]["sha256"].upper(), "--envelope", "none", "--transport", "ibb"],
            tmp_path,
            local_server.env("bob"),
        )
        assert ran.returncode == 0, ran.stderr
        got = ran.one_json()
        assert got["envelope"] is None and got["transport"] == "ibb"
        assert (inbox / "second.txt").read_bytes() == second.read_bytes()
        assert "WITHOUT end-to-end encryption" in ran.stderr

        assert await share.interrupt() == 130


async def test_share_limited_to(tmp_path: Path, local_server: LocalServer) -> None:
    src = payload(tmp_path, 1000)
    args = ["share", str(src), "--to", "carol@localhost", "--accept-stub", "--json"]
    async with background(args, tmp_path, local_server.env("alice")) as share:
        with trio.fail_after(30):
            (shared,) = await share.json_objects(1)
        assert shared["to"] == ["carol@localhost"]
        args = ["request", shared["sha256"], "--from", "alice@localhost", "-o", str(tmp_path)]
        ran = await arun(
            [*args, "--envelope", "stub", "--json"],
            tmp_path,
            local_server.env("bob"),
        )
        assert ran.returncode == 6, ran.stderr
        assert ran.one_json()["reason"] == "not-available"


async def test_share_timeout(tmp_path: Path, local_server: LocalServer) -> None:
    src = payload(tmp_path, 10)
    ran = await arun(["share", str(src), "--timeout", "0.5"], tmp_path, local_server.env("alice"))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [hashlib.sha256(src.read_bytes()).hexdigest(), src.name]


async def part_grows(directory: Path, size: int) -> None:
    """Wait until a partial download in ``directory`` holds more than ``size`` bytes."""
    while True:
        if any(p.stat().st_size > size for p in directory.glob(".*.part")):
            return
        await trio.sleep(0.05)


async def test_interrupted_request_then_resume(tmp_path: Path, local_server: LocalServer) -> None:
    """Ctrl-C during a request keeps the partial download; ``resume`` fetches the rest from
    the sharer and verifies the whole file."""
    src = payload(tmp_path, 48 * 1024 * 1024, "big.bin")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    share = ["share", str(src), "--accept-stub", "--json"]
    async with background(share, tmp_path, local_server.env("alice")) as sharing:
        with trio.fail_after(30):
            await sharing.json_objects(1)
        request = ["request", sha, "--from", "alice@localhost", "-o", str(inbox)]
        request += ["--envelope", "stub", "--transport", "ibb", "--json"]
        async with background(request, tmp_path, local_server.env("bob")) as receiver:
            with trio.fail_after(60):
                await part_grows(inbox, 1_000_000)
            assert await receiver.interrupt() == 130
            assert "jet-trio resume" in receiver.stderr  # how to go on
        assert not (inbox / "big.bin").exists()

        listed = run(["resume", "--list", str(inbox), "--json"], tmp_path).one_json()
        assert listed["status"] == "partial"
        assert listed["name"] == "big.bin" and listed["size"] == src.stat().st_size
        assert 0 < listed["received"] < listed["size"]
        assert listed["peer"].startswith("alice@localhost")
        assert listed["sha256"] == sha
        human = run(["resume", "--list", str(inbox)], tmp_path)
        assert "big.bin" in human.stdout and "jet-trio resume" in human.stdout

        ran = await arun(
            ["resume", listed["part"], "--json"], tmp_path, local_server.env("bob"), limit=90
        )
    assert ran.returncode == 0, ran.stderr
    got = ran.one_json()
    assert got["status"] == "ok" and got["hash_verified"] is True
    assert got["resumed_from"] == listed["received"]
    assert got["envelope"] == STUB  # the method of the interrupted download
    assert got["wire_bytes"] < src.stat().st_size
    assert (inbox / "big.bin").read_bytes() == src.read_bytes()
    assert run(["resume", "--list", str(inbox), "--json"], tmp_path).stdout == ""
    assert sorted(p.name for p in inbox.iterdir()) == ["big.bin"]


async def test_interrupted_receive_of_a_send_cannot_be_requested_by_hash(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """A send announces its hash for after the data (hash while sending): Ctrl-C during the
    receive keeps the partial with the hash not known, and ``resume`` says why it cannot
    request it instead of sending a request without a hash."""
    src = payload(tmp_path, 48 * 1024 * 1024, "big.bin")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    receive = ["receive", "-o", str(inbox), "--accept-stub", "--timeout", "60", "--json"]
    async with background(receive, tmp_path, local_server.env("bob")) as receiver:
        sent: dict[str, int] = {}

        async def send() -> None:
            args = ["send", str(src), "--to", "bob@localhost", "--envelope", "stub"]
            ran = await arun(
                [*args, "--transport", "ibb", "--wait", "20", "--json"],
                tmp_path,
                local_server.env("alice"),
            )
            sent["code"] = ran.returncode

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with trio.fail_after(60):
                await part_grows(inbox, 1_000_000)
            assert await receiver.interrupt() == 130
    assert sent["code"] != 0
    assert not (inbox / "big.bin").exists()
    listed = run(["resume", "--list", str(inbox), "--json"], tmp_path).one_json()
    assert listed["status"] == "partial" and listed["sha256"] == ""
    assert 0 < listed["received"] < listed["size"]
    ran = await arun(["resume", listed["part"], "--json"], tmp_path, local_server.env("bob"))
    assert ran.returncode != 0
    assert "offers it again" in ran.stderr, ran.stderr
    assert not (inbox / "big.bin").exists()


def test_request_usage_errors(tmp_path: Path) -> None:
    env = {"JET_TRIO_ACCOUNT": "bob@localhost", "JET_TRIO_PASSWORD": "x"}
    for bad in ("abc", "g" * 64, "0" * 63):
        ran = run(["request", bad, "--from", "alice@localhost", "-o", ".", "--json"], tmp_path, env)
        assert ran.returncode == 2
        assert ran.one_json()["reason"] == "usage"
        assert "SHA-256" in ran.stderr
    ran = run(
        ["request", SHA_ZERO, "--from", "alice@localhost", "-o", str(tmp_path / "no"), "--json"],
        tmp_path,
        env,
    )
    assert (ran.returncode, ran.one_json()["reason"]) == (10, "file")
    assert run(["request", SHA_ZERO, "-o", "."], tmp_path, env).returncode == 2  # no --from


def test_resume_errors(tmp_path: Path) -> None:
    env = {"JET_TRIO_ACCOUNT": "bob@localhost", "JET_TRIO_PASSWORD": "x"}
    ran = run(["resume", str(tmp_path / "nothing.part"), "--json"], tmp_path, env)
    assert (ran.returncode, ran.one_json()["reason"]) == (10, "file")
    assert "--list" in ran.stderr
    broken = tmp_path / ".x.part.jet-partial.json"
    broken.write_text("{not json")
    ran = run(["resume", str(broken), "--json"], tmp_path, env)
    assert (ran.returncode, ran.one_json()["reason"]) == (10, "file")
    ran = run(["resume", "--list", str(tmp_path / "missing"), "--json"], tmp_path)
    assert (ran.returncode, ran.one_json()["reason"]) == (10, "file")
    assert run(["resume"], tmp_path).returncode == 2
    assert run(["resume", str(broken), "--list", str(tmp_path)], tmp_path).returncode == 2


def test_a_planted_record_is_neither_listed_nor_resumed(tmp_path: Path) -> None:
    """The red team's record, delivered as a file: it names ~/.bashrc as its target and
    authorized_keys as its data. ``resume --list`` shows nothing of it and ``resume`` refuses
    it before logging in; neither file is touched."""
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    inbox.mkdir()
    home.mkdir()
    for victim in (".bashrc", "authorized_keys"):
        (home / victim).write_text("precious")
    planted = inbox / ".X.part.jet-partial.json"
    planted.write_text(
        json.dumps(
            {
                "part": str(home / "authorized_keys"),
                "dest": str(home / ".bashrc"),
                "peer": "mallory@localhost/x",
                "name": "x",
                "size": 8,
                "sha256": SHA_ZERO,
                "envelope": None,
            }
        )
    )
    (inbox / ".X.part").write_bytes(b"x")
    ran = run(["resume", "--list", str(inbox), "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.json_lines() == [] and str(home) not in ran.stdout
    assert "not written by jet-trio" in ran.stderr
    env = {"JET_TRIO_ACCOUNT": "bob@localhost", "JET_TRIO_PASSWORD": "x"}
    ran = run(["resume", str(planted), "--json"], tmp_path, env)
    assert (ran.returncode, ran.one_json()["reason"]) == (10, "file")
    assert all((home / v).read_text() == "precious" for v in (".bashrc", "authorized_keys"))
