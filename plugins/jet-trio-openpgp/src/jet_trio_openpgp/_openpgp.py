"""The OpenPGP service (keys, PEP, trust) and its JET envelope method."""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from os import PathLike
from pathlib import Path

import pysequoia
import trio
from jet_trio import JID, Client, PubSubEvent, SecurityError, StanzaError
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeMethod,
    KeyEvent,
    KeyNotice,
    KeyRecord,
    KeyStore,
    KeyTrust,
    PluginConfig,
    TransportSecret,
    Trust,
    hookimpl,
)
from lxml import etree

from ._errors import (
    MalformedEnvelope,
    NoPublicKey,
    OpenPGPError,
    PeerNotSupported,
    UntrustedKey,
    WrongSigner,
)
from ._keys import TRUST_FILE, KeyState, OwnKey, TrustStore, load_or_create_key
from ._pep import (
    PUBLIC_KEYS_NODE,
    PUBLISH_OPTIONS,
    KeyMetadata,
    build_key_list,
    build_pubkey,
    key_node,
    parse_key_list,
    parse_pubkey,
)
from ._signcrypt import (
    DEFAULT_MAX_CLOCK_SKEW,
    FEATURE,
    NS,
    ReplayCache,
    build_openpgp,
    build_signcrypt,
    check_signcrypt,
    open_message,
    parse_openpgp,
    parse_signcrypt,
    seal_message,
)

__all__ = ["KeyInfo", "OpenPGP", "OpenPGPEnvelope", "TrustPolicy", "open_openpgp"]

logger = logging.getLogger("jet_trio_openpgp")

#: Stanza error conditions meaning "this account has no such (readable) node".
_NO_NODE = frozenset({"item-not-found", "forbidden", "not-authorized", "feature-not-implemented"})


class TrustPolicy(enum.Enum):
    """Which peer keys are used without the user having verified them."""

    TOFU = "tofu"
    """Trust on first use: when no key of an account is known yet, the keys it publishes are
    accepted (and remembered); a key that appears later must be verified."""
    MANUAL = "manual"
    """Only keys whose fingerprint the user verified (:meth:`OpenPGP.verify`) are used."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key of a peer (or ours): fingerprint, trust decision, and whether it is published now."""

    jid: JID
    fingerprint: str
    state: KeyState | None
    published: bool

    @property
    def display(self) -> str:
        """The fingerprint in groups of four, for comparing by eye."""
        return format_fingerprint(self.fingerprint)


def format_fingerprint(fingerprint: str) -> str:
    """``ABCD EF01 ...``: upper-case hex in groups of four."""
    f = fingerprint.upper()
    return " ".join(f[i : i + 4] for i in range(0, len(f), 4))


