"""The file-transfer facade: :func:`open_file_transfer`, :class:`FileTransfer`, offers.

The protocol decisions are the session machine's (``session.py``); routing the client's
Jingle and IBB iqs to sessions, offers waiting and quotas are the switchboard's
(``switchboard.py``); the choice of peer, envelope and cipher is ``choice.py``'s; setting up
each session's transport is ``transports.py``'s; the data pump and the shell of one session
are the driver's (``driver.py``). What is left here puts them together: sending,
receiving, sharing and requesting files, and the one session scope.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import trio
from lxml import etree

from .._errors import JetError, SecurityError
from .._jet.cipher import TransportSecret
from .._jet.envelope import EnvelopeMethod
from .._jingle.machine import JingleSession, SessionState
from .._jingle.message import (
    JingleAction,
)
from .._plugins.hookspecs import PluginConfig
from .._plugins.manager import PluginManager
from .._transports.ice import IceServer
from .._transports.s5b_direct import DirectAddresses, DirectCandidates, open_direct_candidates
from .._trio_util import unwrapped_errors
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.jid import JID
from .._xmpp.stanza import StanzaError
from .choice import Chooser
from .choice import describe_choice as _describe_choice
from .datachannel import (
    WebRTCSettings,
    webrtc_available,
)
from .description import (
    FileDescription,
    Range,
    build_description,
    file_not_available,
    safe_filename,
)
from .driver import (
    Digests,
    Established,
    Pace,
    SessionShell,
    _hash_prefix,
    _within,
    _within_or_never,
    receive_into,
    send_checksum,
    send_data,
)
from .files import FileKey, HashCache, Partial, deliver, find_partials, lock_part, unique_name
from .hashes import Hash, Hasher
from .paths import PathSet
from .placing import Placement, folder_components, folders_supported, open_beneath
from .reasons import cut_short, error_for, leaves
from .session import (
    CONTENT_NAME,
    REQUEST_NAME,
    KeptDownload,
    Offer,
    accepted_file,
    accepted_range,
    offers_ranges,
    resume_offset,
)
from .switchboard import Quotas, Switchboard
from .transports import Transport, TransportSetup
from .types import (
    IntegrityError,
    NameTaken,
    ProgressCallback,
    TransferDeclined,
    TransferError,
    TransferResult,
    TransportName,
)

__all__ = ["FileTransfer", "IncomingOffer", "open_file_transfer"]

log = logging.getLogger("jet_trio.transfer")

DEFAULT_ACCEPT_TIMEOUT: Final = 300.0
"""Seconds a sender waits for the receiver to accept or decline (a person deciding)."""


class _Default:
    """The type of a "use the service's setting" default."""


_DEFAULT: Final = _Default()


class IncomingOffer:
    """A file offered to us. :meth:`accept` to receive it, or :meth:`reject`.

    ``peer`` is the sender's full JID, ``file`` the description (``file.name`` is the name the
    peer proposed; the accepted file is stored under :attr:`safe_name`, see :meth:`target`),
    ``envelope`` the JET envelope namespace (``None``: unencrypted), ``cipher`` the cipher URN.

    Every offer gets an answer: one that is garbage-collected unanswered, or still unanswered
    when its :func:`open_file_transfer` block ends, is rejected (``decline``) with a warning
    logged; the sender also stops waiting after its ``accept_timeout``.
    """

    def __init__(
        self,
        service: FileTransfer,
        session: SessionShell,
        offer: Offer,
        envelope: str | None,
        cipher: str | None,
    ):
        self._service = service
        self._session = session
        self._offer = offer
        self.peer = session.peer
        self.file = offer.file
        self.envelope = envelope
        self.cipher = cipher
        self._answered = False
        self._leaf = ""  # the file's own name, for a file of a folder
        self._expiry = trio.CancelScope()  # cancelled once the application takes the offer
        service._switchboard.unanswered.add(self)

    def __del__(self) -> None:
        if getattr(self, "_answered", True):
            return
        log.warning(
            "an offer of %r from %s was dropped without an answer: rejecting it",
            self.name,
            self.peer,
        )
        board = self._service._switchboard
        with contextlib.suppress(RuntimeError, trio.RunFinishedError):
            board.token.run_sync_soon(board.refuse_soon, self._session)

    @property
    def safe_name(self) -> str:
        """The name the file gets inside a directory: :attr:`~jet_trio.IncomingOffer.name`
        without any directory part, control characters or surrounding blanks, within 255
        bytes."""
        return safe_filename(self.name)

    def target(
        self, destination: str | os.PathLike[str], *, rename: bool = False, folders: bool = True
    ) -> Path:
        """The path :meth:`accept` with these arguments would store the file at, were it
        accepted now: ``destination/safe_name`` for a directory, else ``destination`` itself;
        for a file of a folder (:attr:`path`, with ``folders``) ``destination/`` its relative
        path; with ``rename=True`` the first of ``name (1).ext``, ``name (2).ext``... that is
        free if the name is taken. (A quick blocking ``stat``: another program may still take
        the name before the transfer ends; :meth:`accept` never replaces it then.) Raises
        :class:`UnsafePath` for a relative path that cannot be stored safely."""
        dest = Path(destination)
        if dest.is_dir():
            parts = self._folder_parts(folders)
            dest = dest.joinpath(*parts) if parts else dest / self.safe_name
        return _free_name(dest) if rename else dest

    @property
    def path(self) -> str | None:
        """The file's relative path inside a folder the sender sends (jet-trio's
        ``urn:jet-trio:tree:0`` extension), as the sender gave it and unchecked, or ``None``."""
        return self.file.path

    def _folder_parts(self, folders: bool, paths: PathSet | None = None) -> tuple[str, ...]:
        """The checked components to store the file under, or () for its flat name."""
        if not folders or self.file.path is None or not folders_supported():
            return ()
        return folder_components(self.file.path, paths)

    @property
    def name(self) -> str:
        """The file name the sender gave, as it gave it (may contain a directory part or
        control characters: store under :attr:`safe_name`)."""
        return self.file.name or "unnamed"

    @property
    def size(self) -> int:
        """The size the sender announced, in bytes (0 when it gave none)."""
        return self.file.size or 0

    @property
    def encrypted(self) -> bool:
        """Whether the offer is end-to-end encrypted (JET)."""
        return self.envelope is not None

    def __repr__(self) -> str:
        enc = f", encrypted with {self.envelope}" if self.envelope else ""
        return f"<IncomingOffer {self.name!r} ({self.size} bytes) from {self.peer}{enc}>"

    async def reject(self, reason: str = "decline", text: str | None = None) -> None:
        """Decline the offer."""
        self._check_unanswered()
        await self._end(reason, text)

    def _check_unanswered(self) -> None:
        if self._answered:
            raise TransferError("this offer was already accepted or rejected", "general-error")
        self._answered = True
        self._service._switchboard.unanswered.discard(self)

    async def _end(self, reason: str, text: str | None) -> None:
        await self._session.terminate(reason, text)
        self._service._forget(self._session)

    async def accept(
        self,
        destination: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
        overwrite: bool = False,
        rename: bool = False,
        folders: bool = True,
        paths: PathSet | None = None,
        resume: bool = True,
    ) -> TransferResult:
        """Receive the file into ``destination`` (a directory, or the file path to create).

        A file of a folder (:attr:`path` set: the sender is jet-trio) goes, when
        ``destination`` is a directory and ``folders`` is true, to its relative path under it:
        the path is checked first (:func:`check_relative_path`, and against the other paths of
        the batch if ``paths`` is given), its directories are created without ever following a
        symbolic link, and the file is written through the directory opened then. A path that
        cannot be stored safely refuses the file: the session ends with
        ``failed-application`` saying why, and :class:`UnsafePath` (a subclass naming the rule:
        :class:`PathBlocked` for a link or file in the way on disk) is raised.

        Data goes to a temporary file beside the target; only after the size, the hash and (for
        JET) the GCM tag verified is it given the target name, with an operation that fails if
        the name exists: nothing is ever replaced unless ``overwrite=True`` (then atomically).
        ``rename=True`` stores it under the first free ``name (1).ext``, ``name (2).ext``... if
        the name is taken, when accepting or when the transfer ends. Without either, a name
        taken when accepting raises :class:`FileExistsError`, and a name taken during the
        transfer raises :class:`NameTaken` (the verified file is kept under a unique name).

        Any error answers the offer: the session is terminated with a reason the sender sees
        (an :class:`OSError` here, ``FileExistsError`` included: ``failed-application``); the
        offer cannot be accepted again. Cancelling (through a cancel scope) terminates the
        session with ``cancel``.

        An interrupted download is kept beside the target (unless its data is known bad).
        With ``resume=True``, when this offer is of a file kept so (the same sender account,
        name, size and, where both say one, SHA-256) and the sender honours ranges, only the
        rest is asked for (XEP-0234 ranged transfer, under the fresh transport secret of this
        session) and appended to it; the whole file is then verified against the offered hash,
        or the ``<checksum/>`` sent after the data, before it gets its name.
        :attr:`TransferResult.reused_bytes` says how much was kept. ``resume=False`` receives
        the whole file again. When the sender
        already has ``max_transfers_per_peer`` transfers running here, the offer is refused
        with ``busy`` and :class:`TransferDeclined` raised.
        """
        self._check_unanswered()
        placement: Placement | None = None
        # Not accepted after all: the one session scope answers the offer (the sender is not
        # left waiting) with the reason the error maps to (an unsafe path is named to it).
        async with self._service._session_scope(self._session, step=True):
            try:
                if (withdrawn := self._session.machine.ended_by_peer()) is not None:
                    raise error_for(withdrawn, str(self.peer))  # e.g. its accept_timeout
                placement = await self._place(destination, folders, paths)
                if placement is None:  # not a file of a folder, or not stored as one
                    dest = await trio.to_thread.run_sync(
                        lambda: self.target(
                            destination, rename=rename and not overwrite, folders=False
                        )
                    )
                else:
                    dest = placement.via / self._leaf
                    if rename and not overwrite:
                        dest = await trio.to_thread.run_sync(_free_name, dest)
                # With ``rename`` the name was free a moment ago; if something takes it before
                # the file is stored, the next free one is used then (never an error here).
                if not (overwrite or rename) and await trio.to_thread.run_sync(
                    os.path.lexists, dest
                ):
                    shown_dest = placement.real(dest) if placement is not None else dest
                    raise FileExistsError(
                        errno.EEXIST,
                        f"{shown_dest} already exists (pass overwrite=True to replace it, or "
                        "rename=True to store the file under a free name)",
                    )
            except BaseException:
                if placement is not None:
                    placement.close()
                raise
        service = self._service
        if not service._start_transfer(self._session):
            text = f"{self.peer.bare} has {service._max_transfers_per_peer} transfers running"
            await self._end("busy", text)
            if placement is not None:
                placement.close()
            raise TransferDeclined(f"refused {self.name!r}: {text}", "busy")
        if placement is None:
            return await service._run_receive(
                self, dest, progress, overwrite=overwrite, rename=rename, resume=resume
            )
        with placement:
            try:
                result = await service._run_receive(
                    self, dest, progress, overwrite=overwrite, rename=rename, resume=resume
                )
            except NameTaken as exc:
                taken = NameTaken(placement.real(exc.path), placement.real(exc.kept))
                if exc.result is not None:
                    taken.result = dataclasses.replace(
                        exc.result, path=placement.real(exc.result.path)
                    )
                raise taken from None
            return dataclasses.replace(result, path=placement.real(result.path))

    async def _place(
        self, destination: str | os.PathLike[str], folders: bool, paths: PathSet | None
    ) -> Placement | None:
        """For a file of a folder received into a directory: its checked path, its directories
        created and the last one held open; else ``None`` (the flat name is used)."""
        if not await trio.to_thread.run_sync(os.path.isdir, destination):
            return None
        parts = self._folder_parts(folders, paths)
        if not parts:
            return None
        self._leaf = parts[-1]
        return await trio.to_thread.run_sync(open_beneath, destination, parts[:-1])


def _free_name(dest: Path) -> Path:
    """``dest``, or the first of ``name (1).ext``, ``name (2).ext``... that is free."""
    n = 0
    while os.path.lexists(dest if n == 0 else dest.with_name(unique_name(dest.name, n))):
        n += 1
    return dest if n == 0 else dest.with_name(unique_name(dest.name, n))


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """A request for a shared file, once served (``error`` is ``None``) or failed: what
    :meth:`FileTransfer.share`'s ``on_served`` callback is given."""

    peer: JID
    """Who requested it."""
    name: str
    """The shared file's name."""
    sha256: str
    """Its SHA-256, in hex."""
    offset: int
    """Where the requested range starts."""
    length: int
    """How many bytes were requested."""
    error: Exception | None = None
    """Why serving it failed, or ``None``."""


