"""timm's side: the config.json of timm's hub repos, and what a timm/vitkit state dict's
tensor shapes say about the architecture (everything but the head count)."""

from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import CheckpointError
from ..models import PRESETS
from ..models.config import SIZES

# timm model_args that are ViTConfig fields under the same name or another one.
_MODEL_ARGS = {
    "img_size": "img_size", "patch_size": "patch_size", "in_chans": "in_chans",
    "embed_dim": "embed_dim", "depth": "depth", "num_heads": "num_heads",
    "qkv_bias": "qkv_bias", "class_token": "class_token", "global_pool": "global_pool",
    "fc_norm": "fc_norm", "num_classes": "num_classes", "init_values": "init_values",
    "no_embed_class": "no_embed_class", "reg_tokens": "reg_tokens", "pre_norm": "pre_norm",
}
# timm's act_layer names for the MLP activations vitkit builds.
_ACT_LAYERS = {"gelu": "gelu", "gelu_tanh": "gelu_tanh", "quick_gelu": "quick_gelu"}


def is_timm(keys: Any) -> bool:
    """Whether these keys are timm's (= vitkit's) VisionTransformer naming."""
    return "patch_embed.proj.weight" in keys and "pos_embed" in keys


# The dimensions of the tensors whose shapes infer_config reads.
_NDIM = {"patch_embed.proj.weight": 4, "pos_embed": 3, "head.weight": 2,
         "pre_logits.fc.weight": 2, "blocks.0.mlp.fc1.weight": 2}


