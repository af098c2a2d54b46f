"""Logging a benchmark run in docs/BENCHMARKS.md, the same way from every script.

The file opens with a table of current results, one row per benchmark between two marker
comments, and ends with the run log. A run with `--write` appends its section to the log and
replaces its benchmark's row, so the table always shows each benchmark's latest written run.
"""

from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
BEGIN = "<!-- current:begin -->"
END = "<!-- current:end -->"
HEADER = "| benchmark | latest figure | baseline (same run) | target | date | command |"
RULE = "| --- | --- | --- | --- | --- | --- |"


@dataclass(frozen=True)
class Summary:
    """A run in one line: its headline figure, the baseline measured in the same run, the target
    (with the verdict where there is one). It becomes the benchmark's row in the table."""

    figure: str
    baseline: str
    target: str

    def line(self) -> str:
        return f"summary: {self.figure} | baseline: {self.baseline} | target: {self.target}"


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran, as the log and the table quote it."""
    args = sys.argv[1:] if argv is None else argv
    return f"python scripts/{script}.py {' '.join(args)}".strip()


def stamp(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))


def cell(text: str) -> str:
    """A table cell: one line, its pipes escaped (GitHub would split the cell at them)."""
    return " ".join(text.split()).replace("|", "\\|")


def row(script: str, summary: Summary, when: str, cmd: str) -> str:
    cells = [script, summary.figure, summary.baseline, summary.target, when, f"`{cmd}`"]
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def row_name(line: str) -> str:
    """The benchmark a table row is about (its first cell), "" for anything else."""
    if not line.startswith("|") or line in (HEADER, RULE):
        return ""
    return line.split("|")[1].strip()


def update_table(text: str, script: str, new_row: str) -> str:
    """`text` with `script`'s row replaced by `new_row` (added last if it has none); every other
    line kept as it is. ValueError when the markers are missing or out of order."""
    lines = text.split("\n")
    try:
        begin, end = lines.index(BEGIN), lines.index(END)
    except ValueError:
        raise ValueError(f"no {BEGIN} ... {END} table") from None
    if end < begin:
        raise ValueError(f"{END} comes before {BEGIN}")
    table = lines[begin + 1 : end]
    at = [i for i, line in enumerate(table) if row_name(line) == script]
    if at:
        table[at[0]] = new_row
        for i in reversed(at[1:]):  # one row per benchmark
            del table[i]
    else:
        last = max((i for i, line in enumerate(table) if line.startswith("|")), default=-1)
        table.insert(last + 1, new_row)
    return "\n".join([*lines[: begin + 1], *table, *lines[end:]])


def section(script: str, body: str, when: str, cmd: str) -> str:
    return f"\n### {script} ({when})\n\nCommand: `{cmd}`\n\n{body}\n"


def log_run(
    script: str,
    body: str,
    summary: Summary,
    *,
    path: Path = BENCHMARKS,
    argv: Sequence[str] | None = None,
    now: float | None = None,
) -> None:
    """Append the run's section (`body`: its markdown) to the log and put its row in the table.
    Under an exclusive lock on the file, so runs that finish together do not lose a section.
    Without a table the section is still appended (a run can take an hour), with a warning."""
    when, cmd = stamp(now), command(script, argv)
    with path.open("r+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = fh.read()
        try:
            text = update_table(text, script, row(script, summary, when, cmd))
        except ValueError as exc:
            print(f"{path}: {exc}: only the run log was appended", file=sys.stderr)
        fh.seek(0)
        fh.write(text + section(script, body, when, cmd))
        fh.truncate()


def bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {x}" for x in lines)


def report(
    script: str,
    lines: Sequence[str],
    summary: Summary,
    *,
    write: bool,
    printed: bool = False,
    path: Path = BENCHMARKS,
) -> None:
    """Print the result lines (unless the script `printed` them as they came) and the summary
    line; with `write`, log the lines as bullets and update the row (`log_run`)."""
    if not printed:
        print("\n".join(lines))
    print(summary.line(), flush=True)
    if write:
        log_run(script, bullets(lines), summary, path=path)