class FileTransfer:
    """Send and receive files over Jingle on one client; make one with
    :func:`open_file_transfer`."""

    def __init__(
        self,
        client: Client,
        nursery: trio.Nursery,
        plugins: PluginManager,
        direct: DirectCandidates | None,
        *,
        use_proxies: bool,
        ibb_block_size: int,
        ibb_window: int,
        cipher_preference: Sequence[str],
        negotiation_timeout: float,
        stall_timeout: float | None,
        max_pending_offers: int,
        max_offers_per_peer: int = 4,
        max_transfers_per_peer: int = 4,
        offer_timeout: float | None = 120.0,
        min_throughput: float | None = None,
        throughput_window: float = 60.0,
        accept_timeout: float | None = DEFAULT_ACCEPT_TIMEOUT,
        webrtc: WebRTCSettings | None = None,
        relay_only: bool = False,
    ) -> None:
        self.client = client
        #: The data channel's settings, ``None`` when it is off (or aiortc is missing).
        self._webrtc = webrtc if webrtc is not None and webrtc_available() else None
        self.plugins = plugins
        self._nursery = nursery
        self._listener = direct.listener if direct is not None else None
        self._cipher_preference = tuple(cipher_preference)
        self._timeout = negotiation_timeout
        self._stall_timeout = stall_timeout
        self._pace = Pace(stall_timeout, min_throughput, throughput_window)
        self._accept_timeout = accept_timeout
        self._max_transfers_per_peer = max_transfers_per_peer
        self._min_throughput = min_throughput
        self._throughput_window = throughput_window
        self._hashes = HashCache()
        self._shares: dict[bytes, tuple[Path, frozenset[JID] | None]] = {}
        #: share(on_served=): told of each request served or failed, per shared file.
        self._served: dict[bytes, Callable[[ServedRequest], None]] = {}
        #: Routing of Jingle and IBB requests to sessions, offers waiting, quotas.
        self._switchboard = switchboard = Switchboard(
            client,
            nursery,
            plugins,
            negotiation_timeout,
            self._listener,
            Quotas(max_pending_offers, max_offers_per_peer, max_transfers_per_peer, offer_timeout),
            make_offer=self._new_offer,
            serve_request=self._serve_request,
            transports=lambda: self._transports.usable(),
        )
        self._registry = switchboard.registry
        self._sessions = switchboard.sessions
        self._ibb = switchboard.ibb
        #: Peer, envelope and cipher choice.
        self._chooser = chooser = Chooser(client, plugins, negotiation_timeout, cipher_preference)
        #: Setting up each session's transport (S5B, IBB, the data channel).
        self._transports = TransportSetup(
            client,
            timeout=negotiation_timeout,
            direct=direct,
            use_proxies=use_proxies,
            ibb_block_size=ibb_block_size,
            ibb_window=ibb_window,
            relay_only=relay_only,
            webrtc=self._webrtc,
            ibb=switchboard.ibb,
            features_of=chooser.features_of,
        )

    # -- features, and the interface the other parts use ------------------------------------

    @property
    def features(self) -> list[str]:
        """The disco features this service advertises."""
        feats = [_ns.JINGLE, _ns.JINGLE_FT, _ns.JINGLE_IBB, _ns.IBB, _ns.HASH_SHA256]
        if folders_supported():
            feats.append(_ns.JET_TRIO_TREE)  # we rebuild folders from relative paths
        feats += self._transports.features()
        if self.plugins.envelopes:
            feats.append(_ns.JET)
            feats += [c.urn for c in self.plugins.ciphers]  # so peers can pick a common cipher
        return feats + self.plugins.disco_features()

    def _open_session(self, jingle: JingleSession) -> SessionShell:
        return self._switchboard.open_session(jingle)

    def _forget(self, session: SessionShell) -> None:
        self._switchboard.forget(session)

    def _start_transfer(self, session: SessionShell) -> bool:
        return self._switchboard.start_transfer(session)

    async def incoming(self) -> AsyncIterator[IncomingOffer]:
        """Offers as they arrive: ``async for offer in ft.incoming(): ...``."""
        while True:
            try:
                offer = await self.next_offer()
            except trio.EndOfChannel:
                return
            yield offer

    async def next_offer(self) -> IncomingOffer:
        """Wait for the next offer (the oldest one queued). Offers not taken within the
        service's ``offer_timeout`` are refused on their own; raises
        :class:`trio.EndOfChannel` once the service is closing."""
        offer = await self._switchboard.next_offer()
        assert isinstance(offer, IncomingOffer)
        return offer

    def _new_offer(self, session: SessionShell, offer: Offer) -> IncomingOffer:
        envelope = cipher = None
        if offer.security is not None:
            envelope = offer.security.get("type")
            cipher = offer.security.get("cipher")
        return IncomingOffer(self, session, offer, envelope, cipher)

    # -- choosing peers, envelopes, ciphers (see choice.py) --------------------------------

    async def resolve_peer(self, to: JID | str) -> JID:
        """``to`` if it is a full JID, else the available resource of it that supports file
        transfer (most recently seen first)."""
        return await self._chooser.resolve_peer(to)

    async def rebuilds_folders(self, to: JID | str) -> bool:
        """Whether ``to`` (resolved as :meth:`resolve_peer` does) advertises jet-trio's
        ``urn:jet-trio:tree:0`` feature: it stores the files of a folder under their relative
        paths (``send_file(relative=...)``) instead of their flat names."""
        peer = await self.resolve_peer(to)
        try:
            return (await self._chooser.features_of(peer)).has(_ns.JET_TRIO_TREE)
        except StanzaError:
            return False

    async def _choose_envelope(
        self, peer: JID, encrypt: str | None
    ) -> tuple[EnvelopeMethod | None, str]:
        return await self._chooser.envelope(peer, encrypt)

    async def _make_security(
        self, method: EnvelopeMethod | None, cipher: str | None, peer: JID, content_name: str
    ) -> tuple[TransportSecret | None, etree._Element | None, str]:
        return await self._chooser.make_security(method, cipher, peer, content_name)

    async def _open_security(
        self, security: etree._Element | None, session: SessionShell
    ) -> TransportSecret | None:
        return await self._chooser.open_security(security, session.peer, session.jingle.initiator)

    # -- sending ---------------------------------------------------------------------------

    async def send_file(
        self,
        path: str | os.PathLike[str],
        to: JID | str,
        *,
        encrypt: str | None = "auto",
        cipher: str | None = None,
        transport: Transport = "auto",
        name: str | None = None,
        media_type: str | None = None,
        progress: ProgressCallback | None = None,
        accept_timeout: float | _Default | None = _DEFAULT,
        relative: str | None = None,
    ) -> TransferResult:
        """Offer the file at ``path`` to ``to`` and send it once accepted.

        ``relative`` is the file's path inside a folder being sent (``photos/2023/a.jpg``):
        it goes with the offer in jet-trio's ``urn:jet-trio:tree:0`` extension, for a peer
        that rebuilds folders (:meth:`rebuilds_folders`); ``name`` stays what other clients
        show and store.

        ``encrypt`` is ``"auto"`` (the strongest JET envelope method both sides support, see
        :func:`envelope_strength`; an error if there is none), an envelope namespace, or
        ``None`` for an explicit unencrypted transfer. ``cipher`` defaults to AES-256-GCM unless
        only the envelope method's own preference is safe (legacy OMEMO to a peer that does not
        advertise AES-256-GCM: AES-128-GCM, as Dino and Conversations need);
        :attr:`TransferResult.choice` says which was used and why.
        ``accept_timeout`` bounds the wait for the receiver to accept or decline (default: the
        service's, 300 s; ``None``: no bound): then :class:`TransferTimeout` is raised and the
        session is terminated with ``timeout``.
        ``transport`` is ``"auto"`` (the WebRTC data channel when enabled and the peer has it,
        else SOCKS5; falling back to in-band), ``"webrtc"``, ``"s5b"`` or ``"ibb"``.
        The file's SHA-256 is computed while the file is sent: the offer announces it
        (``<hash-used/>``) and a ``<checksum/>`` carries it after the data, for the receiver to
        verify before the file gets its name (:ref:`hash-while-sending`). A file the hash cache
        knows unchanged (sent or shared before) is offered with its hash. A file changed while
        it is sent raises :class:`~jet_trio.IntegrityError` before the end of the data. Cancel
        with a cancel scope: the session is then terminated with ``cancel``.

        The offer says that ranges are honoured (XEP-0234 ``<range/>``): a receiver that kept
        part of this file from an earlier, interrupted offer asks for the rest only, which is
        all that is sent (:attr:`TransferResult.reused_bytes` says how much it kept). Sending
        the same file again is how an interrupted transfer is completed.
        """
        src = Path(path)
        if not await trio.Path(src).is_file():
            raise FileNotFoundError(f"{src} is not a file")
        peer = await self.resolve_peer(to)
        method, why = await self._choose_envelope(peer, encrypt)
        secret, security, why_cipher = await self._make_security(method, cipher, peer, CONTENT_NAME)
        choice = _describe_choice(method, secret, why, why_cipher)
        # Hash while sending: the offer says <hash-used/> and a <checksum/> follows the data,
        # unless the hash cache knows the file as it is now (a repeated send, a shared file).
        resolved, key = await self._hashes.identify(src)
        size = key.size
        digest = self._hashes.cached(resolved, key)
        hasher = Hasher(("sha-256",)) if digest is None else None
        desc = FileDescription(
            name=name or src.name,
            size=size,
            media_type=media_type,
            hashes=(Hash("sha-256", digest),) if digest is not None else (),
            hash_used=("sha-256",) if digest is None else (),
            path=relative,
            range=Range(),  # <range/>: we honour a range in the session-accept (XEP-0234 6.1)
        )
        session = self._open_session(self._registry.create(peer))
        start = time.monotonic()
        async with self._session_scope(session) as cleanup:
            ours = await self._initiate(session, transport, desc, security, request=False)
            wait = self._accept_timeout if isinstance(accept_timeout, _Default) else accept_timeout
            with _within_or_never(wait, f"{peer} did not accept or decline the offer"):
                answer = await session.expect(JingleAction.SESSION_ACCEPT)
            theirs = session.machine.accepted(answer)
            # A receiver that kept part of the file from an earlier try asks for the rest;
            # ``secret`` was made for this session alone (XEP-0391 4.3).
            offset, length = accepted_range(answer, size)
            if offset:
                log.info("%s kept %d bytes of %s: sending the rest", peer, offset, desc.name)
                if hasher is not None:  # the <checksum/> is of the whole file: the kept part too
                    hasher = await trio.to_thread.run_sync(_hash_prefix, src, offset, ("sha-256",))
            established = await self._transports.establish(session, ours, theirs, cleanup)
            shown = _whole_file_progress(progress, offset, size)
            wire = await self._send_data(
                session, established, src, offset, length, secret, shown, hasher, key
            )
            if hasher is not None:
                digest = hasher.digest("sha-256").digest
                self._hashes.remember(resolved, key, digest)
                await send_checksum(session, (Hash("sha-256", digest),))
            await self._expect_success(session)
        assert digest is not None
        return _result(
            "send",
            session,
            name=desc.name or src.name,
            size=size,
            sha256=digest.hex(),
            transport=established.transport,
            envelope=method.namespace if method else None,
            secret=secret,
            started=start,
            path=src,
            wire_bytes=wire,
            verified=True,
            choice=choice,
            reused=offset,
        )

    async def _initiate(
        self,
        session: SessionShell,
        transport: Transport,
        file: FileDescription,
        security: etree._Element | None,
        *,
        request: bool,
    ) -> etree._Element:
        """Send session-initiate with one content: an offer of ``file`` (we send) or a
        request for it (the peer sends). Returns our transport element."""
        ours = await self._transports.initial(transport, session)
        description = build_description(file, request=request)
        await session.send(session.machine.initiate(description, ours, security, request=request))
        return ours

    async def _expect_success(self, session: SessionShell) -> None:
        with _within(self._timeout, f"{session.peer} did not confirm the transfer"):
            end = await session.expect(JingleAction.SESSION_TERMINATE)
        session.machine.check_success(end)

    async def _end_after_error(
        self, session: SessionShell, exc: BaseException
    ) -> TransferError | None:
        """End the session after ``exc`` as its machine decides (:meth:`FileSession.after_error`).
        Returns the error to raise instead of ``exc`` when the peer had already ended the
        session and ``exc`` is only a consequence."""
        ending = session.machine.after_error(exc)
        if ending.reason is not None:
            await session.terminate_with(ending.reason)
        return ending.instead

    @asynccontextmanager
    async def _session_scope(
        self, session: SessionShell, download: _Download | None = None, *, step: bool = False
    ) -> AsyncIterator[contextlib.AsyncExitStack]:
        """The one lifecycle of every session (sending or receiving, initiated or answered):
        the transports it opens are closed at the end (the yielded exit stack); any error
        ends the session with the reason it maps to (or is replaced by the peer's reason when
        it is only a consequence of the peer ending first), keeps or discards the partial file
        of a ``download``; and the session is forgotten. ``step=True``: a step of a session
        that goes on after it (accepting an offer): forgotten only if the step failed."""
        async with contextlib.AsyncExitStack() as cleanup:
            ok = False
            if not step:  # the transports' (the data channel opens before accept)
                session.cleanup = cleanup
            try:
                yield cleanup
                ok = True
            except BaseException as exc:
                instead = await self._end_after_error(session, exc)
                if download is not None and download.partial is not None:
                    _keep_or_discard(download.partial, instead or exc, download.resumable)
                if instead is not None:
                    raise instead from exc
                raise
            finally:
                if not (step and ok):
                    self._forget(session)

    async def _send_data(
        self,
        session: SessionShell,
        established: Established,
        src: Path,
        offset: int,
        length: int,
        secret: TransportSecret | None,
        progress: ProgressCallback | None,
        hasher: Hasher | None = None,
        unchanged: FileKey | None = None,
    ) -> int:
        """Send ``length`` bytes of ``src`` from ``offset`` (encrypted if ``secret``), feeding
        ``hasher``; the file must stay as ``unchanged`` describes it (see :func:`send_data`)."""
        return await send_data(
            session,
            established,
            src,
            offset,
            length,
            secret,
            progress,
            self._pace,
            hasher=hasher,
            unchanged=unchanged,
        )

    # -- sharing files and answering requests ----------------------------------------------

    async def share(
        self,
        path: str | os.PathLike[str],
        *,
        to: Iterable[JID | str] | None = None,
        on_served: Callable[[ServedRequest], None] | None = None,
    ) -> str:
        """Let peers request the file at ``path`` by its SHA-256 (XEP-0234 file request,
        XEP-0391 4.2), and resume downloads of it (4.3). ``to`` limits it to those bare JIDs;
        ``None`` serves anyone who knows the hash. ``on_served`` is called after each request
        for it was served (or failed). Returns the hex SHA-256."""
        src = Path(path)
        digest = await self._hashes.sha256(src)
        allowed = None if to is None else frozenset(JID(j).bare for j in to)
        self._shares[digest] = (src, allowed)
        if on_served is not None:
            self._served[digest] = on_served
        return digest.hex()

    def unshare(self, sha256: str) -> None:
        """Stop serving the file with this hex SHA-256."""
        self._shares.pop(bytes.fromhex(sha256), None)

    async def _serve_request(self, session: SessionShell, offer: Offer) -> None:
        """Answer a file request from the files we share. Runs in the service's nursery."""
        try:
            async with self._session_scope(session) as cleanup:
                await self._serve_request_in(session, offer, cleanup)
        except Exception as exc:  # a failed request must not end the service
            # Several tasks may fail at once (an exception group); anything but our typed
            # errors and I/O errors is a bug and still propagates.
            if not all(isinstance(e, (JetError, OSError)) for e in leaves(exc)):
                raise
            log.info("request from %s failed: %s", session.peer, exc)

    async def _serve_request_in(
        self, session: SessionShell, offer: Offer, cleanup: contextlib.AsyncExitStack
    ) -> None:
        wanted = next((h.digest for h in offer.file.hashes if h.algo == "sha-256"), b"")
        entry = self._shares.get(wanted)
        if entry is None or (entry[1] is not None and session.peer.bare not in entry[1]):
            await session.terminate_with(file_not_available("no such file is shared with you"))
            return
        src = entry[0]
        _, key = await self._hashes.identify(src)
        if await self._hashes.sha256(src) != wanted:
            await session.terminate_with(file_not_available("the shared file has changed"))
            return
        size = key.size
        rng = offer.file.range
        offset = rng.offset if rng else 0
        length = rng.length if rng and rng.length is not None else size - offset
        if offset + length > size:
            raise TransferError(
                "the requested range is beyond the end of the file", "failed-application"
            )
        secret = await self._open_security(offer.security, session)
        desc = FileDescription(
            name=src.name, size=size, hashes=(Hash("sha-256", wanted),), range=rng
        )
        established = await self._transports.accept_and_establish(
            session, offer.content, build_description(desc), cleanup
        )
        try:
            await self._send_data(
                session, established, src, offset, length, secret, None, unchanged=key
            )
            await self._expect_success(session)
        except Exception as exc:
            if (told := self._served.get(wanted)) is not None:
                told(ServedRequest(session.peer, src.name, wanted.hex(), offset, length, exc))
            raise
        if (told := self._served.get(wanted)) is not None:
            told(ServedRequest(session.peer, src.name, wanted.hex(), offset, length))

    # -- receiving -------------------------------------------------------------------------

    async def _run_receive(
        self,
        offer: IncomingOffer,
        dest: Path,
        progress: ProgressCallback | None,
        *,
        overwrite: bool,
        rename: bool,
        resume: bool = True,
    ) -> TransferResult:
        session = offer._session
        start = time.monotonic()
        size = offer.size
        file = offer.file
        sha = next((h.digest.hex() for h in file.hashes if h.algo == "sha-256"), None)
        # Kept after a failure when it can be completed: requested by its hash (resume), or
        # offered again by a sender that honours ranges and says how to verify the file.
        ranged = offers_ranges(file) and bool(file.hashes or file.hash_used)
        download = _Download(resumable=sha is not None or ranged)
        async with self._session_scope(session, download) as cleanup:
            kept: _Kept | None = None
            if resume and ranged:
                kept = await trio.to_thread.run_sync(
                    _find_kept, dest, session.peer, file, offer.envelope is not None
                )
            offset = 0
            if kept is not None:
                cleanup.callback(os.close, kept.lock)
                offset = kept.offset
                # The record names the sender's resource of this session from now on, and
                # the hash if this offer gives the first one.
                partial = dataclasses.replace(
                    kept.partial, peer=session.peer, sha256=kept.partial.sha256 or sha or ""
                )
                log.info(
                    "%s offered %s again: continuing the %d bytes kept in %s",
                    session.peer,
                    offer.name,
                    offset,
                    partial.part,
                )
            else:
                # e.g. an unwritable directory: still ends the session
                partial = download.partial = Partial.create(
                    dest, session.peer, offer.name, size, sha or "", offer.envelope
                )
                if (lock := lock_part(partial.part)) is not None:
                    cleanup.callback(os.close, lock)
            if session.jingle.state is SessionState.ENDED:
                await session.expect()  # the peer withdrew the offer: raises its reason
            secret = await self._open_security(offer._offer.security, session)
            c = offer._offer.content
            assert c.description is not None
            description = c.description
            if offset:
                # XEP-0234 6.1: the rest of the file, from the kept bytes on.
                description = build_description(dataclasses.replace(file, range=Range(offset)))
            established = await self._transports.accept_and_establish(
                session, c, description, cleanup
            )
            # From here on a failure keeps or discards the kept partial as any other (before,
            # e.g. an envelope this session could not open, says nothing of its data).
            download.partial = partial
            if download.resumable:
                partial.save()
            digests = await self._receive_into(
                session, established, partial, offset, size - offset, secret, progress, file
            )
            verified = await self._verify_hash(session, file, digests, encrypted=secret is not None)
            got = digests.plain["sha-256"].hex()
            if offset and not verified:
                raise IntegrityError(
                    f"the {offset} bytes kept from an earlier transfer cannot be verified: "
                    f"{session.peer} gave no hash of the file",
                    "media-error",
                )
            if offset and partial.sha256 and partial.sha256.lower() != got:
                raise IntegrityError(
                    "the file offered again is not the one the kept bytes came from", "media-error"
                )
            dest, taken = await _deliver_or_keep(partial, overwrite, rename)
            await trio.to_thread.run_sync(_discard_stale, partial, got)
            await session.terminate("success")
        return _result(
            "receive",
            session,
            name=offer.name,
            size=size,
            sha256=got,
            transport=established.transport,
            envelope=offer.envelope,
            secret=secret,
            started=start,
            path=dest,
            wire_bytes=size - offset + (secret.cipher.tag_size if secret else 0),
            verified=verified,
            choice=f"chosen by the sender {session.peer}"
            if secret
            else "the sender did not encrypt",
            taken=taken,
            reused=offset,
        )

    async def request_file(
        self,
        peer: JID | str,
        sha256: str,
        destination: str | os.PathLike[str],
        *,
        encrypt: str | None = "auto",
        cipher: str | None = None,
        transport: Transport = "auto",
        progress: ProgressCallback | None = None,
        overwrite: bool = False,
        rename: bool = False,
    ) -> TransferResult:
        """Request the file with this hex SHA-256 from ``peer`` (XEP-0234 file request; with
        JET, XEP-0391 4.2: we make the transport secret and the peer encrypts with it).

        ``destination`` is a directory (the peer's file name is used) or a file path. If the
        download is interrupted, the data so far is kept for :meth:`resume`. A taken name is
        never replaced unless ``overwrite``; with ``rename`` the file is stored under the next
        free ``name (1).ext`` instead of being refused.
        """
        try:
            want = bytes.fromhex(sha256)
        except ValueError:
            raise ValueError(f"not a hex SHA-256: {sha256!r}") from None
        if len(want) != 32:
            raise ValueError(f"not a hex SHA-256: {sha256!r}")
        return await self._request(
            peer,
            want,
            Path(destination),
            None,
            encrypt,
            cipher,
            transport,
            progress,
            overwrite,
            rename=rename and not overwrite,
        )

    async def resume(
        self,
        partial: Partial | str | os.PathLike[str],
        *,
        encrypt: str | None = "auto",
        cipher: str | None = None,
        transport: Transport = "auto",
        progress: ProgressCallback | None = None,
    ) -> TransferResult:
        """Resume an interrupted download (XEP-0391 4.3): request the rest of the file with a
        ``<range offset>`` and a fresh transport secret; the whole file is verified against its
        SHA-256 before it is renamed to its destination.

        The request goes to the sender's full JID recorded in the partial; if that resource is
        not available but another resource of the same account is (the sender reconnected
        under another name), to the best of those that support file transfer."""
        p = partial if isinstance(partial, Partial) else Partial.load(partial)
        if not p.hash_known:
            raise TransferError(
                f"{p.name} cannot be requested again: its sender announced the hash for after "
                "the data, which did not arrive; it is completed when the sender offers it again",
                "failed-application",
            )
        # A record is confined to its directory when loaded; check again (the caller may
        # have built it) and apply the no-overwrite rule of every download.
        p.check_confined()
        if await trio.Path(p.dest).exists():  # (not a symbolic link: checked)
            raise FileExistsError(f"{p.dest} already exists: resuming never replaces a file")
        peer = p.peer
        online = self.client.resources(peer.bare)
        if not peer.is_bare and peer not in online and online:
            peer = peer.bare
        return await self._request(
            peer, bytes.fromhex(p.sha256), p.dest, p, encrypt, cipher, transport, progress, False
        )

    async def _request(
        self,
        to: JID | str,
        want: bytes,
        dest: Path,
        partial: Partial | None,
        encrypt: str | None,
        cipher: str | None,
        transport: Transport,
        progress: ProgressCallback | None,
        overwrite: bool,
        *,
        rename: bool = False,
    ) -> TransferResult:
        peer = await self.resolve_peer(to)
        method, why = await self._choose_envelope(peer, encrypt)
        secret, security, why_cipher = await self._make_security(method, cipher, peer, REQUEST_NAME)
        choice = _describe_choice(method, secret, why, why_cipher)
        offset = partial.received if partial is not None else 0
        request = FileDescription(
            hashes=(Hash("sha-256", want),), range=Range(offset) if offset else None
        )
        session = self._open_session(self._registry.create(peer))
        start = time.monotonic()
        download = _Download(partial, resumable=True)
        async with self._session_scope(session, download) as cleanup:
            ours = await self._initiate(session, transport, request, security, request=True)
            with _within(self._timeout, f"{peer} did not answer our file request"):
                accept = await session.expect(JingleAction.SESSION_ACCEPT)
            theirs = session.machine.accepted(accept)
            file = accepted_file(accept)
            assert file.size is not None
            if partial is None:
                if await trio.Path(dest).is_dir():
                    dest = dest / safe_filename(file.name or want.hex())
                exists = await trio.to_thread.run_sync(os.path.lexists, dest)
                if exists and not (overwrite or rename):
                    raise FileExistsError(errno.EEXIST, f"{dest} already exists")
                partial = download.partial = Partial.create(
                    dest,
                    peer,
                    file.name or want.hex(),
                    file.size,
                    want.hex(),
                    method.namespace if method else None,
                )
            elif partial.size != file.size:
                raise IntegrityError("the peer's file has another size than the partial one")
            lock = await trio.to_thread.run_sync(lock_part, partial.part)
            if lock is None:
                raise TransferError(
                    f"{partial.name} is being received by another download", "failed-application"
                )
            cleanup.callback(os.close, lock)
            partial.save()
            established = await self._transports.establish(session, ours, theirs, cleanup)
            expected = FileDescription(size=file.size, hashes=(Hash("sha-256", want),))
            digests = await self._receive_into(
                session,
                established,
                partial,
                offset,
                file.size - offset,
                secret,
                progress,
                expected,
            )
            await self._verify_hash(session, expected, digests)
            dest, taken = await _deliver_or_keep(partial, overwrite, rename)
            await session.terminate("success")
        return _result(
            "receive",
            session,
            name=partial.name,
            size=partial.size,
            sha256=want.hex(),
            transport=established.transport,
            envelope=method.namespace if method else None,
            secret=secret,
            started=start,
            path=dest,
            wire_bytes=partial.size - offset + (secret.cipher.tag_size if secret else 0),
            verified=True,
            choice=choice,
            taken=taken,
            reused=offset,
        )

    async def _receive_into(
        self,
        session: SessionShell,
        established: Established,
        partial: Partial,
        offset: int,
        length: int,
        secret: TransportSecret | None,
        progress: ProgressCallback | None,
        file: FileDescription,
    ) -> Digests:
        """Receive ``length`` bytes into the partial file at ``offset``; return the hashes of
        the whole file (the kept prefix included)."""
        proxy = self._transports.proxy_name(established)
        return await receive_into(
            session, established, partial, offset, length, secret, progress, file, self._pace, proxy
        )

    async def _verify_hash(
        self, session: SessionShell, file: FileDescription, got: Digests, *, encrypted: bool = True
    ) -> bool:
        """Check the received data against the announced hashes; ``False`` if there were none
        we know (the GCM tag, when encrypted, still authenticated the data)."""
        hashes = file.hashes
        if not hashes and file.hash_used:
            # Announced for after the data (the sender hashed while sending): the file keeps
            # its temporary name until the <checksum/> came and matched.
            with trio.move_on_after(self._timeout):
                await session.wait_checksum()
            hashes = session.machine.checksum
            if not hashes and not encrypted:
                raise IntegrityError(
                    f"{session.peer} announced the file's hash for after the data but sent "
                    "none: the unencrypted file cannot be verified",
                    "media-error",
                )
        elif not hashes and session.machine.has_checksum:
            hashes = session.machine.checksum  # unannounced, already here (Conversations)
        known = [h for h in hashes if h.algo in got.plain]
        for h in known:
            if got.plain[h.algo] != h.digest and got.wire.get(h.algo) != h.digest:
                raise IntegrityError(
                    f"the {h.algo} hash of the received file does not match", "media-error"
                )
        return bool(known)


