"""The OMEMO state of one account on one client: :class:`OmemoSession` and :func:`open_omemo`."""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import omemo
import trio
from jet_trio import JID, Client, PubSubEvent
from jet_trio.plugin import EnvelopeMethod, KeyEvent, KeyNotice, KeyRecord, KeyStore, KeyTrust
from lxml import etree

from . import _codecs
from ._backends import OLDMEMO, TWOMEMO, JetOldmemo, JetTwomemo, node_spec
from ._manager import (
    TrioSessionManager,
    TrustLevelName,
    TrustPolicy,
    bind_session_manager,
    fingerprint_of,
    parse_device_list,
)
from ._prepared import (
    DEFAULT_ROTATION_PERIOD,
    OmemoError,
    attached_prepared,
    check_options,
    refresh_check_file,
    store_path,
)
from ._storage import SQLiteStorage

__all__ = [
    "DeviceFingerprint",
    "OmemoError",
    "OmemoKeys",
    "OmemoSession",
    "attached_session",
    "open_omemo",
]

log = logging.getLogger("jet_trio_omemo")

DEVICE_LIST_MAX_AGE: Final = 60.0
"""A peer's device list fetched (or pushed by PEP) less than this many seconds ago is not
fetched again before encrypting to that peer."""

_ATTACHED: weakref.WeakKeyDictionary[Client, OmemoSession] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class DeviceFingerprint:
    """One OMEMO device of an account, as shown to the user for verification."""

    jid: str
    device_id: int
    fingerprint: str
    """Curve25519 identity key in hex, eight groups of eight (as Conversations and Dino show)."""
    trust: str
    """``undecided`` (blindly trusted under BTBV), ``verified`` or ``distrusted``."""
    namespaces: frozenset[str]
    active: bool
    own: bool = False


def attached_session(client: object) -> OmemoSession | None:
    """The running :class:`OmemoSession` of ``client``, if any (used by the plugin hook)."""
    if not isinstance(client, Client):
        return None
    return _ATTACHED.get(client)


