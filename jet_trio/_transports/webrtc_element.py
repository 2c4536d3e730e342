"""The Jingle WebRTC data-channel transport element, sans-IO.

Conversations (since 2.13.1) offers ``<transport sctp-port max-message-size>`` in
``urn:xmpp:jingle:transports:webrtc-datachannel:1`` holding one
``urn:xmpp:jingle:transports:ice-udp:1`` transport: ``ufrag``, ``pwd``, a
``urn:xmpp:jingle:apps:dtls:0`` ``<fingerprint hash setup>``, ICE options and ``<candidate/>``
elements. Candidates are trickled, one per ``transport-info``. The exact dialect is written
down in ``docs/protocol.rst``.

This module parses and builds that element and converts it to and from the SDP an
``RTCPeerConnection`` speaks. Everything a peer sends is bounded and validated: too many
candidates, malformed attributes and a missing DTLS fingerprint raise a
:class:`WebRTCElementError` subclass. Nothing here does I/O or imports aiortc.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, TypeAlias

from lxml import etree

from .._errors import RemoteProtocolError

__all__ = [
    "DTLS_NS",
    "ICE_OPTION_NS",
    "ICE_UDP_NS",
    "MAX_CANDIDATES",
    "MAX_FINGERPRINTS",
    "SDP_MID",
    "WEBRTC_DATACHANNEL_NS",
    "CandidateFlood",
    "Fingerprint",
    "IceCandidate",
    "MalformedTransport",
    "MissingFingerprint",
    "WebRTCElementError",
    "WebRTCTransportInfo",
    "build_transport",
    "candidate_from_sdp",
    "candidate_to_sdp",
    "from_sdp",
    "parse_transport",
    "parse_trickle",
    "to_sdp",
    "trickle_infos",
]

WEBRTC_DATACHANNEL_NS: Final = "urn:xmpp:jingle:transports:webrtc-datachannel:1"
ICE_UDP_NS: Final = "urn:xmpp:jingle:transports:ice-udp:1"
DTLS_NS: Final = "urn:xmpp:jingle:apps:dtls:0"
#: Conversations' private namespace for ICE options (``trickle``, ``renomination``).
ICE_OPTION_NS: Final = "http://gultsch.de/xmpp/drafts/jingle/transports/ice-udp/option"

#: Candidates accepted in one element (Conversations sends none in the offer and answer and one
#: per transport-info; a host has a handful). More is a flood.
MAX_CANDIDATES: Final = 32
MAX_FINGERPRINTS: Final = 4
_MAX_ICE_OPTIONS: Final = 8
_KNOWN_ICE_OPTIONS: Final = frozenset({"trickle", "renomination"})

_Element: TypeAlias = etree._Element
Setup: TypeAlias = Literal["actpass", "active", "passive"]
CandidateType: TypeAlias = Literal["host", "srflx", "prflx", "relay"]

# RFC 8839: ice-char = ALPHA / DIGIT / "+" / "/"; ufrag 4-256, pwd 22-256 characters.
_ICE_CHARS: Final = re.compile(r"[A-Za-z0-9+/]+")
_FOUNDATION: Final = re.compile(r"[A-Za-z0-9+/]{1,32}")
_TOKEN: Final = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
# Hash function -> digest length in bytes (RFC 8122 names).
_DIGESTS: Final = {"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}


class WebRTCElementError(RemoteProtocolError):
    """The peer's webrtc-datachannel transport element is unusable (answer ``bad-request``)."""


class MalformedTransport(WebRTCElementError):
    """An attribute or child is missing, malformed or out of range."""


class MissingFingerprint(WebRTCElementError):
    """No DTLS fingerprint: the channel could not be authenticated, so it is refused."""


class CandidateFlood(WebRTCElementError):
    """More candidates than a peer can reasonably have."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A DTLS certificate fingerprint: ``hash`` (``sha-256``...), ``setup`` and the hex value."""

    hash: str
    value: str
    setup: Setup = "actpass"

    def __post_init__(self) -> None:
        _check_fingerprint(self.hash, self.value)
        if self.setup not in ("actpass", "active", "passive"):
            raise MalformedTransport(f"DTLS setup {self.setup!r} is not actpass/active/passive")


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """An ICE candidate as XEP-0176 writes it (UDP only, as in Conversations)."""

    foundation: str
    component: int
    ip: str
    port: int
    priority: int
    type: CandidateType
    protocol: str = "udp"
    generation: int = 0
    id: str = ""
    rel_addr: str | None = None
    rel_port: int | None = None

    def __post_init__(self) -> None:
        _check_candidate(self)