async def _deliver(partial: Partial, overwrite: bool, rename: bool) -> Path:
    """Give the verified download its name (never replacing anything unless ``overwrite``)."""
    part, dest = partial.part, partial.dest
    return await trio.to_thread.run_sync(
        lambda: deliver(part, dest, overwrite=overwrite, rename=rename)
    )


def _whole_file_progress(
    progress: ProgressCallback | None, offset: int, size: int
) -> ProgressCallback | None:
    """``progress`` counting the bytes the receiver kept as done: a resumed transfer's bar
    starts where the interrupted one stopped."""
    if progress is None or not offset:
        return progress
    return lambda done, _total: progress(offset + done, size)


def _keep_or_discard(partial: Partial, exc: BaseException, resumable: bool) -> None:
    """Keep an interrupted download for resuming, unless its data is known bad. A stream cut
    short is kept like a broken connection: the whole file's hash is checked on resume."""
    bad = any(
        isinstance(e, (IntegrityError, FileExistsError))
        or (isinstance(e, SecurityError) and not cut_short(e))
        for e in leaves(exc)
    )
    if resumable and not bad and partial.received > 0 and partial.sidecar.exists():
        log.info(
            "kept %d bytes of %s for resuming: %s", partial.received, partial.name, partial.sidecar
        )
        return
    partial.discard()


