"""What a checkpoint says about itself is checked before it is used: its config fields must be
well-typed and agree with what its tensors show, its class names and preprocessing must make
sense. A damaged or hostile file then fails with a CheckpointError naming the problem, instead
of building a model of whatever size its metadata claims."""

from __future__ import annotations

import json
import math
from numbers import Real
from typing import Any

import torch

from ..errors import CheckpointError
from ..models import config_class, to_2tuple
from ..models.build import CNNS
from ..models.config import ACTIVATIONS, GLOBAL_POOLS
from ..models.meta import INTERPOLATIONS
from .timm import infer_config, is_timm

POSITIVE_INTS = ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_dim")
BOOLS = ("qkv_bias", "class_token", "distilled", "no_embed_class", "pre_norm")
RATES = ("drop_rate", "attn_drop_rate", "drop_path_rate")
# Fields the tensors determine, compared with what the checkpoint states.
SHOWN = ("patch_size", "in_chans", "embed_dim", "depth", "mlp_dim", "num_classes",
         "representation_size", "class_token", "qkv_bias", "resnet_layers", "resnet_width",
         "distilled", "reg_tokens", "pre_norm")
DOCUMENT_FIELDS = {"config": dict, "model_name": str, "class_names": list, "preprocessing": dict}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def parse_document(text: Any, where: str) -> dict[str, Any]:
    """A vitkit checkpoint description (config.json, or the safetensors metadata) as a dict
    whose fields have the right JSON types."""
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise CheckpointError(
                f"{where}: the vitkit description is not valid JSON ({error}); the file is "
                "damaged: save or download it again"
            ) from error
    if not isinstance(text, dict):
        raise CheckpointError(
            f"{where}: the vitkit description is a JSON {type(text).__name__}, not an object; "
            "the file is damaged: save or download it again"
        )
    for key, kind in DOCUMENT_FIELDS.items():
        if text.get(key) is not None and not isinstance(text[key], kind):
            raise CheckpointError(
                f"{where}: '{key}' in the vitkit description is a {type(text[key]).__name__}, "
                f"not a {kind.__name__}; the file is damaged: save or download it again"
            )
    return text


def check_config_fields(config: dict[str, Any], where: str) -> None:
    """Types and ranges of the ViTConfig fields a checkpoint states."""
    problems = []
    for key, value in config.items():
        if key in POSITIVE_INTS:
            ok = _int(value) and value > 0
        elif key == "num_classes":
            ok = _int(value) and value >= 0
        elif key == "representation_size":
            ok = value is None or (_int(value) and value >= 0)
        elif key == "img_size":
            ok = (_int(value) and value > 0) or (
                isinstance(value, (list, tuple)) and len(value) == 2
                and all(_int(side) and side > 0 for side in value))
        elif key in BOOLS:
            ok = isinstance(value, bool)
        elif key == "fc_norm":
            ok = value is None or isinstance(value, bool)
        elif key == "global_pool":
            ok = value in GLOBAL_POOLS
        elif key == "act_layer":
            ok = value in ACTIVATIONS
        elif key == "reg_tokens":
            ok = _int(value) and 0 <= value <= 64
        elif key == "init_values":
            ok = value is None or (_number(value) and value > 0)
        elif key == "layer_norm_eps":
            ok = _number(value) and value > 0
        elif key in RATES:
            ok = _number(value) and 0 <= value < 1
        elif key == "resnet_layers":  # a hybrid's ResNet: blocks per stage
            ok = (isinstance(value, (list, tuple)) and 0 < len(value) <= 6
                  and all(_int(n) and 0 < n <= 64 for n in value))
        elif key == "resnet_width":
            ok = _int(value) and value > 0
        else:
            problems.append(f"unknown field {key!r}")
            continue
        if not ok:
            problems.append(f"{key}={value!r}"[:80])
    if problems:
        raise CheckpointError(
            f"{where} states an invalid configuration ({'; '.join(problems[:6])}); the file is "
            "damaged or not a vitkit/timm/HF ViT checkpoint"
        )


