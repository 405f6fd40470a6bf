"""vitkit's own checkpoint format: `model.safetensors` (config embedded in its metadata) plus a
readable `config.json` with the architecture, class names and preprocessing."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, first_line, not_enough_memory
from ..files import atomic_write, write_json
from ..models import (
    ModelMeta,
    Preprocessing,
    VisionTransformer,
    architecture_of,
    build_model,
    config_class,
)
from .validate import parse_document, validate

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
METADATA_KEY = "vitkit_config"

def preprocessing_document(model: VisionTransformer) -> dict[str, Any]:
    """The model's preprocessing as JSON, with the image size beside it for readers of the
    file (and for timm's and HF's configs); the config's img_size is what counts."""
    return {**model.meta.preprocessing.to_dict(), "img_size": list(model.config.img_size)}


def checkpoint_document(model: VisionTransformer) -> dict[str, Any]:
    """The JSON description of a model saved in vitkit's format."""
    return {
        "library": "vitkit",
        "format_version": FORMAT_VERSION,
        "architecture": architecture_of(model.config),  # which module load_pretrained builds
        "model_name": model.meta.name,
        "config": model.config.to_dict(),
        "class_names": model.meta.class_names,
        "preprocessing": preprocessing_document(model),
    }


def save_pretrained(
    model: VisionTransformer,
    directory: str | os.PathLike,
    class_names: list[str] | None = None,
    preprocessing: Preprocessing | dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save `model` to `directory` as model.safetensors + config.json; returns the directory.

    class_names and preprocessing (fields to change), when given, are stored in `model.meta`
    first. `tensors` replaces `model.state_dict()` (the full weights of a model sharded across
    processes, gathered). Each file is written atomically, so an interrupted save leaves the
    previous files intact.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if class_names is not None:
        if len(class_names) != model.config.num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a model with {model.config.num_classes} "
                "classes"
            )
        model.meta.class_names = list(class_names)
    if isinstance(preprocessing, Preprocessing):
        model.meta.preprocessing = preprocessing
    elif preprocessing is not None:
        model.meta.preprocessing = model.meta.preprocessing.replace(
            **{k: v for k, v in preprocessing.items() if k != "img_size"})
    document = checkpoint_document(model)
    tensors = {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in (model.state_dict() if tensors is None else tensors).items()
    }
    metadata = {"format": "pt", METADATA_KEY: json.dumps(document)}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata))
    write_json(directory / CONFIG_NAME, document)
    return directory


def assemble(config: Any, state_dict: dict[str, torch.Tensor], where: str,
             meta: ModelMeta) -> torch.nn.Module:
    """The model of `config` holding exactly `state_dict`, with `meta`: built on the meta
    device (no initialisation: every tensor comes from the checkpoint) and loaded strictly; a
    mismatch is a CheckpointError that names `where`."""
    with torch.device("meta"):
        model = build_model(config)
    try:
        load_state_dict_checked(model, state_dict, assign=True)
    except CheckpointError as error:
        raise CheckpointError(f"{where}: {error}") from error
    model.meta = meta
    return model


