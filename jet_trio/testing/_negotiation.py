"""Server side of XMPP stream negotiation (RFC 6120), sans-IO.

:class:`ServerNegotiation` takes the client's stream header and negotiation elements and answers
with :data:`Action` objects: bytes to send, "start TLS now", "restart the stream" (fresh parser),
"close", and "the client asks to bind this resource" (the router decides the full JID).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import scramp
from lxml import etree

from .._xmpp import ns as ns
from .._xmpp.jid import JID, InvalidJID
from .._xmpp.xml import serialize, stream_footer, stream_header
from ._elements import IQ, Element, StanzaError, error_reply, make, qname, stanza, stream_error, sub

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
PLUS_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS")
SASL_CB = "urn:xmpp:sasl-cb:0"  # XEP-0440


@dataclass(frozen=True)
class Send:
    """Write these bytes to the connection."""

    data: bytes


@dataclass(frozen=True)
class StartTLS:
    """Do the TLS handshake now, then call :meth:`ServerNegotiation.tls_established`."""


@dataclass(frozen=True)
class Restart:
    """The stream restarts: use a fresh parser for what follows."""


@dataclass(frozen=True)
class Close:
    """Close the connection (after sending what came before)."""


@dataclass(frozen=True)
class BindRequested:
    """The client asked to bind ``resource`` (``None``: pick one) with iq ``iq_id``."""

    iq_id: str | None
    resource: str | None


Action = Send | StartTLS | Restart | Close | BindRequested


class Phase(enum.Enum):
    """Where a connection is in its negotiation."""

    HEADER = enum.auto()
    NEGOTIATING = enum.auto()
    BIND = enum.auto()
    BOUND = enum.auto()
    CLOSED = enum.auto()


def _header(domain: str) -> bytes:
    return stream_header(from_=domain, id=secrets.token_hex(8))


def _scram_username(raw: str) -> str:
    return raw.replace("=2C", ",").replace("=3D", "=")


class ServerNegotiation:
    """One client connection's negotiation state (TLS, SASL, bind), sans-IO.

    ``password_of(localpart)`` returns the account's password or ``None``.

    Channel binding: the shell puts the binding data of the TLS layer into :attr:`bindings`
    (type -> data); the ``-PLUS`` mechanisms are then offered, for the types in
    ``binding_types``. ``announce_bindings`` advertises them (XEP-0440); ``downgrade_protection``
    adds the XEP-0474 ``h`` attribute to the SCRAM server-first message.
    """

    def __init__(
        self,
        domain: str,
        password_of: Callable[[str], str | None],
        *,
        tls_offered: bool = False,
        tls_required: bool = False,
        secure: bool = False,
        allow_plain_without_tls: bool = False,
        binding_types: Sequence[str] = ("tls-unique", "tls-server-end-point"),
        announce_bindings: bool = True,
        downgrade_protection: bool = True,
    ) -> None:
        self.domain = domain
        self.bindings: dict[str, bytes] = {}
        self.binding_types = tuple(binding_types)
        self.announce_bindings = announce_bindings
        self.downgrade_protection = downgrade_protection
        #: The SASL mechanism and channel-binding type of the successful login.
        self.mechanism: str | None = None
        self.channel_binding: str | None = None
        self.phase = Phase.HEADER
        self.secure = secure
        self.user: str | None = None
        self.auth_failures = 0
        self.error_condition: str | None = None
        self._password_of = password_of
        self._tls_offered = tls_offered and not secure
        self._tls_required = tls_required and not secure
        self._allow_plain_without_tls = allow_plain_without_tls
        self._header_sent = False
        self._scram: scramp.core.ScramServer | None = None
        self._pending_mechanism: str | None = None
        self._scram_user = ""

    # -- inputs -------------------------------------------------------------------------------

    def stream_opened(
        self, attrs: Mapping[str, str], default_namespace: str | None = ns.CLIENT
    ) -> list[Action]:
        """The client's ``<stream:stream>`` header arrived."""
        if self.phase is not Phase.HEADER:
            return self.stream_error("invalid-xml", "unexpected stream header")
        out: list[Action] = [Send(_header(self.domain))]
        self._header_sent = True
        to = attrs.get("to")
        if to is None or not self._is_our_domain(to):
            return out + self.stream_error("host-unknown")
        if default_namespace != ns.CLIENT:
            return out + self.stream_error("invalid-namespace")
        if attrs.get("version") != "1.0":
            return out + self.stream_error("unsupported-version")
        self.phase = Phase.BIND if self.user is not None else Phase.NEGOTIATING
        out.append(Send(serialize(self._features())))
        return out

    def receive(self, element: Element) -> list[Action]:
        """A negotiation element (or the bind iq) arrived."""
        if self.phase is Phase.NEGOTIATING:
            if element.tag == qname(ns.TLS, "starttls"):
                return self._starttls()
            if etree.QName(element).namespace == ns.SASL:
                return self._sasl(element)
        elif self.phase is Phase.BIND and element.tag == IQ:
            return self._bind(element)
        return self.stream_error("not-authorized")

    def tls_established(self) -> None:
        """The TLS handshake requested by :class:`StartTLS` succeeded; expect a new header."""
        self.secure = True
        self._tls_offered = self._tls_required = False
        self._header_sent = False
        self.phase = Phase.HEADER

    def bound(self, iq_id: str | None, jid: JID) -> list[Action]:
        """Answer the bind request with ``jid``, chosen by the router."""
        self.phase = Phase.BOUND
        iq = stanza("iq", {"type": "result", "id": iq_id})
        bind = sub(iq, qname(ns.BIND, "bind"))
        sub(bind, qname(ns.BIND, "jid"), text=str(jid))
        return [Send(serialize(iq))]

    def stream_error(self, condition: str, text: str | None = None) -> list[Action]:
        """Send a stream error (after our header if it was not sent yet) and close."""
        self.error_condition = condition
        out: list[Action] = []
        if not self._header_sent:
            out.append(Send(_header(self.domain)))
            self._header_sent = True
        out.append(Send(serialize(stream_error(condition, text)) + stream_footer()))
        out.append(Close())
        self.phase = Phase.CLOSED
        return out

    def stream_closed(self) -> list[Action]:
        """The client sent ``</stream:stream>``: close ours too."""
        self.phase = Phase.CLOSED
        return [Send(stream_footer()), Close()]

    # -- internals ----------------------------------------------------------------------------

    def _is_our_domain(self, to: str) -> bool:
        try:
            return JID(to) == JID(self.domain)
        except InvalidJID:
            return False

    def mechanisms(self) -> list[str]:
        """The SASL mechanisms offered right now."""
        if self._tls_required:
            return []
        mechs = list(PLUS_MECHANISMS) if self._binding_types() else []
        mechs += SCRAM_MECHANISMS
        if self.secure or self._allow_plain_without_tls:
            mechs.append("PLAIN")
        return mechs

    def _binding_types(self) -> list[str]:
        """The channel-binding types this connection can check."""
        if not self.secure:
            return []
        return [t for t in self.binding_types if t in self.bindings]

    def _features(self) -> Element:
        features = etree.Element(qname(ns.STREAM, "features"), nsmap={"stream": ns.STREAM})
        if self.user is not None:
            sub(features, qname(ns.BIND, "bind"))
            session = sub(features, qname(ns.SESSION, "session"))
            sub(session, qname(ns.SESSION, "optional"))
            return features
        if self._tls_offered:
            starttls = sub(features, qname(ns.TLS, "starttls"))
            if self._tls_required:
                sub(starttls, qname(ns.TLS, "required"))
        mechanisms = self.mechanisms()
        if mechanisms:
            mechs = sub(features, qname(ns.SASL, "mechanisms"))
            for name in mechanisms:
                sub(mechs, qname(ns.SASL, "mechanism"), text=name)
        types = self._binding_types()
        if types and self.announce_bindings:
            cb = sub(features, qname(SASL_CB, "sasl-channel-binding"))
            for kind in types:
                sub(cb, qname(SASL_CB, "channel-binding"), {"type": kind})
        return features

    def _starttls(self) -> list[Action]:
        if not self._tls_offered:
            return [
                Send(serialize(make(qname(ns.TLS, "failure"))) + stream_footer()),
                Close(),
            ]
        return [Send(serialize(make(qname(ns.TLS, "proceed")))), StartTLS()]

    def _sasl_failure(self, condition: str) -> list[Action]:
        self._scram = None
        self._pending_mechanism = None
        failure = make(qname(ns.SASL, "failure"))
        sub(failure, qname(ns.SASL, condition))
        return [Send(serialize(failure))]

    def _sasl(self, element: Element) -> list[Action]:
        name = etree.QName(element).localname
        if name == "abort":
            return self._sasl_failure("aborted")
        text = (element.text or "").strip()
        try:
            payload = b"" if text == "=" else base64.b64decode(text, validate=True)
        except binascii.Error:
            return self._sasl_failure("incorrect-encoding")
        if name == "auth":
            mechanism = element.get("mechanism", "")
            if self._tls_required and not self.secure:
                return self._sasl_failure("encryption-required")
            if mechanism not in self.mechanisms():
                return self._sasl_failure("invalid-mechanism")
            if mechanism == "PLAIN":
                return self._plain(payload)
            self._pending_mechanism = mechanism
            self._scram = None
            if not payload:
                return [Send(serialize(make(qname(ns.SASL, "challenge"), text="=")))]
            return self._scram_step(payload)
        if name == "response" and self._pending_mechanism is not None:
            return self._scram_step(payload)
        return self._sasl_failure("malformed-request")

    def _plain(self, payload: bytes) -> list[Action]:
        try:
            authzid, authcid, password = payload.decode().split("\0")
            user = JID.from_parts(authcid, self.domain).local
        except (UnicodeDecodeError, ValueError, InvalidJID):
            return self._fail()
        expected = self._password_of(user) if user is not None else None
        if (
            user is None
            or expected is None
            or not secrets.compare_digest(expected.encode(), password.encode())
        ):
            return self._fail()
        if authzid and authzid not in (authcid, f"{authcid}@{self.domain}"):
            return self._sasl_failure("invalid-authzid")
        return self._succeed(user, None)

    def _auth_info(self, mechanism: scramp.ScramMechanism) -> Callable[[str], object]:
        def lookup(username: str) -> object:
            user = JID.from_parts(_scram_username(username), self.domain).local
            password = self._password_of(user) if user is not None else None
            if user is None or password is None:
                raise KeyError(username)
            self._scram_user = user
            return mechanism.make_auth_info(password)

        return lookup

    def _scram_step(self, payload: bytes) -> list[Action]:
        assert self._pending_mechanism is not None
        try:
            text = payload.decode()
            if self._scram is None:
                mechanism = scramp.ScramMechanism(self._pending_mechanism)
                cb = self._channel_binding_for(text)
                self._scram = mechanism.make_server(self._auth_info(mechanism), channel_binding=cb)
                self._scram.set_client_first(text)
                first = self._scram.get_server_first()
                if self.downgrade_protection:
                    # XEP-0474; scramp signs what it keeps in server_first, so keep it there.
                    first += ",h=" + self._downgrade_hash(mechanism.name)
                    self._scram.server_first = first
                self.channel_binding = cb[0] if cb is not None and text.startswith("p=") else None
                challenge = first.encode()
                return [Send(serialize(make(qname(ns.SASL, "challenge"), text=_b64(challenge))))]
            self._scram.set_client_final(text)
            final = self._scram.get_server_final().encode()
        except (scramp.ScramException, KeyError, InvalidJID, UnicodeDecodeError, ValueError):
            return self._fail()
        return self._succeed(self._scram_user, final)

    def _channel_binding_for(self, client_first: str) -> tuple[str, bytes] | None:
        """What scramp checks the client's GS2 header against: the type the client asked for,
        or (for ``y``) any type we support, so that scramp refuses the downgrade."""
        flag = client_first.split(",", 1)[0]
        types = self._binding_types()
        if flag.startswith("p="):
            kind = flag[2:]
            if kind not in types:
                raise ValueError(f"unsupported channel binding {kind}")
            return kind, self.bindings[kind]
        if flag == "y" and types:
            return types[0], self.bindings[types[0]]
        return None

    def _downgrade_hash(self, mechanism: str) -> str:
        text = "\x1e".join(sorted(self.mechanisms()))
        types = self._binding_types()
        if types and self.announce_bindings:
            text += "\x1f" + "\x1e".join(sorted(types))
        algo = "sha256" if mechanism.startswith("SCRAM-SHA-256") else "sha1"
        return base64.b64encode(hashlib.new(algo, text.encode()).digest()).decode()

    def _fail(self) -> list[Action]:
        self.auth_failures += 1
        return self._sasl_failure("not-authorized")

    def _succeed(self, user: str, additional: bytes | None) -> list[Action]:
        self.user = user
        self.mechanism = self._pending_mechanism or "PLAIN"
        self._scram = None
        self._pending_mechanism = None
        self._header_sent = False
        self.phase = Phase.HEADER
        text = _b64(additional) if additional else None
        return [Send(serialize(make(qname(ns.SASL, "success"), text=text))), Restart()]

    def _bind(self, iq: Element) -> list[Action]:
        bind = iq.find(qname(ns.BIND, "bind"))
        if iq.get("type") != "set" or bind is None:
            error = StanzaError("not-allowed")
            return [Send(serialize(error_reply(iq, self.domain, error)))]
        resource = bind.findtext(qname(ns.BIND, "resource"))
        return [BindRequested(iq.get("id"), resource.strip() if resource else None)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() or "="
