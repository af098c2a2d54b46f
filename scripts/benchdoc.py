"""Appending a benchmark run to docs/BENCHMARKS.md, the same way from every script."""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def append_results(script: str, lines: list[str]) -> None:
    """A `### <script> (<UTC time>)` section: the command that ran (this process's arguments)
    and one bullet per result line."""
    cmd = f"python scripts/{script}.py " + " ".join(sys.argv[1:])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = "\n".join(f"- {x}" for x in lines)
    with BENCHMARKS.open("a") as fh:
        fh.write(f"\n### {script} ({stamp})\n\nCommand: `{cmd.strip()}`\n\n{block}\n")


def report(script: str, lines: list[str], *, write: bool) -> None:
    """Print the result lines, and append them (`--write`) as `append_results` does."""
    print("\n".join(lines))
    if write:
        append_results(script, lines)
