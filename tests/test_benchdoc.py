"""scripts/benchdoc.py on copies of docs/BENCHMARKS.md: a written run replaces its benchmark's row
in the current-results table and appends its section to the run log; and the real file's table
agrees with its log."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"


def _load() -> ModuleType:
    name = "scripts_benchdoc"  # not importable from tests/ by its own name
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "benchdoc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


benchdoc = _load()
BEGIN, END = "<!-- current:begin -->", "<!-- current:end -->"
HEADING = re.compile(r"^### (\S+) \((\d{4}-\d\d-\d\d \d\d:\d\d UTC)\)$", re.M)


def rows(text: str) -> dict[str, str]:
    """The table's rows by benchmark (the header and its rule left out)."""
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip().splitlines()
    assert table[0].startswith("| benchmark | latest figure | baseline (same run) | target |")
    assert table[1] == "| --- | --- | --- | --- | --- | --- |"
    out: dict[str, str] = {}
    for line in table[2:]:
        name = line.split("|")[1].strip()
        assert name not in out, f"two rows for {name}"
        out[name] = line
    return out


def cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    copy = tmp_path / "BENCHMARKS.md"
    shutil.copyfile(DOC, copy)
    return copy


def test_a_written_run_replaces_its_row_and_appends_its_section(
    doc: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = doc.read_text()
    old = rows(before)
    assert "bench_chat" in old and len(old) > 2
    monkeypatch.setattr(sys, "argv", ["scripts/bench_chat.py", "--turns", "5", "--write"])
    summary = benchdoc.Summary("p50 9.9 ms", "AddMessages p50 20.0 ms", "p50 <= 15 ms: met")
    t0 = time.time()
    benchdoc.report("bench_chat", ["first line", "second line"], summary, write=True, path=doc)
    t1 = time.time()

    after = doc.read_text()
    when = HEADING.findall(after)[-1][1]
    assert when in {benchdoc.stamp(t0), benchdoc.stamp(t1)}
    cmd = "python scripts/bench_chat.py --turns 5 --write"
    row = (
        f"| bench_chat | p50 9.9 ms | AddMessages p50 20.0 ms | p50 <= 15 ms: met | {when} |"
        f" `{cmd}` |"
    )
    section = f"\n### bench_chat ({when})\n\nCommand: `{cmd}`\n\n- first line\n- second line\n"
    # exactly that row changed, everything else kept, and the run at the very end
    assert after == before.replace(old["bench_chat"], row) + section
    new = rows(after)
    assert new["bench_chat"] == row
    assert {k: v for k, v in new.items() if k != "bench_chat"} == {
        k: v for k, v in old.items() if k != "bench_chat"
    }
    assert capsys.readouterr().out == (
        "first line\nsecond line\n"
        "summary: p50 9.9 ms | baseline: AddMessages p50 20.0 ms | target: p50 <= 15 ms: met\n"
    )


def test_without_write_nothing_changes(doc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = doc.read_text()
    summary = benchdoc.Summary("f", "b", "t")
    benchdoc.report("load", ["only printed"], summary, write=False, printed=True, path=doc)
    assert doc.read_text() == before
    assert capsys.readouterr().out == "summary: f | baseline: b | target: t\n"


def test_a_new_benchmark_gets_a_row_after_the_others(doc: Path) -> None:
    before = doc.read_text()
    summary = benchdoc.Summary("12 ms", "30 ms", "none")
    benchdoc.log_run("bench_new", "| a | table |", summary, path=doc, argv=["--x", "1"], now=0)

    row = "| bench_new | 12 ms | 30 ms | none | 1970-01-01 00:00 UTC | `python scripts/bench_new.py --x 1` |"
    section = (
        "\n### bench_new (1970-01-01 00:00 UTC)\n\n"
        "Command: `python scripts/bench_new.py --x 1`\n\n| a | table |\n"
    )
    after = doc.read_text()
    assert after == before.replace(f"\n{END}\n", f"\n{row}\n{END}\n", 1) + section
    assert list(rows(after)) == [*rows(before), "bench_new"]


def test_a_cell_stays_on_one_line_and_keeps_its_pipes(doc: Path) -> None:
    summary = benchdoc.Summary("a | b\nc", "x", "y")
    benchdoc.log_run("bench_chat", "- z", summary, path=doc, argv=[], now=0)
    row = rows(doc.read_text())["bench_chat"]
    assert cells(row) == [
        "bench_chat",
        "a \\| b c",
        "x",
        "y",
        "1970-01-01 00:00 UTC",
        "`python scripts/bench_chat.py`",
    ]


def test_a_file_without_the_table_still_gets_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Run log\n")
    benchdoc.log_run("load", "- 1 req/s", benchdoc.Summary("f", "b", "t"), path=doc, argv=[], now=0)
    assert doc.read_text() == (
        "# Benchmarks\n\n## Run log\n"
        "\n### load (1970-01-01 00:00 UTC)\n\nCommand: `python scripts/load.py`\n\n- 1 req/s\n"
    )
    assert "only the run log was appended" in capsys.readouterr().err


def test_the_table_shows_each_benchmarks_latest_run() -> None:
    """Every script with a section in the log has one row, dated and commanded as its latest."""
    text = DOC.read_text()
    log = text.split("\n## Run log\n", 1)[1]
    latest: dict[str, tuple[str, str]] = {}
    for m in HEADING.finditer(log):
        if (ROOT / "scripts" / f"{m[1]}.py").exists():
            command = re.search(r"^Command: `(.*)`$", log[m.end() :], re.M)
            assert command is not None, m[0]
            latest[m[1]] = (m[2], command[1])
    table = rows(text)
    assert set(table) == set(latest)
    for name, row in table.items():
        assert len(cells(row)) == 6, row
        assert cells(row)[4:] == [latest[name][0], f"`{latest[name][1]}`"], name
