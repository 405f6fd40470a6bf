"""Choices made by measurement (`vitkit.measured`): the fastest dtype is timed once and read
back, and side-by-side timing runs every call in each round, the untimed settling calls
included."""

from __future__ import annotations

import json

from vitkit import measured


def test_the_fastest_dtype_is_timed_once_then_read_back(tmp_path):
    path, timed = tmp_path / "precision.json", []

    def seconds(faster):
        def measure():
            timed.append(faster)
            return {"fp32": 1.0, "bf16": 2.0} if faster == "fp32" else {"fp32": 2.0, "bf16": 1.0}
        return measure

    assert measured.fastest_dtype(path, "k", seconds("bf16"), "test", "work",
                                  note={"for": "test"}) == "bf16"
    assert measured.fastest_dtype(path, "k", seconds("fp32"), "test", "work") == "bf16"
    assert timed == ["bf16"]  # the second answer came from the file
    assert json.loads(path.read_text())["k"] == {"dtype": "bf16", "for": "test",
                                                 "fp32_s": 2.0, "bf16_s": 1.0}
    assert measured.fastest_dtype(path, "other", seconds("fp32"), "test", "work") == "fp32"
    assert timed == ["bf16", "fp32"]


def test_side_by_side_interleaves_rounds_and_settles_each_call():
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    medians = measured.side_by_side(calls, rounds=3, settle=1)
    assert order == ["a", "a", "b", "b"] * 3
    assert set(medians) == {"a", "b"} and all(s >= 0 for s in medians.values())
    order.clear()
    measured.side_by_side(calls, rounds=1, at_most=4, seconds=60.0)  # rounds until at_most
    assert order == ["a", "b"] * 4
