"""Hashes of file data (XEP-0300): ``<hash/>``, ``<hash-used/>`` and a multi-algorithm hasher."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Final, Protocol, Self, cast

import trio
from lxml import etree

from .._errors import JetError, RemoteProtocolError, SecurityError
from .._xmpp import ns as _ns

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGO",
    "Hash",
    "HashError",
    "HashMismatch",
    "HashWorker",
    "Hasher",
    "InvalidHash",
    "algo_feature",
    "algos_from_features",
    "build_hash",
    "build_hash_used",
    "choose_algo",
    "parse_hash_elements",
    "strongest",
]

DEFAULT_ALGO: Final = "sha-256"


class _State(Protocol):
    @property
    def digest_size(self) -> int: ...
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def copy(self) -> Self: ...
    def digest(self) -> bytes: ...


# Strongest first: the order used to pick among algorithms both sides know.
_FACTORIES: Final[dict[str, Callable[[], _State]]] = {
    "blake2b-512": lambda: hashlib.blake2b(digest_size=64),
    "sha-512": hashlib.sha512,
    "blake2b-256": lambda: hashlib.blake2b(digest_size=32),
    "sha-256": hashlib.sha256,
    "sha-1": hashlib.sha1,
}
ALGORITHMS: Final[tuple[str, ...]] = tuple(_FACTORIES)
"""The supported XEP-0300 algorithm names, strongest first."""

_DIGEST_SIZES: Final[Mapping[str, int]] = MappingProxyType(
    {algo: factory().digest_size for algo, factory in _FACTORIES.items()}
)
_FEATURES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "sha-1": _ns.HASH_SHA1,
        "sha-256": _ns.HASH_SHA256,
        "sha-512": _ns.HASH_SHA512,
        "blake2b-256": _ns.HASH_BLAKE2B256,
        "blake2b-512": _ns.HASH_BLAKE2B512,
    }
)
_HASH: Final = f"{{{_ns.HASHES}}}hash"
_HASH_USED: Final = f"{{{_ns.HASHES}}}hash-used"
# lxml-stubs type nsmap keys as str, but None is how lxml declares a default namespace.
_NSMAP: Final = cast("Mapping[str, str]", {None: _ns.HASHES})
_MAX_B64: Final = 128  # base64 of a 64-byte digest is 88 characters


class HashError(RemoteProtocolError):
    """A received ``<hash/>`` or ``<hash-used/>`` is malformed or uses no supported algorithm."""


class InvalidHash(JetError, ValueError):
    """A :class:`Hash` was built locally with an unknown algorithm or a digest of the wrong size."""


class HashMismatch(SecurityError):
    """Data does not match the announced hash (or no announced algorithm could be checked)."""


@dataclass(frozen=True, slots=True)
class Hash:
    """A digest and the XEP-0300 name of the algorithm that produced it."""

    algo: str
    digest: bytes

    def __post_init__(self) -> None:
        size = _DIGEST_SIZES.get(self.algo)
        if size is None:
            raise InvalidHash(f"unsupported hash algorithm {self.algo!r}")
        if len(self.digest) != size:
            raise InvalidHash(f"a {self.algo} digest has {size} bytes, not {len(self.digest)}")

    @property
    def b64(self) -> str:
        """The digest as XEP-0300 writes it (base64 with padding)."""
        return base64.b64encode(self.digest).decode("ascii")


def algo_feature(algo: str) -> str:
    """The disco#info feature advertising support of ``algo``."""
    try:
        return _FEATURES[algo]
    except KeyError:
        raise InvalidHash(f"unsupported hash algorithm {algo!r}") from None


def algos_from_features(features: Iterable[str]) -> frozenset[str]:
    """The supported algorithms a peer advertises in its disco#info features."""
    wanted = set(features)
    return frozenset(algo for algo, feature in _FEATURES.items() if feature in wanted)


def choose_algo(ours: Iterable[str], theirs: Iterable[str]) -> str | None:
    """The strongest algorithm in both sets, or ``None`` when they share none we support."""
    common = set(ours) & set(theirs)
    return next((algo for algo in ALGORITHMS if algo in common), None)


