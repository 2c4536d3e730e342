"""Private, throw-away XMPP servers on 127.0.0.1 for the integration tests.

Everything a server needs lives in one temporary directory: its config file, data, pidfile,
certificate and logs. Nothing of the system installation (``/etc/prosody``, the system service)
is used. See ``shared/LAB.md`` for the settings this is built on. For federation tests a server
can also talk server-to-server (``s2s_dns``, resolving through ``_dns.py`` only), and a Prosody
can run inside a network namespace on one of its addresses (``netns``, ``host``).

The module is plain synchronous code (``subprocess`` and blocking sockets) so that pytest
fixtures built on it work the same under pytest-trio as anywhere else.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

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


def missing_server(reason: str) -> NoReturn:
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


def have_lua_unbound() -> bool:
    """Whether Prosody can use libunbound (Debian package ``lua-unbound``)."""
    patterns = (
        "/usr/lib/*/lua/*/lunbound.so",
        "/usr/lib/lua/*/lunbound.so",
        "/usr/local/lib/lua/*/lunbound.so",
    )
    return any(glob.glob(pattern) for pattern in patterns)


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


def roster_lua(owner: str, contacts: Iterable[str], domain: str, remote: Iterable[str] = ()) -> str:
    """A Prosody 0.12 ``roster`` store file: mutual (``both``) subscriptions with ``contacts``
    (local parts on ``domain``) and ``remote`` (bare JIDs on other servers)."""
    lines = ["return {", '\t[false] = { ["version"] = 1; ["pending"] = {}; };']
    entries = [(c, f"{c}@{domain}") for c in contacts if c != owner]
    entries += [(j.partition("@")[0], j) for j in remote]
    for contact, bare in entries:
        jid = lua_string(bare)
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


_LIVE: weakref.WeakSet[PrivateServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - only after a crash of the test run
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


def xmpp_probe(port: int, domain: str, host: str = "127.0.0.1") -> bool:
    """True if ``host``:``port`` answers a client stream header with ``<stream:features>``."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(
                f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' "
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


