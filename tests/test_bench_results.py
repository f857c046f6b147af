"""bench/results_file.py: a benchmark run never erases the runs recorded before it."""

import datetime
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("results_file", ROOT / "bench" / "results_file.py")
results_file = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(results_file)

TITLE = "Lifecycle benchmark"
FIRST = datetime.datetime(2026, 12, 7, 22, 0, tzinfo=datetime.UTC)
SECOND = datetime.datetime(2026, 12, 8, 1, 30, tzinfo=datetime.UTC)


def test_each_run_goes_first_and_every_earlier_word_stays(tmp_path):
    path = tmp_path / "lifecycle.md"
    kept = "## Session 17 (by hand)\n\n| what | s |\n|---|---:|\n| demo | 11.2 |\n\nA note.\n"
    path.write_text(f"# {TITLE}\n\n{kept}")
    results_file.record(path, TITLE, "| ratio | 1.61 |", "abc1234", FIRST)
    results_file.record(path, TITLE, "| ratio | 1.58 |\n", "def5678-dirty", SECOND)
    text = path.read_text()
    assert text.count(f"# {TITLE}\n") == 1 and text.startswith(f"# {TITLE}\n\n")
    second = text.index("## Run of 2026-12-08 01:30 UTC, at `def5678-dirty`")
    first = text.index("## Run of 2026-12-07 22:00 UTC, at `abc1234`")
    assert second < text.index("1.58") < first < text.index("1.61") < text.index(kept)
    assert text.endswith(kept)


def test_a_new_file_or_one_without_the_title_gets_it_and_keeps_what_it_had(tmp_path):
    fresh = tmp_path / "results" / "batch.md"
    results_file.record(fresh, "Batch inference benchmark", "rows/s 10", "abc1234", FIRST)
    assert fresh.read_text().startswith("# Batch inference benchmark\n\n## Run of 2026-12-07")
    untitled = tmp_path / "untitled.md"
    untitled.write_text("notes someone wrote\n")
    results_file.record(untitled, TITLE, "rows/s 10", "abc1234", FIRST)
    assert untitled.read_text().startswith(f"# {TITLE}\n")
    assert untitled.read_text().endswith("rows/s 10\n\nnotes someone wrote\n")


def test_a_run_killed_while_writing_leaves_the_old_file_and_no_litter(tmp_path, monkeypatch):
    path = tmp_path / "lifecycle.md"
    path.write_text(f"# {TITLE}\n\nthe old runs\n")

    def killed(source, target):
        raise KeyboardInterrupt  # as a Ctrl-C between the write and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        results_file.record(path, TITLE, "the new run", "abc1234", FIRST)
    assert path.read_text() == f"# {TITLE}\n\nthe old runs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lifecycle.md"]
