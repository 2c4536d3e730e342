"""The account options of ``send``, ``receive`` and ``plugins``: who, which password, which server.

A password is never taken from a command-line argument (other users of the machine can read
those with ``ps``): it comes from ``--password-file``, the ``JET_TRIO_PASSWORD`` environment
variable, the system keyring (only if the user stored it there with ``--save-password``), or a
prompt on the terminal, in that order. On a terminal an empty entry and a wrong password are
asked again, three times in all (as ssh does); the account's data directory is created only
once the login succeeded.
"""

from __future__ import annotations

import enum
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from .._xmpp.client import Client, open_client
from .._xmpp.connect import DEFAULT_LOGIN_TIMEOUT
from .._xmpp.jid import JID, InvalidJID
from .._xmpp.sasl import AuthenticationError, DowngradeDetected, NoCommonMechanism
from .errors import CLIError, ExitCode

__all__ = ["AccountOptions", "connect", "default_data_dir"]

PASSWORD_ENV = "JET_TRIO_PASSWORD"
#: The keyring service name under which ``--save-password`` stores passwords (user: bare JID).
KEYRING_SERVICE = "jet-trio"
#: Password entries on a terminal, as ssh: an empty entry or a refused password is asked again.
PROMPT_TRIES = 3
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
    save_password: bool = False

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
        """Where plugins keep this account's state: ``<data dir>/<bare JID>``, private.

        Checked here (before connecting: an unusable directory is reported before any work),
        created by :func:`connect` once the login succeeded, so that a mistyped account or a
        refused password leaves nothing behind.
        """
        path = self._data_path(jid)
        existing = path
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        problem = None
        if not existing.is_dir():
            problem = "it is not a directory" if existing == path else f"{existing} is a file"
        elif not os.access(existing, os.W_OK | os.X_OK):
            problem = "permission denied" if existing == path else f"{existing} is not writable"
        if problem is not None:
            raise CLIError(
                ExitCode.FILE,
                "file",
                f"cannot use the data directory {path}: {problem}",
                "Choose another one with --data-dir.",
            )
        return path

    def _data_path(self, jid: JID) -> Path:
        base = self.data_dir if self.data_dir is not None else default_data_dir()
        return base / str(jid.bare)

    def make_data_dir(self, jid: JID) -> Path:
        """Create the account's data directory (after the login succeeded)."""
        path = self._data_path(jid)
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
        """The password, from the first source that has one (see the module docstring)."""
        return self.password_and_source(jid)[0]

    def password_and_source(self, jid: JID) -> tuple[str, PasswordSource]:
        if self.password_file is not None:
            return self._password_from_file(), PasswordSource.FILE
        env = os.environ.get(PASSWORD_ENV)
        if env:
            return env, PasswordSource.ENV
        stored = keyring_password(jid)
        if stored:
            return stored, PasswordSource.KEYRING
        return prompt_password(jid), PasswordSource.PROMPT

    def _password_from_file(self) -> str:
        assert self.password_file is not None
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


class PasswordSource(enum.Enum):
    FILE = "--password-file"
    ENV = PASSWORD_ENV
    KEYRING = "the system keyring"
    PROMPT = "the prompt"
    CHOSEN = "the new account's password"


def on_terminal() -> bool:
    return sys.stdin.isatty()


def prompt_password(jid: JID, *, again: bool = False) -> str:
    """Ask on the terminal; an empty entry is asked again (three entries in all)."""
    if not on_terminal():
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"no password for {jid.bare}",
            f"Use --password-file FILE, set {PASSWORD_ENV}, or run on a terminal to be asked.",
        )
    for _ in range(PROMPT_TRIES):
        try:
            import getpass  # only to prompt: it imports termios

            answer = getpass.getpass(f"Password for {jid.bare}: ")
        except EOFError:  # Ctrl-D
            print(file=sys.stderr)
            break
        if answer:
            return answer
        print("jet-trio: the password is empty; type it, or press Ctrl-C to stop", file=sys.stderr)
    raise CLIError(
        ExitCode.AUTH if again else ExitCode.USAGE,
        "authentication" if again else "usage",
        f"no password entered for {jid.bare}",
        f"Type it at the prompt, or use --password-file FILE or {PASSWORD_ENV}.",
    )