def load_state_dict_checked(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], assign: bool = False
) -> None:
    """Load a state dict strictly, naming every missing, unexpected or mis-shaped tensor.

    With assign=True (for a model built on the meta device) the tensors become the
    parameters, cast to the model's dtype, instead of being copied into initialised ones.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    if missing or unexpected or mis_shaped:
        lines = ["the checkpoint does not fit this model's architecture:"]
        if mis_shaped:
            lines.append(f"  {len(mis_shaped)} tensors differ in shape: "
                         + "; ".join(mis_shaped[:8]))
        if missing:
            lines.append(f"  {len(missing)} tensors missing from the checkpoint: "
                         + ", ".join(missing[:8]))
        if unexpected:
            lines.append(f"  {len(unexpected)} tensors the model does not have: "
                         + ", ".join(unexpected[:8]))
        lines.append("  check that --model names the architecture the checkpoint was trained as")
        raise CheckpointError("\n".join(lines))
    not_float = [f"{key} ({value.dtype})".replace("torch.", "") for key, value in state_dict.items()
                 if expected[key].is_floating_point() and not value.is_floating_point()]
    if not_float:
        raise CheckpointError(
            f"the checkpoint holds {len(not_float)} tensors that are not floating point where "
            "the model has weights: " + ", ".join(not_float[:8])
            + "; the file is damaged or was saved wrongly"
        )
    # One summing pass per tensor; only a non-finite sum (maybe an overflow) is looked at closely.
    non_finite = [key for key, value in state_dict.items()
                  if value.is_floating_point() and not torch.isfinite(value.sum())
                  and not torch.isfinite(value).all()]
    if non_finite:
        raise CheckpointError(
            f"the checkpoint holds NaN or infinite values in {len(non_finite)} tensors: "
            + ", ".join(non_finite[:8])
        )
    if assign:
        state_dict = {
            key: value.to(expected[key].dtype).contiguous() if value.is_floating_point() else value
            for key, value in state_dict.items()
        }
    model.load_state_dict(state_dict, assign=assign)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file; a damaged file is a CheckpointError.

    The safetensors library checks every tensor's offsets against the file's size, so a
    header can't make it allocate more than the file holds.
    """
    try:
        return load_file(str(path)), read_safetensors_metadata(path)
    except CheckpointError:
        raise
    except MemoryError as error:
        raise CheckpointError(not_enough_memory(path)) from error
    except Exception as error:  # noqa: BLE001 - damaged bytes: whatever the reader raises
        raise CheckpointError(_unreadable_safetensors(path, error)) from error


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Only the metadata of a .safetensors file (its header), without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except MemoryError as error:
        raise CheckpointError(not_enough_memory(path)) from error
    except Exception as error:  # noqa: BLE001 - damaged bytes: whatever the reader raises
        raise CheckpointError(_unreadable_safetensors(path, error)) from error
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path} has a damaged safetensors header (its metadata is not a "
                              "map of strings): download or save it again")
    return metadata


def _unreadable_safetensors(path: str | os.PathLike, error: BaseException) -> str:
    reason = first_line(error)
    if not isinstance(error, (SafetensorError, OSError)):
        reason = f"{type(error).__name__}: {reason}"
    return (f"{path} is not a readable safetensors file ({reason}); it may be truncated or "
            "corrupted: download or save it again")


def run_checkpoint(path: str | os.PathLike) -> Path:
    """`path`, or RUN/checkpoint when `path` is a training run folder (it holds no weights
    but its checkpoint/ sub-folder does): users pass the folder they gave `--out`."""
    path = Path(path)
    inner = path / "checkpoint"
    if path.is_dir() and not (path / WEIGHTS_NAME).exists() and (inner / WEIGHTS_NAME).exists():
        logging.getLogger("vitkit").info("%s is a run folder: using its model in %s", path, inner)
        return inner
    return path


def read_document(path: Path) -> tuple[dict[str, Any], Path]:
    """The vitkit description and weights file of a directory or a .safetensors file."""
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        config_file = path / CONFIG_NAME
        if not weights.exists():
            raise CheckpointError(f"{path} holds no {WEIGHTS_NAME}")
        if config_file.exists():
            try:
                text = config_file.read_bytes().decode("utf-8")
            except UnicodeDecodeError as error:
                raise CheckpointError(f"{config_file} is not UTF-8 text ({error}); the file is "
                                      "damaged: save or download it again") from error
            return parse_document(text, str(config_file)), weights
        path = weights
    metadata = read_safetensors_metadata(path)
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} carries no vitkit config in its metadata")
    return parse_document(metadata[METADATA_KEY], str(path)), path


def load_pretrained(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> VisionTransformer:
    """Rebuild a model saved by `save_pretrained` (a directory or its .safetensors file): a ViT,
    a hybrid or a ResNet, as its 'architecture' says (checkpoints without one are ViTs)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    path = run_checkpoint(path)
    document, weights = read_document(path)
    if document.get("library") != "vitkit":
        raise CheckpointError(f"{path} is not a vitkit checkpoint (no 'library': 'vitkit')")
    if not document.get("config"):
        raise CheckpointError(f"{path}: the vitkit description has no config; the file is "
                              "damaged: save or download it again")
    architecture = document.get("architecture")
    try:
        config_cls = config_class(architecture if isinstance(architecture, str) else None)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}; it was saved by a newer vitkit?") from error
    state_dict, _ = read_safetensors(weights)
    validate(document["config"], state_dict, document.get("class_names"),
             document.get("preprocessing"), str(path), architecture)
    try:
        config = config_cls.from_dict(document["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} states an invalid configuration: {error}") from error
    model = assemble(config, state_dict, str(path), ModelMeta(
        name=document.get("model_name"), class_names=document.get("class_names"),
        preprocessing=Preprocessing.from_dict(document.get("preprocessing"), config.in_chans)))
    return model.to(map_location).eval()
