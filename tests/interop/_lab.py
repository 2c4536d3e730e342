"""The Dino interop lab: a private Prosody, Xvfb and a headless Dino 0.4.2, all inside the
network namespace this test process runs in (``tests/interop/run.sh`` creates it).

Plain synchronous code (``subprocess``, ``sqlite3``), like ``tests/integration/_servers.py``,
whose :class:`PrivateProsody` is reused with the fixed ports Dino needs (it finds the server of
``localhost`` by falling back from SRV to port 5222).

Dino is driven through its D-Bus actions (``app.open-conversation``) and X input (``xdotool``)
on a 1280x900 Xvfb screen without a window manager: its main window is 1200x700 at 0,0.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trustme

from tests.integration._servers import PrivateProsody, ServerUnavailable

#: Executables the lab needs, with the Debian package that provides each.
TOOLS: Final = {
    "dino-im": "dino-im",
    "Xvfb": "xvfb",
    "xdotool": "xdotool",
    "dbus-run-session": "dbus-daemon",
    "gdbus": "libglib2.0-bin",
    "prosody": "prosody",
    "prosodyctl": "prosody",
}

#: Dino 0.4.2's database schema version (``_meta``), written on its first start.
DINO_DB_VERSION: Final = 26

#: Where Dino 0.4.2 keeps received files, relative to its ``$HOME``.
DINO_FILES_DIR: Final = Path(".local/share/dino/files")

#: Dino's ``Encryption`` enum as stored in ``conversation.encryption``.
DINO_ENCRYPTION_NONE: Final = 0
DINO_ENCRYPTION_OMEMO: Final = 2

#: Dino's "attach file" button in a 1200x700 main window (conversation view, bottom bar).
ATTACH_BUTTON_XY: Final = (337, 662)

#: The lab's extra Prosody modules (what the proven shared lab ran with; Dino uses them).
_LAB_MODULES: Final = (
    "disco",
    "roster",
    "saslauth",
    "tls",
    "presence",
    "ping",
    "pep",
    "carbons",
    "posix",
    "private",
    "version",
    "time",
    "uptime",
    "blocklist",
    "vcard_legacy",
    "stanza_debug",
)


class LabUnavailable(RuntimeError):
    """A prerequisite of the lab is missing (the message says which and how to get it)."""


# -- prerequisites --------------------------------------------------------------------------


def missing_tools() -> list[str]:
    return [f"{exe} (apt-get install {pkg})" for exe, pkg in TOOLS.items() if not shutil.which(exe)]


def dino_version_problem() -> str | None:
    """Why the installed Dino is not the one the lab drives (0.4.x), or None."""
    if not shutil.which("dpkg-query"):
        return None
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "dino-im"], capture_output=True, check=False
    )
    version = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0 or not version:
        return None  # not installed from a Debian package: try anyway
    if not version.startswith("0.4."):
        return (
            f"dino-im {version} is installed; the lab drives Dino 0.4.x (database schema "
            f"v{DINO_DB_VERSION}, window layout for the attach button)"
        )
    return None


def _mount_points() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            points.add(line.split()[4])
    return points


def check_namespace() -> None:
    """Raise :class:`LabUnavailable` unless we run in the isolated lab namespace.

    That is: root, only ``lo`` (up) with a default route over it (GLib then reports "online",
    Dino connects only then), and ``/etc/ssl`` bind-mounted over by ``ip netns exec`` (the
    session's test CA is added to that copy, never to the host's trust store).
    """
    if os.geteuid() != 0:
        raise LabUnavailable("needs root (network namespace, Prosody on port 5222)")
    interfaces = sorted(os.listdir("/sys/class/net"))
    if interfaces != ["lo"]:
        raise LabUnavailable(
            f"not inside the lab network namespace (interfaces {interfaces}, expected only lo): "
            "run the tests with `bash tests/interop/run.sh`"
        )
    if "/etc/ssl" not in _mount_points():
        raise LabUnavailable(
            "/etc/ssl is not the namespace's own copy (/etc/netns/<ns>/ssl bind mount), so the "
            "test CA cannot be trusted for Dino without touching the host: use run.sh"
        )
    with open("/proc/net/route", encoding="utf-8") as f:
        routes = [line.split() for line in f.readlines()[1:]]
    if not any(r[0] == "lo" and r[1] == "00000000" for r in routes):
        raise LabUnavailable("no default route via lo in the namespace (Dino would stay offline)")


def trust_ca(ca: trustme.CA) -> None:
    """Add ``ca`` to the namespace's copy of the system bundle (GnuTLS, used by Dino, reads it)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    original = bundle.with_name("ca-certificates.crt.interop-orig")
    if not original.exists():
        shutil.copyfile(bundle, original)
    bundle.write_bytes(original.read_bytes() + b"\n" + ca.cert_pem.bytes())


