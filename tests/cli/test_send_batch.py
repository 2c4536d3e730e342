"""``jet-trio send`` with several files, folders and standard input (real processes)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.integration._servers import ServerInfo

from ._run import COMMAND, Ran, arun, cli_env, run
from .conftest import LocalServer
from .test_send_receive import prosody_env


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def batch(
    tmp_path: Path,
    server: LocalServer,
    send_args: list[str],
    count: int,
    receive_args: tuple[str, ...] = (),
    stdin: bytes | None = None,
) -> tuple[Ran, Ran, Path]:
    """Run ``receive --count count`` for bob and ``send ... --to bob`` for alice."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            [
                "receive",
                "-o",
                str(inbox),
                "--count",
                str(count),
                "--timeout",
                "60",
                "--accept-stub",
                "--json",
                *receive_args,
            ],
            tmp_path,
            server.env("bob"),
            limit=90,
        )

    async def send() -> None:
        args = [*COMMAND, "send", "--to", "bob@localhost", "--envelope", "stub", "--json"]
        with trio.fail_after(90):
            proc = await trio.run_process(
                [*args, "--wait", "20", *send_args],
                env=cli_env(tmp_path, server.env("alice")),
                stdin=stdin if stdin is not None else b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        results["send"] = Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        nursery.start_soon(send)
    return results["send"], results["receive"], inbox


def by_status(ran: Ran) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in ran.json_lines():
        out.setdefault(obj["status"], []).append(obj)
    return out


async def test_three_files(tmp_path: Path, local_server: LocalServer) -> None:
    files = [
        write(tmp_path / "out" / name, os.urandom(size))
        for name, size in [("a.jpg", 120_000), ("b.jpg", 5), ("notes.pdf", 300_000)]
    ]
    sent, received, inbox = await batch(tmp_path, local_server, [str(f) for f in files], 3)
    assert sent.returncode == 0, sent.stderr
    assert received.returncode == 0, received.stderr
    objs = by_status(sent)
    assert sorted(o["name"] for o in objs["ok"]) == ["a.jpg", "b.jpg", "notes.pdf"]
    (summary,) = objs["summary"]
    assert summary["files"] == summary["sent"] == 3 and summary["failed"] == 0
    assert summary["exit_code"] == 0 and summary["bytes"] == 420_005
    assert set(objs) == {"ok", "summary"}
    assert sent.json_lines()[-1] is not None and sent.json_lines()[-1]["status"] == "summary"
    for f in files:
        assert (inbox / f.name).read_bytes() == f.read_bytes()


async def test_one_refused_file_sets_the_exit_code(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """The receiver refuses b.jpg (it has one): the others arrive, the sender reports b.jpg
    as declined, and exits 6 (peer declined), the worst outcome."""
    files = [write(tmp_path / "out" / n, os.urandom(50_000)) for n in ("a.jpg", "b.jpg", "c.jpg")]
    inbox = tmp_path / "inbox"
    write(inbox / "b.jpg", b"already here")
    sent, received, inbox = await batch(
        tmp_path, local_server, [str(f) for f in files], 2, ("--parallel", "1")
    )
    assert sent.returncode == 6, sent.stderr
    assert received.returncode == 0, received.stderr
    objs = by_status(sent)
    (error,) = objs["error"]
    assert error["name"] == "b.jpg" and error["reason"] == "declined" and error["exit_code"] == 6
    assert error["path"] == str(files[1])
    assert sorted(o["name"] for o in objs["ok"]) == ["a.jpg", "c.jpg"]
    (summary,) = objs["summary"]
    assert (summary["sent"], summary["failed"], summary["exit_code"]) == (2, 1, 6)
    assert "b.jpg" in sent.stderr
    assert (inbox / "b.jpg").read_bytes() == b"already here"
    for f in (files[0], files[2]):
        assert (inbox / f.name).read_bytes() == f.read_bytes()


async def test_receiver_max_files(tmp_path: Path, local_server: LocalServer) -> None:
    """``receive --max-files 2`` takes two files of the batch and refuses the third; the
    sender reports it as declined (exit code 6)."""
    files = [write(tmp_path / "out" / n, os.urandom(20_000)) for n in ("1.bin", "2.bin", "3.bin")]
    sent, received, inbox = await batch(
        tmp_path,
        local_server,
        [*map(str, files), "--parallel", "1"],
        0,
        ("--max-files", "2", "--timeout", "8"),
    )
    assert sent.returncode == 6, sent.stderr
    assert received.returncode == 0, received.stderr
    assert sorted(p.name for p in inbox.iterdir()) == ["1.bin", "2.bin"]
    objs = by_status(received)
    assert len(objs["ok"]) == 2
    (refused,) = objs["refused"]
    assert refused["name"] == "3.bin" and "--max-files" in refused["reason"]
    (error,) = by_status(sent)["error"]
    assert error["name"] == "3.bin" and "accepts no more files" in error["message"]


async def test_receiver_max_size_counts_the_whole_run(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """``receive --max-size 45000`` bounds the bytes accepted in the run: two files of 20000
    bytes are taken, the third (each is below the bound alone) is refused."""
    files = [write(tmp_path / "out" / n, os.urandom(20_000)) for n in ("1.bin", "2.bin", "3.bin")]
    sent, received, inbox = await batch(
        tmp_path,
        local_server,
        [*map(str, files), "--parallel", "1"],
        0,
        ("--max-size", "45000", "--timeout", "8"),
    )
    assert sent.returncode == 6, sent.stderr
    assert received.returncode == 0, received.stderr
    assert sorted(p.name for p in inbox.iterdir()) == ["1.bin", "2.bin"]
    (refused,) = by_status(received)["refused"]
    assert refused["name"] == "3.bin"
    assert "40000 were accepted already" in refused["reason"] and "--max-size" in refused["reason"]
    (error,) = by_status(sent)["error"]
    assert error["name"] == "3.bin" and "45000 bytes in all" in error["message"]


async def test_folder(tmp_path: Path, local_server: LocalServer) -> None:
    """``send folder/`` to a jet-trio ``receive -o inbox``: the tree is rebuilt under inbox
    (the folder's own name first); a.jpg, which names the same file as A.JPG on
    case-insensitive file systems, is refused by the receiver with a line saying why, and the
    sender reports it."""
    top = tmp_path / "out" / "photos"
    names = ["a.jpg", "2023/b c.jpg", "2023/Été/ü.png", "2023/Été/deep/x.bin", "A.JPG"]
    for i, name in enumerate(names):
        write(top / name, os.urandom(1000 * i + 1))
    (top / "empty").mkdir()
    (top / "link").symlink_to(top / "a.jpg")
    os.mkfifo(top / "fifo")
    sent, received, inbox = await batch(
        tmp_path, local_server, [str(top) + "/", "--parallel", "1"], len(names)
    )
    assert sent.returncode == 6, sent.stderr  # a.jpg: refused by the receiver
    assert received.returncode == 6, received.stderr  # the sender named an unsafe path
    objs = by_status(sent)
    flat = {o["relative"]: o["name"] for o in objs["ok"]}
    assert flat == {
        "photos/A.JPG": "A.JPG",  # names sorted: upper case first
        "photos/2023/b c.jpg": "2023__b c.jpg",
        "photos/2023/Été/ü.png": "2023__Été__ü.png",
        "photos/2023/Été/deep/x.bin": "2023__Été__deep__x.bin",
    }
    stored = {p.relative_to(inbox).as_posix() for p in inbox.rglob("*")}
    assert stored == {
        "photos",
        "photos/A.JPG",
        "photos/2023",
        "photos/2023/b c.jpg",
        "photos/2023/Été",
        "photos/2023/Été/ü.png",
        "photos/2023/Été/deep",
        "photos/2023/Été/deep/x.bin",
    }
    for rel in flat:
        assert (inbox / rel).read_bytes() == (top.parent / rel).read_bytes()
    (error,) = objs["error"]
    assert error["relative"] == "photos/a.jpg" and "case-insensitive" in error["message"]
    assert error["reason"] == "unsafe-path" and error["exit_code"] == 6
    refused = by_status(received)["error"]
    assert [(o["reason"], o["relative"]) for o in refused] == [("unsafe-path", "photos/a.jpg")]
    assert "refused a (2).jpg from alice" in received.stderr
    assert "case-insensitive" in received.stderr
    got = {o["relative"]: o["path"] for o in by_status(received)["ok"]}
    assert got == {rel: str(inbox / rel) for rel in flat}
    skipped = {o["relative"]: o["reason"] for o in objs["skipped"]}
    assert set(skipped) == {"photos/empty", "photos/link", "photos/fifo"}
    assert "empty directory" in skipped["photos/empty"]
    assert "symbolic link" in skipped["photos/link"]
    assert "fifo" in skipped["photos/fifo"]
    assert "no folders" not in sent.stderr
    (summary,) = objs["summary"]
    assert (summary["files"], summary["sent"], summary["skipped"]) == (5, 4, 3)


async def test_folder_following_symlinks(tmp_path: Path, local_server: LocalServer) -> None:
    top = tmp_path / "out" / "docs"
    write(top / "real.txt", b"real")
    write(tmp_path / "elsewhere.txt", b"elsewhere")
    (top / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    sent, _, inbox = await batch(tmp_path, local_server, [str(top), "--follow-symlinks"], 2)
    assert sent.returncode == 0, sent.stderr
    assert (inbox / "docs" / "link.txt").read_bytes() == b"elsewhere"
    assert (inbox / "docs" / "real.txt").read_bytes() == b"real"
    assert not (inbox / "docs" / "link.txt").is_symlink()


async def test_stdin(tmp_path: Path, local_server: LocalServer) -> None:
    data = os.urandom(400_000)
    sent, received, inbox = await batch(
        tmp_path, local_server, ["-", "--name", "piped.tar"], 1, stdin=data
    )
    assert sent.returncode == 0, sent.stderr
    assert received.returncode == 0, received.stderr
    ok = sent.one_json()
    assert ok["name"] == "piped.tar" and ok["sha256"] == hashlib.sha256(data).hexdigest()
    assert (inbox / "piped.tar").read_bytes() == data


async def test_stdin_with_files(tmp_path: Path, local_server: LocalServer) -> None:
    other = write(tmp_path / "out" / "other.bin", os.urandom(1000))
    sent, _, inbox = await batch(
        tmp_path, local_server, ["-", str(other), "--name", "x.bin"], 2, stdin=b"from stdin"
    )
    assert sent.returncode == 0, sent.stderr
    assert (inbox / "x.bin").read_bytes() == b"from stdin"
    assert (inbox / "other.bin").read_bytes() == other.read_bytes()


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["-"], 2, "--name"),
        (["-", "-", "--name", "x"], 2, "only once"),
        (["{f}", "{f}", "--name", "x"], 2, "--name"),
        (["{d}", "--name", "x"], 2, "--name"),
        (["-", "--name", "a/b"], 2, "not a file name"),
        (["{f}", "{missing}"], 10, "does not exist"),
        (["/dev/null"], 10, "not a regular file"),
    ],
)
def test_arguments_checked_before_login(
    tmp_path: Path, args: list[str], code: int, words: str
) -> None:
    f = write(tmp_path / "f.txt", b"x")
    (tmp_path / "d").mkdir()
    values = {"f": str(f), "d": str(tmp_path / "d"), "missing": str(tmp_path / "missing")}
    env = {"JET_TRIO_ACCOUNT": "alice@localhost", "JET_TRIO_SERVER": "127.0.0.1:1"}
    env["JET_TRIO_PASSWORD"] = "pw"
    ran = run(["send", *(a.format(**values) for a in args), "--to", "bob@localhost"], tmp_path, env)
    assert ran.returncode == code, ran.stderr
    assert words in ran.stderr


# -- through the real Prosody -------------------------------------------------------------------


N_TREE = 200


def tree_names(count: int) -> list[str]:
    dirs = ["", "2023", "2023/Été à Zürich", "docs", "docs/日本語", "docs/日本語/深い/もっと"]
    bases = ["photo", "Übersicht", "notes final", "файл", "ångström"]
    return [f"{dirs[i % len(dirs)]}/{bases[i % 5]} {i}.bin".lstrip("/") for i in range(count)]


@pytest.mark.integration
def test_prosody_tree_of_200_files(prosody: ServerInfo, tmp_path: Path) -> None:
    top = tmp_path / "out" / "Fotos"
    names = tree_names(N_TREE)
    for i, name in enumerate(names):
        write(top / name, os.urandom(i * 97 % 20_000))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # The receiver's output goes to files: 200 JSON lines overflow a pipe nobody reads yet.
    out_path, err_path = tmp_path / "receive.out", tmp_path / "receive.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        receiver = subprocess.Popen(
            [
                *COMMAND,
                *("receive", "-o", str(inbox), "--count", str(N_TREE), "--timeout", "240"),
                *("--json", "--accept-stub", "--from", prosody.jid("alice")),
            ],
            env=cli_env(tmp_path, prosody_env(prosody, "bob")),
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
        )
        try:
            start = time.monotonic()
            sent = run(
                ["send", str(top), "--to", prosody.jid("bob"), "--envelope", "stub", "--json"],
                tmp_path,
                prosody_env(prosody, "alice"),
                timeout=300,
            )
            receiver.wait(timeout=max(5.0, 300 - (time.monotonic() - start)))
        finally:
            receiver.kill()
            receiver.wait()
    out, err = out_path.read_text(), err_path.read_text()
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert receiver.returncode == 0, err[-3000:]
    objs = by_status(sent)
    assert objs["summary"][0]["sent"] == N_TREE
    flat = {o["relative"]: o["name"] for o in objs["ok"]}
    assert len(flat) == N_TREE
    for rel, name in flat.items():
        assert name == rel.split("/", 1)[1].replace("/", "__")  # what other clients get
    # The receiver (jet-trio) rebuilt the tree: the same directories and files, identical.
    assert tree_digests(inbox) == tree_digests(top.parent)
    got = [o for o in Ran(0, out, err).json_lines() if o["status"] == "ok"]
    assert len(got) == N_TREE


