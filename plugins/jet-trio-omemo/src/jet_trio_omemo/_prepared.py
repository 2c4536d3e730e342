"""OMEMO prepared without the OMEMO libraries: :class:`PreparedOmemo` and :func:`prepare_omemo`.

A process that waits for offers (``jet-trio receive``, ``share``) may never get an OMEMO one, and
python-omemo's stack (its backends, x3dh and its pydantic models, protobuf, the session store)
costs about a third of a second of CPU and 30 MiB to import and start. What peers rely on does
not need it: our device in our published device lists, our bundles, the JET-OMEMO features in our
caps. So a prepared OMEMO checks those with a few PEP reads and reads our device id, identity
key and signed pre key ages from the store's check file (below) or the store, and starts the full
:class:`~._session.OmemoSession` only when something needs it:

* an offer or a request to encrypt or decrypt (its envelope methods start it first);
* our device missing from one of our published device lists, or a bundle missing or not ours
  (the full session publishes them again), at start or in a later notification of our own list;
* an OMEMO message without payload for us (a session being completed, a heartbeat): it is kept
  and handed to the session, which processes it as it would have on arrival;
* no OMEMO store yet (first run: the identity is made and published), a store made for other
  OMEMO versions, or a store the checks cannot read;
* a signed pre key due for rotation (at start, or later while the process waits).

The device id, identity key and signed pre key times come from a small check file next to the
store (``<store>.check.json``, written with a temporary file and a rename) when it describes the
store as it is now, so that a process that never needs OMEMO does not even load :mod:`sqlite3`.
It is written after reading those values from the store with :mod:`sqlite3`: when the full session
closes the store (the session is the only writer of these values; a rotation while it runs is
in the store when it closes) and when the check had to read the store. With the values it records
the SHA-256 of the store file, taken before and after the read (both equal), and only while the
store's write-ahead log holds no frames (all committed changes are in the file). The check uses
the file's values only if the store file has that digest now and its log is still empty, checked
after reading the values: then the store's contents are exactly those the values were read from,
so they are what reading the store would give. Any write since (a session running or left open
by a crash in another process, a rotation, a store deleted and made again, restored from a
backup, written by an older version) changes the file or leaves frames in its log, and the check
reads the store as it would without a check file. A missing, unreadable or malformed file, one
for another account or set of OMEMO versions, reads the store too. Values that do not match what
is published, or a signed pre key due, start the full session as values read from the store
would. So a stale check file can only lead to the store being read or the session started,
never to a start being skipped.

Device list notifications of contacts that come before the session starts are kept (the newest
per contact and version, at most :data:`MAX_BACKLOG` events in all) and applied when it starts, as
they would have been on arrival. OMEMO chat messages with a payload are ignored, as the full
session ignores them (jet-trio is not a chat client).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import sys
import time
import urllib.parse
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio
from jet_trio import JID, Client, PubSubEvent, StanzaError
from jet_trio._xmpp.ns import CIPHER_AES128_GCM
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeError,
    EnvelopeMethod,
    KeyNotice,
    KeyRecord,
    KeyStore,
    TransportSecret,
)
from lxml import etree

from ._xmlbase import OLDMEMO, TWOMEMO, MalformedOmemoElement, device_ids, node_spec

if TYPE_CHECKING:
    from ._manager import TrustPolicy
    from ._session import OmemoSession

__all__ = [
    "DEFAULT_ROTATION_PERIOD",
    "MAX_BACKLOG",
    "OmemoError",
    "PreparedOmemo",
    "attached_prepared",
    "check_file_path",
    "check_options",
    "prepare_omemo",
    "read_check_file",
    "refresh_check_file",
    "store_path",
]

log = logging.getLogger("jet_trio_omemo")

DEFAULT_ROTATION_PERIOD: Final = 7 * 24 * 3600.0
"""How old a signed pre key may get before it is rotated (seconds)."""
MAX_BACKLOG: Final = 256
"""Events (device list notifications, OMEMO messages) kept before the session starts."""
JET_OMEMO_FEATURE: Final = "urn:xmpp:jingle:jet-omemo:0"
_TRUST_POLICIES: Final = ("btbv", "manual")
_P: Final = 2**255 - 19
_CHECK_VERSION: Final = 1

_ATTACHED: weakref.WeakKeyDictionary[Client, PreparedOmemo] = weakref.WeakKeyDictionary()


class OmemoError(Exception):
    """OMEMO could not be set up or used (bad arguments, storage, server refusing PEP...)."""


def attached_prepared(client: object) -> PreparedOmemo | None:
    """The :class:`PreparedOmemo` running on ``client``, if any (used by the plugin hook)."""
    if not isinstance(client, Client):
        return None
    return _ATTACHED.get(client)


def store_path(data_dir: Path | str, account: JID) -> Path:
    """Where the OMEMO store of ``account`` lives under ``data_dir``."""
    name = urllib.parse.quote(str(account.bare), safe="@.-_") + ".sqlite3"
    return Path(data_dir) / "omemo" / name


def _curve_from_ed(public: bytes) -> bytes:
    """The Curve25519 form of an Ed25519 public key (u = (1 + y) / (1 - y) mod p)."""
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(32, "little")


def check_options(trust: object, namespaces: Sequence[str], rotation_period: float) -> str:
    """The options of an OMEMO session (prepared or full) checked; returns the trust policy's
    name. Raises :class:`OmemoError`."""
    policy = str(getattr(trust, "value", trust))
    if policy not in _TRUST_POLICIES:
        raise OmemoError(f"unknown trust policy {trust!r} (btbv or manual)")
    if not namespaces or any(ns not in (OLDMEMO, TWOMEMO) for ns in namespaces):
        raise OmemoError(f"namespaces must be a non-empty subset of {(OLDMEMO, TWOMEMO)}")
    if not rotation_period > 0 or rotation_period == float("inf"):
        raise OmemoError("rotation_period must be a positive number of seconds")
    return policy


class PreparedOmemo:
    """OMEMO on ``client`` with the full :class:`~._session.OmemoSession` started on first
    need (see the module doc). Make one with :func:`prepare_omemo`; :attr:`envelopes` are the
    JET envelope methods (they start the session when used), :meth:`session` starts it."""

    def __init__(
        self,
        client: Client,
        data_dir: Path | str,
        *,
        trust: TrustPolicy | str = "btbv",
        namespaces: Sequence[str] = (OLDMEMO, TWOMEMO),
        rotation_period: float = DEFAULT_ROTATION_PERIOD,
        notify: Callable[[KeyNotice], None] | None = None,
    ) -> None:
        policy = check_options(trust, namespaces, rotation_period)
        self.client = client
        self.data_dir = Path(data_dir)
        self.trust = policy
        self.namespaces = tuple(namespaces)
        self.rotation_period = float(rotation_period)
        self.notify = notify
        self.key_store: KeyStore = _PreparedKeys(self)
        self.envelopes: list[EnvelopeMethod] = [PreparedEnvelope(self, ns) for ns in namespaces]
        self.start_reason: str | None = None
        """Why the full session was started (``None``: not started)."""
        self._session: OmemoSession | None = None
        self._lock = trio.Lock()
        self._backlog: OrderedDict[object, tuple[str, JID, etree._Element]] = OrderedDict()
        self._messages = 0
        self._wake = trio.Event()
        self._wake_reason = ""
        self._rotation_due = float("inf")
        self._worker_scope: trio.CancelScope | None = None
        self._worker_done = trio.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether the full OMEMO session runs."""
        return self._session is not None

    # -- life cycle ----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        client = self.client
        if client in _ATTACHED:
            raise OmemoError(f"OMEMO is already running on the client of {client.jid}")
        full = sys.modules.get(f"{__package__}._session")
        if full is not None and full.attached_session(client) is not None:
            raise OmemoError(f"OMEMO is already running on the client of {client.jid}")
        _ATTACHED[client] = self
        for ns in self.namespaces:
            node = node_spec(ns).device_list_node
            self._unsubscribe.append(await client.on_pep(node, self._devices_callback(ns)))
        self._unsubscribe.append(client.on_message(self._on_message))
        reason, republish = await self._check()
        if reason is not None:
            await self._start(reason, republish=republish)
            return
        log.info("OMEMO prepared for %s: published device and bundles found", client.jid.bare)
        # Started after the check, which set the rotation time; an event that came meanwhile
        # set the wake-up event, which the worker sees at once.
        await client.nursery.start(self._run_worker)

    async def aclose(self) -> None:
        """Stop listening, stop the full session if it runs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if _ATTACHED.get(self.client) is self:
            del _ATTACHED[self.client]
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        with trio.CancelScope(shield=True):
            if self._worker_scope is not None:
                self._worker_scope.cancel()
                await self._worker_done.wait()
            async with self._lock:
                if self._session is not None:
                    await self._session.aclose()
        self._backlog.clear()

    async def session(self) -> OmemoSession:
        """The full OMEMO session, started now if it is not running yet."""
        return await self._start("an envelope method is used")

    async def _start(self, reason: str, *, republish: bool = False) -> OmemoSession:
        async with self._lock:
            if self._session is not None:
                return self._session
            if self._closed:
                raise OmemoError("OMEMO was closed")
            from ._session import OmemoSession

            log.info("starting OMEMO for %s: %s", self.client.jid.bare, reason)
            session = await OmemoSession.start(
                self.client,
                self.data_dir,
                trust=self.trust,
                namespaces=self.namespaces,
                rotation_period=self.rotation_period,
                notify=self.notify,
                _listen=False,
            )
            self._session = session
            self.start_reason = reason
            backlog = list(self._backlog.values())
            self._backlog.clear()
            for kind, jid, payload in backlog:
                session._feed(kind, jid, payload)
        if republish:
            await session.republish()
        return session

    async def _run_worker(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the full session when an event needs it or the signed pre key is due."""
        try:
            with trio.CancelScope() as scope:
                self._worker_scope = scope
                task_status.started()
                retry = 60.0
                while self._session is None:
                    with trio.move_on_at(self._rotation_due) as timer:
                        await self._wake.wait()
                    reason = "a signed pre key is due for rotation"
                    if not timer.cancelled_caught:
                        reason = self._wake_reason
                        self._wake = trio.Event()
                    try:
                        await self._start(reason)
                    except Exception:  # logged; the next event, a use or the timer tries again
                        log.warning("OMEMO could not be started (%s)", reason, exc_info=True)
                        self._rotation_due = trio.current_time() + retry
                        retry = min(retry * 2, 3600.0)
        finally:
            self._worker_done.set()

    def _wake_up(self, reason: str) -> None:
        if not self._wake.is_set():
            self._wake_reason = reason
            self._wake.set()

    # -- the checks ----------------------------------------------------------------------------

    async def _check(self) -> tuple[str | None, bool]:
        """Why the full session must start now (``None``: our published data is in place), and
        whether it must then publish our device list and bundles again."""
        own = self.client.jid.bare
        stored = self._read_store(store_path(self.data_dir, own))
        if isinstance(stored, str):
            return stored, False
        device_id, identity, spk_times = stored
        now = time.time()
        oldest = min(spk_times)
        if now - oldest >= self.rotation_period:
            return "a signed pre key is due for rotation", False
        self._rotation_due = trio.current_time() + (oldest + self.rotation_period - now) + 1.0
        for ns in self.namespaces:
            spec = node_spec(ns)
            try:
                items = await self.client.get_items(own, spec.device_list_node, max_items=1)
            except StanzaError as exc:
                if exc.condition != "item-not-found":
                    raise OmemoError(f"cannot read our {ns} device list: {exc}") from exc
                items = []
            payload = next((i.payload for i in items if i.payload is not None), None)
            try:
                listed = frozenset() if payload is None else device_ids(ns, payload)
            except MalformedOmemoElement:
                listed = frozenset()
            if device_id not in listed:
                return f"our device {device_id} is not in our published {ns} device list", True
            try:
                if spec.bundle_item_per_device:
                    items = await self.client.get_items(
                        own, spec.bundle_node(device_id), item_ids=[spec.bundle_item(device_id)]
                    )
                else:
                    items = await self.client.get_items(
                        own, spec.bundle_node(device_id), max_items=1
                    )
            except StanzaError as exc:
                if exc.condition != "item-not-found":
                    raise OmemoError(f"cannot read our {ns} bundle: {exc}") from exc
                items = []
            payload = next((i.payload for i in items if i.payload is not None), None)
            if payload is None or _bundle_identity(ns, payload) != _published_form(ns, identity):
                return f"our {ns} bundle is not published (or is not ours)", True
        return None, False

    def _read_store(self, path: Path) -> tuple[int, bytes, list[int]] | str:
        """Our device id, identity key and signed pre key times: from the check file if it
        describes this very store (see :func:`read_check_file`), else read from the store (and
        the check file written again); or why the full session must start."""
        if not path.is_file():
            return "no OMEMO identity yet"
        own = str(self.client.jid.bare)
        cached = read_check_file(path, own, self.namespaces)
        if cached is not None:
            return cached
        return refresh_check_file(path, own, self.namespaces)

    # -- events before the session starts -------------------------------------------------------

    def _devices_callback(self, ns: str) -> Callable[[JID, PubSubEvent], None]:
        def callback(publisher: JID, event: PubSubEvent) -> None:
            if self._closed:
                return
            if self._session is not None:
                self._session._pep_callback(ns)(publisher, event)
                return
            payload = next((i.payload for i in event.items if i.payload is not None), None)
            if payload is None:
                return
            self._keep(("devices", ns, str(publisher.bare)), ("devices:" + ns, publisher, payload))
            if publisher.bare == self.client.jid.bare and not self._lists_us(ns, payload):
                self._wake_up(f"our published {ns} device list no longer has our device")

        return callback

    def _lists_us(self, ns: str, payload: etree._Element) -> bool:
        stored = self._read_store(store_path(self.data_dir, self.client.jid.bare))
        if isinstance(stored, str):
            return False
        try:
            return stored[0] in device_ids(ns, payload)
        except MalformedOmemoElement:
            return True  # the session would ignore it too (logged there)

    def _on_message(self, message: etree._Element) -> None:
        if self._closed:
            return
        if self._session is not None:
            self._session._on_message(message)
            return
        for ns in self.namespaces:
            encrypted = message.find(f"{{{ns}}}encrypted")
            if encrypted is None:
                continue
            sender = message.get("from")
            if encrypted.find(f"{{{ns}}}payload") is not None or sender is None:
                log.info("ignoring an OMEMO chat message from %s (not a chat client)", sender)
                return
            try:
                jid = JID(sender)
            except Exception:  # a malformed 'from' (InvalidJID): ignore the stanza
                log.warning("ignoring an OMEMO message with a malformed sender %r", sender)
                return
            self._messages += 1
            self._keep(("message", self._messages), ("message:" + ns, jid, encrypted))
            self._wake_up(f"an OMEMO message from {jid}")
            return

    def _keep(self, key: object, event: tuple[str, JID, etree._Element]) -> None:
        self._backlog.pop(key, None)  # the newest device list of a contact replaces the older
        if len(self._backlog) >= MAX_BACKLOG:
            log.warning("dropping an OMEMO %s from %s: too many waiting", event[0], event[1])
            return
        self._backlog[key] = event


