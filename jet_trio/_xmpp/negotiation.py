"""Client-side stream negotiation (RFC 6120): STARTTLS, SASL, resource binding. Sans-IO.

Feed parser events to :meth:`ClientNegotiator.receive`; perform the actions it returns. The trio
shell does the TLS handshake when told (:class:`StartTLS`) and then calls
:meth:`ClientNegotiator.tls_established` with what it learned (:class:`TLSInfo`).

The one rule of the login lives here, in :meth:`ClientNegotiator._require_verified_tls`: no SASL
mechanism of any kind and no resource binding before TLS is established and the certificate was
verified against the account's domain, whatever path led to this connection (direct TLS,
STARTTLS, any SRV target, an explicit host). Without TLS, STARTTLS is always required. The only
way around it is ``insecure_plaintext_for_tests``, for test servers on loopback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from lxml import etree

from .._errors import JetError, LocalProtocolError, RemoteProtocolError
from . import ns as _ns
from .jid import JID, InvalidJID
from .sasl import DEFAULT_MECHANISMS, AuthenticationError, SaslMechanism, choose_mechanism
from .stanza import IQ, E, make_iq, parse_stanza_error, parse_stream_error
from .xml import Event, StreamClosed, StreamOpened, stream_header

__all__ = [
    "ClientNegotiator",
    "ConnectionLost",
    "Negotiated",
    "RestartStream",
    "SendBytes",
    "StartTLS",
    "TLSError",
    "TLSInfo",
]

_FEATURES: Final = f"{{{_ns.STREAM}}}features"
_STREAM_ERROR: Final = f"{{{_ns.STREAM}}}error"
_SASL_CB: Final = "urn:xmpp:sasl-cb:0"  # XEP-0440

#: Channel-binding types we can produce, strongest first. ``tls-exporter`` (RFC 9266) would come
#: first, but Python's ``ssl`` module has no keying-material exporter, so it cannot be computed.
BINDING_TYPES: Final = ("tls-unique", "tls-server-end-point")


class TLSError(JetError):
    """TLS could not be set up: certificate not trusted, handshake failure, or no STARTTLS."""


class ConnectionLost(JetError):
    """The connection to the server ended unexpectedly."""


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the trio shell knows about an established TLS layer.

    ``verified_name`` is the name the peer's certificate was verified against (``None`` if the
    context did not verify both chain and name). ``bindings`` maps channel-binding types to their
    data (RFC 5929): ``tls-server-end-point`` from the peer certificate, ``tls-unique`` only on
    TLS 1.2 (it is undefined for TLS 1.3, RFC 9266).
    """

    verified_name: str | None
    version: str | None = None
    bindings: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_ssl_object(cls, obj: SSLLike, server_hostname: str) -> TLSInfo:
        """Read it from a finished handshake (``trio.SSLStream`` or ``ssl.SSLObject``)."""
        ctx = obj.context
        verified = ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        version = obj.version()
        bindings: list[tuple[str, bytes]] = []
        if version == "TLSv1.2":
            unique = obj.get_channel_binding("tls-unique")
            if unique:
                bindings.append(("tls-unique", unique))
        der = obj.getpeercert(binary_form=True)
        if der:
            with contextlib.suppress(ValueError):
                bindings.append(("tls-server-end-point", _end_point_hash(der)))
        return cls(server_hostname if verified else None, version, tuple(bindings))


class SSLLike(Protocol):
    """The parts of ``ssl.SSLObject`` (and ``trio.SSLStream``) that :class:`TLSInfo` reads."""

    @property
    def context(self) -> ssl.SSLContext: ...
    def version(self) -> str | None: ...
    def get_channel_binding(self, cb_type: str = ...) -> bytes | None: ...
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...


#: Signature algorithm OIDs (DER content octets) whose hash RFC 5929 4.1 names directly; MD5
#: and SHA-1 are replaced by SHA-256 there. Anything else (RSASSA-PSS, whose hash is in its
#: parameters, Ed25519...) is read with cryptography.
_SIGNATURE_HASHES: Final[dict[bytes, str]] = {
    bytes.fromhex("2a864886f70d010104"): "sha256",  # md5WithRSAEncryption
    bytes.fromhex("2a864886f70d010105"): "sha256",  # sha1WithRSAEncryption
    bytes.fromhex("2a864886f70d01010b"): "sha256",  # sha256WithRSAEncryption
    bytes.fromhex("2a864886f70d01010c"): "sha384",  # sha384WithRSAEncryption
    bytes.fromhex("2a864886f70d01010d"): "sha512",  # sha512WithRSAEncryption
    bytes.fromhex("2a8648ce3d040301"): "sha256",  # ecdsa-with-SHA1
    bytes.fromhex("2a8648ce3d040302"): "sha256",  # ecdsa-with-SHA256
    bytes.fromhex("2a8648ce3d040303"): "sha384",  # ecdsa-with-SHA384
    bytes.fromhex("2a8648ce3d040304"): "sha512",  # ecdsa-with-SHA512
}


