"""The training loop, top to bottom: sample a batch, augment it, forward/backward (with
accumulation), clip, step, EMA, log, evaluate at epoch ends, checkpoint atomically.

Exact resume: the data order of epoch e is a permutation drawn from a torch.Generator seeded
with (seed, e), and every step reseeds the global RNG from (seed, step, rank) before its
augmentation and dropout, so a run resumed from the state after step k takes the same steps
k+1.. as one that never stopped, and ends with bitwise-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageTensorDataset
from ..device import default_device, default_dtype
from ..models import VisionTransformer
from ..weights import save_pretrained
from .augment import BatchAugment, Normalize, channel_stats
from .checkpoint import (
    TrainingError,
    load_state,
    remove_stale_temporaries,
    rng_state,
    save_state,
    set_rng_state,
)
from .distributed import any_across, cleanup, init_from_env, mean_across, shard
from .ema import make_ema
from .optim import build_optimizer, lr_at, set_lr
from .recipes import Recipe

log = logging.getLogger("vitkit")


@dataclass
class TrainRun:
    """What to train, on what, how, and where to write it."""

    model: VisionTransformer
    train_set: ImageTensorDataset
    recipe: Recipe
    out_dir: Path
    val_set: ImageTensorDataset | None = None
    seed: int = 0
    fp32: bool = False
    device: str | None = None
    mean: list[float] | None = None  # None: the training set's own channel statistics
    std: list[float] | None = None
    save_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    resume: bool = False
    stop_after: int | None = None  # stop (checkpointed) after this many steps in total
    progress: bool = True
    log_every: int = 10


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


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(size, generator=generator)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The global RNG seed of one optimizer step on one rank."""
    return ((seed * 1_000_003 + step) * 257 + rank) % (2**63)


