"""`vitkit models` and `vitkit info`, and one-line errors for misuse."""

from __future__ import annotations

import json
import subprocess
import sys

from vitkit.cli.main import main


def test_models_lists_every_preset_with_params_and_gflops(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("vit_base_patch16_224 "))
    assert "86,567,656" in line and "32.93" in line
    assert "vit_huge_patch14_224" in out


def test_info_prints_the_config_as_json(capsys) -> None:
    assert main(["info", "vit_small_patch32_224", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 22_878_952
    assert info["config"]["patch_size"] == 32 and info["num_patches"] == 49


def test_unknown_model_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vitkit.cli.main", "info", "vit_gigantic"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("vitkit info: error: unknown model 'vit_gigantic'")
    assert lines[0].endswith("(see `vitkit models`)")
