"""Stanza routing and the server's own services (roster, disco, ping, PEP, proxy65), sans-IO.

Every account is a mutual ``both`` contact of every other account. The shell calls
:meth:`Router.bind`, :meth:`Router.receive` and :meth:`Router.unbind` and carries out the returned
actions; nothing here does I/O.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from lxml import etree

from .._errors import RemoteProtocolError
from .._xmpp import ns as ns
from .._xmpp.disco import DiscoInfo, caps_ver
from .._xmpp.jid import JID, InvalidJID
from ._elements import Element, StanzaError, error_reply, iq_result, make, qname, stanza, sub
from ._pep import FEATURES as PEP_FEATURES
from ._pep import Notification, PepService

NOTIFY_SUFFIX = "+notify"


@dataclass(eq=False)
class Session:
    """A bound resource. ``presence`` is its last available broadcast presence, if any."""

    jid: JID
    presence: Element | None = None
    caps_ver: str | None = None
    notify: frozenset[str] = frozenset()

    @property
    def available(self) -> bool:
        return self.presence is not None

    @property
    def priority(self) -> int:
        if self.presence is None:
            return 0
        try:
            return int(self.presence.findtext(qname(ns.CLIENT, "priority")) or 0)
        except ValueError:
            return 0


@dataclass(frozen=True)
class Deliver:
    """Send ``element`` to ``session``."""

    session: Session
    element: Element


@dataclass(frozen=True)
class Disconnect:
    """End ``session``'s stream with the stream error ``condition``."""

    session: Session
    condition: str


@dataclass(frozen=True)
class Activate:
    """Ask the SOCKS5 proxy to activate ``sid``; answer ``request`` with the outcome."""

    session: Session
    request: Element
    sid: str
    target: JID


RouterAction = Deliver | Disconnect | Activate
# (requesting session, iq, account addressed or None for the domain) -> (result payload, actions)
_Handler = Callable[["Session", Element, JID | None], tuple[Element | None, list[RouterAction]]]


@dataclass(frozen=True)
class ProxyInfo:
    """Where the XEP-0065 proxy component lives."""

    jid: JID
    host: str
    port: int


@dataclass
class RouterStats:
    """Counters for tests."""

    stanzas_received: int = 0
    stanzas_delivered: int = 0
    caps_queries: int = 0
    notifications: int = 0


@dataclass(frozen=True)
class _CapsQuery:
    hash: str
    node: str
    ver: str
    session: Session


@dataclass
class _Caps:
    features: dict[str, frozenset[str]] = field(default_factory=dict)  # verified ver -> +notify
    pending: dict[str, _CapsQuery] = field(default_factory=dict)  # by iq id
    waiting: dict[str, set[Session]] = field(default_factory=dict)


def _caps_verified(hash_name: str, ver: str, query: Element) -> bool:
    """True if ``ver`` is the XEP-0115 sha-1 hash of disco#info ``query`` (no forms support)."""
    if hash_name != "sha-1" or query.find(qname(ns.DATA_FORMS, "x")) is not None:
        return False
    try:
        return caps_ver(DiscoInfo.from_element(query)) == ver
    except RemoteProtocolError:
        return False