@dataclass(frozen=True, slots=True)
class WebRTCTransportInfo:
    """The whole transport element: SCTP parameters plus the embedded ICE-UDP transport."""

    ufrag: str
    pwd: str
    fingerprints: tuple[Fingerprint, ...]
    sctp_port: int = 5000
    max_message_size: int = 65536
    candidates: tuple[IceCandidate, ...] = ()
    ice_options: tuple[str, ...] = field(default=("trickle",))

    def __post_init__(self) -> None:
        _check_credentials(self.ufrag, self.pwd)
        if not self.fingerprints:
            raise MissingFingerprint("the transport carries no DTLS fingerprint")
        if len(self.fingerprints) > MAX_FINGERPRINTS:
            raise MalformedTransport(f"more than {MAX_FINGERPRINTS} DTLS fingerprints")
        if not 1 <= self.sctp_port <= 65535:
            raise MalformedTransport(f"sctp-port {self.sctp_port} is not in 1..65535")
        if not 0 <= self.max_message_size <= 1 << 30:
            raise MalformedTransport(f"max-message-size {self.max_message_size} is out of range")
        if len(self.candidates) > MAX_CANDIDATES:
            raise CandidateFlood(f"{len(self.candidates)} candidates (at most {MAX_CANDIDATES})")

    @property
    def setup(self) -> Setup:
        return self.fingerprints[0].setup


# --- validation ------------------------------------------------------------------------------


def _check_credentials(ufrag: str, pwd: str) -> None:
    if not 4 <= len(ufrag) <= 256 or not _ICE_CHARS.fullmatch(ufrag):
        raise MalformedTransport("ICE ufrag must be 4-256 ice-chars (RFC 8839)")
    if not 22 <= len(pwd) <= 256 or not _ICE_CHARS.fullmatch(pwd):
        raise MalformedTransport("ICE pwd must be 22-256 ice-chars (RFC 8839)")


def _check_fingerprint(hash_name: str, value: str) -> None:
    length = _DIGESTS.get(hash_name.lower())
    if length is None:
        raise MalformedTransport(f"unknown DTLS fingerprint hash {hash_name!r}")
    parts = value.split(":")
    if len(parts) != length or not all(re.fullmatch(r"[0-9A-Fa-f]{2}", p) for p in parts):
        raise MalformedTransport(
            f"DTLS fingerprint is not {length} colon-separated hex bytes for {hash_name}"
        )