def _published_form(ns: str, identity: bytes) -> bytes:
    if ns == OLDMEMO:
        return b"\x05" + _curve_from_ed(identity)
    return identity


def _bundle_identity(ns: str, bundle: etree._Element) -> bytes | None:
    name = "identityKey" if ns == OLDMEMO else "ik"
    if bundle.tag != f"{{{ns}}}bundle":
        return None
    text = bundle.findtext(f"{{{ns}}}{name}")
    if not text or len(text) > 256:
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def check_file_path(store: Path) -> Path:
    """The check file next to the OMEMO store ``store``."""
    return store.with_name(store.name + ".check.json")


def _store_digest(store: Path) -> str | None:
    """The SHA-256 of the store file, or ``None`` if a write-ahead log with frames exists before
    or after the read (changes may be in the log, not in the file) or the file cannot be read."""
    wal = store.with_name(store.name + "-wal")

    def log_is_empty() -> bool:
        try:
            return wal.stat().st_size == 0
        except FileNotFoundError:
            return True
        except OSError:
            return False

    if not log_is_empty():
        return None
    try:
        data = store.read_bytes()
    except OSError:
        return None
    if not log_is_empty():
        return None
    return hashlib.sha256(data).hexdigest()


def read_check_file(
    store: Path, own: str, namespaces: Sequence[str]
) -> tuple[int, bytes, list[int]] | None:
    """Our device id, identity key and signed pre key times (in the order of ``namespaces``)
    from the check file of ``store``, or ``None`` (read the store) if the file is missing,
    malformed, for another account or set of OMEMO versions, or was written for other store
    contents than the file holds now."""
    try:
        data = json.loads(check_file_path(store).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != _CHECK_VERSION:
        return None
    device_id = data.get("device_id")
    identity = data.get("identity_key")
    times = data.get("signed_pre_key_times")
    if (
        data.get("account") != own
        or not isinstance(device_id, int)
        or isinstance(device_id, bool)
        or not isinstance(identity, str)
        or not isinstance(times, dict)
        or set(times) != set(namespaces)
        or len(times) != len(namespaces)
    ):
        return None
    stamps = [times[ns] for ns in namespaces]
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in stamps):
        return None
    try:
        key = base64.b64decode(identity, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(key) != 32:
        return None
    # Last: the values are those of the store only if its contents are the ones they were
    # read from (any later write changes the file or leaves frames in its log).
    if data.get("store_sha256") != _store_digest(store):
        return None
    return device_id, key, stamps


def refresh_check_file(
    store: Path, own: str, namespaces: Sequence[str]
) -> tuple[int, bytes, list[int]] | str:
    """Read our values from the store with :mod:`sqlite3` (see :func:`_read_sqlite`) and, if
    the store did not change during the read, write them with the store's digest to its check
    file (temporary file and rename; a failure is logged, never raised)."""
    before = _store_digest(store)
    values = _read_sqlite(store, own, namespaces)
    if isinstance(values, str) or before is None or _store_digest(store) != before:
        return values
    device_id, key, stamps = values
    record = {
        "version": _CHECK_VERSION,
        "account": own,
        "store_sha256": before,
        "device_id": device_id,
        "identity_key": base64.b64encode(key).decode(),
        "signed_pre_key_times": dict(zip(namespaces, stamps, strict=True)),
    }
    target = check_file_path(store)
    temp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)
        os.replace(temp, target)
    except OSError as exc:
        log.debug("could not write the OMEMO check file %s: %s", target, exc)
        temp.unlink(missing_ok=True)
    return values