class OpenPGP:
    """OpenPGP for one account: our key pair, peers' published keys, trust, and the envelope.

    Usually made by :func:`open_openpgp`. Constructing does no I/O; :meth:`start` loads (or
    makes) our key in ``directory``, follows peers' key lists through PEP notifications and
    publishes our key. The object is also a jet-trio plugin: pass it in
    ``open_file_transfer(client, extra_plugins=[pgp])``.
    """

    def __init__(
        self,
        client: Client,
        directory: str | PathLike[str],
        *,
        passphrase: str | None = None,
        policy: TrustPolicy = TrustPolicy.TOFU,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        publish: bool = True,
        clock: Callable[[], datetime] | None = None,
        notify: Callable[[KeyNotice], None] | None = None,
    ) -> None:
        self.client = client
        self.notify = notify
        """Shows the user a key trusted on first use (a :class:`~jet_trio.plugin.KeyNotice`)."""
        self.directory = Path(directory)
        self.policy = policy
        self.max_clock_skew = max_clock_skew
        self.envelope = OpenPGPEnvelope(self)
        self._passphrase = passphrase
        self._publish = publish
        self._clock = clock or (lambda: datetime.now(UTC))
        self._key: OwnKey | None = None
        self._trust = TrustStore(None)
        self._replay = ReplayCache(max_clock_skew)
        self._announced: dict[JID, list[str]] = {}
        self._certs: dict[JID, dict[str, pysequoia.Cert]] = {}
        self._start_lock = trio.Lock()
        self._unfollow: Callable[[], None] | None = None

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load or make our key, follow key lists, publish our key. Idempotent."""
        async with self._start_lock:
            if self._key is not None:
                return
            key = await trio.to_thread.run_sync(
                load_or_create_key, self.directory, self.client.jid, self._passphrase
            )
            self._trust = await trio.to_thread.run_sync(TrustStore, self.directory / TRUST_FILE)
            if self._unfollow is None:  # not yet, or a start that was cancelled half-way
                self._unfollow = await self.client.on_pep(PUBLIC_KEYS_NODE, self._on_key_list)
            if self._publish:
                await self._publish_key(key)
            self._key = key
            logger.info("OpenPGP key of %s: %s", self.client.jid.bare, key.fingerprint)

    async def aclose(self) -> None:
        """Stop following key lists (the published key stays published)."""
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None

    def _require_started(self) -> OwnKey:
        if self._key is None:
            raise OpenPGPError("the OpenPGP service is not started (use open_openpgp)")
        return self._key

    @property
    def key(self) -> OwnKey:
        """Our key pair; only after :meth:`start`."""
        return self._require_started()

    @property
    def fingerprint(self) -> str:
        """Our key's fingerprint (upper-case hex)."""
        return self.key.fingerprint

    # -- the plugin hook ------------------------------------------------------------------------

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        """This service's envelope method (a jet-trio hook)."""
        return [self.envelope]

    # -- PEP ------------------------------------------------------------------------------------

    async def _publish_key(self, key: OwnKey) -> None:
        own = self.client.jid.bare
        await self.client.publish(
            key_node(key.fingerprint),
            build_pubkey(bytes(key.cert)),
            item_id=key.created,
            options=PUBLISH_OPTIONS,
        )
        # Keep the keys other clients of the account announced (XEP-0373: one list per account).
        listed = [k for k in await self._fetch_key_list(own) if k.fingerprint != key.fingerprint]
        listed.insert(0, KeyMetadata(key.fingerprint, key.created))
        await self.client.publish(
            PUBLIC_KEYS_NODE, build_key_list(listed), item_id="current", options=PUBLISH_OPTIONS
        )

    async def _fetch_key_list(self, jid: JID) -> list[KeyMetadata]:
        try:
            items = await self.client.get_items(jid, PUBLIC_KEYS_NODE, max_items=1)
        except StanzaError as exc:
            if exc.condition in _NO_NODE:
                return []
            raise NoPublicKey(f"cannot read the OpenPGP key list of {jid}: {exc}") from None
        for item in reversed(items):
            try:
                return parse_key_list(item.payload)
            except MalformedEnvelope:
                logger.warning("%s published a malformed OpenPGP key list", jid)
        return []

    def _on_key_list(self, publisher: JID, event: PubSubEvent) -> None:
        """PEP notification of ``publisher``'s key list: note the fingerprints, drop stale keys."""
        for item in reversed(event.items):
            try:
                fprs = [k.fingerprint for k in parse_key_list(item.payload)]
            except MalformedEnvelope:
                continue
            self._announced[publisher.bare] = fprs
            cached = self._certs.get(publisher.bare, {})
            self._certs[publisher.bare] = {f: c for f, c in cached.items() if f in fprs}
            return

    async def _fetch_cert(self, jid: JID, fingerprint: str) -> pysequoia.Cert | None:
        try:
            items = await self.client.get_items(jid, key_node(fingerprint), max_items=1)
        except StanzaError as exc:
            if exc.condition in _NO_NODE:
                logger.warning(
                    "%s announces OpenPGP key %s but did not publish it", jid, fingerprint
                )
                return None
            raise NoPublicKey(f"cannot read OpenPGP key {fingerprint} of {jid}: {exc}") from None
        for item in reversed(items):
            try:
                cert = pysequoia.Cert.from_bytes(parse_pubkey(item.payload, str(jid)))
            except (NoPublicKey, RuntimeError, ValueError) as exc:
                logger.warning("%s published an unusable OpenPGP key %s: %s", jid, fingerprint, exc)
                continue
            problem = _cert_problem(cert, jid, fingerprint)
            if problem:
                logger.warning("ignoring OpenPGP key %s of %s: %s", fingerprint, jid, problem)
                continue
            return cert
        return None

    async def published_keys(
        self, jid: JID | str, *, refresh: bool = False
    ) -> dict[str, pysequoia.Cert]:
        """``jid``'s published, valid public keys by fingerprint (from PEP, cached).

        The key list is read again with ``refresh`` (or when none was seen yet); certificates
        are fetched once per fingerprint and must carry that fingerprint and the user ID
        ``xmpp:<bare JID>``.
        """
        bare = JID(jid).bare
        if refresh or bare not in self._announced:
            self._announced[bare] = [k.fingerprint for k in await self._fetch_key_list(bare)]
        cached = self._certs.setdefault(bare, {})
        for fpr in self._announced[bare]:
            if fpr not in cached:
                cert = await self._fetch_cert(bare, fpr)
                if cert is not None:
                    cached[fpr] = cert
        return {f: cached[f] for f in self._announced[bare] if f in cached}

    # -- trust ------------------------------------------------------------------------------------

    def _states(self, jid: JID, fingerprints: list[str]) -> dict[str, KeyState | None]:
        """Trust of each key, applying trust on first use when the policy says so."""
        bare = jid.bare
        if self.policy is TrustPolicy.TOFU and fingerprints and not self._trust.decisions(bare):
            for fpr in fingerprints:
                self._trust.set(bare, fpr, KeyState.TOFU)
                logger.info("trusting OpenPGP key %s of %s on first use", fpr, bare)
                if self.notify is not None:
                    record = KeyRecord(bare, format_fingerprint(fpr), KeyTrust.TOFU)
                    self.notify(KeyNotice(KeyEvent.FIRST_USE, "openpgp", record))
        return {fpr: self._trust.get(bare, fpr) for fpr in fingerprints}

    async def fingerprints(self, jid: JID | str) -> list[KeyInfo]:
        """The keys ``jid`` publishes now and the ones decided on before, with their trust."""
        bare = JID(jid).bare
        if bare == self.client.jid.bare and self._key is not None:
            own = self._key.fingerprint
            published = await self.published_keys(bare, refresh=True)
            fprs = [own, *[f for f in published if f != own]]
            return [
                KeyInfo(
                    bare,
                    f,
                    KeyState.VERIFIED if f == own else self._trust.get(bare, f),
                    f in published,
                )
                for f in fprs
            ]
        published = await self.published_keys(bare, refresh=True)
        decided = self._trust.decisions(bare)
        fprs = list(published) + [f for f in decided if f not in published]
        return [KeyInfo(bare, f, decided.get(f), f in published) for f in fprs]

    def verify(self, jid: JID | str, fingerprint: str) -> None:
        """Mark ``jid``'s key ``fingerprint`` as verified by the user (spaces are ignored)."""
        self._require_started()  # decisions go to the trust store that start() loads
        self._trust.set(JID(jid).bare, _clean(fingerprint), KeyState.VERIFIED)

    def distrust(self, jid: JID | str, fingerprint: str) -> None:
        """Refuse ``jid``'s key ``fingerprint`` from now on."""
        self._require_started()  # decisions go to the trust store that start() loads
        self._trust.set(JID(jid).bare, _clean(fingerprint), KeyState.DISTRUSTED)

    def trust_of(self, jid: JID | str, fingerprint: str) -> KeyState | None:
        """The decision about a key, ``None`` if undecided."""
        return self._trust.get(JID(jid).bare, _clean(fingerprint))

    # -- the envelope -----------------------------------------------------------------------------

    async def seal(self, secret: TransportSecret, peer: JID) -> etree._Element:
        """The ``<openpgp>`` envelope of ``secret`` for ``peer`` (see :class:`OpenPGPEnvelope`)."""
        await self.start()
        key = self.key
        bare = peer.bare
        if not peer.is_bare and not (await self.client.features_of(peer)).has(FEATURE):
            raise PeerNotSupported(
                f"{peer} does not advertise JET with OpenPGP ({FEATURE}): it could not open "
                "the envelope; send with another envelope method"
            )
        published = await self.published_keys(bare, refresh=True)
        if not published:
            raise NoPublicKey(
                f"{bare} has published no OpenPGP key (PEP node {PUBLIC_KEYS_NODE}): "
                "they must enable OpenPGP first, or send with another envelope method"
            )
        states = self._states(bare, list(published))
        usable = [
            published[f] for f, s in states.items() if s in (KeyState.TOFU, KeyState.VERIFIED)
        ]
        if not usable:
            listed = ", ".join(
                f"{f} ({s.value if s else 'not verified'})" for f, s in states.items()
            )
            raise UntrustedKey(
                f"no trusted OpenPGP key of {bare} to encrypt to: {listed}",
                str(bare),
                next(iter(states)),
                _records(bare, states),
            )
        plaintext = build_signcrypt(secret, bare, self._clock())
        message = seal_message(plaintext, [*usable, key.cert], key.secret)
        return build_openpgp(message)

    async def open(self, element: etree._Element, sender: JID, cipher: Cipher) -> DecryptedEnvelope:
        """Open and check an ``<openpgp>`` envelope (see :class:`OpenPGPEnvelope`)."""
        await self.start()
        key = self.key
        bare = sender.bare
        message = parse_openpgp(element)
        published = await self.published_keys(bare)
        refreshed = False
        if not published:
            published, refreshed = await self.published_keys(bare, refresh=True), True
        if not published:
            raise NoPublicKey(
                f"{bare} has published no OpenPGP key (PEP node {PUBLIC_KEYS_NODE}): "
                "the envelope cannot be authenticated, refused"
            )
        try:
            plaintext, signer = open_message(message, key.secret, list(published.values()), sender)
        except WrongSigner:
            if refreshed:
                raise
            # Maybe a key published since we last looked: read the list again, once.
            published = await self.published_keys(bare, refresh=True)
            plaintext, signer = open_message(message, key.secret, list(published.values()), sender)
        state = self._states(bare, list(published))[signer]
        if state is KeyState.DISTRUSTED:
            raise UntrustedKey(
                f"the transfer from {bare} is signed with OpenPGP key {signer}, which you "
                "distrusted: refused",
                str(bare),
                signer,
                _records(bare, {signer: state}),
            )
        if state is None:
            raise UntrustedKey(
                f"the transfer from {bare} is signed with OpenPGP key {format_fingerprint(signer)}"
                ", which is not verified (a new key, or manual trust policy): refused; once "
                "verified, ask them to send again",
                str(bare),
                signer,
                _records(bare, {signer: state}),
            )
        now = self._clock()
        sc = parse_signcrypt(plaintext)
        check_signcrypt(sc, self.client.jid, now, self.max_clock_skew, cipher)
        try:
            secret = TransportSecret.from_bytes(sc.secret, cipher)
        except SecurityError as exc:
            raise MalformedEnvelope(
                f"the OpenPGP envelope holds an unusable secret: {exc}"
            ) from None
        self._replay.check_and_add(plaintext, sc.stamp, now)
        return DecryptedEnvelope(
            secret=secret,
            sender_identity=bare,
            trust=Trust.VERIFIED if state is KeyState.VERIFIED else Trust.UNDECIDED,
            detail=f"OpenPGP key {format_fingerprint(signer)} ({state.value})",
        )


