"""Sending many files in one call: :func:`send_files`, on top of :meth:`FileTransfer.send_file`.

Each file is its own Jingle session (what every client understands); at most
``max_concurrent`` run at once. The files are taken from the iterable as slots free (a few
dozen ahead at most), so a generator of thousands of paths (a folder walk) costs memory for the
files in flight and their outcomes, and no file descriptor for a file that waits. A failed file
is reported with its error and the others go on; cancelling the call (a cancel scope around it)
cancels the files in flight, whose sessions end with ``cancel`` (the receiver keeps what it
got, as for a single file).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import trio

from .._xmpp.jid import JID
from .types import ProgressCallback, TransferDeclined, TransferResult

if TYPE_CHECKING:
    from .service import FileTransfer

__all__ = [
    "BatchItem",
    "BatchProgress",
    "BatchResult",
    "FileOutcome",
    "send_files",
]

DEFAULT_CONCURRENCY = 4
"""Files sent at once by default: what a jet-trio receiver accepts at once from one contact
(``max_transfers_per_peer``, ``jet-trio receive --parallel``)."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One file of a batch: ``path`` on disk, offered as ``name`` (default: its own name).
    ``relative`` is its path inside a folder that was sent (``photos/2023/beach.jpg``), or
    ``None`` for a file given by itself; ``size``, if known, counts in the batch's progress
    before the file starts."""

    path: Path
    """The file on disk."""
    name: str | None = None
    """The name offered to the recipient; ``None``: the file's own name."""
    relative: str | None = None
    """Its path inside a folder that was sent, or ``None``."""
    size: int | None = None
    """Its size, if known before it starts (for the batch's progress)."""

    @property
    def offered_name(self) -> str:
        """The name the recipient is offered."""
        return self.name or self.path.name

    @classmethod
    def of(cls, value: BatchItem | str | os.PathLike[str]) -> BatchItem:
        """``value`` itself if it is a :class:`BatchItem`, else an item for that path."""
        return value if isinstance(value, BatchItem) else cls(Path(value))


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """How one file of a batch ended: ``result`` if it arrived, else ``error`` (the exception
    :meth:`FileTransfer.send_file` raised: :class:`TransferError` and its subclasses, an
    :class:`OSError` for a file that could not be read...). ``index`` is its position in the
    batch; ``busy_retries`` how often the receiver answered ``busy`` before it was taken."""

    index: int
    """The file's position in the batch."""
    item: BatchItem
    """The file."""
    result: TransferResult | None = None
    """The transfer's result, if the file arrived."""
    error: Exception | None = None
    """Why it did not arrive, else ``None``."""
    busy_retries: int = 0
    """How often the receiver answered ``busy`` before taking it."""

    @property
    def ok(self) -> bool:
        """The file arrived."""
        return self.result is not None


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """The whole batch so far, passed to the ``progress`` callback of :func:`send_files`.

    ``bytes_done`` counts the plaintext bytes of finished files plus those sent of the files in
    flight; ``bytes_total`` is the ``total_bytes`` given to :func:`send_files`, or else the
    sizes of the files started so far, as they become known (:attr:`BatchItem.size`, or when a
    file's data starts); ``files_total`` is ``None`` until every file has been taken, unless
    ``total_files`` was given."""

    files_done: int
    """Files that arrived."""
    files_failed: int
    """Files that failed."""
    files_in_flight: int
    """Files being sent now."""
    files_total: int | None
    """All files of the batch, once known."""
    bytes_done: int
    """Plaintext bytes sent (finished files and those in flight)."""
    bytes_total: int
    """The bytes the batch sends, as far as known."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Every file's outcome (in batch order, if ``keep_outcomes``), and counts."""

    outcomes: tuple[FileOutcome, ...]
    """Each file's outcome, in batch order (empty unless ``keep_outcomes``)."""
    files: int
    """Files in the batch."""
    sent: int
    """Files that arrived."""
    failed: int
    """Files that did not."""
    bytes_sent: int
    """Plaintext bytes of the files that arrived."""
    seconds: float
    """How long the batch took."""

    @property
    def ok(self) -> bool:
        """Every file arrived."""
        return self.failed == 0

    @property
    def errors(self) -> list[Exception]:
        """The errors of the files that failed."""
        return [o.error for o in self.outcomes if o.error is not None]


