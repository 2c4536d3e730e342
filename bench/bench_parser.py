"""Throughput of jet-trio's XML stream parser against slixmpp's parsing path, on the same bytes.

Generates a realistic inbound XMPP stream (chat messages, presence with entity caps, disco#info
results, a Jingle session-initiate with a JET ``<security>`` element, IBB data blocks of 4096
bytes in base64), feeds it in fixed-size chunks (4 KiB by default, like a socket read) and
reports stanzas/s and MB/s for:

``jet-trio``
    ``jet_trio._xmpp.xml.XMLStreamParser().feed(chunk)``: hardened parser, detached stanza elements.
``slixmpp``
    slixmpp's own ``XMLStream.data_received(chunk)`` on an unconnected ``XMLStream``, with
    ``_spawn_event`` replaced by a counter: the parse (``xml.etree.ElementTree.XMLPullParser``)
    and its depth bookkeeping, without building stanza objects or running handlers. Measured
    only when slixmpp is importable (install it into a separate benchmark venv, see README).
``stdlib-pull``
    ``xml.etree.ElementTree.XMLPullParser(("start", "end"))`` driven the way slixmpp drives it
    (depth counting, ``root.clear()`` after each stanza), re-implemented here: the baseline that
    is always available.
``lxml-pull``
    lxml's ``XMLPullParser`` alone with stanzas detached and no checks: shows what jet-trio's
    hardening (markup guard, limits, events) costs on top of lxml.

Every run checks that each parser saw exactly the expected number of stanzas. Rounds are
interleaved between parsers; the median round is reported (and the best, with ``-v``).

Usage: ``python bench/bench_parser.py [--chunk 4096] [--rounds 7] [--mb 8] [--json FILE]``
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib
import json
import platform
import random
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from jet_trio._xmpp.xml import StanzaReceived, XMLStreamParser

STREAM_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' "
    b"id='b9a1c4e2-3f5d-4c1a-9e7b-0d2f6a8c1e3b' version='1.0' xml:lang='en'>"
)
STREAM_FOOTER = b"</stream:stream>"

FEATURES = [
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/ibb",
    "http://jabber.org/protocol/bytestreams",
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/muc",
    "http://jabber.org/protocol/nick+notify",
    "eu.siacs.conversations.axolotl.devicelist+notify",
    "jabber:iq:version",
    "jabber:x:conference",
    "urn:xmpp:avatar:metadata+notify",
    "urn:xmpp:bookmarks:1+notify",
    "urn:xmpp:chat-markers:0",
    "urn:xmpp:ciphers:aes-128-gcm-nopadding:0",
    "urn:xmpp:ciphers:aes-256-gcm-nopadding:0",
    "urn:xmpp:hashes:2",
    "urn:xmpp:hash-function-text-names:sha-256",
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:file-transfer:5",
    "urn:xmpp:jingle:jet:0",
    "urn:xmpp:jingle:jet-omemo:0",
    "urn:xmpp:jingle:transports:ibb:1",
    "urn:xmpp:jingle:transports:s5b:1",
    "urn:xmpp:message-correct:0",
    "urn:xmpp:ping",
    "urn:xmpp:receipts",
    "urn:xmpp:time",
]

_TEXT = (
    "the file is on its way can you check whether the transfer finished ok see you tomorrow "
    "café naïve déjà 🙂 résumé 日本語 &amp; &lt;tag&gt; &apos;quoted&apos; &quot;double&quot;"
)
WORDS = _TEXT.split()


@dataclass(frozen=True)
class Corpus:
    name: str
    data: bytes
    stanzas: int


def _id(rng: random.Random) -> str:
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=16))


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def message(rng: random.Random) -> str:
    body = " ".join(rng.choices(WORDS, k=rng.randint(3, 60)))
    return (
        f"<message from='alice@localhost/phone.{_id(rng)[:4]}' to='bob@localhost/laptop' "
        f"type='chat' id='{_id(rng)}' xml:lang='en'><body>{body}</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/>"
        f"<origin-id xmlns='urn:xmpp:sid:0' id='{_id(rng)}'/>"
        "<markable xmlns='urn:xmpp:chat-markers:0'/>"
        "<request xmlns='urn:xmpp:receipts'/></message>"
    )


def presence(rng: random.Random) -> str:
    show = rng.choice(["", "<show>away</show>", "<show>dnd</show>", "<show>xa</show>"])
    return (
        f"<presence from='carol@localhost/dino.{_id(rng)[:8]}' to='bob@localhost'>{show}"
        f"<status>{' '.join(rng.choices(WORDS, k=rng.randint(0, 8)))}</status>"
        "<priority>5</priority>"
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://dino.im' "
        f"ver='{_b64(rng, 20)}'/>"
        f"<x xmlns='vcard-temp:x:update'><photo>{rng.randbytes(20).hex()}</photo></x>"
        "</presence>"
    )


def disco_result(rng: random.Random) -> str:
    features = "".join(f"<feature var='{f}'/>" for f in FEATURES)
    return (
        f"<iq from='carol@localhost/dino.{_id(rng)[:8]}' to='bob@localhost/laptop' "
        f"type='result' id='{_id(rng)}'>"
        "<query xmlns='http://jabber.org/protocol/disco#info' "
        f"node='https://dino.im#{_b64(rng, 20)}'>"
        "<identity category='client' type='pc' name='Dino'/>"
        f"{features}"
        "<x xmlns='jabber:x:data' type='result'>"
        "<field var='FORM_TYPE' type='hidden'>"
        "<value>urn:xmpp:dataforms:softwareinfo</value></field>"
        "<field var='software'><value>Dino</value></field>"
        "<field var='software_version'><value>0.4.2</value></field>"
        "<field var='os'><value>Linux</value></field>"
        "</x></query></iq>"
    )


def jingle_initiate(rng: random.Random) -> str:
    sid = _id(rng)
    candidates = "".join(
        f"<candidate cid='{_id(rng)}' host='{host}' jid='{jid}' port='{port}' "
        f"priority='{prio}' type='{kind}'/>"
        for host, jid, port, prio, kind in (
            ("192.168.1.20", "alice@localhost/phone", 40123, 8257536, "direct"),
            ("10.0.0.7", "alice@localhost/phone", 40124, 8257535, "direct"),
            ("127.0.0.1", "proxy.localhost", 5000, 655360, "proxy"),
        )
    )
    return (
        f"<iq from='alice@localhost/phone' to='bob@localhost/laptop' type='set' id='{_id(rng)}'>"
        f"<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' "
        f"initiator='alice@localhost/phone' sid='{sid}'>"
        "<content creator='initiator' name='a-file-offer' senders='initiator'>"
        "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>"
        "<date>2026-11-22T03:00:00Z</date><media-type>application/pdf</media-type>"
        "<name>quarterly report (final) v3.pdf</name><size>104857600</size>"
        f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{_b64(rng, 32)}</hash>"
        "<desc>the numbers</desc></file></description>"
        f"<transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='{_id(rng)}' mode='tcp' "
        f"dstaddr='{rng.randbytes(20).hex()}'>{candidates}</transport>"
        "<security xmlns='urn:xmpp:jingle:jet:0' name='a-file-offer' "
        "cipher='urn:xmpp:ciphers:aes-256-gcm-nopadding:0' type='urn:xmpp:omemo:2'>"
        "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='27183'>"
        f"<keys jid='bob@localhost'><key rid='31415' kex='true'>{_b64(rng, 180)}</key>"
        f"<key rid='16180'>{_b64(rng, 60)}</key></keys></header></encrypted>"
        "</security></content></jingle></iq>"
    )


def ibb_block(rng: random.Random, seq: int, block_size: int = 4096) -> str:
    return (
        f"<iq from='alice@localhost/phone' to='bob@localhost/laptop' type='set' id='ibb{seq}'>"
        f"<data xmlns='http://jabber.org/protocol/ibb' seq='{seq % 65536}' sid='ibbsession1'>"
        f"{_b64(rng, block_size)}</data></iq>"
    )


def _build(name: str, target_bytes: int, unit: Callable[[random.Random, int], list[str]]) -> Corpus:
    rng = random.Random(f"jet-trio-bench-{name}")
    parts: list[bytes] = [STREAM_HEADER]
    size = len(STREAM_HEADER)
    count = 0
    round_no = 0
    while size < target_bytes:
        for stanza in unit(rng, round_no):
            raw = stanza.encode()
            parts.append(raw)
            size += len(raw)
            count += 1
        round_no += 1
    parts.append(STREAM_FOOTER)
    return Corpus(name, b"".join(parts), count)


def _small(rng: random.Random, _round: int) -> list[str]:
    out = [message(rng) for _ in range(20)]
    out += [presence(rng) for _ in range(10)]
    out += [disco_result(rng) for _ in range(3)]
    out.append(jingle_initiate(rng))
    rng.shuffle(out)
    return out


def _ibb(rng: random.Random, round_no: int) -> list[str]:
    return [ibb_block(rng, round_no * 20 + i) for i in range(20)]


def _mixed(rng: random.Random, round_no: int) -> list[str]:
    out = _small(rng, round_no) + _ibb(rng, round_no)
    rng.shuffle(out)
    return out


def build_corpora(megabytes: float) -> list[Corpus]:
    target = int(megabytes * 1_000_000)
    return [
        _build("mixed", target, _mixed),
        _build("small-stanzas", target, _small),
        _build("ibb-4096", target, _ibb),
    ]


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# -- the parsers under test: each returns the number of stanzas seen -------------------------


def run_jet_trio(pieces: list[bytes]) -> int:
    parser = XMLStreamParser()
    n = 0
    for piece in pieces:
        for event in parser.feed(piece):
            if isinstance(event, StanzaReceived):
                n += 1
    return n


def run_stdlib_pull(pieces: list[bytes]) -> int:
    """``ET.XMLPullParser`` as slixmpp's ``XMLStream.data_received`` uses it."""
    parser: Any = ET.XMLPullParser(("start", "end"))
    depth = 0
    root: ET.Element | None = None
    n = 0
    for piece in pieces:
        parser.feed(piece)
        for event, elem in parser.read_events():
            assert isinstance(elem, ET.Element)
            if event == "start":
                if depth == 0:
                    root = elem
                depth += 1
            else:
                depth -= 1
                if depth == 1:
                    n += 1
                    if root is not None:
                        root.clear()
    return n