@dataclass(frozen=True, slots=True)
class _Kept:
    """A kept partial download a new offer continues, held (``lock``) for this download."""

    partial: Partial
    lock: int
    offset: int


def _kept_download(p: Partial) -> KeptDownload:
    return KeptDownload(p.peer, p.name, p.size, p.sha256, p.envelope is not None, p.received)


def _find_kept(dest: Path, peer: JID, file: FileDescription, encrypted: bool) -> _Kept | None:
    """The partial download kept for ``dest`` that a new offer of ``file`` from ``peer``
    continues (:func:`resume_offset` decides), the one with the most bytes if several may,
    held for this download; ``None`` if there is none. Only the receiver's own
    authenticated records in the target's directory are read. Blocking: run it in a thread."""
    target = Path(os.path.abspath(dest))
    scored: list[tuple[int, Partial]] = []
    for p in find_partials(target.parent):
        if Path(os.path.abspath(p.dest)) != target:
            continue
        if (offset := resume_offset(file, peer, encrypted, _kept_download(p))) > 0:
            scored.append((offset, p))
    for _, p in sorted(scored, key=lambda t: -t[0]):
        try:
            lock = lock_part(p.part)
        except (OSError, TransferError):  # gone, or replaced by something not ours
            continue
        if lock is None:
            continue  # another download appends to it now
        # Read again under the lock: it may have grown until its download let go of it.
        offset = resume_offset(file, peer, encrypted, _kept_download(p))
        if offset > 0:
            return _Kept(p, lock, offset)
        os.close(lock)
    return None


