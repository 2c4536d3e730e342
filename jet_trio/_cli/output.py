"""What the command-line tool prints: human text and progress bars, or JSON lines.

* Standard output carries the results: with ``--json`` one JSON object per line (per finished
  transfer, per failure), otherwise short human-readable text.
* Progress bars appear only when standard output is a terminal and ``--json`` is off.
* Errors and warnings go to standard error, one line each (and as JSON objects on standard
  output with ``--json``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, Task
    from rich.text import Text

from .._transfer.types import ProgressCallback, TransferResult
from .errors import Failure

__all__ = ["Output", "plain", "result_json", "setup_logging", "shown"]

#: Characters never written to the terminal as they are: controls (C0, C1: escape sequences),
#: format characters (bidirectional overrides, zero-width), line and paragraph separators,
#: surrogates and private use.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


def plain(text: object, *, keep: str = "") -> str:
    """``text`` with every character that could rewrite the terminal or disguise the text
    written as a visible ``\\uXXXX`` (``keep``: characters left alone, e.g. newlines)."""
    s = str(text)
    if all(ch.isprintable() or ch in keep for ch in s):
        return s
    return "".join(
        f"\\u{ord(ch):04x}"
        if ch not in keep and unicodedata.category(ch) in _HIDDEN_CATEGORIES
        else ch
        for ch in s
    )


def shown(text: object) -> str:
    """Text that came from elsewhere (a peer's JID, file name, reason, a plugin's message),
    ready for a Rich markup string: controls neutralised (:func:`plain`), markup escaped."""
    return escape(plain(text))


# Rich's console markup, for the streams it would print without colours (a pipe, a file): there
# the text is written without importing Rich (~1.4 MiB and ~20 ms of every run), exactly as Rich
# writes it (tests/unit/test_cli_output_plain.py compares both, Rich as the oracle). Anything
# this does not handle (another tag, a control character, a tab) is left to Rich.
#
# The markup grammar, as Rich documents it: a tag is "[", then a lower-case letter, "#", "/" or
# "@", then anything but "[" up to the first "]"; backslashes right before a tag escape it when
# their number is odd, and each pair of them stands for one backslash.
_TAG = re.compile(r"(?P<backslashes>\\*)(?P<tag>\[(?P<name>[a-z#/@][^\[]*?)\])")
_STYLES = frozenset({"green", "yellow", "red", "dim", "bold", "bold red"})
_RICH_CHANGES = frozenset("\t\x07\x08\x0b\x0c\r")  # tabs expanded, controls removed


def escape(markup: str) -> str:
    """``markup`` with square brackets escaped, as :func:`rich.markup.escape` does."""
    # Double the backslashes before each tag and add one: the tag then reads as text.
    markup = _TAG.sub(lambda m: f"{m['backslashes'] * 2}\\{m['tag']}", markup)
    if markup.endswith("\\") and not markup.endswith("\\\\"):
        return markup + "\\"
    return markup


def _markup_text(markup: str) -> str | None:
    """The text Rich prints for ``markup`` without colours; ``None`` when Rich must do it."""
    out: list[str] = []
    styles: list[str] = []
    position = 0
    for match in _TAG.finditer(markup):
        escapes, whole, tag = match.group("backslashes", "tag", "name")
        start, end = match.span()
        if start > position:
            out.append(markup[position:start].replace("\\[", "["))
        position = end
        if escapes:
            backslashes, escaped = divmod(len(escapes), 2)
            out.append("\\" * backslashes)
            if escaped:
                out.append(whole)
                continue
        if tag == "/":
            if not styles:
                return None  # Rich's MarkupError
            styles.pop()
        elif tag.startswith("/"):
            if tag[1:] not in styles:
                return None
            del styles[len(styles) - 1 - styles[::-1].index(tag[1:])]
        elif tag in _STYLES:
            styles.append(tag)
        else:
            return None
    out.append(markup[position:].replace("\\[", "["))
    text = "".join(out)
    return None if _RICH_CHANGES.intersection(text) else text


class _Console(Protocol):
    def print(self, text: str, *, style: str | None = None) -> None: ...


class _PlainConsole:
    """Prints like a Rich console that has no colours to write (see :func:`_console`)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._rich: Console | None = None

    def print(self, text: str, *, style: str | None = None) -> None:
        rendered = _markup_text(text)
        if rendered is None:
            if self._rich is None:
                self._rich = _rich_console(self._stderr)
            self._rich.print(text, style=style)
            return
        stream = sys.stderr if self._stderr else sys.stdout
        stream.write(rendered + "\n")
        stream.flush()