_KEY_TRUST = {
    KeyState.TOFU: KeyTrust.TOFU,
    KeyState.VERIFIED: KeyTrust.VERIFIED,
    KeyState.DISTRUSTED: KeyTrust.DISTRUSTED,
}


def _records(jid: JID, states: dict[str, KeyState | None]) -> Sequence[KeyRecord]:
    return [
        KeyRecord(jid, format_fingerprint(f), _KEY_TRUST[s] if s else KeyTrust.UNDECIDED)
        for f, s in states.items()
    ]


class OpenPGPKeys(KeyStore):
    """Our key and peers' keys with the trust decisions, for ``jet-trio fingerprints`` and
    ``jet-trio trust``."""

    name = "openpgp"
    title = "OpenPGP keys"

    def __init__(self, service: OpenPGP) -> None:
        self._service = service

    async def list_keys(self, jid: JID) -> list[KeyRecord]:
        service = self._service
        await service.start()
        mine = service.fingerprint if jid.bare == service.client.jid.bare else None
        return [
            KeyRecord(
                k.jid,
                k.display,
                KeyTrust.OWN
                if k.fingerprint == mine
                else (_KEY_TRUST[k.state] if k.state else KeyTrust.UNDECIDED),
                None,
                k.published,
            )
            for k in await service.fingerprints(jid)
        ]

    async def set_trust(self, key: KeyRecord, trusted: bool) -> KeyRecord:
        service = self._service
        if trusted:
            service.verify(key.jid, key.fingerprint)
        else:
            service.distrust(key.jid, key.fingerprint)
        state = service.trust_of(key.jid, key.fingerprint)
        trust = _KEY_TRUST[state] if state else KeyTrust.UNDECIDED
        return KeyRecord(key.jid, key.fingerprint, trust, None, key.active)


