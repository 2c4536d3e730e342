"""Guarded views of third-party plugin objects: a plugin's bug becomes a :class:`PluginError`.

The plugin manager hands out a guarded view of every cipher and envelope method a third-party
plugin provides (the built-ins are jet-trio's own code and are used as they are). The view
checks every call into the plugin during a transfer: an exception that is not a
:class:`~jet_trio.JetError` (the typed errors a plugin raises on purpose, such as
:class:`~jet_trio.plugin.TagMismatch` or :class:`~jet_trio.plugin.EnvelopeError`) and every
result of the wrong type or size is a bug of the plugin. It becomes a :class:`PluginError`
naming the plugin and its distribution (a :class:`~jet_trio.SecurityError`: the transfer ends
with ``security-error`` and that text, never with a fallback), and the manager refuses that
cipher or envelope method from then on (:attr:`~jet_trio.plugin.PluginManager.load_errors`).

A view is its plugin object for everything else: attribute reads go to the object, and
``isinstance(view, ThePluginClass)`` holds (``view.__class__`` is the plugin's class). The
attributes the manager validated at load time (a cipher's URN and sizes, an envelope method's
namespace and features) are read once, then: the plugin cannot change them afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from lxml import etree

from .._errors import JetError, SecurityError
from .._jet.cipher import Cipher, StreamDecryptor, StreamEncryptor, TransportSecret
from .._jet.envelope import DecryptedEnvelope, EnvelopeMethod, Trust
from .._xmpp.jid import JID

__all__ = ["GuardedCipher", "GuardedEnvelope", "PluginError", "unguarded"]


class PluginError(SecurityError):
    """A plugin broke its contract during a transfer (an unexpected exception, a result of the
    wrong type or size): a bug of that plugin, not of jet-trio.

    ``plugin`` is the plugin's name (its entry-point name, or the name of an object passed in
    code), ``distribution`` the installed distribution that provides it (``None`` for a plugin
    passed in code). The cipher or envelope method concerned is not used again by the
    :class:`~jet_trio.plugin.PluginManager` that loaded it.
    """

    def __init__(self, plugin: str, distribution: str | None, problem: str) -> None:
        where = f" (distribution {distribution})" if distribution else ""
        super().__init__(f"bug in the plugin {plugin!r}{where}: {problem}")
        self.plugin = plugin
        self.distribution = distribution
        self.problem = problem


OnFailure = Callable[[str], None]
"""Called with the problem when a guarded object caught its plugin's bug (the manager refuses
the object and records the problem)."""


class _Owner:
    """Who made a guarded object, and whom to tell when it misbehaves."""

    __slots__ = ("distribution", "on_failure", "plugin", "what")

    def __init__(self, plugin: str, distribution: str | None, what: str, on_failure: OnFailure):
        self.plugin = plugin
        self.distribution = distribution
        self.what = what
        self.on_failure = on_failure

    def failure(self, call: str, exc: BaseException | None = None, detail: str = "") -> PluginError:
        if exc is not None:
            detail = f"raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        problem = f"{self.what}: {call} {detail}"
        self.on_failure(problem)
        return PluginError(self.plugin, self.distribution, f"{problem}; it is no longer used")


def _describe(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{len(value)} bytes"
    return f"a {type(value).__name__}"


class _GuardedView:
    """What a guarded envelope method and a guarded cipher share: the attributes the manager
    validated (``_JT_FIXED``) are copied once, the guard's own names (``_JT_OWN``) are its
    own, and every other attribute is the plugin object's. ``__class__`` is the plugin's class,
    so listings name the plugin, not the guard."""

    _JT_FIXED: tuple[str, ...]
    _JT_OWN: frozenset[str]
    _jt_inner: Any
    _jt_owner: _Owner

    def __init__(
        self, inner: Any, what: str, plugin: str, distribution: str | None, on_failure: OnFailure
    ) -> None:
        object.__setattr__(self, "_jt_inner", inner)
        for name in type(self)._JT_FIXED:
            object.__setattr__(self, name, getattr(inner, name))
        object.__setattr__(self, "_jt_owner", _Owner(plugin, distribution, what, on_failure))

    def __getattribute__(self, name: str) -> Any:
        if name in type(self)._JT_OWN:
            if name == "__class__":
                return object.__getattribute__(self, "_jt_inner").__class__
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_jt_inner"), name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self._jt_inner, name, value)

    def __repr__(self) -> str:
        return repr(self._jt_inner)


# -- envelope methods ------------------------------------------------------------------------

# Read once, when the manager validated them: a plugin cannot change them afterwards.
_ENVELOPE_FIXED: Final = ("namespace", "features")
_ENVELOPE_OWN: Final = frozenset(
    {"encrypt", "decrypt", "_jt_inner", "_jt_owner", "__class__", "__dict__", *_ENVELOPE_FIXED}
)


class GuardedEnvelope(_GuardedView, EnvelopeMethod):
    """An envelope method of a third-party plugin whose ``encrypt`` and ``decrypt`` are checked.

    ``start()`` is called as it is: the manager isolates it itself.
    """

    _JT_FIXED = _ENVELOPE_FIXED
    _JT_OWN = _ENVELOPE_OWN
    _jt_inner: EnvelopeMethod

    def __init__(
        self, inner: EnvelopeMethod, plugin: str, distribution: str | None, on_failure: OnFailure
    ) -> None:
        what = f"envelope method {inner.namespace!r}"
        _GuardedView.__init__(self, inner, what, plugin, distribution, on_failure)

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        owner = self._jt_owner
        try:
            result = await self._jt_inner.encrypt(secret, peer)
        except JetError:
            raise
        except Exception as exc:
            raise owner.failure("encrypt()", exc) from exc
        if not isinstance(result, etree._Element):
            raise owner.failure("encrypt()", detail=f"returned {_describe(result)}, not an element")
        return result

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        owner = self._jt_owner
        try:
            result = await self._jt_inner.decrypt(element, sender, cipher)
        except JetError:
            raise
        except Exception as exc:
            raise owner.failure("decrypt()", exc) from exc
        if not isinstance(result, DecryptedEnvelope):
            wrong = f"returned {_describe(result)}, not a DecryptedEnvelope"
            raise owner.failure("decrypt()", detail=wrong)
        problem = _decrypted_problem(result, cipher)
        if problem is not None:
            raise owner.failure("decrypt()", detail=problem)
        if result.secret.cipher is not cipher:
            # The secret decrypts with the cipher jet-trio looked up (guarded), not with an
            # object of the plugin's own.
            secret = TransportSecret(result.secret.key, result.secret.iv, cipher)
            result = dataclasses.replace(result, secret=secret)
        return result


def _decrypted_problem(result: DecryptedEnvelope, cipher: Cipher) -> str | None:
    secret = result.secret
    if not isinstance(secret, TransportSecret):
        return f"returned a DecryptedEnvelope whose secret is {_describe(secret)}"
    if secret.cipher.urn not in cipher.names:
        return (
            f"returned a secret for the cipher {secret.cipher.urn!r}, not for {cipher.urn!r} "
            "that the <security> element names"
        )
    if not isinstance(result.sender_identity, JID):
        return (
            "returned a DecryptedEnvelope whose sender_identity is "
            f"{_describe(result.sender_identity)}, not a JID"
        )
    if not isinstance(result.trust, Trust):
        return f"returned a DecryptedEnvelope whose trust is {result.trust!r}, not a Trust"
    if not isinstance(result.detail, str):
        return f"returned a DecryptedEnvelope whose detail is {_describe(result.detail)}"
    return None


# -- ciphers ---------------------------------------------------------------------------------

_CIPHER_FIXED: Final = (
    "urn",
    "aliases",
    "key_size",
    "iv_size",
    "accepted_iv_sizes",
    "tag_size",
    "max_plaintext_size",
)
_CIPHER_OWN: Final = frozenset(
    {
        *_CIPHER_FIXED,
        "new_encryptor",
        "new_decryptor",
        "encryptor",
        "decryptor",
        "check_key_iv",
        "names",
        "_jt_inner",
        "_jt_owner",
        "_jt_stream",
        "__class__",
        "__dict__",
    }
)


class GuardedCipher(_GuardedView, Cipher):
    """A cipher of a third-party plugin whose encryptors and decryptors are checked.

    The sizes the streaming contract needs are checked on every call: ``update()`` returns
    exactly as many bytes as it was given, the encryptor's ``finalize()`` a tag of
    ``tag_size`` bytes, the decryptor's ``finalize()`` ``None`` (a wrong tag raises
    :class:`~jet_trio.plugin.TagMismatch`).
    """

    _JT_FIXED = _CIPHER_FIXED
    _JT_OWN = _CIPHER_OWN
    _jt_inner: Cipher

    def __init__(
        self, inner: Cipher, plugin: str, distribution: str | None, on_failure: OnFailure
    ) -> None:
        _GuardedView.__init__(
            self, inner, f"cipher {inner.urn!r}", plugin, distribution, on_failure
        )

    def _jt_stream(self, make: str, key: bytes, iv: bytes) -> object:
        owner = self._jt_owner
        try:
            stream = getattr(self._jt_inner, make)(key, iv)
        except JetError:
            raise
        except Exception as exc:
            raise owner.failure(f"{make}()", exc) from exc
        for method in ("update", "finalize"):
            if not callable(getattr(stream, method, None)):
                raise owner.failure(
                    f"{make}()", detail=f"returned {_describe(stream)} without {method}()"
                )
        return stream

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        inner: StreamEncryptor = self._jt_stream("new_encryptor", key, iv)  # type: ignore[assignment]
        return _GuardedEncryptor(inner, self._jt_owner, self.tag_size)

    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        inner: StreamDecryptor = self._jt_stream("new_decryptor", key, iv)  # type: ignore[assignment]
        return _GuardedDecryptor(inner, self._jt_owner)


class _GuardedEncryptor:
    __slots__ = ("_inner", "_owner", "_tag_size", "_update")

    def __init__(self, inner: StreamEncryptor, owner: _Owner, tag_size: int) -> None:
        self._inner = inner
        self._owner = owner
        self._tag_size = tag_size
        self._update = inner.update  # per chunk: one attribute lookup less

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        try:
            out = self._update(data)
        except JetError:
            raise
        except Exception as exc:
            raise self._owner.failure("encryptor update()", exc) from exc
        if out.__class__ is not bytes or len(out) != len(data):
            if isinstance(out, bytes) and len(out) == len(data):
                return out  # a subclass of bytes
            raise self._owner.failure(
                "encryptor update()",
                detail=f"returned {_describe(out)} for {len(data)} bytes of plaintext (the "
                "ciphertext must be bytes, exactly as long as the plaintext)",
            )
        return out

    def finalize(self) -> bytes:
        try:
            tag = self._inner.finalize()
        except JetError:
            raise
        except Exception as exc:
            raise self._owner.failure("encryptor finalize()", exc) from exc
        if not isinstance(tag, bytes) or len(tag) != self._tag_size:
            raise self._owner.failure(
                "encryptor finalize()",
                detail=f"returned {_describe(tag)}, not a tag of tag_size ({self._tag_size}) bytes",
            )
        return tag


class _GuardedDecryptor:
    __slots__ = ("_inner", "_owner", "_update")

    def __init__(self, inner: StreamDecryptor, owner: _Owner) -> None:
        self._inner = inner
        self._owner = owner
        self._update = inner.update  # per chunk: one attribute lookup less

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        try:
            out = self._update(data)
        except JetError:
            raise
        except Exception as exc:
            raise self._owner.failure("decryptor update()", exc) from exc
        if out.__class__ is not bytes or len(out) != len(data):
            if isinstance(out, bytes) and len(out) == len(data):
                return out  # a subclass of bytes
            raise self._owner.failure(
                "decryptor update()",
                detail=f"returned {_describe(out)} for {len(data)} bytes of ciphertext (the "
                "plaintext must be bytes, exactly as long as the ciphertext)",
            )
        return out

    def finalize(self, tag: bytes, /) -> None:
        try:
            result = self._inner.finalize(tag)  # type: ignore[func-returns-value]
        except JetError:
            raise
        except Exception as exc:
            raise self._owner.failure("decryptor finalize()", exc) from exc
        if result is not None:
            raise self._owner.failure(
                "decryptor finalize()",
                detail=f"returned {result!r}: it must return None, and raise TagMismatch when "
                "the tag is wrong",
            )


def unguarded(obj: object) -> object:
    """The plugin's own object behind a guarded view (``obj`` itself otherwise)."""
    if isinstance(obj, GuardedCipher | GuardedEnvelope):
        return object.__getattribute__(obj, "_jt_inner")
    return obj
