"""Jabber identifiers (RFC 7622), normalised with precis-i18n."""

from __future__ import annotations

import ipaddress
import unicodedata
from functools import lru_cache

import precis_i18n

from .._errors import JetError

__all__ = ["JID", "InvalidJID"]

_MAX_PART = 1023
# RFC 7622 3.3.1: characters forbidden in a localpart on top of the PRECIS profile.
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")


class InvalidJID(JetError, ValueError):
    """A string that is not a valid JID; the message says which part is wrong and why."""


def _reason(exc: UnicodeError) -> str:
    return str(getattr(exc, "reason", exc))


def _check_len(part: str, what: str, raw: str) -> None:
    if not part:
        raise InvalidJID(f"{raw!r}: the {what} is empty")
    if len(part.encode()) > _MAX_PART:
        raise InvalidJID(f"{raw!r}: the {what} is longer than {_MAX_PART} bytes")


def _localpart(value: str, raw: str) -> str:
    _check_len(value, "localpart", raw)
    try:
        out = str(_USERNAME.enforce(value))
    except UnicodeError as exc:
        raise InvalidJID(f"{raw!r}: invalid localpart ({_reason(exc)})") from None
    bad = _LOCAL_FORBIDDEN.intersection(out)
    if bad:
        raise InvalidJID(f"{raw!r}: the localpart may not contain {''.join(sorted(bad))!r}")
    _check_len(out, "localpart", raw)
    return out


def _domainpart(value: str, raw: str) -> str:
    if value.startswith("[") and value.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(value[1:-1]).compressed}]"
        except ValueError:
            raise InvalidJID(f"{raw!r}: invalid IPv6 domainpart") from None
    value = value.removesuffix(".")
    _check_len(value, "domainpart", raw)
    out = unicodedata.normalize("NFC", value.lower())
    for label in out.split("."):
        if not label:
            raise InvalidJID(f"{raw!r}: the domainpart has an empty label")
        if label.isascii() and len(label) > 63:
            raise InvalidJID(f"{raw!r}: a domain label is longer than 63 characters")
    if any(c.isspace() or c in "@/<>\"'&" or unicodedata.category(c).startswith("C") for c in out):
        raise InvalidJID(f"{raw!r}: the domainpart contains a forbidden character")
    return out


def _resourcepart(value: str, raw: str) -> str:
    _check_len(value, "resourcepart", raw)
    try:
        out = str(_OPAQUE.enforce(value))
    except UnicodeError as exc:
        raise InvalidJID(f"{raw!r}: invalid resourcepart ({_reason(exc)})") from None
    _check_len(out, "resourcepart", raw)
    return out


@lru_cache(maxsize=4096)
def _parse(raw: str) -> tuple[str | None, str, str | None]:
    rest, sep, resource = raw.partition("/")
    res = _resourcepart(resource, raw) if sep else None
    local, at, domain = rest.rpartition("@")
    if not at:
        local, domain = "", rest
        loc = None
    else:
        loc = _localpart(local, raw)
    return loc, _domainpart(domain, raw), res


class JID:
    """An immutable, normalised JID: ``localpart@domainpart/resourcepart``.

    ``JID("Alice@Example.com/Phone")`` normalises to ``alice@example.com/Phone``; invalid input
    raises :class:`InvalidJID`. Equal JIDs compare and hash equal.
    """

    __slots__ = ("_domain", "_local", "_resource", "_str")
    _local: str | None
    _domain: str
    _resource: str | None
    _str: str

    def __init__(self, jid: str | JID) -> None:
        if isinstance(jid, JID):
            self._local, self._domain, self._resource = jid._local, jid._domain, jid._resource
            self._str = jid._str
            return
        if not isinstance(jid, str):
            raise InvalidJID(f"a JID must be a string, not {type(jid).__name__}")
        self._local, self._domain, self._resource = _parse(jid)
        self._str = self._render()

    @classmethod
    def from_parts(cls, local: str | None, domain: str, resource: str | None = None) -> JID:
        """Build a JID from its parts (each normalised)."""
        text = domain
        if local is not None:
            text = f"{local}@{text}"
        if resource is not None:
            text = f"{text}/{resource}"
        return cls(text)

    def _render(self) -> str:
        text = self._domain
        if self._local is not None:
            text = f"{self._local}@{text}"
        if self._resource is not None:
            text = f"{text}/{self._resource}"
        return text

    @property
    def local(self) -> str | None:
        """The localpart, or ``None`` (a server or component JID)."""
        return self._local

    @property
    def domain(self) -> str:
        """The domainpart."""
        return self._domain

    @property
    def resource(self) -> str | None:
        """The resourcepart, or ``None`` for a bare JID."""
        return self._resource

    @property
    def bare(self) -> JID:
        """This JID without its resource."""
        if self._resource is None:
            return self
        return JID.from_parts(self._local, self._domain)

    @property
    def is_bare(self) -> bool:
        """True if there is no resource."""
        return self._resource is None

    def with_resource(self, resource: str) -> JID:
        """The full JID with ``resource`` on this JID's bare part."""
        return JID.from_parts(self._local, self._domain, resource)

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"JID({self._str!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JID):
            return self._str == other._str
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._str)
