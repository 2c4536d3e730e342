"""Client-side stream negotiation (RFC 6120): STARTTLS, SASL, resource binding. Sans-IO.

Feed parser events to :meth:`ClientNegotiator.receive`; perform the actions it returns. The trio
shell does the TLS handshake when told (:class:`StartTLS`) and then calls
:meth:`ClientNegotiator.tls_established`.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from lxml import etree

from . import _ns
from ._errors import JetError, LocalProtocolError, RemoteProtocolError
from ._jid import JID, InvalidJID
from ._sasl import DEFAULT_MECHANISMS, AuthenticationError, SaslMechanism, choose_mechanism
from ._stanza import IQ, E, make_iq, parse_stanza_error, parse_stream_error
from ._xml import Event, StreamClosed, StreamOpened, stream_header

__all__ = [
    "ClientNegotiator",
    "ConnectionLost",
    "Negotiated",
    "RestartStream",
    "SendBytes",
    "StartTLS",
    "TLSError",
]

_FEATURES: Final = f"{{{_ns.STREAM}}}features"
_STREAM_ERROR: Final = f"{{{_ns.STREAM}}}error"


class TLSError(JetError):
    """TLS could not be set up: certificate not trusted, handshake failure, or no STARTTLS."""


class ConnectionLost(JetError):
    """The connection to the server ended unexpectedly."""


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


class ClientNegotiator:
    """Negotiate a c2s stream for ``jid`` (its resource, if any, is requested at bind)."""

    def __init__(
        self,
        jid: JID,
        password: str,
        *,
        starttls: bool = True,
        tls_active: bool = False,
        mechanisms: Sequence[str] = DEFAULT_MECHANISMS,
    ) -> None:
        if jid.local is None:
            raise LocalProtocolError(f"{jid} has no localpart: cannot log in with it")
        self._jid = jid
        self._password = password
        self._starttls = starttls
        self._tls = tls_active
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
        return self._tls

    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism used, once chosen."""
        return None if self._sasl is None else self._sasl.name

    def start(self) -> list[Action]:
        """The bytes that open the stream."""
        return [SendBytes(self._header())]

    def _header(self) -> bytes:
        return stream_header(to=self._jid.domain, from_=str(self._jid.bare))

    def tls_established(self) -> list[Action]:
        """Call after the TLS handshake succeeded."""
        if self._state is not _State.TLS_HANDSHAKE:
            raise LocalProtocolError("tls_established() called while no STARTTLS was pending")
        self._tls = True
        self._state = _State.HEADER
        return [RestartStream(), SendBytes(self._header())]

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
        if not self._tls and self._starttls:
            if el.find(f"{{{_ns.TLS}}}starttls") is None:
                raise TLSError(
                    "the server does not offer STARTTLS; refusing to continue unencrypted"
                )
            self._state = _State.TLS_PROCEED
            return [SendBytes(etree.tostring(E(f"{{{_ns.TLS}}}starttls")))]
        if not self._authenticated:
            mechs = el.find(f"{{{_ns.SASL}}}mechanisms")
            offered = [] if mechs is None else [m.text or "" for m in mechs]
            name = choose_mechanism(offered, allowed=self._mechanisms, secure=self._tls)
            self._sasl = SaslMechanism(name, self._jid.local or "", self._password)
            self._state = _State.SASL
            auth = E(
                f"{{{_ns.SASL}}}auth",
                {"mechanism": name},
                text=base64.b64encode(self._sasl.initial()).decode() or "=",
            )
            return [SendBytes(etree.tostring(auth))]
        if el.find(f"{{{_ns.BIND}}}bind") is None:
            raise RemoteProtocolError("the server offers no resource binding")
        bind = E(f"{{{_ns.BIND}}}bind")
        if self._jid.resource:
            bind.append(E(f"{{{_ns.BIND}}}resource", text=self._jid.resource))
        iq = make_iq("set", bind)
        self._iq_id = iq.get("id", "")
        self._state = _State.BIND
        return [SendBytes(etree.tostring(iq))]

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
        return [Negotiated(self._bound, self._stream_id, self._features)]

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
