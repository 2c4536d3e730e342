"""Print README command N (the N-th ```sh block of README.md), for .ci/run.

README.md shows a newcomer two commands, in order: command 1 installs and runs the demo,
command 2 runs the checks. .ci/run runs command 1 exactly as README.md writes it, in the same
checkout, before its checks, so that the two commands cannot drift apart or break each other.
Each of them must be a single line.

Usage: python3 .ci/readme_command.py N [README]
"""

from __future__ import annotations

import sys
from pathlib import Path


def sh_blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None:
            if stripped == "```sh":
                current = []
        elif stripped == "```":
            blocks.append(current)
            current = None
        else:
            current.append(line)
    if current is not None:
        raise SystemExit("README: a ```sh block is not closed")
    return blocks


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or not argv[1].isdigit() or int(argv[1]) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    n = int(argv[1])
    root = Path(__file__).resolve().parent.parent
    readme = Path(argv[2]) if len(argv) == 3 else root / "README.md"
    blocks = sh_blocks(readme.read_text(encoding="utf-8"))
    if len(blocks) < n:
        print(f"{readme}: has {len(blocks)} ```sh blocks, no command {n}", file=sys.stderr)
        return 1
    lines = [line for line in blocks[n - 1] if line.strip()]
    if len(lines) != 1:
        print(f"{readme}: command {n} must be one line, found {len(lines)}", file=sys.stderr)
        return 1
    print(lines[0].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