def _der_item(der: bytes, pos: int) -> tuple[int, int, int]:
    """The DER item at ``pos``: (tag, start of its content, end of its content)."""
    if pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag, first = der[pos], der[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if not 1 <= n <= 4 or pos + n > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _signature_oid(der: bytes) -> bytes:
    """The signatureAlgorithm OID of a DER certificate (its content octets)."""
    tag, start, _ = _der_item(der, 0)  # Certificate ::= SEQUENCE {
    if tag != 0x30:
        raise ValueError("not a certificate")
    _, _, tbs_end = _der_item(der, start)  # tbsCertificate,
    tag, start, _ = _der_item(der, tbs_end)  # signatureAlgorithm AlgorithmIdentifier ::=
    if tag != 0x30:  # SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }
        raise ValueError("no signature algorithm")
    tag, start, end = _der_item(der, start)
    if tag != 0x06:
        raise ValueError("no signature algorithm")
    return der[start:end]


def _end_point_hash(der: bytes) -> bytes:
    """RFC 5929 4.1: the certificate hashed with its signature's hash (SHA-256 at least)."""
    name = _SIGNATURE_HASHES.get(_signature_oid(der))
    if name is not None:
        # Read from the DER: cryptography's x509 module costs ~25 ms to import, at every login.
        return hashlib.new(name, der).digest()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der)
    algo = cert.signature_hash_algorithm
    if algo is None or algo.name in ("md5", "sha1"):
        algo = hashes.SHA256()
    digest = hashes.Hash(algo)
    digest.update(der)
    return digest.finalize()


@dataclass(frozen=True, slots=True)
class SendBytes:
    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Wrap the connection in TLS now, then call :meth:`ClientNegotiator.tls_established`."""


@dataclass(frozen=True, slots=True)
class RestartStream:
    """Use a fresh XML parser from here on (the next bytes received open a new stream)."""


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The stream is ready for stanzas."""

    jid: JID
    stream_id: str | None
    features: etree._Element
    mechanism: str | None = None
    channel_binding: str | None = None


Action = SendBytes | StartTLS | RestartStream | Negotiated


class _State(enum.Enum):
    HEADER = enum.auto()
    FEATURES = enum.auto()
    TLS_PROCEED = enum.auto()
    TLS_HANDSHAKE = enum.auto()
    SASL = enum.auto()
    BIND = enum.auto()
    SESSION = enum.auto()
    READY = enum.auto()


_STAGES: Final = {
    _State.HEADER: "stream header",
    _State.FEATURES: "stream features",
    _State.TLS_PROCEED: "STARTTLS",
    _State.TLS_HANDSHAKE: "TLS handshake",
    _State.SASL: "authentication",
    _State.BIND: "resource binding",
    _State.SESSION: "session establishment",
    _State.READY: "done",
}