def strongest(hashes: Iterable[Hash]) -> Hash | None:
    """The hash computed with the strongest algorithm, or ``None`` for no hash at all."""
    by_algo = {h.algo: h for h in hashes}
    return next((by_algo[a] for a in ALGORITHMS if a in by_algo), None)


def build_hash(value: Hash) -> etree._Element:
    """``<hash xmlns='urn:xmpp:hashes:2' algo=...>base64</hash>``."""
    el = etree.Element(_HASH, algo=value.algo, nsmap=_NSMAP)
    el.text = value.b64
    return el


def build_hash_used(algo: str) -> etree._Element:
    """``<hash-used xmlns='urn:xmpp:hashes:2' algo=.../>``: the algorithm to be used later."""
    if algo not in _FACTORIES:
        raise InvalidHash(f"unsupported hash algorithm {algo!r}")
    return etree.Element(_HASH_USED, algo=algo, nsmap=_NSMAP)


def _decode(algo: str, text: str) -> bytes:
    # XML pretty-printers add whitespace even though XEP-0300 forbids it; it carries no data.
    compact = "".join(text.split())
    if len(compact) > _MAX_B64:
        raise HashError(f"the {algo} hash value is too long")
    try:
        digest = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise HashError(f"the {algo} hash value is not valid base64") from None
    size = _DIGEST_SIZES[algo]
    if len(digest) != size:
        raise HashError(f"a {algo} hash has {size} bytes, not {len(digest)}")
    return digest


def parse_hash_elements(
    elements: Iterable[etree._Element],
) -> tuple[tuple[Hash, ...], tuple[str, ...]]:
    """Read the XEP-0300 children of an element: ``(hashes, announced algorithms)``.

    Elements in other namespaces are skipped. An empty ``<hash algo=.../>`` counts as
    ``<hash-used/>`` (XEP-0234 allows it before the hash is computed). Unknown algorithms are
    ignored as long as at least one supported algorithm is present; otherwise, and for any
    malformed element, :class:`HashError` is raised.
    """
    hashes: dict[str, Hash] = {}
    used: dict[str, None] = {}
    unknown: list[str] = []
    for el in elements:
        if el.tag not in (_HASH, _HASH_USED):
            continue
        algo = el.get("algo")
        if not algo:
            raise HashError(f"<{etree.QName(el).localname}/> without an 'algo' attribute")
        if algo not in _FACTORIES:
            unknown.append(algo)
            continue
        text = (el.text or "").strip() if el.tag == _HASH else ""
        if el.tag == _HASH_USED and (el.text or "").strip():
            raise HashError("<hash-used/> must be empty")
        if not text:
            used[algo] = None
            continue
        value = Hash(algo, _decode(algo, text))
        previous = hashes.get(algo)
        if previous is not None and previous != value:
            raise HashError(f"two different {algo} hashes for the same data")
        hashes[algo] = value
    if unknown and not hashes and not used:
        raise HashError(f"no supported hash algorithm among {', '.join(sorted(set(unknown)))}")
    return tuple(hashes.values()), tuple(a for a in used if a not in hashes)


