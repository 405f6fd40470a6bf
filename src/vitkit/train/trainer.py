"""The training loop, top to bottom: the feeder hands each step its micro-batches on the
device, augmented; forward/backward (with accumulation), clip, step, EMA, log, evaluate at
epoch ends, checkpoint atomically.

Nothing waits on the device inside the loop: the loss is summed on the device and read every
`log_every` steps, at epoch ends and before every save. A non-finite loss is noted there (with
its step) and stops the run; since a checkpoint is only written after that check, the last
one on disk is always from before the first bad step (`resume=True` continues from it).

Exact resume: see `feed.py` (the data order and the per-step reseed), so a run resumed from
the state after step k ends with bitwise-identical weights on the CPU.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageTensorDataset
from ..device import compile_options, default_device, evaluation_dtype
from ..errors import TrainingError
from ..infer import evaluate
from ..models import Preprocessing, VisionTransformer
from ..weights import save_pretrained
from .augment import BatchAugment, channel_stats
from .checkpoint import (
    check_same_structure,
    load_state,
    remove_stale_temporaries,
    rng_state,
    save_state,
    set_rng_state,
)
from .distributed import DistInfo, cleanup, from_rank_zero, init_from_env, shard
from .ema import make_ema
from .feed import Feeder, batch_indices, make_feeder, step_batches
from .lora import add_lora, has_lora, merged_state
from .metrics import MetricsLog
from .objectives import Classification, Objective
from .optim import build_optimizer, lr_at, set_lr
from .precision import check_float8_training, to_float8_training, training_dtype
from .recipes import Recipe
from .sharding import (
    check_fsdp,
    full_state,
    is_sharded,
    restore_weights,
    shard_model,
    submodule_weights,
)
from .watch import Clock, LossWatch

log = logging.getLogger("vitkit")


@dataclass(frozen=True)
class TrainRun:
    """What to train, on what, how, and where to write it: the run's one configuration,
    fixed for its whole life (`State` holds what changes)."""

    model: VisionTransformer
    train_set: ImageTensorDataset
    recipe: Recipe
    out_dir: Path
    val_set: ImageTensorDataset | None = None
    seed: int = 0
    precision: str = "auto"  # 'auto' (bf16 where native), 'fp32', 'bf16', 'fp8' (see precision)
    device: str | None = None
    mean: list[float] | None = None  # None: the training set's own channel statistics
    std: list[float] | None = None
    save_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    resume: bool = False
    stop_after: int | None = None  # stop (checkpointed) after this many steps in total
    progress: bool = True
    log_every: int = 10
    compile: bool | None = None  # torch.compile the model (None: on for CUDA, off on the CPU)
    data_on_device: bool | None = None  # None: when it takes under half the free memory
    workers: int | None = None  # processes decoding streamed shards (None: auto; 0: threads)
    decode_on_device: bool | None = None  # streamed JPEGs decoded by nvJPEG (None: on CUDA)
    objective: Objective | None = None  # None: classification
    grad_checkpointing: bool = False  # recompute block activations in the backward pass
    fsdp: bool = False  # shard parameters, gradients and optimizer state across ranks (FSDP2)


@dataclass
class TrainResult:
    steps: int
    epochs: float
    seconds: float
    images_per_s: float
    best_val_top1: float | None
    final_val_top1: float | None
    finished: bool
    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    total_seconds: float | None = None  # with the sessions before a resume


@dataclass(frozen=True)
class Plan:
    """Everything fixed before the first step: where and in what the run computes, its
    schedule in steps, and its augmentation (derived from the TrainRun, never changed)."""

    device: torch.device
    dtype: torch.dtype
    dist: DistInfo
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    augment: BatchAugment
    feeder: Feeder
    objective: Objective
    state_dir: Path
    checkpoint_dir: Path

    def epoch(self, step: int) -> float:
        return round(step / self.steps_per_epoch, 4)


@dataclass
class State:
    """What changes as the run goes, and what a checkpoint holds."""

    model: VisionTransformer
    optimizer: torch.optim.Optimizer
    ema: nn.Module | None
    step: int = 0
    best: float = -1.0  # the best validation top-1 so far (-1: none yet)
    watch: LossWatch | None = None
    seconds_before: float = 0.0  # training time of the sessions before a resume
    started: float = field(default_factory=time.perf_counter)


def train(run: TrainRun) -> TrainResult:
    """Train `run.model` by `run.recipe`; writes OUT/checkpoint (save_pretrained), OUT/state,
    OUT/recipe.json, OUT/metrics.jsonl and OUT/tensorboard. Raises TrainingError on a
    non-finite loss or a full disk, keeping the last good checkpoint."""
    saved = read_saved_state(run)
    plan = make_plan(run, saved)
    state = start_or_resume(run, plan, saved)
    net = _compiled(_data_parallel(state.model, plan), run, plan)
    order = functools.partial(step_indices, run, plan)
    batches = step_batches(plan.feeder, order, state.step, plan.total_steps, seed=run.seed,
                           rank=plan.dist.rank, augment=plan.augment,
                           accum_steps=run.recipe.accum_steps)
    metrics = MetricsLog(Path(run.out_dir), plan.dist.is_main,
                         state.step if run.resume else None)
    bar = tqdm(total=plan.total_steps, initial=state.step, desc=f"train {run.recipe.name}",
               disable=not (run.progress and plan.dist.is_main), unit="step", dynamic_ncols=True)
    clock = Clock()
    last_val = None
    net.train()
    try:
        for step, micro_batches in zip(range(state.step, plan.total_steps), batches,
                                       strict=False):
            lr = lr_at(step, plan.total_steps, plan.warmup_steps, run.recipe)
            set_lr(state.optimizer, lr)
            state.watch.add(train_step(run.recipe, plan, state, net, micro_batches), step + 1)
            state.step = step + 1
            clock.tick(run.recipe.batch_size)
            bar.update(1)
            epoch_end = state.step % plan.steps_per_epoch == 0 or state.step == plan.total_steps
            stopping = run.stop_after is not None and state.step >= run.stop_after
            saving = epoch_end or stopping or (run.save_every and state.step % run.save_every == 0)
            if state.step % run.log_every == 0 or state.step == plan.total_steps:
                log_window(plan, state, metrics, bar, clock, lr)  # the loop's one host sync
            elif saving:
                check_finite(plan, state)  # never save weights after a non-finite loss
            if epoch_end and run.val_set is not None:
                last_val = end_of_epoch(run, plan, state, metrics, bar, clock.elapsed())
            if saving:
                save_training_state(run, plan, state)
            if stopping:
                break
    finally:
        bar.close()
        metrics.close()
        plan.feeder.close()
    return finish(run, plan, state, clock, last_val)


# -- before the first step -------------------------------------------------------------------
def make_plan(run: TrainRun, saved: dict[str, Any] | None = None) -> Plan:
    """Check the data against the model, fix the device, precision and schedule, record the
    preprocessing and class names on the model, and build the augmentation."""
    recipe, data, model = run.recipe, run.train_set, run.model
    objective = run.objective or Classification(recipe.label_smoothing)
    _check_data(data, model, recipe.batch_size, objective.uses_labels)
    device = torch.device(run.device) if run.device else default_device()
    dist = init_from_env(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    check_fsdp(run.fsdp, run.recipe.ema, dist)
    check_float8_training(run.precision, run.recipe.lora_rank, run.fsdp)
    mean, std = (run.mean, run.std) if run.mean is not None and run.std is not None else (
        channel_stats(data.images))
    model.to(device)
    if run.grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ValueError(f"{type(model).__name__} has no gradient checkpointing; train it "
                             "with grad_checkpointing=False")
        model.set_grad_checkpointing(True)
    model.meta.class_names = list(data.classes) if objective.uses_labels else None
    # Training resizes (if at all) to the model's size without cropping: crop_pct 1.
    model.meta.preprocessing = Preprocessing(mean=mean, std=std, crop_pct=1.0)
    if hasattr(objective, "student"):  # a teacher sees the inputs in its own normalisation
        objective.student = model.meta.preprocessing
    steps_per_epoch = len(data) // recipe.batch_size
    total_steps = max(1, math.ceil(recipe.epochs * steps_per_epoch))
    out = Path(run.out_dir)
    feeder = make_feeder(data, device, run.data_on_device, workers=run.workers,
                         decode_on_device=run.decode_on_device)
    if dist.is_main:
        log.info("data: %s", feeder.how)
    # Timed on each process, but every rank must compute in the same dtype: rank 0's. A
    # resumed run keeps the dtype it started in.
    chosen = _saved_dtype(run, saved) or training_dtype(
        model, run.precision, device, recipe.batch_size, objective=objective)
    bf16 = chosen == torch.bfloat16
    dtype = torch.bfloat16 if from_rank_zero(bf16, dist, device) else torch.float32
    return Plan(
        device=device, dtype=dtype, dist=dist, feeder=feeder, objective=objective,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        warmup_steps=min(round(recipe.warmup_epochs * steps_per_epoch), total_steps - 1),
        augment=BatchAugment(recipe, data.num_classes, model.meta.preprocessing,
                             tuple(model.config.img_size), tuple(data.images.shape[-2:])),
        state_dir=out / "state", checkpoint_dir=out / "checkpoint",
    )


def _saved_dtype(run: TrainRun, saved: dict[str, Any] | None) -> torch.dtype | None:
    """On resume with precision 'auto', the dtype the run was started in (None otherwise)."""
    if saved is None or run.precision != "auto":
        return None
    return {"bf16": torch.bfloat16, "fp32": torch.float32}.get(saved.get("dtype"))


def _check_data(data: ImageTensorDataset, model: VisionTransformer, batch: int,
                labelled: bool) -> None:
    if batch > len(data):
        raise ValueError(
            f"batch size {batch} is larger than the training set ({len(data)} images); "
            f"use batch_size={len(data)} or less"
        )
    channels, in_chans = data.images.shape[1], model.config.in_chans
    if channels != in_chans:
        raise ValueError(f"the data has {channels}-channel images but the model takes {in_chans};"
                         f" choose a model with in_chans={channels}")
    if labelled and data.num_classes != model.config.num_classes:
        raise ValueError(f"the data has {data.num_classes} classes but the model has "
                         f"{model.config.num_classes}")


def read_saved_state(run: TrainRun) -> dict[str, Any] | None:
    """OUT/state/last.pt when resuming (temporaries of a killed save removed first)."""
    if not run.resume:
        return None
    state_dir = Path(run.out_dir) / "state"
    remove_stale_temporaries(state_dir)
    remove_stale_temporaries(Path(run.out_dir) / "checkpoint")
    return load_state(state_dir)


def start_or_resume(run: TrainRun, plan: Plan, saved: dict[str, Any] | None) -> State:
    """A fresh optimizer and EMA, or everything restored from OUT/state with --resume; a
    run folder that already holds a run needs --resume. LoRA adapters (lora_rank=) are added
    first, then float8 layers swapped in (precision='fp8'), then with --fsdp the model is
    sharded, so that the optimizer holds only this rank's trainable shards."""
    out, model = Path(run.out_dir), run.model
    if saved is not None:
        check_same_structure(saved.get("recipe", {}), run.recipe)
    if run.recipe.lora_rank:
        add_lora(model, run.recipe)  # before sharding and the optimizer: they see the adapters
    if run.precision == "fp8":
        to_float8_training(model, plan.device)  # before the optimizer and the EMA copy
    if run.fsdp:
        shard_model(model, plan.dist, plan.device)
    optimizer = build_optimizer(model, run.recipe)
    ema = make_ema(model, run.recipe.ema_decay) if run.recipe.ema else None
    state = State(model, optimizer, ema, watch=LossWatch(plan.device))
    if saved is not None:
        restore_weights(model, optimizer, saved, run.fsdp)
        if ema is not None and saved.get("ema") is not None:
            ema.load_state_dict(saved["ema"])
        set_rng_state(saved["rng"])
        state.step, state.best = int(saved["step"]), float(saved["best_val_top1"])
        if saved.get("loss_window") is not None:
            state.watch.load_state_dict(saved["loss_window"])
        state.seconds_before = float(saved.get("seconds", 0.0))
        _warn_recipe_changes(saved.get("recipe", {}), run.recipe)
        if plan.dist.is_main:
            log.info("resuming %s from step %d (epoch %.2f)", out, state.step,
                     state.step / plan.steps_per_epoch)
    elif (plan.state_dir / "last.pt").exists():
        raise ValueError(
            f"{out} already holds a run ({plan.state_dir / 'last.pt'}); pass resume=True to "
            "continue it, or choose another out="
        )
    if plan.dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(run.recipe.to_json())
    return state