def tcp_probe(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


class PrivateServer:
    """What every private test server has in common: a process we own, ports, a log.

    Subclasses write the configuration (:meth:`_prepare`, :meth:`_write_config`), name the
    command, the log lines that mean "listening" and "port taken", and may act once the server
    is up (:meth:`_after_start`).
    """

    kind = "?"
    #: The network namespace the server runs in (``None``: this one); it listens on ``host``.
    netns: str | None = None
    has_proxy = True

    def __init__(self, base_dir: Path, ca: trustme.CA, users: Sequence[str], domain: str) -> None:
        self.base_dir = base_dir.resolve()
        self.domain = domain
        self.proxy_jid = f"proxy.{domain}"
        self.users = tuple(users)
        self.accounts = {user: secrets.token_urlsafe(12) for user in self.users}
        self.ca_file = self.base_dir / "ca.pem"
        self.log_path = self.base_dir / "server.log"
        self.stdout_path = self.base_dir / "server.stdout"
        self.c2s_port = 0
        self.proxy_port = 0
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._ca = ca

    # -- to be provided by subclasses -----------------------------------------------------------

    def _prepare(self) -> None:
        raise NotImplementedError

    def _pick_ports(self) -> None:
        self.c2s_port, self.proxy_port = free_ports(2)

    def _write_config(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _ready_lines(self) -> list[str]:
        raise NotImplementedError

    _port_taken_line = "<never>"

    def _after_start(self) -> None:
        pass

    # -- shared ---------------------------------------------------------------------------------

    def _issue_certificate(self) -> tuple[bytes, bytes]:
        """Write the CA file; return (certificate chain PEM, private key PEM) for the server."""
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        # trustme's default validity ends in the year 3000, which ejabberd (Erlang's pkix)
        # reports as an expired certificate; a short, ordinary validity works everywhere.
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        leaf = self._ca.issue_cert(
            self.domain,
            self.proxy_jid,
            not_before=now - datetime.timedelta(days=1),
            not_after=now + datetime.timedelta(days=30),
        )
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return chain, leaf.private_key_pem.bytes()

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
            host=self.host,
            port=self.c2s_port,
            ca_file=str(self.ca_file),
            accounts=dict(self.accounts),
            proxy_jid=self.proxy_jid,
            proxy_host=self.host,
            proxy_port=self.proxy_port,
            log_path=str(self.log_path),
            kind=self.kind,
        )

    def start(self, timeout: float = 20.0, attempts: int = 3) -> ServerInfo:
        """Start (or restart) the server; return once c2s and the proxy accept connections."""
        if self.running:
            return self.info
        if not self._prepared:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self._pick_ports()
            self._prepare()
            self._write_config()
            self._prepared = True
        last_error = ""
        for attempt in range(attempts):
            if attempt:
                # A port was taken between picking and binding it: pick new ones.
                self._pick_ports()
                self._write_config()
            log_offset = _file_size(self.log_path)
            with self.stdout_path.open("ab") as out:
                self._proc = subprocess.Popen(
                    self._command(),
                    cwd=self.base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._popen_kwargs(),
                )
            _LIVE.add(self)
            try:
                self._wait_ready(log_offset, timeout)
            except ServerUnavailable as exc:
                last_error = str(exc)
                self.kill()
                continue
            self._after_start()
            return self.info
        raise ServerUnavailable(
            f"{self.kind} did not start after {attempts} attempts: {last_error}\n"
            f"--- {self.log_path} (tail) ---\n{self.log_tail(40)}"
            f"--- {self.stdout_path} (tail) ---\n{_read_from(self.stdout_path, 0)[-4000:]}"
        )

    def _wait_ready(self, log_offset: int, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerUnavailable(f"{self.kind} exited with status {code}")
            log = _read_from(self.log_path, log_offset)
            if self._port_taken_line in log:
                raise ServerUnavailable("a port was already in use")
            if all(line in log for line in self._ready_lines()) and self._probe():
                return
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"not ready within {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _probe(self) -> bool:
        with contextlib.ExitStack() as stack:
            if self.netns is not None:
                from tests.netns._topology import in_netns

                stack.enter_context(in_netns(self.netns))
            proxy_ok = not self.has_proxy or tcp_probe(self.proxy_port, self.host)
            return proxy_ok and xmpp_probe(self.c2s_port, self.domain, self.host)

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit within ``timeout``. Returns the status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._graceful_stop()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(10)
        _LIVE.discard(self)
        return proc.returncode

    def _graceful_stop(self) -> None:
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crash would: connections drop without a closing stream."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(signal.SIGKILL)
        proc.wait(10)
        _LIVE.discard(self)

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def close(self) -> None:
        self.stop()

    # -- diagnostics ----------------------------------------------------------------------------

    def log_size(self) -> int:
        return _file_size(self.log_path)

    def log_since(self, offset: int) -> str:
        return _read_from(self.log_path, offset)

    def log_tail(self, lines: int = 200) -> str:
        text = _read_from(self.log_path, 0)
        return "".join(text.splitlines(keepends=True)[-lines:])


class PrivateProsody(PrivateServer):
    """One private Prosody 0.12 instance in ``base_dir``.

    Usage: ``PrivateProsody(dir, ca).start()`` returns the :class:`ServerInfo`; :meth:`stop`
    stops it cleanly (SIGTERM), :meth:`kill` simulates a crash (SIGKILL), and :meth:`start`
    can be called again afterwards: the same ports, accounts and data are reused.

    ``tuned_network`` adds LAB.md's ``network_settings`` (faster IBB); ``stanza_debug=False``
    drops the debug log of every stanza (for benchmarks; the log is then at ``info`` level).

    Federation: ``s2s_dns`` (``ip@port`` of a DNS server on loopback, see ``_dns.py``) turns
    server-to-server on, on a port of its own (:attr:`s2s_port`), over TLS with certificates of
    the test CA only (``s2s_secure_auth``: no dialback), and makes every DNS lookup of the
    server go to that address and nowhere else. ``remote_contacts`` (bare JIDs on other
    servers) are put in every account's roster with mutual subscriptions.

    ``netns`` runs the server inside that network namespace (``ip netns exec``), listening on
    ``host`` (an address of the namespace) instead of 127.0.0.1; readiness is then read from
    the log only, as the namespace is not reachable from here.
    """

    kind = "prosody"
    _port_taken_line = "Failed to open server port"

    def __init__(
        self,
        base_dir: Path,
        ca: trustme.CA,
        *,
        users: Sequence[str] = DEFAULT_USERS,
        domain: str = DEFAULT_DOMAIN,
        tuned_network: bool = False,
        stanza_debug: bool = True,
        extra_config: str = "",
        s2s_dns: str | None = None,
        remote_contacts: Sequence[str] = (),
        host: str = "127.0.0.1",
        netns: str | None = None,
        proxy65: bool = True,
    ) -> None:
        found = find_prosody()
        if found is None:
            raise ServerUnavailable("prosody is not installed (apt-get install prosody)")
        super().__init__(base_dir, ca, users, domain)
        self._prosody, self._prosodyctl = found
        self.tuned_network = tuned_network
        self.stanza_debug = stanza_debug
        self.extra_config = extra_config
        if s2s_dns is not None and not have_lua_unbound():
            # Without it Prosody resolves with its old resolver, from /etc/resolv.conf: the
            # lookups of the federation tests would leave the machine.
            raise ServerUnavailable("federation needs lua-unbound (apt-get install lua-unbound)")
        self.s2s_dns = s2s_dns
        self.remote_contacts = tuple(remote_contacts)
        self.s2s_port = 0
        self.host = host
        self.netns = netns
        self.has_proxy = proxy65
        self.config_path = self.base_dir / "prosody.cfg.lua"
        self.data_dir = self.base_dir / "data"
        self.certs_dir = self.base_dir / "certs"
        self.pid_path = self.base_dir / "prosody.pid"

    def _command(self) -> list[str]:
        command = [self._prosody, "-F", "--config", str(self.config_path)]
        return command if self.netns is None else ["ip", "netns", "exec", self.netns, *command]

    def _pick_ports(self) -> None:
        if self.s2s_dns is None:
            super()._pick_ports()
        else:
            self.c2s_port, self.proxy_port, self.s2s_port = free_ports(3)

    def _ready_lines(self) -> list[str]:
        lines = [f"Activated service 'c2s' on [{self.host}]:{self.c2s_port}"]
        if self.has_proxy:
            lines.append(f"Activated service 'proxy65' on [{self.host}]:{self.proxy_port}")
        if self.s2s_dns is not None:
            lines.append(f"Activated service 's2s' on [{self.host}]:{self.s2s_port}")
        return lines

    def _s2s_config(self) -> str:
        if self.s2s_dns is None:
            return 's2s_ports = { }\nmodules_disabled = { "s2s" }\n'
        # libunbound refuses to look up localhost (the forwarder) and answers the special-use
        # TLD test. itself (NXDOMAIN) unless told otherwise.
        return f"""\
s2s_ports = {{ {self.s2s_port} }}
s2s_require_encryption = true
s2s_secure_auth = true
unbound = {{
    hoststxt = false;
    resolvconf = false;
    forward = {lua_string(self.s2s_dns)};
    options = {{ ["do-not-query-localhost:"] = "no"; ["local-zone:"] = "test. transparent" }};
}}
"""

    def _write_config(self) -> None:
        net = f"network_settings = {TUNED_NETWORK_SETTINGS}\n" if self.tuned_network else ""
        # A debug log of every stanza in full costs time: benchmarks turn it off.
        modules = "; ".join(
            lua_string(m) for m in PROSODY_MODULES if self.stanza_debug or m != "stanza_debug"
        )
        level = "debug" if self.stanza_debug else "info"
        component = (
            f'\nComponent {lua_string(self.proxy_jid)} "proxy65"\n'
            f"    proxy65_address = {lua_string(self.host)}\n"
            if self.has_proxy
            else ""
        )
        cert = lua_string(str(self.certs_dir / f"{self.domain}.crt"))
        key = lua_string(str(self.certs_dir / f"{self.domain}.key"))
        config = f"""\
-- Generated by tests/integration/_servers.py: a private test instance, not for production.
run_as_root = true
daemonize = false
pidfile = {lua_string(str(self.pid_path))}
data_path = {lua_string(str(self.data_dir))}
certificates = {lua_string(str(self.certs_dir))}
log = {{ {level} = {lua_string(str(self.log_path))} }}
interfaces = {{ {lua_string(self.host)} }}
local_interfaces = {{ {lua_string(self.host)} }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
{self._s2s_config()}component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ {modules} }}
ssl = {{ certificate = {cert}; key = {key}; cafile = {lua_string(str(self.ca_file))} }}
proxy65_ports = {{ {self.proxy_port} }}
proxy65_interfaces = {{ {lua_string(self.host)} }}
{net}{self.extra_config}
VirtualHost {lua_string(self.domain)}
{component}"""
        self.config_path.write_text(config, encoding="utf-8")

    def _prepare(self) -> None:
        """Certificate, config, accounts and rosters (while stopped)."""
        self.data_dir.mkdir(exist_ok=True)
        self.certs_dir.mkdir(exist_ok=True)
        chain, key = self._issue_certificate()
        (self.certs_dir / f"{self.domain}.crt").write_bytes(chain)
        (self.certs_dir / f"{self.domain}.key").write_bytes(key)
        self._write_config()
        for user, password in self.accounts.items():
            self._prosodyctl_run("register", user, self.domain, password)
        roster_dir = self.data_dir / prosody_path_encode(self.domain) / "roster"
        roster_dir.mkdir(parents=True, exist_ok=True)
        for user in self.users:
            (roster_dir / f"{prosody_path_encode(user)}.dat").write_text(
                roster_lua(user, self.users, self.domain, self.remote_contacts),
                encoding="utf-8",
            )

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


def find_ejabberd() -> str | None:
    """Path of ``ejabberdctl`` (Debian package ``ejabberd``), or None."""
    return shutil.which("ejabberdctl") or (
        "/usr/sbin/ejabberdctl" if os.access("/usr/sbin/ejabberdctl", os.X_OK) else None
    )


EJABBERD_USER: Final = "ejabberd"


class PrivateEjabberd(PrivateServer):
    """One private ejabberd (Debian 23.01) in its own directory, run as the ``ejabberd`` user.

    ``ejabberdctl ... foreground`` with a private config dir, spool and logs, an Erlang node of
    its own name on a private distribution port (no epmd), c2s and mod_proxy65 on 127.0.0.1 at
    ports picked at run time, no traffic shaping. Accounts and mutual rosters are created with
    ``ejabberdctl`` once the node is up (about 0.5 s per call; the calls run in parallel).

    The directory must be reachable by the ``ejabberd`` user, so it is created with
    :func:`tempfile.mkdtemp` (not under pytest's private temp dir) and removed by :meth:`close`.

    Federation, as for :class:`PrivateProsody`: ``s2s_dns`` (``ip@port`` of the test DNS
    server) turns on server-to-server connections on :attr:`s2s_port`, STARTTLS required,
    authenticated by certificates of the test CA only (no dialback module), and makes the
    Erlang resolver ask that server and nothing else (no ``/etc/hosts``, no
    ``/etc/resolv.conf``). ``remote_contacts`` go into every account's roster.

    ``netns`` runs the server inside that network namespace (``ip netns exec``, then
    ``setpriv`` to the ``ejabberd`` user), with c2s, s2s and mod_proxy65 on ``host`` (an
    address of the namespace); the admin API and the Erlang distribution stay on the
    namespace's loopback, and the set-up calls reach them from a thread inside it.
    """

    kind = "ejabberd"
    _port_taken_line = "Failed to open socket"

    def __init__(
        self,
        ca: trustme.CA,
        *,
        users: Sequence[str] = DEFAULT_USERS,
        domain: str = DEFAULT_DOMAIN,
        s2s_dns: str | None = None,
        remote_contacts: Sequence[str] = (),
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        ctl = find_ejabberd()
        if ctl is None:
            raise ServerUnavailable("ejabberd is not installed (apt-get install ejabberd)")
        try:
            self._pw = pwd.getpwnam(EJABBERD_USER)
        except KeyError:
            raise ServerUnavailable(f"there is no {EJABBERD_USER!r} system user") from None
        if os.geteuid() not in (0, self._pw.pw_uid):
            raise ServerUnavailable(f"running ejabberd needs root or the {EJABBERD_USER!r} user")
        self._ctl = ctl
        super().__init__(Path(tempfile.mkdtemp(prefix="jet-trio-ejabberd-")), ca, users, domain)
        self.conf_dir = self.base_dir / "conf"
        self.spool_dir = self.base_dir / "spool"
        self.logs_dir = self.base_dir / "logs"
        self.log_path = self.logs_dir / "ejabberd.log"
        self.node = f"jettest{secrets.token_hex(4)}@localhost"
        self.dist_port = 0
        self.api_port = 0
        self.s2s_port = 0
        self.s2s_dns = s2s_dns
        self.remote_contacts = tuple(remote_contacts)
        self.host = host
        self.netns = netns

    def _pick_ports(self) -> None:
        ports = free_ports(5)
        self.c2s_port, self.proxy_port, self.dist_port, self.api_port, self.s2s_port = ports

    def _prepare(self) -> None:
        for d in (self.conf_dir, self.spool_dir, self.logs_dir):
            d.mkdir(exist_ok=True)
        chain, key = self._issue_certificate()
        (self.conf_dir / "server.pem").write_bytes(chain + key)
        inetrc = Path("/etc/ejabberd/inetrc")
        if self.s2s_dns is not None:
            ip, _, port = self.s2s_dns.partition("@")
            (self.conf_dir / "inetrc").write_text(
                "{lookup, [dns]}.\n"
                '{resolv_conf, ""}.\n'
                '{hosts_file, ""}.\n'
                f"{{nameserver, {{{ip.replace('.', ',')}}}, {int(port or 53)}}}.\n",
                encoding="utf-8",
            )
        elif inetrc.is_file():
            shutil.copyfile(inetrc, self.conf_dir / "inetrc")
        self.base_dir.chmod(0o755)
        for path in (self.base_dir, *self.base_dir.rglob("*")):
            os.chown(path, self._pw.pw_uid, self._pw.pw_gid)

    def _write_config(self) -> None:
        (self.conf_dir / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE={self.node}\n"
            "INET_DIST_INTERFACE=127.0.0.1\n"
            f"ERL_DIST_PORT={self.dist_port}\n"
            'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n',
            encoding="utf-8",
        )
        (self.conf_dir / "ejabberd.yml").write_text(
            f"""\
# Generated by tests/integration/_servers.py: a private test instance, not for production.
hosts:
  - {json.dumps(self.domain)}
loglevel: debug
log_rotate_count: 0
certfiles:
  - {json.dumps(str(self.conf_dir / "server.pem"))}
listen:
  -
    port: {self.c2s_port}
    ip: {json.dumps(self.host)}
    module: ejabberd_c2s
    max_stanza_size: 1048576
    shaper: none
    access: c2s
    starttls_required: true
  -
    port: {self.api_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
{self._s2s_listener()}api_permissions:
  "test set-up from loopback":
    from:
      - ejabberd_ctl
      - mod_http_api
    who:
      ip: 127.0.0.1/32
    what: "*"
{self._s2s_options()}auth_method: internal
auth_password_format: scram
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  pubsub_createnode:
    allow: local
shaper_rules:
  c2s_shaper: none
modules:
  mod_admin_extra: {{}}
  mod_http_api: {{}}
  mod_caps: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins:
      - flat
      - pep
  mod_proxy65:
    host: {json.dumps(self.proxy_jid)}
    ip: {json.dumps(self.host)}
    port: {self.proxy_port}
    hostname: {json.dumps(self.host)}
    max_connections: infinity
    shaper: none
""",
            encoding="utf-8",
        )
        for name in ("ejabberdctl.cfg", "ejabberd.yml"):
            os.chown(self.conf_dir / name, self._pw.pw_uid, self._pw.pw_gid)

    def _s2s_listener(self) -> str:
        if self.s2s_dns is None:
            return ""
        return f"""\
  -
    port: {self.s2s_port}
    ip: {json.dumps(self.host)}
    module: ejabberd_s2s_in
    max_stanza_size: 524288
"""

    def _s2s_options(self) -> str:
        if self.s2s_dns is None:
            return "s2s_access: none\n"
        return f"""\
s2s_access: all
s2s_use_starttls: required
s2s_cafile: {json.dumps(str(self.ca_file))}
s2s_dns_timeout: 5
s2s_dns_retries: 1
"""

    def _ctl_command(self, *args: str) -> list[str]:
        return [
            self._ctl,
            "--config-dir",
            str(self.conf_dir),
            "--logs",
            str(self.logs_dir),
            "--spool",
            str(self.spool_dir),
            *args,
        ]

    def _command(self) -> list[str]:
        if self.netns is None:
            return self._ctl_command("foreground")
        # Entering the namespace needs root; the server then runs as the ejabberd user.
        return [
            *("ip", "netns", "exec", self.netns),
            *("setpriv", f"--reuid={self._pw.pw_uid}", f"--regid={self._pw.pw_gid}"),
            *("--clear-groups", "--", *self._ctl_command("foreground")),
        ]

    def _popen_kwargs(self) -> dict[str, Any]:
        # As the ejabberd user directly (ejabberdctl would otherwise `su`, and the server would
        # leave our process group); HOME holds the Erlang cookie shared with the ctl calls.
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.base_dir),
            "LANG": "C.UTF-8",
        }
        kwargs: dict[str, Any] = {"env": env}
        if os.geteuid() != self._pw.pw_uid and self.netns is None:
            kwargs.update(user=self._pw.pw_uid, group=self._pw.pw_gid, extra_groups=[])
        return kwargs

    def _ready_lines(self) -> list[str]:
        lines = [
            f"Start accepting TCP connections at {self.host}:{self.c2s_port} for ejabberd_c2s",
            f"Start accepting TCP connections at {self.host}:{self.proxy_port} "
            "for mod_proxy65_stream",
            f"Start accepting TCP connections at 127.0.0.1:{self.api_port} for ejabberd_http",
        ]
        if self.s2s_dns is not None:
            lines.append(
                f"Start accepting TCP connections at {self.host}:{self.s2s_port} "
                "for ejabberd_s2s_in"
            )
        return lines

    def api(self, command: str, **arguments: object) -> object:
        """Call an ejabberd admin command through mod_http_api (loopback only, test set-up)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/api/{command}",
            data=json.dumps(arguments).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with contextlib.ExitStack() as stack:
                if self.netns is not None:
                    from tests.netns._topology import in_netns

                    stack.enter_context(in_netns(self.netns))
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise ServerUnavailable(f"ejabberd API {command}: {exc.code} {body}") from None

    def _after_start(self) -> None:
        # Much faster than one ejabberdctl call (an Erlang VM start, ~0.5 s CPU) per command.
        if self._accounts_created:
            return
        for user, password in self.accounts.items():
            self.api("register", user=user, host=self.domain, password=password)
        for user in self.users:
            contacts = [(o, self.domain) for o in self.users if o != user]
            contacts += [(j.partition("@")[0], j.partition("@")[2]) for j in self.remote_contacts]
            for other, host in contacts:
                self.api(
                    "add_rosteritem",
                    localuser=user,
                    localhost=self.domain,
                    user=other,
                    host=host,
                    nick=other,
                    group="",
                    subs="both",
                )
        self._accounts_created = True

    _accounts_created = False

    def _graceful_stop(self) -> None:
        try:
            self.api("stop")
        except (ServerUnavailable, OSError):
            self._signal_group(signal.SIGTERM)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


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
        stanza_debug: bool = True,
        extra_config: str = "",
        start: bool = True,
    ) -> PrivateProsody:
        server = PrivateProsody(
            self._tmp_dir / f"prosody-{len(self.instances)}",
            self._ca,
            users=users,
            tuned_network=tuned_network,
            stanza_debug=stanza_debug,
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
