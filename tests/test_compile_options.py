"""OpenMP's wait settings and inductor's threading on the CPU. `import vitkit` sets how idle
threads wait before torch loads OpenMP (PASSIVE, except a short spin on Intel CPUs; a user's
own setting wins). While the threads sleep between parallel regions, kernels too small to
repay waking them run on one thread; with spinning threads, on CUDA or on one thread,
inductor's defaults stand. Every compile vitkit makes (inference, int8, the trainer) asks the
same function; inference graphs on the CPU also call their kernels from C++."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from vitkit.cpu import INTEL_SPIN_COUNT, omp_wait_settings
from vitkit.device import SLEEPING_THREADS_CHUNK, compile_options, torch_threads
from vitkit.infer import optimize


@pytest.fixture
def policy(monkeypatch):
    def set_policy(wait: str | None, spin: str | None = None) -> None:
        for name, value in (("OMP_WAIT_POLICY", wait), ("GOMP_SPINCOUNT", spin)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
    return set_policy


def test_sleeping_threads_leave_small_kernels_to_one_thread(policy):
    policy("PASSIVE")
    with torch_threads(2):
        assert compile_options("cpu") == {"cpp.min_chunk_size": SLEEPING_THREADS_CHUNK}
    with torch_threads(5):  # waking shared by 4 helpers: a quarter of the work per thread
        assert compile_options("cpu") == {"cpp.min_chunk_size": SLEEPING_THREADS_CHUNK // 4}
    policy("passive ")
    with torch_threads(2):
        assert compile_options(torch.device("cpu")) is not None


@pytest.mark.parametrize(("wait", "spin", "threads", "where"), [
    ("ACTIVE", None, 2, "cpu"),     # threads spin: inductor's splitting is cheap
    (None, None, 2, "cpu"),         # libgomp's default spins too
    ("PASSIVE", "10000", 2, "cpu"),  # a spin count makes PASSIVE threads spin first
    ("PASSIVE", None, 1, "cpu"),    # nothing to wake
    ("PASSIVE", None, 2, "cuda"),   # not OpenMP
])
def test_inductors_defaults_stand_otherwise(policy, wait, spin, threads, where):
    policy(wait, spin)
    with torch_threads(threads):
        assert compile_options(where) is None


def test_every_compile_asks_for_the_options(policy, monkeypatch):
    """compile_frozen (the compiled and int8 inference paths) and the trainer pass them on."""
    from vitkit.train import trainer

    seen = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: seen.append(kw) or module)
    policy("PASSIVE")
    with torch_threads(2):
        optimize.compile_frozen(nn.Linear(2, 2), device="cpu")
        run = type("Run", (), {"compile": True})()
        plan = type("Plan", (), {"device": torch.device("cpu"),
                                 "dist": type("Dist", (), {"is_main": False})()})()
        trainer._compiled(nn.Linear(2, 2), run, plan)
    expected = compile_options("cpu")
    assert expected is not None
    assert [kw["options"] for kw in seen] == [{**expected, "cpp_wrapper": True}, expected]


@pytest.mark.parametrize("wait", ["PASSIVE", "ACTIVE"])
def test_inference_graphs_call_their_kernels_from_cpp_on_the_cpu_only(policy, monkeypatch, wait):
    """The trainer's graphs keep inductor's Python wrapper (no gain measured there)."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: seen.append(kw) or module)
    policy(wait)
    optimize.compile_frozen(nn.Linear(2, 2), device="cpu")
    optimize.compile_frozen(nn.Linear(2, 2), device="cuda", cuda_graphs=True)
    optimize.compile_frozen(nn.Linear(2, 2), device="cuda")
    assert seen[0]["options"]["cpp_wrapper"] is True
    assert seen[1]["options"] == {"triton.cudagraphs": True}
    assert seen[2]["options"] is None


@pytest.mark.parametrize(("vendor", "environ", "added"), [
    ("GenuineIntel", {}, {"GOMP_SPINCOUNT": INTEL_SPIN_COUNT}),
    ("AuthenticAMD", {}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("", {}, {"OMP_WAIT_POLICY": "PASSIVE"}),  # no /proc/cpuinfo: the safe choice
    ("GenuineIntel", {"OMP_WAIT_POLICY": "PASSIVE"}, {}),  # the user's setting wins
    ("AuthenticAMD", {"GOMP_SPINCOUNT": "10000"}, {}),
    ("AuthenticAMD", {"OMP_WAIT_POLICY": "ACTIVE"}, {}),
])
def test_the_wait_settings_import_adds(vendor, environ, added):
    assert omp_wait_settings(environ, vendor) == added


def test_import_vitkit_sets_them_for_this_cpu_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    probe = ("import os, sys, vitkit; assert 'torch' not in sys.modules; "
             "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    expected = omp_wait_settings({})  # this CPU's vendor
    assert out == [expected.get("OMP_WAIT_POLICY", "None"),
                   expected.get("GOMP_SPINCOUNT", "None")]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["ACTIVE", "None"]


def test_every_compile_silences_torchs_cuda_home_notice_only():
    """On a machine with a CUDA toolkit and no GPU, inductor's first C++ compile logs "No CUDA
    runtime is found" among a command's output. Asking for compile options drops that one
    message from its logger; the logger's other warnings still pass."""
    import logging

    log = logging.getLogger("torch.utils.cpp_extension")
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    log.addHandler(handler)
    try:
        compile_options("cpu")
        log.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        log.warning("Error checking compiler version for %s", "c++")
    finally:
        log.removeHandler(handler)
    assert seen == ["Error checking compiler version for c++"]