class OmemoSession:
    """OMEMO (legacy ``eu.siacs.conversations.axolotl`` and ``urn:xmpp:omemo:2``) for one client.

    Make one with :func:`open_omemo` (or :meth:`start` / :meth:`aclose`). While it runs, the
    jet-trio-omemo plugin offers its JET envelope methods to :func:`jet_trio.open_file_transfer`
    on the same client; :attr:`envelopes` gives them for explicit registration.
    """

    def __init__(
        self,
        client: Client,
        manager: TrioSessionManager,
        storage: SQLiteStorage,
        namespaces: tuple[str, ...],
        notify: Callable[[KeyNotice], None] | None = None,
    ) -> None:
        self.client = client
        self.notify = notify
        """Shows the user a :class:`~jet_trio.plugin.KeyNotice` (a device trusted on first use,
        one left out of a transfer); ``None``: they are logged only."""
        self.key_store = OmemoKeys(self)
        self.manager = manager
        self.storage = storage
        self.namespaces = namespaces
        self._events_in, self._events_out = trio.open_memory_channel[
            tuple[str, JID, etree._Element]
        ](256)
        self._fetched: dict[tuple[str, str], float] = {}
        self._worker_scope: trio.CancelScope | None = None
        self._worker_done = trio.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        self._closed = False
        from ._envelope import OmemoEnvelope  # circular: the envelope uses the session

        self.envelopes: list[EnvelopeMethod] = [OmemoEnvelope(self, ns) for ns in namespaces]

    # -- life cycle ----------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        client: Client,
        data_dir: Path | str,
        *,
        trust: TrustPolicy | str = TrustPolicy.BTBV,
        namespaces: Sequence[str] = (OLDMEMO, TWOMEMO),
        rotation_period: float = DEFAULT_ROTATION_PERIOD,
        label: str | None = None,
        notify: Callable[[KeyNotice], None] | None = None,
        _listen: bool = True,
    ) -> OmemoSession:
        """Load (or create and publish) this device's OMEMO identity for ``client``'s account.

        State lives in ``data_dir/omemo/<account>.sqlite3``. Background tasks (the signed pre
        key rotation, device list updates) run in ``client.nursery``; :meth:`aclose` stops them.
        (``_listen=False``: a :class:`~._prepared.PreparedOmemo` receives the device list
        notifications and messages, and hands them over through :meth:`_feed`.)
        """
        policy = TrustPolicy(check_options(trust, namespaces, rotation_period))
        if client in _ATTACHED or (_listen and attached_prepared(client) is not None):
            raise OmemoError(f"OMEMO is already running on the client of {client.jid}")
        account = str(client.jid.bare)
        path = store_path(data_dir, client.jid)
        try:
            storage = SQLiteStorage(path)
        except (omemo.StorageException, OSError) as exc:
            raise OmemoError(f"cannot open the OMEMO store of {account}: {exc}") from exc
        backends: list[omemo.Backend] = []
        for ns in namespaces:
            backends.append(JetOldmemo(storage) if ns == OLDMEMO else JetTwomemo(storage))
        bound = bind_session_manager(client, policy, rotation_period)
        try:
            manager = await bound.create_on(
                backends, storage, rotation_period=rotation_period, label=label
            )
            await manager.after_history_sync()
        except omemo.OMEMOException as exc:
            storage.close()
            raise OmemoError(f"OMEMO setup for {account} failed: {exc}") from exc
        except BaseException:
            storage.close()
            raise
        self = cls(client, manager, storage, tuple(namespaces), notify)
        try:
            await client.nursery.start(manager.run_rotation)
            await client.nursery.start(self._run_worker)
            for ns in namespaces if _listen else ():
                node = node_spec(ns).device_list_node
                self._unsubscribe.append(await client.on_pep(node, self._pep_callback(ns)))
            if _listen:
                self._unsubscribe.append(client.on_message(self._on_message))
        except BaseException:
            await self.aclose()
            raise
        _ATTACHED[client] = self
        own = await self.own_device()
        log.info(
            "OMEMO ready for %s: device %d, fingerprint %s", account, own.device_id, own.fingerprint
        )
        return self

    async def aclose(self) -> None:
        """Stop the background tasks and close the store (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if _ATTACHED.get(self.client) is self:
            del _ATTACHED[self.client]
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        with trio.CancelScope(shield=True):
            await self.manager.shutdown()
            if self._worker_scope is not None:
                self._worker_scope.cancel()
                await self._worker_done.wait()
        self._events_in.close()
        self.storage.close()
        # The values a prepared OMEMO checks, for the next start (see _prepared.read_check_file).
        refresh_check_file(self.storage.path, str(self.client.jid.bare), self.namespaces)

    @property
    def device_id(self) -> int:
        """Our OMEMO device id (loaded at start)."""
        return self._device_id

    _device_id: int = 0

    @property
    def trust_policy(self) -> TrustPolicy:
        return type(self.manager).policy

    @trust_policy.setter
    def trust_policy(self, policy: TrustPolicy | str) -> None:
        type(self.manager).policy = TrustPolicy(policy)

    @property
    def rotations(self) -> int:
        """How many signed pre key rotations this session's rotation task has done."""
        return self.manager.rotations

    async def wait_rotation(self) -> None:
        """Wait for the next signed pre key rotation (and its bundle upload)."""
        await self.manager.rotation_event.wait()

    @property
    def rotation_running(self) -> bool:
        done = self.manager._rotation_done
        return done is not None and not done.is_set()

    # -- device lists --------------------------------------------------------------------------

    async def refresh_devices(self, jid: JID | str, *, max_age: float = 0.0) -> None:
        """Fetch ``jid``'s device lists (unless fetched less than ``max_age`` seconds ago)."""
        async with self.manager.lock:
            await self._refresh_devices(jid, max_age=max_age)

    async def _refresh_devices(self, jid: JID | str, *, max_age: float = 0.0) -> None:
        bare = str(JID(jid).bare)
        now = trio.current_time()
        for ns in self.namespaces:
            last = self._fetched.get((ns, bare))
            if last is not None and now - last < max_age:
                continue
            try:
                await self.manager.refresh_device_list(ns, bare)
            except omemo.DeviceListDownloadFailed:
                if ns == self.namespaces[0]:
                    raise
                log.info("no %s device list for %s", ns, bare, exc_info=True)
                continue
            self._fetched[(ns, bare)] = now

    def _pep_callback(self, ns: str) -> _PepCallback:
        return _PepCallback(self, ns)

    def _feed(self, kind: str, jid: JID, payload: etree._Element) -> None:
        """Queue an event kept while the session was not running (``devices:NS`` with a device
        list payload, ``message:NS`` with an ``<encrypted>``), for the worker."""
        if self._closed:
            return
        try:
            self._events_in.send_nowait((kind, jid, payload))
        except (trio.WouldBlock, trio.ClosedResourceError):
            log.warning("dropping an OMEMO %s from %s: queue full", kind, jid)

    async def republish(self) -> None:
        """Publish our device list (with this device) and our bundle again, for each OMEMO
        version: what a :class:`~._prepared.PreparedOmemo` asks for when it found either
        missing."""
        own = str(self.client.jid.bare)
        async with self.manager.lock:
            device_id = (await self.own_device()).device_id
            for backend in self.manager._backends_list:
                await self.manager.refresh_device_list(backend.namespace, own)
                await self.manager._upload_bundle(await backend.get_bundle(own, device_id))

    def _on_message(self, message: etree._Element) -> None:
        if self._closed:
            return
        for ns in self.namespaces:
            encrypted = message.find(f"{{{ns}}}encrypted")
            if encrypted is None:
                continue
            sender = message.get("from")
            if sender is None:
                return
            try:
                self._events_in.send_nowait(("message:" + ns, JID(sender), encrypted))
            except (trio.WouldBlock, trio.ClosedResourceError):
                log.warning("dropping an OMEMO message from %s: queue full", sender)
            except Exception:  # a malformed 'from' (InvalidJID): ignore the stanza
                log.warning("ignoring an OMEMO message with a malformed sender %r", sender)
            return

    async def _run_worker(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Apply device list notifications and process OMEMO messages without content
        (session completion, heartbeats), in arrival order."""
        try:
            with trio.CancelScope() as scope:
                self._worker_scope = scope
                task_status.started()
                async for kind, jid, payload in self._events_out:
                    try:
                        async with self.manager.lock:
                            await self._handle_event(kind, jid, payload)
                    except Exception:  # one bad notification must not stop OMEMO
                        log.warning("OMEMO: could not process %s from %s", kind, jid, exc_info=True)
        finally:
            self._worker_done.set()

    async def _handle_event(self, kind: str, jid: JID, payload: etree._Element) -> None:
        if kind.startswith("devices:"):
            ns = kind.removeprefix("devices:")
            device_list = parse_device_list(ns, payload)
            await self.manager.update_device_list(ns, str(jid.bare), device_list)
            self._fetched[(ns, str(jid.bare))] = trio.current_time()
            return
        ns = kind.removeprefix("message:")
        if payload.find(f"{{{ns}}}payload") is not None:
            log.info("ignoring an OMEMO chat message from %s (not a chat client)", jid)
            return
        message = await parse_message(self.manager, ns, payload, jid, self.client.jid.bare)
        await self.manager.decrypt(message)

    # -- fingerprints and trust ----------------------------------------------------------------

    async def own_device(self) -> DeviceFingerprint:
        """This device: id and fingerprint."""
        own, _ = await self.manager.get_own_device_information()
        self._device_id = own.device_id
        return _fingerprint(own, own=True)

    async def devices(self, jid: JID | str, *, refresh: bool = True) -> list[DeviceFingerprint]:
        """The devices of ``jid`` (our own other devices for our own JID), fetching the device
        list first unless ``refresh`` is false."""
        bare = str(JID(jid).bare)
        async with self.manager.lock:
            if refresh:
                await self._refresh_devices(bare)
            return await self._devices(bare)

    async def _devices(self, bare: str) -> list[DeviceFingerprint]:
        if bare == str(self.client.jid.bare):
            own, others = await self.manager.get_own_device_information()
            ordered = sorted((_fingerprint(d) for d in others), key=lambda d: d.device_id)
            return [_fingerprint(own, own=True), *ordered]
        infos = await self.manager.get_device_information(bare)
        return sorted((_fingerprint(d) for d in infos), key=lambda d: d.device_id)

    async def set_trust(self, jid: JID | str, device: int | str, trusted: bool | None) -> None:
        """Mark a device of ``jid`` (its id or its fingerprint) verified (``True``), distrusted
        (``False``), or undecided again (``None``). Trust belongs to the identity key."""
        bare = str(JID(jid).bare)
        async with self.manager.lock:
            await self._set_trust(bare, device, trusted)

    async def _set_trust(self, bare: str, device: int | str, trusted: bool | None) -> None:
        infos = await self.manager.get_device_information(bare)
        wanted = "".join(device.split()).lower() if isinstance(device, str) else None
        match = next(
            (
                d
                for d in infos
                if (wanted is None and d.device_id == device)
                or (
                    wanted is not None and fingerprint_of(d.identity_key).replace(" ", "") == wanted
                )
            ),
            None,
        )
        if match is None:
            raise OmemoError(f"{bare} has no known OMEMO device {device!r}")
        level = {
            True: TrustLevelName.VERIFIED,
            False: TrustLevelName.DISTRUSTED,
            None: TrustLevelName.UNDECIDED,
        }[trusted]
        await self.manager.set_trust(bare, match.identity_key, level.value)

    # -- notices ---------------------------------------------------------------------------------

    def tell(self, event: KeyEvent, device: DeviceFingerprint) -> None:
        """Tell the user about ``device`` (through :attr:`notify`), and log it."""
        log.info(
            "OMEMO %s: device %d of %s, %s",
            event.value,
            device.device_id,
            device.jid,
            device.fingerprint,
        )
        if self.notify is not None:
            self.notify(KeyNotice(event, "omemo", _record(device)))

    async def announce_first_use(self, device: omemo.DeviceInformation) -> None:
        """Say once per identity key that a device is used without a decision (blind trust)."""
        key = f"/jet/announced/{device.bare_jid}/{device.identity_key.hex()}"
        if (await self.storage.load_primitive(key, bool)).maybe(False):
            return
        await self.storage.store(key, True)
        self.tell(KeyEvent.FIRST_USE, _fingerprint(device))

    async def fingerprint_of_device(self, jid: JID | str, device_id: int) -> str | None:
        for d in await self.manager.get_device_information(str(JID(jid).bare)):
            if d.device_id == device_id:
                return fingerprint_of(d.identity_key)
        return None


class _PepCallback:
    def __init__(self, session: OmemoSession, ns: str) -> None:
        self._session = session
        self._ns = ns

    def __call__(self, publisher: JID, event: PubSubEvent) -> None:
        session = self._session
        if session._closed:
            return
        payload = next((i.payload for i in event.items if i.payload is not None), None)
        if payload is None:
            return
        try:
            session._events_in.send_nowait(("devices:" + self._ns, publisher, payload))
        except (trio.WouldBlock, trio.ClosedResourceError):
            log.warning("dropping a device list update from %s: queue full", publisher)


class OmemoKeys(KeyStore):
    """The devices and trust decisions of an :class:`OmemoSession`, for ``jet-trio
    fingerprints`` and ``jet-trio trust`` (both OMEMO envelope methods share it)."""

    name = "omemo"
    title = "OMEMO devices"

    def __init__(self, session: OmemoSession) -> None:
        self._session = session

    async def list_keys(self, jid: JID) -> list[KeyRecord]:
        return [_record(d) for d in await self._session.devices(jid, refresh=True)]

    async def set_trust(self, key: KeyRecord, trusted: bool) -> KeyRecord:
        if key.device_id is None:
            raise OmemoError("an OMEMO device has a device id")
        await self._session.set_trust(key.jid, key.device_id, trusted)
        after = await self._session.devices(key.jid, refresh=False)
        return next(_record(d) for d in after if d.device_id == key.device_id)


_KEY_TRUST: Final = {
    "verified": KeyTrust.VERIFIED,
    "distrusted": KeyTrust.DISTRUSTED,
    "undecided": KeyTrust.UNDECIDED,
}


def _record(d: DeviceFingerprint) -> KeyRecord:
    trust = KeyTrust.OWN if d.own else _KEY_TRUST.get(d.trust, KeyTrust.UNDECIDED)
    return KeyRecord(JID(d.jid), d.fingerprint, trust, d.device_id, d.active)


def _fingerprint(d: omemo.DeviceInformation, *, own: bool = False) -> DeviceFingerprint:
    return DeviceFingerprint(
        jid=d.bare_jid,
        device_id=d.device_id,
        fingerprint=fingerprint_of(d.identity_key),
        trust=d.trust_level_name,
        namespaces=d.namespaces,
        active=any(active for _, active in d.active),
        own=own,
    )


async def parse_message(
    manager: TrioSessionManager, ns: str, encrypted: etree._Element, sender: JID, own: JID
) -> omemo.Message:
    """Read an ``<encrypted>`` element (:class:`~._codecs.MalformedOmemoElement` if malformed).

    A legacy OMEMO message needs the sender device's identity key (the sign of its Ed25519
    form is not in the message): the device is looked up, its device list fetched once if it is
    not known, else :class:`omemo.SenderNotFound`."""
    if ns != OLDMEMO:
        return _codecs.parse_twomemo_message(encrypted, str(sender.bare))
    sid = _codecs.message_sid(ns, encrypted)
    bare = str(sender.bare)
    device = await _find_device(manager, bare, sid)
    if device is None:
        try:
            await manager.refresh_device_list(ns, bare)
        except omemo.DeviceListDownloadFailed as exc:
            raise omemo.SenderNotFound(
                f"device {sid} of {bare} is unknown and its device list could not be fetched"
            ) from exc
        device = await _find_device(manager, bare, sid)
    if device is None:
        raise omemo.SenderNotFound(f"device {sid} is not a device of {bare} (or has no bundle)")
    return _codecs.parse_oldmemo_message(encrypted, bare, str(own.bare), device.identity_key)


async def _find_device(
    manager: TrioSessionManager, bare: str, device_id: int
) -> omemo.DeviceInformation | None:
    for device in await manager.get_device_information(bare):
        if device.device_id == device_id:
            return device
    return None


@asynccontextmanager
async def open_omemo(
    client: Client,
    data_dir: Path | str,
    *,
    trust: TrustPolicy | str = TrustPolicy.BTBV,
    namespaces: Sequence[str] = (OLDMEMO, TWOMEMO),
    rotation_period: float = DEFAULT_ROTATION_PERIOD,
    label: str | None = None,
    notify: Callable[[KeyNotice], None] | None = None,
) -> AsyncIterator[OmemoSession]:
    """OMEMO on ``client`` for the ``async with`` block; see :meth:`OmemoSession.start`.

    Open it before :func:`jet_trio.open_file_transfer` on the same client so that the installed
    jet-trio-omemo plugin offers the JET-OMEMO envelopes.
    """
    session = await OmemoSession.start(
        client,
        data_dir,
        trust=trust,
        namespaces=namespaces,
        rotation_period=rotation_period,
        label=label,
        notify=notify,
    )
    try:
        yield session
    finally:
        await session.aclose()
