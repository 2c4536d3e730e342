"""``jet-trio contact add / remove / list``, and the check that tells "not a contact" from
"offline" before a command waits for a peer.

A file can only be offered to a resource we know is online, and we learn that from presence,
which the server sends us only for contacts whose presence we are subscribed to (RFC 6121:
roster items with subscription ``to`` or ``both``). ``contact add`` puts the contact in the
roster, asks for their presence and lets them see ours (it approves their request, or
pre-approves it); the other side does the same for the contact to be mutual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio
from lxml import etree

from .._errors import RemoteProtocolError
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.jid import JID, InvalidJID
from .._xmpp.roster import (
    RosterItem,
    SubscriptionRequest,
    parse_roster,
    parse_roster_push,
    parse_subscription_presence,
    roster_query,
    roster_remove,
    roster_set,
    subscription_presence,
)
from .._xmpp.stanza import StanzaError
from .account import AccountOptions, connect
from .errors import CLIError, ExitCode
from .output import Output, shown

__all__ = ["ContactOptions", "run_contact_add", "run_contact_list", "run_contact_remove"]

_ROSTER_QUERY = f"{{{_ns.ROSTER}}}query"
#: The bound on the exchanges with our server after the login (roster queries, pings).
SERVER_WAIT = 30.0
#: How long ``contact add`` waits for the contact's answer by default: none (they may be
#: offline; the server keeps the request for them).
DEFAULT_ANSWER_WAIT = 0.0


@dataclass(frozen=True)
class ContactOptions:
    jid: str | None = None
    name: str | None = None
    wait: float = DEFAULT_ANSWER_WAIT


def contact_jid(text: str) -> JID:
    try:
        jid = JID(text)
    except InvalidJID as exc:
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"{text!r} is not a JID: {exc}",
            "Write it like name@example.org.",
        ) from None
    if jid.local is None or not jid.is_bare:
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"{text!r} is not an account address",
            "A contact is an account: write it like name@example.org (no /resource).",
        )
    return jid


async def get_roster(client: Client) -> list[RosterItem]:
    return parse_roster(await client.request("get", roster_query()))


def describe(item: RosterItem | None) -> str:
    """What the subscription state means for the user."""
    if item is None:
        return "not a contact"
    text = {
        "both": "mutual: you see each other online",
        "to": "you see them online; they do not see you",
        "from": "they see you online; you do not see them",
        "none": "neither sees the other online",
    }[item.subscription]
    if item.pending_out:
        text += " (waiting for them to accept your request)"
    return text


def _item_json(item: RosterItem) -> dict[str, Any]:
    return {
        "jid": str(item.jid),
        "name": item.name,
        "subscription": item.subscription,
        "we_see_them": item.we_see_them,
        "they_see_us": item.they_see_us,
        "pending": item.pending_out,
    }


class _Requests:
    """Subscription presences received during the command."""

    def __init__(self, client: Client) -> None:
        self.received: list[SubscriptionRequest] = []
        self.changed = trio.Event()
        self._client = client
        self._unwatch = client.on_presence(self._on_presence)
        client.register_iq_handler("set", _ROSTER_QUERY, self._on_push)

    async def _on_push(self, iq: etree._Element) -> None:
        """A roster push (RFC 6121 2.1.6): acknowledged if it comes from our own account;
        anyone else's is refused as if we had no roster (it must not change anything)."""
        try:
            parse_roster_push(iq, self._client.jid)
        except RemoteProtocolError:
            raise StanzaError("service-unavailable") from None
        self._notify()

    def _on_presence(self, presence: etree._Element) -> None:
        request = parse_subscription_presence(presence)
        if request is not None:
            self.received.append(request)
            self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def asking(self) -> list[JID]:
        """Who asked to see our presence (and was not answered since)."""
        return sorted({r.jid for r in self.received if r.type == "subscribe"}, key=str)

    def close(self) -> None:
        self._unwatch()
        self._client.unregister_iq_handler("set", _ROSTER_QUERY)


async def _settle(client: Client) -> None:
    """Let the server deliver what it queued for our initial presence (pending subscription
    requests): it answers a ping after it has sent those, as a stream keeps its order."""
    await client.ping()


async def _reconfirm(client: Client, items: list[RosterItem]) -> None:
    """Say ``subscribed`` again to the contacts who see us. Harmless (RFC 6121 3.1.5: a
    contact whose request is not pending ignores it), and it completes the contact's side where
    a server approved their request on our behalf (a pre-approval) without telling them:
    Prosody 0.12 then shows us "both" and them "from", waiting for an answer forever."""
    for item in items:
        if item.they_see_us:
            await client.send(subscription_presence(item.jid, "subscribed"))


