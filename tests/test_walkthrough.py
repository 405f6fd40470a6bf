"""docs/vit_from_equations.md and its notebook, docs/vit_from_equations.ipynb (made from the
.md by jupytext, kept with its outputs): the notebook's cells are the page's text and Python
blocks, and executing it runs every hand computation's check against the model, trains the
digits model through `vitkit.plan_training` and draws Figures 6 and 7 inline.

After editing the .md, `python tests/test_walkthrough.py` remakes the notebook (this module's
execution, then the notebook written next to the page)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = DOCS / "vit_from_equations.md"
NOTEBOOK = DOCS / "vit_from_equations.ipynb"
CELL_TIMEOUT_S = 600  # the training cell takes about 30 s on two busy cores
MIN_FIGURES = 5  # four rollouts and Figure 7


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _cells(notebook) -> list[tuple[str, str]]:  # noqa: ANN001 - an nbformat NotebookNode
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def _images(notebook) -> list[str]:  # noqa: ANN001
    """The base64 PNGs among the notebook's outputs, in order."""
    return [output["data"]["image/png"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if "image/png" in output.get("data", {})]


def _text(notebook) -> str:  # noqa: ANN001
    """What the notebook's cells printed."""
    return "".join(output.get("text", "") for cell in notebook.cells
                   if cell.cell_type == "code" for output in cell.outputs)


def execute(notebook, workdir: Path) -> None:  # noqa: ANN001
    """Run `notebook`'s cells in order, in place, in a fresh kernel of this interpreter (a
    kernelspec written into `workdir`, so no installed `python3` kernel of another Python
    can stand in), with `workdir` as its working directory. A failing cell raises
    nbclient's CellExecutionError, with the cell and its traceback."""
    from nbclient import NotebookClient

    spec = workdir / "kernels" / "vitkit-walkthrough" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name=spec.parent.name,
                            record_timing=False, resources={"metadata": {"path": str(workdir)}})
    before = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, (str(workdir), before)))
    try:
        client.execute()
    finally:
        if before is None:
            del os.environ["JUPYTER_PATH"]
        else:
            os.environ["JUPYTER_PATH"] = before


def test_the_notebook_is_the_page() -> None:
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    page = jupytext.read(DOC)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert _cells(notebook) == _cells(page), \
        f"{NOTEBOOK.name} differs from {DOC.name}: run `python tests/test_walkthrough.py`"
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    code = [source for kind, source in _cells(page) if kind == "code"]
    assert code == [block.rstrip("\n") for block in blocks]  # every block a cell, no more
    assert len(blocks) >= 8
    assert sum(block.count("assert") for block in blocks) >= 20  # it does check things
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.metadata.jupytext.formats == "ipynb,md"


def test_the_notebook_is_kept_with_its_figures() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)  # executed, all of it
    assert not [output for cell in code for output in cell.outputs
                if output.output_type == "error"]
    assert len(_images(notebook)) >= MIN_FIGURES  # so that GitHub shows the figures
    assert NOTEBOOK.stat().st_size < 1_000_000


def test_the_notebook_runs_its_checks_hold_and_it_draws(tmp_path: Path) -> None:
    pytest.importorskip("ipykernel")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import sys\nassert total == 86_567_656\nprint('kernel prefix:', sys.prefix)"))
    execute(notebook, tmp_path)
    printed = _text(notebook)
    assert "torch.Size([1, 196, 768])" in printed
    assert f"kernel prefix: {sys.prefix}\n" in printed  # this interpreter ran it
    assert re.search(r"^plan: vit_digits_patch2_8 at 8 px, 20 epochs", printed, flags=re.M)
    assert re.search(r"^test top-1 after 20 epochs: 0\.\d+$", printed, flags=re.M)
    assert len(_images(notebook)) >= MIN_FIGURES, \
        "the figures did not come out inline: does the kernel keep its inline backend?"


def test_the_extractor_finds_blocks_in_order() -> None:
    text = "a\n```python\nx = 1\n```\nb\n```\nnot python\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x\n"]


def remake_notebook() -> None:
    """Execute the page as a notebook and write it, outputs and all, next to the page."""
    import tempfile

    import jupytext

    notebook = jupytext.read(DOC)
    with tempfile.TemporaryDirectory() as workdir:
        execute(notebook, Path(workdir))
    jupytext.write(notebook, NOTEBOOK, fmt="ipynb")
    print(f"wrote {NOTEBOOK}: {NOTEBOOK.stat().st_size:,} bytes, "
          f"{len(_images(notebook))} figures")


if __name__ == "__main__":
    remake_notebook()
