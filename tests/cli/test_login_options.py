"""Login options of the command line: --login-timeout against a silent server, the warning for a
password file others can read."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.cli._run import arun
from tests.cli.conftest import LocalServer


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts and then says nothing, ever."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_silent_server_ends_in_bounded_time_naming_server_and_stage(
    tmp_path: Path, local_server: LocalServer, silent_port: int
) -> None:
    env = local_server.env("alice") | {"JET_TRIO_SERVER": f"127.0.0.1:{silent_port}"}
    started = time.monotonic()
    ran = await arun(["plugins", "--login-timeout", "3", "--json"], tmp_path, env, limit=60)
    elapsed = time.monotonic() - started
    assert ran.returncode == 3, ran.stderr
    error = ran.one_json()
    assert error["reason"] == "connection"
    assert f"127.0.0.1:{silent_port}" in error["message"]
    assert "stream header" in error["message"]
    assert elapsed < 3 + 20  # the bound plus the start of a Python process on a loaded machine


async def test_password_file_readable_by_others_gets_a_warning(
    tmp_path: Path, local_server: LocalServer
) -> None:
    env = local_server.env("alice")
    password_file = tmp_path / "pw"
    password_file.write_text(env.pop("JET_TRIO_PASSWORD") + "\n")
    password_file.chmod(0o644)
    ran = await arun(["plugins", "--password-file", str(password_file), "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    assert "can be read or changed by other users" in ran.stderr
    assert "chmod 600" in ran.stderr
    password_file.chmod(0o600)
    ran = await arun(["plugins", "--password-file", str(password_file), "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    assert "other users" not in ran.stderr