def _check_ip(value: str, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise MalformedTransport(f"candidate {what} {value!r} is not an IP address") from None


def _check_candidate(c: IceCandidate) -> None:
    if not _FOUNDATION.fullmatch(c.foundation):
        raise MalformedTransport(f"candidate foundation {c.foundation!r} is malformed")
    if not 1 <= c.component <= 256:
        raise MalformedTransport(f"candidate component {c.component} is not in 1..256")
    _check_ip(c.ip, "ip")
    if not 1 <= c.port <= 65535:
        raise MalformedTransport(f"candidate port {c.port} is not in 1..65535")
    if not 1 <= c.priority <= (1 << 31) - 1:
        raise MalformedTransport(f"candidate priority {c.priority} is out of range")
    if c.type not in ("host", "srflx", "prflx", "relay"):
        raise MalformedTransport(f"candidate type {c.type!r} is unknown")
    if c.protocol != "udp":
        raise MalformedTransport(f"candidate protocol {c.protocol!r} is not udp")
    if not 0 <= c.generation <= 255:
        raise MalformedTransport(f"candidate generation {c.generation} is out of range")
    if c.id and not _TOKEN.fullmatch(c.id):
        raise MalformedTransport("candidate id is malformed")
    if c.rel_addr is not None:
        _check_ip(c.rel_addr, "rel-addr")
    if c.rel_port is not None and not 0 <= c.rel_port <= 65535:
        raise MalformedTransport(f"candidate rel-port {c.rel_port} is out of range")


def _int(value: str | None, what: str, *, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise MalformedTransport(f"{what} is missing")
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise MalformedTransport(f"{what} {value[:20]!r} is not a number")
    return int(value)


# --- XML -------------------------------------------------------------------------------------


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _parse_candidate(el: _Element) -> IceCandidate | None:
    protocol = (el.get("protocol") or "").lower()
    if protocol != "udp":
        return None  # XEP-0176 is UDP; Conversations drops the others the same way.
    kind = el.get("type") or ""
    if kind not in ("host", "srflx", "prflx", "relay"):
        raise MalformedTransport(f"candidate type {kind[:20]!r} is unknown")
    rel_port = el.get("rel-port")
    return IceCandidate(
        foundation=el.get("foundation") or "",
        component=_int(el.get("component"), "candidate component"),
        ip=el.get("ip") or "",
        port=_int(el.get("port"), "candidate port"),
        priority=_int(el.get("priority"), "candidate priority"),
        type=kind,  # type: ignore[arg-type]  # checked above
        protocol="udp",
        generation=_int(el.get("generation"), "candidate generation", default=0),
        id=el.get("id") or "",
        rel_addr=el.get("rel-addr"),
        rel_port=None if rel_port is None else _int(rel_port, "candidate rel-port"),
    )


def parse_transport(el: _Element) -> WebRTCTransportInfo:
    """Parse and validate a webrtc-datachannel ``<transport/>`` (offer, answer or trickle).

    Raises :class:`MissingFingerprint` when no DTLS fingerprint is present,
    :class:`CandidateFlood` beyond :data:`MAX_CANDIDATES` candidates and
    :class:`MalformedTransport` for anything else that is wrong.
    """
    if el.tag != _q(WEBRTC_DATACHANNEL_NS, "transport"):
        raise MalformedTransport(f"not a webrtc-datachannel transport: {str(el.tag)[:80]!r}")
    inner = el.findall(_q(ICE_UDP_NS, "transport"))
    if len(inner) != 1:
        raise MalformedTransport("expected exactly one ice-udp transport inside")
    ice = inner[0]
    candidates_el = ice.findall(_q(ICE_UDP_NS, "candidate"))
    if len(candidates_el) > MAX_CANDIDATES:
        raise CandidateFlood(f"{len(candidates_el)} candidates (at most {MAX_CANDIDATES})")
    fingerprints_el = ice.findall(_q(DTLS_NS, "fingerprint"))
    if len(fingerprints_el) > MAX_FINGERPRINTS:
        raise MalformedTransport(f"more than {MAX_FINGERPRINTS} DTLS fingerprints")
    if not fingerprints_el:
        raise MissingFingerprint("the transport carries no DTLS fingerprint")
    fingerprints = []
    for fp in fingerprints_el:
        setup = fp.get("setup") or ""
        if setup not in ("actpass", "active", "passive"):
            raise MalformedTransport(f"DTLS setup {setup[:20]!r} is not actpass/active/passive")
        value = (fp.text or "").strip()
        fingerprints.append(Fingerprint((fp.get("hash") or "").lower(), value, setup))  # type: ignore[arg-type]
    options = [
        str(etree.QName(c).localname)
        for c in ice
        if isinstance(c.tag, str) and etree.QName(c).namespace == ICE_OPTION_NS
    ]
    if len(options) > _MAX_ICE_OPTIONS:
        raise MalformedTransport("too many ICE options")
    candidates = [c for c in map(_parse_candidate, candidates_el) if c is not None]
    return WebRTCTransportInfo(
        ufrag=ice.get("ufrag") or "",
        pwd=ice.get("pwd") or "",
        fingerprints=tuple(fingerprints),
        sctp_port=_int(el.get("sctp-port"), "sctp-port"),
        max_message_size=_int(el.get("max-message-size"), "max-message-size"),
        candidates=tuple(candidates),
        ice_options=tuple(o for o in options if o in _KNOWN_ICE_OPTIONS),
    )


def _candidate_element(c: IceCandidate) -> _Element:
    attrs = {
        "component": str(c.component),
        "foundation": c.foundation,
        "generation": str(c.generation),
        "id": c.id or secrets.token_hex(6),
        "ip": c.ip,
        "port": str(c.port),
        "priority": str(c.priority),
        "protocol": c.protocol,
        "type": c.type,
    }
    if c.rel_addr is not None:
        attrs["rel-addr"] = c.rel_addr
    if c.rel_port is not None:
        attrs["rel-port"] = str(c.rel_port)
    return etree.Element(_q(ICE_UDP_NS, "candidate"), attrib=attrs)


def build_transport(info: WebRTCTransportInfo, *, with_fingerprint: bool = True) -> _Element:
    """The ``<transport/>`` element for ``info``, in Conversations' dialect.

    ``with_fingerprint=False`` gives the wrapper Conversations sends in ``transport-info``
    (credentials and candidates, no fingerprint); such an element is only meaningful for a
    session whose offer/answer carried the fingerprint, and :func:`parse_transport` rejects it.
    """
    outer = etree.Element(
        _q(WEBRTC_DATACHANNEL_NS, "transport"),
        nsmap={None: WEBRTC_DATACHANNEL_NS},  # type: ignore[dict-item]
        attrib={"sctp-port": str(info.sctp_port), "max-message-size": str(info.max_message_size)},
    )
    ice = etree.SubElement(
        outer,
        _q(ICE_UDP_NS, "transport"),
        nsmap={None: ICE_UDP_NS},  # type: ignore[dict-item]
        attrib={"ufrag": info.ufrag, "pwd": info.pwd},
    )
    if with_fingerprint:
        for fp in info.fingerprints:
            fel = etree.SubElement(
                ice,
                _q(DTLS_NS, "fingerprint"),
                nsmap={None: DTLS_NS},  # type: ignore[dict-item]
                attrib={"hash": fp.hash, "setup": fp.setup},
            )
            fel.text = fp.value
        for option in info.ice_options:
            etree.SubElement(ice, _q(ICE_OPTION_NS, option), nsmap={None: ICE_OPTION_NS})  # type: ignore[dict-item]
    for c in info.candidates:
        ice.append(_candidate_element(c))
    return outer


def parse_trickle(el: _Element, session: WebRTCTransportInfo) -> tuple[IceCandidate, ...]:
    """Candidates of a ``transport-info`` for ``session`` (the peer's offer or answer).

    The wrapper must carry the session's ``ufrag``: candidates of another ICE generation are
    refused with :class:`MalformedTransport`. A fingerprint is not required here.
    """
    if el.tag != _q(WEBRTC_DATACHANNEL_NS, "transport"):
        raise MalformedTransport(f"not a webrtc-datachannel transport: {str(el.tag)[:80]!r}")
    inner = el.findall(_q(ICE_UDP_NS, "transport"))
    if len(inner) != 1:
        raise MalformedTransport("expected exactly one ice-udp transport inside")
    ice = inner[0]
    ufrag = ice.get("ufrag")
    if ufrag is not None and ufrag != session.ufrag:
        raise MalformedTransport("transport-info carries another ICE ufrag than the session")
    candidates_el = ice.findall(_q(ICE_UDP_NS, "candidate"))
    if len(candidates_el) > MAX_CANDIDATES:
        raise CandidateFlood(f"{len(candidates_el)} candidates (at most {MAX_CANDIDATES})")
    return tuple(c for c in map(_parse_candidate, candidates_el) if c is not None)


def trickle_infos(info: WebRTCTransportInfo) -> list[_Element]:
    """One ``transport-info`` transport per candidate of ``info``, as Conversations trickles.

    Conversations ignores candidates inside ``session-initiate``/``session-accept``: a
    driver talking to it sends the offer or answer and then each of these.
    """
    return [
        build_transport(replace(info, candidates=(c,)), with_fingerprint=False)
        for c in info.candidates
    ]


# --- SDP -------------------------------------------------------------------------------------


def candidate_to_sdp(c: IceCandidate) -> str:
    """The SDP ``candidate:`` attribute value (without ``a=``) for ``c``."""
    line = (
        f"candidate:{c.foundation} {c.component} {c.protocol} {c.priority} {c.ip} {c.port} "
        f"typ {c.type}"
    )
    if c.rel_addr is not None:
        line += f" raddr {c.rel_addr}"
    if c.rel_port is not None:
        line += f" rport {c.rel_port}"
    return line + f" generation {c.generation}"


def candidate_from_sdp(value: str) -> IceCandidate | None:
    """Parse an SDP ``candidate:`` attribute; ``None`` for a non-UDP candidate."""
    if value.startswith("candidate:"):
        value = value[len("candidate:") :]
    parts = value.split()
    if len(parts) < 8 or parts[6] != "typ" or len(parts) > 40:
        raise MalformedTransport(f"malformed SDP candidate {value[:80]!r}")
    if parts[2].lower() != "udp":
        return None
    extra = dict(zip(parts[6::2], parts[7::2], strict=False))
    rport = extra.get("rport")
    return IceCandidate(
        foundation=parts[0],
        component=_int(parts[1], "candidate component"),
        ip=parts[4],
        port=_int(parts[5], "candidate port"),
        priority=_int(parts[3], "candidate priority"),
        type=extra["typ"],  # type: ignore[arg-type]  # checked by IceCandidate
        generation=_int(extra.get("generation"), "candidate generation", default=0),
        id=secrets.token_hex(6),
        rel_addr=extra.get("raddr"),
        rel_port=None if rport is None else _int(rport, "candidate rel-port"),
    )


#: The media id used in every SDP we build (libwebrtc and aiortc both name it "0").
SDP_MID: Final = "0"


def to_sdp(info: WebRTCTransportInfo, *, extra_candidates: Iterable[IceCandidate] = ()) -> str:
    """A one-media SDP describing the peer's data channel, for ``setRemoteDescription``."""
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(1 << 62)} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {SDP_MID}",
        "a=msid-semantic:WMS *",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        f"a=mid:{SDP_MID}",
        f"a=sctp-port:{info.sctp_port}",
        f"a=max-message-size:{info.max_message_size}",
        f"a=ice-ufrag:{info.ufrag}",
        f"a=ice-pwd:{info.pwd}",
    ]
    if info.ice_options:
        lines.append(f"a=ice-options:{' '.join(info.ice_options)}")
    for fp in info.fingerprints:
        lines.append(f"a=fingerprint:{fp.hash} {fp.value}")
    lines.append(f"a=setup:{info.setup}")
    for c in (*info.candidates, *extra_candidates):
        lines.append(f"a={candidate_to_sdp(c)}")
    return "\r\n".join(lines) + "\r\n"


