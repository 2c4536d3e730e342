"""Jingle File Transfer (XEP-0234) application format: file descriptions and informational payloads.

Pure data: builders take frozen dataclasses and return lxml elements, readers do the reverse and
raise :class:`FileTransferError` (a :class:`~jet_trio.RemoteProtocolError`) on anything hostile.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, cast

from lxml import etree

from .._errors import JetError, RemoteProtocolError
from .._jingle.message import Reason, ReasonCondition, Role, Senders
from .._xmpp import ns as _ns
from .hashes import ALGORITHMS, Hash, HashError, build_hash, build_hash_used, parse_hash_elements

__all__ = [
    "MAX_SIZE",
    "Checksum",
    "FileDescription",
    "FileTransferError",
    "InvalidFileDescription",
    "Range",
    "Received",
    "UnsafeFilename",
    "build_checksum",
    "build_description",
    "build_received",
    "file_not_available",
    "file_sender",
    "file_too_large",
    "is_file_request",
    "parse_checksum",
    "parse_description",
    "parse_info",
    "parse_range",
    "parse_received",
    "safe_filename",
]

MAX_SIZE: Final = 2**63 - 1
"""The largest file size or offset accepted (what a signed 64-bit file offset can hold)."""

_MAX_NAME: Final = 1024
_MAX_TEXT: Final = 8192
_MAX_FS_NAME: Final = 255  # bytes, the common file system limit of one path component
_FT: Final = _ns.JINGLE_FT
_DESCRIPTION: Final = f"{{{_FT}}}description"
_FILE: Final = f"{{{_FT}}}file"
_RANGE: Final = f"{{{_FT}}}range"
_CHECKSUM: Final = f"{{{_FT}}}checksum"
_RECEIVED: Final = f"{{{_FT}}}received"
_PATH: Final = f"{{{_ns.JET_TRIO_TREE}}}path"
#: Characters a relative path may have in an offer (what a receiver would accept is far less:
#: see :mod:`jet_trio._transfer.paths`).
MAX_PATH_TEXT: Final = 8192
_SINGLE: Final = frozenset({"name", "size", "media-type", "date", "range"})
_DECIMAL = re.compile(r"[0-9]{1,19}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Bidirectional controls (embeddings, overrides, isolates, marks): a name holding one can
#: display as another.
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
#: Controls (C0, C1), line and paragraph separators, lone surrogates.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Zl", "Zp", "Cs"})
#: Names of jet-trio's partial-download records (and their temporary files).
_RECORD_SUFFIXES: Final = (".jet-partial.json", ".jet-partial.json.tmp")
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _default_ns(ns: str) -> Mapping[str, str]:
    # lxml-stubs type nsmap keys as str, but None is how lxml declares a default namespace.
    return cast("Mapping[str, str]", {None: ns})


class FileTransferError(RemoteProtocolError):
    """A received file description, ``<checksum/>`` or ``<received/>`` is malformed or unsafe."""


class UnsafeFilename(FileTransferError):
    """A received file name cannot be used safely as a file name in a directory."""


class InvalidFileDescription(JetError, ValueError):
    """A file description built locally breaks a rule (negative size, range beyond size...)."""


@dataclass(frozen=True, slots=True)
class Range:
    """The part of a file to transfer: ``length`` bytes from ``offset`` (``None``: to the end)."""

    offset: int = 0
    length: int | None = None
    hashes: tuple[Hash, ...] = ()

    def __post_init__(self) -> None:
        _check_int(self.offset, "range offset")
        if self.length is not None:
            _check_int(self.length, "range length")
            if self.offset + self.length > MAX_SIZE:
                raise InvalidFileDescription("the range ends beyond the largest file size")


@dataclass(frozen=True, slots=True)
class FileDescription:
    """The ``<file/>`` of a XEP-0234 ``<description/>``.

    ``hashes`` hold computed digests; ``hash_used`` the algorithms announced for a digest sent
    later in a ``<checksum/>``. A file offer carries ``size``; a file request identifies the file
    by any of these fields, usually a hash.
    """

    name: str | None = None
    size: int | None = None
    media_type: str | None = None
    date: datetime | None = None
    desc: str | None = None
    hashes: tuple[Hash, ...] = ()
    hash_used: tuple[str, ...] = ()
    range: Range | None = None
    #: jet-trio's extension: the file's path inside a folder that is sent (``photos/2023/a.jpg``,
    #: ``/``-separated), in a ``<path xmlns="urn:jet-trio:tree:0">`` inside ``<file/>``; the
    #: receiver checks it (:func:`~jet_trio.check_relative_path`) before using it.
    path: str | None = None

    def __post_init__(self) -> None:
        if self.path is not None and (
            not isinstance(self.path, str) or len(self.path) > MAX_PATH_TEXT or "\x00" in self.path
        ):
            raise InvalidFileDescription("the relative path is too long, or not a str, or has NUL")
        if self.name is not None:
            problem = _name_problem(self.name)
            if problem:
                raise InvalidFileDescription(f"file name {self.name!r}: {problem}")
        if self.size is not None:
            _check_int(self.size, "file size")
        for label, text in (("media type", self.media_type), ("description", self.desc)):
            if text is not None and (len(text) > _MAX_TEXT or "\x00" in text):
                raise InvalidFileDescription(f"the {label} is too long or contains NUL")
        if self.date is not None and self.date.tzinfo is None:
            raise InvalidFileDescription("the file date needs a time zone")
        unknown = set(self.hash_used) - set(ALGORITHMS)
        if unknown:
            raise InvalidFileDescription(f"unsupported hash algorithm {sorted(unknown)[0]!r}")
        if len({h.algo for h in self.hashes}) != len(self.hashes):
            raise InvalidFileDescription("two hashes with the same algorithm")
        if self.range is not None and self.size is not None:
            end = self.range.offset + (self.range.length or 0)
            if self.range.offset > self.size or end > self.size:
                raise InvalidFileDescription(
                    f"the range ({self.range.offset}+{self.range.length}) is beyond the file "
                    f"size ({self.size})"
                )

    @property
    def transfer_length(self) -> int | None:
        """How many bytes of the file are transferred, if known."""
        if self.range is not None and self.range.length is not None:
            return self.range.length
        if self.size is None:
            return None
        return self.size - (self.range.offset if self.range else 0)


@dataclass(frozen=True, slots=True)
class Checksum:
    """A ``<checksum/>`` session-info payload: the file hash(es) sent after the offer."""

    creator: Role | None
    name: str | None
    hashes: tuple[Hash, ...] = ()
    range: Range | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """A ``<received/>`` session-info payload: the receiver has the whole file."""

    creator: Role | None
    name: str | None


def _check_int(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFileDescription(f"the {what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= MAX_SIZE:
        raise InvalidFileDescription(f"the {what} {value} is out of range (0..{MAX_SIZE})")


def _name_problem(name: str) -> str | None:
    if name in ("", ".", ".."):
        return "not a file name"
    if len(name) > _MAX_NAME:
        return "too long"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if _CONTROL.search(name):
        return "contains NUL or a control character"
    return _deceptive(name)


def _deceptive(name: str) -> str | None:
    """Why ``name`` could pass for another name or for a jet-trio record, if it could."""
    for ch in name:
        if ch in _BIDI_CONTROLS:
            return (
                f"contains the bidirectional control U+{ord(ch):04X}, which makes a name "
                "display as another"
            )
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return f"contains the control or separator U+{ord(ch):04X}"
    if name.rstrip().endswith(_RECORD_SUFFIXES):
        return "takes the name of a jet-trio partial-download record"
    return None


def safe_filename(name: str) -> str:
    """A name that is safe to create inside a directory, derived from a received file name.

    Drops any directory part (``/`` or ``\\``), surrounding whitespace and invisible format
    characters (zero-width spaces and joiners, soft hyphens, byte-order marks), shows a leading
    dot (``.bashrc`` becomes ``_.bashrc``: no hidden files, and no name of jet-trio's own
    temporary files), and trims the stem to 255 UTF-8 bytes. Raises :class:`UnsafeFilename`
    for an empty name, ``.``, ``..``, control characters (C0 and C1), line or paragraph
    separators, bidirectional controls (``invoice`` U+202E ``gpj.exe`` would display as
    ``invoiceexe.jpg``) and the name of a jet-trio partial-download record.
    """
    base = re.split(r"[/\\]", name)[-1].strip()
    if base in ("", ".", ".."):
        raise UnsafeFilename(f"{name!r} does not name a file")
    if _CONTROL.search(base):
        raise UnsafeFilename(f"{name!r} contains NUL or a control character")
    if problem := _deceptive(base):
        raise UnsafeFilename(f"{name!r} {problem}")
    base = "".join(ch for ch in base if unicodedata.category(ch) != "Cf").strip()
    if base in ("", ".", ".."):
        raise UnsafeFilename(f"{name!r} does not name a file")
    if problem := _deceptive(base):
        raise UnsafeFilename(f"{name!r} {problem}")
    if base.startswith("."):
        base = "_" + base
    if len(base.encode()) > _MAX_FS_NAME:
        stem, dot, ext = base.rpartition(".")
        if not dot or not stem or len(ext.encode()) > 32:
            stem, dot, ext = base, "", ""
        room = _MAX_FS_NAME - len((dot + ext).encode())
        stem = stem.encode()[:room].decode(errors="ignore").rstrip()
        base = stem + dot + ext
    return base


def file_sender(senders: Senders | None) -> Role:
    """The party sending the file of a XEP-0234 content (``senders`` must be one party)."""
    if senders is Senders.INITIATOR:
        return Role.INITIATOR
    if senders is Senders.RESPONDER:
        return Role.RESPONDER
    name = senders.value if senders is not None else "both"
    raise FileTransferError(f"senders={name!r} is undefined for a file transfer")


def is_file_request(creator: Role, senders: Senders | None) -> bool:
    """True if the content is a request (the party adding it receives the file), XEP-0234 §3.1."""
    return file_sender(senders) is not creator


def build_description(file: FileDescription, *, request: bool = False) -> etree._Element:
    """The ``<description/>`` for ``file``.

    An offer (``request=False``) must know its size: ``<size>`` is always sent since Dino
    rejects offers without it. A request must identify the file by a name or a hash.
    """
    if not request and file.size is None:
        raise InvalidFileDescription("a file offer needs a size")
    if request and file.name is None and not file.hashes:
        raise InvalidFileDescription("a file request needs a name or a hash")
    desc = etree.Element(_DESCRIPTION, nsmap=_default_ns(_FT))
    desc.append(_build_file(file))
    return desc


def _build_file(file: FileDescription) -> etree._Element:
    el = etree.Element(_FILE)
    for tag, value in (
        ("name", file.name),
        ("size", None if file.size is None else str(file.size)),
        ("media-type", file.media_type),
        ("date", None if file.date is None else _format_date(file.date)),
        ("desc", file.desc),
    ):
        if value is not None:
            etree.SubElement(el, f"{{{_FT}}}{tag}").text = value
    if file.range is not None:
        el.append(_build_range(file.range))
    _append_hashes(el, file.hashes, file.hash_used)
    if file.path is not None:
        etree.SubElement(el, _PATH, nsmap=_default_ns(_ns.JET_TRIO_TREE)).text = file.path
    return el


def _append_hashes(el: etree._Element, hashes: tuple[Hash, ...], used: tuple[str, ...]) -> None:
    for h in hashes:
        el.append(build_hash(h))
    for algo in used:
        el.append(build_hash_used(algo))


def _build_range(rng: Range) -> etree._Element:
    el = etree.Element(_RANGE)
    if rng.offset:
        el.set("offset", str(rng.offset))
    if rng.length is not None:
        el.set("length", str(rng.length))
    _append_hashes(el, rng.hashes, ())
    return el


def _format_date(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z"


def parse_description(element: etree._Element) -> FileDescription:
    """Read a XEP-0234 ``<description/>``; raise :class:`FileTransferError` if malformed."""
    if element.tag != _DESCRIPTION:
        raise FileTransferError(f"expected a file-transfer:5 <description/>, got {element.tag!r}")
    files = [child for child in element if child.tag == _FILE]
    if len(files) != 1:
        raise FileTransferError(f"a file description needs one <file/>, found {len(files)}")
    return _parse_file(files[0])


def _text(el: etree._Element, what: str, limit: int = _MAX_TEXT) -> str:
    text = (el.text or "").strip()
    if len(text) > limit:
        raise FileTransferError(f"the {what} is longer than {limit} characters")
    if "\x00" in text:
        raise FileTransferError(f"the {what} contains NUL")
    return text


def _parse_int(text: str | None, what: str) -> int:
    text = (text or "").strip()
    if not _DECIMAL.fullmatch(text):
        raise FileTransferError(f"the {what} {text[:40]!r} is not a non-negative integer")
    value = int(text)
    if value > MAX_SIZE:
        raise FileTransferError(f"the {what} {value} is too large")
    return value


def _parse_date(text: str) -> datetime:
    if _DATE_ONLY.fullmatch(text):
        text += "T00:00:00Z"  # the XEP-0234 schema says xs:date, its prose says DateTime
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise FileTransferError(f"the file date {text[:40]!r} is not a XEP-0082 DateTime") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _parse_hashes(el: etree._Element) -> tuple[tuple[Hash, ...], tuple[str, ...]]:
    try:
        return parse_hash_elements(el)
    except HashError as exc:
        raise FileTransferError(f"bad hash: {exc}") from None


def _parse_range(el: etree._Element) -> Range:
    offset = _parse_int(el.get("offset"), "range offset") if el.get("offset") is not None else 0
    length = _parse_int(el.get("length"), "range length") if el.get("length") is not None else None
    hashes, _ = _parse_hashes(el)
    try:
        return Range(offset, length, hashes)
    except InvalidFileDescription as exc:
        raise FileTransferError(str(exc)) from None


def parse_range(description: etree._Element) -> Range | None:
    """The ``<range/>`` of the ``<file/>`` in a ``<description/>`` (``None`` if it has none),
    read without the rest of the file description: a peer's session-accept may echo the
    offer loosely, but a range it asks for must be well formed."""
    ranges = [r for f in description if f.tag == _FILE for r in f if r.tag == _RANGE]
    if len(ranges) > 1:
        raise FileTransferError("<file/> has more than one <range/>")
    return _parse_range(ranges[0]) if ranges else None


def _parse_file(el: etree._Element) -> FileDescription:
    fields: dict[str, etree._Element] = {}
    desc: str | None = None
    path: str | None = None
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _PATH:
            if path is not None:
                raise FileTransferError("<file/> has more than one jet-trio <path/>")
            # As given (not stripped: blanks are part of a name); checked by the receiver.
            path = child.text or ""
            if len(path) > MAX_PATH_TEXT:
                raise FileTransferError(f"the relative path is longer than {MAX_PATH_TEXT}")
            continue
        qname = etree.QName(child)
        if qname.namespace != _FT:
            continue
        # Conversations writes <mediaType/>.
        local = "media-type" if qname.localname == "mediaType" else qname.localname
        if local in _SINGLE:
            if local in fields:
                raise FileTransferError(f"<file/> has more than one <{local}/>")
            fields[local] = child
        elif local == "desc" and (desc is None or child.get(f"{{{_ns.XML}}}lang") is None):
            desc = _text(child, "description")
    name = None
    if "name" in fields:
        name = (fields["name"].text or "").strip()
        problem = _name_problem(name)
        if problem:
            raise UnsafeFilename(f"file name {name[:80]!r}: {problem}")
    size = _parse_int(fields["size"].text, "file size") if "size" in fields else None
    media_type = _text(fields["media-type"], "media type") if "media-type" in fields else None
    date = _parse_date(_text(fields["date"], "date", 64)) if "date" in fields else None
    rng = _parse_range(fields["range"]) if "range" in fields else None
    hashes, used = _parse_hashes(el)
    try:
        return FileDescription(
            name=name,
            size=size,
            media_type=media_type or None,
            date=date,
            desc=desc or None,
            hashes=hashes,
            hash_used=used,
            range=rng,
            path=path,
        )
    except InvalidFileDescription as exc:
        raise FileTransferError(str(exc)) from None


def _content_ref(el: etree._Element) -> tuple[Role | None, str | None]:
    creator = el.get("creator")
    name = el.get("name")
    if name is not None and (len(name) > _MAX_NAME or _CONTROL.search(name)):
        raise FileTransferError("bad content name")
    if creator is None:
        return None, name
    try:
        return Role(creator), name
    except ValueError:
        raise FileTransferError(f"bad creator {creator[:40]!r}") from None


def _set_content_ref(el: etree._Element, creator: Role | None, name: str | None) -> None:
    if creator is not None:
        el.set("creator", creator.value)
    if name is not None:
        el.set("name", name)


def build_checksum(checksum: Checksum) -> etree._Element:
    """The ``<checksum/>`` session-info payload."""
    if not checksum.hashes and (checksum.range is None or not checksum.range.hashes):
        raise InvalidFileDescription("a checksum needs at least one hash")
    el = etree.Element(_CHECKSUM, nsmap=_default_ns(_FT))
    _set_content_ref(el, checksum.creator, checksum.name)
    file = etree.SubElement(el, _FILE)
    if checksum.range is not None:
        file.append(_build_range(checksum.range))
    _append_hashes(file, checksum.hashes, ())
    return el


def parse_checksum(element: etree._Element) -> Checksum:
    """Read a ``<checksum/>``; it must carry at least one hash value."""
    if element.tag != _CHECKSUM:
        raise FileTransferError(f"expected <checksum/>, got {element.tag!r}")
    creator, name = _content_ref(element)
    files = [child for child in element if child.tag == _FILE]
    if len(files) != 1:
        raise FileTransferError(f"a checksum needs one <file/>, found {len(files)}")
    hashes, _ = _parse_hashes(files[0])
    ranges = [child for child in files[0] if child.tag == _RANGE]
    if len(ranges) > 1:
        raise FileTransferError("a checksum has more than one <range/>")
    rng = _parse_range(ranges[0]) if ranges else None
    if not hashes and (rng is None or not rng.hashes):
        raise FileTransferError("a checksum without any hash value")
    return Checksum(creator, name, hashes, rng)


def build_received(received: Received) -> etree._Element:
    """The ``<received/>`` session-info payload."""
    el = etree.Element(_RECEIVED, nsmap=_default_ns(_FT))
    _set_content_ref(el, received.creator, received.name)
    return el


def parse_received(element: etree._Element) -> Received:
    """Read a ``<received/>``."""
    if element.tag != _RECEIVED:
        raise FileTransferError(f"expected <received/>, got {element.tag!r}")
    return Received(*_content_ref(element))


def parse_info(element: etree._Element) -> Checksum | Received:
    """Read a file-transfer session-info payload.

    Raises :class:`FileTransferError` for anything else; the caller answers an unknown payload
    with the Jingle ``unsupported-info`` error.
    """
    if element.tag == _CHECKSUM:
        return parse_checksum(element)
    if element.tag == _RECEIVED:
        return parse_received(element)
    raise FileTransferError(f"unsupported file-transfer info {element.tag!r}")


def file_not_available(text: str | None = None) -> Reason:
    """The XEP-0234 reason for refusing a request for a file we cannot or will not provide."""
    detail = etree.Element(f"{{{_ns.JINGLE_FT_ERRORS}}}file-not-available")
    return Reason(ReasonCondition.FAILED_APPLICATION, text, detail=detail)


def file_too_large(text: str | None = None) -> Reason:
    """The XEP-0234 reason for aborting a file over quota or longer than announced."""
    detail = etree.Element(f"{{{_ns.JINGLE_FT_ERRORS}}}file-too-large")
    return Reason(ReasonCondition.MEDIA_ERROR, text, detail=detail)
