"""An attacker's network: a network namespace of its own (``j23`` + random suffix) whose DNS is
a test DNS server the attacker runs (``/etc/netns/NAME/resolv.conf`` points the resolver of every
process started with ``ip netns exec`` at it), rogue XMPP servers, and the ``jet-trio`` command
run inside it. Nothing outside the namespace is contacted. Needs root and ``ip`` (iproute2).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration._servers import missing_server
from tests.integration.conftest import prosody_factory, xmpp_ca

__all__ = ["prosody_factory", "xmpp_ca"]

ATTACKER = Path(__file__).with_name("_attacker.py")
DOMAIN = "example.test"
HOST = "xmpp.example.test"
ACCOUNT = f"alice@{DOMAIN}"
PASSWORD = "Tr0ub4dor-j23-unguessable"


@dataclass
class Netns:
    name: str
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _exec(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start an attacker program (see ``_attacker.py``) in the namespace; wait until ready."""
        proc = subprocess.Popen(
            self._exec([sys.executable, str(ATTACKER), *args]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            proc.kill()
            err = proc.stderr.read() if proc.stderr else b""
            raise RuntimeError(f"attacker {args[0]} did not start: {err.decode(errors='replace')}")
        return proc

    def dns(self, srv: Mapping[str, list[tuple[int, int, int, str]]]) -> None:
        records = self.tmp / f"zone-{len(self.procs)}.json"
        records.write_text(json.dumps({"srv": srv, "a": {HOST: "127.0.0.1"}}))
        self.start("dns", "--listen", "127.0.0.1:53", "--records", str(records))

    def rogue(self, port: int, behaviour: str) -> Path:
        log = self.tmp / f"rogue-{port}.log"
        log.touch()
        self.start(
            "xmpp", "--listen", f"127.0.0.1:{port}", "--behaviour", behaviour, "--log", str(log)
        )
        return log

    def jet_trio(self, *args: str, env: Mapping[str, str], timeout: float = 120) -> Ran:
        full = {k: v for k, v in os.environ.items() if not k.startswith("JET_TRIO_")}
        full |= {"XDG_DATA_HOME": str(self.tmp / "xdg"), "COLUMNS": "200", **env}
        started = time.monotonic()
        proc = subprocess.run(
            self._exec([sys.executable, "-m", "jet_trio", *args]),
            env=full,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Ran(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def one_json(self) -> dict[str, Any]:
        lines = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, (self.stdout, self.stderr)
        assert isinstance(lines[0], dict)
        return lines[0]


@pytest.fixture
def attacker_net(tmp_path: Path) -> Iterator[Netns]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing_server("network namespaces need root and iproute2 (ip)")
    name = f"j23{secrets.token_hex(3)}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        net = Netns(name, tmp_path)
        try:
            yield net
        finally:
            net.close()
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


def secrets_in(data: bytes) -> list[str]:
    """Which pieces of the credentials (or the account name) appear in ``data``."""
    import base64

    found = []
    for label, needle in [
        ("<auth", b"<auth"),
        ("password", PASSWORD.encode()),
        ("account", b"alice"),
    ]:
        if needle in data:
            found.append(label)
    for offset in range(3):  # the password inside any base64 text
        chunk = base64.b64encode(b"\0" * offset + PASSWORD.encode())[4:-4]
        if chunk and chunk in data:
            found.append("password (base64)")
    scram_user = base64.b64encode(b"n,,n=alice")[:8]
    if scram_user in data:
        found.append("SCRAM client-first")
    return found


def start_local(args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start an attacker program on loopback (outside any namespace); wait until ready."""
    proc = subprocess.Popen(
        [sys.executable, str(ATTACKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        err = proc.stderr.read() if proc.stderr else b""
        raise RuntimeError(f"attacker {args[0]} did not start: {err.decode(errors='replace')}")
    return proc


def stop_local(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