def run_lxml_pull(pieces: list[bytes]) -> int:
    """lxml's ``XMLPullParser`` alone, stanzas detached: what jet-trio's checks add cost to."""
    lxml_etree: Any = importlib.import_module("lxml.etree")
    parser = lxml_etree.XMLPullParser(events=("start", "end"), resolve_entities=False)
    depth = 0
    root: Any = None
    n = 0
    for piece in pieces:
        parser.feed(piece)
        for event, elem in parser.read_events():
            if event == "start":
                if depth == 0:
                    root = elem
                depth += 1
            else:
                depth -= 1
                if depth == 1:
                    n += 1
                    root.remove(elem)
    return n


def make_run_slixmpp() -> Callable[[list[bytes]], int] | None:
    """slixmpp's real ``XMLStream.data_received``, or None if slixmpp is not installed."""
    try:
        xmlstream: Any = importlib.import_module("slixmpp.xmlstream")
    except ImportError:
        return None

    # Built once: XMLStream() makes an SSL context (~50 ms), which is not parsing. Each run
    # starts a fresh parser with init_parser(), as slixmpp does for each connection.
    stream = xmlstream.XMLStream()
    stream.abort = lambda: None  # called on </stream:stream>; there is no transport here

    def run(pieces: list[bytes]) -> int:
        stream.init_parser()
        seen = [0]

        def count(_element: object) -> None:
            seen[0] += 1

        stream._spawn_event = count  # parse only: no stanza objects, no handlers
        for piece in pieces:
            stream.data_received(piece)
        return seen[0]

    return run