# -- processes ------------------------------------------------------------------------------


def in_namespace(netns: str | None) -> list[str]:
    """The command prefix that runs a program inside ``netns`` (none: here)."""
    return [] if netns is None else ["ip", "netns", "exec", netns]


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group we created for ``proc``; SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Children left in the group (dbus-daemon of dbus-run-session) go too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class LabProsody(PrivateProsody):
    """Prosody on 127.0.0.1:5222 (c2s) and :5000 (proxy65) inside the namespace."""

    def _pick_ports(self) -> None:
        self.c2s_port, self.proxy_port = 5222, 5000

    def _write_config(self) -> None:
        super()._write_config()
        modules = "; ".join(f'"{m}"' for m in _LAB_MODULES)
        text = self.config_path.read_text(encoding="utf-8")
        # A later assignment wins in Prosody's config: put the lab's module list before the host.
        text = text.replace(
            "\nVirtualHost ", f"\nmodules_enabled = {{ {modules} }}\n\nVirtualHost ", 1
        )
        self.config_path.write_text(text, encoding="utf-8")


class Xvfb:
    """A virtual X server; the display number is chosen by Xvfb itself (``-displayfd``)."""

    def __init__(self, log_path: Path, netns: str | None = None) -> None:
        self.log_path = log_path
        #: Run inside this network namespace (``ip netns exec``); X clients of the display
        #: then run there too (its abstract socket exists only in that namespace).
        self.netns = netns
        self._proc: subprocess.Popen[bytes] | None = None
        self.display = ""

    def start(self, timeout: float = 15.0) -> str:
        read_fd, write_fd = os.pipe()
        try:
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [
                        *in_namespace(self.netns),
                        "Xvfb",
                        "-displayfd",
                        str(write_fd),
                        "-screen",
                        "0",
                        "1280x900x24",
                        "-nolisten",
                        "tcp",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                )
            os.close(write_fd)
            write_fd = -1
            data = b""
            deadline = time.monotonic() + timeout
            while not data.endswith(b"\n"):
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise LabUnavailable(f"Xvfb did not start: {self.log_path.read_text()[-2000:]}")
                chunk = os.read(read_fd, 16)
                if not chunk:
                    raise LabUnavailable(f"Xvfb exited: {self.log_path.read_text()[-2000:]}")
                data += chunk
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        self.display = ":" + data.decode().strip()
        return self.display

    def stop(self) -> None:
        if self._proc is not None:
            _stop_group(self._proc)
            self._proc = None


@dataclass
class DinoAccount:
    bare_jid: str
    password: str
    resource: str = "dino"


