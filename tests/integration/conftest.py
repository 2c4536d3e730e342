"""Fixtures that run real XMPP servers (private Prosody instances on 127.0.0.1).

Fixtures:

``prosody`` (session)
    :class:`ServerInfo` of one shared Prosody with accounts alice, bob, carol (mutual rosters).
``prosody_tuned`` (session)
    The same with LAB.md's tuned ``network_settings`` (for IBB throughput).
``prosody_factory`` (function)
    A :class:`ProsodyFactory`: ``server = prosody_factory()`` starts a fresh private instance
    (``tuned_network=``, ``users=``, ``start=False`` accepted); ``server.info`` is its
    :class:`ServerInfo`, ``server.kill()`` crashes it, ``server.stop()`` / ``server.start()``
    stop and restart it on the same ports. All are stopped after the test.
``xmpp_ca`` (session)
    The ``trustme.CA`` that issued every test server's certificate.

If Prosody is not installed these fixtures skip, except with ``CI=true``, where they fail.
When a test using them fails, the server log lines written during the test are added to the
report (section "prosody log"; the last ``JET_TRIO_SERVER_LOG_LINES`` lines, default 300).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import trustme

from ._servers import (
    PrivateProsody,
    ProsodyFactory,
    ServerInfo,
    ServerUnavailable,
    find_prosody,
    missing_server,
)

__all__ = ["PrivateProsody", "ProsodyFactory", "ServerInfo"]

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


@pytest.fixture
def prosody_factory(tmp_path: Path, xmpp_ca: trustme.CA) -> Iterator[ProsodyFactory]:
    _require_prosody()
    factory = ProsodyFactory(tmp_path, xmpp_ca)
    try:
        yield factory
    finally:
        factory.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is marked ``integration``."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.integration)


# -- server log in the failure report --------------------------------------------------------


def _log_paths(item: pytest.Item) -> list[Path]:
    paths: list[Path] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ServerInfo):
            paths.append(Path(value.log_path))
        elif isinstance(value, PrivateProsody):
            paths.append(value.log_path)
        elif isinstance(value, ProsodyFactory):
            paths.extend(server.log_path for server in value)
    return list(dict.fromkeys(paths))


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
        for path in _log_paths(item):
            try:
                with path.open("rb") as f:
                    f.seek(offsets.get(str(path), 0))
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            lines = text.splitlines()
            cut = f"[... {len(lines) - limit} earlier lines ...]\n" if len(lines) > limit else ""
            report.sections.append(
                (f"prosody log {path} ({report.when})", cut + "\n".join(lines[-limit:]))
            )
    return report