@dataclass
class _Tally:
    started: int = 0
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    bytes_finished: int = 0
    bytes_started: int = 0
    exhausted: bool = False
    moving: dict[int, int] = field(default_factory=dict)  # index -> bytes sent so far
    sized: set[int] = field(default_factory=set)  # files whose size is counted


_UNSET: Any = object()


async def send_files(
    ft: FileTransfer,
    files: Iterable[BatchItem | str | os.PathLike[str]],
    to: JID | str,
    *,
    max_concurrent: int = DEFAULT_CONCURRENCY,
    encrypt: str | None = "auto",
    cipher: str | None = None,
    transport: Literal["auto", "webrtc", "s5b", "ibb"] = "auto",
    accept_timeout: float | None = _UNSET,
    file_progress: Callable[[BatchItem], ProgressCallback | None] | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    on_outcome: Callable[[FileOutcome], None] | None = None,
    total_bytes: int | None = None,
    total_files: int | None = None,
    busy_retries: int = 8,
    busy_delay: float = 0.1,
    keep_outcomes: bool = True,
    folders: bool | None = None,
) -> BatchResult:
    """Send every file of ``files`` to ``to``, at most ``max_concurrent`` at once.

    ``files`` holds paths or :class:`BatchItem` (a path with the name to offer); it is iterated
    lazily, when a slot frees: a list or tuple directly, any other iterable
    ``READ_AHEAD`` (32) items at a time in a worker thread, so that a generator may walk a
    folder without blocking trio. ``encrypt``, ``cipher``, ``transport`` and
    ``accept_timeout`` are those of :meth:`FileTransfer.send_file`, for every file. A bare
    ``to`` is resolved once, so every file goes to the same resource.

    A file that fails is reported (its :class:`FileOutcome` has the error) and the others go
    on; an offer the receiver answers with ``busy`` (it already takes as many files from us as
    it wants at once) is offered again after ``busy_delay`` seconds, doubling, up to
    ``busy_retries`` times (0.1 s to 12.8 s, 25.5 s in all, by default: a jet-trio receiver
    counts a file against its limit until its session has ended on its side too, a moment after
    the sender saw it succeed). Reporting as the batch goes:

    * ``file_progress(item)`` is called when a file starts and returns its ``progress(done,
      total)`` callback (or ``None``);
    * ``progress(BatchProgress)`` after every change of the whole batch;
    * ``on_outcome(FileOutcome)`` when a file ends, in the order they end.

    Files of a folder (:attr:`BatchItem.relative` set) are offered with their relative path
    (jet-trio's ``urn:jet-trio:tree:0`` extension) if ``folders`` is true, or if it is ``None``
    and the peer advertises that it rebuilds folders (:meth:`FileTransfer.rebuilds_folders`);
    the flat :attr:`BatchItem.name` is offered either way (what other clients store).

    The :class:`BatchResult` lists every outcome in batch order (with ``keep_outcomes=False``
    only the counts: for very large batches reported through ``on_outcome``). Cancelling (a
    cancel scope around the call) cancels the files in flight, whose sessions end with
    ``cancel``, and takes no further file; the outcomes reported so far are what was done.
    """
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, not {max_concurrent}")
    peer = await ft.resolve_peer(to)
    if folders is None:
        folders = await ft.rebuilds_folders(peer)
    options: dict[str, Any] = {"encrypt": encrypt, "cipher": cipher, "transport": transport}
    if accept_timeout is not _UNSET:
        options["accept_timeout"] = accept_timeout
    tally = _Tally()
    outcomes: dict[int, FileOutcome] = {}
    start = time.monotonic()

    def report() -> None:
        if progress is None:
            return
        known_files = tally.started if tally.exhausted else total_files
        total = total_bytes if total_bytes is not None else tally.bytes_started
        progress(
            BatchProgress(
                files_done=tally.done,
                files_failed=tally.failed,
                files_in_flight=tally.in_flight,
                files_total=known_files,
                bytes_done=tally.bytes_finished + sum(tally.moving.values()),
                bytes_total=max(total, 0),
            )
        )

    async def one(index: int, item: BatchItem, slot: trio.Semaphore) -> None:
        retries = 0
        try:
            own = file_progress(item) if file_progress is not None else None

            def moved(done: int, total: int) -> None:
                if index not in tally.sized:
                    tally.sized.add(index)
                    if item.size is None:
                        tally.bytes_started += total
                tally.moving[index] = done
                if own is not None:
                    own(done, total)
                report()

            delay = busy_delay
            while True:
                try:
                    result = await ft.send_file(
                        item.path,
                        peer,
                        name=item.offered_name,
                        progress=moved,
                        relative=item.relative if folders else None,
                        **options,
                    )
                except TransferDeclined as exc:
                    if exc.reason != "busy" or retries >= busy_retries:
                        raise
                    retries += 1
                    tally.moving.pop(index, None)
                    await trio.sleep(delay)
                    delay *= 2
                    continue
                break
            outcome = FileOutcome(index, item, result=result, busy_retries=retries)
            tally.bytes_finished += result.size
            if index not in tally.sized and item.size is None:
                tally.bytes_started += result.size  # an empty file: no progress callback
        except Exception as exc:  # one file's failure is that file's outcome
            outcome = FileOutcome(index, item, error=exc, busy_retries=retries)
            tally.failed += 1
        finally:
            tally.moving.pop(index, None)
            tally.sized.discard(index)
            tally.in_flight -= 1
            slot.release()
        tally.done += 1
        if keep_outcomes:
            outcomes[index] = outcome
        report()
        if on_outcome is not None:
            on_outcome(outcome)

    slot = trio.Semaphore(max_concurrent)
    source = _Source(files)
    async with trio.open_nursery() as nursery:
        index = 0
        while True:
            await slot.acquire()
            try:
                item = await source.next()
            except BaseException:
                slot.release()
                raise
            if item is None:
                slot.release()
                break
            tally.started += 1
            tally.in_flight += 1
            tally.bytes_started += item.size or 0
            nursery.start_soon(one, index, item, slot)
            index += 1
            report()
        tally.exhausted = True
        report()
    return BatchResult(
        outcomes=tuple(outcomes[i] for i in sorted(outcomes)),
        files=tally.started,
        sent=tally.done - tally.failed,
        failed=tally.failed,
        bytes_sent=tally.bytes_finished,
        seconds=time.monotonic() - start,
    )