@dataclass
class Result:
    corpus: str
    parser: str
    megabytes: float
    stanzas: int
    median_s: float
    best_s: float

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.median_s

    @property
    def stanzas_per_s(self) -> float:
        return self.stanzas / self.median_s


@dataclass
class Failure:
    corpus: str
    parser: str
    error: str


def measure(
    corpus: Corpus,
    parsers: dict[str, Callable[[list[bytes]], int]],
    chunk_size: int,
    rounds: int,
) -> tuple[list[Result], list[Failure]]:
    pieces = list(chunks(corpus.data, chunk_size))
    failures: list[Failure] = []
    for name, run in list(parsers.items()):  # warm-up and correctness check
        try:
            got = run(pieces)
        except Exception as exc:
            failures.append(Failure(corpus.name, name, f"{type(exc).__name__}: {exc}"))
            continue
        if got != corpus.stanzas:
            failures.append(Failure(corpus.name, name, f"saw {got} of {corpus.stanzas} stanzas"))
    failed = {f.parser for f in failures}
    parsers = {name: run for name, run in parsers.items() if name not in failed}
    times: dict[str, list[float]] = {name: [] for name in parsers}
    for _ in range(rounds):
        for name, run in parsers.items():
            gc.collect()
            start = time.perf_counter()
            run(pieces)
            times[name].append(time.perf_counter() - start)
    mb = len(corpus.data) / 1_000_000
    results = [
        Result(corpus.name, name, mb, corpus.stanzas, statistics.median(t), min(t))
        for name, t in times.items()
    ]
    return results, failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per feed() call (4096)")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per parser (7)")
    ap.add_argument("--mb", type=float, default=8.0, help="size of each corpus in MB (8)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="show best times too")
    args = ap.parse_args(argv)

    parsers: dict[str, Callable[[list[bytes]], int]] = {"jet-trio": run_jet_trio}
    run_slixmpp = make_run_slixmpp()
    if run_slixmpp is not None:
        slix: Any = importlib.import_module("slixmpp")
        parsers["slixmpp"] = run_slixmpp
        baseline = "slixmpp"
        slix_note = f"slixmpp {slix.__version__}: XMLStream.data_received, _spawn_event stubbed"
    else:
        baseline = "stdlib-pull"
        slix_note = (
            "slixmpp not importable: its code path was NOT measured; the baseline is the stdlib "
            "XMLPullParser driven the way slixmpp's XMLStream.data_received drives it"
        )
    parsers["stdlib-pull"] = run_stdlib_pull
    parsers["lxml-pull"] = run_lxml_pull

    lxml_etree: Any = importlib.import_module("lxml.etree")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"lxml {'.'.join(map(str, lxml_etree.LXML_VERSION))}, "
        f"libxml2 {'.'.join(map(str, lxml_etree.LIBXML_VERSION))}, {platform.machine()}"
    )
    print(f"chunk {args.chunk} B, {args.rounds} rounds (median), baseline: {baseline}")
    print(slix_note)
    print()
    header = f"{'corpus':<14} {'parser':<12} {'MB':>6} {'stanzas':>8} {'stanzas/s':>11} {'MB/s':>8}"
    header += f" {'vs ' + baseline:>14}"
    if args.verbose:
        header += f" {'best MB/s':>10}"
    print(header)
    print("-" * len(header))
    results: list[Result] = []
    failures: list[Failure] = []
    for corpus in build_corpora(args.mb):
        rows, failed = measure(corpus, parsers, args.chunk, args.rounds)
        base = next((r for r in rows if r.parser == baseline), None)
        for r in rows:
            ratio = f"{base.median_s / r.median_s:>13.2f}x" if base else f"{'n/a':>14}"
            line = (
                f"{r.corpus:<14} {r.parser:<12} {r.megabytes:>6.2f} {r.stanzas:>8} "
                f"{r.stanzas_per_s:>11,.0f} {r.mb_per_s:>8.1f} {ratio}"
            )
            if args.verbose:
                line += f" {r.megabytes / r.best_s:>10.1f}"
            print(line)
        for fail in failed:
            print(f"{fail.corpus:<14} {fail.parser:<12} FAILED: {fail.error}")
        results.extend(rows)
        failures.extend(failed)
    print()
    print(f"ratio = time of {baseline} / time of the parser (above 1: faster than {baseline})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {
                    "python": platform.python_version(),
                    "chunk": args.chunk,
                    "rounds": args.rounds,
                    "baseline": baseline,
                    "note": slix_note,
                    "results": [
                        {**asdict(r), "mb_per_s": r.mb_per_s, "stanzas_per_s": r.stanzas_per_s}
                        for r in results
                    ],
                    "failures": [asdict(fail) for fail in failures],
                },
                out,
                indent=2,
            )
    if failures:
        print(f"{len(failures)} parser run(s) FAILED on valid input (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
