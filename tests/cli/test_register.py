"""jet-trio account register (XEP-0077): on a Prosody that allows registration, on one that
does not, and with a name that is taken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.cli._pty import Terminal
from tests.cli._run import arun, run
from tests.cli.conftest import LocalServer
from tests.integration._servers import PrivateProsody, ServerInfo, find_prosody, missing_server


class RegisteringProsody(PrivateProsody):
    """A private Prosody that allows in-band registration (mod_register)."""

    def _write_config(self) -> None:
        super()._write_config()
        config = self.config_path.read_text(encoding="utf-8")
        modules = "modules_enabled = { "
        assert modules in config
        config = config.replace(modules, modules + '"register"; ', 1)
        self.config_path.write_text(config, encoding="utf-8")


@pytest.fixture
def open_server(tmp_path: Path, xmpp_ca: trustme.CA) -> Iterator[PrivateProsody]:
    if find_prosody() is None:
        missing_server("prosody is not installed (apt-get install prosody lua-unbound)")
    server = RegisteringProsody(
        tmp_path / "prosody-register", xmpp_ca, extra_config="allow_registration = true\n"
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _env(info: ServerInfo, jid: str, password: str) -> dict[str, str]:
    return {
        "JET_TRIO_ACCOUNT": jid,
        "JET_TRIO_PASSWORD": password,
        "JET_TRIO_SERVER": f"{info.host}:{info.port}",
        "JET_TRIO_CA_FILE": info.ca_file,
    }


@pytest.mark.integration
def test_register_then_log_in(open_server: PrivateProsody, tmp_path: Path) -> None:
    info = open_server.info
    env = _env(info, "dave@localhost", "dave-secret-pw")
    ran = run(["account", "register", "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    result = ran.one_json()
    assert result["registered"] == "dave@localhost"
    assert result["logged_in"].startswith("dave@localhost/")
    # The account exists: a later command logs in with it.
    ran = run(["contact", "list", "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    # A name that is taken.
    ran = run(["account", "register", "--json"], tmp_path, _env(info, "alice@localhost", "x"))
    assert ran.returncode == 5, ran.stderr
    error = ran.one_json()
    assert (error["reason"], error["message"]) == (
        "registration",
        "the account alice@localhost already exists",
    )


@pytest.mark.integration
def test_register_where_not_allowed(prosody: ServerInfo, tmp_path: Path) -> None:
    ran = run(["account", "register", "--json"], tmp_path, _env(prosody, "erin@localhost", "pw"))
    assert ran.returncode == 5, ran.stderr
    error = ran.one_json()
    assert error["reason"] == "registration"
    assert "does not offer in-band registration" in error["message"]
    assert not (tmp_path / "xdg" / "jet-trio" / "erin@localhost").exists()


async def test_register_on_the_in_process_server(tmp_path: Path, local_server: LocalServer) -> None:
    env = local_server.env("alice") | {"JET_TRIO_ACCOUNT": "erin@localhost"}
    ran = await arun(["account", "register", "--json"], tmp_path, env)
    assert ran.returncode == 5, ran.stderr
    assert "does not offer in-band registration" in ran.one_json()["message"]


@pytest.mark.integration
def test_register_on_a_terminal_asks_twice(open_server: PrivateProsody, tmp_path: Path) -> None:
    info = open_server.info
    env = _env(info, "frank@localhost", "")
    del env["JET_TRIO_PASSWORD"]
    term = Terminal(["account", "register"], tmp_path, env)
    try:
        first, again = "Password for frank@localhost: ", "again for frank@localhost: "
        for prompt, answer in (
            (first, "first-try"),
            (again, "other"),
            (first, "frank-pw-1"),
            (again, "frank-pw-1"),
        ):
            term.expect(prompt, timeout=30)
            term.type(answer)
        code = term.finish()
    finally:
        term.close()
    assert code == 0, term.text
    assert "the two entries differ" in term.text
    assert "created the account frank@localhost" in term.text
    ran = run(["contact", "list"], tmp_path, _env(info, "frank@localhost", "frank-pw-1"))
    assert ran.returncode == 0, ran.stderr
