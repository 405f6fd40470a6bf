"""The paper's Figures 3 and 4 on your own data: test accuracy against training-set size for
several models (a ViT and a CNN, say), each trained on class-balanced fractions of the
training set at an equal budget of images seen, over several seeds.

Every (model, fraction, seed) run is a normal vitkit run folder under OUT/runs/, and
OUT/results.json is rewritten after each one, so a killed experiment continues where it
stopped: finished runs are skipped, an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import DataSplits, ImageTensorDataset
from ..files import write_json
from ..train import plan_training

RESULTS_NAME = "results.json"
PLOT_NAME = "data_scaling.png"


@dataclass
class Experiment:
    """What to compare, on what, and with what budget: every run sees `images_seen` training
    images (so a 10% subset gets 10x the epochs of the whole set)."""

    train_set: ImageTensorDataset
    test_set: ImageTensorDataset
    models: list[str]
    fractions: list[float]
    seeds: list[int]
    images_seen: int
    out_dir: Path
    recipe: str = "small-data"
    recipe_overrides: dict[str, Any] | None = None
    model_overrides: dict[str, Any] | None = None
    batch_size: int = 128
    precision: str = "auto"
    progress: bool = False
    teacher: str | None = None  # one of `models`: every other model also runs distilled from it


def balanced_subset(data: ImageTensorDataset, fraction: float, seed: int) -> ImageTensorDataset:
    """`fraction` of each class (at least one image), the same seeded order for every
    fraction, so a smaller subset is part of every larger one."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fractions must be in (0, 1], got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for label in range(data.num_classes):
        members = torch.nonzero(data.targets == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        parts.append(members[:max(1, round(fraction * len(members)))])
    return data.subset(torch.cat(parts).sort().values)


def run_experiment(experiment: Experiment) -> dict[str, Any]:
    """Train and test every (model, fraction, seed) not already in results.json; returns the
    results (also written to OUT/results.json) and draws OUT/data_scaling.png."""
    out = Path(experiment.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _read_results(out)
    setup = _setup(experiment)
    stored = results.get("setup")
    if stored and any(stored.get(k) != setup[k] for k in ("images_seen", "recipe",
                                                          "recipe_overrides", "model_overrides")):
        raise ValueError(f"{out} holds an experiment with another budget or recipe; choose "
                         "another out_dir=, or repeat the same settings to continue it")
    results["setup"] = setup
    for model_name, teacher in arms(experiment.models, experiment.teacher):
        for fraction in experiment.fractions:
            for seed in experiment.seeds:
                arm = model_name if teacher is None else distilled_name(model_name, teacher)
                key = f"{arm}|{fraction:g}|{seed}"
                if key in results["runs"]:
                    continue
                subset = balanced_subset(experiment.train_set, fraction, seed)
                results["runs"][key] = _one_run(experiment, model_name, subset, fraction, seed,
                                                teacher)
                write_json(out / RESULTS_NAME, results)
    results["summary"] = summarise(results["runs"])
    write_json(out / RESULTS_NAME, results)
    plot(results["summary"], out / PLOT_NAME, experiment.test_set.num_classes)
    return results


def arms(models: list[str], teacher: str | None) -> list[tuple[str, str | None]]:
    """(model, teacher or None) in the order they train: the teacher first, then the models,
    then each other model distilled from the teacher (DeiT) at the same size and seed."""
    if teacher is not None and teacher not in models:
        raise ValueError(f"teacher={teacher!r} must be one of the models {models}")
    ordered = sorted(models, key=lambda name: name != teacher)
    return [(name, None) for name in ordered] + [
        (name, teacher) for name in ordered if teacher is not None and name != teacher]


def distilled_name(model: str, teacher: str) -> str:
    return f"{model} distilled from {teacher}"


def _folder(experiment: Experiment, arm: str, fraction: float, seed: int) -> Path:
    return Path(experiment.out_dir) / "runs" / f"{arm.replace(' ', '_')}_f{fraction:g}_s{seed}"


def _one_run(experiment: Experiment, model_name: str, subset: ImageTensorDataset,
             fraction: float, seed: int, teacher: str | None = None) -> dict[str, Any]:
    """One training run on `subset` (resumed if its folder holds an interrupted one), then
    its test accuracy on the whole test set: `plan_training` with the budget's epochs; with
    a `teacher`, distilled from that model's run at the same fraction and seed."""
    arm = model_name if teacher is None else distilled_name(model_name, teacher)
    folder = _folder(experiment, arm, fraction, seed)
    taught_by = None if teacher is None else _folder(experiment, teacher, fraction, seed)
    epochs = experiment.images_seen / len(subset)
    overrides = {**(experiment.recipe_overrides or {}),
                 "batch_size": min(experiment.batch_size, len(subset)), "epochs": epochs}
    started = time.perf_counter()
    planned = plan_training(
        DataSplits(train=subset, val=None, test=experiment.test_set, name="subset"), folder,
        model=model_name, recipe=experiment.recipe, overrides=overrides,
        model_args=experiment.model_overrides, img_size=max(subset.images.shape[-2:]),
        seed=seed, precision=experiment.precision,
        resume=(folder / "state" / "last.pt").exists(), progress=experiment.progress,
        teacher=None if taught_by is None else taught_by / "checkpoint")
    summary = planned.fit()
    return {"model": arm, "fraction": fraction, "seed": seed,
            "train_images": len(subset), "epochs": round(epochs, 3), "steps": summary["steps"],
            "test_top1": summary["test_top1"], "seconds": round(time.perf_counter() - started, 1),
            "parameters": sum(p.numel() for p in planned.model.parameters())}


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per model, per training-set size: the mean and spread (std) of test top-1 over seeds."""
    grouped: dict[str, dict[int, list[float]]] = {}
    for run in runs.values():
        grouped.setdefault(run["model"], {}).setdefault(run["train_images"], []).append(
            run["test_top1"])
    return {
        model: [{"train_images": size, "mean": statistics.fmean(scores),
                 "std": statistics.pstdev(scores) if len(scores) > 1 else 0.0,
                 "seeds": len(scores)} for size, scores in sorted(sizes.items())]
        for model, sizes in grouped.items()
    }


def crossings(summary: dict[str, list[dict[str, Any]]], first: str, second: str
              ) -> list[float]:
    """Training-set sizes where `first`'s mean accuracy crosses `second`'s (interpolated on a
    log scale between measured sizes)."""
    a = {row["train_images"]: row["mean"] for row in summary.get(first, [])}
    b = {row["train_images"]: row["mean"] for row in summary.get(second, [])}
    sizes = sorted(set(a) & set(b))
    found = []
    for low, high in zip(sizes, sizes[1:], strict=False):
        d0, d1 = a[low] - b[low], a[high] - b[high]
        if d0 == 0:
            found.append(float(low))
        elif d0 * d1 < 0:
            t = d0 / (d0 - d1)
            found.append(math.exp(math.log(low) + t * (math.log(high) - math.log(low))))
    return found


def plot(summary: dict[str, list[dict[str, Any]]], path: Path, num_classes: int) -> None:
    """Test top-1 against training-set size, one line per model (mean, with the seeds'
    spread as a band), log-scaled sizes: the analogue of the paper's Figures 3 and 4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for model, rows in summary.items():
        sizes = [row["train_images"] for row in rows]
        means = [row["mean"] for row in rows]
        spread = [row["std"] for row in rows]
        ax.plot(sizes, means, marker="o", label=model)
        ax.fill_between(sizes, [m - s for m, s in zip(means, spread, strict=True)],
                        [m + s for m, s in zip(means, spread, strict=True)], alpha=0.2)
    ax.axhline(1 / max(num_classes, 1), color="grey", linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("test top-1")
    ax.set_title("Accuracy against training-set size (cf. paper Figs. 3-4)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _setup(experiment: Experiment) -> dict[str, Any]:
    return {"models": experiment.models, "fractions": experiment.fractions,
            "seeds": experiment.seeds, "images_seen": experiment.images_seen,
            "budget": "equal images seen per run", "recipe": experiment.recipe,
            "recipe_overrides": experiment.recipe_overrides or {},
            "model_overrides": experiment.model_overrides or {},
            "teacher": experiment.teacher,
            "train_images": len(experiment.train_set), "test_images": len(experiment.test_set)}


def _read_results(out: Path) -> dict[str, Any]:
    path = out / RESULTS_NAME
    if path.exists():
        try:
            results = json.loads(path.read_text())
            if isinstance(results, dict) and isinstance(results.get("runs"), dict):
                return results
        except ValueError:
            pass
    return {"runs": {}}