@torch.no_grad()
def evaluate_top1(
    model: nn.Module, dataset: ImageTensorDataset, normalize: Normalize,
    batch_size: int = 256, device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Top-1 accuracy (a fraction) of `model` on `dataset`, preprocessed by `normalize`."""
    was_training = model.training
    model.eval()
    correct = 0
    device = torch.device(device)
    for start in range(0, len(dataset), batch_size):
        images = normalize(dataset.images[start:start + batch_size]).to(device)
        targets = dataset.targets[start:start + batch_size].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = model(images)
        correct += int((logits.argmax(dim=-1) == targets).sum())
    model.train(was_training)
    return correct / max(len(dataset), 1)


class MetricsLog:
    """metrics.jsonl plus TensorBoard scalars; on resume, entries past the resumed step go."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None:
            self.path.write_text("")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        for key, value in values.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(run: TrainRun) -> TrainResult:
    """Train `run.model` by `run.recipe`; writes OUT/checkpoint (save_pretrained), OUT/state,
    OUT/recipe.json, OUT/metrics.jsonl and OUT/tensorboard. Raises TrainingError on a
    non-finite loss or a full disk, keeping the last good checkpoint."""
    recipe, data, out = run.recipe, run.train_set, Path(run.out_dir)
    device = torch.device(run.device) if run.device else default_device()
    info = init_from_env(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    dtype = default_dtype(device, run.fp32)
    main = info.is_main
    state_dir, checkpoint_dir = out / "state", out / "checkpoint"

    # -- the data and the model's preprocessing ----------------------------------------------
    size, batch = len(data), recipe.batch_size
    if batch > size:
        raise ValueError(
            f"batch size {batch} is larger than the training set ({size} images); "
            f"use --batch-size {size} or less"
        )
    if data.images.shape[1] != run.model.config.in_chans:
        raise ValueError(
            f"the data has {data.images.shape[1]}-channel images but the model takes "
            f"{run.model.config.in_chans}; choose a model with in_chans={data.images.shape[1]}"
        )
    if data.num_classes != run.model.config.num_classes:
        raise ValueError(f"the data has {data.num_classes} classes but the model has "
                         f"{run.model.config.num_classes}")
    if run.mean is None or run.std is None:
        run.mean, run.std = channel_stats(data.images)
    img_size = tuple(run.model.config.img_size)
    model = run.model.to(device)
    model.class_names = list(data.classes)
    model.preprocessing = {**(model.preprocessing or {}), "mean": run.mean, "std": run.std,
                           "interpolation": "bicubic", "crop_pct": 1.0}
    augment = BatchAugment(recipe, data.num_classes, run.mean, run.std, img_size,
                           tuple(data.images.shape[-2:]))
    normalize = Normalize(run.mean, run.std, img_size)
    steps_per_epoch = size // batch
    total_steps = max(1, math.ceil(recipe.epochs * steps_per_epoch))
    warmup_steps = min(round(recipe.warmup_epochs * steps_per_epoch), total_steps - 1)

    # -- optimizer, EMA, data parallelism, resume --------------------------------------------
    optimizer = build_optimizer(model, recipe)
    ema = make_ema(model, recipe.ema_decay) if recipe.ema else None
    step, best = 0, -1.0
    if run.resume:
        remove_stale_temporaries(state_dir)
        remove_stale_temporaries(checkpoint_dir)
        state = load_state(state_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        step, best = int(state["step"]), float(state["best_val_top1"])
        _warn_recipe_changes(state.get("recipe", {}), recipe)
        if main:
            log.info("resuming %s from step %d (epoch %.2f)", out, step, step / steps_per_epoch)
    elif (state_dir / "last.pt").exists():
        raise ValueError(
            f"{out} already holds a run ({state_dir / 'last.pt'}); pass --resume to continue "
            "it, or choose another --out"
        )
    ddp_model: nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(recipe.to_json())
    metrics = MetricsLog(out, main, step if run.resume else None)

    def save(at_step: int) -> None:
        if not main:
            return
        save_state({
            "step": at_step, "epoch": at_step / steps_per_epoch, "best_val_top1": best,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "rng": rng_state(), "seed": run.seed, "recipe": recipe.to_dict(),
        }, state_dir)

    def save_weights(weights: nn.Module) -> None:
        if main:
            target = weights.module if weights is ema else weights
            target.model_name = getattr(model, "model_name", None)
            target.class_names = model.class_names
            target.preprocessing = model.preprocessing
            _atomic_save_pretrained(target, checkpoint_dir)

    # -- the loop ------------------------------------------------------------------------------
    bar = tqdm(total=total_steps, initial=step, disable=not (run.progress and main),
               desc=f"train {recipe.name}", unit="step", dynamic_ncols=True)
    start_time, start_step, images_seen = time.perf_counter(), step, 0
    last_val, window = None, (time.perf_counter(), 0)
    order_epoch, order = -1, None
    ddp_model.train()
    try:
        while step < total_steps:
            epoch, position = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, epoch_order(size, run.seed, epoch)
            indices = shard(order[position * batch:(position + 1) * batch], info)
            torch.manual_seed(step_seed(run.seed, step, info.rank))
            lr = lr_at(step, total_steps, warmup_steps, recipe)
            set_lr(optimizer, lr)

            micro_batches = indices.chunk(recipe.accum_steps)
            loss_sum = torch.zeros((), device=device)
            for i, micro in enumerate(micro_batches):
                images, targets = augment(data.images[micro], data.targets[micro])
                images, targets = images.to(device), targets.to(device)
                last = i == len(micro_batches) - 1
                sync = contextlib.nullcontext() if last or not info.enabled else ddp_model.no_sync()
                with sync:
                    with torch.autocast(device.type, torch.bfloat16,
                                        enabled=dtype == torch.bfloat16):
                        logits = ddp_model(images)
                    loss = F.cross_entropy(logits.float(), targets,
                                           label_smoothing=recipe.label_smoothing)
                    (loss / len(micro_batches)).backward()
                loss_sum += loss.detach()
            loss_value = float(mean_across(loss_sum / len(micro_batches), info))
            if any_across(not math.isfinite(loss_value), info, device):
                raise TrainingError(_nonfinite_message(loss_value, step + 1, state_dir))
            if recipe.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            images_seen += batch

            now = time.perf_counter()
            rate = (images_seen - window[1]) / max(now - window[0], 1e-9)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
            bar.update(1)
            if step % run.log_every == 0 or step == total_steps:
                metrics.write(step, {"epoch": round(step / steps_per_epoch, 4),
                                     "loss": loss_value, "lr": lr, "images_per_s": rate})
                window = (now, images_seen)

            epoch_end = step % steps_per_epoch == 0 or step == total_steps
            if epoch_end and run.val_set is not None:
                candidates = {"val_top1": ddp_model if not info.enabled else model}
                if ema is not None:
                    candidates["val_top1_ema"] = ema
                scores = {key: evaluate_top1(m, run.val_set, normalize, device=device,
                                             dtype=dtype) for key, m in candidates.items()}
                winner = max(scores, key=scores.get)
                last_val = scores[winner]
                metrics.write(step, {"epoch": round(step / steps_per_epoch, 4), **scores,
                                     "elapsed_s": round(time.perf_counter() - start_time, 1)})
                if last_val > best:
                    best = last_val
                    save_weights(candidates[winner])
                if main and run.progress:
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                    bar.write(f"epoch {step / steps_per_epoch:.0f}: {shown} (best {best:.4f})")
            stopping = run.stop_after is not None and step >= run.stop_after
            if epoch_end or stopping or (run.save_every and step % run.save_every == 0):
                save(step)
            if stopping:
                break
    finally:
        bar.close()
        metrics.close()
    finished = step >= total_steps
    if finished and run.val_set is None:
        save_weights(ema if ema is not None else model)
    seconds = time.perf_counter() - start_time
    cleanup(info)
    return TrainResult(
        steps=step, epochs=step / steps_per_epoch, seconds=seconds,
        images_per_s=(step - start_step) * batch / max(seconds, 1e-9),
        best_val_top1=best if best >= 0 else None, final_val_top1=last_val,
        finished=finished, checkpoint=checkpoint_dir,
    )


def _atomic_save_pretrained(model: VisionTransformer, directory: Path) -> None:
    """save_pretrained (itself atomic per file), with a full disk reported plainly."""
    import errno

    try:
        save_pretrained(model, directory)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise TrainingError(
                f"disk full while saving the best model to {directory}; the previous files "
                "there are intact. Free some space and rerun with --resume."
            ) from error
        raise


def _nonfinite_message(loss: float, step: int, state_dir: Path) -> str:
    path = state_dir / "last.pt"
    if path.exists():
        kept = torch.load(path, map_location="cpu", weights_only=True)["step"]
        where = f"the last good checkpoint (step {kept}) is kept in {path}"
    else:
        where = "no checkpoint had been saved yet"
    return (f"non-finite loss ({loss}) at step {step}; training stopped and {where}. "
            "Lower the learning rate (--lr), or train in fp32 (--fp32).")


def _warn_recipe_changes(saved: dict[str, Any], recipe: Recipe) -> None:
    changed = {k: (v, getattr(recipe, k)) for k, v in saved.items()
               if hasattr(recipe, k) and getattr(recipe, k) != v}
    for key, (old, new) in changed.items():
        log.warning("resuming with %s = %r (the run started with %r)", key, new, old)
