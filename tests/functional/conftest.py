"""Fixtures and helpers for end-to-end file transfers on the in-process server (fast).

``net`` (function)
    A :class:`Net`: a running in-process XMPP server (STARTTLS required, certificate from a test
    CA) with accounts alice, bob and carol, and a XEP-0065 proxy reachable through a relay the
    test can tamper with (``net.relay``). ``net.pair(...)`` connects alice (sender) and bob
    (receiver) and opens a file transfer service on each.

Helpers: :func:`make_file`, :func:`run_transfer` (runs both sides and reports each side's
outcome separately), :func:`assert_nothing_stored`, :class:`Relay` (a man-in-the-middle between
the clients and the proxy), the test plugins :class:`TestEnvelope` and :class:`CorruptingCipher`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from lxml import etree

import jet_trio
from jet_trio import JID, open_client
from jet_trio._plugins.builtin_ciphers import AESGCMCipher
from jet_trio._transfer.files import find_partials
from jet_trio._transfer.service import FileTransfer, IncomingOffer, open_file_transfer
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeError,
    EnvelopeMethod,
    PluginConfig,
    StreamDecryptor,
    StreamEncryptor,
    TransportSecret,
    Trust,
    hookimpl,
)
from jet_trio.testing import Server, make_tls, serve, serve_proxy65

PASSWORDS: Final = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

#: Bytes of the SOCKS5 handshake a client sends before data (greeting 3, CONNECT 5+40+2).
SOCKS5_CLIENT_HEADER: Final = 3 + 5 + 40 + 2


# -- a man-in-the-middle between the clients and the proxy ----------------------------------------

Mangle = Callable[[bytes, int], bytes]
"""``mangle(data, offset)``: what to forward for ``data`` found at ``offset`` of the payload
(the bytes after the SOCKS5 handshake) a client sent towards the proxy."""


@dataclass
class Relay:
    """A TCP relay on 127.0.0.1 in front of the proxy65, announced to clients as the proxy.

    Bytes a client sends after its SOCKS5 handshake pass through :attr:`mangle` (``None``: as is).
    With :attr:`cut_after` set, a client's payload is forwarded only up to that many bytes (once
    it sent some), then its connection to the proxy is closed (a truncation). With
    :attr:`hold_tail` set, the last that many bytes a client sent are held back until it
    closes its connection or half-closes it (what Prosody 0.12's proxy65 can do, see
    docs/protocol.rst).
    :attr:`payload_seen` and :attr:`payload_forwarded` count payload bytes over all clients.
    """

    upstream_host: str
    upstream_port: int
    jid: JID
    activate_upstream: Callable[[str, JID, JID], object]
    host: str = "127.0.0.1"
    port: int = 0
    mangle: Mangle | None = None
    cut_after: int | None = None
    hold_tail: int = 0
    payload_seen: int = 0
    payload_forwarded: int = 0
    data_started: trio.Event = field(default_factory=trio.Event)

    def activate(self, sid: str, requester: JID, target: JID) -> object:
        return self.activate_upstream(sid, requester, target)

    async def handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(self.upstream_host, self.upstream_port)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        async with client, upstream, trio.open_nursery() as n:
            n.start_soon(self._client_to_proxy, client, upstream)
            n.start_soon(_copy, upstream, client)

    async def _client_to_proxy(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        offset = -SOCKS5_CLIENT_HEADER  # position in this connection's payload
        forwarded = 0
        cut = False
        held = b""
        try:
            while data := await src.receive_some(65536):
                head = b""
                if offset < 0:
                    head, data = data[:-offset], data[-offset:]
                    offset += len(head)
                if data:
                    self.payload_seen += len(data)
                    self.data_started.set()
                    out = self.mangle(data, offset) if self.mangle else data
                    offset += len(data)
                    if self.cut_after is not None:
                        out = out[: max(0, self.cut_after - forwarded)]
                        cut = forwarded + len(out) >= self.cut_after
                    if self.hold_tail:
                        out = held + out
                        out, held = out[: -self.hold_tail], out[-self.hold_tail :]
                    forwarded += len(out)
                    self.payload_forwarded += len(out)
                    data = out
                if head or data:
                    await dst.send_all(head + data)
                if cut:
                    break
            if not cut:
                if held:
                    await dst.send_all(held)
                    forwarded += len(held)
                    self.payload_forwarded += len(held)
                await dst.send_eof()
                return
            # Truncate: the proxy side ends here; whatever the client still sends is dropped.
            dst.socket.close()
            while await src.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            dst.socket.close()


async def _copy(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    try:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
        await dst.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


def flip_at(position: int) -> Mangle:
    """A mangler flipping all bits of the payload byte at ``position``."""

    def mangle(data: bytes, offset: int) -> bytes:
        if offset <= position < offset + len(data):
            i = position - offset
            return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        return data

    return mangle


# -- test plugins --------------------------------------------------------------------------------

TEST_ENVELOPE_NS: Final = "urn:example:jet-trio:test-envelope"
TEST_ENVELOPE_FEATURE: Final = TEST_ENVELOPE_NS + ":feature"


class TestEnvelope(EnvelopeMethod):
    """A test envelope: key and IV in clear, plus a sender identity the envelope asserts.

    Knobs for the sending side: ``claim`` (the identity written into the envelope; default our
    own bare JID) and ``iv_override`` (an IV sent instead of the real one).
    """

    __test__ = False
    namespace = TEST_ENVELOPE_NS
    features = (TEST_ENVELOPE_FEATURE,)

    def __init__(self, me: JID | None = None) -> None:
        self.me = me
        self.claim: JID | None = None
        self.iv_override: bytes | None = None
        self.opened = 0
        self.sent: list[TransportSecret] = []

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        self.sent.append(secret)
        claim = self.claim or (self.me.bare if self.me else JID("nobody@localhost"))
        env = etree.Element(f"{{{TEST_ENVELOPE_NS}}}envelope", nsmap={None: TEST_ENVELOPE_NS})  # type: ignore[dict-item]
        env.set("from", str(claim))
        key = etree.SubElement(env, f"{{{TEST_ENVELOPE_NS}}}key")
        key.text = base64.b64encode(secret.key).decode()
        iv = etree.SubElement(env, f"{{{TEST_ENVELOPE_NS}}}iv")
        iv.text = base64.b64encode(
            self.iv_override if self.iv_override is not None else secret.iv
        ).decode()
        return env

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        self.opened += 1
        key = element.findtext(f"{{{TEST_ENVELOPE_NS}}}key")
        iv = element.findtext(f"{{{TEST_ENVELOPE_NS}}}iv")
        claimed = element.get("from")
        if key is None or iv is None or claimed is None:
            raise EnvelopeError("test envelope: incomplete")
        secret = TransportSecret.from_bytes(base64.b64decode(key), cipher, iv=base64.b64decode(iv))
        return DecryptedEnvelope(secret, JID(claimed), Trust.VERIFIED, "test envelope")


@dataclass
class TestEnvelopePlugin:
    """Registers one :class:`TestEnvelope` instance (keep a reference to steer it)."""

    __test__ = False
    envelope: TestEnvelope

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        if self.envelope.me is None and config.account is not None:
            self.envelope.me = config.account
        return [self.envelope]


TEST_CIPHER_URN: Final = "urn:example:jet-trio:aes-256-gcm-test"


class CorruptingCipher(AESGCMCipher):
    """AES-256-GCM under a test URN; the encryptor flips the ciphertext byte at ``flip_ct``
    and/or the tag byte at ``flip_tag`` (``None``: no corruption, a correct cipher)."""

    def __init__(self, urn: str = TEST_CIPHER_URN) -> None:
        super().__init__(32, urn)
        self.aliases = ()
        self.flip_ct: int | None = None
        self.flip_tag: int | None = None

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        return _CorruptingEncryptor(super().new_encryptor(key, iv), self)

    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        return super().new_decryptor(key, iv)


class _CorruptingEncryptor:
    def __init__(self, inner: StreamEncryptor, cipher: CorruptingCipher) -> None:
        self._inner = inner
        self._cipher = cipher
        self._done = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        out = self._inner.update(data)
        pos, start = self._cipher.flip_ct, self._done
        self._done += len(out)
        if pos is not None and start <= pos < self._done:
            i = pos - start
            out = out[:i] + bytes([out[i] ^ 0x01]) + out[i + 1 :]
        return out

    def finalize(self) -> bytes:
        tag = self._inner.finalize()
        i = self._cipher.flip_tag
        if i is not None:
            tag = tag[:i] + bytes([tag[i] ^ 0x80]) + tag[i + 1 :]
        return tag


@dataclass
class CipherPlugin:
    __test__ = False
    cipher: Cipher

    @hookimpl
    def jet_register_ciphers(self) -> list[Cipher]:
        return [self.cipher]


# -- senders like Dino ---------------------------------------------------------------------------


class NoHalfClose(trio.abc.SendStream):
    """A send stream whose end of file is never sent: the connection stays open until the
    session ends and the sender's cleanup closes it (what Dino does)."""

    def __init__(self, inner: trio.abc.SendStream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        pass  # the cleanup of the session closes the socket, after session-terminate


def dino_like_sender(ft: FileTransfer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ft`` sends like Dino: no end of file after the last byte (the stream is not a
    ``SocketStream`` any more, so ``_send_data`` closes it instead, which is a no-op); the
    connection is closed when the session has ended."""
    original = ft._send_data

    async def send_data(session: Any, established: Any, *args: Any, **kwargs: Any) -> int:
        held = dataclasses.replace(established, stream=NoHalfClose(established.stream))
        return await original(session, held, *args, **kwargs)

    monkeypatch.setattr(ft, "_send_data", send_data)


def never_closing_sender(ft: FileTransfer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ft`` keeps its connection open even after the receiver ended the session."""

    async def expect_success(session: Any) -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(ft, "_expect_success", expect_success)


# -- the network ---------------------------------------------------------------------------------


@dataclass
class Net:
    server: Server
    relay: Relay
    client_tls: ssl.SSLContext

    @asynccontextmanager
    async def client(
        self, user: str, resource: str, **kwargs: Any
    ) -> AsyncIterator[jet_trio.Client]:
        async with open_client(
            self.server.jid(user, resource),
            PASSWORDS[user],
            host=self.server.host,
            port=self.server.port,
            ssl_context=self.client_tls,
            **{"mechanisms": ["PLAIN"], **kwargs},  # over TLS; SCRAM's PBKDF2 is slow
        ) as client:
            yield client

    @asynccontextmanager
    async def pair(
        self,
        sender: dict[str, Any] | None = None,
        receiver: dict[str, Any] | None = None,
        **both: Any,
    ) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
        """alice/send and bob/recv, each with a file transfer service; keyword arguments for
        :func:`open_file_transfer` go to ``sender``, ``receiver`` or (``both``) to each."""
        a_opts = {"allow_stub_envelope": True, **both, **(sender or {})}
        b_opts = {"allow_stub_envelope": True, **both, **(receiver or {})}
        async with (
            self.client("alice", "send") as a,
            self.client("bob", "recv") as b,
            open_file_transfer(a, **a_opts) as fa,
            open_file_transfer(b, **b_opts) as fb,
        ):
            with trio.fail_after(5):
                await a.wait_available(b.jid)
                await b.wait_available(a.jid)
            yield fa, fb


@pytest.fixture(scope="session")
def _tls() -> Any:
    return make_tls("localhost")


@pytest.fixture
async def net(_tls: Any) -> AsyncIterator[Net]:
    async with serve_proxy65(jid="proxy.localhost") as proxy:
        relay = Relay(proxy.host, proxy.port, proxy.jid, proxy.activate)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, relay.handle, 0, host="127.0.0.1")
            )
            relay.port = listeners[0].socket.getsockname()[1]
            async with serve(tls=_tls.server_context, accounts=PASSWORDS, proxy65=relay) as server:
                yield Net(server, relay, _tls.client_context)
            nursery.cancel_scope.cancel()


