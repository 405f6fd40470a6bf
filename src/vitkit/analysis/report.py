"""`write_report`: every analysis of one model on some images, written as PNGs plus an
`analysis.json` with the numbers, for `vitkit analyze` and `vitkit demo`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..files import write_json
from ..models import VisionTransformer, evaluating
from .attention import (
    _on_model,
    attention_rollout,
    mean_attention_distance,
    patch_distances,
    rolled_out,
)
from .embeddings import embedding_filter_variance, embedding_filters, position_embedding_similarity

REPORT_NAME = "analysis.json"
FIGURE7_NAME = "figure7.png"
PANEL_NAMES = {
    "filters": "embedding_filters.png",
    "position_similarity": "position_similarity.png",
    "attention_distance": "attention_distance.png",
}


def unnormalise(model: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Preprocessed float images back to uint8 (B, C, H, W) with the model's mean and std."""
    prep = model.meta.preprocessing
    shape = (1, -1, 1, 1)
    mean = torch.tensor(prep.mean, dtype=torch.float32).reshape(shape)
    std = torch.tensor(prep.std, dtype=torch.float32).reshape(shape)
    pixels = (images.detach().cpu().float() * std + mean) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8)


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")
    return stem[:60] or "image"


def _rounded(tensor: torch.Tensor, digits: int = 5) -> Any:
    return torch.round(tensor.detach().cpu().double(), decimals=digits).tolist()


def _predictions(model: VisionTransformer, images: torch.Tensor) -> list[dict[str, Any] | None]:
    """Top-1 class and probability of each image, or None for a headless model."""
    if not model.config.num_classes:
        return [None] * images.shape[0]
    with evaluating(model):
        probs = model(_on_model(model, images)).float().softmax(dim=-1).cpu()
    best, index = probs.max(dim=-1)
    names = model.meta.class_names or [str(i) for i in range(model.config.num_classes)]
    return [
        {"index": int(i), "class": names[int(i)], "probability": round(float(p), 5)}
        for p, i in zip(best, index, strict=True)
    ]


def _check_inputs(
    model: VisionTransformer, images: torch.Tensor, raw_images: torch.Tensor | None,
    names: list[str] | None,
) -> None:
    model.check_input(images)
    count = images.shape[0]
    if count == 0:
        raise ValueError("write_report needs at least one image; got an empty batch")
    if raw_images is not None:
        if raw_images.ndim != 4 or raw_images.shape[0] != count:
            raise ValueError(
                f"raw_images must be (B, C, H, W) with B={count} like images, got "
                f"{tuple(raw_images.shape)}"
            )
        if raw_images.dtype != torch.uint8:
            raise ValueError(f"raw_images must be uint8 pixels, got {raw_images.dtype}")
    if names is not None and len(names) != count:
        raise ValueError(f"{len(names)} names for {count} images; give one name per image")


def write_report(
    model: VisionTransformer,
    images: torch.Tensor,
    out_dir: str | os.PathLike,
    raw_images: torch.Tensor | None = None,
    names: list[str] | None = None,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    k: int = 28,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write rollout overlays per image, the Figure 7 panels (together and one by one) and
    analysis.json into `out_dir`; return what analysis.json holds.

    images: preprocessed float (B, C, H, W); raw_images: the uint8 pictures to draw under the
    overlays (None: un-normalised from `images`); names: one label per image for titles/files;
    extra: more entries for analysis.json (e.g. skipped files).
    """
    _check_inputs(model, images, raw_images, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else [f"image_{i}" for i in range(len(images))]
    raw = raw_images if raw_images is not None else unnormalise(model, images)
    model_name = model.meta.name or "model"
    entries = _write_rollouts(model, images, raw, names, out, head_fusion, discard_ratio)
    figure7 = _write_figure7(model, images, out, k, model_name)
    report = {
        "model_name": model_name,
        "img_size": list(model.config.img_size),
        "patch_size": model.config.patch_size,
        "grid": list(model.check_input(images)),
        "images": entries,
        "rollout": {"head_fusion": head_fusion, "discard_ratio": discard_ratio,
                    "pooled_token": rolled_out(model)},
        **figure7,
        "figures": {"figure7": FIGURE7_NAME, **PANEL_NAMES},
        **(extra or {}),
    }
    write_json(out / REPORT_NAME, report, indent=1)
    return report


def _write_rollouts(model: VisionTransformer, images: torch.Tensor, raw: torch.Tensor,
                    names: list[str], out: Path, head_fusion: str, discard_ratio: float
                    ) -> list[dict[str, Any]]:
    """One rollout overlay PNG per image (paper Figure 6); their entries for analysis.json."""
    from matplotlib import pyplot as plt

    from .plots import plot_rollout

    rollout = attention_rollout(model, images, head_fusion, discard_ratio)
    entries = []
    for index, (name, pred) in enumerate(zip(names, _predictions(model, images), strict=True)):
        title = name if pred is None else f"{name}: predicted {pred['class']} " \
            f"(p={pred['probability']:.2f})"
        fig = plot_rollout(raw[index], rollout[index], title)
        path = out / f"rollout_{index:03d}_{_safe_name(name)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        entries.append({"name": name, "prediction": pred, "rollout_png": path.name,
                        "rollout": _rounded(rollout[index])})
    return entries


def _write_figure7(model: VisionTransformer, images: torch.Tensor, out: Path, k: int,
                   model_name: str) -> dict[str, Any]:
    """The Figure 7 panels, together and one by one; their numbers for analysis.json."""
    from matplotlib import pyplot as plt

    from .plots import (
        plot_attention_distance,
        plot_figure7,
        plot_filters,
        plot_position_similarity,
        single_panel,
    )

    distance = mean_attention_distance(model, images)
    grid = model.check_input(images)
    uniform = float(patch_distances(grid, model.config.patch_size).mean())
    similarity = position_embedding_similarity(model)
    components = embedding_filters(model, k)
    variance = embedding_filter_variance(model, k)
    fig = plot_figure7(components, similarity, distance, variance, uniform,
                       title=f"{model_name}: what the model learned (cf. paper Figure 7)")
    fig.savefig(out / FIGURE7_NAME, dpi=110)
    plt.close(fig)
    panels = {
        "filters": (plot_filters, components, variance),
        "position_similarity": (plot_position_similarity, similarity),
        "attention_distance": (plot_attention_distance, distance, uniform),
    }
    for key, (draw, *args) in panels.items():
        fig = single_panel(draw, *args)
        fig.savefig(out / PANEL_NAMES[key], dpi=110)
        plt.close(fig)
    gh, gw = similarity.shape[:2]
    flat = similarity.reshape(gh * gw, gh * gw)
    return {
        "mean_attention_distance": {
            "pixels": _rounded(distance, 4),
            "layer_mean": _rounded(distance.mean(dim=1), 4),
            "uniform_attention": round(uniform, 4),
            "note": "over patch tokens only ([class] token left out as query and key, "
                    "weights renormalised over patch keys); layers x heads",
        },
        "position_embedding_similarity": {
            "shape": [gh, gw, gh, gw],
            "own_patch_most_similar": float(
                (flat.argmax(dim=1) == torch.arange(gh * gw)).float().mean()),
            "values": _rounded(similarity, 4),
        },
        "embedding_filters": {
            "k": int(components.shape[0]),
            "explained_variance_ratio": _rounded(variance, 5),
            "components": _rounded(components, 5),
        },
    }
