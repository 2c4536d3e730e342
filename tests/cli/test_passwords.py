"""Passwords at the terminal: empty entries and wrong passwords are asked again (three entries,
as ssh), the error is ours (not the server's SCRAM text), no data directory for a failed login,
and ``--save-password`` keeps the password in the system keyring (a file backend here, never
the keyring of the user running the tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.cli._pty import Terminal
from tests.cli._run import arun, run
from tests.cli.conftest import LocalServer
from tests.integration._servers import ServerInfo

PROMPT = "Password for alice@localhost: "
REPO = Path(__file__).resolve().parents[2]


def _no_password(server: LocalServer) -> dict[str, str]:
    env = server.env("alice")
    del env["JET_TRIO_PASSWORD"]
    return env


def _keyring_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHON_KEYRING_BACKEND": "tests.cli._keyring_backend.FileKeyring",
        "JET_TRIO_TEST_KEYRING": str(tmp_path / "keyring.json"),
        "PYTHONPATH": str(REPO),
    }


async def _on_terminal(
    args: list[str], tmp_path: Path, env: dict[str, str], answers: list[str]
) -> tuple[int, str, int]:
    """Run on a pty, answering each password prompt in turn; (exit status, terminal text,
    number of prompts)."""

    def drive() -> tuple[int, str, int]:
        term = Terminal(args, tmp_path, env)
        try:
            for answer in answers:
                term.expect(PROMPT, timeout=30)
                term.type(answer)
            code = term.finish()
        finally:
            term.close()
        return code, term.text, term.text.count(PROMPT)

    return await trio.to_thread.run_sync(drive)


async def test_empty_entry_is_asked_again(tmp_path: Path, local_server: LocalServer) -> None:
    code, text, prompts = await _on_terminal(
        ["plugins"], tmp_path, _no_password(local_server), ["", "alice-pw"]
    )
    assert code == 0, text
    assert prompts == 2
    assert "the password is empty" in text
    assert "run on a terminal" not in text


async def test_three_empty_entries_give_up_clearly(
    tmp_path: Path, local_server: LocalServer
) -> None:
    code, text, prompts = await _on_terminal(
        ["plugins"], tmp_path, _no_password(local_server), ["", "", ""]
    )
    assert code == 2, text
    assert prompts == 3
    assert "no password entered for alice@localhost" in text
    assert "run on a terminal" not in text


async def test_wrong_password_is_asked_again(tmp_path: Path, local_server: LocalServer) -> None:
    code, text, prompts = await _on_terminal(
        ["plugins"], tmp_path, _no_password(local_server), ["wrong-1", "alice-pw"]
    )
    assert code == 0, text
    assert prompts == 2
    assert "wrong password or unknown account; try again" in text
    assert "wrong-1" not in text and "alice-pw" not in text  # not echoed


async def test_three_wrong_passwords_fail_without_a_data_dir(
    tmp_path: Path, local_server: LocalServer
) -> None:
    data = tmp_path / "data"
    code, text, prompts = await _on_terminal(
        ["plugins", "--data-dir", str(data)],
        tmp_path,
        _no_password(local_server),
        ["wrong-1", "wrong-2", "wrong-3"],
    )
    assert code == 5, text
    assert prompts == 3
    assert "login as alice@localhost failed: wrong password or unknown account" in text
    assert not (data / "alice@localhost").exists()


async def test_no_data_dir_for_a_failed_login(tmp_path: Path, local_server: LocalServer) -> None:
    data = tmp_path / "data"
    env = local_server.env("alice") | {"JET_TRIO_PASSWORD": "wrong"}
    ran = await arun(["plugins", "--data-dir", str(data), "--json"], tmp_path, env)
    assert ran.returncode == 5, ran.stderr
    assert ran.one_json()["reason"] == "authentication"
    assert not data.exists()
    env = local_server.env("alice")
    ran = await arun(["plugins", "--data-dir", str(data), "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    assert (data / "alice@localhost").is_dir()
    assert (data / "alice@localhost").stat().st_mode & 0o777 == 0o700


async def test_unusable_data_dir_is_reported_before_login(
    tmp_path: Path, local_server: LocalServer
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = local_server.env("alice") | {"JET_TRIO_PASSWORD": "wrong"}
    data = blocker / "data"
    ran = await arun(["plugins", "--data-dir", str(data), "--json"], tmp_path, env)
    # A file-system failure (10), found before the login that would have failed (5).
    assert ran.returncode == 10, ran.stderr
    assert ran.one_json()["message"] == (
        f"cannot use the data directory {data / 'alice@localhost'}: {blocker} is a file"
    )


@pytest.mark.integration
def test_prosody_refusal_is_said_without_the_server_text(
    prosody: ServerInfo, tmp_path: Path
) -> None:
    env = {
        "JET_TRIO_ACCOUNT": prosody.jid("alice"),
        "JET_TRIO_PASSWORD": "wrong",
        "JET_TRIO_SERVER": f"{prosody.host}:{prosody.port}",
        "JET_TRIO_CA_FILE": prosody.ca_file,
    }
    ran = run(["plugins", "--json"], tmp_path, env)
    assert ran.returncode == 5, ran.stderr
    error = ran.one_json()
    assert error["message"] == (
        f"login as {prosody.jid('alice')} failed: wrong password or unknown account"
    )
    # Prosody explains a failed SCRAM proof in its own words; that is not for the user.
    assert ":" not in ran.stderr.split("failed:", 1)[1].split(".")[0]
    assert "match" not in ran.stderr and "calculated" not in ran.stderr


async def test_save_password_in_keyring_and_use_it(
    tmp_path: Path, local_server: LocalServer
) -> None:
    pytest.importorskip("keyring")
    keyring_file = tmp_path / "keyring.json"
    env = _no_password(local_server) | _keyring_env(tmp_path)
    # Without --save-password nothing is stored.
    code, text, _ = await _on_terminal(["plugins"], tmp_path, env, ["alice-pw"])
    assert code == 0, text
    assert not keyring_file.exists()
    # A wrong password is not stored: the keyring gets the one the server accepted.
    code, text, prompts = await _on_terminal(
        ["plugins", "--save-password"], tmp_path, env, ["wrong", "alice-pw"]
    )
    assert code == 0, text
    assert prompts == 2
    assert "saved in the system keyring" in text
    assert json.loads(keyring_file.read_text()) == {"jet-trio\0alice@localhost": "alice-pw"}
    # Later runs take it from there, without a terminal.
    ran = await arun(["plugins", "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    # jet-trio account forget-password removes it.
    ran = await arun(["account", "forget-password"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(keyring_file.read_text()) == {}
    ran = await arun(["plugins", "--json"], tmp_path, env)
    assert ran.returncode == 2, ran.stderr
    assert "no password for alice@localhost" in ran.stderr


async def test_wrong_password_in_keyring_is_asked_on_a_terminal(
    tmp_path: Path, local_server: LocalServer
) -> None:
    pytest.importorskip("keyring")
    (tmp_path / "keyring.json").write_text(json.dumps({"jet-trio\0alice@localhost": "old"}))
    env = _no_password(local_server) | _keyring_env(tmp_path)
    code, text, prompts = await _on_terminal(["plugins"], tmp_path, env, ["alice-pw"])
    assert code == 0, text
    assert prompts == 1
    assert "the password stored in the system keyring was refused" in text
    # Without a terminal it is a login failure, not a prompt.
    ran = await arun(["plugins", "--json"], tmp_path, env)
    assert ran.returncode == 5, ran.stderr