def _keyring() -> object | None:
    """The ``keyring`` module if it is installed (the optional extra ``jet-trio[keyring]``)."""
    try:
        import keyring
    except ImportError:
        return None
    return keyring


def require_keyring() -> None:
    """``--save-password`` needs the keyring package: a usage error before connecting."""
    if _keyring() is None:
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            "--save-password needs the keyring package, which is not installed",
            "Install it with: pip install 'jet-trio[keyring]' (or pipx inject jet-trio keyring).",
        )


def keyring_password(jid: JID) -> str | None:
    """The password stored with ``--save-password``, if the keyring package is installed and
    has one; a keyring that cannot be read counts as none (the prompt follows)."""
    if _keyring() is None:
        return None
    import keyring
    import keyring.errors

    try:
        return keyring.get_password(KEYRING_SERVICE, str(jid.bare))
    except keyring.errors.KeyringError as exc:
        log.debug("no password from the keyring: %s", exc)
        return None


def store_password(jid: JID, password: str) -> None:
    """Keep the password in the system keyring (``--save-password``, after a good login)."""
    import keyring
    import keyring.errors

    try:
        keyring.set_password(KEYRING_SERVICE, str(jid.bare), password)
    except keyring.errors.KeyringError as exc:
        raise CLIError(
            ExitCode.FILE,
            "keyring",
            f"the password could not be stored in the system keyring: {exc}",
            "Logged in, but the password was not saved; check that a keyring service runs "
            "(or use --password-file).",
        ) from None
    print(f"jet-trio: password for {jid.bare} saved in the system keyring", file=sys.stderr)


def forget_password(jid: JID) -> bool:
    """Remove the stored password; ``False`` if there was none."""
    require_keyring()
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(KEYRING_SERVICE, str(jid.bare))
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise CLIError(
            ExitCode.FILE, "keyring", f"cannot use the system keyring: {exc}", ""
        ) from None
    return True


