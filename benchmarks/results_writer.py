"""The one writer of benchmarks/RESULTS.md: every benchmark script records its run as a section
(title, date, machine, the exact command, a Markdown table) through `write_section`, which
replaces a section of the same title rather than adding a second one.

Scripts run as `python benchmarks/NAME.py` from the repository root, so they import it as
`from results_writer import ...` (Python puts the script's folder on sys.path).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "# Benchmarks\n"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark script shares: where to record, or not to."""
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the Markdown file the section goes to (default: %(default)s)")
    parser.add_argument("--no-record", action="store_true",
                        help="print the table only, write nothing")


def command_line(argv: Sequence[str] | None = None, launcher: str = "python") -> str:
    """The command that ran this script, as typed from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        argv[0] = str(script.relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        pass
    return f"{launcher} {shlex.join(argv)}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A Markdown table; `align` holds one letter per column, "r" to right-align it."""
    header = list(header)
    rows = [[str(cell) for cell in row] for row in rows]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under {len(header)} columns: {row}")
    rule = "|" + "".join("---:|" if align[i:i + 1] == "r" else "---|" for i in range(len(header)))
    return "\n".join([_row(header), rule, *map(_row, rows)])


def _row(cells: Sequence[str]) -> str:
    """One table line of `cells`."""
    return "| " + " | ".join(cells) + " |"


def render(title: str, body: str, command: str, machine: str, facts: Sequence[str] = (),
           when: datetime.datetime | None = None) -> str:
    """The text of one section: the heading, then date, machine, command and facts, then body."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    lines = [f"## {title}", "", f"- date: {when:%Y-%m-%d %H:%M} UTC", f"- machine: {machine}",
             f"- command: `{command}`", *(f"- {fact}" for fact in facts), "", body.strip()]
    return "\n".join(lines) + "\n"


def write_section(title: str, body: str, *, command: str | None = None,
                  machine: str | None = None, facts: Sequence[str] = (),
                  path: str | os.PathLike = RESULTS) -> str:
    """Record a run under `## title` in `path`, replacing a section of that title if there is
    one, else appending; `body` is the table and any lines after it. Returns the section."""
    if machine is None:
        from vitkit.bench.throughput import machine_description

        machine = machine_description()
    section = render(title, body, command or command_line(), machine, facts)
    problems = check(section)
    if problems:
        raise ValueError("; ".join(problems))
    path = Path(path)
    text = path.read_text() if path.exists() else HEADING
    path.write_text(replace_section(text, title, section))
    return section


def replace_section(text: str, title: str, section: str) -> str:
    """`text` with its `## title` section (up to the next `## `) swapped for `section`, or with
    `section` appended when no section has that title."""
    lines = text.splitlines(keepends=True)
    starts = heading_lines(lines)
    for number, (index, name) in enumerate(starts):
        if name == title:
            end = starts[number + 1][0] if number + 1 < len(starts) else len(lines)
            after = "".join(lines[end:])
            return "".join(lines[:index]) + section + ("\n" + after if after else "")
    return text.rstrip("\n") + "\n\n" + section


def heading_lines(lines: Sequence[str]) -> list[tuple[int, str]]:
    """(line index, title) of each `## ` heading outside fenced code blocks."""
    found, fenced = [], False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            found.append((index, line[3:].strip()))
    return found


def check(text: str) -> list[str]:
    """What is malformed in a RESULTS.md text: repeated section titles, and table rows whose
    cell count differs from their table's header."""
    lines = text.splitlines()
    titles = [title for _, title in heading_lines(lines)]
    problems = [f"section {title!r} appears {titles.count(title)} times"
                for title in dict.fromkeys(titles) if titles.count(title) > 1]
    columns = 0
    for number, line in enumerate(lines, 1):
        if not line.startswith("|"):
            columns = 0
            continue
        cells = len(line.strip().strip("|").split("|"))
        if not columns:
            columns = cells
        elif cells != columns:
            problems.append(f"line {number}: {cells} cells in a table of {columns} columns")
    return problems
