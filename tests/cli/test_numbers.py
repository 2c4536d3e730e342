"""The numbers ``send``, ``receive`` and the progress bar show: one unit system (binary, as
the sizes), rates over the bytes that moved, no rate for a transfer too small to measure, and
the rate not drawn in an error's colour."""

from __future__ import annotations

import io
from pathlib import Path

import trio
from rich.console import Console
from rich.progress import ProgressColumn
from rich.text import Text

from jet_trio import JID
from jet_trio._cli.output import MIN_RATE_BYTES, Output, rate
from jet_trio._transfer.types import TransferResult

from ._run import arun
from .conftest import LocalServer
from .test_send_receive import payload

MiB = 1024 * 1024


def _result(size: int, wire_bytes: int, seconds: float) -> TransferResult:
    return TransferResult(
        "receive",
        JID("alice@localhost/x"),
        "f.bin",
        size,
        "00" * 32,
        "s5b-direct",
        None,
        None,
        seconds,
        Path("f.bin"),
        wire_bytes,
        True,
    )


def test_rate_counts_the_bytes_moved_not_the_file_size() -> None:
    # Resumed at 90 MiB of 100: 10 MiB moved in 2 s.
    assert rate(_result(100 * MiB, 10 * MiB, 2.0)) == "5.0 MiB/s"


def test_no_rate_for_a_tiny_transfer() -> None:
    assert rate(_result(6, 6, 0.066)) is None
    assert rate(_result(6, 6, 3.0)) is None
    assert rate(_result(MIN_RATE_BYTES, MIN_RATE_BYTES, 0.5)) == "2.0 MiB/s"


async def test_progress_bar_rate_after_a_resume_uses_binary_units_and_no_red() -> None:
    out = Output(json_mode=False, debug=False)
    buf = io.StringIO()
    out.out = Console(file=buf, force_terminal=True, width=200, color_system="truecolor")
    out.interactive = True
    with out.progress() as bars:
        update = bars.bar("receiving f.bin", 100 * MiB)
        assert update is not None
        progress = bars._bars
        assert progress is not None
        update(90 * MiB, 100 * MiB)  # the data already on disk
        for i in range(1, 5):
            await trio.sleep(0.1)
            update(90 * MiB + i * MiB // 2, 100 * MiB)
        task = progress.tasks[0]
        speed = task.speed
        assert speed is not None
        # 2 MiB in about 0.4 s (longer under load): never the 90 MiB that were on disk.
        assert speed < 10 * MiB, speed
        column = progress.columns[3]
        assert isinstance(column, ProgressColumn)
        shown = column.render(task)
        assert isinstance(shown, Text)
        assert str(shown).endswith(" MiB/s"), shown
        assert "red" not in str(shown.style) and "speed" not in str(shown.style), shown.style
        # A rate only once enough moved to mean anything.
        tiny = bars.bar("receiving tiny", 6)
        assert tiny is not None
        tiny(0, 6)
        tiny(6, 6)
        assert str(column.render(progress.tasks[1])) == ""


async def test_summaries_show_no_rate_for_a_tiny_file(
    tmp_path: Path, local_server: LocalServer
) -> None:
    src = payload(tmp_path, size=6, name="six.txt")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    results = {}

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", "-o", str(inbox), "--accept-stub", "--timeout", "30"],
            tmp_path,
            local_server.env("bob"),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["send"] = await arun(
            ["send", str(src), "--to", "bob@localhost", "--wait", "20", "--envelope", "stub"],
            tmp_path,
            local_server.env("alice"),
        )
    for ran in results.values():
        assert ran.returncode == 0, ran.stderr
        summary = ran.stdout.splitlines()[0]
        assert "six.txt (6 B)" in summary, ran.stdout
        assert "B/s" not in summary, ran.stdout
