"""Build a model from pretrained weights: read a checkpoint, adapt it to the model asked for
(new head, new resolution), and load it strictly."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import ViTConfig, VisionTransformer, get_config, resample_pos_embed
from .io import CheckpointError, _read_document, load_state_dict_checked, read_safetensors

log = logging.getLogger("vitkit")


@dataclass
class Checkpoint:
    """Weights in vitkit (= timm) naming, with whatever the source says about the model."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None = None  # ViTConfig fields the source states or implies
    model_name: str | None = None
    class_names: list[str] | None = None
    preprocessing: dict[str, Any] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)


def read_checkpoint(source: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint from a path, detecting its format from its contents."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        document, weights = _read_document(path)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: unrecognised checkpoint ({error})") from error
    state_dict, _ = read_safetensors(weights)
    return Checkpoint(
        state_dict=state_dict,
        config=document.get("config"),
        model_name=document.get("model_name"),
        class_names=document.get("class_names"),
        preprocessing=document.get("preprocessing"),
        source=str(path),
    )


def target_config(
    name: str | None, checkpoint: Checkpoint, overrides: dict[str, Any]
) -> ViTConfig:
    """The configuration to build: the named preset, or the checkpoint's own, plus overrides.

    Unless overridden, the class count and resolution follow the checkpoint.
    """
    stated = dict(checkpoint.config or {})
    if name is None:
        name = checkpoint.model_name
        if not stated and name is None:
            raise CheckpointError(
                f"{checkpoint.source} does not say which architecture it holds; pass a model name"
            )
    if name is not None and (name != checkpoint.model_name or not stated):
        base = get_config(name).to_dict()
        for key in ("num_classes", "img_size", "representation_size", "layer_norm_eps",
                    "fc_norm", "global_pool", "class_token", "qkv_bias"):
            if key in stated:
                base[key] = stated[key]
        stated = base
    stated.update(overrides)
    return ViTConfig.from_dict(stated)


def adapt_state_dict(
    state_dict: dict[str, torch.Tensor], config: ViTConfig, source_grid: tuple[int, int] | None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fit a checkpoint to `config`: a new zero head for another class count, resampled E_pos
    for another resolution. Returns the new state dict and what was changed, in words."""
    notes: list[str] = []
    state_dict = dict(state_dict)
    head = state_dict.get("head.weight")
    if head is not None and head.shape[0] != config.num_classes:
        head_in = config.representation_size or config.embed_dim
        notes.append(
            f"replaced the {head.shape[0]}-class head with a zero-initialised "
            f"{config.num_classes}-class head"
        )
        if config.num_classes:
            state_dict["head.weight"] = torch.zeros(config.num_classes, head_in)
            state_dict["head.bias"] = torch.zeros(config.num_classes)
        else:
            del state_dict["head.weight"], state_dict["head.bias"]
    elif head is None and config.num_classes:
        head_in = config.representation_size or config.embed_dim
        notes.append(f"added a zero-initialised {config.num_classes}-class head")
        state_dict["head.weight"] = torch.zeros(config.num_classes, head_in)
        state_dict["head.bias"] = torch.zeros(config.num_classes)
    pos = state_dict.get("pos_embed")
    expected_tokens = config.num_prefix_tokens + config.num_patches
    if pos is not None and pos.ndim == 3 and pos.shape[-1] == config.embed_dim:
        if source_grid is None and pos.shape[1] == expected_tokens:
            source_grid = config.grid_size  # same token count: taken as the same grid
        resampled = resample_pos_embed(pos, config.grid_size, source_grid, config.num_prefix_tokens)
        if resampled is not pos:
            state_dict["pos_embed"] = resampled
            notes.append(
                f"resampled position embeddings from {pos.shape[1]} to {expected_tokens} tokens "
                f"for {config.img_size[0]}x{config.img_size[1]} images"
            )
    return state_dict, notes


def create_pretrained(
    name: str | None, source: str | os.PathLike | Checkpoint, overrides: dict[str, Any]
) -> VisionTransformer:
    """A model named `name` (or the checkpoint's own) holding the weights of `source`."""
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source)
    config = target_config(name, checkpoint, overrides)
    source_grid = None
    if checkpoint.config and "img_size" in checkpoint.config:
        size = checkpoint.config["img_size"]
        size = (size, size) if isinstance(size, int) else size
        patch = checkpoint.config.get("patch_size", config.patch_size)
        source_grid = (size[0] // patch, size[1] // patch)
    state_dict, notes = adapt_state_dict(checkpoint.state_dict, config, source_grid)
    model = VisionTransformer(config)
    load_state_dict_checked(model, state_dict)
    for note in checkpoint.notes + notes:
        log.warning("%s: %s", checkpoint.source, note)
    model.model_name = name or checkpoint.model_name
    if config.num_classes == (checkpoint.config or {}).get("num_classes"):
        model.class_names = checkpoint.class_names
    model.preprocessing = dict(checkpoint.preprocessing or {})
    model.preprocessing.pop("img_size", None)
    return model.eval()