def tree_digests(root: Path) -> dict[str, str | None]:
    """Relative path -> SHA-256 (``None``: a directory) of everything under ``root``."""
    return {
        p.relative_to(root).as_posix(): None if p.is_dir() else digest(p) for p in root.rglob("*")
    }


def test_per_file_bars_leave_with_their_file() -> None:
    """A batch shows one bar for the whole and one per file in flight: a file's bar is taken
    off the display when the file ends (its own lines are printed instead)."""
    import io

    from rich.console import Console

    from jet_trio._cli.output import Output

    out = Output(json_mode=False, debug=False)
    out.out = Console(file=io.StringIO(), force_terminal=True, width=120)
    out.interactive = True
    with out.progress() as bars:
        overall = bars.bar("3 files", 300)
        first, remove_first = bars.removable("  a.jpg", 0)
        second, remove_second = bars.removable("  b.jpg", 0)
        assert overall is not None and first is not None and second is not None
        progress = bars._bars
        assert progress is not None
        first(100, 100)
        remove_first()
        assert [t.description for t in progress.tasks] == ["3 files", "  b.jpg"]
        remove_second()
        assert [t.description for t in progress.tasks] == ["3 files"]
    quiet = Output(json_mode=True, debug=False)
    with quiet.progress() as bars:
        update, remove = bars.removable("  a.jpg", 10)
        assert update is None
        remove()  # nothing to remove, no error
