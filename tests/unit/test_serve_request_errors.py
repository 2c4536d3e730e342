"""A file request that fails in several tasks at once must not end the transfer service."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from jet_trio import TransferError
from jet_trio._jingle.message import JingleLocalError
from jet_trio._transfer.service import FileTransfer


class _Stop(Exception):
    pass


async def serve(raised: BaseException) -> None:
    async def failing(session: Any, offer: Any, cleanup: Any) -> None:
        raise raised

    async def end(session: Any, exc: BaseException) -> None:
        pass

    service: Any = SimpleNamespace(
        _serve_request_in=failing, _end_after_error=end, _forget=lambda s: None
    )
    service._session_scope = lambda session: FileTransfer._session_scope(service, session)
    await FileTransfer._serve_request(service, SimpleNamespace(peer="peer@x/r"), None)  # type: ignore[arg-type]


async def test_group_of_typed_errors_is_contained() -> None:
    await serve(
        ExceptionGroup(
            "both tasks", [TransferError("peer aborted"), JingleLocalError("session ENDED")]
        )
    )
    await serve(OSError("disk"))


async def test_anything_else_still_propagates() -> None:
    with pytest.raises(ExceptionGroup):
        await serve(ExceptionGroup("bug", [TransferError("x"), _Stop()]))
    with pytest.raises(_Stop):
        await serve(_Stop())