READ_AHEAD = 32
"""Items taken from an iterable at once, in a worker thread (a thread hop per file costs
milliseconds on a loaded machine)."""


class _Source:
    """The batch's items, taken lazily: a list or tuple directly, any other iterable
    ``READ_AHEAD`` items at a time in a worker thread (it may walk a folder)."""

    def __init__(self, files: Iterable[BatchItem | str | os.PathLike[str]]) -> None:
        self._direct = isinstance(files, list | tuple)
        self._items: Iterator[BatchItem | str | os.PathLike[str]] = iter(files)
        self._buffer: deque[BatchItem | str | os.PathLike[str]] = deque()
        self._exhausted = False

    async def next(self) -> BatchItem | None:
        if not self._buffer and not self._exhausted:
            if self._direct:
                await trio.lowlevel.checkpoint()
                taken = list(islice(self._items, READ_AHEAD))
            else:
                taken = await trio.to_thread.run_sync(_take, self._items, READ_AHEAD)
            self._exhausted = len(taken) < READ_AHEAD
            self._buffer.extend(taken)
        return BatchItem.of(self._buffer.popleft()) if self._buffer else None


def _take(
    items: Iterator[BatchItem | str | os.PathLike[str]], n: int
) -> list[BatchItem | str | os.PathLike[str]]:
    return list(islice(items, n))
