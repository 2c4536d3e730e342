"""A plugin's bug during a transfer is pinned on the plugin: a typed error naming it, and that
cipher or envelope method alone refused. Each test shows the message the plugin's author sees."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pluggy
import pytest
from lxml import etree

from jet_trio import JID, SecurityError
from jet_trio._cli.errors import ExitCode, classify
from jet_trio._jet.cipher import (
    Cipher,
    StreamDecryptor,
    StreamEncryptor,
    TagMismatch,
    TransportSecret,
    UnknownCipher,
)
from jet_trio._jet.envelope import DecryptedEnvelope, EnvelopeError, EnvelopeMethod, Trust
from jet_trio._plugins.builtin_ciphers import AES256GCM, AESGCMCipher
from jet_trio._plugins.guard import GuardedCipher, GuardedEnvelope, PluginError, unguarded
from jet_trio._plugins.hookspecs import PluginConfig, hookimpl
from jet_trio._plugins.manager import PluginManager, UnknownEnvelope

URN = "urn:example:cipher:buggy"
NS = "urn:example:envelope:buggy"
KEY, IV = bytes(range(1, 33)), bytes(range(40, 52))


class _Enc:
    def __init__(self, how: str) -> None:
        self.how = how

    def update(self, data: Any) -> Any:
        if self.how == "update-raises":
            raise ValueError("update exploded")
        if self.how == "update-short":
            return bytes(data)[:-1]
        if self.how == "update-str":
            return "text"
        return bytes(b ^ 0x5A for b in bytes(data))

    def finalize(self) -> Any:
        if self.how == "tag-short":
            return b"\0" * 8
        return b"\1" * 16


class _Dec:
    def __init__(self, how: str) -> None:
        self.how = how

    def update(self, data: Any) -> Any:
        if self.how == "dec-update-raises":
            raise KeyError("dec")
        return bytes(b ^ 0x5A for b in bytes(data))

    def finalize(self, tag: bytes) -> Any:
        if self.how == "finalize-false":
            return False  # "not valid" as a return value: the tag would go unchecked
        if self.how == "finalize-foreign":
            raise RuntimeError("InvalidTag from another library")
        if tag != b"\1" * 16:
            raise TagMismatch("wrong tag")  # the typed error: allowed
        return None


class BuggyCipher(Cipher):
    urn = URN
    key_size = 32
    iv_size = 12
    accepted_iv_sizes = frozenset({12})
    tag_size = 16
    max_plaintext_size = 1 << 30
    install_hint = "pip install buggy"  # an attribute of the plugin's own: reachable

    def __init__(self, how: str = "") -> None:
        self.how = how

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        if self.how == "factory-raises":
            raise OSError("no entropy")
        if self.how == "factory-none":
            return None  # type: ignore[return-value]
        return _Enc(self.how)

    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        return _Dec(self.how)


class BuggyEnvelope(EnvelopeMethod):
    namespace = NS
    features = (NS,)

    def __init__(self, how: str = "") -> None:
        self.how = how

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        if self.how == "encrypt-str":
            return "<not an element/>"  # type: ignore[return-value]
        if self.how == "encrypt-typed":
            raise EnvelopeError("no session with any device of the peer")
        return etree.Element(f"{{{NS}}}envelope")

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        if self.how == "decrypt-raises":
            raise ValueError("Invalid padding bytes.")
        if self.how == "decrypt-tuple":
            return (b"key", b"iv")  # type: ignore[return-value]
        if self.how == "decrypt-other-cipher":
            return DecryptedEnvelope(TransportSecret(KEY, IV, AES256GCM), sender, Trust.UNDECIDED)
        if self.how == "decrypt-str-sender":
            secret = TransportSecret(KEY, IV, cipher)
            return DecryptedEnvelope(secret, str(sender), Trust.UNDECIDED)  # type: ignore[arg-type]
        return DecryptedEnvelope(TransportSecret(KEY, IV, cipher), sender, Trust.UNDECIDED)


class Plugin:
    def __init__(self, how: str = "") -> None:
        self.how = how

    @hookimpl
    def jet_register_ciphers(self) -> list[Cipher]:
        return [BuggyCipher(self.how)]

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return [BuggyEnvelope(self.how)]


def _manager(how: str) -> PluginManager:
    pm = PluginManager(plugins={"buggy": Plugin(how)}, entry_points=False)
    assert pm.load_errors == []
    return pm


def _sealed(cipher: Cipher, data: bytes) -> tuple[bytes, bytes]:
    enc = cipher.encryptor(KEY, IV)
    return enc.update(data), enc.finalize()


def test_views_are_the_plugin_objects_for_everything_else() -> None:
    pm = _manager("")
    cipher, env = pm.cipher(URN), pm.envelope(NS)
    assert isinstance(cipher, GuardedCipher) and isinstance(env, GuardedEnvelope)
    assert isinstance(cipher, BuggyCipher) and isinstance(env, BuggyEnvelope)
    assert cipher.install_hint == "pip install buggy"
    assert repr(cipher) == f"<BuggyCipher {URN}>" and repr(env) == f"<BuggyEnvelope {NS}>"
    assert isinstance(unguarded(cipher), BuggyCipher) and unguarded(AES256GCM) is AES256GCM
    # A working plugin works through its view.
    ct, tag = _sealed(cipher, b"hello")
    dec = cipher.decryptor(KEY, IV)
    assert dec.update(ct) == b"hello"
    dec.finalize(tag)
    # The built-ins are jet-trio's own code: not wrapped.
    assert pm.cipher(AES256GCM.urn) is AES256GCM


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("factory-raises", "new_encryptor() raised OSError: no entropy"),
        ("factory-none", "new_encryptor() returned a NoneType without update()"),
        ("update-raises", "encryptor update() raised ValueError: update exploded"),
        (
            "update-short",
            "encryptor update() returned 4 bytes for 5 bytes of plaintext (the ciphertext "
            "must be bytes, exactly as long as the plaintext)",
        ),
        ("update-str", "encryptor update() returned a str for 5 bytes of plaintext"),
        ("tag-short", "encryptor finalize() returned 8 bytes, not a tag of tag_size (16) bytes"),
    ],
)
def test_encryptor_bugs(how: str, message: str) -> None:
    pm = _manager(how)
    cipher = pm.cipher(URN)
    with pytest.raises(PluginError) as info:
        _sealed(cipher, b"hello")
    err = info.value
    assert isinstance(err, SecurityError)
    assert (err.plugin, err.distribution) == ("buggy", None)
    assert str(err).startswith(f"bug in the plugin 'buggy': cipher {URN!r}: {message}")
    assert str(err).endswith("; it is no longer used")
    # That cipher alone is refused from now on, and reported once.
    with pytest.raises(UnknownCipher):
        pm.cipher(URN)
    assert URN not in [c.urn for c in pm.ciphers]
    assert len(pm.load_errors) == 1
    assert str(pm.load_errors[0]).startswith(f"plugin 'buggy' skipped: cipher {URN!r}: {message}")
    assert pm.envelope(NS).namespace == NS  # the plugin's envelope method stays


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("dec-update-raises", "decryptor update() raised KeyError: 'dec'"),
        (
            "finalize-false",
            "decryptor finalize() returned False: it must return None, and raise TagMismatch "
            "when the tag is wrong",
        ),
        ("finalize-foreign", "decryptor finalize() raised RuntimeError: InvalidTag from another"),
    ],
)
def test_decryptor_bugs(how: str, message: str) -> None:
    pm = _manager(how)
    cipher = pm.cipher(URN)
    ct, tag = _sealed(cipher, b"hello")
    dec = cipher.decryptor(KEY, IV)
    with pytest.raises(PluginError, match=rf"^bug in the plugin 'buggy': cipher {URN!r}: "):
        dec.update(ct)
        dec.finalize(tag)
    assert message in pm.load_errors[0].reason
    with pytest.raises(UnknownCipher):
        pm.cipher(URN)


def test_typed_errors_of_a_plugin_pass_unchanged() -> None:
    pm = _manager("")
    cipher = pm.cipher(URN)
    ct, _ = _sealed(cipher, b"hello")
    dec = cipher.decryptor(KEY, IV)
    dec.update(ct)
    with pytest.raises(TagMismatch, match="wrong tag"):
        dec.finalize(b"\2" * 16)
    assert pm.load_errors == [] and pm.cipher(URN) is cipher


async def test_typed_envelope_error_passes_unchanged() -> None:
    pm = _manager("encrypt-typed")
    with pytest.raises(EnvelopeError, match="no session with any device"):
        await pm.envelope(NS).encrypt(TransportSecret(KEY, IV, AES256GCM), JID("b@example.org"))
    assert pm.load_errors == []


@pytest.mark.parametrize(
    ("how", "call", "message"),
    [
        ("encrypt-str", "encrypt", "encrypt() returned a str, not an element"),
        ("decrypt-raises", "decrypt", "decrypt() raised ValueError: Invalid padding bytes."),
        ("decrypt-tuple", "decrypt", "decrypt() returned a tuple, not a DecryptedEnvelope"),
        (
            "decrypt-other-cipher",
            "decrypt",
            f"decrypt() returned a secret for the cipher {AES256GCM.urn!r}, not for {URN!r} that "
            "the <security> element names",
        ),
        (
            "decrypt-str-sender",
            "decrypt",
            "decrypt() returned a DecryptedEnvelope whose sender_identity is a str, not a JID",
        ),
    ],
)
async def test_envelope_bugs(how: str, call: str, message: str) -> None:
    pm = _manager(how)
    env, cipher = pm.envelope(NS), pm.cipher(URN)
    peer = JID("juliet@example.org")
    with pytest.raises(PluginError) as info:
        if call == "encrypt":
            await env.encrypt(TransportSecret(KEY, IV, cipher), peer)
        else:
            await env.decrypt(etree.Element(f"{{{NS}}}envelope"), peer, cipher)
    expected = f"bug in the plugin 'buggy': envelope method {NS!r}: {message}; it is no longer used"
    assert str(info.value) == expected
    with pytest.raises(UnknownEnvelope):
        pm.envelope(NS)
    assert [e.reason for e in pm.load_errors] == [f"envelope method {NS!r}: {message}"]
    assert pm.cipher(URN) is cipher  # the plugin's cipher stays


async def test_decrypted_secret_uses_the_guarded_cipher() -> None:
    """A secret the plugin built with its own cipher object decrypts through the view."""
    pm = _manager("")
    cipher = pm.cipher(URN)
    opened = await pm.envelope(NS).decrypt(
        etree.Element(f"{{{NS}}}envelope"), JID("a@example.org"), cipher
    )
    assert opened.secret.cipher is cipher


def test_cli_pins_a_plugin_bug_on_the_plugin() -> None:
    err = PluginError("xchacha", "jet-trio-xchacha", "cipher 'urn:x': encryptor update() raised")
    failure = classify(err)
    assert failure.code is ExitCode.ENCRYPTION
    assert "internal" not in failure.message and "bug in jet-trio" not in failure.hint
    assert failure.message.startswith("bug in the plugin 'xchacha' (distribution jet-trio-xchacha)")
    assert "report it to the authors of jet-trio-xchacha" in failure.hint
    # Also when it is the cause of the transfer's error.
    from jet_trio import EncryptionFailed

    wrapped = EncryptionFailed("cannot decrypt the transfer from a@example.org: ...")
    wrapped.__cause__ = err
    assert "report it to the authors of jet-trio-xchacha" in classify(wrapped).hint


# -- loading ---------------------------------------------------------------------------------


def test_marker_made_for_the_wrong_project_name() -> None:
    wrong = pluggy.HookimplMarker("jet-trio")

    class Dashed:
        @wrong
        def jet_register_ciphers(self) -> list[Cipher]:
            return [AESGCMCipher(24, "urn:example:dashed")]

    pm = PluginManager(plugins={"dashed": Dashed()}, entry_points=False)
    assert [str(e) for e in pm.load_errors] == [
        "plugin 'dashed' skipped: TypeError: jet_register_ciphers is marked with a hookimpl "
        "marker made for 'jet-trio', not for 'jet_trio': use jet_trio.plugin.hookimpl, or "
        "pluggy.HookimplMarker('jet_trio') with an underscore"
    ]


def test_third_party_cannot_take_a_builtin_name() -> None:
    class Squatter:
        @hookimpl
        def jet_register_ciphers(self) -> list[Cipher]:
            return [AESGCMCipher(16, AES256GCM.urn)]

    pm = PluginManager(plugins={"squatter": Squatter()}, entry_points=False)
    assert [str(e) for e in pm.load_errors] == [
        f"plugin 'squatter' skipped: cipher {AES256GCM.urn!r} is provided by jet-trio itself "
        "(builtin-ciphers); a plugin cannot replace it"
    ]
    assert pm.cipher(AES256GCM.urn) is AES256GCM
    assert "squatter" not in pm.plugin_names


def test_alias_clash_refuses_both_ciphers() -> None:
    class One:
        @hookimpl
        def jet_register_ciphers(self) -> list[Cipher]:
            return [AESGCMCipher(24, "urn:example:one")]  # alias urn:example:one:0

    class Two:
        @hookimpl
        def jet_register_ciphers(self) -> list[Cipher]:
            return [AESGCMCipher(24, "urn:example:one:0"), AESGCMCipher(24, "urn:example:two")]

    pm = PluginManager(plugins={"one": One(), "two": Two()}, entry_points=False)
    assert [e.reason for e in pm.load_errors] == [
        "cipher 'urn:example:one:0' is provided by plugin 'one' and by plugin 'two'; "
        "none of them is loaded",
        "cipher 'urn:example:one:0' is provided by plugin 'two' and by plugin 'one'; "
        "none of them is loaded",
    ]
    for urn in ("urn:example:one", "urn:example:one:0"):
        with pytest.raises(UnknownCipher):
            pm.cipher(urn)
    assert pm.cipher("urn:example:two").urn == "urn:example:two"
    assert "one" not in pm.plugin_names and "two" in pm.plugin_names


def test_load_errors_are_not_printed_by_the_last_resort_handler() -> None:
    """Without a logging configuration a load error is reported once (by the application
    from load_errors), not a second time by logging's last-resort handler."""
    code = (
        "from jet_trio.plugin import PluginManager\n"
        "class Raising:\n"
        "    from jet_trio.plugin import hookimpl\n"
        "    @hookimpl\n"
        "    def jet_register_ciphers(self):\n"
        "        raise RuntimeError('boom')\n"
        "pm = PluginManager(plugins={'raising': Raising()}, entry_points=False)\n"
        "print(len(pm.load_errors))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == "1\n"
    assert done.stderr == ""


def test_validated_attributes_are_fixed_at_load_time() -> None:
    """A plugin cannot change a cipher's tag size or an envelope's features once validated,
    and a property that raises later cannot break a transfer or the listing."""
    pm = _manager("")
    cipher, env = pm.cipher(URN), pm.envelope(NS)
    raw_cipher, raw_env = unguarded(cipher), unguarded(env)
    assert isinstance(raw_cipher, BuggyCipher) and isinstance(raw_env, BuggyEnvelope)
    raw_cipher.tag_size = 4
    raw_env.features = "not a tuple"  # type: ignore[assignment]
    assert cipher.tag_size == 16 and env.features == (NS,)
    assert _sealed(cipher, b"x")[1] == b"\1" * 16
    assert NS in pm.disco_features()
