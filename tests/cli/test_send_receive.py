"""``jet-trio send`` and ``receive`` against the in-process server, and against Prosody."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest
import trio

from tests.integration._servers import ServerInfo

from ._run import COMMAND, Ran, arun, cli_env, run
from .conftest import LocalServer

STUB = "urn:xmpp:encryption:stub:0"
HAVE_OMEMO = importlib.util.find_spec("jet_trio_omemo") is not None


def payload(tmp_path: Path, size: int = 200_000, name: str = "payload.bin") -> Path:
    src = tmp_path / "outbox" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(os.urandom(size))
    return src


async def send_and_receive(
    tmp_path: Path,
    server: LocalServer,
    send_args: list[str],
    receive_args: list[str],
    receive_timeout: float = 30,
    receive_env: dict[str, str] | None = None,
) -> tuple[Ran, Ran]:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            [
                "receive",
                "--output-dir",
                str(inbox),
                "--timeout",
                str(receive_timeout),
                "--json",
                *receive_args,
            ],
            tmp_path,
            {**server.env("bob"), **(receive_env or {})},
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        # The sender waits (--wait) until bob is online.
        results["send"] = await arun(
            ["send", "--to", "bob@localhost", "--json", "--wait", "20", *send_args],
            tmp_path,
            server.env("alice"),
        )
    return results["send"], results["receive"]


@pytest.mark.parametrize("transport", ["auto", "ibb"])
async def test_stub_transfer(tmp_path: Path, local_server: LocalServer, transport: str) -> None:
    src = payload(tmp_path)
    sent, received = await send_and_receive(
        tmp_path,
        local_server,
        [str(src), "--envelope", "stub", "--transport", transport],
        ["--accept-stub"],
    )
    assert sent.returncode == 0, sent.stderr
    assert received.returncode == 0, received.stderr
    s, r = sent.one_json(), received.one_json()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    for result in (s, r):
        assert result["status"] == "ok"
        assert result["sha256"] == digest
        assert result["envelope"] == STUB
        assert result["size"] == src.stat().st_size
        assert (result["transport"] == "ibb") == (transport == "ibb")
    assert s["direction"] == "send" and r["direction"] == "receive"
    assert r["hash_verified"] is True
    assert Path(r["path"]).read_bytes() == src.read_bytes()
    assert "stub envelope" in sent.stderr


async def test_unencrypted_needs_both_sides_to_agree(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """An unencrypted offer is refused unless the receiver passes --accept-unencrypted."""
    src = payload(tmp_path)
    sent, received = await send_and_receive(
        tmp_path, local_server, [str(src), "--envelope", "none"], [], receive_timeout=3
    )
    assert sent.returncode == 6, sent.stderr
    assert received.returncode == 11  # refused offers do not count: it waited in vain
    assert sent.one_json()["reason"] == "declined"
    refused = received.json_lines()[0]
    assert refused["status"] == "refused"
    assert "not end-to-end encrypted" in refused["reason"]
    assert not (tmp_path / "inbox" / src.name).exists()

    sent, received = await send_and_receive(
        tmp_path, local_server, [str(src), "--envelope", "none"], ["--accept-unencrypted"]
    )
    assert sent.returncode == 0 and received.returncode == 0, (sent.stderr, received.stderr)
    assert received.one_json()["envelope"] is None


async def test_refused_sender(tmp_path: Path, local_server: LocalServer) -> None:
    src = payload(tmp_path)
    sent, received = await send_and_receive(
        tmp_path,
        local_server,
        [str(src), "--envelope", "stub"],
        ["--accept-stub", "--from", "carol@localhost"],
        receive_timeout=3,
    )
    assert sent.returncode == 6
    error = sent.one_json()
    assert error["status"] == "error" and error["reason"] == "declined"
    assert "carol@localhost" in received.json_lines()[0]["reason"]


async def test_max_size(tmp_path: Path, local_server: LocalServer) -> None:
    src = payload(tmp_path, 5000)
    sent, received = await send_and_receive(
        tmp_path,
        local_server,
        [str(src), "--envelope", "stub"],
        ["--accept-stub", "--max-size", "4999"],
        receive_timeout=3,
    )
    assert sent.returncode == 6
    assert "--max-size" in received.json_lines()[0]["reason"]


async def test_wrong_password(tmp_path: Path, local_server: LocalServer) -> None:
    env = local_server.env("alice") | {"JET_TRIO_PASSWORD": "wrong"}
    ran = await arun(["send", str(payload(tmp_path)), "--to", "bob@localhost"], tmp_path, env)
    assert ran.returncode == 5
    assert "wrong password" in ran.stderr
    assert ran.stderr.strip().count("\n") == 0  # one line
    assert "--password-file" in ran.stderr


async def test_wrong_password_json(tmp_path: Path, local_server: LocalServer) -> None:
    env = local_server.env("alice") | {"JET_TRIO_PASSWORD": "wrong"}
    ran = await arun(
        ["send", str(payload(tmp_path)), "--to", "bob@localhost", "--json"], tmp_path, env
    )
    assert ran.returncode == 5
    error = ran.one_json()
    assert error == error | {"status": "error", "reason": "authentication", "exit_code": 5}
    assert error["message"]


async def test_password_file(tmp_path: Path, local_server: LocalServer) -> None:
    env = local_server.env("alice")
    password_file = tmp_path / "pw"
    password_file.write_text(env.pop("JET_TRIO_PASSWORD") + "\n")
    ran = await arun(["plugins", "--password-file", str(password_file), "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    info = ran.one_json()
    assert info["logged_in"] is True
    if HAVE_OMEMO:  # OMEMO's envelope methods load only with a connection
        assert "omemo" in [e["name"] for e in info["envelopes"]]


async def test_untrusted_certificate(tmp_path: Path, local_server: LocalServer) -> None:
    env = local_server.env("alice")
    del env["JET_TRIO_CA_FILE"]
    ran = await arun(["send", str(payload(tmp_path)), "--to", "bob@localhost"], tmp_path, env)
    assert ran.returncode == 4
    assert "not trusted" in ran.stderr and "--ca-file" in ran.stderr


async def test_peer_offline(tmp_path: Path, local_server: LocalServer) -> None:
    ran = await arun(
        ["send", str(payload(tmp_path)), "--to", "carol@localhost", "--wait", "0.5", "--json"],
        tmp_path,
        local_server.env("alice") | {"JET_TRIO_DATA_DIR": str(tmp_path / "data")},
    )
    assert ran.returncode == 6
    assert ran.one_json()["reason"] == "peer-unavailable"
    assert (tmp_path / "data" / "alice@localhost").is_dir()


async def test_receive_timeout(tmp_path: Path, local_server: LocalServer) -> None:
    ran = await arun(
        ["receive", "-o", str(tmp_path), "--timeout", "0.5", "--json"],
        tmp_path,
        local_server.env("bob"),
    )
    assert ran.returncode == 11
    assert ran.one_json()["reason"] == "timeout"


async def test_envelope_not_installed(tmp_path: Path, local_server: LocalServer) -> None:
    ran = await arun(
        ["send", str(payload(tmp_path)), "--to", "bob@localhost", "--envelope", "urn:example:x"],
        tmp_path,
        local_server.env("alice"),
    )
    assert ran.returncode == 8
    assert "urn:example:x" in ran.stderr and "not available" in ran.stderr


def test_password_argument_refused(tmp_path: Path) -> None:
    for args in (["--password", "s3cret"], ["--password=s3cret"]):
        ran = run(["send", "f", "--to", "bob@localhost", "-a", "alice@localhost", *args], tmp_path)
        assert ran.returncode == 2
        assert "not accepted on the command line" in ran.stderr
        assert "s3cret" not in ran.stderr + ran.stdout
    ran = run(["receive", "-o", ".", "--password", "s3cret", "--json"], tmp_path)
    assert ran.returncode == 2
    assert ran.one_json()["reason"] == "usage"


def test_no_password_without_terminal(tmp_path: Path) -> None:
    src = payload(tmp_path)
    ran = run(["send", str(src), "--to", "bob@localhost", "-a", "alice@localhost"], tmp_path)
    assert ran.returncode == 2
    assert "no password" in ran.stderr and "JET_TRIO_PASSWORD" in ran.stderr


def test_unknown_host(tmp_path: Path) -> None:
    ran = run(
        ["send", str(payload(tmp_path)), "--to", "bob@nowhere.invalid", "--json"],
        tmp_path,
        {
            "JET_TRIO_ACCOUNT": "alice@nowhere.invalid",
            "JET_TRIO_PASSWORD": "x",
            "JET_TRIO_SERVER": "host.nowhere.invalid:5222",
        },
    )
    assert ran.returncode == 3
    assert ran.one_json()["reason"] in ("dns", "connection")


def test_connection_refused(tmp_path: Path) -> None:
    ran = run(
        ["send", str(payload(tmp_path)), "--to", "bob@localhost"],
        tmp_path,
        {
            "JET_TRIO_ACCOUNT": "alice@localhost",
            "JET_TRIO_PASSWORD": "x",
            "JET_TRIO_SERVER": "127.0.0.1:1",
        },
    )
    assert ran.returncode == 3
    assert "could not connect" in ran.stderr and "--server" in ran.stderr


def test_missing_file(tmp_path: Path) -> None:
    ran = run(
        ["send", str(tmp_path / "nope"), "--to", "bob@localhost", "--json"],
        tmp_path,
        {"JET_TRIO_ACCOUNT": "alice@localhost", "JET_TRIO_PASSWORD": "x"},
    )
    assert ran.returncode == 10
    assert ran.one_json()["reason"] == "file"


def test_usage_errors(tmp_path: Path) -> None:
    assert run(["send", "f"], tmp_path).returncode == 2  # --to missing
    ran = run(["send", "f", "--to", "not a jid@@", "-a", "alice@localhost"], tmp_path)
    assert ran.returncode in (2, 10)
    ran = run(["receive", "-o", str(tmp_path), "-a", "@@", "--json"], tmp_path)
    assert ran.returncode == 2
    assert ran.one_json()["reason"] == "usage"
    assert run(["--help"], tmp_path).returncode == 0


# -- through the real Prosody -----------------------------------------------------------------


def prosody_env(server: ServerInfo, user: str) -> dict[str, str]:
    return {
        "JET_TRIO_ACCOUNT": server.jid(user),
        "JET_TRIO_PASSWORD": server.password(user),
        "JET_TRIO_SERVER": f"{server.host}:{server.port}",
        "JET_TRIO_CA_FILE": server.ca_file,
    }


@pytest.mark.integration
@pytest.mark.parametrize(
    ("envelope", "receive_flag"),
    [
        ("stub", "--accept-stub"),
        ("none", "--accept-unencrypted"),
        pytest.param(
            "omemo",
            "--count=1",
            marks=pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed"),
        ),
    ],
)
def test_prosody_send_receive(
    prosody: ServerInfo, tmp_path: Path, envelope: str, receive_flag: str
) -> None:
    src = payload(tmp_path, 300_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    receiver = subprocess.Popen(
        [
            *COMMAND,
            "receive",
            "-o",
            str(inbox),
            "--timeout",
            "60",
            "--json",
            receive_flag,
            "--from",
            prosody.jid("alice"),
        ],
        env=cli_env(tmp_path, prosody_env(prosody, "bob")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start = time.monotonic()
        sent = run(
            [
                "send",
                str(src),
                "--to",
                prosody.jid("bob"),
                "--envelope",
                envelope,
                "--json",
                "--wait",
                "30",
            ],
            tmp_path,
            prosody_env(prosody, "alice"),
        )
        out, err = receiver.communicate(timeout=max(5.0, 90 - (time.monotonic() - start)))
    finally:
        receiver.kill()
        receiver.wait()
    assert sent.returncode == 0, sent.stderr
    assert receiver.returncode == 0, err
    received = Ran(0, out, err).one_json()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert sent.one_json()["sha256"] == received["sha256"] == digest
    expected = {"stub": STUB, "none": None, "omemo": "eu.siacs.conversations.axolotl"}
    assert received["envelope"] == expected[envelope]
    assert received["hash_verified"] is True
    assert Path(received["path"]) == inbox / src.name
    assert (inbox / src.name).read_bytes() == src.read_bytes()


@pytest.mark.integration
def test_prosody_errors(prosody: ServerInfo, tmp_path: Path) -> None:
    src = payload(tmp_path)
    env = prosody_env(prosody, "alice") | {"JET_TRIO_PASSWORD": "wrong"}
    ran = run(["send", str(src), "--to", prosody.jid("bob"), "--json"], tmp_path, env)
    assert (ran.returncode, ran.one_json()["reason"]) == (5, "authentication")
    env = prosody_env(prosody, "alice")
    del env["JET_TRIO_CA_FILE"]
    ran = run(["send", str(src), "--to", prosody.jid("bob"), "--json"], tmp_path, env)
    assert (ran.returncode, ran.one_json()["reason"]) == (4, "tls")


@pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")
async def test_omemo_is_the_default(tmp_path: Path, local_server: LocalServer) -> None:
    """With the OMEMO plugin installed, send and receive use it without being asked: OMEMO 2,
    the strongest method both jet-trio sides advertise, with AES-256-GCM."""
    src = payload(tmp_path)
    sent, received = await send_and_receive(tmp_path, local_server, [str(src)], [])
    assert sent.returncode == 0, sent.stderr
    assert received.returncode == 0, received.stderr
    for result in (sent.one_json(), received.one_json()):
        assert result["envelope"] == "urn:xmpp:omemo:2"
        assert result["cipher"] == "urn:xmpp:ciphers:aes-256-gcm-nopadding"
        assert result["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    # Each account keeps its OMEMO state in its own data directory.
    assert (tmp_path / "xdg" / "jet-trio" / "alice@localhost").is_dir()
    assert (tmp_path / "xdg" / "jet-trio" / "bob@localhost").is_dir()


async def _two_receivers_one_directory(
    tmp_path: Path, server: LocalServer, receive_args: list[str]
) -> tuple[dict[str, Path], dict[str, Ran], dict[str, Ran]]:
    """alice and carol each send a different ``same.bin`` at once, each to its own
    ``jet-trio receive`` process of bob's; both processes store into one directory."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for d in ("alice", "carol", "r1", "r2"):
        (tmp_path / d).mkdir()
    srcs = {u: payload(tmp_path / u, 3_000_000, "same.bin") for u in ("alice", "carol")}
    target = {"alice": "r1", "carol": "r2"}
    received: dict[str, Ran] = {}
    sent: dict[str, Ran] = {}

    async def receive(resource: str) -> None:
        env = server.env("bob") | {"JET_TRIO_ACCOUNT": f"bob@localhost/{resource}"}
        received[resource] = await arun(
            [
                *("receive", "-o", str(inbox), "--accept-stub", "--timeout", "25", "--json"),
                *receive_args,
            ],
            tmp_path / resource,
            env,
        )

    async def send(user: str) -> None:
        sent[user] = await arun(
            [
                *("send", str(srcs[user]), "--to", f"bob@localhost/{target[user]}"),
                *("--envelope", "stub", "--json", "--wait", "30"),
            ],
            tmp_path / user,
            server.env(user),
        )

    async with trio.open_nursery() as n:
        for resource in ("r1", "r2"):
            n.start_soon(receive, resource)
        for user in srcs:
            n.start_soon(send, user)
    return srcs, sent, received


