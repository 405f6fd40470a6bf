"""Named training recipes: every hyperparameter of a run in one dataclass, overridable by name.

`paper-pretrain` and `paper-finetune` follow Dosovitskiy et al. (2021), Appendix B.1;
`small-data` is the DeiT-style recipe that makes ViTs train from scratch on small datasets.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Recipe:
    """All the knobs of a training run. Epoch-valued fields may be fractional."""

    name: str = "custom"
    # optimisation
    optimizer: str = "adamw"  # 'adam' (decoupled weight decay), 'adamw' or 'sgd'
    lr: float = 1e-3  # peak learning rate, for `batch_size` images per step
    weight_decay: float = 0.05  # never applied to biases, norms, pos_embed, cls_token
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9  # SGD only
    schedule: str = "cosine"  # 'cosine' or 'linear' decay after the warmup
    warmup_epochs: float = 5.0
    min_lr_ratio: float = 0.0  # the final lr as a fraction of the peak
    epochs: float = 100.0
    batch_size: int = 256  # the global batch per optimizer step
    accum_steps: int = 1  # micro-batches per step (batch_size must divide evenly)
    grad_clip: float = 0.0  # global-norm clipping; 0 turns it off
    label_smoothing: float = 0.0
    layer_decay: float = 1.0  # lr of block i times R^(L-i), embeddings R^(L+1) (BEiT); 1: off
    # LoRA adapters (PEFT) on qkv, proj, fc1, fc2; only they and the head train; 0: off
    lora_rank: int = 0
    lora_alpha: float = 16.0  # the adapters' update is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.0
    # model changes
    drop_path: float = 0.0  # stochastic depth rate
    dropout: float = 0.0
    representation_size: int | None = None  # the pre-logits layer of pre-training
    zero_head: bool = False  # re-initialise the head with zeros (fine-tuning)
    # augmentation (torchvision transforms v2, on batches)
    crop: str = "rrc"  # 'rrc' (RandomResizedCrop), 'pad' (shift by padding + RandomCrop), 'none'
    crop_scale: float = 0.08  # smallest area fraction of RandomResizedCrop
    pad: int = 4  # padding of the 'pad' crop, in pixels
    hflip: bool = True  # random horizontal flips (off for digits and text)
    randaugment: bool = False
    randaug_ops: int = 2
    randaug_magnitude: int = 9
    mixup: float = 0.0  # MixUp alpha; 0 turns it off
    cutmix: float = 0.0  # CutMix alpha; 0 turns it off
    mix_prob: float = 1.0  # fraction of batches that get MixUp or CutMix
    random_erasing: float = 0.0  # per-image probability
    # weights averaging
    ema: bool = False
    ema_decay: float = 0.999
    # distillation from a teacher (DeiT), when a run is given one
    distill: str = "hard"  # 'hard' (the teacher's top class) or 'soft' (KL at distill_tau)
    distill_alpha: float = 0.5  # the distillation head's share of the loss
    distill_tau: float = 1.0  # the temperature of soft distillation

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed; unknown names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields: {', '.join(unknown)}")
        floats = {f.name for f in dataclasses.fields(self) if f.type in ("float", float)}
        changes = {key: float(value) if key in floats and isinstance(value, int)
                   and not isinstance(value, bool) else value for key, value in changes.items()}
        recipe = dataclasses.replace(self, **changes)  # epochs=1 is stored as 1.0, as the CLI's
        recipe.validate()
        return recipe

    def validate(self) -> None:
        """Reject values that can't work, saying which and why."""
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be adam, adamw or sgd, not {self.optimizer!r}")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule must be cosine or linear, not {self.schedule!r}")
        if self.crop not in ("rrc", "pad", "none"):
            raise ValueError(f"crop must be rrc, pad or none, not {self.crop!r}")
        if self.batch_size < 1 or self.accum_steps < 1 or self.batch_size % self.accum_steps:
            raise ValueError(
                f"batch size {self.batch_size} must be a positive multiple of accum_steps "
                f"{self.accum_steps}"
            )
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.distill not in ("hard", "soft"):
            raise ValueError(f"distill must be hard or soft, not {self.distill!r}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1] (1: off), got {self.layer_decay}")
        if self.lora_rank < 0 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(
                f"LoRA needs lora_rank >= 0 (0: off), lora_alpha > 0 and 0 <= lora_dropout < 1; "
                f"got lora_rank={self.lora_rank}, lora_alpha={self.lora_alpha}, "
                f"lora_dropout={self.lora_dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        return cls().replace(**data)


RECIPES: dict[str, Recipe] = {
    # Appendix B.1: Adam (0.9, 0.999), batch 4096, weight decay 0.1, linear warmup then linear
    # decay, the pre-logits representation layer, no label smoothing; inception crop + flip.
    # Weight decay is decoupled (as in big_vision). batch_size is the CPU-friendly default;
    # the paper's is 4096 (use --batch-size 4096 --accum-steps N).
    "paper-pretrain": Recipe(
        name="paper-pretrain", optimizer="adam", lr=1e-3, weight_decay=0.1,
        beta1=0.9, beta2=0.999, schedule="linear", warmup_epochs=5.0, epochs=300.0,
        batch_size=512, label_smoothing=0.0, representation_size=-1, crop="rrc", hflip=True,
    ),
    # Appendix B.1.1: SGD momentum 0.9, batch 512, no weight decay, global-norm clipping at 1,
    # warmup then cosine decay, a zero-initialised head (Section 3.2).
    "paper-finetune": Recipe(
        name="paper-finetune", optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=0.0,
        schedule="cosine", warmup_epochs=1.0, epochs=10.0, batch_size=512, grad_clip=1.0,
        label_smoothing=0.0, zero_head=True, crop="rrc", crop_scale=0.05, hflip=True,
    ),
    # Masked patch prediction (Section 4.6, App. B.1.2: Adam, cosine decay, no labels), at a
    # CPU-sized batch: crops and flips only, nothing that mixes images or labels.
    "masked-patch": Recipe(
        name="masked-patch", optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine",
        warmup_epochs=2.0, epochs=50.0, batch_size=256, label_smoothing=0.0, crop="rrc",
        crop_scale=0.35, hflip=True, randaugment=False, mixup=0.0, cutmix=0.0,
        random_erasing=0.0, ema=False, grad_clip=1.0,
    ),
    # DeiT-style training from scratch for small data.
    "small-data": Recipe(
        name="small-data", optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine",
        warmup_epochs=5.0, epochs=100.0, batch_size=256, label_smoothing=0.1, drop_path=0.1,
        crop="rrc", crop_scale=0.35, hflip=True, randaugment=True, mixup=0.8, cutmix=1.0,
        mix_prob=0.5, random_erasing=0.25, ema=True, ema_decay=0.999, grad_clip=1.0,
    ),
}


def list_recipes() -> list[str]:
    """The recipe names, sorted."""
    return sorted(RECIPES)


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The named recipe with `overrides` applied (None values are ignored)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(list_recipes())}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    return RECIPES[name].replace(**changes)
