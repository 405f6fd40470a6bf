"""Hugging Face `ViTModel` / `ViTForImageClassification` checkpoints, both ways.

HF splits the attention input projection into query, key and value (timm's qkv rows 0:D,
D:2D, 2D:3D) and names every layer differently; `pooler.dense` (+ tanh) is the paper's
representation layer. Files on the hub use the classic names below; transformers >= 5 names
modules differently in memory (`layers.N.attention.q_proj`, ...), which is read too.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import CheckpointError
from ..models import ViTConfig

# (HF name pattern, vitkit name) for tensors that map one to one; {i} is a block index.
_CLASSIC = [
    ("embeddings.cls_token", "cls_token"),
    ("embeddings.position_embeddings", "pos_embed"),
    ("embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    ("encoder.layer.{i}.layernorm_before.{p}", "blocks.{i}.norm1.{p}"),
    ("encoder.layer.{i}.attention.output.dense.{p}", "blocks.{i}.attn.proj.{p}"),
    ("encoder.layer.{i}.layernorm_after.{p}", "blocks.{i}.norm2.{p}"),
    ("encoder.layer.{i}.intermediate.dense.{p}", "blocks.{i}.mlp.fc1.{p}"),
    ("encoder.layer.{i}.output.dense.{p}", "blocks.{i}.mlp.fc2.{p}"),
    ("layernorm.{p}", "norm.{p}"),
    ("pooler.dense.{p}", "pre_logits.fc.{p}"),
]
_MODERN = [
    ("layers.{i}.layernorm_before.{p}", "blocks.{i}.norm1.{p}"),
    ("layers.{i}.attention.o_proj.{p}", "blocks.{i}.attn.proj.{p}"),
    ("layers.{i}.layernorm_after.{p}", "blocks.{i}.norm2.{p}"),
    ("layers.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
    ("layers.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
]
_QKV = {  # the split attention projections, classic and modern
    r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)": None,
    r"layers\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)": None,
}
_PART = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}
_IGNORED = ("embeddings.mask_token",)  # masked-image-modelling only


def _regex(pattern: str) -> re.Pattern:
    escaped = re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)")
    escaped = escaped.replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(escaped + "$")


_RULES = [(_regex(src), dst) for src, dst in _CLASSIC + _MODERN]


def is_hf(keys: Any) -> bool:
    """Whether these keys are a Hugging Face ViT (with or without the `vit.` prefix)."""
    return any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys)


def hf_to_vitkit(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a HF ViT state dict to vitkit names; returns it and notes on dropped tensors."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], list[torch.Tensor | None]] = {}
    unknown, notes = [], []
    for key, value in state_dict.items():
        name = key[4:] if key.startswith("vit.") else key
        if key in ("classifier.weight", "classifier.bias"):
            out["head." + key.split(".")[1]] = value
            continue
        if name in _IGNORED:
            notes.append(f"dropped {key} (used only for masked image modelling)")
            continue
        for pattern in _QKV:
            match = re.fullmatch(pattern, name)
            if match:
                block, part, kind = match.groups()
                qkv.setdefault((block, kind), [None, None, None])[_PART[part]] = value
                break
        else:
            for regex, target in _RULES:
                match = regex.fullmatch(name)
                if match:
                    out[target.format(**match.groupdict())] = value
                    break
            else:
                unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} tensors of this Hugging Face checkpoint are not part of a ViT: "
            + ", ".join(unknown[:8]) + "; is it another architecture (e.g. DeiT, BEiT)?"
        )
    for (block, kind), parts in qkv.items():
        if any(p is None for p in parts):
            raise CheckpointError(f"block {block} lacks one of query/key/value {kind}")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    return out, notes


def vitkit_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF `ViTForImageClassification` tensors (classic names, as on the hub) of a vitkit state
    dict; the representation layer becomes `vit.pooler.dense`."""
    if "fc_norm.weight" in state_dict or "cls_token" not in state_dict:
        raise CheckpointError(
            "Hugging Face ViTs classify from the [class] token; an average-pooling model has no "
            "HF equivalent: export it with --to timm or --to vitkit"
        )
    inverse = {dst: src for src, dst in _CLASSIC}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            out["classifier." + key.split(".")[1]] = value
            continue
        match = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key)
        if match:
            block, kind = match.groups()
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"vit.encoder.layer.{block}.attention.attention.{part}.{kind}"] = chunk
            continue
        generic = re.sub(r"blocks\.\d+\.", "blocks.{i}.", key)
        generic = re.sub(r"\.(weight|bias)$", ".{p}", generic)
        if generic not in inverse:
            raise CheckpointError(f"no Hugging Face name for tensor {key}")
        block = re.match(r"blocks\.(\d+)\.", key)
        fields = {"i": block.group(1) if block else "", "p": key.rsplit(".", 1)[-1]}
        out["vit." + inverse[generic].format(**fields)] = value
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def config_from_hf(document: dict[str, Any]) -> dict[str, Any]:
    """ViTConfig fields from a HF config.json (hidden_size, num_hidden_layers, ...)."""
    if document.get("model_type") not in (None, "vit"):
        raise CheckpointError(
            f"config.json describes a {document.get('model_type')!r} model, not a ViT"
        )
    act = document.get("hidden_act", "gelu")
    if act != "gelu":
        raise CheckpointError(f"this ViT uses the {act!r} activation; vitkit's MLP uses exact GELU")
    size = document.get("image_size", 224)
    fields = dict(
        embed_dim=document.get("hidden_size", 768),
        depth=document.get("num_hidden_layers", 12),
        num_heads=document.get("num_attention_heads", 12),
        mlp_dim=document.get("intermediate_size", 3072),
        img_size=[size, size] if isinstance(size, int) else list(size),
        patch_size=document.get("patch_size", 16),
        in_chans=document.get("num_channels", 3),
        layer_norm_eps=document.get("layer_norm_eps", 1e-12),
        qkv_bias=document.get("qkv_bias", True),
    )
    return fields