class Router:
    """The server's brain: sessions, presence, routing, and the server-side services."""

    def __init__(
        self, domain: str, accounts: Mapping[str, str] | None = None, proxy: ProxyInfo | None = None
    ) -> None:
        self.domain = JID(domain)
        self.proxy = proxy
        self.pep = PepService()
        self.stats = RouterStats()
        self._accounts: dict[str, str] = {}
        self._sessions: dict[str, dict[str, Session]] = {}
        self._caps = _Caps()
        for user, password in (accounts or {}).items():
            self.add_account(user, password)

    # -- accounts and sessions ----------------------------------------------------------------

    def add_account(self, user: str, password: str) -> JID:
        """Create (or reset the password of) an account; returns its bare JID."""
        jid = JID.from_parts(user, self.domain.domain)
        assert jid.local is not None
        self._accounts[jid.local] = password
        return jid

    def password_of(self, user: str) -> str | None:
        """The password of account ``user`` (a normalised localpart), or ``None``."""
        return self._accounts.get(user)

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def sessions(self, user: str | None = None) -> list[Session]:
        """Bound sessions, of one account or all."""
        if user is not None:
            return list(self._sessions.get(user, {}).values())
        return [s for by_resource in self._sessions.values() for s in by_resource.values()]

    def session(self, jid: JID) -> Session | None:
        """The session bound to full JID ``jid``."""
        if jid.local is None or jid.resource is None or jid.domain != self.domain.domain:
            return None
        return self._sessions.get(jid.local, {}).get(jid.resource)

    def bind(self, user: str, resource: str | None) -> tuple[Session, list[RouterAction]]:
        """Bind a resource (generated if ``None``); an existing one is replaced (``conflict``).

        Raises :class:`~jet_trio.InvalidJID` for an unacceptable resource.
        """
        by_resource = self._sessions.setdefault(user, {})
        if not resource:
            resource = secrets.token_hex(6)
            while resource in by_resource:
                resource = secrets.token_hex(6)
        jid = JID.from_parts(user, self.domain.domain, resource)
        assert jid.resource is not None
        actions: list[RouterAction] = []
        old = by_resource.get(jid.resource)
        if old is not None:
            actions += self.unbind(old)
            actions.append(Disconnect(old, "conflict"))
        session = Session(jid)
        self._sessions.setdefault(user, {})[jid.resource] = session
        return session, actions

    def unbind(self, session: Session) -> list[RouterAction]:
        """``session`` has gone; broadcast its unavailability. Idempotent."""
        user, resource = session.jid.local, session.jid.resource
        assert user is not None and resource is not None
        by_resource = self._sessions.get(user, {})
        if by_resource.get(resource) is not session:
            return []
        del by_resource[resource]
        actions = self._forget_caps(session)
        if session.presence is None:
            return actions
        session.presence = None
        return actions + self._broadcast(session, stanza("presence", {"type": "unavailable"}))

    # -- stanzas from a session ---------------------------------------------------------------

    def receive(self, session: Session, element: Element) -> list[RouterAction]:
        """Process a stanza sent by ``session``: stamps ``from``, returns what to do."""
        self.stats.stanzas_received += 1
        element.set("from", str(session.jid))
        kind = etree.QName(element).localname
        raw_to = element.get("to")
        try:
            to = JID(raw_to) if raw_to is not None else None
        except InvalidJID:
            if element.get("type") == "error":
                return []
            error = StanzaError("jid-malformed", "modify")
            return self._error(session, element, self.domain, error)
        if kind == "iq":
            return self._iq(session, element, to)
        if kind == "message":
            return self._message(session, element, to)
        return self._presence(session, element, to)

    def _deliver(self, session: Session, element: Element) -> Deliver:
        self.stats.stanzas_delivered += 1
        return Deliver(session, element)

    def _error(
        self, session: Session, request: Element, sender: JID | None, error: StanzaError
    ) -> list[RouterAction]:
        reply = error_reply(request, str(sender) if sender is not None else "", error)
        if sender is None:
            del reply.attrib["from"]
        return [self._deliver(session, reply)]

    def _is_account(self, jid: JID) -> bool:
        return jid.domain == self.domain.domain and jid.local in self._accounts

    def _available(self, user: str | None) -> list[Session]:
        return [s for s in self._sessions.get(user or "", {}).values() if s.available]

    # -- iq -------------------------------------------------------------------------------------

    def _iq(self, session: Session, iq: Element, to: JID | None) -> list[RouterAction]:
        iq_type = iq.get("type")
        if iq_type in ("result", "error"):
            if to is None or to in (self.domain, session.jid.bare):
                return self._iq_response(iq)
            target = self.session(to)
            return [self._deliver(target, iq)] if target is not None else []
        if iq_type not in ("get", "set") or len(iq) != 1:
            return self._error(session, iq, to, StanzaError("bad-request", "modify"))
        if self.proxy is not None and to == self.proxy.jid:
            return self._proxy_iq(session, iq)
        if to is None or to == self.domain or to == session.jid.bare:
            return self._served(session, iq, to)
        if to.domain != self.domain.domain:
            return self._error(session, iq, to, StanzaError("remote-server-not-found"))
        if not self._is_account(to):
            return self._error(session, iq, to, StanzaError("service-unavailable"))
        if to.is_bare:
            return self._served(session, iq, to)
        target = self.session(to)
        if target is None:
            return self._error(session, iq, to, StanzaError("service-unavailable"))
        return [self._deliver(target, iq)]

    def _served(self, session: Session, iq: Element, to: JID | None) -> list[RouterAction]:
        """An iq the server answers itself, on behalf of an account or as the domain."""
        account = None if to == self.domain else (to or session.jid.bare)
        payload = iq[0]
        handler = self._handlers().get(etree.QName(payload).namespace or "")
        try:
            if handler is None:
                raise StanzaError("service-unavailable")
            result, actions = handler(session, iq, account)
        except StanzaError as error:
            return self._error(session, iq, to, error)
        reply = iq_result(iq, str(to) if to is not None else "", result)
        if to is None:
            del reply.attrib["from"]
        return [self._deliver(session, reply), *actions]

    def _handlers(self) -> dict[str, _Handler]:
        return {
            ns.PING: self._ping,
            ns.SESSION: self._legacy_session,
            ns.ROSTER: self._roster,
            ns.DISCO_INFO: self._disco_info,
            ns.DISCO_ITEMS: self._disco_items,
            ns.PUBSUB: self._pubsub,
            ns.PUBSUB_OWNER: self._pubsub,
        }

    def _ping(
        self, session: Session, iq: Element, account: JID | None
    ) -> tuple[None, list[RouterAction]]:
        if iq.get("type") != "get":
            raise StanzaError("bad-request", "modify")
        return None, []

    def _legacy_session(
        self, session: Session, iq: Element, account: JID | None
    ) -> tuple[None, list[RouterAction]]:
        if iq.get("type") != "set" or account not in (None, session.jid.bare):
            raise StanzaError("service-unavailable")
        return None, []

    def _roster(
        self, session: Session, iq: Element, account: JID | None
    ) -> tuple[Element | None, list[RouterAction]]:
        if account != session.jid.bare:
            raise StanzaError("forbidden", "auth")
        if iq.get("type") == "set":
            return None, []
        query = make(qname(ns.ROSTER, "query"))
        for user in self._accounts:
            if user != session.jid.local:
                jid = JID.from_parts(user, self.domain.domain)
                sub(query, qname(ns.ROSTER, "item"), {"jid": str(jid), "subscription": "both"})
        return query, []

    def _disco_info(
        self, session: Session, iq: Element, account: JID | None
    ) -> tuple[Element, list[RouterAction]]:
        if iq.get("type") != "get":
            raise StanzaError("bad-request", "modify")
        query = make(qname(ns.DISCO_INFO, "query"), {"node": iq[0].get("node")})
        if account is None:
            identity: tuple[str, str] = ("server", "im")
            features = [ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, ns.ROSTER, ns.PUBSUB, *PEP_FEATURES]
        else:
            identity = ("pubsub", "pep")
            features = [ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PUBSUB, *PEP_FEATURES]
        sub(query, qname(ns.DISCO_INFO, "identity"), {"category": identity[0], "type": identity[1]})
        for var in features:
            sub(query, qname(ns.DISCO_INFO, "feature"), {"var": var})
        return query, []

    def _disco_items(
        self, session: Session, iq: Element, account: JID | None
    ) -> tuple[Element, list[RouterAction]]:
        if iq.get("type") != "get":
            raise StanzaError("bad-request", "modify")
        query = make(qname(ns.DISCO_ITEMS, "query"), {"node": iq[0].get("node")})
        if account is None:
            if self.proxy is not None:
                attrs = {"jid": str(self.proxy.jid), "name": "proxy65"}
                sub(query, qname(ns.DISCO_ITEMS, "item"), attrs)
        else:
            for name, node in self.pep.nodes(account).items():
                if self.pep.may_read(account, session.jid, node.access_model):
                    sub(query, qname(ns.DISCO_ITEMS, "item"), {"jid": str(account), "node": name})
        return query, []

    def _pubsub(
        self, session: Session, iq: Element, account: JID | None
    ) -> tuple[Element | None, list[RouterAction]]:
        if account is None:
            raise StanzaError("service-unavailable")
        result, notifications = self.pep.handle(account, session.jid, iq)
        actions: list[RouterAction] = []
        for notification in notifications:
            actions += self._notify(notification)
        return result, actions

    # -- PEP notifications and entity caps ----------------------------------------------------

    def _event_message(self, owner: JID, target: Session, event: Element) -> Deliver:
        self.stats.notifications += 1
        attrs = {"from": str(owner), "to": str(target.jid), "type": "headline"}
        message = stanza("message", {**attrs, "id": secrets.token_hex(6)})
        message.append(copy.deepcopy(event))
        return self._deliver(target, message)

    def _notify(self, notification: Notification) -> list[RouterAction]:
        owner = notification.owner
        targets = list(self._available(owner.local))
        for user in self._accounts:
            if user == owner.local:
                continue
            for target in self._available(user):
                readable = self.pep.may_read(owner, target.jid, notification.access_model)
                if readable and notification.node in target.notify:
                    targets.append(target)
        return [self._event_message(owner, target, notification.event) for target in targets]

    def _interest_changed(self, session: Session, nodes: frozenset[str]) -> list[RouterAction]:
        """``session`` now wants ``nodes``: send the last item of those newly wanted."""
        new = nodes - session.notify
        session.notify = nodes
        actions: list[RouterAction] = []
        for user in self._accounts:
            owner = JID.from_parts(user, self.domain.domain)
            for name in sorted(new):
                node = self.pep.nodes(owner).get(name)
                if node is None or not self.pep.may_read(owner, session.jid, node.access_model):
                    continue
                event = self.pep.last_item_event(owner, name)
                if event is not None:
                    actions.append(self._event_message(owner, session, event))
        return actions

    def _update_caps(self, session: Session, presence: Element) -> list[RouterAction]:
        caps = presence.find(qname(ns.CAPS, "c"))
        if caps is None or not caps.get("ver") or not caps.get("hash"):
            return []
        ver = caps.get("ver", "")
        if ver == session.caps_ver:
            return []
        session.caps_ver = ver
        known = self._caps.features.get(ver)
        if known is not None:
            return self._interest_changed(session, known)
        self._caps.waiting.setdefault(ver, set()).add(session)
        if any(ver == pending.ver for pending in self._caps.pending.values()):
            return []
        query = _CapsQuery(caps.get("hash", ""), caps.get("node", ""), ver, session)
        return self._query_caps(query)

    def _query_caps(self, query: _CapsQuery) -> list[RouterAction]:
        iq_id = f"caps-{secrets.token_hex(6)}"
        self._caps.pending[iq_id] = query
        self.stats.caps_queries += 1
        attrs = {"type": "get", "id": iq_id, "from": str(self.domain), "to": str(query.session.jid)}
        iq = stanza("iq", attrs)
        sub(iq, qname(ns.DISCO_INFO, "query"), {"node": f"{query.node}#{query.ver}"})
        return [self._deliver(query.session, iq)]

    def _forget_caps(self, session: Session) -> list[RouterAction]:
        """``session`` is gone: ask another session waiting on a ver it was asked about."""
        for waiting in self._caps.waiting.values():
            waiting.discard(session)
        actions: list[RouterAction] = []
        for iq_id, query in list(self._caps.pending.items()):
            if query.session is not session:
                continue
            del self._caps.pending[iq_id]
            others = self._caps.waiting.get(query.ver)
            if others:
                other = next(iter(others))
                actions += self._query_caps(_CapsQuery(query.hash, query.node, query.ver, other))
        return actions

    def _iq_response(self, iq: Element) -> list[RouterAction]:
        pending = self._caps.pending.get(iq.get("id", ""))
        if pending is None or iq.get("from") != str(pending.session.jid):
            return []
        del self._caps.pending[iq.get("id", "")]
        hash_name, ver = pending.hash, pending.ver
        nodes: frozenset[str] = frozenset()
        query = iq.find(qname(ns.DISCO_INFO, "query"))
        if iq.get("type") == "result" and query is not None:
            nodes = frozenset(
                var.removesuffix(NOTIFY_SUFFIX)
                for f in query.iterfind(qname(ns.DISCO_INFO, "feature"))
                if (var := f.get("var", "")).endswith(NOTIFY_SUFFIX)
            )
            # Like Prosody: only an answer matching its hash is shared with others using the ver.
            if _caps_verified(hash_name, ver, query):
                self._caps.features[ver] = nodes
        actions: list[RouterAction] = []
        for session in self._caps.waiting.pop(ver, set()):
            if session.available and session.caps_ver == ver:
                actions += self._interest_changed(session, nodes)
        return actions

    # -- proxy65 --------------------------------------------------------------------------------

    def _proxy_iq(self, session: Session, iq: Element) -> list[RouterAction]:
        assert self.proxy is not None
        proxy = self.proxy
        payload = iq[0]
        if payload.tag == qname(ns.DISCO_INFO, "query") and iq.get("type") == "get":
            query = make(qname(ns.DISCO_INFO, "query"))
            attrs = {"category": "proxy", "type": "bytestreams", "name": "SOCKS5 Bytestreams"}
            sub(query, qname(ns.DISCO_INFO, "identity"), attrs)
            for var in (ns.DISCO_INFO, ns.BYTESTREAMS):
                sub(query, qname(ns.DISCO_INFO, "feature"), {"var": var})
            return [self._deliver(session, iq_result(iq, str(proxy.jid), query))]
        if payload.tag != qname(ns.BYTESTREAMS, "query"):
            return self._error(session, iq, proxy.jid, StanzaError("service-unavailable"))
        if iq.get("type") == "get":
            query = make(qname(ns.BYTESTREAMS, "query"))
            attrs = {"jid": str(proxy.jid), "host": proxy.host, "port": str(proxy.port)}
            sub(query, qname(ns.BYTESTREAMS, "streamhost"), attrs)
            return [self._deliver(session, iq_result(iq, str(proxy.jid), query))]
        sid = payload.get("sid")
        target = payload.findtext(qname(ns.BYTESTREAMS, "activate"))
        try:
            target_jid = JID(target.strip()) if target else None
        except InvalidJID:
            target_jid = None
        if not sid or target_jid is None:
            return self._error(session, iq, proxy.jid, StanzaError("bad-request", "modify"))
        return [Activate(session, iq, sid, target_jid)]

    def activation_done(self, action: Activate, error: str | None = None) -> list[RouterAction]:
        """The shell's proxy activation finished (``error``: the stanza error condition)."""
        assert self.proxy is not None
        if error is None:
            return [self._deliver(action.session, iq_result(action.request, str(self.proxy.jid)))]
        return self._error(action.session, action.request, self.proxy.jid, StanzaError(error))

    # -- message ----------------------------------------------------------------------------------

    def _message(self, session: Session, message: Element, to: JID | None) -> list[RouterAction]:
        msg_type = message.get("type", "normal")
        to = to or session.jid.bare
        if to.domain != self.domain.domain:
            if msg_type == "error":
                return []
            return self._error(session, message, to, StanzaError("remote-server-not-found"))
        if to.local is None:
            return []
        if not self._is_account(to):
            if msg_type in ("error", "groupchat", "headline"):
                return []
            return self._error(session, message, to, StanzaError("service-unavailable"))
        if not to.is_bare:
            target = self.session(to)
            if target is not None:
                return [self._deliver(target, message)]
            if msg_type not in ("normal", "chat"):
                return []
        targets = [s for s in self._available(to.local) if s.priority >= 0]
        return [self._deliver(t, copy.deepcopy(message)) for t in targets]

    # -- presence ---------------------------------------------------------------------------------

    def _contacts_sessions(self, session: Session) -> Iterator[Session]:
        """Available sessions that see ``session``'s presence: everyone else's, and own others."""
        for user in self._accounts:
            for other in self._available(user):
                if other is not session:
                    yield other

    def _broadcast(self, session: Session, presence: Element) -> list[RouterAction]:
        presence.set("from", str(session.jid))
        actions: list[RouterAction] = []
        for target in self._contacts_sessions(session):
            copied = copy.deepcopy(presence)
            copied.set("to", str(target.jid))
            actions.append(self._deliver(target, copied))
        return actions

    def _presence(self, session: Session, presence: Element, to: JID | None) -> list[RouterAction]:
        presence_type = presence.get("type")
        if to is None:
            if presence_type is None:
                return self._available_presence(session, presence)
            if presence_type == "unavailable" and session.available:
                session.presence = None
                session.caps_ver = None
                session.notify = frozenset()
                return self._broadcast(session, presence)
            return []
        if not self._is_account(to):
            return []
        if presence_type == "probe":
            actions: list[RouterAction] = []
            for other in self._available(to.local):
                assert other.presence is not None
                copied = copy.deepcopy(other.presence)
                copied.set("to", str(session.jid))
                actions.append(self._deliver(session, copied))
            return actions
        if presence_type not in (None, "unavailable", "error"):
            return []  # subscriptions: everyone is already a mutual contact
        if not to.is_bare:
            target = self.session(to)
            return [self._deliver(target, presence)] if target is not None else []
        return [self._deliver(t, copy.deepcopy(presence)) for t in self._available(to.local)]

    def _available_presence(self, session: Session, presence: Element) -> list[RouterAction]:
        initial = not session.available
        stored = copy.deepcopy(presence)
        if "to" in stored.attrib:
            del stored.attrib["to"]
        session.presence = stored
        actions = self._broadcast(session, copy.deepcopy(stored))
        if initial:
            for other in self._contacts_sessions(session):
                assert other.presence is not None
                copied = copy.deepcopy(other.presence)
                copied.set("to", str(session.jid))
                actions.append(self._deliver(session, copied))
        return actions + self._update_caps(session, stored)
