"""Start-up time, CPU and peak memory of the ``jet-trio`` command, each against a same-run baseline.

Usage: python bench/bench_startup.py [--repeat N] [--baseline-python PY] [--reference-cmd CMD]
       [--no-send] [--json FILE]

Every case is a fresh process of the command-line tool, as a user starts it; its wall time, CPU
time (user + system) and peak RSS come from ``/usr/bin/time`` (package ``time``). The cases:

* ``--help``: ``jet-trio --help``;
* ``import jet_trio``: the package, then every public name (the whole library);
* ``plugins --json``: ``jet-trio plugins --json`` (entry points loaded, no login);
* ``import OMEMO plugin``: the modules of jet-trio-omemo an OMEMO session runs on (and the OMEMO
  libraries they import), when the plugin is installed;
* ``send 1 KiB <envelope>``: ``jet-trio send`` of a 1024-byte file to a ``jet-trio receive``
  already waiting, through a private Prosody on 127.0.0.1 (tests/integration/_servers.py,
  ``stanza_debug`` off; direct S5B), with the stub envelope, without encryption (``none``) and
  with OMEMO when jet-trio-omemo is installed. The sender's numbers are the process's; the
  receiver's CPU and peak RSS are shown on the ``(receiver)`` line; ``offer s`` is the
  ``seconds`` of the sender's ``--json`` result (offer to session-terminate).

Baselines measured in the same run, rounds interleaved with the cases: ``python -c pass``,
``python -c "import trio"`` (the floor of any trio program), ``deps of a send`` (importing the
libraries a 1 KiB encrypted ``send`` cannot do without: trio, ssl, lxml, cryptography, scramp,
precis-i18n, click, pluggy, rich), ``deps of OMEMO`` (the OMEMO libraries an OMEMO transfer
loads, when installed), ``--reference-cmd`` (any command,
e.g. ``"wormhole --help"`` of magic-wormhole installed elsewhere), and with ``--baseline-python``
every case again with another interpreter whose environment holds another version of jet-trio
(e.g. the previous commit): the ``x base`` columns are then current / baseline (below 1 is
better). The goals of the start-up work are checked at the end: ``--help`` <= 0.15 s; a 1 KiB
``send`` <= 0.4 s CPU; peak RSS of a stub/none transfer <= 50 MiB, of an OMEMO one <= 70 MiB.

Medians of ``--repeat`` rounds (after one untimed warm-up round, which also makes the OMEMO
devices known to each other and writes the bytecode caches: ``PYTHONDONTWRITEBYTECODE`` is
removed from the children's environment, since compiling every module on each start costs
~0.08 s here and an installed package has its caches). The machine should be otherwise idle;
on a shared one, compare only numbers of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"
# The console script's own work, run with -P so that the current directory never shadows the
# interpreter's jet-trio.
CLI = "import sys; from jet_trio.__main__ import main; sys.argv[0] = 'jet-trio'; main()"
IMPORT_ALL = "import jet_trio; [getattr(jet_trio, n) for n in jet_trio.__all__]"
SEND_DEPS = (
    "trio, ssl, lxml.etree, cryptography.hazmat.primitives.ciphers, scramp, precis_i18n, "
    "click, pluggy, rich.console"
)
# The OMEMO libraries an OMEMO transfer loads (the plugin's own codecs replace the backends'
# oldmemo.etree / twomemo.etree, which build xmlschema schemas at import).
OMEMO_DEPS = "oldmemo.oldmemo, twomemo.twomemo, omemo.session_manager"
OMEMO_IMPORT = "import jet_trio_omemo._session, jet_trio_omemo._envelope"
RSS_GOALS = {"stub": 50.0, "none": 50.0, "omemo": 70.0}


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float
    returncode: int
    stdout: str
    stderr: str


def _finish(proc: subprocess.Popen[bytes], start: float, timeout: float) -> tuple[float, int]:
    """Wait for ``proc`` (wall time, exit code), killing it after ``timeout`` seconds."""
    deadline = start + timeout
    while proc.poll() is None:
        if time.perf_counter() > deadline:
            proc.kill()
            proc.wait()
            return timeout, -9
        time.sleep(0.002)
    return time.perf_counter() - start, proc.returncode


class Process:
    """One child with its output in files (no pipe to drain) and its rusage on exit."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], work: Path, name: str) -> None:
        self.out_path = work / f"{name}.out"
        self.err_path = work / f"{name}.err"
        self.time_path = work / f"{name}.time"
        # Through /usr/bin/time: a child forked from this (large) process would report this
        # process's peak RSS as its own (Linux keeps the larger of the two across exec).
        timed = [TIME, "-f", "%U %S %M", "-o", str(self.time_path), *cmd]
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.start = time.perf_counter()
            self.proc = subprocess.Popen(
                timed, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=work
            )

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout: float) -> Sample:
        wall, rc = _finish(self.proc, self.start, timeout)
        fields = self.time_path.read_text().split()[-3:] if rc != -9 else ["0", "0", "0"]
        user, system, rss_kib = (float(f) for f in fields)
        return Sample(
            wall,
            user + system,
            rss_kib / 1024,
            rc,
            self.out_path.read_text(errors="replace"),
            self.stderr(),
        )

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            self.wait(5)