async def test_two_receive_processes_one_directory_rename(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """With --rename, both files are stored, neither replaces the other."""
    srcs, sent, received = await _two_receivers_one_directory(tmp_path, local_server, ["--rename"])
    for ran in (*sent.values(), *received.values()):
        assert ran.returncode == 0, ran.stderr
    paths = sorted(Path(r.one_json()["path"]) for r in received.values())
    inbox = tmp_path / "inbox"
    assert paths == [inbox / "same (1).bin", inbox / "same.bin"]
    stored = sorted(p.read_bytes() for p in paths)
    assert stored == sorted(s.read_bytes() for s in srcs.values())
    assert sorted(p.name for p in inbox.iterdir()) == ["same (1).bin", "same.bin"]


async def test_two_receive_processes_one_directory_no_clobber(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """Without --rename or --overwrite, nothing is replaced and nothing is lost: the second
    file is either refused before it is accepted (the sender is told) or, if both were
    accepted while the name was free, kept as "same (1).bin" with a name-taken error."""
    srcs, sent, received = await _two_receivers_one_directory(tmp_path, local_server, [])
    inbox = tmp_path / "inbox"
    contents = {p.name: p.read_bytes() for p in inbox.iterdir()}
    assert "same.bin" in contents
    winner = next(u for u, s in srcs.items() if s.read_bytes() == contents["same.bin"])
    loser = "carol" if winner == "alice" else "alice"
    loser_rx = received["r2" if loser == "carol" else "r1"]
    if "same (1).bin" in contents:
        assert contents["same (1).bin"] == srcs[loser].read_bytes()
        assert loser_rx.returncode == 10, loser_rx.stderr
        assert loser_rx.json_lines()[-1]["reason"] == "name-taken"
        assert sent[loser].returncode == 0
    else:
        assert sorted(contents) == ["same.bin"]
        assert "already exists" in loser_rx.stdout
        assert sent[loser].returncode == 6, sent[loser].stderr  # declined: it knows
    assert sent[winner].returncode == 0, sent[winner].stderr
