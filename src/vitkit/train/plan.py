"""`plan_training`: every decision a training run needs, made in the library from what the
caller gives (data and a run folder; optionally a model, pretrained weights, a recipe and its
overrides, a device, a precision, a time budget and a seed). It returns a `PlannedRun`:
`print(run)` states the plan, `run.fit()` trains, tests the best checkpoint on the test split
and writes metrics.json. `vitkit train`, `finetune`, `pretrain`, `demo` and `experiment` are
this call with their flags, so Python and the command line train the same model.

    import vitkit
    run = vitkit.plan_training(data="digits", out="runs/digits", overrides={"epochs": 5})
    print(run)
    summary = run.fit()
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DataSplits, ImageTensorDataset, load_splits, load_unlabelled
from ..device import default_device, evaluation_dtype, torch_threads
from ..files import write_json
from ..infer import evaluate
from ..models import MaskedPatchPrediction
from ..models.config import RESNET_PRESETS
from ..weights import load_pretrained
from . import defaults
from .distill import Distillation
from .distributed import is_main_process
from .lock import run_folder_lock
from .objectives import OBJECTIVES, Classification, MaskedPatch, Objective
from .precision import step_seconds, training_dtype
from .recipes import Recipe, get_recipe, list_recipes
from .trainer import TrainRun, train

# TrainRun fields a caller may pass through plan_training's **run_options.
RUN_OPTIONS = ("save_every", "stop_after", "log_every", "compile", "data_on_device", "workers",
               "decode_on_device", "grad_checkpointing", "fsdp")


@dataclass(frozen=True)
class PlannedRun:
    """A run decided in full: `run` is what the trainer takes, `notes` what the plan says
    (the model, the plan line with its timed estimate, the recipe, the data, a hint)."""

    run: TrainRun
    splits: DataSplits
    notes: tuple[str, ...] = ()
    threads: int | None = None

    @property
    def recipe(self) -> Recipe:
        return self.run.recipe

    @property
    def model(self) -> nn.Module:
        return self.run.model

    def __str__(self) -> str:
        return "\n".join(self.notes)

    def fit(self) -> dict[str, Any]:
        """Train (holding the run folder's lock), then test the saved checkpoint on the test
        split; returns the summary, also written to OUT/metrics.json when the run finished."""
        out = Path(self.run.out_dir)
        with _run_folder(out), torch_threads(self.threads):
            result = train(self.run)
            summary = {"steps": result.steps, "epochs": round(result.epochs, 3),
                       "seconds": round(result.seconds, 1),  # this session's; with earlier:
                       "seconds_total": round(result.total_seconds or result.seconds, 1),
                       "images_per_s": round(result.images_per_s, 1),
                       "best_val_top1": result.best_val_top1, "finished": result.finished,
                       "skipped_images": skipped_count(self.splits),
                       "checkpoint": str(result.checkpoint)}
            test = self.splits.test
            if not is_main_process() or not result.finished:
                return summary
            if test is not None and result.checkpoint.exists():
                best = load_pretrained(result.checkpoint)
                device = self.run.device or default_device()
                summary["test_top1"] = evaluate(best, test, dtype=evaluation_dtype(device),
                                                device=device)["top1"]
            write_json(out / "metrics.json", summary)
        return summary


def plan_training(
    data: str | os.PathLike | DataSplits | ImageTensorDataset,
    out: str | os.PathLike,
    *,
    model: str | None = None,
    pretrained: str | os.PathLike | None = None,
    recipe: str | os.PathLike | Recipe | None = None,
    overrides: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
    img_size: int | None = None,
    objective: str = "classification",
    teacher: str | os.PathLike | nn.Module | None = None,
    seed: int = 0,
    device: str | None = None,
    precision: str = "auto",
    time_budget: float | None = None,
    val_split: float | None = None,
    data_dir: str | None = None,
    memory_budget: int | None = None,
    resume: bool = False,
    threads: int | None = None,
    progress: bool = True,
    **run_options: Any,
) -> PlannedRun:
    """Decide a training run: load `data` (a source name or path, or datasets), choose the
    model (`model`, or one fitted to the data; `pretrained` weights to fine-tune), the
    recipe (a name, a saved recipe.json or a Recipe; default small-data, paper-finetune with
    `pretrained`, masked-patch for that objective) with `overrides` applied, the batch for
    small data and the epochs for `time_budget` seconds (default 30 min on a CPU, 3 h on a
    GPU) unless given. With a `teacher` (a checkpoint or a model), the student gets DeiT's
    distillation token and learns from the teacher too (the recipe's distill, distill_alpha,
    distill_tau). Nothing is trained until `fit()`.

    run_options: further TrainRun fields (save_every, stop_after, log_every, compile,
    data_on_device, workers, decode_on_device, grad_checkpointing, fsdp)."""
    unknown = sorted(set(run_options) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"plan_training got unknown options {unknown}; it takes "
                        f"{', '.join(RUN_OPTIONS)} besides its named arguments")
    overrides, model_args = dict(overrides or {}), dict(model_args or {})
    task = _objective(objective)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is an existing file, not a folder; choose a folder "
                         "for the run")
    if pretrained is None:
        defaults.check_model_choice(model, img_size, model_args)
    base = _base_recipe(recipe, pretrained, task)  # a bad recipe fails before any decoding
    with _run_folder(out), torch_threads(threads):
        if not resume and (out / "state" / "last.pt").exists():
            raise ValueError(f"{out} already holds a run ({out / 'state' / 'last.pt'}); pass "
                             "resume=True to continue it, or choose another out=")
        splits, probe = _load_data(data, pretrained, model, img_size, task, val_split, seed,
                                   data_dir, memory_budget, progress)
        chosen = _recipe(base, overrides, splits, out, resume)
        if teacher is not None and not _masked(task) and pretrained is None:
            # DeiT's distillation token; its heads read the [class] and distillation tokens
            model_args = {"global_pool": "token", "fc_norm": False, **model_args,
                          "distilled": True}
        target = torch.device(device) if device else default_device()
        net, mean, std = _build_model(splits, chosen, model, pretrained, probe, img_size,
                                      model_args, task, seed, target)
        if teacher is not None:
            task = _distillation(teacher, net, chosen, splits, task)
        chosen, notes = _fit_to_device(net, splits, chosen, overrides, target, precision, task,
                                       time_budget, pretrained is None and not _masked(task),
                                       str(data), free=_is_free(recipe, resume, out))
    run = TrainRun(model=net, train_set=splits.train, val_set=splits.val, recipe=chosen,
                   out_dir=out, seed=seed, precision=precision, device=device, mean=mean,
                   std=std, resume=resume, progress=progress,
                   objective=None if isinstance(task, Classification) else task,  # None:
                   # classification with the recipe's label smoothing
                   **run_options)
    return PlannedRun(run=run, splits=splits, notes=notes, threads=threads)


# -- the recipe --------------------------------------------------------------------------------
def _base_recipe(recipe: str | os.PathLike | Recipe | None, pretrained: object,
                 task: Objective) -> Recipe | str:
    """A Recipe as given or read from a file (taken as it is), or a checked recipe name."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is None:
        return ("masked-patch" if _masked(task) else "paper-finetune" if pretrained is not None
                else "small-data")
    if defaults.is_recipe_file(recipe):
        return defaults.read_recipe(recipe)
    if recipe not in list_recipes():
        raise ValueError(f"unknown recipe {recipe!r}: give one of {', '.join(list_recipes())}, "
                         "a recipe.json file or a Recipe")
    return str(recipe)


def _recipe(base: Recipe | str, overrides: dict[str, Any], splits: DataSplits, out: Path,
            resume: bool) -> Recipe:
    """The named recipe with the data's defaults under the caller's overrides, its warmup
    fitted to the run and its batch to small data; a given Recipe or recipe.json with the
    overrides only. On resume, the schedule, layer decay and LoRA the run started with."""
    train_set = splits.train
    if isinstance(base, Recipe):
        recipe = base.replace(**overrides)
    else:
        data_defaults = defaults.data_recipe_defaults(base, train_set.image_shape, splits.name)
        recipe = get_recipe(base, **{**data_defaults, **overrides})
        recipe = defaults.fit_warmup(recipe, given="warmup_epochs" in overrides)
        if "batch_size" not in overrides:
            recipe = defaults.fit_batch(recipe, len(train_set))
    saved = out / "recipe.json"
    if resume and saved.exists():  # the schedule must stay the one the run started with
        before = defaults.read_recipe(saved)
        recipe = recipe.replace(**{key: getattr(before, key) for key in (
            "epochs", "batch_size", "warmup_epochs", "layer_decay", "lora_rank", "lora_alpha",
            "lora_dropout") if key not in overrides})
    return recipe


def _is_free(recipe: object, resume: bool, out: Path) -> bool:
    """Whether vitkit may fit the epochs to the time budget: a named recipe, a new run."""
    given = isinstance(recipe, Recipe) or (recipe is not None and defaults.is_recipe_file(recipe))
    return not given and not (resume and (out / "recipe.json").exists())


# -- the data and the model --------------------------------------------------------------------
def _load_data(data, pretrained, model, img_size, task, val_split, seed, data_dir,
               memory_budget, progress) -> tuple[DataSplits, nn.Module | None]:
    """The splits (decoded at the pretrained model's size and channels when fine-tuning),
    and the pretrained model read to learn them."""
    probe = None
    if pretrained is not None:
        from ..factory import create_model

        probe = create_model(model, pretrained=pretrained)
        img_size = img_size or probe.config.img_size[0]
    if isinstance(data, DataSplits):
        return data, probe
    if isinstance(data, ImageTensorDataset):
        return DataSplits(train=data, val=None, test=None, name="data"), probe
    source = str(data)
    if _masked(task):
        images = load_unlabelled(source, img_size=img_size, data_dir=data_dir, progress=progress)
        return DataSplits(train=images, val=None, test=None, name=source), probe
    in_chans = probe.config.in_chans if probe is not None else None
    splits = load_splits(source, img_size=img_size, in_chans=in_chans, val_split=val_split,
                         seed=seed, data_dir=data_dir, progress=progress,
                         memory_budget=memory_budget)
    return splits, probe


def _build_model(splits, recipe, name, pretrained, probe, img_size, model_args, task, seed,
                 device: torch.device) -> tuple[nn.Module, list[float] | None, list[float] | None]:
    """The model the recipe asks for (its stochastic depth, dropout and representation
    layer), seeded by `seed`; the normalisation to train with (None: the data's own)."""
    from ..factory import create_model

    train_set = splits.train
    classes = 0 if _masked(task) else train_set.num_classes
    if pretrained is not None:
        size = img_size or probe.config.img_size[0]
        embed_dim = getattr(probe.config, "embed_dim", None)
        torch.manual_seed(seed)
        net = create_model(name, pretrained=pretrained, **{
            "num_classes": classes, "img_size": size,
            **defaults.model_overrides(recipe, embed_dim), **model_args})
        if recipe.zero_head:
            net.reset_classifier(classes)  # Section 3.2: a zero-initialised head
        prep = net.meta.preprocessing
        return net.train(), list(prep.mean), list(prep.std)
    if name is None:
        name, config = defaults.default_model(
            train_set.image_shape, classes, img_size,
            None if _masked(task) else len(train_set), device.type)
    else:
        config = {"num_classes": classes, "in_chans": train_set.image_shape[0],
                  **({"img_size": img_size} if img_size else {})}
        if name in RESNET_PRESETS and not img_size:  # a CNN has no native size: the data's
            config["img_size"] = max(train_set.image_shape[1:])
    from ..models import get_config

    embed_dim = model_args.get("embed_dim", getattr(get_config(name), "embed_dim", None))
    changes = defaults.model_overrides(recipe, embed_dim)
    if _masked(task):
        changes = {**changes, "representation_size": None}
    torch.manual_seed(seed)
    net = create_model(name, **{**config, **changes, **model_args})
    return (MaskedPatchPrediction(net) if _masked(task) else net), None, None


def _distillation(teacher, net: nn.Module, recipe: Recipe, splits: DataSplits,
                  task: Objective) -> Distillation:
    """The distillation objective with `teacher` (a checkpoint path or a model), the student
    set to return its two heads apart while training."""
    if _masked(task):
        raise ValueError("teacher= distils a classifier; it does not combine with "
                         "objective='masked-patch'")
    if not isinstance(teacher, nn.Module):
        teacher = load_pretrained(teacher)
    classes = splits.train.num_classes
    if getattr(teacher.config, "num_classes", None) != classes:
        raise ValueError(f"the teacher predicts {teacher.config.num_classes} classes but the data "
                         f"has {classes}; give teacher= a model trained on these classes")
    if getattr(net, "head_dist", None) is None:
        raise ValueError("teacher= needs a student with a distillation token: a ViT built with "
                         "distilled=True (pretrained= a distilled DeiT when fine-tuning)")
    net.set_distilled_training(True)
    return Distillation(teacher, kind=recipe.distill, alpha=recipe.distill_alpha,
                        tau=recipe.distill_tau, label_smoothing=recipe.label_smoothing)


# -- fitting the run to the device -------------------------------------------------------------
def _fit_to_device(net, splits, recipe, overrides, device, precision, task, time_budget,
                   from_scratch, source, free) -> tuple[Recipe, tuple[str, ...]]:
    """The epochs fitted to the time budget (when the caller left them open, and not under
    torchrun, where every rank must agree), and the notes that state the plan."""
    if not is_main_process():
        return recipe, ()
    size = len(splits.train)
    dtype = training_dtype(net, precision, device, recipe.batch_size, objective=task)
    step_s = step_seconds(net, recipe.batch_size, device, dtype, task)
    alone = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if free and "epochs" not in overrides and alone:
        budget = time_budget or defaults.TIME_BUDGET_S.get(device.type,
                                                           defaults.TIME_BUDGET_S["cpu"])
        epochs = defaults.fit_epochs(recipe, step_s * max(size // recipe.batch_size, 1), budget)
        if epochs != recipe.epochs:
            recipe = defaults.fit_warmup(recipe.replace(epochs=epochs),
                                         given="warmup_epochs" in overrides)
    notes = [_model_line(net, task), plan_line(net, recipe, size, device, step_s)]
    photos = min(net.config.img_size) >= 64  # what pretrained ViTs are made for
    hint = defaults.small_data_hint(size, source) if from_scratch and photos else None
    notes += [hint] if hint else []
    notes += [f"recipe {recipe.name}: " + json.dumps({k: v for k, v in recipe.to_dict().items()
                                                 if k != "name"}), _data_line(splits)]
    return recipe, tuple(notes)


def plan_line(model: nn.Module, recipe: Recipe, train_size: int, device: torch.device,
              step_s: float) -> str:
    """One line: model, size, epochs, batch, steps and the estimated time."""
    steps_per_epoch = max(train_size // recipe.batch_size, 1)
    steps = max(1, round(recipe.epochs * steps_per_epoch))
    height, width = model.config.img_size
    size = f"{height} px" if height == width else f"{height}x{width} px"
    return (f"plan: {model.meta.name or 'model'} at {size}, {recipe.epochs:g} epochs of "
            f"{train_size} images, batch {recipe.batch_size} ({steps} steps); about "
            f"{defaults.describe_time(steps * step_s)} on {device.type} "
            f"({step_s:.2f} s/step, from timed steps)")


def _model_line(net: nn.Module, task: Objective) -> str:
    count = sum(p.numel() for p in net.parameters())
    patch = getattr(net.config, "patch_size", None)
    what = "pre-training by masked patch prediction" if _masked(task) else "model"
    return (f"{what} {net.meta.name} ({count:,} parameters), img_size {net.config.img_size[0]}"
            + (f", patch {patch}" if patch else ""))


def _data_line(splits: DataSplits) -> str:
    sizes = ", ".join(f"{len(d) if d is not None else 0} {name}" for name, d in (
        ("train", splits.train), ("val", splits.val), ("test", splits.test)))
    return (f"data {splits.name}: {sizes} images, {splits.train.num_classes} classes, "
            f"{skipped_count(splits)} skipped")


def skipped_count(splits: DataSplits) -> int:
    """Files left out as undecodable, over every split (each file counted once)."""
    paths = {path for split in (splits.train, splits.val, splits.test) if split is not None
             for path, _ in split.skipped}
    return len(paths)


# -- small helpers -----------------------------------------------------------------------------
def _objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {name!r}")
    return MaskedPatch() if name == "masked-patch" else Classification()


def _masked(task: Objective) -> bool:
    return isinstance(task, MaskedPatch)


def _run_folder(out: Path) -> contextlib.AbstractContextManager:
    """The run folder's lock (rank 0 alone under torchrun): a second run into `out` stops
    at once; re-entered by the same process, it is held already."""
    return run_folder_lock(out) if is_main_process() else contextlib.nullcontext()


__all__ = ["PlannedRun", "plan_line", "plan_training", "skipped_count"]