def check_against_tensors(config: dict[str, Any], state_dict: dict[str, torch.Tensor],
                          where: str) -> None:
    """The stated fields must be what the tensors (in vitkit names) show."""
    if not is_timm(state_dict):
        return
    shown = infer_config(state_dict)
    differ = []
    for key in SHOWN:
        if key in config and key in shown:
            stated, actual = config[key], shown[key]
            if key == "representation_size":
                stated, actual = stated or None, actual or None
            if key == "resnet_layers" and isinstance(stated, (list, tuple)):
                stated, actual = list(stated), list(actual)
            if stated != actual:
                differ.append(f"{key} {stated!r} but its tensors show {actual!r}")
    if "img_size" in config:
        height, width = to_2tuple(config["img_size"])
        patch = shown["patch_size"]
        tokens = state_dict["pos_embed"].shape[1]
        if not config.get("no_embed_class", shown.get("no_embed_class", False)):
            tokens -= (int(shown["class_token"]) + int(shown.get("distilled", False))
                       + shown.get("reg_tokens", 0))
        if (height // patch) * (width // patch) != tokens:
            differ.append(f"img_size {height}x{width} (a {height // patch}x{width // patch} grid) "
                          f"but its tensors hold {tokens} position embeddings")
    if differ:
        raise CheckpointError(
            f"{where} states {'; '.join(differ[:6])}; the file is damaged or its config belongs "
            "to another model"
        )


def check_class_names(names: Any, num_classes: Any, where: str) -> None:
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"{where}: class_names is not a list of strings; the file is damaged")
    if _int(num_classes) and len(names) != num_classes:
        raise CheckpointError(
            f"{where} names {len(names)} classes for a {num_classes}-class head; the file is "
            "damaged: save or download it again"
        )


def check_preprocessing(prep: Any, in_chans: Any, where: str) -> None:
    if prep is None:
        return
    if not isinstance(prep, dict):
        raise CheckpointError(f"{where}: preprocessing is not a JSON object; the file is damaged")
    problems = []
    for key in ("mean", "std"):
        if key in prep:
            value = prep[key]
            ok = (isinstance(value, list) and all(_number(v) for v in value)
                  and (not _int(in_chans) or len(value) in (1, in_chans)))
            if ok and key == "std":
                ok = all(v > 0 for v in value)
            if not ok:
                problems.append(f"{key}={value!r}"[:80])
    if "crop_pct" in prep and not (_number(prep["crop_pct"]) and 0 < prep["crop_pct"] <= 1):
        problems.append(f"crop_pct={prep['crop_pct']!r}"[:80])
    if "interpolation" in prep and prep["interpolation"] not in INTERPOLATIONS:
        problems.append(f"interpolation={prep['interpolation']!r}"[:80])
    if "img_size" in prep:
        size = prep["img_size"]
        if not (isinstance(size, list) and len(size) == 2 and all(_int(s) and s > 0 for s in size)):
            problems.append(f"img_size={size!r}"[:80])
    if problems:
        raise CheckpointError(
            f"{where} states invalid preprocessing ({'; '.join(problems)}); the file is damaged"
        )


def validate(config: Any, state_dict: dict[str, torch.Tensor], class_names: Any,
             preprocessing: Any, where: str, architecture: str | None = None) -> None:
    """Every check of what a checkpoint states: its config's fields and their agreement with
    the tensors, its class names (one per head output) and its preprocessing. A ResNet's
    config is checked by building its ResNetConfig (its tensors by the strict load)."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: its config is not a JSON object; the file is damaged")
    if architecture in CNNS:
        try:
            config_class(architecture).from_dict(config)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{where} states an invalid ResNet configuration ({error}); "
                                  "the file is damaged") from error
    else:
        check_config_fields(config, where)
    check_against_tensors(config, state_dict, where)
    check_class_names(class_names, config.get("num_classes"), where)
    check_preprocessing(preprocessing, config.get("in_chans"), where)