# -- transfers -----------------------------------------------------------------------------------


def make_file(directory: Path, size: int, name: str = "payload.bin") -> Path:
    src = directory / "src" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(os.urandom(size))
    return src


@dataclass
class Side:
    """One side's outcome: ``result`` or ``error`` (``error`` unwrapped from any group)."""

    result: jet_trio.TransferResult | None = None
    error: BaseException | None = None
    offer: IncomingOffer | None = None
    progress: list[tuple[int, int]] = field(default_factory=list)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def raised(self, kind: type[BaseException]) -> Any:
        assert self.result is None, f"expected {kind.__name__}, got a result: {self.result}"
        assert isinstance(self.error, kind), (
            f"expected {kind.__name__}, got {type(self.error).__name__}: {self.error!r}"
        )
        return self.error


@dataclass
class Outcome:
    send: Side
    recv: Side


async def _capture(side: Side, fn: Callable[[], Any]) -> None:
    try:
        side.result = await fn()
    except Exception as exc:
        side.error = exc


async def run_transfer(
    fa: FileTransfer,
    fb: FileTransfer,
    src: Path,
    dest: Path,
    *,
    accept: Callable[[IncomingOffer], Any] | None = None,
    deadline: float = 10,
    on_send_progress: Callable[[Outcome, int], None] | None = None,
    on_recv_progress: Callable[[Outcome, int], None] | None = None,
    **send_kwargs: Any,
) -> Outcome:
    """Send ``src`` from ``fa`` to ``fb`` (accepted into ``dest`` unless ``accept`` is given,
    which then answers the offer). Neither side's failure cancels the other.

    Each side runs in its own cancel scope (``Side.scope``); ``on_*_progress(out, done)`` is
    called from that side's progress callback (e.g. to cancel ``out.send.scope``)."""
    out = Outcome(Side(), Side())
    receiving = trio.CancelScope()

    def send_progress(done: int, total: int) -> None:
        out.send.progress.append((done, total))
        if on_send_progress is not None:
            on_send_progress(out, done)

    def recv_progress(done: int, total: int) -> None:
        out.recv.progress.append((done, total))
        if on_recv_progress is not None:
            on_recv_progress(out, done)

    async def send() -> jet_trio.TransferResult | None:
        try:
            with out.send.scope:
                return await fa.send_file(src, fb.client.jid, progress=send_progress, **send_kwargs)
            return None
        finally:
            if out.recv.offer is None:
                # The offer never reached the receiver: stop waiting for it.
                receiving.cancel()

    async def receive() -> Any:
        with receiving:
            offer = await fb.next_offer()
        if receiving.cancelled_caught:
            return None
        out.recv.offer = offer
        with out.recv.scope:
            if accept is not None:
                return await accept(offer)
            return await offer.accept(dest, progress=recv_progress)
        return None

    with trio.fail_after(deadline):
        async with trio.open_nursery() as n:
            n.start_soon(_capture, out.recv, receive)
            n.start_soon(_capture, out.send, send)
    return out


