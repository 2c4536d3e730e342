"""Private, throw-away XMPP servers on 127.0.0.1 for the integration tests.

Everything a server needs lives in one temporary directory: its config file, data, pidfile,
certificate and logs. Nothing of the system installation (``/etc/prosody``, the system service)
is used. See ``shared/LAB.md`` for the settings this is built on.

The module is plain synchronous code (``subprocess`` and blocking sockets) so that pytest
fixtures built on it work the same under pytest-trio as anywhere else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import trustme

DEFAULT_USERS: Final = ("alice", "bob", "carol")
DEFAULT_DOMAIN: Final = "localhost"

#: The modules of LAB.md, plus ``stanza_debug`` so the debug log shows every stanza in full.
PROSODY_MODULES: Final = (
    "disco",
    "roster",
    "saslauth",
    "tls",
    "presence",
    "ping",
    "pep",
    "carbons",
    "posix",
    "stanza_debug",
)

#: LAB.md: helps large IBB blocks through Prosody (costs S5B through proxy65 ~15%).
TUNED_NETWORK_SETTINGS: Final = "{ nagle = false; read_size = 262144; min_wait = 1e-5 }"

_STREAM_NS: Final = "http://etherx.jabber.org/streams"


class ServerUnavailable(RuntimeError):
    """The server could not be started (or is not installed)."""


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a running test server.

    ``accounts`` maps user names (localparts) to passwords; every account has every other
    account in its roster with ``subscription="both"``.
    """

    domain: str
    host: str
    port: int
    ca_file: str
    accounts: dict[str, str] = field(hash=False, repr=False)
    proxy_jid: str
    proxy_host: str
    proxy_port: int
    log_path: str
    kind: str = "prosody"

    def jid(self, user: str) -> str:
        """The bare JID of ``user`` on this server (``KeyError`` for an unknown account)."""
        if user not in self.accounts:
            raise KeyError(user)
        return f"{user}@{self.domain}"

    def password(self, user: str) -> str:
        return self.accounts[user]

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this server's test CA."""
        return ssl.create_default_context(cafile=self.ca_file)


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_server(reason: str) -> None:
    """Fail (on CI, ``CI=true``) or skip (elsewhere) because a server cannot be run."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: integration tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


def find_prosody() -> tuple[str, str] | None:
    """Paths of the ``prosody`` and ``prosodyctl`` executables, or None."""
    prosody = shutil.which("prosody")
    prosodyctl = shutil.which("prosodyctl")
    if prosody is None or prosodyctl is None:
        return None
    return prosody, prosodyctl


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    The sockets are held open together so the kernel hands out distinct ports; another process
    can still grab one before the server binds it, which :meth:`PrivateProsody.start` detects
    and answers by picking new ports.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def lua_string(value: str) -> str:
    """A Lua double-quoted string literal for ``value``."""
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable() and ord(ch) < 128:
            out.append(ch)
        else:
            out.extend(f"\\{byte:03d}" for byte in ch.encode("utf-8"))
    out.append('"')
    return "".join(out)


def prosody_path_encode(value: str) -> str:
    """Prosody's ``datamanager`` encoding of host and user names in file names."""
    return re.sub(r"[^a-zA-Z0-9]", lambda m: "".join(f"%{b:02x}" for b in m[0].encode()), value)


def roster_lua(owner: str, contacts: Iterable[str], domain: str) -> str:
    """A Prosody 0.12 ``roster`` store file: mutual (``both``) subscriptions with ``contacts``."""
    lines = ["return {", '\t[false] = { ["version"] = 1; ["pending"] = {}; };']
    for contact in contacts:
        if contact == owner:
            continue
        jid = lua_string(f"{contact}@{domain}")
        lines.append(
            f'\t[{jid}] = {{ ["subscription"] = "both"; ["groups"] = {{}}; '
            f'["name"] = {lua_string(contact)}; }};'
        )
    lines.append("};")
    return "\n".join(lines) + "\n"


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


_LIVE: weakref.WeakSet[PrivateProsody] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - only after a crash of the test run
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


