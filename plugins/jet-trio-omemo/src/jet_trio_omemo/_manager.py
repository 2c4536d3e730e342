"""python-omemo's :class:`~omemo.session_manager.SessionManager` on jet-trio's client, under trio.

Two things python-omemo 2.x does assume asyncio (or Twisted) for, and how they are handled here:

* :meth:`SessionManager.create` ends by starting the signed-pre-key rotation loop with
  ``asyncio.ensure_future(...)`` (``omemo/session_manager.py``, end of ``create``). Under trio
  there is no running asyncio loop: on Python 3.11 that call makes a fresh, never-running loop
  (with a DeprecationWarning, an error under ``-W error``), the loop's ``asyncio.sleep`` could not
  run under trio anyway, and :meth:`SessionManager.shutdown` then awaits the asyncio future, which
  trio cannot. So: the module-level name ``asyncio`` in ``omemo.session_manager`` is replaced
  (once, idempotently) by a proxy that forwards everything to the real :mod:`asyncio`, except that
  ``ensure_future`` called while :data:`_SUPPRESS_ROTATION` is set (a context variable, set only
  inside :meth:`TrioSessionManager.create_on` for the duration of ``create``) closes the coroutine
  instead of scheduling it. Other users of python-omemo in the process (asyncio ones) are not
  affected. The rotation runs instead in :meth:`TrioSessionManager.run_rotation`, a trio task in
  the client's nursery, with the same logic through public backend methods, and
  :meth:`TrioSessionManager.shutdown` (overridden) cancels that task and waits for its end.
* The abstract XMPP operations are static methods in python-omemo, called from ``create`` before
  the instance exists to the caller; the client is therefore bound into a per-session subclass
  (:func:`bind_session_manager`).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import logging
import math
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, Final

import oldmemo.oldmemo
import omemo.session_manager
import trio
import twomemo.twomemo
from jet_trio import JID, Client, JetError, StanzaError
from jet_trio._xmpp.stanza import E
from lxml import etree
from omemo import (
    Bundle,
    BundleDeletionFailed,
    BundleDownloadFailed,
    BundleNotFound,
    BundleUploadFailed,
    DeviceInformation,
    DeviceList,
    DeviceListDownloadFailed,
    DeviceListUploadFailed,
    Message,
    MessageSendingFailed,
    SessionManager,
    TrustDecisionFailed,
    TrustLevel,
    UnknownNamespace,
)
from omemo.backend import Backend

from . import _codecs
from ._backends import DEVICE_LIST_OPTIONS, OLDMEMO, TWOMEMO, node_spec

__all__ = [
    "TrioSessionManager",
    "TrustLevelName",
    "TrustPolicy",
    "UndecidedDevices",
    "bind_session_manager",
    "fingerprint_of",
]

log = logging.getLogger("jet_trio_omemo")

_SUPPRESS_ROTATION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "jet_trio_omemo_suppress_rotation", default=False
)


class _NotStarted:
    """What the patched ``ensure_future`` returns in place of the asyncio task (never awaited:
    :meth:`TrioSessionManager.shutdown` does not call the base class's)."""

    def cancel(self) -> bool:
        return False


class _AsyncioProxy:
    """Stands for :mod:`asyncio` inside ``omemo.session_manager`` only (see the module doc)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def ensure_future(coro_or_future: Any, **kwargs: Any) -> Any:
        if _SUPPRESS_ROTATION.get() and isinstance(coro_or_future, Coroutine):
            coro_or_future.close()
            return _NotStarted()
        return asyncio.ensure_future(coro_or_future, **kwargs)


class _FirstRunNoise(logging.Filter):
    """Drops python-omemo's warning that our own device was missing from our device list while
    :meth:`TrioSessionManager.create_on` runs: on a first start that is expected (the list is
    empty or lacks the new device) and the library fixes it; later, the warning stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            _SUPPRESS_ROTATION.get()
            and record.getMessage().startswith("Own device id was not included")
        )


_FIRST_RUN_NOISE = _FirstRunNoise()


def _install_asyncio_proxy() -> None:
    core_log = logging.getLogger(SessionManager.LOG_TAG)
    if _FIRST_RUN_NOISE not in core_log.filters:
        core_log.addFilter(_FIRST_RUN_NOISE)
    module = omemo.session_manager
    if not isinstance(getattr(module, "asyncio", None), _AsyncioProxy):
        setattr(module, "asyncio", _AsyncioProxy())  # noqa: B010 - module attribute, see doc