def _discard_stale(delivered: Partial, sha256: str) -> None:
    """``delivered`` got its name: discard the other partial downloads of the same file from
    the same sender kept for that target (one left by an earlier try that could not be
    continued: its sender did not do ranges, or ``resume=False``). Blocking."""
    target = Path(os.path.abspath(delivered.dest))
    with contextlib.suppress(OSError, TransferError):
        for p in find_partials(target.parent):
            if p.part == delivered.part or Path(os.path.abspath(p.dest)) != target:
                continue
            same = (delivered.peer.bare, delivered.name, delivered.size)
            if (p.peer.bare, p.name, p.size) != same:
                continue
            if p.sha256 and p.sha256.lower() != sha256:
                continue
            lock = lock_part(p.part)
            if lock is None:
                continue
            try:
                p.discard()
            finally:
                os.close(lock)


@dataclass(slots=True)
class _Download:
    """The partial file of a download, once it exists, for the session scope to keep (for
    resuming) or discard when the session fails."""

    partial: Partial | None = None
    resumable: bool = True


async def _deliver_or_keep(
    partial: Partial, overwrite: bool, rename: bool
) -> tuple[Path, NameTaken | None]:
    """Give the verified download its name; if the name was taken meanwhile, where it was
    kept instead and the :class:`NameTaken` to raise once the session ended well."""
    try:
        dest = await _deliver(partial, overwrite, rename)
    except NameTaken as exc:
        partial.discard()
        return exc.kept, exc
    partial.discard()
    return dest, None


