"""XEP-0234 file descriptions, checksum/received payloads and file name safety."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jet_trio._errors import RemoteProtocolError
from jet_trio._jingle.machine import (
    Content,
    JingleSession,
    Role,
    Senders,
    build_jingle,
    find_jingle,
    parse_jingle,
)
from jet_trio._transfer.description import (
    MAX_SIZE,
    Checksum,
    FileDescription,
    FileTransferError,
    InvalidFileDescription,
    Range,
    Received,
    UnsafeFilename,
    build_checksum,
    build_description,
    build_received,
    file_not_available,
    file_sender,
    file_too_large,
    is_file_request,
    parse_checksum,
    parse_description,
    parse_info,
    parse_received,
    safe_filename,
)
from jet_trio._transfer.hashes import Hash
from jet_trio._xmpp import ns as _ns
from jet_trio._xmpp.jid import JID

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dino"
FT = _ns.JINGLE_FT
SHA1 = Hash("sha-1", bytes.fromhex("c3499c2729730a7f807efb8676a92dcb6f8a3f8f"))
SHA256 = Hash("sha-256", bytes(range(32)))


def _desc(file_xml: str) -> etree._Element:
    return etree.fromstring(
        f"<description xmlns='{FT}' xmlns:h='{_ns.HASHES}'><file>{file_xml}</file></description>"
    )


def _dino_descriptions(name: str) -> list[etree._Element]:
    out: list[etree._Element] = []
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("<iq"):
            out.extend(etree.fromstring(line).iter(f"{{{FT}}}description"))
    return out


def test_full_round_trip_and_wire_form() -> None:
    file = FileDescription(
        name="test.txt",
        size=6144,
        media_type="text/plain",
        date=datetime(2015, 7, 26, 21, 46, tzinfo=timezone(timedelta(hours=1))),
        desc="This is a test.",
        hashes=(SHA1, SHA256),
        hash_used=("sha-512",),
        range=Range(1024, 2048),
    )
    el = build_description(file)
    assert el.tag == f"{{{FT}}}description"
    xml = etree.tostring(el).decode()
    assert xml.startswith(f'<description xmlns="{FT}"><file><name>test.txt</name><size>6144</size>')
    assert "<media-type>text/plain</media-type>" in xml
    assert "<date>2015-07-26T20:46:00Z</date>" in xml
    assert '<range offset="1024" length="2048"/>' in xml
    assert '<hash-used xmlns="urn:xmpp:hashes:2" algo="sha-512"/>' in xml
    back = parse_description(etree.fromstring(xml))
    assert back == file
    assert back.transfer_length == 2048


def test_minimal_offer_always_sends_size() -> None:
    xml = etree.tostring(build_description(FileDescription(name="e", size=0))).decode()
    assert "<size>0</size>" in xml
    with pytest.raises(InvalidFileDescription, match="needs a size"):
        build_description(FileDescription(name="x"))


def test_file_request_by_hash() -> None:
    request = FileDescription(hashes=(SHA1,))
    el = build_description(request, request=True)
    assert "<size>" not in etree.tostring(el).decode()
    assert parse_description(el) == request
    with pytest.raises(InvalidFileDescription, match="name or a hash"):
        build_description(FileDescription(size=3), request=True)


def test_parse_xep_0234_request_example() -> None:
    file = parse_description(_desc("<h:hash algo='sha-1'>w0mcJylzCn+AfvuGdqkty2+KP48=</h:hash>"))
    assert file == FileDescription(hashes=(SHA1,))
    assert file.transfer_length is None


def test_parse_dino_offers() -> None:
    (offer,) = _dino_descriptions("dino2dino_jet_omemo_s5b.xml")[:1]
    assert parse_description(offer) == FileDescription(name="jet_a2b.bin", size=25000)
    accepted = _dino_descriptions("dino_sent_s5b_receive.xml")[0]
    file = parse_description(accepted)
    assert (file.name, file.size, file.media_type) == (
        "payload.bin",
        20000,
        "application/octet-stream",
    )
    assert file.hashes[0].algo == "sha-256"
    assert file.transfer_length == 20000


def test_media_type_camel_case_from_conversations() -> None:
    file = parse_description(_desc("<mediaType>image/png</mediaType><size>1</size>"))
    assert file.media_type == "image/png"


def test_unknown_children_and_namespaces_ignored_desc_prefers_no_lang() -> None:
    file = parse_description(
        _desc(
            "<thumbnail xmlns='urn:xmpp:thumbs:1' uri='cid:x'/><size>5</size>"
            "<desc xml:lang='de'>Hallo</desc><desc>Hello</desc><whatever/>"
        )
    )
    assert file == FileDescription(size=5, desc="Hello")


def test_dates() -> None:
    assert parse_description(_desc("<date>1969-07-21T02:56:15Z</date>")).date == datetime(
        1969, 7, 21, 2, 56, 15, tzinfo=UTC
    )
    assert parse_description(_desc("<date>2015-07-26</date>")).date == datetime(
        2015, 7, 26, tzinfo=UTC
    )
    naive = parse_description(_desc("<date>2015-07-26T10:00:00</date>")).date
    assert naive is not None and naive.tzinfo is UTC
    with pytest.raises(FileTransferError, match="DateTime"):
        parse_description(_desc("<date>yesterday</date>"))


@pytest.mark.parametrize(
    ("file_xml", "match"),
    [
        ("<size>-1</size>", "non-negative integer"),
        ("<size>+5</size>", "non-negative integer"),
        ("<size>1e3</size>", "non-negative integer"),
        ("<size>0x10</size>", "non-negative integer"),
        ("<size></size>", "non-negative integer"),
        ("<size>\uff11\uff12</size>", "non-negative integer"),
        ("<size>99999999999999999999</size>", "non-negative integer"),
        (f"<size>{2**63}</size>", "too large"),
        ("<size>1</size><size>2</size>", "more than one <size/>"),
        ("<size>1</size><mediaType>a</mediaType><media-type>b</media-type>", "more than one"),
        ("<size>10</size><range offset='11'/>", "beyond the file size"),
        ("<size>10</size><range offset='5' length='6'/>", "beyond the file size"),
        ("<range offset='-1'/>", "range offset"),
        ("<range length='x'/>", "range length"),
        (f"<range offset='{MAX_SIZE}' length='1'/>", "beyond the largest"),
        ("<h:hash algo='sha-1'>AAAA</h:hash>", "bad hash"),
        ("<h:hash algo='md5'>AAAAAAAAAAAAAAAAAAAAAA==</h:hash>", "bad hash"),
        ("<desc>" + "x" * 9000 + "</desc>", "longer than"),
    ],
)
def test_hostile_descriptions(file_xml: str, match: str) -> None:
    with pytest.raises(FileTransferError, match=match):
        parse_description(_desc(file_xml))


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "a/b", "..\\x", "C:\\win.ini", "", ".", "..", "tab\there", "x" * 1100],
)
def test_hostile_names_rejected(name: str) -> None:
    el = _desc("<name/><size>1</size>")
    el[0][0].text = name
    with pytest.raises(UnsafeFilename):
        parse_description(el)
    assert issubclass(UnsafeFilename, RemoteProtocolError)


def test_structure_errors() -> None:
    with pytest.raises(FileTransferError, match="expected a file-transfer:5"):
        parse_description(etree.fromstring("<description xmlns='urn:xmpp:jingle:apps:rtp:1'/>"))
    with pytest.raises(FileTransferError, match="found 0"):
        parse_description(etree.fromstring(f"<description xmlns='{FT}'/>"))
    with pytest.raises(FileTransferError, match="found 2"):
        parse_description(
            etree.fromstring(f"<description xmlns='{FT}'><file/><file/></description>")
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": -1},
        {"size": MAX_SIZE + 1},
        {"size": True},
        {"size": 1.5},
        {"name": "a/b"},
        {"name": ".."},
        {"name": "a\x00b"},
        {"size": 10, "range": Range(11)},
        {"size": 10, "range": Range(4, 7)},
        {"desc": "a\x00"},
        {"date": datetime(2020, 1, 1)},
        {"hashes": (SHA1, SHA1)},
        {"hash_used": ("md5",)},
    ],
)
def test_local_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidFileDescription):
        FileDescription(**kwargs)  # type: ignore[arg-type]


def test_range_validation_and_defaults() -> None:
    assert Range() == Range(0, None, ())
    assert FileDescription(size=10, range=Range(10)).transfer_length == 0
    assert FileDescription(size=10, range=Range(4)).transfer_length == 6
    for bad in ((-1, None), (0, -1), (MAX_SIZE, 1)):
        with pytest.raises(InvalidFileDescription):
            Range(*bad)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("a/b/c.txt", "c.txt"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("  spaced.txt ", "spaced.txt"),
        (".hidden", "_.hidden"),  # dotfiles are stored visibly
        (".bashrc", "_.bashrc"),
        (".X.part", "_.X.part"),  # never the name of a temporary file
        ("zero\u200bwidth\u2060.txt", "zerowidth.txt"),  # invisible format characters dropped
        ("\ufeffbom.txt", "bom.txt"),
        ("naïve résumé.txt", "naïve résumé.txt"),
        ("فا\u200cیل.txt", "فایل.txt"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a/..",
        "dir/",
        "a\\.",
        "   ",
        "x\x00y",
        "b\x1fc",
        "invoice\u202egpj.exe",  # right-to-left override: shows as invoiceexe.jpg
        "a\u202ab",
        "a\u2066b\u2069",
        "mark\u200f.txt",
        "csi\x9b31m",  # C1 controls
        "nel\x85.txt",
        "line\u2028sep",
        "para\u2029sep",
        "\u200b",  # nothing left once the invisible characters are gone
        "x.part.jet-partial.json",  # a partial-download record's name
        ".X.part.jet-partial.json",
        "y.jet-partial.json.tmp",
    ],
)
def test_safe_filename_rejects(name: str) -> None:
    with pytest.raises(UnsafeFilename):
        safe_filename(name)


def test_safe_filename_truncates_long_names_keeping_extension() -> None:
    out = safe_filename("é" * 300 + ".tar.gz")
    assert out.endswith(".gz")
    assert len(out.encode()) <= 255
    out.encode().decode()  # still valid UTF-8
    plain = safe_filename("x" * 400)
    assert plain == "x" * 255


@given(st.text(max_size=300))
def test_safe_filename_never_escapes(name: str) -> None:
    try:
        out = safe_filename(name)
    except UnsafeFilename:
        return
    assert out not in ("", ".", "..")
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert len(out.encode()) <= 255


@pytest.mark.parametrize(
    ("creator", "senders", "is_request"),
    [
        (Role.INITIATOR, Senders.INITIATOR, False),
        (Role.INITIATOR, Senders.RESPONDER, True),
        (Role.RESPONDER, Senders.INITIATOR, True),
        (Role.RESPONDER, Senders.RESPONDER, False),
    ],
)
def test_offer_or_request_table(creator: Role, senders: Senders, is_request: bool) -> None:
    assert is_file_request(creator, senders) is is_request


@pytest.mark.parametrize("senders", [Senders.BOTH, Senders.NONE, None])
def test_senders_must_be_one_party(senders: Senders | None) -> None:
    with pytest.raises(FileTransferError, match="undefined"):
        file_sender(senders)


def test_checksum_round_trip_and_spec_example() -> None:
    checksum = Checksum(Role.INITIATOR, "a-file-offer", (SHA1,))
    el = build_checksum(checksum)
    assert el.get("creator") == "initiator" and el.get("name") == "a-file-offer"
    assert parse_checksum(el) == checksum
    assert parse_info(el) == checksum
    spec = etree.fromstring(
        f"<checksum xmlns='{FT}' creator='initiator' name='a-file-offer'><file>"
        f"<range offset='2048' length='1024'><hash xmlns='{_ns.HASHES}' algo='sha-1'>"
        "kHp5RSzW/h7Gm1etSf90Mr5PC/k=</hash></range></file></checksum>"
    )
    ranged = parse_checksum(spec)
    assert ranged.hashes == ()
    assert ranged.range is not None and (ranged.range.offset, ranged.range.length) == (2048, 1024)
    assert ranged.range.hashes[0].algo == "sha-1"
    assert parse_checksum(build_checksum(ranged)) == ranged


def test_checksum_errors() -> None:
    with pytest.raises(InvalidFileDescription):
        build_checksum(Checksum(None, None))
    with pytest.raises(FileTransferError, match="without any hash"):
        parse_checksum(etree.fromstring(f"<checksum xmlns='{FT}'><file/></checksum>"))
    with pytest.raises(FileTransferError, match="one <file/>"):
        parse_checksum(etree.fromstring(f"<checksum xmlns='{FT}'/>"))
    with pytest.raises(FileTransferError, match="creator"):
        parse_checksum(etree.fromstring(f"<checksum xmlns='{FT}' creator='me'><file/></checksum>"))
    with pytest.raises(FileTransferError, match="expected <checksum/>"):
        parse_checksum(etree.fromstring(f"<received xmlns='{FT}'/>"))


def test_received_round_trip_and_spec_example() -> None:
    received = Received(Role.INITIATOR, "a-file-offer")
    xml = etree.tostring(build_received(received)).decode()
    assert xml == f'<received xmlns="{FT}" creator="initiator" name="a-file-offer"/>'
    assert parse_received(etree.fromstring(xml)) == received
    assert parse_info(etree.fromstring(f"<received xmlns='{FT}'/>")) == Received(None, None)
    with pytest.raises(FileTransferError, match="expected <received/>"):
        parse_received(etree.fromstring(f"<checksum xmlns='{FT}'/>"))


def test_parse_info_rejects_other_payloads() -> None:
    with pytest.raises(FileTransferError, match="unsupported"):
        parse_info(etree.fromstring("<ringing xmlns='urn:xmpp:jingle:apps:rtp:1:info'/>"))


_names = st.text(
    st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
        # and the bidirectional controls, refused as deceptive
        blacklist_characters="/\\\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    ),
    min_size=1,
    max_size=40,
).filter(lambda n: n.strip() not in ("", ".", ".."))


@given(
    name=st.none() | _names,
    size=st.integers(0, MAX_SIZE),
    offset=st.integers(0, 2**40),
    media=st.none() | st.sampled_from(["text/plain", "application/octet-stream"]),
)
def test_round_trip_property(name: str | None, size: int, offset: int, media: str | None) -> None:
    name = name.strip() if name is not None else None
    rng = Range(min(offset, size))
    file = FileDescription(name=name, size=size, media_type=media, hashes=(SHA256,), range=rng)
    assert parse_description(build_description(file)) == file


@given(st.text(max_size=30), st.text(max_size=30))
def test_parse_never_raises_untyped(size: str, offset: str) -> None:
    el = _desc("<size/><range/>")
    try:
        el[0][0].text = size
        el[0][1].set("offset", offset)
    except ValueError:
        return  # not representable in XML at all
    with contextlib.suppress(FileTransferError):
        parse_description(el)


def test_file_request_session_flow() -> None:
    """The receiver pulls a file it knows by hash: it initiates with senders='responder'."""
    juliet, romeo = JID("juliet@capulet.example/balcony"), JID("romeo@montague.example/orchard")
    wanted = FileDescription(hashes=(SHA1,))
    transport = etree.Element(f"{{{_ns.JINGLE_IBB}}}transport", sid="ibb1")
    request = Content(
        Role.INITIATOR,
        "a-file-request",
        Senders.RESPONDER,
        build_description(wanted, request=True),
        transport,
    )
    asker = JingleSession(Role.INITIATOR, "uj3b2", juliet, romeo)
    sent = asker.initiate([request])
    # Over the wire and back, as the client would do it.
    iq = etree.Element(f"{{{_ns.CLIENT}}}iq", type="set")
    iq.append(build_jingle(sent))
    jingle = find_jingle(etree.fromstring(etree.tostring(iq)))
    assert jingle is not None
    msg = parse_jingle(jingle, juliet)
    host = JingleSession(Role.RESPONDER, "uj3b2", romeo, juliet)
    assert host.receive(msg) is None
    (content,) = host.contents.values()
    assert content.description is not None
    assert is_file_request(content.creator, content.senders)
    assert file_sender(content.senders) is host.role
    assert parse_description(content.description) == wanted


def test_file_transfer_error_reasons() -> None:
    session = JingleSession(Role.INITIATOR, "s", JID("a@b/c"), JID("d@e/f"))
    offer = Content(
        Role.INITIATOR,
        "f",
        Senders.INITIATOR,
        build_description(FileDescription(name="f", size=1)),
        etree.Element(f"{{{_ns.JINGLE_IBB}}}transport"),
    )
    session.initiate([offer])
    for reason, condition, detail in (
        (file_too_large("over quota"), "media-error", "file-too-large"),
        (file_not_available(), "failed-application", "file-not-available"),
    ):
        el = build_jingle(session.terminate_with(reason))
        found = el.find(f"{{{_ns.JINGLE}}}reason/{{{_ns.JINGLE}}}{condition}")
        assert found is not None
        assert el.find(f"{{{_ns.JINGLE}}}reason/{{{_ns.JINGLE_FT_ERRORS}}}{detail}") is not None
        session = JingleSession(Role.INITIATOR, "s", JID("a@b/c"), JID("d@e/f"))
        session.initiate([offer])
    assert file_too_large("over quota").text == "over quota"


# -- jet-trio's relative path extension (urn:jet-trio:tree:0) -----------------------------------


def test_relative_path_round_trips_inside_file() -> None:
    file = FileDescription(name="2023__a b.jpg", size=3, path="photos/2023/a b.jpg")
    el = build_description(file)
    (path,) = el.iter(f"{{{_ns.JET_TRIO_TREE}}}path")
    parent = path.getparent()
    assert parent is not None and parent.tag == f"{{{_ns.JINGLE_FT}}}file"
    back = parse_description(etree.fromstring(etree.tostring(el)))
    assert back.path == "photos/2023/a b.jpg" and back.name == "2023__a b.jpg"
    # A receiver that ignores the extension still has the flat name; no path: no element.
    plain = build_description(FileDescription(name="x", size=0))
    assert not list(plain.iter(f"{{{_ns.JET_TRIO_TREE}}}path"))
    assert parse_description(plain).path is None


def test_relative_path_is_kept_as_given_and_bounded() -> None:
    """The path is not stripped nor judged by the parser (the receiver checks it), but two
    <path/> elements or an oversized one refuse the offer."""
    xml = (
        f"<description xmlns='{_ns.JINGLE_FT}'><file><name>n</name><size>1</size>"
        f"<path xmlns='{_ns.JET_TRIO_TREE}'> ../x </path></file></description>"
    )
    assert parse_description(etree.fromstring(xml)).path == " ../x "
    two = xml.replace("</file>", f"<path xmlns='{_ns.JET_TRIO_TREE}'>y</path></file>")
    with pytest.raises(FileTransferError, match="more than one"):
        parse_description(etree.fromstring(two))
    long = xml.replace(" ../x ", "a/" * 5000)
    with pytest.raises(FileTransferError, match="longer than"):
        parse_description(etree.fromstring(long))
    with pytest.raises(InvalidFileDescription):
        FileDescription(name="n", size=1, path="a\0b")
