"""A plugin's bug in ``EnvelopeMethod.start()`` unloads that method only."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from jet_trio import JetError
from jet_trio._transfer.service import open_file_transfer
from jet_trio.plugin import EnvelopeError, EnvelopeMethod, PluginConfig, hookimpl

from .conftest import TEST_ENVELOPE_FEATURE, Net, TestEnvelope, make_file, run_transfer


class _StartFails(TestEnvelope):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def start(self) -> None:
        raise self.error


class _Plugin:
    def __init__(self, env: EnvelopeMethod) -> None:
        self.env = env

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return [self.env]


async def test_start_bug_unloads_that_method_only(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    broken = _StartFails(ValueError("bad key file"))
    async with (
        net.client("alice", "send") as a,
        net.client("bob", "recv") as b,
        open_file_transfer(a, extra_plugins=[_Plugin(broken)], allow_stub_envelope=True) as fa,
        open_file_transfer(b, allow_stub_envelope=True) as fb,
    ):
        errors = [str(e) for e in fa.plugins.load_errors]
        assert len(errors) == 1, errors
        assert (
            "skipped: envelope 'urn:example:jet-trio:test-envelope': "
            "start() raised ValueError: bad key file"
        ) in errors[0]
        assert [e.namespace for e in fa.plugins.envelopes] == ["urn:xmpp:encryption:stub:0"]
        assert TEST_ENVELOPE_FEATURE not in fa.features
        with trio.fail_after(5):
            await a.wait_available(b.jid)
        src = make_file(tmp_path, 10_000)
        out = await run_transfer(fa, fb, src, dest_dir, encrypt="urn:xmpp:encryption:stub:0")
        assert out.send.error is None and out.recv.error is None, out
        assert (dest_dir / src.name).read_bytes() == src.read_bytes()


async def test_start_error_explained_by_the_plugin_propagates(net: Net) -> None:
    broken = _StartFails(EnvelopeError("wrong passphrase for the key file"))
    async with net.client("alice", "send") as a:
        with pytest.raises(JetError, match="wrong passphrase"):
            async with open_file_transfer(a, extra_plugins=[_Plugin(broken)]):
                pass  # pragma: no cover