def _read_sqlite(
    path: Path, own: str, namespaces: Sequence[str]
) -> tuple[int, bytes, list[int]] | str:
    """Our device id, identity key and signed pre key times, read from the store; or why
    the full session must start (no store, another set of namespaces, unreadable)."""
    import sqlite3  # only here: a valid check file spares its import

    if not path.is_file():
        return "no OMEMO identity yet"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:

            def load(key: str) -> object:
                row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
                return None if row is None else json.loads(row[0])

            device_id = load("/own_device_id")
            if not isinstance(device_id, int) or isinstance(device_id, bool):
                return "no OMEMO identity yet"
            stored_namespaces = load(f"/devices/{own}/{device_id}/namespaces")
            if not isinstance(stored_namespaces, list) or set(stored_namespaces) != set(namespaces):
                return "the OMEMO versions of the store differ from this run's"
            identity = load(f"/devices/{own}/{device_id}/identity_key")
            times = []
            for ns in namespaces:
                state = load(f"/{ns}/x3dh")
                spk = state.get("signed_pre_key") if isinstance(state, dict) else None
                stamp = spk.get("timestamp") if isinstance(spk, dict) else None
                if not isinstance(stamp, int):
                    return f"the {ns} signed pre key could not be read from the store"
                times.append(stamp)
        finally:
            db.close()
        if not isinstance(identity, str):
            return "our identity key could not be read from the store"
        # python-omemo's Storage.store_bytes: URL-safe base64.
        key = base64.b64decode(identity, altchars=b"-_", validate=True)
    except (sqlite3.Error, ValueError, binascii.Error) as exc:
        return f"the OMEMO store could not be read ({exc})"
    if len(key) != 32:
        return "our identity key in the store has the wrong size"
    return device_id, key, times