def _data_parallel(model: VisionTransformer, plan: Plan) -> nn.Module:
    """The model wrapped in DistributedDataParallel under torchrun (sharded models do their
    own gradient reduction), else the model itself."""
    if not plan.dist.enabled or is_sharded(model):
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [plan.device.index] if plan.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _compiled(net: nn.Module, run: TrainRun, plan: Plan) -> nn.Module:
    """`torch.compile` of the (data-parallel) model when asked, or by default on CUDA; the
    weights stay shared with the uncompiled model, which evaluation and saving use."""
    wanted = run.compile if run.compile is not None else plan.device.type == "cuda"
    if not wanted:
        return net
    if plan.dist.is_main:
        log.info("compiling the model with torch.compile (the first steps take a while)")
    return torch.compile(net, options=compile_options(plan.device))


# -- one step --------------------------------------------------------------------------------
def train_step(recipe: Recipe, plan: Plan, state: State, net: nn.Module,
               micro_batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One optimizer step on this rank's share of the step's global batch, accumulated over
    its micro-batches; returns the mean loss, on the device."""
    accum_steps = recipe.accum_steps
    loss_sum = torch.zeros((), device=plan.device)
    bf16 = plan.dtype == torch.bfloat16
    for i, (inputs, labels) in enumerate(micro_batches):
        # DDP all-reduces gradients in every backward; only the last micro-batch needs to.
        last = i == accum_steps - 1
        sync = net.no_sync() if not last and hasattr(net, "no_sync") else contextlib.nullcontext()
        with sync:
            with torch.autocast(plan.device.type, torch.bfloat16, enabled=bf16):
                loss = plan.objective.loss(net, inputs, labels)
            (loss / accum_steps).backward()  # the mean over the step's micro-batches
        loss_sum += loss.detach()  # summed on the device: reading it would wait for it
    if recipe.grad_clip > 0:
        nn.utils.clip_grad_norm_(state.model.parameters(), recipe.grad_clip)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)  # frees the gradients' memory until next time
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    return loss_sum / accum_steps


def step_indices(run: TrainRun, plan: Plan, step: int) -> torch.Tensor:
    """This rank's sample indices at `step`."""
    return shard(batch_indices(len(run.train_set), run.recipe.batch_size, run.seed, step,
                               plan.steps_per_epoch), plan.dist)


# -- logging, end of an epoch, saving --------------------------------------------------------
def log_window(plan: Plan, state: State, metrics: MetricsLog, bar: tqdm, clock: Clock,
               lr: float) -> None:
    """Read the loss from the device (the loop's sync point), stop on a non-finite one, and
    log the mean loss since the last log with the rate of the window."""
    loss, first_bad = state.watch.read(plan.dist)
    if first_bad >= 0:
        raise TrainingError(_nonfinite_message(first_bad, plan.state_dir))
    rate = clock.rate()
    metrics.write(state.step, {"epoch": plan.epoch(state.step), "loss": loss, "lr": lr,
                               "images_per_s": rate})
    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
    clock.new_window()


def check_finite(plan: Plan, state: State) -> None:
    """Stop on a non-finite loss since the last check (before anything is saved)."""
    first = state.watch.first_bad_step(plan.dist)
    if first >= 0:
        raise TrainingError(_nonfinite_message(first, plan.state_dir))


def end_of_epoch(run: TrainRun, plan: Plan, state: State, metrics: MetricsLog, bar: tqdm,
                 elapsed: float) -> float:
    """Evaluate the model (and its EMA) on the validation set, log the scores, and save the
    best weights so far as OUT/checkpoint; returns the better score."""
    candidates = {"val_top1": state.model}
    if state.ema is not None:
        candidates["val_top1_ema"] = state.ema.module
    batch = 1024 if plan.device.type == "cuda" else 256  # large batches where they pay off
    # In the dtype of `vitkit eval`, not the training one: the best checkpoint is chosen by
    # the number that evaluating it later reports.
    dtype = evaluation_dtype(plan.device)
    scores = {key: evaluate(model, run.val_set, batch_size=batch, dtype=dtype,
                            device=plan.device)["top1"] for key, model in candidates.items()}
    winner = max(scores, key=scores.get)
    metrics.write(state.step, {"epoch": plan.epoch(state.step), **scores,
                               "elapsed_s": round(elapsed, 1)})
    if scores[winner] > state.best:
        state.best = scores[winner]
        save_weights(candidates[winner], state.model, plan)
    if plan.dist.is_main:  # the log, shown with or without the progress bar
        shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        bar.write(f"epoch {state.step / plan.steps_per_epoch:.0f}: {shown} "
                  f"(best {state.best:.4f})")
    return scores[winner]


def save_training_state(run: TrainRun, plan: Plan, state: State) -> None:
    """Everything an exact resume needs, to OUT/state/last.pt (main process only; a sharded
    model is first gathered whole, which every rank takes part in)."""
    sharded = is_sharded(state.model)
    if sharded:
        weights, moments = full_state(state.model, state.optimizer)
    else:
        weights, moments = state.model.state_dict(), state.optimizer.state_dict()
    if not plan.dist.is_main:
        return
    save_state({
        "step": state.step, "epoch": state.step / plan.steps_per_epoch,
        "best_val_top1": state.best, "model": weights, "optimizer": moments, "fsdp": sharded,
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "rng": rng_state(), "seed": run.seed, "recipe": run.recipe.to_dict(),
        "loss_window": state.watch.state_dict(),
        "dtype": "bf16" if plan.dtype == torch.bfloat16 else "fp32",
        "seconds": state.seconds_before + time.perf_counter() - state.started,
    }, plan.state_dir)


def save_weights(weights: VisionTransformer, model: VisionTransformer, plan: Plan) -> None:
    """`weights` (the model or its EMA, LoRA adapters merged) with the model's name, classes
    and preprocessing, as OUT/checkpoint (main process only; a sharded model is gathered by
    every rank first); a full disk is reported plainly."""
    part = plan.objective.weights(weights)
    tensors = submodule_weights(full_state(weights)[0], weights, part) if is_sharded(
        weights) else None
    if not plan.dist.is_main:
        return
    if has_lora(part):  # saved merged: an ordinary model for eval, predict, export, serve
        tensors = merged_state(part, tensors)
    part.meta = model.meta
    try:
        save_pretrained(part, plan.checkpoint_dir, tensors=tensors)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise TrainingError(
                f"disk full while saving the best model to {plan.checkpoint_dir}; the previous "
                "files there are intact. Free some space and rerun with resume=True."
            ) from error
        raise


def finish(run: TrainRun, plan: Plan, state: State, clock: Clock,
           last_val: float | None) -> TrainResult:
    """Save the final weights when there was no validation set to pick the best, leave the
    process group, and sum the run up."""
    finished = state.step >= plan.total_steps
    if finished and run.val_set is None:
        save_weights(state.ema.module if state.ema is not None else state.model, state.model,
                     plan)
    seconds = clock.elapsed()
    cleanup(plan.dist)
    return TrainResult(
        steps=state.step, epochs=state.step / plan.steps_per_epoch, seconds=seconds,
        images_per_s=clock.images / max(seconds, 1e-9),
        best_val_top1=state.best if state.best >= 0 else None, final_val_top1=last_val,
        finished=finished, checkpoint=plan.checkpoint_dir,
        total_seconds=state.seconds_before + seconds,
    )


def _nonfinite_message(step: int, state_dir: Path) -> str:
    path = state_dir / "last.pt"
    if path.exists():
        kept = torch.load(path, map_location="cpu", weights_only=True)["step"]
        where = f"the last good checkpoint (step {kept}) is kept in {path}"
    else:
        where = "no checkpoint had been saved yet"
    return (f"non-finite loss at step {step}; training stopped and {where}. "
            "Lower the learning rate (lr=), or train in fp32 (precision='fp32').")


def _warn_recipe_changes(saved: dict[str, Any], recipe: Recipe) -> None:
    changed = {k: (v, getattr(recipe, k)) for k, v in saved.items()
               if hasattr(recipe, k) and getattr(recipe, k) != v}
    for key, (old, new) in changed.items():
        log.warning("resuming with %s = %r (the run started with %r)", key, new, old)
