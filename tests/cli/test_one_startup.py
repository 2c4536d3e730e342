"""Every command that logs in starts up through the one helper, ``sessions.open_account``:
``demo`` (two accounts in one process) and ``plugins --account`` too."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from jet_trio._cli import demo, main, sessions, startup
from jet_trio._cli.account import AccountOptions
from jet_trio._cli.output import Output

from .conftest import LocalServer


def spy(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[str, dict[str, Any]]]:
    """Record each ``open_account`` call made through ``module``'s name for it."""
    calls: list[tuple[str, dict[str, Any]]] = []
    real = sessions.open_account

    def recording(
        out: Output, account: AccountOptions, **kw: Any
    ) -> AbstractAsyncContextManager[sessions.Account]:
        calls.append((str(account.account), kw))
        return real(out, account, **kw)

    monkeypatch.setattr(module, "open_account", recording)
    return calls


def alice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, local_server: LocalServer
) -> dict[str, Any]:
    """The account options of alice on the test server (her password in the environment)."""
    monkeypatch.setenv("JET_TRIO_PASSWORD", local_server.accounts["alice"])
    server = local_server.server
    return {
        "account": "alice@localhost",
        "password_file": None,
        "server": f"{server.host}:{server.port}",
        "ca_file": local_server.ca_file,
        "direct_tls": False,
        "data_dir": tmp_path / "data",
    }


@pytest.fixture
def quiet_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    yield


async def test_demo_logs_both_accounts_in_through_open_account(
    monkeypatch: pytest.MonkeyPatch, quiet_config: None
) -> None:
    calls = spy(monkeypatch, demo)
    opts = demo.DemoOptions(
        size=4096, file=None, envelope="stub", transport="ibb", output_dir=None, timeout=60
    )
    assert await demo.run_demo(Output(json_mode=True, debug=False), opts) == 0
    assert [jid for jid, _ in calls] == ["alice@localhost/demo", "bob@localhost/demo"]
    # The plugins' load errors are reported once, not once per account of the process.
    assert [kw.get("report_errors", True) for _, kw in calls] == [True, False]


async def test_plugins_account_logs_in_through_open_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, local_server: LocalServer, quiet_config: None
) -> None:
    calls = spy(monkeypatch, sessions)
    body = main.plugins.callback.__wrapped__(  # type: ignore[union-attr]
        **alice(monkeypatch, tmp_path, local_server),
        login_timeout=30.0,
        no_plain=False,
        save_password=False,
    )
    assert await body(Output(json_mode=True, debug=False)) == 0
    assert calls == [
        ("alice@localhost", {"allow_stub": True, "file_transfer": False, "report_errors": False})
    ]


@pytest.mark.parametrize("file_transfer", [True, False])
async def test_the_process_start_up_ends_when_open_account_is_ready(
    tmp_path: Path,
    local_server: LocalServer,
    quiet_config: None,
    monkeypatch: pytest.MonkeyPatch,
    file_transfer: bool,
) -> None:
    """The console script holds off the older generations' collections (``startup.pause``);
    the end of ``open_account``'s work is the end of the start-up: what it made is frozen and
    the thresholds are back, in both of its ways (with or without the file transfer service)."""
    account = AccountOptions(**alice(monkeypatch, tmp_path, local_server))
    thresholds = gc.get_threshold()
    startup.pause()
    try:
        assert gc.get_threshold() != thresholds
        async with sessions.open_account(
            Output(json_mode=True, debug=False),
            account,
            envelope="stub",
            allow_stub=True,
            file_transfer=file_transfer,
        ):
            assert gc.get_threshold() == thresholds
            assert gc.get_freeze_count() > 0
    finally:
        startup.resume()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