class TrustPolicy(enum.Enum):
    """How devices nobody has decided on are treated."""

    BTBV = "btbv"
    """Blind trust before verification: a new device is trusted, until the first device of that
    account is verified; from then on, new devices of that account need a decision."""
    MANUAL = "manual"
    """Every device needs an explicit decision (:meth:`OmemoSession.set_trust`)."""


class TrustLevelName(enum.StrEnum):
    """The custom trust levels stored per identity key."""

    UNDECIDED = "undecided"
    VERIFIED = "verified"
    DISTRUSTED = "distrusted"


class UndecidedDevices(TrustDecisionFailed):
    """Devices the policy in force does not allow without a decision (raised when encrypting)."""

    def __init__(self, devices: list[tuple[str, int, str]]) -> None:
        listed = "; ".join(f"{jid} device {did} fingerprint {fp}" for jid, did, fp in devices)
        super().__init__(
            f"no trust decision for: {listed} (verify the fingerprints, then mark the devices "
            "trusted or untrusted)"
        )
        self.devices = devices


def fingerprint_of(identity_key: bytes) -> str:
    """The OMEMO fingerprint of an identity key: its Curve25519 form in hex, groups of eight."""
    return " ".join(SessionManager.format_identity_key(identity_key))


@dataclasses.dataclass
class JetTrust:
    """What trust evaluation found while encrypting one JET key (see
    :meth:`TrioSessionManager._evaluate_custom_trust_level`): the recipient's devices left out
    for want of a decision, and the ones used by blind trust, by device id."""

    left_out: dict[int, DeviceInformation] = dataclasses.field(default_factory=dict)
    blind: dict[int, DeviceInformation] = dataclasses.field(default_factory=dict)