async def run_contact_add(out: Output, account: AccountOptions, opts: ContactOptions) -> int:
    assert opts.jid is not None
    contact = contact_jid(opts.jid)
    own = account.jid()
    if contact == own.bare:
        raise CLIError(ExitCode.USAGE, "usage", "that is your own account", "")
    account.account_data_dir(own)
    async with connect(account, own) as client:
        requests = _Requests(client)
        try:
            with trio.fail_after(SERVER_WAIT + opts.wait):
                await _settle(client)
                await client.request("set", roster_set(contact, name=opts.name))
                # Let them see us (approves their pending request, or pre-approves it, RFC 6121
                # 3.4), and ask to see them.
                await client.send(subscription_presence(contact, "subscribed"))
                await client.send(subscription_presence(contact, "subscribe"))
                item = await _item_of(client, contact)
                if opts.wait > 0 and not (item and item.we_see_them):
                    with trio.move_on_after(opts.wait):
                        while not (item and item.we_see_them):
                            await requests.changed.wait()
                            item = await _item_of(client, contact)
                await _settle(client)
                item = await _item_of(client, contact)
        finally:
            requests.close()
    if out.json_mode:
        out.emit({"status": "ok", "added": str(contact), **_item_json(item or RosterItem(contact))})
        return ExitCode.OK
    out.say(f"added {shown(contact)}: {describe(item)}")
    if not (item and item.we_see_them):
        out.say(
            f"  they accept with: jet-trio contact add {shown(own.bare)} "
            "(or in their XMPP client); until then you cannot send them files"
        )
    return ExitCode.OK


async def _item_of(client: Client, contact: JID) -> RosterItem | None:
    return next((i for i in await get_roster(client) if i.jid == contact), None)


async def run_contact_remove(out: Output, account: AccountOptions, opts: ContactOptions) -> int:
    assert opts.jid is not None
    contact = contact_jid(opts.jid)
    own = account.jid()
    account.account_data_dir(own)
    async with connect(account, own, presence=False) as client:
        with trio.fail_after(SERVER_WAIT):
            if await _item_of(client, contact) is None:
                raise CLIError(
                    ExitCode.USAGE,
                    "usage",
                    f"{contact} is not in your contacts",
                    "See jet-trio contact list.",
                )
            # Removing the item cancels both subscriptions (RFC 6121 2.5.2).
            await client.request("set", roster_remove(contact))
    if out.json_mode:
        out.emit({"status": "ok", "removed": str(contact)})
    else:
        out.say(f"removed {shown(contact)}: neither of you sees the other online any more")
    return ExitCode.OK


async def run_contact_list(out: Output, account: AccountOptions) -> int:
    own = account.jid()
    account.account_data_dir(own)
    async with connect(account, own) as client:
        requests = _Requests(client)
        try:
            with trio.fail_after(SERVER_WAIT):
                await _settle(client)
                items = await get_roster(client)
                await _reconfirm(client, items)
        finally:
            requests.close()
    known = {i.jid: i for i in items}
    asking = [j for j in requests.asking() if not (j in known and known[j].they_see_us)]
    if out.json_mode:
        out.emit(
            {
                "status": "ok",
                "contacts": [_item_json(i) for i in items],
                "requests": [str(j) for j in asking],
            }
        )
        return ExitCode.OK
    if not items:
        out.say("no contacts yet: add one with jet-trio contact add name@example.org")
    for item in items:
        name = f" ({shown(item.name)})" if item.name else ""
        out.say(f"{shown(item.jid)}{name}: {describe(item)}")
    for jid in asking:
        out.say(
            f"{shown(jid)} asks to see when you are online: accept with "
            f"jet-trio contact add {shown(jid)}"
        )
    return ExitCode.OK


async def wait_for_peer(client: Client, peer: JID, wait: float, offline_hint: str) -> JID:
    """Wait (up to ``wait`` seconds) for ``peer`` to be online; the full JID.

    First the roster says whether we can see them online at all: if not, the error says so
    and what to run, at once (waiting would only end in "offline"). A server that does not
    answer the roster query leaves that to the wait.
    """
    own = client.jid
    if peer.bare != own.bare:
        try:
            with trio.fail_after(max(wait, 1.0)):
                item = await _item_of(client, peer.bare)
        except (StanzaError, trio.TooSlowError):
            pass
        else:
            _check_subscribed(own, peer.bare, item)
    try:
        with trio.fail_after(wait):
            return await client.wait_available(peer)
    except trio.TooSlowError:
        raise CLIError(
            ExitCode.PEER,
            "peer-unavailable",
            f"{peer} did not come online within {wait:g} s",
            offline_hint,
        ) from None


def _check_subscribed(own: JID, peer: JID, item: RosterItem | None) -> None:
    if item is not None and item.we_see_them:
        return
    ask_them = (
        f"ask them to run `jet-trio contact add {own.bare}` (or to accept you in their client)"
    )
    if item is None:
        message = f"{peer} is not in your contacts, so their presence never reaches you"
        hint = f"Run `jet-trio contact add {peer}`, and {ask_them}."
    elif item.pending_out:
        message = f"{peer} has not accepted your contact request yet"
        hint = (
            f"Ask them to run `jet-trio contact add {own.bare}` (or to accept you in their client)."
        )
    else:
        message = f"you are not subscribed to {peer}'s presence, so you cannot see them online"
        hint = f"Run `jet-trio contact add {peer}`, and {ask_them}."
    raise CLIError(ExitCode.PEER, "not-subscribed", message, hint)
