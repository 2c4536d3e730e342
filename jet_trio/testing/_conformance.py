"""A conformance kit for plugin authors: run a cipher or an envelope method through the contract.

In the spirit of trio's ``check_two_way_stream``: :func:`check_cipher` and
:func:`check_envelope_method` raise :class:`ConformanceError` (an :class:`AssertionError`) whose
message names the rule the plugin broke.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .._errors import SecurityError
from .._jet.cipher import Cipher, CipherError, PlaintextLimitExceeded, TagMismatch, TransportSecret
from .._jet.envelope import (
    DecryptedEnvelope,
    EnvelopeMethod,
    Trust,
    check_envelope_sender,
)
from .._plugins.hookspecs import PluginConfig, hookimpl
from .._xmpp.jid import JID

if TYPE_CHECKING:
    from lxml import etree

__all__ = ["ConformanceError", "EnvelopeFactory", "check_cipher", "check_envelope_method"]

EnvelopeFactory = Callable[
    [PluginConfig],
    "EnvelopeMethod | Awaitable[EnvelopeMethod] | AbstractAsyncContextManager[EnvelopeMethod]",
]
"""Makes the envelope method under test for one account (``config.account``, ``config.client``,
``config.data_dir``): returns it, or an awaitable of it, or an async context manager yielding it
(entered for the whole check, e.g. to run a session the method needs)."""

#: Plaintext sizes around common block sizes (16, 64) and a large one.
CIPHER_SIZES = (0, 1, 15, 16, 17, 63, 64, 65, 4095, 4096, 4097, 1_000_003)


class ConformanceError(AssertionError):
    """A plugin broke the plugin contract; the message says which rule and how."""


def _fail(what: object, rule: str) -> ConformanceError:
    return ConformanceError(f"{what!r} violates the plugin contract: {rule}")


# -- ciphers -------------------------------------------------------------------------------------


def _encrypt(cipher: Cipher, key: bytes, iv: bytes, data: bytes, piece: int) -> tuple[bytes, bytes]:
    enc = cipher.encryptor(key, iv)
    out = []
    for i in range(0, len(data), piece):
        chunk = data[i : i + piece]
        ct = enc.update(chunk)
        if not isinstance(ct, bytes):
            raise _fail(cipher, f"encryptor.update() returned {type(ct).__name__}, not bytes")
        if len(ct) != len(chunk):
            raise _fail(
                cipher,
                f"streaming contract: encryptor.update() of {len(chunk)} bytes returned "
                f"{len(ct)} bytes of ciphertext (it must return exactly as many bytes as it "
                "is given; the tag comes only from finalize())",
            )
        out.append(ct)
    tag = enc.finalize()
    if not isinstance(tag, bytes) or len(tag) != cipher.tag_size:
        got = len(tag) if isinstance(tag, bytes) else type(tag).__name__
        raise _fail(
            cipher, f"encryptor.finalize() returned a tag of {got}, not {cipher.tag_size} bytes"
        )
    return b"".join(out), tag


def _decrypt(cipher: Cipher, key: bytes, iv: bytes, ct: bytes, tag: bytes, piece: int) -> bytes:
    dec = cipher.decryptor(key, iv)
    out = []
    for i in range(0, len(ct), piece):
        chunk = ct[i : i + piece]
        pt = dec.update(chunk)
        if not isinstance(pt, bytes) or len(pt) != len(chunk):
            got = len(pt) if isinstance(pt, bytes) else type(pt).__name__
            raise _fail(
                cipher,
                f"streaming contract: decryptor.update() of {len(chunk)} bytes returned {got} "
                "bytes (it must return exactly as many bytes as it is given)",
            )
        out.append(pt)
    dec.finalize(tag)
    return b"".join(out)


def _expect_tag_mismatch(
    cipher: Cipher, what: str, key: bytes, iv: bytes, ct: bytes, tag: bytes
) -> None:
    try:
        _decrypt(cipher, key, iv, ct, tag, 4096)
    except TagMismatch:
        return
    except Exception as exc:
        raise _fail(
            cipher,
            f"decrypting {what} raised {type(exc).__name__}: {exc} (TagMismatch is required)",
        ) from exc
    raise _fail(
        cipher, f"decrypting {what} succeeded: the tag is not checked (TagMismatch is required)"
    )


def check_cipher(cipher: Cipher, *, sizes: tuple[int, ...] = CIPHER_SIZES) -> None:
    """Run ``cipher`` through the JET cipher contract; raise :class:`ConformanceError` if it fails.

    Checks the attributes, round trips at each of ``sizes`` with whole and split updates (split
    updates must give the same bytes), the streaming contract (ciphertext as long as the
    plaintext, then ``tag_size`` bytes of tag), that a changed, truncated or missing tag, changed
    or truncated ciphertext, a wrong key and a wrong IV are refused with
    :class:`~jet_trio.plugin.TagMismatch`, wrong key and IV lengths with
    :class:`~jet_trio.plugin.CipherError`, and that ``max_plaintext_size`` is enforced.
    """
    if not isinstance(cipher, Cipher):
        raise ConformanceError(f"{cipher!r} is not a jet_trio.plugin.Cipher")
    for attr in (
        "urn",
        "key_size",
        "iv_size",
        "accepted_iv_sizes",
        "tag_size",
        "max_plaintext_size",
    ):
        if not hasattr(cipher, attr):
            raise _fail(cipher, f"the attribute {attr!r} is missing")
    if not isinstance(cipher.urn, str) or not cipher.urn:
        raise _fail(cipher, "urn must be a non-empty string")
    for attr in ("key_size", "iv_size", "tag_size", "max_plaintext_size"):
        value = getattr(cipher, attr)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise _fail(cipher, f"{attr} must be a positive int, not {value!r}")
    if cipher.tag_size < 12:
        raise _fail(cipher, f"tag_size {cipher.tag_size} is too short for an authentication tag")
    if cipher.iv_size not in cipher.accepted_iv_sizes:
        raise _fail(cipher, f"iv_size {cipher.iv_size} is not in accepted_iv_sizes")

    for iv_size in sorted(cipher.accepted_iv_sizes):
        secret = TransportSecret.generate(cipher)
        key, iv = secret.key, os.urandom(iv_size)
        for size in sizes:
            data = os.urandom(size)
            ct, tag = _encrypt(cipher, key, iv, data, max(size, 1))
            if size >= 16 and ct == data:
                raise _fail(cipher, f"the ciphertext of {size} bytes equals the plaintext")
            if _decrypt(cipher, key, iv, ct, tag, max(size, 1)) != data:
                raise _fail(
                    cipher, f"round trip of {size} bytes (IV of {iv_size}) gave other bytes"
                )
            pieces = (1, 7, 1000) if size < 5000 else (65536 + 3,)
            for piece in pieces:
                if _encrypt(cipher, key, iv, data, piece) != (ct, tag):
                    raise _fail(
                        cipher,
                        f"encrypting {size} bytes in updates of {piece} bytes gave other bytes "
                        "than in one update",
                    )
                if _decrypt(cipher, key, iv, ct, tag, piece) != data:
                    raise _fail(
                        cipher, f"decrypting {size} bytes in updates of {piece} gave other bytes"
                    )

    key, iv = TransportSecret.generate(cipher).key, os.urandom(cipher.iv_size)
    data = os.urandom(1000)
    ct, tag = _encrypt(cipher, key, iv, data, 1000)
    other_iv = bytes([iv[0] ^ 1]) + iv[1:]
    if _encrypt(cipher, key, other_iv, data, 1000)[0] == ct:
        raise _fail(cipher, "two IVs give the same ciphertext: the IV is ignored")
    flipped_tag = bytes([tag[0] ^ 0x01]) + tag[1:]
    flipped_ct = ct[:500] + bytes([ct[500] ^ 0x80]) + ct[501:]
    other_key = bytes([key[0] ^ 1]) + key[1:]
    _expect_tag_mismatch(cipher, "with a changed tag", key, iv, ct, flipped_tag)
    _expect_tag_mismatch(cipher, "with a changed ciphertext byte", key, iv, flipped_ct, tag)
    _expect_tag_mismatch(cipher, "a truncated ciphertext", key, iv, ct[:-1], tag)
    _expect_tag_mismatch(cipher, "with a truncated tag", key, iv, ct, tag[:-1])
    _expect_tag_mismatch(cipher, "without a tag", key, iv, ct, b"")
    _expect_tag_mismatch(cipher, "with the wrong key", other_key, iv, ct, tag)
    _expect_tag_mismatch(cipher, "with the wrong IV", key, other_iv, ct, tag)
    empty_ct, empty_tag = _encrypt(cipher, key, iv, b"", 1)
    _expect_tag_mismatch(
        cipher, "an empty message with another key's tag", other_key, iv, empty_ct, empty_tag
    )

    for bad_key, bad_iv, what in (
        (key + b"\x01", iv, "a key one byte too long"),
        (key[:-1], iv, "a key one byte too short"),
        (key, b"\x01" * (max(cipher.accepted_iv_sizes) + 1), "an IV longer than accepted"),
    ):
        for make in (cipher.encryptor, cipher.decryptor):
            try:
                make(bad_key, bad_iv)
            except CipherError:
                continue
            raise _fail(cipher, f"{make.__name__}() accepted {what} (CipherError is required)")

    limited = copy.copy(cipher)
    limited.max_plaintext_size = 100
    for make in (limited.encryptor, limited.decryptor):
        ctx = make(key, iv)
        ctx.update(b"\x00" * 60)
        try:
            ctx.update(b"\x00" * 41)
        except PlaintextLimitExceeded:
            continue
        raise _fail(
            cipher,
            f"{make.__name__}() processed more than max_plaintext_size bytes "
            "(PlaintextLimitExceeded is required)",
        )


# -- envelope methods ----------------------------------------------------------------------------


class _OnePlugin:
    def __init__(self, method: EnvelopeMethod) -> None:
        self.method = method

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return [self.method]


async def _make(
    factory: EnvelopeFactory, config: PluginConfig, stack: AsyncExitStack
) -> EnvelopeMethod:
    made: object = factory(config)
    if isinstance(made, AbstractAsyncContextManager):
        made = await stack.enter_async_context(made)
    elif inspect.isawaitable(made):
        made = await made
    if not isinstance(made, EnvelopeMethod):
        raise ConformanceError(
            f"the factory returned {made!r}, not a jet_trio.plugin.EnvelopeMethod"
        )
    if not isinstance(getattr(made, "namespace", None), str) or not made.namespace:
        raise _fail(made, "namespace must be a non-empty string")
    features = getattr(made, "features", None)
    if not isinstance(features, tuple) or not all(isinstance(f, str) for f in features):
        raise _fail(made, f"features must be a tuple of strings, not {features!r}")
    return made


def _tamper_points(element: etree._Element) -> list[tuple[etree._Element, str | None]]:
    """(element, attribute name or None for the text) of every base64-looking value."""
    import base64
    import binascii

    points: list[tuple[etree._Element, str | None]] = []
    for el in element.iter():
        values: list[tuple[str | None, str | None]] = [(None, el.text)]
        values += [(str(k), str(v)) for k, v in el.attrib.items()]
        for name, value in values:
            if not value or len("".join(value.split())) < 12:
                continue
            try:
                base64.b64decode("".join(value.split()), validate=True)
            except (binascii.Error, ValueError):
                continue
            points.append((el, name))
    return points


def _tamper(element: etree._Element, index: int) -> etree._Element:
    import base64

    from lxml import etree

    copy_ = etree.fromstring(etree.tostring(element))
    el, name = _tamper_points(copy_)[index]
    value = "".join(((el.text if name is None else el.get(name)) or "").split())
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 0x01
    new = base64.b64encode(bytes(raw)).decode("ascii")
    if name is None:
        el.text = new
    else:
        el.set(name, new)
    return copy_


def _wire(element: etree._Element) -> etree._Element:
    from lxml import etree

    return etree.fromstring(etree.tostring(element))


async def check_envelope_method(
    factory: EnvelopeFactory,
    *,
    cipher: Cipher | None = None,
    authenticates_sender: bool = True,
    prevents_replay: bool = False,
    iv_authenticated: bool = True,
    transfer: bool = True,
    deadline: float = 60,
) -> None:
    """Run an envelope method through the JET envelope contract on the in-process server.

    ``factory(config)`` makes the method for one account; it is called for alice, bob and carol,
    each connected to a fresh in-process server (``config.client``), with their own
    ``config.data_dir``. The kit checks the interface (``namespace``, ``features``), round trips
    alice → bob and bob → alice (the secret, and the authenticated sender), that an envelope
    from alice opened as if it came from carol is refused (sender binding), that an envelope with
    any base64 value changed is refused or yields the original secret (and at least one change is
    refused), that failures are :class:`~jet_trio.SecurityError`\\ s, that an envelope opened a
    second time is refused when ``prevents_replay``, and finally (with ``transfer``) one file
    transfer alice → bob through :func:`~jet_trio.open_file_transfer` with this method only.

    ``authenticates_sender=False`` is for methods that report :attr:`Trust.NONE
    <jet_trio.plugin.Trust.NONE>` (the stub envelope): sender binding and tampering are then not
    checked. ``iv_authenticated=False`` is for formats that carry the IV outside the
    authenticated part (legacy OMEMO, ``eu.siacs.conversations.axolotl``, as deployed clients
    require): an envelope whose only altered value is the IV then counts as refused, since the
    file's authentication tag fails under another IV. ``cipher`` defaults to AES-256-GCM;
    ``deadline`` bounds the whole check in seconds. Raises :class:`ConformanceError`.
    """
    from .._plugins.builtin_ciphers import AES256GCM
    from .._plugins.guard import unguarded
    from .._plugins.manager import PluginManager
    from .._transfer.service import open_file_transfer
    from .._xmpp.client import open_client
    from ._server import serve
    from ._tls import make_tls

    cipher = cipher if cipher is not None else AES256GCM
    tls = make_tls("localhost")
    accounts = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
    with (
        tempfile.TemporaryDirectory(prefix="jet-trio-conformance-") as tmp,
        trio.fail_after(deadline),
    ):
        root = Path(tmp)
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                serve("localhost", tls=tls.server_context, accounts=accounts)
            )
            clients = {}
            configs = {}
            methods = {}
            for user, password in accounts.items():
                client = await stack.enter_async_context(
                    open_client(
                        server.jid(user, "kit"),
                        password,
                        host=server.host,
                        port=server.port,
                        ssl_context=tls.client_context,
                        mechanisms=["PLAIN"],
                    )
                )
                clients[user] = client
                configs[user] = PluginConfig(
                    allow_stub_envelope=True,
                    account=client.jid,
                    data_dir=root / user,
                    client=client,
                )
                methods[user] = await _make(factory, configs[user], stack)
            alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
            ma, mb, mc = methods["alice"], methods["bob"], methods["carol"]
            # alice's and bob's methods are started by open_file_transfer, carol's here.
            services = {}
            for user in ("alice", "bob"):
                # Without the built-in stub envelope, so that a method in its namespace is used.
                pm = PluginManager(
                    dataclasses.replace(configs[user], allow_stub_envelope=False),
                    plugins=[_OnePlugin(methods[user])],
                    entry_points=False,
                )
                # (A guarded view of it: its bugs are pinned on it in the transfers below.)
                if unguarded(pm.envelope(methods[user].namespace)) is not methods[user]:
                    errors = "; ".join(str(e) for e in pm.load_errors)
                    raise _fail(methods[user], f"the plugin manager did not load it: {errors}")
                services[user] = await stack.enter_async_context(
                    open_file_transfer(clients[user], plugins=pm, direct_addresses=["127.0.0.1"])
                )
            await mc.start()

            async def opened(
                method: EnvelopeMethod, element: etree._Element, sender: JID, what: str
            ) -> DecryptedEnvelope:
                try:
                    got = await method.decrypt(_wire(element), sender, cipher)
                except SecurityError as exc:
                    raise _fail(
                        method, f"{what}: decrypt() refused a valid envelope: {exc}"
                    ) from exc
                except Exception as exc:
                    raise _fail(
                        method,
                        f"{what}: decrypt() of a valid envelope raised {type(exc).__name__}: {exc}",
                    ) from exc
                if not isinstance(got, DecryptedEnvelope):
                    raise _fail(
                        method, f"{what}: decrypt() returned {got!r}, not a DecryptedEnvelope"
                    )
                return got

            for src, dst, m_src, m_dst in ((alice, bob, ma, mb), (bob, alice, mb, ma)):
                what = f"round trip {src.jid.bare} -> {dst.jid.bare}"
                secret = TransportSecret.generate(cipher)
                element = await m_src.encrypt(secret, dst.jid.bare)
                got = await opened(m_dst, element, src.jid, what)
                if got.secret != secret:
                    raise _fail(m_dst, f"{what}: decrypt() returned another transport secret")
                if got.sender_identity.bare != src.jid.bare:
                    raise _fail(
                        m_dst,
                        f"{what}: the authenticated sender is {got.sender_identity}, "
                        f"not {src.jid.bare}",
                    )
                if not isinstance(got.trust, Trust) or got.trust is Trust.UNTRUSTED:
                    raise _fail(m_dst, f"{what}: trust {got.trust!r} for a fresh peer")
                if authenticates_sender and got.trust is Trust.NONE:
                    raise _fail(
                        m_dst,
                        f"{what}: trust is Trust.NONE; pass authenticates_sender=False for a "
                        "method that does not authenticate the sender",
                    )
                check_envelope_sender(got, src.jid)
                if prevents_replay:
                    try:
                        await m_dst.decrypt(_wire(element), src.jid, cipher)
                    except SecurityError:
                        pass
                    except Exception as exc:
                        raise _fail(
                            m_dst,
                            f"{what}: a replayed envelope raised {type(exc).__name__}: {exc} "
                            "(a SecurityError is required)",
                        ) from exc
                    else:
                        raise _fail(m_dst, f"{what}: the same envelope was accepted twice (replay)")

            if authenticates_sender:
                secret = TransportSecret.generate(cipher)
                element = await ma.encrypt(secret, bob.jid.bare)
                try:
                    got = await mb.decrypt(_wire(element), carol.jid, cipher)
                except SecurityError:
                    pass
                except Exception as exc:
                    raise _fail(
                        mb,
                        f"sender binding: decrypt() of alice's envelope as from carol raised "
                        f"{type(exc).__name__}: {exc} (a SecurityError is required)",
                    ) from exc
                else:
                    if got.sender_identity.bare == carol.jid.bare:
                        raise _fail(
                            mb,
                            "sender binding: an envelope made by alice was accepted as coming "
                            f"from {carol.jid.bare}: the sender identity must be the one the "
                            "envelope authenticates, not the stanza's 'from'",
                        )

                sample = await ma.encrypt(TransportSecret.generate(cipher), bob.jid.bare)
                refused = 0
                for index in range(len(_tamper_points(sample))):
                    secret = TransportSecret.generate(cipher)
                    element = _tamper(await ma.encrypt(secret, bob.jid.bare), index)
                    try:
                        got = await mb.decrypt(element, alice.jid, cipher)
                    except SecurityError:
                        refused += 1
                        continue
                    except Exception as exc:
                        raise _fail(
                            mb,
                            f"a tampered envelope raised {type(exc).__name__}: {exc} "
                            "(a SecurityError is required)",
                        ) from exc
                    changed = [
                        name
                        for name, same in (
                            ("key", got.secret.key == secret.key),
                            ("IV", got.secret.iv == secret.iv),
                            ("cipher", got.secret.cipher.urn == secret.cipher.urn),
                            ("sender", got.sender_identity.bare == alice.jid.bare),
                        )
                        if not same
                    ]
                    if changed == ["IV"] and not iv_authenticated:
                        refused += 1  # the file's tag fails under another IV
                        continue
                    if changed:
                        raise _fail(
                            mb,
                            "a tampered envelope was accepted with an altered "
                            f"{' and '.join(changed)}: the envelope is not authenticated",
                        )
                if not refused:
                    raise _fail(
                        mb, "no tampered envelope was refused: the envelope is not authenticated"
                    )

            if transfer:
                src_file = root / "conformance.bin"
                src_file.write_bytes(os.urandom(100_003))
                dest = root / "received.bin"
                fa, fb = services["alice"], services["bob"]
                await alice.wait_available(bob.jid)

                async def receive() -> None:
                    offer = await fb.next_offer()
                    await offer.accept(dest)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(receive)
                    result = await fa.send_file(
                        src_file, bob.jid, encrypt=ma.namespace, cipher=cipher.urn
                    )
                if result.envelope != ma.namespace:
                    raise _fail(ma, f"the transfer used {result.envelope!r}")
                if dest.read_bytes() != src_file.read_bytes():
                    raise _fail(ma, "the file received differs from the file sent")
