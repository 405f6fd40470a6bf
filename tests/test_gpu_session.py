"""benchmarks/gpu_session.sh runs only on a lent GPU, with minutes to spare: every option it
passes must exist, checked here against each script's --help (throughput.py passes the rest
to `vitkit bench`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"


def _commands() -> list[tuple[str, set[str]]]:
    """(benchmark script, the options it is given) for each call in the session script."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    calls = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = re.search(r"python3? (benchmarks/\w+\.py)(.*)", line)
        if match:
            calls.append((match.group(1), set(re.findall(r"(?<!\S)(--[a-z][a-z-]*)",
                                                         match.group(2)))))
    return calls


def _help(*command: str) -> str:
    return subprocess.run([sys.executable, *command, "--help"], cwd=ROOT / "benchmarks",
                          capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
                          ).stdout


def test_the_gpu_session_script_parses_and_passes_only_known_options():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    calls = _commands()
    assert {name for name, _ in calls} >= {"benchmarks/throughput.py",
                                           "benchmarks/cifar10_speedrun.py"}
    helps: dict[str, str] = {}
    for name, options in calls:
        if name not in helps:
            helps[name] = _help(Path(name).name)
            if name.endswith("throughput.py"):  # the rest of its options go to `vitkit bench`
                helps[name] += _help("-m", "vitkit", "bench")
        unknown = {o for o in options if not re.search(rf"{o}\b", helps[name])}
        assert not unknown, f"{name} does not take {sorted(unknown)}"