def _rich_console(stderr: bool) -> Console:
    from rich.console import Console

    # No emoji codes: ":warning:" in a peer's text stays as it is.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def _console(stderr: bool) -> _Console:
    """Rich's console, or :class:`_PlainConsole` where Rich would write no colours (not a
    terminal, and none of the variables that make Rich write them anyway)."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = True  # let Rich decide
    forced = any(os.environ.get(v) for v in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"))
    notebook = any(os.environ.get(v) for v in ("JUPYTER_COLUMNS", "JUPYTER_LINES"))
    if terminal or forced or notebook or "IPython" in sys.modules:
        return _rich_console(stderr)
    return _PlainConsole(stderr)


class _PlainFormatter(logging.Formatter):
    """Log records on a terminal: nothing a peer put in a message can rewrite it."""

    def format(self, record: logging.LogRecord) -> str:
        return plain(super().format(record), keep="\n\t")


#: Verbosity levels: ``-q``, the default, ``-v``, ``-vv`` (or ``--debug``).
QUIET, NORMAL, VERBOSE, DEBUG = -1, 0, 1, 2


def setup_logging(debug: bool | int) -> None:
    """Library log records on standard error, by verbosity (``True`` is :data:`DEBUG`):

    * quiet and normal: jet-trio's warnings; other libraries' (plugins') errors;
    * ``-v``: also jet-trio's own steps (its INFO records: login attempts, candidates tried,
      fallbacks, refusals) and the plugins' own warnings, not the internals of the libraries
      they use;
    * ``-vv`` / ``--debug``: everything, every library, with the logger names.

    The stub envelope's and the plugin loader's own records are left to the tool, which
    reports them once in its own words (unless ``--debug``).
    """
    level = DEBUG if debug is True else int(debug)
    debug = level >= DEBUG
    handler = logging.StreamHandler(sys.stderr)
    fmt = "jet-trio: %(levelname)s: %(name)s: %(message)s" if debug else "jet-trio: %(message)s"
    handler.setFormatter(_PlainFormatter(fmt))
    root = logging.getLogger("jet_trio")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if debug else logging.INFO if level >= VERBOSE else logging.WARNING)
    for name in ("jet_trio.stub_envelope", "jet_trio.plugins"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.CRITICAL)
    # Other libraries (those of plugins): only their errors, or everything with --debug.
    other = logging.StreamHandler(sys.stderr)
    other.setFormatter(_PlainFormatter("jet-trio: %(levelname)s: %(name)s: %(message)s"))
    logging.root.handlers[:] = [other]
    logging.root.setLevel(
        logging.DEBUG if debug else logging.WARNING if level >= VERBOSE else logging.ERROR
    )


def _speed(size: int, seconds: float) -> float:
    return size / seconds if seconds > 0 else 0.0


#: Below this many bytes moved, the time of a transfer is mostly the set-up of its session
#: (a 6-byte file "at 91 B/s"): no rate is shown.
MIN_RATE_BYTES = 1024 * 1024


def rate(result: TransferResult) -> str | None:
    """The transfer's rate (binary units, as every size shown) over the bytes it moved:
    ``wire_bytes``, which after a resume leaves out what was already on disk; ``None`` when
    too little moved for a rate to mean anything."""
    if result.wire_bytes < MIN_RATE_BYTES or result.seconds <= 0:
        return None
    return f"{human_size(result.wire_bytes / result.seconds)}/s"


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


#: Said with every in-band transfer: why it was slow, and where to look.
IBB_NOTE = (
    "sent in-band (IBB) through the XMPP server: no direct or proxy SOCKS5 connection was "
    "made (no direct path between the hosts and no usable proxy, or --transport ibb); "
    "in-band is much slower"
)


def result_json(result: TransferResult, **extra: object) -> dict[str, object]:
    """The ``--json`` object of a finished transfer."""
    out: dict[str, object] = {
        "status": "ok",
        "direction": result.direction,
        "peer": str(result.peer),
        "name": result.name,
        "size": result.size,
        "sha256": result.sha256,
        "envelope": result.envelope,
        "cipher": result.cipher,
        "choice": result.choice,
        "transport": result.transport,
        "seconds": round(result.seconds, 6),
        "bytes_per_second": round(_speed(result.wire_bytes, result.seconds)),
        "wire_bytes": result.wire_bytes,
        "reused_bytes": result.reused_bytes,
        "hash_verified": result.hash_verified,
        "path": str(result.path),
    }
    out.update(extra)
    return out


class Output:
    """The tool's voice for one command run."""

    def __init__(self, *, json_mode: bool, debug: bool, verbosity: int = NORMAL) -> None:
        self.json_mode = json_mode
        self.verbosity = DEBUG if debug else verbosity
        self.debug = self.verbosity >= DEBUG
        self.quiet = self.verbosity <= QUIET
        self.out = _console(stderr=False)
        self.err = _console(stderr=True)
        self.interactive = not json_mode and not self.quiet and sys.stdout.isatty()

    # -- results -----------------------------------------------------------------------------

    def emit(self, obj: dict[str, Any]) -> None:
        """Write one JSON object as a line on standard output (``--json`` only)."""
        if self.json_mode:
            sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    def say(self, text: str) -> None:
        """Human-readable text on standard output (nothing with ``--json``). Rich markup: pass
        anything that came from elsewhere through :func:`shown`."""
        if not self.json_mode:
            self.out.print(text)

    def note(self, text: str) -> None:
        """A progress note: on standard error, so standard output stays parseable. Plain
        text (no markup: notes quote JIDs, file names and other text from peers). Not with
        ``-q``."""
        if not self.json_mode and not self.quiet:
            self.err.print(shown(text), style="dim")

    def warn(self, text: str) -> None:
        """A warning line on standard error (also with ``--json``). Plain text."""
        self.err.print(f"jet-trio: warning: {shown(text)}", style="yellow")

    def failure(self, failure: Failure) -> None:
        """Report a failure: one line on standard error, and a JSON object with ``--json``."""
        self.err.print(f"jet-trio: error: {shown(failure.line())}", style="bold red")
        self.emit(failure.as_json())

    def transfer(self, result: TransferResult, **extra: object) -> None:
        """Report one finished transfer."""
        note = IBB_NOTE if result.transport == "ibb" else None
        if self.json_mode:
            self.emit(result_json(result, **extra, **({"note": note} if note else {})))
            return
        verb = "sent" if result.direction == "send" else "received"
        where = "to" if result.direction == "send" else "from"
        how = (
            f"encrypted ({_short_envelope(result.envelope)}, {_short_cipher(result.cipher)})"
            if result.envelope
            else "NOT encrypted"
        )
        self.say(
            f"[green]{verb}[/] {shown(result.name)} ({human_size(result.size)}) {where} "
            f"{shown(result.peer)}: {how}, {result.transport}, {result.seconds:.2f} s, "
            + (f"{speed}, " if (speed := rate(result)) else "")
            + ("hash verified" if result.hash_verified else "[yellow]hash NOT verified[/]")
        )
        if result.reused_bytes:
            kept = "kept" if result.direction == "receive" else "the recipient kept"
            self.say(
                f"  resumed: {kept} {human_size(result.reused_bytes)} from an earlier, "
                f"interrupted transfer; {human_size(result.wire_bytes)} sent now"
            )
        if result.direction == "receive":
            self.say(f"  saved as {shown(result.path)}")
        self.say(f"  sha-256 {result.sha256}")
        if note:
            self.say(f"  note: {escape(note)}")

    # -- progress ----------------------------------------------------------------------------

    @contextmanager
    def progress(self) -> Iterator[ProgressBars]:
        """Progress bars for the duration of the block (no-ops when not on a terminal)."""
        if not self.interactive:
            yield ProgressBars(None)
            return
        # Imported here: only a terminal shows bars (rich.progress costs ~15 ms at start-up).
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            _speed_column(),
            TimeRemainingColumn(),
        )
        # A terminal: Rich's own console (a plain one only where Rich writes no colours).
        console = _rich_console(False) if isinstance(self.out, _PlainConsole) else self.out
        assert not isinstance(console, _PlainConsole)
        with Progress(*columns, console=cast("Console", console), transient=False) as bars:
            yield ProgressBars(bars)


