"""In-band registration of a new account (XEP-0077), on servers that allow it.

:class:`RegistrationNegotiator` (sans-IO) negotiates the stream exactly as a login does,
STARTTLS and the certificate check included (the password is sent only once TLS is established
and verified for the account's domain: :meth:`ClientNegotiator._require_verified_tls` runs
before the point where a login would start SASL), then asks for the registration form and,
if the server wants nothing but a user name and a password, submits it. :func:`register_account`
is its trio shell. The new account is not logged in: log in as usual afterwards.
"""

from __future__ import annotations

import ssl
from typing import Final, Literal

import trio
from lxml import etree

from .._errors import JetError, RemoteProtocolError
from .connect import (
    DEFAULT_LOGIN_TIMEOUT,
    ConnectionFailed,
    LoginTimeout,
    QuickAckStream,
    Security,
    _next_actions,
    _open_tcp,
    _resolve,
    _Target,
    _tls_wrap,
    close_forcefully,
    make_ssl_context,
)
from .jid import JID
from .negotiation import (
    Action,
    ClientNegotiator,
    ConnectionLost,
    RestartStream,
    SendBytes,
    StartTLS,
    TLSError,
    TLSInfo,
)
from .stanza import IQ, E, StreamError, make_iq, parse_stanza_error, parse_stream_error
from .xml import Event, StreamClosed, StreamOpened, XMLStreamParser, stream_footer

__all__ = ["RegistrationError", "RegistrationNegotiator", "register_account"]

NS_REGISTER: Final = "jabber:iq:register"
FEATURE_REGISTER: Final = "http://jabber.org/features/iq-register"
_QUERY: Final = f"{{{NS_REGISTER}}}query"
_STREAM_ERROR: Final = "{http://etherx.jabber.org/streams}error"
#: Elements of the form that are not fields to fill in.
_NOT_FIELDS: Final = frozenset({"instructions", "registered"})


class RegistrationError(JetError):
    """The server did not register the account. ``condition``: the stanza error condition
    (``conflict``: the name is taken; ``not-allowed``: no in-band registration...), or
    ``None`` when the server does not offer registration or asks for more than we can give."""

    def __init__(self, message: str, condition: str | None = None) -> None:
        super().__init__(message)
        self.condition = condition


def _refusal(jid: JID, condition: str, text: str | None) -> RegistrationError:
    bare = jid.bare
    if condition == "conflict":
        return RegistrationError(f"the account {bare} already exists", condition)
    if condition in ("not-acceptable", "bad-request"):
        why = f": {text}" if text else ""
        return RegistrationError(
            f"{jid.domain} refused the user name or the password of {bare}{why}", condition
        )
    if condition in ("resource-constraint", "policy-violation"):
        return RegistrationError(
            f"{jid.domain} limits registrations: try again later ({condition})", condition
        )
    return RegistrationError(
        f"{jid.domain} does not allow registering accounts from a client ({condition})", condition
    )


