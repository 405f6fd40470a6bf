"""docs/vit_from_equations.md runs: its ```python blocks are executed in order, in one
namespace, so every hand computation in it is checked against the model."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "vit_from_equations.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_walkthrough_runs_and_its_checks_hold(capsys) -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    assert sum(block.count("assert") for block in blocks) >= 20  # it does check things
    namespace: dict = {"__name__": "walkthrough"}
    threads = torch.get_num_threads()
    try:
        for index, block in enumerate(blocks):
            code = compile(block, f"{DOC.name} block {index + 1}", "exec")
            exec(code, namespace)  # noqa: S102 - the project's own documentation
    finally:
        torch.set_num_threads(threads)
    assert "torch.Size([1, 196, 768])" in capsys.readouterr().out
    assert namespace["total"] == 86_567_656


def test_the_extractor_finds_blocks_in_order() -> None:
    text = "a\n```python\nx = 1\n```\nb\n```\nnot python\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x\n"]