class ClientNegotiator:
    """Negotiate a c2s stream for ``jid`` (its resource, if any, is requested at bind).

    ``tls`` describes the TLS layer when the connection is TLS from the first byte (XEP-0368);
    otherwise STARTTLS is required. ``insecure_plaintext_for_tests`` lets a SCRAM login run
    without TLS (never PLAIN): for test servers only, nothing in jet-trio sets it by default.
    """

    def __init__(
        self,
        jid: JID,
        password: str,
        *,
        tls: TLSInfo | None = None,
        mechanisms: Sequence[str] = DEFAULT_MECHANISMS,
        insecure_plaintext_for_tests: bool = False,
    ) -> None:
        if jid.local is None:
            raise LocalProtocolError(f"{jid} has no localpart: cannot log in with it")
        self._jid = jid
        self._password = password
        self._tls = tls
        self._insecure = insecure_plaintext_for_tests
        self._mechanisms = tuple(mechanisms)
        self._authenticated = False
        self._sasl: SaslMechanism | None = None
        self._state = _State.HEADER
        self._stream_id: str | None = None
        self._bound: JID | None = None
        self._features: etree._Element | None = None
        self._iq_id = ""

    @property
    def tls_active(self) -> bool:
        return self._tls is not None

    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism used, once chosen."""
        return None if self._sasl is None else self._sasl.name

    @property
    def channel_binding(self) -> str | None:
        """The channel-binding type of the SASL exchange (``None``: none)."""
        return None if self._sasl is None else self._sasl.channel_binding

    @property
    def stage(self) -> str:
        """What the negotiation waits for now, in words (for errors and timeouts)."""
        return _STAGES[self._state]

    def start(self) -> list[Action]:
        """The bytes that open the stream."""
        return [SendBytes(self._header())]

    def _header(self) -> bytes:
        # Before TLS a passive observer reads the header: it does not learn the account.
        from_ = str(self._jid.bare) if self._tls is not None else None
        return stream_header(to=self._jid.domain, from_=from_)

    def tls_established(self, info: TLSInfo) -> list[Action]:
        """Call after the STARTTLS handshake succeeded."""
        if self._state is not _State.TLS_HANDSHAKE:
            raise LocalProtocolError("tls_established() called while no STARTTLS was pending")
        self._tls = info
        self._require_verified_tls("start the login")
        self._state = _State.HEADER
        return [RestartStream(), SendBytes(self._header())]

    def _require_verified_tls(self, what: str) -> None:
        """THE rule: nothing of the account (SASL of any kind, bind) before verified TLS."""
        if self._tls is None:
            if self._insecure:
                return
            raise TLSError(f"refusing to {what} before TLS is established")
        name = self._tls.verified_name
        if name is None:
            raise TLSError(
                f"refusing to {what}: the TLS layer did not verify the server's certificate"
            )
        try:
            same = JID(name) == JID(self._jid.domain)
        except InvalidJID:
            same = False
        if not same:
            raise TLSError(
                f"refusing to {what}: the certificate was checked for {name}, "
                f"not for the account's domain {self._jid.domain}"
            )

    def receive(self, event: Event) -> list[Action]:
        """Process one parser event; return what to do."""
        if isinstance(event, StreamClosed):
            raise ConnectionLost("the server closed the stream during login")
        if isinstance(event, StreamOpened):
            if self._state is not _State.HEADER:
                raise RemoteProtocolError("unexpected stream header")
            if event.attrs.get("version", "0.9") < "1.0":
                raise RemoteProtocolError("the server does not support XMPP 1.0 streams")
            self._stream_id = event.attrs.get("id")
            self._state = _State.FEATURES
            return []
        el = event.element
        if el.tag == _STREAM_ERROR:
            raise parse_stream_error(el)
        handler = {
            _State.FEATURES: self._on_features,
            _State.TLS_PROCEED: self._on_tls,
            _State.SASL: self._on_sasl,
            _State.BIND: self._on_bind,
            _State.SESSION: self._on_session,
        }.get(self._state)
        if handler is None:
            raise RemoteProtocolError(f"unexpected <{el.tag}> during stream negotiation")
        return handler(el)

    def _on_features(self, el: etree._Element) -> list[Action]:
        if el.tag != _FEATURES:
            raise RemoteProtocolError(f"expected <stream:features>, got <{el.tag}>")
        self._features = el
        if self._tls is None:
            if el.find(f"{{{_ns.TLS}}}starttls") is not None:
                self._state = _State.TLS_PROCEED
                return [SendBytes(etree.tostring(E(f"{{{_ns.TLS}}}starttls")))]
            if not self._insecure:
                raise TLSError(
                    "the server does not offer STARTTLS; refusing to continue unencrypted"
                )
        if not self._authenticated:
            self._require_verified_tls("authenticate")
            return self._start_sasl(el)
        self._require_verified_tls("bind a resource")
        if el.find(f"{{{_ns.BIND}}}bind") is None:
            raise RemoteProtocolError("the server offers no resource binding")
        bind = E(f"{{{_ns.BIND}}}bind")
        if self._jid.resource:
            bind.append(E(f"{{{_ns.BIND}}}resource", text=self._jid.resource))
        iq = make_iq("set", bind)
        self._iq_id = iq.get("id", "")
        self._state = _State.BIND
        return [SendBytes(etree.tostring(iq))]

    def _start_sasl(self, el: etree._Element) -> list[Action]:
        mechs = el.find(f"{{{_ns.SASL}}}mechanisms")
        offered = [] if mechs is None else [(m.text or "").strip() for m in mechs]
        server_types = _binding_types(el)
        binding = self._choose_binding(server_types)
        plus_offered = any(m.upper().endswith("-PLUS") for m in offered)
        name = choose_mechanism(
            offered,
            allowed=self._mechanisms,
            secure=self._tls is not None,
            binding=binding is not None and plus_offered,
        )
        cb: tuple[str, bytes] | None
        if name.endswith("-PLUS"):
            cb = binding
        elif plus_offered:
            cb = None  # the server binds, but to nothing we can compute: say so ("n")
        else:
            # "y": we could bind but the server offered no -PLUS; a server that does bind
            # (the offer was stripped on the way) then refuses the login.
            cb = self._tls.bindings[0] if self._tls is not None and self._tls.bindings else None
        self._sasl = SaslMechanism(
            name,
            self._jid.local or "",
            self._password,
            channel_binding=cb,
            advertised=(offered, server_types),
        )
        self._state = _State.SASL
        auth = E(
            f"{{{_ns.SASL}}}auth",
            {"mechanism": name},
            text=base64.b64encode(self._sasl.initial()).decode() or "=",
        )
        return [SendBytes(etree.tostring(auth))]

    def _choose_binding(self, server_types: Sequence[str] | None) -> tuple[str, bytes] | None:
        """The strongest channel binding we have that the server takes (XEP-0440). Without
        XEP-0440 the server's type is the default: ``tls-unique`` on TLS 1.2 (RFC 5802), and on
        TLS 1.3 ``tls-exporter`` (RFC 9266), which Python's ``ssl`` cannot compute: none."""
        if self._tls is None:
            return None
        have = dict(self._tls.bindings)
        if server_types is None:
            server_types = ["tls-unique"] if self._tls.version == "TLSv1.2" else []
        for kind in BINDING_TYPES:
            if kind in have and kind in server_types:
                return kind, have[kind]
        return None

    def _on_tls(self, el: etree._Element) -> list[Action]:
        if el.tag == f"{{{_ns.TLS}}}proceed":
            self._state = _State.TLS_HANDSHAKE
            return [StartTLS()]
        raise TLSError("the server refused STARTTLS")

    def _on_sasl(self, el: etree._Element) -> list[Action]:
        assert self._sasl is not None
        q = etree.QName(el)
        if q.namespace != _ns.SASL:
            raise RemoteProtocolError(f"unexpected <{el.tag}> during SASL")
        data = _b64(el.text)
        if q.localname == "challenge":
            reply = base64.b64encode(self._sasl.challenge(data)).decode()
            return [SendBytes(etree.tostring(E(f"{{{_ns.SASL}}}response", text=reply or None)))]
        if q.localname == "success":
            self._sasl.success(data)
            self._authenticated = True
            self._state = _State.HEADER
            return [RestartStream(), SendBytes(self._header())]
        if q.localname == "failure":
            cond = next((etree.QName(c).localname for c in el if isinstance(c.tag, str)), None)
            if cond == "text":
                cond = None
            text = el.findtext(f"{{{_ns.SASL}}}text")
            if cond == "not-authorized":
                msg = f"login as {self._jid.bare} failed: wrong password or unknown account"
            else:
                msg = f"login as {self._jid.bare} failed ({cond or 'unknown reason'})"
            if text:
                msg += f": {text}"
            raise AuthenticationError(msg, cond)
        raise RemoteProtocolError(f"unexpected <{el.tag}> during SASL")

    def _on_bind(self, el: etree._Element) -> list[Action]:
        self._check_iq_reply(el, "resource binding")
        raw = el.findtext(f"{{{_ns.BIND}}}bind/{{{_ns.BIND}}}jid")
        try:
            self._bound = JID(raw or "")
        except InvalidJID as exc:
            raise RemoteProtocolError(f"the server bound an invalid JID: {exc}") from None
        if self._bound.bare != self._jid.bare or self._bound.resource is None:
            raise RemoteProtocolError(
                f"the server bound {self._bound} to the login of {self._jid.bare}; aborting"
            )
        assert self._features is not None
        session = self._features.find(f"{{{_ns.SESSION}}}session")
        if session is not None and session.find(f"{{{_ns.SESSION}}}optional") is None:
            iq = make_iq("set", E(f"{{{_ns.SESSION}}}session"))
            self._iq_id = iq.get("id", "")
            self._state = _State.SESSION
            return [SendBytes(etree.tostring(iq))]
        return self._ready()

    def _on_session(self, el: etree._Element) -> list[Action]:
        self._check_iq_reply(el, "session establishment")
        return self._ready()

    def _ready(self) -> list[Action]:
        assert self._bound is not None and self._features is not None
        self._state = _State.READY
        return [
            Negotiated(
                self._bound,
                self._stream_id,
                self._features,
                self.mechanism,
                self.channel_binding,
            )
        ]

    def _check_iq_reply(self, el: etree._Element, what: str) -> None:
        if el.tag != IQ or el.get("id") != self._iq_id:
            raise RemoteProtocolError(f"unexpected <{el.tag}> during {what}")
        if el.get("type") == "error":
            raise parse_stanza_error(el)
        if el.get("type") != "result":
            raise RemoteProtocolError(f"bad reply to {what}")


def _b64(text: str | None) -> bytes:
    if not text or text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("invalid base64 in SASL data") from None


def _binding_types(features: etree._Element) -> list[str] | None:
    """XEP-0440: the channel-binding types the server announced (``None``: not announced)."""
    found = features.find(f".//{{{_SASL_CB}}}sasl-channel-binding")
    if found is None:
        return None
    return [t for c in found.iter(f"{{{_SASL_CB}}}channel-binding") if (t := c.get("type"))]
