"""Where Rich would write no colours (a pipe, a file), the tool prints without importing Rich:
the text must be exactly what Rich writes. Rich itself, on a stream that is not a terminal, is
the oracle; anything the plain path does not handle goes to Rich."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.markup import escape as rich_escape

from jet_trio._cli import output
from jet_trio._cli.output import Output, _markup_text, escape, shown


def rich_prints(markup: str, style: str | None = None) -> str:
    buf = io.StringIO()
    Console(file=buf, highlight=False, soft_wrap=True, emoji=False).print(markup, style=style)
    return buf.getvalue()


def plain_prints(markup: str, capsys: pytest.CaptureFixture[str], stderr: bool) -> str:
    output._PlainConsole(stderr).print(markup, style="bold red")
    got = capsys.readouterr()
    return got.err if stderr else got.out


PIECES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "[green]",
            "[/]",
            "[yellow]",
            "[/yellow]",
            "[bold red]",
            "[/bold red]",
            "[dim]",
            "[blue]",
            "[@click]",
            "[link=x]",
            "\\",
            "\\\\",
            "\\[",
            "[",
            "]",
            "[a]",
            "[/green]",
            "\t",
            "\r",
            "\x1b[31m",
            "\x07",
            "\n",
            "é",
            "中",
            ":warning:",
            "[#fff]",
        ]
    ),
)
MARKUP = st.lists(PIECES, max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(MARKUP)
def test_escape_is_richs(text: str) -> None:
    assert escape(text) == rich_escape(text)


@settings(max_examples=600, deadline=None)
@given(MARKUP)
def test_plain_text_is_what_rich_prints(markup: str) -> None:
    try:
        expected = rich_prints(markup)
    except Exception:  # Rich refuses it (bad markup): the plain path must not handle it
        assert _markup_text(markup) is None
        return
    got = _markup_text(markup)
    if got is not None:
        assert got + "\n" == expected, repr(markup)


@settings(max_examples=200, deadline=None)
@given(MARKUP)
def test_shown_text_is_printed_as_it_came(text: str) -> None:
    markup = f"[green]sent[/] {shown(text)} to {shown(text)}"
    got = _markup_text(markup)
    if got is not None:
        assert got + "\n" == rich_prints(markup)


@pytest.mark.parametrize("stderr", [False, True])
def test_console_prints_like_rich(capsys: pytest.CaptureFixture[str], stderr: bool) -> None:
    for markup in (
        "[green]sent[/] a.bin (1.0 KiB) to bob@example.org: [yellow]hash NOT verified[/]",
        "jet-trio: warning: a \\[b] c\\\\",
        "tab\there",  # Rich expands it: Rich prints it
        "[blue]not ours[/]",  # a style the plain path leaves to Rich
    ):
        assert plain_prints(markup, capsys, stderr) == rich_prints(markup)


def test_a_piped_send_imports_no_rich() -> None:
    """The tool's voice on a pipe: no Rich module is imported to print warnings and results."""
    code = (
        "import sys, json\n"
        "from jet_trio._cli.output import Output\n"
        "out = Output(json_mode=False, debug=False)\n"
        "out.warn('the stub envelope [x]'); out.say('[green]sent[/] a')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('rich'))), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout == "sent a\n"
    *said, modules = proc.stderr.splitlines()
    assert said == ["jet-trio: warning: the stub envelope [x]"]
    assert json.loads(modules) == []


def test_output_on_a_terminal_uses_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert isinstance(Output(json_mode=True, debug=False).err, Console)