class PrivateProsody:
    """One private Prosody 0.12 instance in ``base_dir``.

    Usage: ``PrivateProsody(dir, ca).start()`` returns the :class:`ServerInfo`; :meth:`stop`
    stops it cleanly (SIGTERM), :meth:`kill` simulates a crash (SIGKILL), and :meth:`start`
    can be called again afterwards: the same ports, accounts and data are reused.
    """

    def __init__(
        self,
        base_dir: Path,
        ca: trustme.CA,
        *,
        users: Sequence[str] = DEFAULT_USERS,
        domain: str = DEFAULT_DOMAIN,
        tuned_network: bool = False,
        extra_config: str = "",
    ) -> None:
        found = find_prosody()
        if found is None:
            raise ServerUnavailable("prosody is not installed (apt-get install prosody)")
        self._prosody, self._prosodyctl = found
        self.base_dir = base_dir.resolve()
        self.domain = domain
        self.proxy_jid = f"proxy.{domain}"
        self.tuned_network = tuned_network
        self.extra_config = extra_config
        self.users = tuple(users)
        self.accounts = {user: secrets.token_urlsafe(12) for user in self.users}
        self.config_path = self.base_dir / "prosody.cfg.lua"
        self.data_dir = self.base_dir / "data"
        self.certs_dir = self.base_dir / "certs"
        self.pid_path = self.base_dir / "prosody.pid"
        self.log_path = self.base_dir / "prosody.log"
        self.stdout_path = self.base_dir / "prosody.stdout"
        self.ca_file = self.base_dir / "ca.pem"
        self.c2s_port = 0
        self.proxy_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._ca = ca

    # -- set-up -------------------------------------------------------------------------------

    def _write_config(self) -> None:
        net = f"network_settings = {TUNED_NETWORK_SETTINGS}\n" if self.tuned_network else ""
        modules = "; ".join(lua_string(m) for m in PROSODY_MODULES)
        cert = lua_string(str(self.certs_dir / f"{self.domain}.crt"))
        key = lua_string(str(self.certs_dir / f"{self.domain}.key"))
        config = f"""\
-- Generated by tests/integration/_servers.py: a private test instance, not for production.
run_as_root = true
daemonize = false
pidfile = {lua_string(str(self.pid_path))}
data_path = {lua_string(str(self.data_dir))}
certificates = {lua_string(str(self.certs_dir))}
log = {{ debug = {lua_string(str(self.log_path))} }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_disabled = {{ "s2s" }}
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ {modules} }}
ssl = {{ certificate = {cert}; key = {key} }}
proxy65_ports = {{ {self.proxy_port} }}
proxy65_interfaces = {{ "127.0.0.1" }}
{net}{self.extra_config}
VirtualHost {lua_string(self.domain)}

Component {lua_string(self.proxy_jid)} "proxy65"
    proxy65_address = "127.0.0.1"
"""
        self.config_path.write_text(config, encoding="utf-8")

    def _prepare(self) -> None:
        """Directory, certificate, config, accounts and rosters (while stopped)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.certs_dir.mkdir(exist_ok=True)
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        leaf = self._ca.issue_cert(self.domain, self.proxy_jid)
        leaf.private_key_pem.write_to_path(str(self.certs_dir / f"{self.domain}.key"))
        with (self.certs_dir / f"{self.domain}.crt").open("wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
        self.c2s_port, self.proxy_port = free_ports(2)
        self._write_config()
        for user, password in self.accounts.items():
            self._prosodyctl_run("register", user, self.domain, password)
        roster_dir = self.data_dir / prosody_path_encode(self.domain) / "roster"
        roster_dir.mkdir(parents=True, exist_ok=True)
        for user in self.users:
            (roster_dir / f"{prosody_path_encode(user)}.dat").write_text(
                roster_lua(user, self.users, self.domain), encoding="utf-8"
            )
        self._prepared = True

    def _prosodyctl_run(self, *args: str) -> None:
        cmd = [self._prosodyctl, "--config", str(self.config_path), *args]
        result = subprocess.run(
            cmd,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            shown = " ".join(cmd[:4])  # never the password
            raise ServerUnavailable(
                f"{shown} ... failed with {result.returncode}: "
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            )

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def info(self) -> ServerInfo:
        return ServerInfo(
            domain=self.domain,
            host="127.0.0.1",
            port=self.c2s_port,
            ca_file=str(self.ca_file),
            accounts=dict(self.accounts),
            proxy_jid=self.proxy_jid,
            proxy_host="127.0.0.1",
            proxy_port=self.proxy_port,
            log_path=str(self.log_path),
            kind="prosody",
        )

    def start(self, timeout: float = 15.0, attempts: int = 3) -> ServerInfo:
        """Start (or restart) the server; return once c2s and proxy65 accept connections."""
        if self.running:
            return self.info
        if not self._prepared:
            self._prepare()
        last_error = ""
        for attempt in range(attempts):
            if attempt:
                # A port was taken between picking and binding it: pick new ones.
                self.c2s_port, self.proxy_port = free_ports(2)
                self._write_config()
            log_offset = _file_size(self.log_path)
            with self.stdout_path.open("ab") as out:
                self._proc = subprocess.Popen(
                    [self._prosody, "-F", "--config", str(self.config_path)],
                    cwd=self.base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            _LIVE.add(self)
            try:
                self._wait_ready(log_offset, timeout)
            except ServerUnavailable as exc:
                last_error = str(exc)
                self.kill()
                continue
            return self.info
        raise ServerUnavailable(
            f"prosody did not start after {attempts} attempts: {last_error}\n"
            f"--- {self.log_path} (tail) ---\n{self.log_tail(40)}"
            f"--- {self.stdout_path} ---\n{_read_from(self.stdout_path, 0)[-4000:]}"
        )

    def _wait_ready(self, log_offset: int, timeout: float) -> None:
        assert self._proc is not None
        c2s_line = f"Activated service 'c2s' on [127.0.0.1]:{self.c2s_port}"
        proxy_line = f"Activated service 'proxy65' on [127.0.0.1]:{self.proxy_port}"
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerUnavailable(f"prosody exited with status {code}")
            log = _read_from(self.log_path, log_offset)
            if "Failed to open server port" in log:
                raise ServerUnavailable("a port was already in use")
            if c2s_line in log and proxy_line in log and self._probe():
                return
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"not ready within {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _probe(self) -> bool:
        """True if c2s answers a stream header with features and proxy65 accepts TCP."""
        try:
            with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=2):
                pass
            with socket.create_connection(("127.0.0.1", self.c2s_port), timeout=2) as sock:
                sock.sendall(
                    f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' "
                    f"xmlns='jabber:client' xmlns:stream='{_STREAM_NS}'>".encode()
                )
                received = b""
                while b"</stream:features>" not in received:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    received += chunk
                sock.sendall(b"</stream:stream>")
            return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit within ``timeout``. Returns the status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        _LIVE.discard(self)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would: connections drop without a closing stream."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        _LIVE.discard(self)

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- diagnostics --------------------------------------------------------------------------

    def log_size(self) -> int:
        return _file_size(self.log_path)

    def log_since(self, offset: int) -> str:
        return _read_from(self.log_path, offset)

    def log_tail(self, lines: int = 200) -> str:
        text = _read_from(self.log_path, 0)
        return "".join(text.splitlines(keepends=True)[-lines:])


class ProsodyFactory:
    """Starts fresh private Prosody instances for one test and stops them all afterwards."""

    def __init__(self, tmp_dir: Path, ca: trustme.CA) -> None:
        self._tmp_dir = tmp_dir
        self._ca = ca
        self.instances: list[PrivateProsody] = []

    def __call__(
        self,
        *,
        users: Sequence[str] = DEFAULT_USERS,
        tuned_network: bool = False,
        extra_config: str = "",
        start: bool = True,
    ) -> PrivateProsody:
        server = PrivateProsody(
            self._tmp_dir / f"prosody-{len(self.instances)}",
            self._ca,
            users=users,
            tuned_network=tuned_network,
            extra_config=extra_config,
        )
        self.instances.append(server)
        if start:
            server.start()
        return server

    def close(self) -> None:
        for server in self.instances:
            server.stop()

    def __iter__(self) -> Iterator[PrivateProsody]:
        return iter(self.instances)