def _clean(fingerprint: str) -> str:
    cleaned = "".join(fingerprint.split()).upper()
    if len(cleaned) != 40 or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise ValueError(f"not an OpenPGP v4 fingerprint (40 hex digits): {fingerprint!r}")
    return cleaned


def _cert_problem(cert: pysequoia.Cert, jid: JID, fingerprint: str) -> str:
    if cert.fingerprint.upper() != fingerprint.upper():
        return f"the key in the node has fingerprint {cert.fingerprint.upper()}"
    if cert.is_revoked:
        return "the key is revoked"
    expiration = cert.expiration
    if expiration is not None and expiration <= datetime.now(UTC):
        return "the key has expired"
    uids = {str(u) for u in cert.user_ids}
    if f"xmpp:{jid.bare}" not in uids:
        return f"the key has no user ID xmpp:{jid.bare} ({', '.join(sorted(uids)) or 'none'})"
    return ""


class OpenPGPEnvelope(EnvelopeMethod):
    """JET envelope method ``urn:xmpp:openpgp:0``: an XEP-0373 ``<signcrypt>`` with the secret.

    :meth:`encrypt` signs with our key and encrypts to the peer's trusted keys and our own.
    :meth:`decrypt` checks, in order: the message decrypts with our key
    (:class:`UndecryptableEnvelope`); it is signed by a key the iq ``from`` published
    (:class:`WrongSigner`, :class:`NoPublicKey`); that key is trusted under the policy
    (:class:`UntrustedKey`); the ``<to>`` is us (:class:`WrongRecipient`); the ``<time>`` is
    within the window (:class:`StaleEnvelope`); it was not accepted before
    (:class:`ReplayedEnvelope`); the cipher matches (:class:`MalformedEnvelope`).
    """

    namespace = NS
    features = (FEATURE,)
    short_name = "openpgp"
    install_hint = "pip install jet-trio-openpgp"

    def __init__(self, service: OpenPGP) -> None:
        self.service = service
        self.key_store = OpenPGPKeys(service)

    async def start(self) -> None:
        """Publish our key before support is advertised (called by open_file_transfer)."""
        await self.service.start()

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        return await self.service.seal(secret, peer)

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        return await self.service.open(element, sender, cipher)


@asynccontextmanager
async def open_openpgp(
    client: Client,
    data_dir: str | PathLike[str],
    *,
    passphrase: str | None = None,
    policy: TrustPolicy = TrustPolicy.TOFU,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    publish: bool = True,
) -> AsyncIterator[OpenPGP]:
    """OpenPGP for ``client`` while the block runs; keys live in ``data_dir / "openpgp"``.

    On entry our key is loaded (made on first use; encrypted with ``passphrase`` if given),
    peers' key lists are followed, and our key and key list are published (``publish``).
    Pass the result to ``open_file_transfer(client, extra_plugins=[pgp])``.
    """
    pgp = OpenPGP(
        client,
        Path(data_dir) / "openpgp",
        passphrase=passphrase,
        policy=policy,
        max_clock_skew=max_clock_skew,
        publish=publish,
    )
    try:
        await pgp.start()
        yield pgp
    finally:
        await pgp.aclose()