def run_once(cmd: Sequence[str], env: dict[str, str], work: Path, timeout: float = 60) -> Sample:
    sample = Process(cmd, env, work, "run").wait(timeout)
    if sample.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({sample.returncode}): {sample.stderr}")
    return sample


@dataclass
class Side:
    """One interpreter (with its jet-trio) and its own state directories."""

    label: str
    python: str
    data: Path

    def cli(self, *args: str) -> list[str]:
        return [self.python, "-P", "-c", CLI, *args]


class SendCase:
    def __init__(self, info: Any, envelope: str, work: Path) -> None:
        self.info = info
        self.envelope = envelope
        self.work = work
        self.file = work / "one-kib.bin"
        self.file.write_bytes(os.urandom(1024))

    def _account(self, side: Side, user: str) -> list[str]:
        return [
            "--account",
            self.info.jid(user),
            "--server",
            f"{self.info.host}:{self.info.port}",
            "--ca-file",
            self.info.ca_file,
            "--data-dir",
            str(side.data / user),
        ]

    def run(self, side: Side, env: dict[str, str]) -> tuple[Sample, Sample, float]:
        out_dir = self.work / "received"
        out_dir.mkdir(exist_ok=True)
        env_bob = {**env, "JET_TRIO_PASSWORD": self.info.password("bob")}
        env_alice = {**env, "JET_TRIO_PASSWORD": self.info.password("alice")}
        recv_args = ["receive", "-o", str(out_dir), "--count", "1", "--overwrite"]
        recv_args += ["--timeout", "60", "--accept-stub", "--accept-unencrypted"]
        receiver = Process(
            side.cli(*recv_args, *self._account(side, "bob")), env_bob, self.work, "receiver"
        )
        try:
            deadline = time.monotonic() + 60
            while "waiting for" not in receiver.stderr():
                if receiver.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the receiver did not start: {receiver.stderr()}")
                time.sleep(0.005)
            send_args = ["send", str(self.file), "--to", self.info.jid("bob"), "--json"]
            if self.envelope != "default":
                send_args += ["--envelope", self.envelope]
            sender = run_once(
                side.cli(*send_args, *self._account(side, "alice")), env_alice, self.work
            )
            received = receiver.wait(60)
        finally:
            receiver.kill()
        if received.returncode != 0:
            raise RuntimeError(f"the receiver failed: {received.stderr}")
        result = json.loads(sender.stdout.splitlines()[-1])
        return sender, received, float(result["seconds"])


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument(
        "--baseline-python", help="an interpreter with another jet-trio, measured in turn"
    )
    parser.add_argument(
        "--reference-cmd",
        action="append",
        default=[],
        help="another command measured as a reference (repeatable), e.g. 'wormhole --help'",
    )
    parser.add_argument("--no-send", action="store_true", help="skip the 1 KiB transfers")
    parser.add_argument("--json", type=Path, help="also write the samples here")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that the server and the children are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JET_TRIO_")}
    env["XDG_DATA_HOME"] = str(tmp / "xdg")
    # As installed (pip compiles the modules): the warm-up round writes the bytecode caches.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sides = [Side("current", sys.executable, tmp / "current")]
    if args.baseline_python:
        sides.append(Side("baseline", args.baseline_python, tmp / "baseline"))

    # (case name, side label or "" for a reference) -> samples
    samples: dict[tuple[str, str], list[Sample]] = {}
    offer_seconds: dict[tuple[str, str], list[float]] = {}
    server = None
    try:
        cases: list[tuple[str, Any]] = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ('python -c "import trio"', [sys.executable, "-c", "import trio"]),
        ]
        # What a 1 KiB encrypted send cannot avoid loading: the floor of the send's CPU and RSS.
        cases.append(("deps of a send", [sys.executable, "-c", f"import {SEND_DEPS}"]))
        try:
            import oldmemo  # noqa: F401

            cases.append(("deps of OMEMO", [sys.executable, "-c", f"import {OMEMO_DEPS}"]))
        except ImportError:
            pass
        cases += [(cmd, shlex.split(cmd)) for cmd in args.reference_cmd]
        cases += [
            ("--help", lambda s: s.cli("--help")),
            ("import jet_trio", lambda s: [s.python, "-P", "-c", IMPORT_ALL]),
            ("plugins --json", lambda s: s.cli("plugins", "--json")),
        ]
        try:
            import jet_trio_omemo

            # What an OMEMO session imports, on each side (the plugin's start-up alone).
            cases.append(("import OMEMO plugin", lambda s: [s.python, "-P", "-c", OMEMO_IMPORT]))
        except ImportError:
            pass
        if not args.no_send:
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            import trustme

            from tests.integration._servers import PrivateProsody

            server = PrivateProsody(tmp / "prosody", trustme.CA(), stanza_debug=False)
            info = server.start()
            envelopes = ["stub", "none"]
            try:
                import jet_trio_omemo  # noqa: F401

                envelopes.append("omemo")
            except ImportError:
                print("jet-trio-omemo is not installed: no OMEMO case", file=sys.stderr)
            for envelope in envelopes:
                work = tmp / f"send-{envelope}"
                work.mkdir()
                cases.append((f"send 1 KiB {envelope}", SendCase(info, envelope, work)))

        for round_ in range(args.repeat + 1):
            for name, how in cases:
                for side in sides if not isinstance(how, list) else [None]:
                    label = side.label if side is not None else ""
                    work = tmp / "work"
                    work.mkdir(exist_ok=True)
                    if isinstance(how, SendCase):
                        assert side is not None
                        sent, received, offer = how.run(side, env)
                        got = [(name, sent), (f"{name} (receiver)", received)]
                    else:
                        cmd = how if isinstance(how, list) else how(side)
                        got = [(name, run_once(cmd, env, work))]
                    if round_ == 0:
                        continue  # warm-up: caches, OMEMO first contact
                    for key, sample in got:
                        samples.setdefault((key, label), []).append(sample)
                    if isinstance(how, SendCase):
                        offer_seconds.setdefault((name, label), []).append(offer)
            if round_:
                print(f"round {round_}/{args.repeat} done", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    _report(samples, offer_seconds, sides, args.repeat)
    if args.json:
        data = {
            f"{name} [{label or 'reference'}]": [
                {"wall": s.wall, "cpu": s.cpu, "rss_mib": s.rss_mib} for s in values
            ]
            for (name, label), values in samples.items()
        }
        args.json.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return 0


def _report(
    samples: dict[tuple[str, str], list[Sample]],
    offer_seconds: dict[tuple[str, str], list[float]],
    sides: list[Side],
    repeat: int,
) -> None:
    def med(name: str, label: str, attr: str) -> float:
        return _median([getattr(s, attr) for s in samples.get((name, label), [])])

    trio_name = 'python -c "import trio"'
    trio_wall, trio_cpu = med(trio_name, "", "wall"), med(trio_name, "", "cpu")
    print(f"\nmedians of {repeat} rounds; CPU x trio: / python -c 'import trio' (same run)")
    head = f"{'case':<34}{'side':<10}{'wall s':>8}{'CPU s':>8}{'RSS MiB':>9}{'offer s':>9}"
    head += f"{'CPU x trio':>11}"
    if len(sides) > 1:
        head += f"{'wall x base':>13}{'CPU x base':>12}{'RSS x base':>12}"
    print(head)
    names = list(dict.fromkeys(name for name, _ in samples))
    for name in names:
        for label in [""] + [s.label for s in sides]:
            if (name, label) not in samples:
                continue
            wall, cpu, rss = (med(name, label, a) for a in ("wall", "cpu", "rss_mib"))
            offer = _median(offer_seconds.get((name, label), []))
            line = f"{name:<34}{label or 'ref':<10}{wall:>8.3f}{cpu:>8.3f}{rss:>9.1f}"
            line += f"{offer:>9.3f}" if offer == offer else f"{'':>9}"
            line += f"{cpu / trio_cpu:>11.2f}" if trio_cpu else f"{'':>11}"
            if len(sides) > 1 and label == "current" and (name, "baseline") in samples:
                bw, bc, br = (med(name, "baseline", a) for a in ("wall", "cpu", "rss_mib"))
                line += f"{wall / bw:>13.2f}{cpu / bc:>12.2f}{rss / br:>12.2f}"
            print(line)
    print(f"\nreference: python -c 'import trio' {trio_wall:.3f} s wall, {trio_cpu:.3f} s CPU")
    print("goals (current):")
    help_wall = med("--help", "current", "wall")
    floor = med("python -c pass", "", "wall")
    print(
        f"  --help <= 0.15 s wall: {help_wall:.3f} s {_ok(help_wall <= 0.15)} "
        f"(CPU {med('--help', 'current', 'cpu'):.3f} s; python -c pass: {floor:.3f} s wall)"
    )
    for name in names:
        if not name.startswith("send 1 KiB") or (name, "current") not in samples:
            continue
        cpu, rss = med(name, "current", "cpu"), med(name, "current", "rss_mib")
        envelope = name.split()[-1].strip(")")
        if "(receiver)" in name:
            envelope = name.split()[-2]
        limit = RSS_GOALS.get(envelope, 50.0)
        print(f"  {name}: CPU {cpu:.3f} s (<= 0.4 {_ok(cpu <= 0.4)}), ", end="")
        print(f"RSS {rss:.1f} MiB (<= {limit:g} {_ok(rss <= limit)})")


def _ok(good: bool) -> str:
    return "ok" if good else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