class PreparedEnvelope(EnvelopeMethod):
    """A JET-OMEMO envelope method of a :class:`PreparedOmemo`: starts the full session on
    first use, then hands over to its :class:`~._envelope.OmemoEnvelope`."""

    short_name = "omemo"
    install_hint = "pip install jet-trio-omemo"

    def __init__(self, prepared: PreparedOmemo, namespace: str) -> None:
        self._prepared = prepared
        self.namespace = namespace
        self.key_store = prepared.key_store
        self.features = (JET_OMEMO_FEATURE, f"{node_spec(namespace).device_list_node}+notify")
        if namespace == OLDMEMO:
            # Dino and Conversations accept exactly this cipher with legacy OMEMO.
            self.preferred_cipher = CIPHER_AES128_GCM

    async def _method(self) -> EnvelopeMethod:
        try:
            session = await self._prepared.session()
        except OmemoError as exc:
            raise EnvelopeError(f"OMEMO could not be started: {exc}") from None
        return next(m for m in session.envelopes if m.namespace == self.namespace)

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        return await (await self._method()).encrypt(secret, peer)

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        return await (await self._method()).decrypt(element, sender, cipher)


class _PreparedKeys(KeyStore):
    """The key store of a :class:`PreparedOmemo`: the full session's, started on first use."""

    name = "omemo"
    title = "OMEMO devices"

    def __init__(self, prepared: PreparedOmemo) -> None:
        self._prepared = prepared

    async def list_keys(self, jid: JID) -> list[KeyRecord]:
        return await (await self._prepared.session()).key_store.list_keys(jid)

    async def set_trust(self, key: KeyRecord, trusted: bool) -> KeyRecord:
        return await (await self._prepared.session()).key_store.set_trust(key, trusted)


@asynccontextmanager
async def prepare_omemo(
    client: Client,
    data_dir: Path | str,
    *,
    trust: TrustPolicy | str = "btbv",
    namespaces: Sequence[str] = (OLDMEMO, TWOMEMO),
    rotation_period: float = DEFAULT_ROTATION_PERIOD,
    notify: Callable[[KeyNotice], None] | None = None,
) -> AsyncIterator[PreparedOmemo]:
    """OMEMO on ``client`` for the ``async with`` block, with the OMEMO libraries loaded and the
    full session started only when needed (see the module doc). Arguments as for
    :func:`~._session.open_omemo`; what it cannot check cheaply starts the full session now."""
    prepared = PreparedOmemo(
        client,
        data_dir,
        trust=trust,
        namespaces=namespaces,
        rotation_period=rotation_period,
        notify=notify,
    )
    try:
        await prepared._prepare()
        yield prepared
    finally:
        await prepared.aclose()
