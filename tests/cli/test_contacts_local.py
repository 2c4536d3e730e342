"""jet-trio contact list against the in-process server (every account is a mutual contact)."""

from __future__ import annotations

from pathlib import Path

from tests.cli._run import arun
from tests.cli.conftest import LocalServer


async def test_contact_list_in_process(tmp_path: Path, local_server: LocalServer) -> None:
    ran = await arun(["contact", "list", "--json"], tmp_path, local_server.env("alice"))
    assert ran.returncode == 0, ran.stderr
    listed = ran.one_json()
    assert [c["jid"] for c in listed["contacts"]] == ["bob@localhost", "carol@localhost"]
    assert all(c["subscription"] == "both" for c in listed["contacts"])
    ran = await arun(["contact", "list"], tmp_path, local_server.env("alice"))
    assert "bob@localhost: mutual: you see each other online" in ran.stdout


async def test_contact_add_refuses_a_full_jid_and_oneself(
    tmp_path: Path, local_server: LocalServer
) -> None:
    env = local_server.env("alice")
    ran = await arun(["contact", "add", "bob@localhost/phone"], tmp_path, env)
    assert ran.returncode == 2
    assert "no /resource" in ran.stderr
    ran = await arun(["contact", "add", "alice@localhost"], tmp_path, env)
    assert ran.returncode == 2
    assert "your own account" in ran.stderr