def class_names_from_hf(document: dict[str, Any], num_classes: int) -> list[str] | None:
    """Class names from id2label, unless they are HF's placeholders LABEL_0, LABEL_1, ..."""
    id2label = document.get("id2label") or {}
    if len(id2label) != num_classes or not num_classes:
        return None
    names = [str(id2label.get(str(i), id2label.get(i, ""))) for i in range(num_classes)]
    if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None
    return names


# PIL's resampling codes, as HF's image processors store them.
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "lanczos"}


def preprocessing_from_hf(document: dict[str, Any]) -> dict[str, Any]:
    """mean/std/interpolation/crop_pct from a HF preprocessor_config.json."""
    prep: dict[str, Any] = {}
    if "image_mean" in document:
        prep["mean"] = list(document["image_mean"])
    if "image_std" in document:
        prep["std"] = list(document["image_std"])
    if document.get("resample") in _PIL_RESAMPLE:
        prep["interpolation"] = _PIL_RESAMPLE[document["resample"]]
    prep["crop_pct"] = float(document.get("crop_pct") or 1.0)  # ViT's processor only resizes
    return prep


def hf_config_of(config: ViTConfig, class_names: list[str] | None) -> dict[str, Any]:
    """A HF config.json for `config` (ViTForImageClassification, or ViTModel without a head)."""
    height, width = config.img_size
    labels = class_names or [f"LABEL_{i}" for i in range(config.num_classes)]
    return {
        "architectures": ["ViTForImageClassification" if config.num_classes else "ViTModel"],
        "model_type": "vit",
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.mlp_dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": config.layer_norm_eps,
        "image_size": height if height == width else [height, width],
        "patch_size": config.patch_size,
        "num_channels": config.in_chans,
        "qkv_bias": config.qkv_bias,
        "encoder_stride": config.patch_size,
        "pooler_output_size": config.representation_size or config.embed_dim,
        "pooler_act": "tanh",
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "torch_dtype": "float32",
    }


def hf_preprocessor_of(preprocessing: dict[str, Any]) -> dict[str, Any]:
    """A HF preprocessor_config.json (ViTImageProcessor) for vitkit preprocessing."""
    codes = {name: code for code, name in _PIL_RESAMPLE.items()}
    height, width = preprocessing["img_size"]
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": height, "width": width},
        "resample": codes.get(preprocessing.get("interpolation", "bicubic"), 3),
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(preprocessing["mean"]),
        "image_std": list(preprocessing["std"]),
    }