def leftovers(directory: Path) -> list[Path]:
    """Temporary files (``.part``, resume sidecars) left in ``directory``."""
    return sorted(p for p in directory.iterdir() if p.name.endswith((".part", ".jet-partial.json")))


def assert_nothing_stored(dest: Path) -> None:
    """Nothing under the target name and no temporary or partial file beside it."""
    assert not dest.exists(), f"{dest} was created by a failed transfer"
    assert not leftovers(dest.parent), f"temporary files left: {leftovers(dest.parent)}"


def assert_not_stored_maybe_resumable(dest: Path, src: Path) -> None:
    """Nothing under the target name; anything left beside it is one download kept for
    resuming (a ``.part`` file and its sidecar naming ``dest``), holding a prefix of ``src``
    (the file's hash is checked when the download completes)."""
    assert not dest.exists(), f"{dest} was created by an interrupted transfer"
    left = leftovers(dest.parent)
    if not left:
        return
    partials = find_partials(dest.parent)
    assert len(partials) == 1, f"unexpected leftovers: {left}"
    (p,) = partials
    assert p.dest == dest and sorted(left) == sorted([p.part, p.sidecar]), left
    kept = p.part.read_bytes()
    assert len(kept) > 0 and src.read_bytes().startswith(kept)


@pytest.fixture
def dest_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "inbox"
    d.mkdir()
    yield d