class Hasher:
    """Hashes a stream of bytes with several algorithms at once (``update`` per chunk)."""

    def __init__(self, algos: Iterable[str] = (DEFAULT_ALGO,)) -> None:
        self._states: dict[str, _State] = {}
        for algo in algos:
            factory = _FACTORIES.get(algo)
            if factory is None:
                raise InvalidHash(f"unsupported hash algorithm {algo!r}")
            self._states.setdefault(algo, factory())
        if not self._states:
            raise InvalidHash("a Hasher needs at least one algorithm")
        self._length = 0

    @property
    def algos(self) -> tuple[str, ...]:
        """The algorithms in use."""
        return tuple(self._states)

    @property
    def length(self) -> int:
        """How many bytes were hashed so far."""
        return self._length

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed more data."""
        for state in self._states.values():
            state.update(data)
        self._length += len(data)

    def digest(self, algo: str) -> Hash:
        """The hash of the data so far with ``algo`` (hashing may continue afterwards)."""
        try:
            state = self._states[algo]
        except KeyError:
            raise InvalidHash(f"this Hasher does not compute {algo!r}") from None
        return Hash(algo, state.copy().digest())

    def digests(self) -> tuple[Hash, ...]:
        """The hashes of the data so far, one per algorithm."""
        return tuple(self.digest(algo) for algo in self._states)

    def matches(self, expected: Iterable[Hash]) -> bool:
        """True if at least one expected algorithm is computed here and all such ones match."""
        checked = False
        for want in expected:
            if want.algo in self._states:
                if not hmac.compare_digest(self.digest(want.algo).digest, want.digest):
                    return False
                checked = True
        return checked

    def verify(self, expected: Iterable[Hash]) -> None:
        """Raise :class:`HashMismatch` unless :meth:`matches` holds, saying why."""
        wanted = tuple(expected)
        if not any(w.algo in self._states for w in wanted):
            names = ", ".join(w.algo for w in wanted) or "none"
            raise HashMismatch(f"no hash to check against (announced: {names})")
        if not self.matches(wanted):
            raise HashMismatch("the data does not match its announced hash")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


#: From how many usable cores on a :class:`HashWorker` hashes in a thread by default. With two
#: cores (sender, receiver and often the server on one machine) the thread mostly waits for the
#: core the event loop needs too: bench/bench_hashing.py measures the choice.
THREAD_MIN_CORES: Final = 3


class HashWorker:
    """Feeds a :class:`Hasher` from a trio task, in one long-lived thread or inline.

    ``async with HashWorker(hasher) as worker: await worker.update(data)``. Threaded, one
    thread runs for the worker's whole life and takes the data from a queue: no thread
    hand-off, no thread naming and no result delivery per batch, and the event loop is woken
    only when :meth:`update` waits because ``max_pending`` batches are queued. Inline, the data
    is hashed in the calling task. ``threaded=None`` picks the thread from
    :data:`THREAD_MIN_CORES` usable cores on.

    The data passed to :meth:`update` must not change afterwards (bytes, or a buffer nobody
    writes to again). Read ``hasher`` only after the ``async with`` block: leaving it waits for
    the thread to hash what is queued (a bounded wait: at most ``max_pending`` batches),
    even when cancelled; an exception in the thread is raised there.
    """

    def __init__(
        self, hasher: Hasher, *, threaded: bool | None = None, max_pending: int = 4
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.hasher = hasher
        self.threaded = _usable_cores() >= THREAD_MIN_CORES if threaded is None else threaded
        self._max_pending = max_pending
        self._queue: queue.SimpleQueue[bytes | bytearray | memoryview | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._waiter: trio.Event | None = None
        self._finished = trio.Event()
        self._error: BaseException | None = None
        self._skip = False
        self._state = "new"

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("a HashWorker is used once")
        self._state = "open"
        if self.threaded:
            token = trio.lowlevel.current_trio_token()
            self._token = token
            trio.lowlevel.start_thread_soon(
                self._run, lambda _outcome: token.run_sync_soon(self._finished.set)
            )
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "closed"
        if not self.threaded:
            return
        if exc is not None:
            self._skip = True  # the digests will not be used: stop hashing
        self._queue.put(None)
        with trio.CancelScope(shield=True):
            await self._finished.wait()
        if self._error is not None and exc is None:
            raise self._error

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if not self._skip and self._error is None:
                try:
                    self.hasher.update(data)
                except BaseException as exc:  # handed to the trio side in __aexit__
                    self._error = exc
            with self._lock:
                self._pending -= 1
                waiter, self._waiter = self._waiter, None
            if waiter is not None:
                self._token.run_sync_soon(waiter.set)

    async def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash ``data`` (queued when threaded; waits while ``max_pending`` batches are)."""
        if self._state != "open":
            raise RuntimeError("HashWorker.update() outside its async with block")
        if not self.threaded:
            self.hasher.update(data)
            await trio.lowlevel.checkpoint()
            return
        if self._error is not None:
            raise self._error
        while True:
            with self._lock:
                if self._pending < self._max_pending:
                    self._pending += 1
                    self._queue.put(data)
                    break
                waiter = self._waiter = trio.Event()
            await waiter.wait()
        await trio.lowlevel.checkpoint()