def infer_config(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """ViTConfig fields implied by the tensors of a vitkit/timm state dict.

    The head count is not among them (qkv's shape is the same for any head count); the
    image size is taken to be square.
    """
    for key, ndim in _NDIM.items():
        if key in state_dict and state_dict[key].ndim != ndim:
            raise CheckpointError(
                f"tensor {key} has shape {tuple(state_dict[key].shape)}, where a ViT's has "
                f"{ndim} dimensions; the file is damaged or holds another architecture"
            )
    proj = state_dict["patch_embed.proj.weight"]
    dim, in_chans, patch, _ = proj.shape
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    class_token = "cls_token" in state_dict
    fc_norm = "fc_norm.weight" in state_dict
    switches = infer_switches(state_dict)
    grid = state_dict["pos_embed"].shape[1]
    if not switches.get("no_embed_class"):
        grid -= int(class_token) + int(switches.get("distilled", False)) \
            + switches.get("reg_tokens", 0)
    side = int(round(max(grid, 0) ** 0.5))
    pool = "avg" if fc_norm or not class_token else "token"
    config: dict[str, Any] = dict(
        patch_size=patch, in_chans=in_chans, embed_dim=dim, depth=len(blocks),
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict, class_token=class_token,
        global_pool="map" if "attn_pool.latent" in state_dict else pool, fc_norm=fc_norm,
        num_classes=state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0,
        representation_size=(
            state_dict["pre_logits.fc.weight"].shape[0]
            if "pre_logits.fc.weight" in state_dict else None
        ),
    )
    if "blocks.0.mlp.fc1.weight" in state_dict:
        config["mlp_dim"] = state_dict["blocks.0.mlp.fc1.weight"].shape[0]
    config.update(switches)
    if HYBRID_STEM in state_dict:  # R50+ViT (Section 3.1): 1x1 patches of a ResNet feature map
        config.update(infer_hybrid(state_dict))
        patch = config["patch_size"]
    if side * side == grid:
        config["img_size"] = [side * patch, side * patch]
    return config


HYBRID_STEM = "patch_embed.backbone.stem.conv.weight"


def _is_square(count: int) -> bool:
    side = int(round(max(count, 0) ** 0.5))
    return count > 0 and side * side == count


def infer_switches(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The descendants' switches that the tensor names show: DeiT's dist_token, DINOv2's
    reg_token, layer scale (ls1.gamma), CLIP's norm_pre (with timm's eps 1e-5 for CLIP), and
    E_pos on the patches only (a square grid only without the prefix tokens). Only the
    switches that are on are returned. The activation is not shown: name the model."""
    switches: dict[str, Any] = {}
    prefix = int("cls_token" in state_dict)
    if "dist_token" in state_dict:
        switches["distilled"] = True
        prefix += 1
    if "reg_token" in state_dict and state_dict["reg_token"].ndim == 3:
        switches["reg_tokens"] = state_dict["reg_token"].shape[1]
        prefix += switches["reg_tokens"]
    if "blocks.0.ls1.gamma" in state_dict:  # the value only matters for a fresh model
        switches["init_values"] = 1e-5
    if "norm_pre.weight" in state_dict:
        switches.update(pre_norm=True, layer_norm_eps=1e-5)
    tokens = state_dict["pos_embed"].shape[1] if state_dict["pos_embed"].ndim == 3 else 0
    if prefix and _is_square(tokens) and not _is_square(tokens - prefix):
        switches["no_embed_class"] = True
    return switches


def infer_hybrid(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """HybridConfig fields shown by a hybrid's tensors: the ResNet's stem width, input channels
    and blocks per stage, and so its stride (the effective patch size)."""
    stem = state_dict[HYBRID_STEM]
    if stem.ndim != 4:
        raise CheckpointError(f"tensor {HYBRID_STEM} has shape {tuple(stem.shape)}, where a "
                              "hybrid's has 4 dimensions; the file is damaged")
    blocks: dict[int, set[int]] = {}
    pattern = r"patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\."
    for key in state_dict:
        if match := re.match(pattern, key):
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    layers = [len(blocks[i]) for i in sorted(blocks)]
    if not layers or sorted(blocks) != list(range(len(layers))):
        raise CheckpointError("a hybrid ViT checkpoint whose ResNet stages are missing or not "
                              "numbered 0, 1, ...; the file is damaged")
    return dict(resnet_layers=layers, resnet_width=stem.shape[0], in_chans=stem.shape[1],
                patch_size=4 * 2 ** (len(layers) - 1))


def guess_num_heads(config: dict[str, Any]) -> tuple[int, str] | None:
    """A head count for an architecture without one: from the preset with the same shape,
    else the standard size with the same width. Returns (heads, where it came from)."""
    keys = ("embed_dim", "depth", "mlp_dim", "patch_size")
    for name, preset in PRESETS.items():
        if all(getattr(preset, key) == config.get(key) for key in keys):
            return preset.num_heads, f"the preset {name}"
    for size, (dim, _, heads, _) in SIZES.items():
        if dim == config.get("embed_dim"):
            return heads, f"the standard {size} width"
    return None


def read_timm_config(document: dict[str, Any]) -> dict[str, Any]:
    """What a timm hub config.json says: architecture name, config fields, class names and
    preprocessing (from pretrained_cfg)."""
    pretrained = document.get("pretrained_cfg") or {}
    fields = {_MODEL_ARGS[k]: v for k, v in (document.get("model_args") or {}).items()
              if k in _MODEL_ARGS}
    if "num_classes" in document:
        fields.setdefault("num_classes", document["num_classes"])
    act = (document.get("model_args") or {}).get("act_layer")
    if act in _ACT_LAYERS:
        fields["act_layer"] = _ACT_LAYERS[act]
    if document.get("global_pool") in ("token", "avg", "map"):
        fields.setdefault("global_pool", document["global_pool"])
    if "input_size" in pretrained:
        fields.setdefault("img_size", list(pretrained["input_size"][-2:]))
        fields.setdefault("in_chans", pretrained["input_size"][0])
    prep = {key: pretrained[key] for key in ("mean", "std", "interpolation", "crop_pct")
            if key in pretrained}
    for key in ("mean", "std"):
        if key in prep:
            prep[key] = list(prep[key])
    names = document.get("label_names")
    if isinstance(names, dict):  # {index: name}, allowed by timm when indices have gaps
        names = [names.get(str(i), names.get(i)) for i in range(len(names))]
        names = None if None in names else names
    return {
        "architecture": document.get("architecture"),
        "config": fields,
        "class_names": names,
        "preprocessing": prep,
    }


# vitkit presets that timm also registers (timm has no ViT-Ti/32 and no small-image presets);
# any other model is written as a vit_base_patch16_224 whose model_args say every size.
TIMM_ARCHITECTURES = frozenset(
    f"vit_{size}_patch{patch}_{res}" for size in ("small", "base", "large")
    for patch in (16, 32) for res in (224, 384)
) | {"vit_tiny_patch16_224", "vit_tiny_patch16_384", "vit_small_patch8_224",
     "vit_base_patch8_224", "vit_huge_patch14_224"} | {
    name for name, preset in PRESETS.items() if preset.family != "vit"}


def _timm_base_architecture(config: Any) -> str:
    """The timm model whose defaults the model_args of another model are applied to: it
    decides what model_args cannot say (the class, the LayerNorm's eps)."""
    if config.distilled:
        return "deit_base_distilled_patch16_224"
    if config.pre_norm:
        return "vit_base_patch16_clip_224"  # LayerNorm eps 1e-5
    return "vit_base_patch16_224"


def _switch_args(config: Any) -> dict[str, Any]:
    """timm model_args for the descendants' switches that are on."""
    args: dict[str, Any] = {}
    for key in ("init_values", "no_embed_class", "reg_tokens", "pre_norm"):
        if getattr(config, key, None):
            args[key] = getattr(config, key)
    if getattr(config, "act_layer", "gelu") != "gelu":
        args["act_layer"] = _ACT_LAYERS[config.act_layer]
    return args


def timm_config_of(model_name: str | None, config: Any, class_names: list[str] | None,
                   preprocessing: dict[str, Any]) -> dict[str, Any]:
    """A timm hub-style config.json for a vitkit model (architecture, args, pretrained_cfg),
    for `timm.create_model("local-dir:FOLDER", pretrained=True)`: the model_args rebuild the
    exact architecture, the pretrained_cfg carries classes, input size, mean/std and crop."""
    known = model_name in TIMM_ARCHITECTURES
    document: dict[str, Any] = {
        "architecture": model_name if known else _timm_base_architecture(config),
        "num_classes": config.num_classes,
        "num_features": config.embed_dim,
        "global_pool": config.global_pool,
        "model_args": {
            "img_size": list(config.img_size), "patch_size": config.patch_size,
            "in_chans": config.in_chans, "embed_dim": config.embed_dim, "depth": config.depth,
            "num_heads": config.num_heads, "mlp_ratio": config.mlp_dim / config.embed_dim,
            "qkv_bias": config.qkv_bias, "class_token": config.class_token,
            "global_pool": config.global_pool, "fc_norm": config.fc_norm,
            **_switch_args(config),
        },
        "pretrained_cfg": {
            "input_size": [config.in_chans, *config.img_size],
            "interpolation": preprocessing.get("interpolation", "bicubic"),
            "mean": list(preprocessing["mean"]),
            "std": list(preprocessing["std"]),
            "crop_pct": preprocessing.get("crop_pct", 0.9),
            "num_classes": config.num_classes,
        },
    }
    if getattr(config, "resnet_layers", None):  # a hybrid: timm's patches are 1x1 feature pixels
        del document["model_args"]["patch_size"]
    if class_names:
        document["label_names"] = list(class_names)
    return document
