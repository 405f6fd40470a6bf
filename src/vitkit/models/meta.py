"""What a model needs besides its weights to be used: how its input images are prepared
(`Preprocessing`), and its name and class names (`ModelMeta`). Kept apart from the config,
which describes only the architecture, and saved beside it by `save_pretrained`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "nearest-exact")  # on tensors, antialiased


@dataclass(frozen=True)
class Preprocessing:
    """uint8 pixels to model input: resize the shorter side to img_size / crop_pct with
    `interpolation`, centre-crop img_size, scale to [0, 1], subtract `mean`, divide by `std`.

    The image size itself is the config's (`ViTConfig.img_size`), never stored here. The
    defaults are Google's ViT checkpoints' ([-1, 1] pixels, bicubic, crop 0.9).
    """

    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop_pct: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; use one of "
                             f"{', '.join(INTERPOLATIONS)}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @classmethod
    def default(cls, in_chans: int = 3) -> Preprocessing:
        """Google's [-1, 1] normalisation for `in_chans` channels."""
        return cls(mean=(0.5,) * in_chans, std=(0.5,) * in_chans)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, in_chans: int = 3) -> Preprocessing:
        """From a checkpoint's 'preprocessing' JSON; missing fields take the defaults, and a
        stored img_size (informative only) is ignored."""
        base = cls.default(in_chans)
        known = {f.name for f in dataclasses.fields(cls)}
        changes = {k: v for k, v in (data or {}).items() if k in known and v is not None}
        for key in ("mean", "std"):  # one value for every channel
            if key in changes and len(changes[key]) == 1 and in_chans > 1:
                changes[key] = list(changes[key]) * in_chans
        return dataclasses.replace(base, **changes)

    def replace(self, **changes: Any) -> Preprocessing:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: mean and std as lists."""
        return {"mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "crop_pct": self.crop_pct}


@dataclass
class ModelMeta:
    """A model's name (a preset, or a description of what it was built as), its class names
    (one per output of the head, or None) and its preprocessing."""

    name: str | None = None
    class_names: list[str] | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
