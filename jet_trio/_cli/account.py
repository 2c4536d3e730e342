"""The account options of ``send``, ``receive`` and ``plugins``: who, which password, which server.

A password is never taken from a command-line argument (other users of the machine can read
those with ``ps``): it comes from ``--password-file``, the ``JET_TRIO_PASSWORD`` environment
variable, or a prompt on the terminal, in that order.
"""

from __future__ import annotations

import getpass
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from .._xmpp.client import Client, open_client
from .._xmpp.connect import DEFAULT_LOGIN_TIMEOUT
from .._xmpp.jid import JID, InvalidJID
from .errors import CLIError, ExitCode

__all__ = ["AccountOptions", "connect", "default_data_dir"]

PASSWORD_ENV = "JET_TRIO_PASSWORD"
log = logging.getLogger("jet_trio.cli")


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/jet-trio``, by default ``~/.local/share/jet-trio``."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "jet-trio"


def parse_server(value: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT``."""
    text = value.strip()
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            host = ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or (port and not port.isdigit()) or (port and not 0 < int(port) < 65536):
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"--server {value!r} is not HOST or HOST:PORT",
            "Write it like xmpp.example.org:5222.",
        )
    return host, int(port) if port else None


@dataclass(frozen=True)
class AccountOptions:
    account: str | None
    password_file: Path | None
    server: str | None
    ca_file: Path | None
    direct_tls: bool
    data_dir: Path | None
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT
    allow_plain: bool = True

    def jid(self) -> JID:
        if not self.account:
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                "no account given",
                "Pass --account name@example.org or set JET_TRIO_ACCOUNT.",
            )
        try:
            jid = JID(self.account)
        except InvalidJID as exc:
            raise CLIError(
                ExitCode.USAGE, "usage", f"--account: {exc}", "Write it like name@example.org."
            ) from None
        if jid.local is None:
            raise CLIError(
                ExitCode.USAGE,
                "usage",
                f"--account {self.account!r} has no user name",
                "Write it like name@example.org.",
            )
        return jid

    def account_data_dir(self, jid: JID) -> Path:
        """Where plugins keep this account's state: ``<data dir>/<bare JID>``, private."""
        base = self.data_dir if self.data_dir is not None else default_data_dir()
        path = base / str(jid.bare)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(
                ExitCode.FILE,
                "file",
                f"cannot create the data directory {path}: {exc.strerror or exc}",
                "Choose another one with --data-dir.",
            ) from None
        return path

    def password(self, jid: JID) -> str:
        if self.password_file is not None:
            try:
                _warn_if_readable_by_others(self.password_file)
                text = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise CLIError(
                    ExitCode.FILE,
                    "file",
                    f"cannot read the password file {self.password_file}: {exc.strerror or exc}",
                    "Check the path given to --password-file.",
                ) from None
            password = text.splitlines()[0] if text.splitlines() else ""
            if not password:
                raise CLIError(
                    ExitCode.USAGE,
                    "usage",
                    f"the password file {self.password_file} is empty",
                    "Put the password on its first line.",
                )
            return password
        env = os.environ.get(PASSWORD_ENV)
        if env:
            return env
        if sys.stdin.isatty():
            try:
                answer = getpass.getpass(f"Password for {jid.bare}: ")
            except EOFError:
                answer = ""
            if answer:
                return answer
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"no password for {jid.bare}",
            f"Use --password-file FILE, set {PASSWORD_ENV}, or run on a terminal to be asked.",
        )


def _warn_if_readable_by_others(path: Path) -> None:
    """As ssh does for private keys: a password file others can read is worth a word."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the password file %s can be read or changed by other users (mode %s); "
            "make it private: chmod 600 %s",
            path,
            stat.filemode(mode),
            path,
        )


@asynccontextmanager
async def connect(
    opts: AccountOptions, jid: JID, *, presence: bool = True
) -> AsyncIterator[Client]:
    """Log in with the account options (the password is read first, before connecting).

    With ``presence=False`` the caller sends the initial presence itself, once it is ready to
    be contacted (plugins started, file transfer features registered).
    """
    password = opts.password(jid)
    host, port = parse_server(opts.server) if opts.server else (None, None)
    ca_file = str(opts.ca_file) if opts.ca_file is not None else None
    if ca_file is not None and not await trio.Path(ca_file).is_file():
        raise CLIError(
            ExitCode.FILE,
            "file",
            f"the CA file {ca_file} does not exist",
            "Pass the PEM file of the server's certificate authority to --ca-file.",
        )
    async with open_client(
        jid,
        password,
        host=host,
        port=port,
        security="direct" if opts.direct_tls else "starttls",
        ca_file=ca_file,
        presence=presence,
        allow_plain=opts.allow_plain,
        login_timeout=opts.login_timeout,
    ) as client:
        yield client