def login_failure(jid: JID, exc: AuthenticationError) -> CLIError:
    """The error for a refused login, in our words: the server's own text (a SCRAM message,
    a localised sentence) is left to --debug."""
    log.debug("login refused: %s", exc)
    hint = (
        "Check the account (--account) and the password (--password-file, "
        f"{PASSWORD_ENV}, the keyring or the prompt)."
    )
    if isinstance(exc, NoCommonMechanism | DowngradeDetected):
        return CLIError(ExitCode.AUTH, "authentication", str(exc), "")
    if exc.condition == "not-authorized":
        message = f"login as {jid.bare} failed: wrong password or unknown account"
    elif exc.condition is not None:
        message = f"login as {jid.bare} failed: the server refused it ({exc.condition})"
    else:
        message = f"login as {jid.bare} failed: the server's answer did not verify"
        hint = "The server could not prove it knows the password; check --server."
    return CLIError(ExitCode.AUTH, "authentication", message, hint)


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
    opts: AccountOptions, jid: JID, *, presence: bool = True, password: str | None = None
) -> AsyncIterator[Client]:
    """Log in with the account options (the password is read first, before connecting).

    On a terminal, a password from the prompt or the keyring that the server refuses is asked
    again (three entries in all). After the login the account's data directory is created, and
    with ``--save-password`` the password is stored in the system keyring.

    With ``presence=False`` the caller sends the initial presence itself, once it is ready to
    be contacted (plugins started, file transfer features registered). ``password``: use this
    one (a new account's) instead of the usual sources.
    """
    if opts.save_password:
        require_keyring()
    if password is not None:  # chosen by this run (account register)
        source = PasswordSource.CHOSEN
    else:
        password, source = opts.password_and_source(jid)
    host, port = parse_server(opts.server) if opts.server else (None, None)
    ca_file = str(opts.ca_file) if opts.ca_file is not None else None
    if ca_file is not None and not await trio.Path(ca_file).is_file():
        raise CLIError(
            ExitCode.FILE,
            "file",
            f"the CA file {ca_file} does not exist",
            "Pass the PEM file of the server's certificate authority to --ca-file.",
        )
    prompts = 1 if source is PasswordSource.PROMPT else 0
    log.info("logging in as %s (password from %s)", jid, source.value)
    async with AsyncExitStack() as stack:
        while True:
            try:
                client = await stack.enter_async_context(
                    open_client(
                        jid,
                        password,
                        host=host,
                        port=port,
                        security="direct" if opts.direct_tls else "starttls",
                        ca_file=ca_file,
                        presence=presence,
                        allow_plain=opts.allow_plain,
                        login_timeout=opts.login_timeout,
                    )
                )
                break
            except AuthenticationError as exc:
                retry = (
                    exc.condition == "not-authorized"
                    and source in (PasswordSource.PROMPT, PasswordSource.KEYRING)
                    and on_terminal()
                    and prompts < PROMPT_TRIES
                )
                if not retry:
                    raise login_failure(jid, exc) from None
                if source is PasswordSource.KEYRING:
                    said = "the password stored in the system keyring was refused; type it"
                else:
                    said = "wrong password or unknown account; try again"
                print(f"jet-trio: {said}", file=sys.stderr)
                password, source = prompt_password(jid, again=True), PasswordSource.PROMPT
                prompts += 1
        log.info("data directory of %s: %s", jid.bare, opts.make_data_dir(jid))
        if opts.save_password and source is not PasswordSource.KEYRING:
            store_password(jid, password)
        yield client


def new_password(opts: AccountOptions, jid: JID) -> str:
    """The password of an account to create: from the usual sources but the keyring, or typed
    twice on the terminal (three tries to type the same twice)."""
    if opts.password_file is not None:
        return opts._password_from_file()
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if not on_terminal():
        raise CLIError(
            ExitCode.USAGE,
            "usage",
            f"no password for the new account {jid.bare}",
            f"Use --password-file FILE, set {PASSWORD_ENV}, or run on a terminal to be asked.",
        )
    for _ in range(PROMPT_TRIES):
        first = prompt_password(jid)
        try:
            import getpass

            second = getpass.getpass(f"The same password again for {jid.bare}: ")
        except EOFError:
            second = ""
        if first == second:
            return first
        print("jet-trio: the two entries differ; type them again", file=sys.stderr)
    raise CLIError(
        ExitCode.USAGE,
        "usage",
        f"no password entered for {jid.bare} (the entries differed)",
        "Type the same password twice.",
    )


async def register(opts: AccountOptions, jid: JID) -> str:
    """Create the account on its server (XEP-0077); returns the password used."""
    from .._xmpp.register import RegistrationError, register_account

    password = new_password(opts, jid)
    host, port = parse_server(opts.server) if opts.server else (None, None)
    ca_file = str(opts.ca_file) if opts.ca_file is not None else None
    try:
        await register_account(
            jid,
            password,
            host=host,
            port=port,
            security="direct" if opts.direct_tls else "starttls",
            ca_file=ca_file,
            login_timeout=opts.login_timeout,
        )
    except RegistrationError as exc:
        hint = {
            "conflict": "Choose another name, or log in to it if it is yours.",
            "not-acceptable": "Choose another name or a stronger password.",
            "bad-request": "Choose another name or a stronger password.",
        }.get(exc.condition or "", "Create the account on the server's web page or ask its admin.")
        raise CLIError(ExitCode.AUTH, "registration", str(exc), hint) from None
    return password