class RegistrationNegotiator(ClientNegotiator):
    """Negotiate TLS as for a login, then register ``jid`` with ``password`` instead of
    authenticating. :attr:`registered` is true once the server confirmed; the last actions
    returned then close the stream."""

    def __init__(self, jid: JID, password: str, *, tls: TLSInfo | None = None) -> None:
        super().__init__(jid, password, tls=tls)
        self._reg_id = ""
        self._reg_step: str | None = None  # "form", "submit"
        self.registered = False

    @property
    def stage(self) -> str:
        return "registration" if self._reg_step is not None else super().stage

    def _start_sasl(self, el: etree._Element) -> list[Action]:
        # Reached, as for a login, only after TLS was established and verified.
        if el.find(f"{{{FEATURE_REGISTER}}}register") is None:
            raise RegistrationError(
                f"{self._jid.domain} does not offer in-band registration (XEP-0077): create "
                "the account on its web page or with its administrator"
            )
        return self._send("get", E(_QUERY), "form")

    def _send(
        self, type_: Literal["get", "set"], payload: etree._Element, step: str
    ) -> list[Action]:
        iq = make_iq(type_, payload)
        self._reg_id = iq.get("id", "")
        self._reg_step = step
        return [SendBytes(etree.tostring(iq))]

    def receive(self, event: Event) -> list[Action]:
        if self._reg_step is None:
            return super().receive(event)
        if isinstance(event, StreamClosed):
            raise ConnectionLost("the server closed the stream during registration")
        if isinstance(event, StreamOpened):
            raise RemoteProtocolError("unexpected stream header during registration")
        el = event.element
        if el.tag == _STREAM_ERROR:
            raise parse_stream_error(el)
        if el.tag != IQ or el.get("id") != self._reg_id:
            return []  # nothing else is expected; the stage's time limit bounds the wait
        if el.get("type") == "error":
            err = parse_stanza_error(el)
            raise _refusal(self._jid, err.condition, err.text)
        if el.get("type") != "result":
            raise RemoteProtocolError(f"unexpected iq type {el.get('type')!r} in registration")
        if self._reg_step == "form":
            return self._fill(el.find(_QUERY))
        self.registered = True
        return [SendBytes(stream_footer())]

    def _fill(self, query: etree._Element | None) -> list[Action]:
        if query is None:
            raise RemoteProtocolError("the registration form is missing")
        fields = {
            etree.QName(c).localname
            for c in query
            if isinstance(c.tag, str) and etree.QName(c).namespace == NS_REGISTER
        } - _NOT_FIELDS
        if "username" not in fields or "password" not in fields:
            raise RegistrationError(
                f"{self._jid.domain} asks for a form jet-trio cannot fill in (a CAPTCHA, or no "
                "user name and password fields): register on its web page"
            )
        extra = sorted(fields - {"username", "password"})
        if extra:
            raise RegistrationError(
                f"{self._jid.domain} also asks for {', '.join(extra)}: register with a client "
                "that asks for them, or on its web page"
            )
        assert self._jid.local is not None
        submit = E(
            _QUERY,
            None,
            E(f"{{{NS_REGISTER}}}username", text=self._jid.local),
            E(f"{{{NS_REGISTER}}}password", text=self._password),
        )
        return self._send("set", submit, "submit")


async def register_account(
    jid: JID,
    password: str,
    *,
    host: str | None = None,
    port: int | None = None,
    security: Security = "starttls",
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT,
) -> None:
    """Register ``jid`` (its local part) with ``password`` on its server (XEP-0077).

    Targets are tried as for a login (SRV records, or ``host``). Raises
    :class:`RegistrationError` when the server refuses or does not offer registration,
    and the login's errors (:class:`TLSError`, :class:`ConnectionFailed`,
    :class:`LoginTimeout`...) when the server cannot be reached safely. Bounded by
    ``login_timeout`` seconds, as a login is.
    """
    jid = JID(jid)
    if jid.local is None:
        raise ValueError(f"{jid} has no user name to register")
    ctx = ssl_context or make_ssl_context(ca_file)
    ctx.hostname_checks_common_name = False
    stage = "DNS lookup"
    with trio.move_on_after(login_timeout) as scope:
        targets = await _resolve(jid.domain, host, port, security)
        failures: list[JetError] = []
        for target in targets:
            stage = f"registration at {target.host}:{target.port}"
            try:
                await _register_at(target, jid, password, ctx)
                return
            except (ConnectionFailed, ConnectionLost, TLSError, StreamError) as exc:
                failures.append(exc)
        raise failures[-1]
    assert scope.cancelled_caught
    raise LoginTimeout(jid.domain, stage, login_timeout)


async def _register_at(target: _Target, jid: JID, password: str, ctx: ssl.SSLContext) -> None:
    stream: trio.abc.Stream = QuickAckStream(await _open_tcp(target))
    try:
        tls = None
        if target.direct_tls:
            stream, tls = await _tls_wrap(stream, ctx, jid.domain)
        negotiator = RegistrationNegotiator(jid, password, tls=tls)
        parser = XMLStreamParser()
        leftover: list[Event] = []
        actions: list[Action] = list(negotiator.start())
        while True:
            for action in actions:
                if isinstance(action, SendBytes):
                    await stream.send_all(action.data)
                elif isinstance(action, RestartStream):
                    parser = XMLStreamParser()
                elif isinstance(action, StartTLS):
                    stream, tls = await _tls_wrap(stream, ctx, jid.domain)
                    actions = negotiator.tls_established(tls)
                    break
            else:
                if negotiator.registered:
                    return
                actions = list(await _next_actions(stream, parser, negotiator, leftover))
    except trio.BrokenResourceError as exc:
        raise ConnectionLost(f"the connection broke during registration: {exc}") from None
    finally:
        await close_forcefully(stream)