def _speed_column() -> ProgressColumn:
    """The bar's rate: binary units like the sizes and the summary, in the bar's colours (not
    an error's red), and nothing until enough data moved for it to mean anything."""
    from rich.progress import ProgressColumn

    class SpeedColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            from rich.text import Text

            moved = task.completed - task.fields.get("base", 0)
            speed = task.finished_speed or task.speed
            if speed is None or moved < MIN_RATE_BYTES:
                return Text("")
            return Text(f"{human_size(speed)}/s", style="progress.download")

    return SpeedColumn()


class ProgressBars:
    """Makes ``progress(done, total)`` callbacks that drive one bar each."""

    def __init__(self, bars: Progress | None) -> None:
        self._bars = bars

    def bar(self, description: str, total: int) -> ProgressCallback | None:
        bars = self._bars
        if bars is None:
            return None
        task = bars.add_task(shown(description), total=total or None, base=0)
        started = False

        def update(done: int, total: int) -> None:
            nonlocal started
            if not started:
                # A resumed transfer starts where the data on disk ends: its rate counts only
                # what moves from here (Rich's speed is over the changes of ``completed``).
                started = True
                bars.reset(task, total=total or None, completed=done, base=done)
                return
            bars.update(task, completed=done, total=total or None)

        return update

    def removable(
        self, description: str, total: int
    ) -> tuple[ProgressCallback | None, Callable[[], None]]:
        """A bar as :meth:`bar` makes, and a function that takes it off the display (the bar
        of one file of a batch, once the file's own line is printed)."""
        update = self.bar(description, total)
        bars = self._bars
        if bars is None:
            return None, lambda: None
        task = bars.task_ids[-1]
        return update, lambda: bars.remove_task(task)


def _short_envelope(namespace: str | None) -> str:
    from .plugins import short_envelope_name

    return short_envelope_name(namespace) if namespace else "none"


def _short_cipher(urn: str | None) -> str:
    if urn is None:
        return "none"
    return urn.rsplit(":", 1)[-1] if not urn.endswith(":0") else urn.rsplit(":", 2)[-2]
