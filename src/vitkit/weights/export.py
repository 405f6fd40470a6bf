"""Hand models to other tools: timm (.safetensors state dict, or a timm hub folder), Hugging
Face (a folder `ViTForImageClassification.from_pretrained` reads) and Google's .npz."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..files import atomic_write, write_json
from ..models import VisionTransformer
from .hf import hf_config_of, hf_preprocessor_of, vitkit_to_hf
from .hf_families import export_family, family_hf_config, vitkit_to_hf_family
from .io import preprocessing_document, save_pretrained
from .npz import vitkit_to_flax
from .timm import timm_config_of

log = logging.getLogger("vitkit")
FORMATS = ("vitkit", "timm", "hf", "npz")


def _tensors(model: VisionTransformer) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def export_timm(model: VisionTransformer, path: str | os.PathLike) -> Path:
    """Write the model for timm: a `.safetensors` state dict when `path` ends so (load it with
    `timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path))`),
    otherwise a folder like timm's hub repos (model.safetensors + config.json), for
    `timm.create_model("local-dir:FOLDER", pretrained=True)`: architecture, classes, image
    size, mean/std and crop all come from its config.json."""
    if model.config.representation_size:
        raise CheckpointError(
            "timm's VisionTransformer has no representation layer (pre_logits); export this "
            "model with --to hf or --to vitkit"
        )
    path = Path(path)
    tensors = _tensors(model)
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, tmp, {"format": "pt"}))
        return path
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / "model.safetensors", lambda tmp: save_file(tensors, tmp, {"format": "pt"}))
    document = timm_config_of(
        model.meta.name, model.config, model.meta.class_names, preprocessing_document(model)
    )
    write_json(path / "config.json", document)
    return path


def export_hf(model: VisionTransformer, directory: str | os.PathLike) -> Path:
    """Write a Hugging Face ViT folder: config.json, preprocessor_config.json and
    model.safetensors, for `ViTForImageClassification.from_pretrained(directory)`, or the
    class of its family (DeiT with teacher, DINOv2, CLIP or SigLIP vision model)."""
    family = export_family(model.config)
    if family is not None:
        tensors = vitkit_to_hf_family(model.state_dict(), model.config, family)
        document = family_hf_config(model.config, family, model.meta.class_names)
    else:
        tensors = vitkit_to_hf(model.state_dict())
        document = hf_config_of(model.config, model.meta.class_names)
    if model.config.representation_size:
        log.warning(
            "the representation layer is written as vit.pooler.dense: HF's ViTModel applies it "
            "(pooler_output), but ViTForImageClassification classifies without it"
        )
    if model.config.drop_path_rate:
        log.warning("HF's ViT has no stochastic depth; drop_path_rate is not exported")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(
        directory / "model.safetensors", lambda tmp: save_file(tensors, tmp, {"format": "pt"})
    )
    write_json(directory / "config.json", document)
    write_json(directory / "preprocessor_config.json",
               hf_preprocessor_of(preprocessing_document(model)))
    return directory


def export_npz(model: VisionTransformer, path: str | os.PathLike, naming: str = "vit_jax") -> Path:
    """Write Google's Flax layout as an .npz ('vit_jax' names, or 'big_vision' with `params/`)."""
    if model.config.family != "vit":
        raise CheckpointError(f"Google's .npz layout holds the paper's ViT, not a "
                              f"{model.config.family} model; export it with --to timm or --to hf")
    arrays = vitkit_to_flax(model.state_dict(), model.config.num_heads, naming)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a handle, so numpy does not append '.npz'
            np.savez(handle, **arrays)

    atomic_write(path, write)
    return path


def export(model: VisionTransformer, destination: str | os.PathLike, to: str = "vitkit") -> Path:
    """Write `model` in the format `to` (one of FORMATS) at `destination`."""
    if to == "vitkit":
        return save_pretrained(model, destination)
    if to == "timm":
        return export_timm(model, destination)
    if to == "hf":
        return export_hf(model, destination)
    if to == "npz":
        return export_npz(model, destination)
    raise ValueError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