class TrioSessionManager(SessionManager):
    """python-omemo's session manager on a jet-trio :class:`~jet_trio.Client`, under trio.

    Do not instantiate: use :func:`bind_session_manager` and :meth:`create_on`.
    """

    client: ClassVar[Client]
    policy: ClassVar[TrustPolicy]
    own_jid: ClassVar[JID]
    _rotation_period: ClassVar[float]

    # Set per instance after create.
    _rotation_scope: trio.CancelScope | None = None
    _rotation_done: trio.Event | None = None
    _jet_recipient: contextvars.ContextVar[str | None] = contextvars.ContextVar(
        "jet_trio_omemo_jet_recipient", default=None
    )
    _jet_trust: contextvars.ContextVar[JetTrust | None] = contextvars.ContextVar(
        "jet_trio_omemo_jet_trust", default=None
    )
    rotations: int = 0
    rotation_event: trio.Event

    @classmethod
    async def create_on(
        cls,
        backends: list[Backend],
        storage: omemo.Storage,
        *,
        rotation_period: float,
        label: str | None,
    ) -> TrioSessionManager:
        """:meth:`create` without the asyncio rotation task (see the module doc)."""
        _install_asyncio_proxy()
        token = _SUPPRESS_ROTATION.set(True)
        try:
            sm = await cls.create(
                backends,
                storage,
                str(cls.own_jid),
                label,
                TrustLevelName.UNDECIDED.value,
                signed_pre_key_rotation_period=max(1, math.ceil(rotation_period)),
            )
        finally:
            _SUPPRESS_ROTATION.reset(token)
        sm.rotation_event = trio.Event()
        sm.lock = trio.Lock()
        sm._backends_list = backends
        return sm

    lock: trio.Lock
    """Serialises every use of the session manager (python-omemo is not safe against two
    operations interleaving at their awaits, e.g. two first-contact session builds)."""

    _backends_list: list[Backend]

    # -- signed pre key rotation, as a trio task ----------------------------------------------

    async def run_rotation(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Rotate each backend's signed pre key when older than the period and upload the new
        bundle, forever (until :meth:`shutdown`). Mirrors python-omemo's own loop; upload
        failures are retried with a doubling delay (one minute to one hour)."""
        period = self._rotation_period
        slack = min(60.0, period / 10)
        done = self._rotation_done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._rotation_scope = scope
                task_status.started()
                own, _ = await self.get_own_device_information()
                while True:
                    next_check = period
                    for backend in self._backends_list:
                        age = await backend.signed_pre_key_age()
                        if age >= period:
                            log.info("rotating the signed pre key of %s", backend.namespace)
                            async with self.lock:
                                await backend.rotate_signed_pre_key()
                            await self._upload_rotated(backend, own.device_id)
                            self.rotations += 1
                            self.rotation_event.set()
                            self.rotation_event = trio.Event()
                        else:
                            next_check = min(next_check, period - age)
                    await trio.sleep(max(next_check, 0) + slack)
        finally:
            done.set()

    async def _upload_rotated(self, backend: Backend, device_id: int) -> None:
        delay = 60.0
        while True:
            try:
                async with self.lock:
                    bundle = await backend.get_bundle(str(self.own_jid), device_id)
                    await self._upload_bundle(bundle)
                return
            except BundleUploadFailed:
                log.exception("bundle upload after signed pre key rotation failed; retrying")
                await trio.sleep(delay)
                delay = min(delay * 2, 3600.0)

    async def shutdown(self) -> None:
        """Stop the rotation task and wait until it has ended. Does not await python-omemo's
        asyncio task (never started under trio)."""
        if self._rotation_scope is not None:
            self._rotation_scope.cancel()
        if self._rotation_done is not None:
            await self._rotation_done.wait()

    # -- trust -------------------------------------------------------------------------------

    async def _evaluate_custom_trust_level(self, device: DeviceInformation) -> TrustLevel:
        name = device.trust_level_name
        if name == TrustLevelName.VERIFIED:
            return TrustLevel.TRUSTED
        if name == TrustLevelName.DISTRUSTED:
            return TrustLevel.DISTRUSTED
        if name != TrustLevelName.UNDECIDED:
            raise omemo.UnknownTrustLevel(f"unknown trust level {name!r}")
        recipient = self._jet_recipient.get()
        if recipient is not None and device.bare_jid == str(self.own_jid):
            # A JET key is for the peer only: our own other devices are left out of it.
            return TrustLevel.DISTRUSTED
        if self.policy is TrustPolicy.MANUAL:
            level = TrustLevel.UNDECIDED
        else:
            others = await self.get_device_information(device.bare_jid)
            verified = any(d.trust_level_name == TrustLevelName.VERIFIED for d in others)
            # blind trust before verification
            level = TrustLevel.UNDECIDED if verified else TrustLevel.TRUSTED
        found = self._jet_trust.get()
        if recipient is not None and found is not None:
            # Encrypting a JET key (as Conversations and Dino do for messages): to the trusted
            # devices; an undecided one is left out and the user told, instead of blocking the
            # transfer. Without any trusted device, the envelope method asks for a decision.
            if level is TrustLevel.UNDECIDED:
                found.left_out[device.device_id] = device
                return TrustLevel.DISTRUSTED
            found.blind[device.device_id] = device
        return level

    async def _make_trust_decision(
        self, undecided: frozenset[DeviceInformation], identifier: str | None
    ) -> None:
        raise UndecidedDevices(
            sorted((d.bare_jid, d.device_id, fingerprint_of(d.identity_key)) for d in undecided)
        )

    # -- XMPP operations (PEP and messages) -----------------------------------------------------

    @classmethod
    async def _upload_bundle(cls, bundle: Bundle) -> None:
        spec = _spec(bundle.namespace)
        assert isinstance(bundle, oldmemo.oldmemo.BundleImpl | twomemo.twomemo.BundleImpl)
        payload = _codecs.serialize_bundle(bundle)
        try:
            await cls.client.publish(
                spec.bundle_node(bundle.device_id),
                payload,
                item_id=spec.bundle_item(bundle.device_id),
                options=spec.bundle_options,
            )
        except JetError as exc:
            raise BundleUploadFailed(f"publishing the {bundle.namespace} bundle: {exc}") from exc

    @classmethod
    async def _download_bundle(cls, namespace: str, bare_jid: str, device_id: int) -> Bundle:
        spec = _spec(namespace)
        node = spec.bundle_node(device_id)
        try:
            if spec.bundle_item_per_device:  # OMEMO 2: one node, the item named by device id
                items = await cls.client.get_items(
                    bare_jid, node, item_ids=[spec.bundle_item(device_id)]
                )
            else:
                # Legacy OMEMO: a node per device holding one item, whatever its id ("current"
                # for Conversations and us, "1" for Dino 0.4): ask for the last item.
                items = await cls.client.get_items(bare_jid, node, max_items=1)
        except StanzaError as exc:
            if exc.condition == "item-not-found":
                raise BundleNotFound(f"no {namespace} bundle for {bare_jid}/{device_id}") from exc
            raise BundleDownloadFailed(f"{bare_jid}/{device_id}: {exc}") from exc
        except JetError as exc:
            raise BundleDownloadFailed(f"{bare_jid}/{device_id}: {exc}") from exc
        payload = next((i.payload for i in items if i.payload is not None), None)
        if payload is None:
            raise BundleNotFound(f"no {namespace} bundle for {bare_jid}/{device_id}")
        try:
            return _codecs.parse_bundle(namespace, payload, bare_jid, device_id)
        except _codecs.MalformedOmemoElement as exc:
            raise BundleDownloadFailed(f"bundle of {bare_jid}/{device_id}: {exc}") from exc

    @classmethod
    async def _delete_bundle(cls, namespace: str, device_id: int) -> None:
        spec = _spec(namespace)
        try:
            await cls.client.retract(spec.bundle_node(device_id), spec.bundle_item(device_id))
        except StanzaError as exc:
            if exc.condition != "item-not-found":
                raise BundleDeletionFailed(str(exc)) from exc
        except JetError as exc:
            raise BundleDeletionFailed(str(exc)) from exc

    @classmethod
    async def _upload_device_list(cls, namespace: str, device_list: DeviceList) -> None:
        spec = _spec(namespace)
        payload = _codecs.serialize_device_list(namespace, device_list)
        try:
            await cls.client.publish(
                spec.device_list_node, payload, item_id="current", options=DEVICE_LIST_OPTIONS
            )
        except JetError as exc:
            raise DeviceListUploadFailed(f"publishing the {namespace} device list: {exc}") from exc

    @classmethod
    async def _download_device_list(cls, namespace: str, bare_jid: str) -> DeviceList:
        spec = _spec(namespace)
        try:
            items = await cls.client.get_items(bare_jid, spec.device_list_node, max_items=1)
        except StanzaError as exc:
            if exc.condition == "item-not-found":
                return {}
            raise DeviceListDownloadFailed(f"{namespace} device list of {bare_jid}: {exc}") from exc
        except JetError as exc:
            raise DeviceListDownloadFailed(f"{namespace} device list of {bare_jid}: {exc}") from exc
        payload = next((i.payload for i in items if i.payload is not None), None)
        if payload is None:
            return {}
        return parse_device_list(namespace, payload)

    @classmethod
    async def _send_message(cls, message: Message, bare_jid: str) -> None:
        """Send an OMEMO message without content (session completion, heartbeats)."""
        encrypted = _codecs.serialize_message(message)
        stanza = E(
            "{jabber:client}message",
            {"to": bare_jid, "type": "chat"},
            encrypted,
            E("{urn:xmpp:hints}store"),
            E("{urn:xmpp:eme:0}encryption", {"namespace": message.namespace}),
        )
        try:
            await cls.client.send(stanza)
        except JetError as exc:
            raise MessageSendingFailed(str(exc)) from exc


def parse_device_list(namespace: str, payload: etree._Element) -> DeviceList:
    """Read a device list payload; raises :class:`DeviceListDownloadFailed` if malformed."""
    _spec(namespace)
    try:
        return _codecs.parse_device_list(namespace, payload)
    except _codecs.MalformedOmemoElement as exc:
        raise DeviceListDownloadFailed(f"device list: {exc}") from exc


def _spec(namespace: str) -> Any:
    try:
        return node_spec(namespace)
    except KeyError:
        raise UnknownNamespace(namespace) from None


def bind_session_manager(
    client: Client, policy: TrustPolicy, rotation_period: float
) -> type[TrioSessionManager]:
    """A :class:`TrioSessionManager` subclass bound to ``client``."""
    attrs: Mapping[str, object] = {
        "client": client,
        "policy": policy,
        "own_jid": client.jid.bare,
        "_rotation_period": float(rotation_period),
    }
    return type("BoundTrioSessionManager", (TrioSessionManager,), dict(attrs))


SUPPORTED: Final = (OLDMEMO, TWOMEMO)
