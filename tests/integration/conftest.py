"""Fixtures that run real XMPP servers (private Prosody and ejabberd instances on 127.0.0.1).

Fixtures:

``prosody`` (session)
    :class:`ServerInfo` of one shared Prosody with accounts alice, bob, carol (mutual rosters).
``prosody_tuned`` (session)
    The same with LAB.md's tuned ``network_settings`` (for IBB throughput).
``prosody_factory`` (function)
    A :class:`ProsodyFactory`: ``server = prosody_factory()`` starts a fresh private instance
    (``tuned_network=``, ``stanza_debug=``, ``users=``, ``start=False`` accepted);
    ``server.info`` is its :class:`ServerInfo`, ``server.kill()`` crashes it,
    ``server.stop()`` / ``server.start()`` stop and restart it on the same ports. All are
    stopped after the test.
``ejabberd`` (session)
    The same accounts and rosters on a private ejabberd 23.01 (run as the ``ejabberd`` user;
    its proxy65 is much faster than Prosody's).
``xmpp_server`` (session, parametrized)
    ``prosody`` then ``ejabberd``: a test using it runs against each.
``xmpp_ca`` (session)
    The ``trustme.CA`` that issued every test server's certificate.

If a server is not installed its fixtures skip, except with ``CI=true``, where they fail.
When a test using them fails, the server log lines written during the test are added to the
report (section "server log"; the last ``JET_TRIO_SERVER_LOG_LINES`` lines, default 300).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import trustme

from ._servers import (
    PrivateEjabberd,
    PrivateProsody,
    PrivateServer,
    ProsodyFactory,
    ServerInfo,
    ServerUnavailable,
    find_ejabberd,
    find_prosody,
    missing_server,
)

__all__ = ["PrivateEjabberd", "PrivateProsody", "ProsodyFactory", "ServerInfo"]

_LOG_OFFSETS = pytest.StashKey[dict[str, int]]()


def _require_prosody() -> None:
    if find_prosody() is None:
        missing_server("prosody is not installed (apt-get install prosody lua-unbound)")


@pytest.fixture(scope="session")
def xmpp_ca() -> trustme.CA:
    return trustme.CA()


def _session_server(
    tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA, *, tuned: bool
) -> Iterator[ServerInfo]:
    _require_prosody()
    base = tmp_path_factory.mktemp("prosody-tuned" if tuned else "prosody")
    server = PrivateProsody(base, ca, tuned_network=tuned)
    try:
        info = server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.fail(f"could not start Prosody: {exc}", pytrace=False)
    try:
        yield info
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory, xmpp_ca: trustme.CA) -> Iterator[ServerInfo]:
    yield from _session_server(tmp_path_factory, xmpp_ca, tuned=False)


@pytest.fixture(scope="session")
def prosody_tuned(
    tmp_path_factory: pytest.TempPathFactory, xmpp_ca: trustme.CA
) -> Iterator[ServerInfo]:
    yield from _session_server(tmp_path_factory, xmpp_ca, tuned=True)


@pytest.fixture(scope="session")
def ejabberd(xmpp_ca: trustme.CA) -> Iterator[ServerInfo]:
    if find_ejabberd() is None:
        missing_server("ejabberd is not installed (apt-get install ejabberd)")
    try:
        server = PrivateEjabberd(xmpp_ca)
    except ServerUnavailable as exc:
        missing_server(str(exc))
    try:
        info = server.start()
    except ServerUnavailable as exc:
        server.close()
        pytest.fail(f"could not start ejabberd: {exc}", pytrace=False)
    try:
        yield info
    finally:
        server.close()


@pytest.fixture(scope="session", params=["prosody", "ejabberd"])
def xmpp_server(request: pytest.FixtureRequest) -> ServerInfo:
    """Each real server in turn: tests using this run once per server kind."""
    info = request.getfixturevalue(request.param)
    assert isinstance(info, ServerInfo)
    return info


@pytest.fixture
def prosody_factory(tmp_path: Path, xmpp_ca: trustme.CA) -> Iterator[ProsodyFactory]:
    _require_prosody()
    factory = ProsodyFactory(tmp_path, xmpp_ca)
    try:
        yield factory
    finally:
        factory.close()


def pytest_configure(config: pytest.Config) -> None:
    """Turn SIGTERM (a CI time-out, ``timeout(1)``) into KeyboardInterrupt.

    pytest then still tears the fixtures down, which stops the servers; with the default
    SIGTERM action they would outlive the test run.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is marked ``integration``."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.integration)


# -- server log in the failure report --------------------------------------------------------


def _log_paths(item: pytest.Item) -> dict[Path, str]:
    """Log files of the servers a test used, with the server kind."""
    paths: dict[Path, str] = {}
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ServerInfo):
            paths[Path(value.log_path)] = value.kind
        elif isinstance(value, PrivateServer):
            paths[value.log_path] = value.kind
        elif isinstance(value, ProsodyFactory):
            paths.update((server.log_path, server.kind) for server in value)
    return paths


#: ejabberd (Erlang's logger) writes its log file with a delay of up to about 2 s.
_EJABBERD_LOG_DELAY = 2.5


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "setup" and not report.failed:
        item.stash[_LOG_OFFSETS] = {str(p): _size(p) for p in _log_paths(item)}
    elif report.failed:
        offsets = item.stash.get(_LOG_OFFSETS, {})
        limit = int(os.environ.get("JET_TRIO_SERVER_LOG_LINES", "300"))
        paths = _log_paths(item)
        if "ejabberd" in paths.values():
            time.sleep(_EJABBERD_LOG_DELAY)
        for path in paths:
            try:
                with path.open("rb") as f:
                    f.seek(offsets.get(str(path), 0))
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            lines = text.splitlines()
            cut = f"[... {len(lines) - limit} earlier lines ...]\n" if len(lines) > limit else ""
            report.sections.append(
                (f"server log {path} ({report.when})", cut + "\n".join(lines[-limit:]))
            )
    return report