class Dino:
    """One headless Dino 0.4.2 with its own ``$HOME`` (profile), account and session bus.

    Started as ``dbus-run-session -- dino-im --print-xmpp=...`` so its stanzas (both directions)
    are in :attr:`out_path`.
    """

    def __init__(
        self, home: Path, display: str, account: DinoAccount, netns: str | None = None
    ) -> None:
        self.home = home
        self.display = display
        self.account = account
        #: Dino, its session bus and the tools that drive it (gdbus, xdotool) run inside this
        #: network namespace: the bus and the X server listen on abstract sockets, which exist
        #: per network namespace.
        self.netns = netns
        self.db_path = home / ".local/share/dino/dino.db"
        self.out_path = home / "dino.out"
        self.files_dir = home / DINO_FILES_DIR
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        run = self.home / "run"
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        return {
            "HOME": str(self.home),
            "PATH": "/usr/bin:/bin",
            "DISPLAY": self.display,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(run),
            "GSK_RENDERER": "cairo",
        }

    def _launch(self) -> None:
        with self.out_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    *in_namespace(self.netns),
                    *("dbus-run-session", "--", "dino-im", "--print-xmpp=show-ns;no-ansi;all"),
                ],
                cwd=self.home,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def provision(self, timeout: float = 30.0) -> None:
        """First run creates the schema; then insert the enabled account row (Dino stopped)."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            self._launch()
            deadline = time.monotonic() + timeout
            while self._db_version() != DINO_DB_VERSION:
                if self._proc is not None and self._proc.poll() is not None:
                    raise LabUnavailable(f"Dino exited on first start:\n{self.output_tail()}")
                if time.monotonic() > deadline:
                    raise LabUnavailable(
                        f"Dino wrote no schema v{DINO_DB_VERSION} in {timeout} s "
                        f"(found {self._db_version()}):\n{self.output_tail()}"
                    )
                time.sleep(0.25)
            time.sleep(1)
            self.stop()
        a = self.account
        with contextlib.closing(sqlite3.connect(self.db_path)) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO account(bare_jid, resourcepart, password, alias, enabled,"
                " roster_version, mam_earliest_synced) VALUES (?, ?, ?, NULL, 1, NULL, 0)",
                (a.bare_jid, a.resource, a.password),
            )

    def _db_version(self) -> int | None:
        if not self.db_path.exists():
            return None
        try:
            uri = f"file:{self.db_path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                row = db.execute("SELECT int_val FROM _meta WHERE name='version'").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else int(row[0])

    def start(self) -> None:
        self._launch()

    def stop(self) -> None:
        if self._proc is None:
            return
        # dino-im first (a clean quit), then dbus-run-session and its bus daemon (group).
        pid = self.dino_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        _stop_group(self._proc)
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def dino_pid(self) -> int | None:
        """PID of the ``dino-im`` child of our ``dbus-run-session``."""
        if self._proc is None:
            return None
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == self._proc.pid and comm == "dino-im":
                return int(entry)
        return None

    def output_tail(self, chars: int = 6000) -> str:
        try:
            return self.out_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no output)"

    # -- state ----------------------------------------------------------------------------------

    def conversation_id(self, peer_bare: str) -> int | None:
        """Dino's id of its 1:1 conversation with ``peer_bare`` (None: there is none yet)."""
        if not self.db_path.exists():
            return None
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT c.id FROM conversation c JOIN jid j ON j.id = c.jid_id"
                " WHERE j.bare_jid = ? AND c.type = 0 LIMIT 1",
                (peer_bare,),
            ).fetchone()
        return None if row is None else int(row[0])

    def wait_conversation(self, peer_bare: str, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while (cid := self.conversation_id(peer_bare)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"Dino opened no conversation with {peer_bare} in {timeout} s")
            time.sleep(0.2)
        return cid

    def conversation_encryption(self, peer_bare: str) -> int | None:
        if not self.db_path.exists():
            return None
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT c.encryption FROM conversation c JOIN jid j ON j.id = c.jid_id"
                " WHERE j.bare_jid = ? AND c.type = 0 LIMIT 1",
                (peer_bare,),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_encryption(self, peer_bare: str, encryption: int) -> None:
        """Set the conversation's encryption (Dino's enum: 0 none, 2 OMEMO) in the database.

        Only takes effect for a Dino started afterwards (it caches conversations).
        """
        with contextlib.closing(sqlite3.connect(self.db_path)) as db, db:
            db.execute(
                "UPDATE conversation SET encryption = ? WHERE type = 0 AND jid_id ="
                " (SELECT id FROM jid WHERE bare_jid = ?)",
                (encryption, peer_bare),
            )

    def received_files(self, name: str) -> list[Path]:
        """Files Dino stored for an incoming transfer of ``name`` (it prefixes a random id)."""
        if not self.files_dir.is_dir():
            return []
        return sorted(p for p in self.files_dir.iterdir() if p.name.endswith("_" + name))

    def wait_received(self, name: str, size: int, timeout: float = 10.0) -> Path:
        """The file Dino stored for ``name`` once it has ``size`` bytes."""
        deadline = time.monotonic() + timeout
        while True:
            stored = self.received_files(name)
            if len(stored) > 1:
                raise AssertionError(f"Dino stored {name} more than once: {stored}")
            if stored and stored[0].stat().st_size >= size:
                return stored[0]
            if time.monotonic() > deadline:
                found = {p.name: p.stat().st_size for p in stored}
                raise AssertionError(f"Dino stored no complete {name} in {timeout} s: {found}")
            time.sleep(0.2)

    # -- UI -------------------------------------------------------------------------------------

    def _bus_address(self) -> str:
        pid = self.dino_pid()
        if pid is None:
            raise AssertionError(f"dino-im is not running:\n{self.output_tail()}")
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"DBUS_SESSION_BUS_ADDRESS="):
                return item.split(b"=", 1)[1].decode()
        raise AssertionError("dino-im has no DBUS_SESSION_BUS_ADDRESS")

    def _run(self, *args: str, check: bool = True) -> str:
        env = {
            "PATH": "/usr/bin:/bin",
            "DISPLAY": self.display,
            "DBUS_SESSION_BUS_ADDRESS": self._bus_address(),
        }
        result = subprocess.run(
            [*in_namespace(self.netns), *args],
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode(errors="replace")

    def _find_window(self, name: str) -> str | None:
        out = self._run("xdotool", "search", "--onlyvisible", "--name", name, check=False)
        ids = out.split()
        return ids[0] if ids else None

    def _wait_window(self, name: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (wid := self._find_window(name)) is None and time.monotonic() < deadline:
            time.sleep(0.25)
        return wid

    def open_conversation(self, conversation_id: int) -> None:
        self._run(
            "gdbus",
            "call",
            "--session",
            "--dest",
            "im.dino.Dino",
            "--object-path",
            "/im/dino/Dino",
            "--method",
            "org.gtk.Actions.Activate",
            "open-conversation",
            f"[<int32 {conversation_id}>]",
            "{}",
        )

    def ui_send_file(self, path: Path, peer_bare: str) -> None:
        """Make Dino send ``path`` to ``peer_bare`` through its UI, as a user would.

        The peer must be online with caps advertising Jingle file transfer before the
        conversation is selected (Dino shows the attach button only then).
        """
        cid = self.wait_conversation(peer_bare)
        self.open_conversation(cid)
        time.sleep(1.5)
        window = self._wait_window("^Dino$", 10)
        if window is None:
            raise AssertionError("Dino's main window is not visible")
        x, y = ATTACH_BUTTON_XY
        self._run("xdotool", "mousemove", "--window", window, str(x), str(y), "click", "1")
        chooser = self._wait_window("^Select file$", 5)
        if chooser is None:
            raise AssertionError(
                "Dino's file chooser did not open (attach button missing: "
                "peer offline, or Dino saw no Jingle file-transfer caps)"
            )
        time.sleep(0.5)
        self._run("xdotool", "windowfocus", "--sync", chooser)
        self._run("xdotool", "key", "ctrl+l")
        time.sleep(0.3)
        self._run("xdotool", "type", "--delay", "10", str(path))
        time.sleep(0.3)
        self._run("xdotool", "key", "Return")
        time.sleep(1.5)
        if self._find_window("^Select file$") is not None:
            raise AssertionError("Dino's file chooser did not accept the path")
        self._run("xdotool", "windowfocus", "--sync", window)
        self._run("xdotool", "key", "Return")  # "Send" in Dino's file-send overlay


@dataclass
class Lab:
    """What the tests get: the server, Dino (as ``alice``) and the jet-trio account (``bob``)."""

    prosody: LabProsody
    dino: Dino
    base: Path
    jet_user: str = "bob"

    def start_dino(self, timeout: float = 30.0) -> None:
        """Start Dino and wait until it logged in (and its roster, presence, caps settled)."""
        offset = self.prosody.log_size()
        self.dino.start()
        needle = f"Authenticated as {self.dino.account.bare_jid}"
        if not wait_log(self.prosody.log_path, needle, offset, timeout):
            raise LabUnavailable(
                f"Dino did not log in within {timeout} s:\n{self.dino.output_tail()}"
            )
        time.sleep(1.5)

    def restart_dino(self) -> None:
        self.dino.stop()
        self.start_dino()

    def set_conversation_encryption(self, peer_bare: str, encryption: int) -> None:
        """Make Dino's conversation with ``peer_bare`` use ``encryption`` (Dino's enum: 0 none,
        2 OMEMO); Dino caches conversations, so it is restarted when a change is needed."""
        current = self.dino.conversation_encryption(peer_bare)
        if current is None and self.dino.conversation_id(peer_bare) is None:
            if encryption == DINO_ENCRYPTION_NONE:
                return  # a new conversation starts unencrypted
            raise AssertionError(f"Dino has no conversation with {peer_bare} yet")
        if (current or DINO_ENCRYPTION_NONE) == encryption:
            return
        self.dino.stop()
        self.dino.set_encryption(peer_bare, encryption)
        self.start_dino()

    @property
    def dino_jid(self) -> str:
        return f"{self.dino.account.bare_jid}/{self.dino.account.resource}"

    @property
    def log_paths(self) -> Sequence[Path]:
        return [self.prosody.log_path, self.dino.out_path]


def start_prosody(base: Path, ca: trustme.CA) -> LabProsody:
    server = LabProsody(base, ca)
    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        raise LabUnavailable(f"Prosody did not start in the lab namespace: {exc}") from None
    return server


def wait_log(path: Path, needle: str, offset: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), path.open("rb") as f:
            f.seek(offset)
            if needle.encode() in f.read():
                return True
        time.sleep(0.2)
    return False
