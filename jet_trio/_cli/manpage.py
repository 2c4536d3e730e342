"""The ``jet-trio(1)`` manual page, generated from the click command line (so it never drifts
from ``--help``).

Write it with ``python -m jet_trio._cli.manpage > jet-trio.1`` (or ``-o FILE``); read it with
``man ./jet-trio.1``. Packagers install it under ``share/man/man1``.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Iterator, Sequence

import click

from .. import __version__
from .errors import ExitCode

__all__ = ["render"]

_EXIT_TEXT = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "internal error (a bug in jet-trio)",
    ExitCode.USAGE: "usage error (bad option, missing password...)",
    ExitCode.CONNECTION: "cannot reach or stay connected to the server",
    ExitCode.TLS: "the server's certificate could not be verified",
    ExitCode.AUTH: "login refused",
    ExitCode.PEER: "the peer declined, cancelled, is offline or not a contact",
    ExitCode.TRANSPORT: "no connection between the two clients worked",
    ExitCode.ENCRYPTION: "encryption could not be set up or was not trusted",
    ExitCode.INTEGRITY: "the received data failed verification",
    ExitCode.FILE: "a local file or directory problem",
    ExitCode.TIMEOUT: "something took longer than allowed",
    ExitCode.TRANSFER: "another transfer failure",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def _escape(text: str) -> str:
    """Text for roff: backslashes, leading dots and quotes, and dashes of options."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _paragraphs(text: str) -> Iterator[str]:
    """click help text: paragraphs; a ``\\b`` paragraph keeps its lines."""
    for block in re.split(r"\n\s*\n", text.strip()):
        if block.lstrip().startswith("\b"):
            lines = block.lstrip()[1:].strip("\n").splitlines()
            yield ".nf\n" + "\n".join(_escape(line.strip()) for line in lines) + "\n.fi"
        else:
            yield _escape(" ".join(block.split()))


def _commands(group: click.Group, ctx: click.Context) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            sub_ctx = click.Context(cmd, info_name=name, parent=ctx)
            yield name, cmd
            for sub, sub_cmd in _commands(cmd, sub_ctx):
                yield f"{name} {sub}", sub_cmd
        else:
            yield name, cmd


def _options(cmd: click.Command, ctx: click.Context) -> Iterator[str]:
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        yield f".TP\n.B {_escape(names)}\n{_escape(' '.join(help_text.split()))}"


def render(cli: click.Group, *, date: datetime.date | None = None) -> str:
    """The manual page of ``cli`` in roff (man macros)."""
    day = (date or datetime.date.today()).isoformat()
    ctx = click.Context(cli, info_name="jet-trio")
    out = [
        f'.TH JET\\-TRIO 1 "{day}" "jet-trio {_escape(__version__)}" "User Commands"',
        ".SH NAME",
        "jet\\-trio \\- end\\-to\\-end encrypted file transfer over XMPP",
        ".SH SYNOPSIS",
        ".B jet\\-trio",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
    ]
    out += [p if p.startswith(".nf") else f"{p}\n.PP" for p in _paragraphs(cli.help or "")]
    out.append(".SH COMMANDS")
    for name, cmd in _commands(cli, ctx):
        sub_ctx = click.Context(cmd, info_name=name, parent=ctx)
        usage = " ".join(cmd.collect_usage_pieces(sub_ctx))
        out.append(f".SS jet\\-trio {_escape(name)} {_escape(usage)}")
        for p in _paragraphs(cmd.help or ""):
            out.append(p if p.startswith(".nf") else f"{p}\n.PP")
        if isinstance(cmd, click.Group):
            continue
        out.extend(_options(cmd, sub_ctx))
    out.append(".SH EXIT STATUS")
    for code in ExitCode:
        out.append(f".TP\n.B {int(code)}\n{_escape(_EXIT_TEXT[code])}")
    out += [
        ".SH ENVIRONMENT",
        ".TP\n.B JET_TRIO_ACCOUNT, JET_TRIO_PASSWORD, JET_TRIO_PASSWORD_FILE, JET_TRIO_SERVER, "
        "JET_TRIO_CA_FILE, JET_TRIO_DATA_DIR, JET_TRIO_DIRECT_HOST, JET_TRIO_LOGIN_TIMEOUT, "
        "JET_TRIO_NO_PLAIN\nDefaults of the options of the same names.",
        ".SH FILES",
        ".TP\n.I $XDG_DATA_HOME/jet\\-trio/ACCOUNT\n"
        "The keys and state of the account's encryption plugins "
        "(default \\fI~/.local/share/jet\\-trio\\fR).",
        ".SH SEE ALSO",
        "The user guide and the command-line reference in the documentation of jet\\-trio "
        "(docs/ in its source).",
    ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    from .main import cli

    parser = argparse.ArgumentParser(description="Write the jet-trio(1) manual page.")
    parser.add_argument("-o", "--output", help="write here instead of standard output")
    args = parser.parse_args(argv)
    page = render(cli)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(page)
    else:
        sys.stdout.write(page)


if __name__ == "__main__":
    main()