def from_sdp(sdp: str, *, hashes: Sequence[str] = ("sha-256",)) -> WebRTCTransportInfo:
    """Our own local SDP (from the peer connection) as a transport element.

    Only fingerprints with a hash in ``hashes`` are kept (Conversations sends one, sha-256).
    """
    attrs: dict[str, list[str]] = {}
    in_app = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            in_app = line.startswith("m=application")
        elif line.startswith("a=") and (in_app or line.startswith(("a=fingerprint", "a=setup"))):
            key, _, value = line[2:].partition(":")
            attrs.setdefault(key, []).append(value)

    def one(key: str) -> str:
        values = attrs.get(key)
        if not values:
            raise MalformedTransport(f"SDP has no a={key}")
        return values[0]

    setup = one("setup")
    fingerprints = []
    for value in attrs.get("fingerprint", []):
        algo, _, digest = value.partition(" ")
        if algo.lower() in hashes:
            fingerprints.append(Fingerprint(algo.lower(), digest.strip(), setup))  # type: ignore[arg-type]
    candidates = [candidate_from_sdp(v) for v in attrs.get("candidate", [])]
    options = tuple(o for o in " ".join(attrs.get("ice-options", [])).split() if o)
    return WebRTCTransportInfo(
        ufrag=one("ice-ufrag"),
        pwd=one("ice-pwd"),
        fingerprints=tuple(fingerprints),
        sctp_port=_int(one("sctp-port"), "sctp-port"),
        max_message_size=_int(attrs.get("max-message-size", ["65536"])[0], "max-message-size"),
        candidates=tuple(c for c in candidates if c is not None),
        ice_options=tuple(o for o in options if o in _KNOWN_ICE_OPTIONS) or ("trickle",),
    )
