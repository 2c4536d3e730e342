"""Start-up cost: what the package and the command-line tool import before they need it.

Each check runs a fresh interpreter (``sys.modules`` of the test process is already full) and
looks at the modules it loaded: a regression brings back hundreds of milliseconds of imports on
every ``jet-trio`` run (see ``bench/bench_startup.py`` for the times).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jet_trio
from jet_trio._cli.plugins import wanted_envelopes

from ._run import cli_env
from .conftest import LocalServer
from .test_send_receive import payload, send_and_receive

HAVE_OMEMO = importlib.util.find_spec("jet_trio_omemo") is not None
HAVE_OPENPGP = importlib.util.find_spec("jet_trio_openpgp") is not None
# Heavy dependencies that neither ``import jet_trio`` nor ``jet-trio --help`` need.
HEAVY = ("trio", "rich", "lxml", "cryptography", "dns", "pluggy", "scramp", "precis_i18n")


def last_json_line(script: str, tmp_path: Path) -> Any:
    """Run ``script`` in a fresh interpreter; the JSON of the last line it printed."""
    proc = subprocess.run(
        [sys.executable, "-P", "-c", script],
        env=cli_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def loaded_after(code: str, tmp_path: Path) -> set[str]:
    """The top-level packages (and jet_trio modules) a fresh interpreter has after ``code``."""
    script = (
        f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)), file=sys.__stdout__)\n"
    )
    names: list[str] = last_json_line(script, tmp_path)
    return {n if n.startswith("jet_trio") else n.split(".")[0] for n in names}


def run_cli(*args: str) -> str:
    return (
        "from jet_trio.__main__ import main\n"
        f"sys.argv = ['jet-trio', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code"
    )


def test_import_jet_trio_loads_no_dependency(tmp_path: Path) -> None:
    loaded = loaded_after("import jet_trio", tmp_path)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not {m for m in loaded if m.startswith("jet_trio.")}


@pytest.mark.parametrize("args", [["--help"], ["send", "--help"], ["--version"]])
def test_help_loads_no_library(tmp_path: Path, args: list[str]) -> None:
    loaded = loaded_after(run_cli(*args), tmp_path)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "jet_trio._xmpp.client" not in loaded
    assert "jet_trio._transfer.service" not in loaded


def test_client_given_its_server_needs_no_dns(tmp_path: Path) -> None:
    """dnspython is only imported for an SRV lookup, which --server (host given) skips."""
    loaded = loaded_after("import jet_trio._xmpp.client, jet_trio._cli.transfer", tmp_path)
    assert "trio" in loaded  # the check sees imports at all
    assert "dns" not in loaded


def test_login_needs_no_scramp_nor_asn1crypto(tmp_path: Path) -> None:
    """SCRAM is jet-trio's own (scramp imported asn1crypto's X.509 module at import time: 4 MiB
    in every process that logs in); scramp serves only the in-process test server."""
    loaded = loaded_after(
        "import jet_trio._xmpp.client, jet_trio._xmpp.connect, jet_trio._cli.transfer\n"
        "from jet_trio._xmpp.sasl import SaslMechanism\n"
        "m = SaslMechanism('SCRAM-SHA-256', 'user', 'pencil')\n"
        "assert m.initial().startswith(b'n,,n=user,r=')",
        tmp_path,
    )
    assert "trio" in loaded  # the check sees imports at all
    assert not loaded & {"scramp", "asn1crypto"}, sorted(loaded & {"scramp", "asn1crypto"})


def test_a_send_without_prompt_or_config_file_imports_no_unneeded_module(tmp_path: Path) -> None:
    """xml.sax.saxutils (urllib.request, http.client), getpass (termios) and tomllib are not
    needed by a command that logs in with a password from the environment and no config file."""
    loaded = loaded_after(
        "import jet_trio._xmpp.client, jet_trio._xmpp.connect, jet_trio._cli.transfer\n"
        "from jet_trio._cli.config import load_config\n"
        "from jet_trio._xmpp.xml import stream_header\n"
        "import pathlib\n"
        "load_config(pathlib.Path('no-such-file.toml'))\n"
        "assert stream_header(to='a&<b>') == (\n"
        '    b"<?xml version=\'1.0\'?><stream:stream xmlns=\\"jabber:client\\" "\n'
        "    b'xmlns:stream=\"http://etherx.jabber.org/streams\" '\n"
        '    b\'version="1.0" xml:lang="en" \'\n'
        "    b'to=\"a&amp;&lt;b&gt;\">'), stream_header(to='a&<b>')",
        tmp_path,
    )
    unneeded = {"http", "getpass", "termios", "tomllib"}
    assert "trio" in loaded
    assert not loaded & unneeded, sorted(loaded & unneeded)


def test_start_up_runs_no_other_process(tmp_path: Path) -> None:
    """ctypes.util.find_library runs ``ldconfig -p`` (~10 ms of CPU): renameat2 is looked up in
    the C library already loaded. (trio's own import still does it once, for pthread.)"""
    loaded_after(
        "import trio, subprocess\n"
        "def started(*args, **kwargs):\n"
        "    raise AssertionError(f'a process was started: {args}')\n"
        "subprocess.Popen = started\n"
        "import jet_trio._transfer.files as files, jet_trio._transfer.service\n"
        "import jet_trio._cli.transfer, jet_trio._cli.files\n"
        "assert files._renameat2 is not None  # Linux with glibc >= 2.28",
        tmp_path,
    )


def test_plugin_manager_needs_no_cipher_library_until_a_key_is_used(tmp_path: Path) -> None:
    """Every process loads the cipher plugins; an unencrypted one never needs cryptography."""
    loaded = loaded_after(
        "from jet_trio.plugin import PluginManager\n"
        "pm = PluginManager(entry_points=True)\n"
        "assert pm.ciphers and not pm.load_errors, pm.load_errors\n"
        "assert 'cryptography' not in sys.modules\n"
        "from jet_trio.plugin import TransportSecret\n"
        "for cipher in pm.ciphers:\n"
        "    secret = TransportSecret.generate(cipher)\n"
        "    enc = cipher.new_encryptor(secret.key, secret.iv)\n"
        "    data = enc.update(b'x' * 100)\n"
        "    tag = enc.finalize()\n"
        "    dec = cipher.new_decryptor(secret.key, secret.iv)\n"
        "    assert dec.update(data) == b'x' * 100\n"
        "    dec.finalize(tag)",
        tmp_path,
    )
    assert "cryptography" in loaded  # once a key was used


def test_public_names_resolve_on_first_use() -> None:
    for name in jet_trio.__all__:
        value = getattr(jet_trio, name)
        if name != "__version__":
            module = importlib.import_module(f"jet_trio.{jet_trio._LAZY[name]}")
            assert value is getattr(module, name), name
    assert set(jet_trio._LAZY) == set(jet_trio.__all__) - {"__version__"}
    assert set(jet_trio.__all__) <= set(dir(jet_trio))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        jet_trio.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_star_import_gives_every_public_name(tmp_path: Path) -> None:
    loaded = loaded_after(
        "from jet_trio import *\nassert open_file_transfer and Client and TransferResult",
        tmp_path,
    )
    assert "jet_trio._transfer.service" in loaded


@pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")
async def test_stub_send_does_not_start_omemo(tmp_path: Path, local_server: LocalServer) -> None:
    """``send --envelope stub`` cannot use OMEMO or OpenPGP: no OMEMO session, no OpenPGP key,
    nothing published. The receiver (which may get any offer) still starts both."""
    src = payload(tmp_path, 1000)
    sent, received = await send_and_receive(
        tmp_path, local_server, [str(src), "--envelope", "stub"], ["--accept-stub"]
    )
    assert sent.returncode == 0 and received.returncode == 0, (sent.stderr, received.stderr)
    devicelist = "eu.siacs.conversations.axolotl.devicelist"
    assert local_server.server.pep_items("bob", devicelist)
    assert not local_server.server.pep_items("alice", devicelist)
    alice_data = tmp_path / "xdg" / "jet-trio" / "alice@localhost"
    assert not (alice_data / "omemo").exists()
    if HAVE_OPENPGP:
        keys = "urn:xmpp:openpgp:0:public-keys"
        assert local_server.server.pep_items("bob", keys)
        assert not local_server.server.pep_items("alice", keys)
        assert not (alice_data / "openpgp").exists()


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        (None, None),
        ("none", frozenset()),
        ("stub", frozenset({"stub"})),
        (" OMEMO ", frozenset({"omemo"})),  # a short name: any method calling itself so
        ("urn:xmpp:omemo:2", frozenset({"urn:xmpp:omemo:2"})),
        ("openpgp", frozenset({"openpgp"})),
    ],
)
def test_wanted_envelopes(name: str | None, wanted: frozenset[str] | None) -> None:
    assert wanted_envelopes(name) == wanted


@pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")
async def test_omemo_libraries_missing_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plugin package imports, its libraries do not: OMEMO is left out with a warning,
    as when its start fails, and the command goes on (its session, offered through the
    plugin hook, fails to open)."""
    import jet_trio_omemo

    from jet_trio._cli import sessions as _cli_sessions
    from jet_trio._cli.output import Output
    from jet_trio._xmpp.client import Client

    def broken(self: object) -> Any:
        raise ImportError("No module named 'oldmemo'")

    monkeypatch.setattr(jet_trio_omemo._Session, "open", broken)

    class FakeClient(Client):  # what envelope_sessions reads of a client (weakly referenced)
        def __init__(self) -> None:
            pass

        jid = jet_trio.JID("alice@example.org/x")

    client: Any = FakeClient()
    ran = False
    async with _cli_sessions.envelope_sessions(
        Output(json_mode=False, debug=False), client, tmp_path
    ) as sessions:
        ran = True
        with pytest.raises(Exception, match="OMEMO could not be set up"):
            sessions.check_send_envelope(None)
        sessions.check_send_envelope("none")  # another method, chosen explicitly: goes on
    assert ran
    err = capsys.readouterr().err
    assert "OMEMO is NOT available in this run: its set-up for alice@example.org" in err
    assert "oldmemo" in err


@pytest.mark.skipif(not (HAVE_OMEMO and HAVE_OPENPGP), reason="needs both envelope plugins")
async def test_default_send_with_omemo_prepares_no_openpgp_key(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """Without --envelope the method is OMEMO whenever its session runs: no OpenPGP key is made
    or published for the send (the receiver, which may get either, still has one)."""
    src = payload(tmp_path, 1000)
    sent, received = await send_and_receive(tmp_path, local_server, [str(src)], [])
    assert sent.returncode == 0 and received.returncode == 0, (sent.stderr, received.stderr)
    assert sent.one_json()["envelope"] == "urn:xmpp:omemo:2"  # the strongest both advertise
    keys = "urn:xmpp:openpgp:0:public-keys"
    assert local_server.server.pep_items("bob", keys)
    assert not local_server.server.pep_items("alice", keys)
    assert not (tmp_path / "xdg" / "jet-trio" / "alice@localhost" / "openpgp").exists()


def test_cli_login_timeout_default_is_the_librarys() -> None:
    """The command line writes the library's default login bound down (so that building it
    imports nothing heavy): the two must agree."""
    from jet_trio._cli import main as _cli
    from jet_trio._xmpp import connect as _connect

    assert _cli.DEFAULT_LOGIN_TIMEOUT == _connect.DEFAULT_LOGIN_TIMEOUT


def test_the_console_script_holds_off_full_collections(tmp_path: Path) -> None:
    """``jet-trio`` starts with only the youngest generation collected (``_cli.startup``): a
    command that never logs in (here ``--version``) ends that way; the end of a login's
    start-up is tests/cli/test_one_startup.py's."""
    script = (
        "import atexit, gc, json, sys\n"
        "atexit.register(lambda: print(json.dumps([gc.get_threshold(), gc.isenabled()]),"
        " file=sys.__stdout__))\n" + run_cli("--version")
    )
    (young, middle, _), enabled = last_json_line(script, tmp_path)
    assert enabled and young < 100_000 <= middle
