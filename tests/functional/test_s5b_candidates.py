"""S5B candidate exchange between two services: a peer reporting a candidate we never offered,
and the deprecated ``direct_host`` alias."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

import jet_trio
from jet_trio import TransportFailed
from jet_trio._transfer import transports as transfer_module
from jet_trio._transports.s5b import Candidate, connect_any

from .conftest import Net, make_file, run_transfer


async def test_peer_using_a_candidate_we_never_offered(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver reports candidate-used for a cid the sender never offered: the sender ends
    the session with TransportFailed (failed-transport), nothing waits without bound, and
    nothing is stored under the target name."""
    src = make_file(tmp_path, 100_000)
    dest = dest_dir / "never.bin"
    async with net.pair() as (fa, fb):
        real = connect_any

        async def lying_connect_any(
            candidates: Sequence[Candidate], dst: str
        ) -> tuple[Candidate, trio.SocketStream]:
            cand, stream = await real(candidates, dst)
            if cand.jid == fa.client.jid:  # bob connecting to alice's candidates: lie
                cand = dataclasses.replace(cand, cid="never-offered")
            return cand, stream

        monkeypatch.setattr(transfer_module, "connect_any", lying_connect_any)
        out = await run_transfer(fa, fb, src, dest, deadline=10, encrypt=None)
    sent = out.send.raised(TransportFailed)
    assert "never offered" in str(sent) and sent.reason == "failed-transport"
    assert not dest.exists()


async def test_direct_host_is_a_deprecated_alias(net: Net) -> None:
    """``direct_host`` still works but warns (raised here: the tests turn warnings into errors;
    ``pytest.warns`` is avoided because it makes other tests' leaked sockets report at exit)."""
    async with net.client("alice", "dep") as a:
        with pytest.raises(DeprecationWarning, match="direct_addresses"):
            async with jet_trio.open_file_transfer(a, direct_host="127.0.0.1"):
                pass