def _result(
    direction: Literal["send", "receive"],
    session: SessionShell,
    *,
    name: str,
    size: int,
    sha256: str,
    transport: TransportName,
    envelope: str | None,
    secret: TransportSecret | None,
    started: float,
    path: Path,
    wire_bytes: int,
    verified: bool,
    choice: str,
    taken: NameTaken | None = None,
    reused: int = 0,
) -> TransferResult:
    """The result of a finished transfer, as the session's machine reports it (raised inside
    ``taken`` when the name was taken)."""
    result = session.machine.result(
        direction,
        name=name,
        size=size,
        sha256=sha256,
        transport=transport,
        envelope=envelope,
        cipher=secret.cipher.urn if secret else None,
        seconds=time.monotonic() - started,
        path=path,
        wire_bytes=wire_bytes,
        verified=verified,
        choice=choice,
        reused_bytes=reused,
    ).result
    if taken is not None:
        taken.result = result
        raise taken
    return result


class _Unset:
    pass


_UNSET: Final = _Unset()


@asynccontextmanager
async def open_file_transfer(
    client: Client,
    *,
    plugins: PluginManager | None = None,
    allow_stub_envelope: bool = False,
    extra_plugins: Iterable[object] = (),
    direct_addresses: DirectAddresses = "auto",
    direct_host: str | _Unset | None = _UNSET,
    use_proxies: bool = True,
    ibb_block_size: int = 16384,
    ibb_window: int = 8,
    cipher_preference: Sequence[str] = (),
    data_dir: str | os.PathLike[str] | None = None,
    negotiation_timeout: float = 30.0,
    stall_timeout: float | None = 60.0,
    max_pending_offers: int = 16,
    max_offers_per_peer: int = 4,
    max_transfers_per_peer: int = 4,
    offer_timeout: float | None = 120.0,
    min_throughput: float | None = 1024.0,
    throughput_window: float = 60.0,
    accept_timeout: float | None = DEFAULT_ACCEPT_TIMEOUT,
    webrtc: bool = False,
    ice_servers: Sequence[IceServer] = (),
    relay_only: bool = False,
    webrtc_timeout: float = 30.0,
) -> AsyncIterator[FileTransfer]:
    """Jingle file transfer on ``client`` for the duration of the ``async with`` block.

    Plugins (envelope methods, ciphers) come from the ``jet_trio`` entry points plus
    ``extra_plugins``, or from ``plugins``. ``direct_addresses`` are the addresses offered as
    direct SOCKS5 candidates: ``"auto"`` (every usable address of every interface that is up,
    IPv4 and IPv6, loopback only when there is nothing else), a list of addresses or host names
    (best first; an ``"auto"`` entry adds the gathered ones), or ``None`` (offer none).
    ``direct_host`` is its deprecated one-address form. ``use_proxies`` offers the server's
    SOCKS5 proxies.
    In-band transfers use blocks of ``ibb_block_size`` bytes (the peer may lower it) with up to
    ``ibb_window`` blocks awaiting acknowledgement. ``cipher_preference`` lists cipher URNs to
    use when the peer supports them (e.g. a plugin's ChaCha20-Poly1305); otherwise AES-256-GCM
    (or the envelope method's preferred cipher) is used. ``data_dir`` is where plugins keep
    their state (keys, sessions), each in a subdirectory of its own.

    ``negotiation_timeout`` bounds every wait for the peer's answer while a session is set up
    and ended; ``stall_timeout`` ends a transfer during which no data moved for that long (a
    peer that stopped reading or sending; ``None``: wait forever), and ``min_throughput``
    (bytes per second, ``None``: no minimum) one whose data moved slower than that over any
    ``throughput_window`` seconds (a peer dripping a byte now and then). ``accept_timeout``
    bounds how long :meth:`~FileTransfer.send_file` waits for the receiver to accept or decline
    (a person deciding: 300 s by default; ``None``: wait forever). All raise
    :class:`TransferTimeout` and end the session with the reason ``timeout``.

    What one contact may hold of a receiver is bounded: at most ``max_pending_offers`` offers
    wait for the application (from all contacts), at most ``max_offers_per_peer`` unanswered
    offers and ``max_transfers_per_peer`` running transfers (received files and served
    requests) per contact (bare JID); more are refused with ``busy``. An offer the
    application has not taken within ``offer_timeout`` seconds is refused with ``timeout``.
    When the block ends, offers still unanswered are rejected (``decline``).

    ``webrtc=True`` enables the WebRTC data-channel transport (Conversations' dialect; needs
    the extra ``jet-trio[webrtc]``, otherwise it stays off): it is advertised, accepted in
    offers, and offered first to peers that advertise it (then S5B, then IBB). Its STUN/TURN
    servers are ``ice_servers`` plus those the account's server announces (XEP-0215).
    ``relay_only`` offers relayed candidates only, no S5B in sessions this side starts and no
    direct S5B candidate when answering an S5B offer (no address of ours reaches the peer; the
    data channel then needs a TURN server).
    ``webrtc_timeout`` bounds the connection (ICE, DTLS, the channels), after which the
    session falls back to IBB; a DTLS certificate other than the announced one ends it
    with :class:`EncryptionFailed` instead (a man in the middle). It is off by default: aiortc's
    data channel moves 2-3 MB/s where S5B moves 200 MB/s, so it is for peers that nothing
    else connects (see the protocol notes).
    """
    if plugins is None:
        config = PluginConfig(
            allow_stub_envelope=allow_stub_envelope,
            account=client.jid,
            data_dir=None if data_dir is None else Path(data_dir),
            client=client,
        )
        plugins = PluginManager(config, plugins=extra_plugins)
    if not isinstance(direct_host, _Unset):
        warnings.warn(
            "open_file_transfer(direct_host=...) is deprecated: use direct_addresses",
            DeprecationWarning,
            stacklevel=3,
        )
        direct_addresses = None if direct_host is None else [direct_host]
    with unwrapped_errors():
        async with (
            open_direct_candidates(direct_addresses) as direct,
            trio.open_nursery() as nursery,
        ):
            ft = FileTransfer(
                client,
                nursery,
                plugins,
                direct,
                use_proxies=use_proxies,
                ibb_block_size=ibb_block_size,
                ibb_window=ibb_window,
                cipher_preference=cipher_preference,
                negotiation_timeout=negotiation_timeout,
                stall_timeout=stall_timeout,
                max_pending_offers=max_pending_offers,
                max_offers_per_peer=max_offers_per_peer,
                max_transfers_per_peer=max_transfers_per_peer,
                offer_timeout=offer_timeout,
                min_throughput=min_throughput,
                throughput_window=throughput_window,
                accept_timeout=accept_timeout,
                webrtc=WebRTCSettings(
                    ice_servers=tuple(ice_servers),
                    relay_only=relay_only,
                    connect_timeout=webrtc_timeout,
                )
                if webrtc
                else None,
                relay_only=relay_only,
            )
            ft._switchboard.install()
            try:
                # E.g. publish keys before we advertise support; a method whose start() fails
                # with a bug of its plugin is unloaded (see PluginManager.load_errors).
                await plugins._start_envelopes()
                await client.add_features(*ft.features)
                yield ft
            finally:
                ft._switchboard.uninstall()  # no new offers from here on
                await ft._switchboard.reject_unanswered()
                nursery.cancel_scope.cancel()
