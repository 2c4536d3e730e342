"""Text a peer controls (its JID and resource, file names, reasons) reaches the terminal as
plain text: no Rich markup, no styles or links, no terminal controls, no bidi tricks."""

from __future__ import annotations

import io
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from rich.console import Console

import jet_trio
from jet_trio._cli.output import Output, plain, setup_logging, shown
from jet_trio._transfer.service import open_file_transfer

from ._run import Ran, arun
from .conftest import LocalServer


@asynccontextmanager
async def client_of(
    server: LocalServer, user: str, resource: str
) -> AsyncIterator[jet_trio.Client]:
    tls = ssl.create_default_context(cafile=str(server.ca_file))
    async with jet_trio.open_client(
        server.server.jid(user, resource),
        server.accounts[user],
        host=server.server.host,
        port=server.server.port,
        ssl_context=tls,
        mechanisms=["PLAIN"],
    ) as client:
        yield client


HOSTILE = "[bold red]evil[/] [link=https://evil.example]click[/link] :warning: phone[/]"


def captured(json_mode: bool = False) -> tuple[Output, io.StringIO, io.StringIO]:
    out = Output(json_mode=json_mode, debug=False)
    o, e = io.StringIO(), io.StringIO()
    out.out = Console(file=o, highlight=False, soft_wrap=True, emoji=False, width=400)
    out.err = Console(file=e, highlight=False, soft_wrap=True, emoji=False, width=400)
    return out, o, e


def test_notes_and_warnings_are_plain_text() -> None:
    out, _, err = captured()
    out.note(f"accepting x from alice@localhost/{HOSTILE}")  # raised MarkupError before
    out.warn(f"refused {HOSTILE}")
    text = err.getvalue()
    assert text.count(HOSTILE) == 2, text


def test_shown_text_keeps_markup_literal() -> None:
    out, o, _ = captured()
    out.say(f"[green]ok[/] {shown(HOSTILE)}")
    assert o.getvalue() == f"ok {HOSTILE}\n"


def test_controls_and_bidi_are_made_visible() -> None:
    hostile = "a\x1b[2Jb\x9b31mc\u202egpj.exe\u2028d\u200be\x07"
    assert plain(hostile) == "a\\u001b[2Jb\\u009b31mc\\u202egpj.exe\\u2028d\\u200be\\u0007"
    out, _, err = captured()
    out.note(hostile)
    written = err.getvalue()
    assert not any(ch in written for ch in "\x1b\x9b\u202e\u2028\u200b\x07")
    assert plain("naïve ✓ 文件.txt") == "naïve ✓ 文件.txt"


def test_log_lines_are_neutralised(capsys: object) -> None:
    setup_logging(debug=False)
    try:
        logging.getLogger("jet_trio.transfer").warning("refusing offer from %s", "x\x1b]0;t\x07")
    finally:
        logging.getLogger("jet_trio").handlers.clear()
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "\x1b" not in err and "x\\u001b]0;t\\u0007" in err


async def test_receive_prints_a_hostile_resource_and_name_as_is(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """The red team's sender: resource ``phone[/]`` and a file name full of markup. The
    interactive receiver (no --json) used to exit 1 with "internal error: MarkupError"."""
    src = tmp_path / "payload.bin"
    src.write_bytes(b"x" * 5000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    name = "[bold red]evil [link=mailto:x@evil.example]click.txt"  # opening style and link
    results: dict[str, object] = {}

    async def receive() -> None:
        results["ran"] = await arun(
            ["receive", "-o", str(inbox), "--accept-unencrypted", "--timeout", "30"],
            tmp_path,
            local_server.env("bob"),
        )

    server = local_server.server
    tls = ssl.create_default_context(cafile=str(local_server.ca_file))
    async with trio.open_nursery() as n:
        n.start_soon(receive)
        async with (
            jet_trio.open_client(
                server.jid("alice", "phone[/]"),
                local_server.accounts["alice"],
                host=server.host,
                port=server.port,
                ssl_context=tls,
                mechanisms=["PLAIN"],
            ) as client,
            open_file_transfer(client) as ft,
        ):
            with trio.fail_after(30):
                bob = await client.wait_available(server.jid("bob"))
                await ft.send_file(src, bob, encrypt=None, name=name)
    ran = results["ran"]
    assert ran.returncode == 0, ran.stderr  # type: ignore[attr-defined]
    assert "MarkupError" not in ran.stderr  # type: ignore[attr-defined]
    assert "alice@localhost/phone[/]" in ran.stderr  # type: ignore[attr-defined]
    assert name in ran.stdout  # type: ignore[attr-defined]
    assert (inbox / name).read_bytes() == src.read_bytes()


async def test_receive_takes_offers_concurrently(
    tmp_path: Path, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice's transfer hangs (she never sends the data); Carol's offer, arriving meanwhile,
    is received at once: ``receive`` no longer handles offers one at a time."""
    src = tmp_path / "payload.bin"
    src.write_bytes(b"x" * 5000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["ran"] = await arun(
            [
                "receive",
                "-o",
                str(inbox),
                "--accept-unencrypted",
                "--count",
                "2",
                "--timeout",
                "25",
                "--json",
            ],
            tmp_path,
            local_server.env("bob"),
        )

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        async with (
            client_of(local_server, "alice", "a") as a,
            open_file_transfer(a) as fa,
            client_of(local_server, "carol", "c") as c,
            open_file_transfer(c) as fc,
        ):
            hanging = trio.Event()

            async def hang(session: Any, *args: Any) -> int:
                hanging.set()
                await trio.sleep_forever()
                raise AssertionError

            monkeypatch.setattr(fa, "_send_data", hang)
            with trio.fail_after(30):
                bob = await a.wait_available(local_server.server.jid("bob"))
                await c.wait_available(bob)
            async with trio.open_nursery() as senders:
                senders.start_soon(
                    lambda: fa.send_file(src, bob, encrypt=None, name="from-alice.bin")
                )
                with trio.fail_after(30):
                    await hanging.wait()
                with trio.fail_after(15):
                    await fc.send_file(src, bob, encrypt=None, name="from-carol.bin")
                senders.cancel_scope.cancel()
    ran = results["ran"]
    assert (inbox / "from-carol.bin").read_bytes() == src.read_bytes()
    assert not (inbox / "from-alice.bin").exists()
    statuses = {(o.get("name"), o["status"]) for o in ran.json_lines()}
    assert ("from-carol.bin", "ok") in statuses, ran.stdout
    assert ran.returncode != 0  # alice's transfer, cut off, counts as failed
