"""benchmarks/RESULTS.md has one writer: a section per run, replaced on a rerun, well formed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.results_writer import RESULTS, check, table, write_section

ROOT = Path(__file__).resolve().parents[1]


def test_a_section_has_the_date_machine_command_and_table(tmp_path) -> None:
    path = tmp_path / "RESULTS.md"
    rows = table(["model", "images/s"], [["vit", 12.5]], align="lr")
    section = write_section("Speed", rows + "\n\nQuiet machine.", command="python b.py --x 1",
                            machine="Some CPU, 2 cores", facts=["model: vit"], path=path)
    text = path.read_text()
    assert text.startswith("# Benchmarks\n") and section in text
    assert "## Speed\n\n- date: 20" in text and " UTC\n- machine: Some CPU, 2 cores\n" in text
    assert "- command: `python b.py --x 1`\n- model: vit\n" in text
    assert "| model | images/s |\n|---|---:|\n| vit | 12.5 |\n\nQuiet machine.\n" in text


def test_a_rerun_replaces_its_section_and_keeps_the_others(tmp_path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmarks\n\nIntro.\n\n## Kept\n\nhand-written\n")
    for title, value in (("Speed", 1), ("Memory", 2), ("Speed", 3)):
        write_section(title, table(["n"], [[value]]), command="c", machine="m", path=path)
    text = path.read_text()
    assert text.count("## Speed") == 1 and "| 3 |" in text and "| 1 |" not in text
    assert text.index("## Kept") < text.index("## Speed") < text.index("## Memory")
    assert "Intro.\n" in text and "hand-written\n" in text and check(text) == []


def test_a_row_that_does_not_fit_its_header_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="2 cells under 1 columns"):
        table(["n"], [[1, 2]])
    with pytest.raises(ValueError, match="3 cells in a table of 2 columns"):
        write_section("Bad", "| a | b |\n|---|---|\n| 1 | 2 | 3 |", command="c", machine="m",
                      path=tmp_path / "RESULTS.md")
    assert not (tmp_path / "RESULTS.md").exists()


def test_results_md_has_unique_sections_and_rows_that_fit_their_tables() -> None:
    assert check(RESULTS.read_text()) == []


def test_check_finds_a_repeated_section_and_a_misplaced_row() -> None:
    text = "## A\n\n| a | b |\n|---|---|\n| 1 | 2 |\n| 1 | 2 | 3 |\n\n## A\n"
    assert check(text) == ["section 'A' appears 2 times",
                           "line 6: 3 cells in a table of 2 columns"]


def test_vitkit_bench_runs_are_recorded_through_the_writer(tmp_path) -> None:
    path = tmp_path / "RESULTS.md"
    command = [sys.executable, "benchmarks/throughput.py", "--results", str(path), "--model",
               "vit_cifar_patch4_32", "--depth", "1", "--batch-size", "2", "--precision",
               "fp32", "--peers", "--rounds", "1", "--min-time", "0.01"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for _ in range(2):
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    text = path.read_text()
    assert text.count("## vit_cifar_patch4_32, batch 2\n") == 1
    assert "- command: `python benchmarks/throughput.py --results" in text
    assert "- measured matmul peak (2048^2): fp32 " in text
    assert "| inference | fp32 | vitkit |" in text and check(text) == []
