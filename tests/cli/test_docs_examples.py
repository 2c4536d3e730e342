"""The examples of the documentation (docs/examples) run and do what the guides say."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
import trio

import jet_trio
from jet_trio._cli.errors import ExitCode
from jet_trio.plugin import PluginConfig, PluginManager

from ._run import run
from .conftest import LocalServer

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_local_transfer_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "local_transfer.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hash verified: True" in proc.stdout
    assert "alice sent 100000 bytes" in proc.stdout


@pytest.mark.parametrize("name", ["send_file", "receive_files"])
def test_examples_compile(name: str) -> None:
    py_compile.compile(str(EXAMPLES / f"{name}.py"), doraise=True)


async def test_psk_envelope_plugin(local_server: LocalServer, tmp_path: Path) -> None:
    psk = load("psk_envelope")
    key = os.urandom(32).hex()
    src = tmp_path / "secret.txt"
    src.write_bytes(b"attack at dawn\n" * 1000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    server = local_server.server
    login = {"host": server.host, "port": server.port, "ca_file": str(local_server.ca_file)}

    def manager(me: jet_trio.JID, peer: str, peer_key: str) -> PluginManager:
        config = PluginConfig(account=me, options={psk.NAME: {peer: peer_key}})
        return PluginManager(config, plugins=[psk])

    async with (
        jet_trio.open_client("alice@localhost/a", "alice-pw", **login) as alice,  # type: ignore[arg-type]
        jet_trio.open_client("bob@localhost/b", "bob-pw", **login) as bob,  # type: ignore[arg-type]
        jet_trio.open_client("carol@localhost/c", "carol-pw", **login) as carol,  # type: ignore[arg-type]
        jet_trio.open_file_transfer(
            alice, plugins=manager(alice.jid, "bob@localhost", key)
        ) as alice_ft,
        jet_trio.open_file_transfer(
            bob, plugins=manager(bob.jid, "alice@localhost", key)
        ) as bob_ft,
        jet_trio.open_file_transfer(
            carol, plugins=manager(carol.jid, "bob@localhost", os.urandom(32).hex())
        ) as carol_ft,
    ):
        assert psk.NS in [e.namespace for e in alice_ft.plugins.envelopes]
        with trio.fail_after(10):
            await alice.wait_available(bob.jid)
            await carol.wait_available(bob.jid)

        async def receive(expect_ok: bool) -> None:
            offer = await bob_ft.next_offer()
            if expect_ok:
                result = await offer.accept(inbox, overwrite=True)
                assert result.envelope == psk.NS
            else:
                with pytest.raises(jet_trio.EncryptionFailed):
                    await offer.accept(inbox, overwrite=True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, True)
            await alice_ft.send_file(src, bob.jid, encrypt="auto")
        assert (inbox / src.name).read_bytes() == src.read_bytes()

        # bob shares no key with carol: her envelope is refused and nothing is kept.
        (inbox / src.name).unlink()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, False)
            with pytest.raises(jet_trio.TransferError):
                await carol_ft.send_file(src, bob.jid, encrypt=psk.NS)
        assert not (inbox / src.name).exists()


@pytest.mark.skipif(
    importlib.util.find_spec("jet_trio_omemo") is None, reason="jet-trio-omemo is not installed"
)
async def test_send_and_receive_examples(local_server: LocalServer, tmp_path: Path) -> None:
    """send_file.py and receive_files.py transfer a file with OMEMO 2 (the strongest form both
    advertise, the library guide); the receiver keeps a file already there and stores the new
    one under a free name."""
    src = tmp_path / "report.txt"
    src.write_bytes(os.urandom(50_000))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "report.txt").write_bytes(b"an older report")
    data = {"JET_TRIO_DATA_DIR": str(tmp_path / "data")}
    base = {k: v for k, v in os.environ.items() if not k.startswith("JET_TRIO_")}
    receiver = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / "receive_files.py"), str(inbox), "1"],
        env=base | local_server.env("bob") | data,
        stdout=subprocess.PIPE,
    )
    assert receiver.stdout is not None
    seen = b""
    try:
        with trio.fail_after(90):
            while b"waiting for files" not in seen:
                chunk = await receiver.stdout.receive_some()
                assert chunk, "receive_files.py ended before it was ready"
                seen += chunk
            sender = await trio.run_process(
                [sys.executable, str(EXAMPLES / "send_file.py"), str(src), "bob@localhost"],
                env=base | local_server.env("alice") | data,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert sender.returncode == 0, sender.stderr.decode()
            assert b"with urn:xmpp:omemo:2" in sender.stdout
            assert b"urn:xmpp:ciphers:aes-256-gcm-nopadding" in sender.stdout
            while chunk := await receiver.stdout.receive_some():
                seen += chunk
            assert await receiver.wait() == 0
    finally:
        with trio.CancelScope(shield=True):
            receiver.kill()
            await receiver.wait()
            await receiver.stdout.aclose()
    assert b"report.txt exists: storing 'report.txt' under a free name" in seen
    assert b"received" in seen
    assert (inbox / "report (1).txt").read_bytes() == src.read_bytes()
    assert (inbox / "report.txt").read_bytes() == b"an older report"


@pytest.mark.skipif(
    importlib.util.find_spec("jet_trio_omemo") is None, reason="jet-trio-omemo is not installed"
)
async def test_send_example_gives_up_after_its_timeout(
    local_server: LocalServer, tmp_path: Path
) -> None:
    """send_file.py with a 3 s bound, to a recipient that never answers: a TransferTimeout,
    reported, and the recipient's offer is withdrawn (its late accept fails)."""
    from jet_trio_omemo import open_omemo

    src = tmp_path / "report.txt"
    src.write_bytes(os.urandom(10_000))
    server = local_server.server
    base = {k: v for k, v in os.environ.items() if not k.startswith("JET_TRIO_")}
    data = {"JET_TRIO_DATA_DIR": str(tmp_path / "data")}
    async with (
        jet_trio.open_client(
            "bob@localhost/quiet",
            "bob-pw",
            host=server.host,
            port=server.port,
            ca_file=str(local_server.ca_file),
        ) as bob,
        open_omemo(bob, tmp_path / "bob-omemo"),
        jet_trio.open_file_transfer(bob) as ft,
    ):
        await bob.send_presence()
        held: list[jet_trio.IncomingOffer] = []

        async def hold() -> None:
            held.append(await ft.next_offer())  # looked at, never answered

        with trio.fail_after(150):  # two OMEMO set-ups on a loaded machine
            async with trio.open_nursery() as n:
                n.start_soon(hold)
                sender = await trio.run_process(
                    [sys.executable, str(EXAMPLES / "send_file.py"), str(src), str(bob.jid), "3"],
                    env=base | local_server.env("alice") | data,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
                n.cancel_scope.cancel()  # no offer came if the sender failed before
            assert sender.returncode == 1, sender.stderr.decode()
            assert b"no answer" in sender.stderr, sender.stderr.decode()
            assert b"within 3 s" in sender.stderr
            inbox = tmp_path / "inbox"
            inbox.mkdir()
            with pytest.raises(jet_trio.TransferTimeout):
                await held[0].accept(inbox)
    assert list(inbox.iterdir()) == []


async def test_psk_envelope_passes_the_conformance_kit() -> None:
    """The guide's example plugin passes the kit the guide recommends (no replay claim: the
    example says it has no replay protection)."""
    import hashlib

    from jet_trio.plugin import EnvelopeMethod
    from jet_trio.testing import check_envelope_method

    psk = load("psk_envelope")
    users = ("alice", "bob", "carol")

    def factory(config: PluginConfig) -> EnvelopeMethod:
        assert config.account is not None
        me = config.account.bare
        keys = {
            f"{peer}@{me.domain}": hashlib.sha256(
                "|".join(sorted((me.local or "", peer))).encode()
            ).hexdigest()
            for peer in users
            if peer != me.local
        }
        (method,) = psk.jet_register_envelopes(
            config=PluginConfig(account=config.account, options={psk.NAME: keys})
        )
        assert isinstance(method, EnvelopeMethod)
        return method

    await check_envelope_method(factory)


# -- the command-line guide: its examples and its table of exit codes ------------------------

DOCS = EXAMPLES.parent


def _console_commands() -> list[tuple[str, str]]:
    """Every ``jet-trio ...`` command shown in a console block of the docs: (page, line)."""
    found = []
    for page in sorted(DOCS.glob("*.rst")):
        in_console = False
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")  # continued lines
        for line in text.splitlines():
            if line.startswith(".. code-block::"):
                in_console = line.split("::", 1)[1].strip() == "console"
                continue
            if in_console and line and not line.startswith(" "):
                in_console = False
            text = line.strip()
            if in_console and re.match(r"^(\w+)?\$ jet-trio\b", text):
                found.append((page.name, text.split("$ ", 1)[1]))
    return found


def test_every_command_line_in_the_docs_is_valid() -> None:
    """Each command of the docs exists, with the options it is shown with."""
    from jet_trio._cli.main import cli

    commands = _console_commands()
    assert len(commands) > 20
    for page, line in commands:
        words = shlex.split(line.split(" # ")[0], comments=False)[1:]
        cmd: click.Command = cli
        while isinstance(cmd, click.Group) and words and words[0] in cmd.commands:
            cmd = cmd.commands[words.pop(0)]
        assert not isinstance(cmd, click.Group), (page, line)
        known = {"--help", "-h"}
        for param in cmd.params:
            known.update(param.opts if isinstance(param, click.Option) else ())
        for word in words:
            for part in word.strip("[]").split("|"):
                if part.startswith("-") and part != "-":
                    assert part.split("=")[0] in known, (page, line, part)


def test_demo_output_in_the_guide_is_current(tmp_path: Path) -> None:
    page = (DOCS / "cli.rst").read_text(encoding="utf-8")
    block = page.split("   $ jet-trio demo --envelope stub\n", 1)[1].split("\n\n", 1)[0]
    shown = [line[3:] for line in block.splitlines()]
    ran = run(["demo", "--envelope", "stub"], tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stderr
    actual = ran.stdout.splitlines()
    assert len(actual) == len(shown), (actual, shown)
    varying = ("time:", "throughput:", "hash verified:")
    for want, got in zip(shown, actual, strict=True):
        if want.strip().startswith(varying):
            assert got.split(":")[0] == want.split(":")[0], (got, want)
        else:
            assert got == want


def _exit_code_table() -> dict[int, str]:
    """The rows of the table in docs/cli.rst: code -> the text of the row."""
    page = (DOCS / "cli.rst").read_text(encoding="utf-8")
    table = page.split("Errors and exit codes\n", 1)[1].split(".. list-table::", 1)[1]
    rows: dict[int, str] = {}
    for row in re.split(r"\n   \* - ", table)[2:]:
        code, _, rest = row.partition("\n")
        rows[int(code)] = " ".join(rest.split())
    return rows


def _reasons_in_code() -> dict[str, set[ExitCode]]:
    """Every (exit code, reason) pair the command line reports, from its source."""
    found: dict[str, set[ExitCode]] = {}
    pattern = re.compile(
        r"(?:CLIError|Failure)\(\s*ExitCode\.(\w+)(?: if \w+ else ExitCode\.(\w+))?,\s*"
        r'(?:"([\w-]+)" if \w+ else "([\w-]+)"|"([\w-]+)")'
    )
    for source in (Path(jet_trio.__file__).parent / "_cli").glob("*.py"):
        for m in pattern.finditer(source.read_text(encoding="utf-8")):
            pairs = [(m[1], m[3] or m[5])]
            if m[2]:  # CODE_A if x else CODE_B, "reason_a" if x else "reason_b"
                pairs.append((m[2], m[4] or m[5]))
            for code, reason in pairs:
                found.setdefault(reason, set()).add(ExitCode[code])
    return found


def test_exit_code_table_lists_every_code_reason_and_a_message() -> None:
    rows = _exit_code_table()
    assert sorted(rows) == sorted(int(c) for c in ExitCode)
    for code, text in rows.items():
        assert "Example: " in text, code
    reasons = _reasons_in_code()
    assert {"usage", "not-subscribed", "authentication", "keyring"} <= set(reasons)
    for reason, codes in reasons.items():
        for code in codes:
            assert f"``{reason}``" in rows[int(code)], (reason, code)
