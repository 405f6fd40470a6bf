"""Read any checkpoint file and put its tensors in vitkit (= timm) names. The file format is
sniffed from its first bytes and the layout (timm, Hugging Face, Flax) from its keys; file
names are never trusted."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .hf import hf_to_vitkit, is_hf
from .hf_families import HF_DEFAULTS, hf_family, hf_family_to_vitkit
from .io import METADATA_KEY, read_safetensors
from .npz import flax_to_vitkit, is_flax, read_npz
from .timm import infer_config, is_timm
from .torch_file import read_torch_file
from .validate import parse_document


def sniff(path: Path) -> str:
    """'safetensors', 'npz' or 'torch', from the file's bytes; anything else is an error."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        raise CheckpointError(f"{path} is empty or truncated ({len(head)} bytes)")
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except Exception as error:  # noqa: BLE001 - zipfile raises many kinds on damaged bytes
            reason = str(error) if isinstance(error, zipfile.BadZipFile) else (
                f"{type(error).__name__}: {error}")
            raise CheckpointError(
                f"{path} is a damaged zip archive ({reason}); it may be truncated: download or "
                "save it again"
            ) from error
        return "npz" if any(name.endswith(".npy") for name in names) else "torch"
    if head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < os.path.getsize(path):
        return "safetensors"
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy format
        return "torch"
    raise CheckpointError(
        f"{path} is not a checkpoint format vitkit reads (safetensors, PyTorch .pth/.bin, "
        "Google .npz)"
    )


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str, list[str]]:
    """The tensors of a checkpoint file in vitkit names, the config fields they imply (or that
    the file states), the layout they came in, and notes on anything dropped. Every failure is
    a CheckpointError whose message names the file."""
    try:
        return _read_weights(path)
    except CheckpointError as error:
        if str(path) in str(error):
            raise
        raise CheckpointError(f"{path}: {error}") from error


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str, list[str]]:
    kind = sniff(path)
    notes: list[str] = []
    if kind == "npz":
        arrays = read_npz(path)
        if not is_flax(arrays):
            raise CheckpointError(_unknown_layout(path, list(arrays)))
        state_dict, config = flax_to_vitkit(arrays)
        return state_dict, config, "flax", notes
    if kind == "safetensors":
        state_dict, metadata = read_safetensors(path)
        if METADATA_KEY in metadata:
            document = parse_document(metadata[METADATA_KEY], str(path))
            return state_dict, dict(document.get("config") or {}), "vitkit", notes
    else:
        state_dict = read_torch_file(path)
    if is_timm(state_dict):
        return state_dict, infer_config(state_dict), "timm", notes
    family = hf_family(state_dict)
    if family is not None:  # DeiT, DINOv2, CLIP or SigLIP in Hugging Face's names
        try:
            state_dict, notes = hf_family_to_vitkit(state_dict, family)
        except (RuntimeError, IndexError, ValueError) as error:  # shapes that do not fit
            raise CheckpointError(f"{path}: a Hugging Face {family.name} checkpoint whose "
                                  f"tensors do not fit together ({error}); the file is "
                                  "damaged") from error
        return state_dict, {**infer_config(state_dict), **HF_DEFAULTS[family.name]}, "hf", notes
    if is_hf(state_dict):
        state_dict, notes = hf_to_vitkit(state_dict)
        config = infer_config(state_dict)
        config["layer_norm_eps"] = 1e-12  # HF's default, when no config.json says otherwise
        return state_dict, config, "hf", notes
    if is_flax(state_dict):
        raise CheckpointError(f"{path}: Flax checkpoints are read from .npz files only")
    raise CheckpointError(_unknown_layout(path, list(state_dict)))


def _unknown_layout(path: Path, keys: list[str]) -> str:
    return (
        f"{path} does not hold a Vision Transformer in a layout vitkit knows (timm, Hugging "
        f"Face ViT/DeiT/DINOv2/CLIP/SigLIP, Google Flax); its first tensors are: "
        f"{', '.join(sorted(keys)[:6])}"
    )
