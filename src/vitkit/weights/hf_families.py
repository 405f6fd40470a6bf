"""Hugging Face checkpoints of the ViT's descendants, both ways: `DeiTForImageClassification
WithTeacher`, `Dinov2Model` / `Dinov2WithRegistersModel`, `CLIPVisionModel` (and the image
tower of a `CLIPModel`) and `SiglipVisionModel` (and a `SiglipModel`'s).

Each family is a table of HF module names (the hub's, as `save_pretrained` writes them) and
vitkit's (= timm's); the family is told by its tensor names, never by a file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import CheckpointError


@dataclass(frozen=True)
class HFFamily:
    """How one family's HF tensors are named: a prefix on every name, the block path, the
    split q/k/v projections, and the other modules, per block and at the top."""

    name: str  # vitkit's family
    marker: str  # a tensor name (suffix) that only this family has
    prefix: str
    block: str  # "{i}" is the block index
    qkv: tuple[str, str, str]
    per_block: dict[str, str]
    top: dict[str, str]
    config_types: tuple[str, ...] = ()  # config.json model_type values
    dropped: tuple[str, ...] = field(default=())  # tensors vitkit has no use for


_VIT_BLOCK = {"layernorm_before": "norm1", "attention.output.dense": "attn.proj",
              "layernorm_after": "norm2", "intermediate.dense": "mlp.fc1",
              "output.dense": "mlp.fc2"}
_CLIP_BLOCK = {"layer_norm1": "norm1", "self_attn.out_proj": "attn.proj",
               "layer_norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_SPLIT = ("attention.attention.query", "attention.attention.key", "attention.attention.value")
_CLIP_SPLIT = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")

DEIT = HFFamily(
    "deit-distilled", "embeddings.distillation_token", "deit.", "encoder.layer.{i}.", _SPLIT,
    _VIT_BLOCK,
    {"embeddings.cls_token": "cls_token", "embeddings.distillation_token": "dist_token",
     "embeddings.position_embeddings": "pos_embed",
     "embeddings.patch_embeddings.projection": "patch_embed.proj", "layernorm": "norm",
     "^cls_classifier": "head", "^distillation_classifier": "head_dist"},
    ("deit",))
DINOV2 = HFFamily(
    "dinov2", "layer_scale1.lambda1", "", "encoder.layer.{i}.", _SPLIT,
    {"norm1": "norm1", "attention.output.dense": "attn.proj", "norm2": "norm2",
     "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "layer_scale1.lambda1": "ls1.gamma",
     "layer_scale2.lambda1": "ls2.gamma"},
    {"embeddings.cls_token": "cls_token", "embeddings.register_tokens": "reg_token",
     "embeddings.position_embeddings": "pos_embed",
     "embeddings.patch_embeddings.projection": "patch_embed.proj", "layernorm": "norm"},
    ("dinov2", "dinov2_with_registers"), ("embeddings.mask_token",))
CLIP = HFFamily(
    "clip", "pre_layrnorm.weight", "", "encoder.layers.{i}.", _CLIP_SPLIT, _CLIP_BLOCK,
    {"embeddings.class_embedding": "cls_token", "embeddings.position_embedding.weight": "pos_embed",
     "embeddings.patch_embedding": "patch_embed.proj", "pre_layrnorm": "norm_pre",
     "post_layernorm": "norm"},
    ("clip_vision_model", "clip"), ("embeddings.position_ids",))
SIGLIP = HFFamily(
    "siglip", "embeddings.patch_embedding.weight", "", "encoder.layers.{i}.", _CLIP_SPLIT,
    _CLIP_BLOCK,
    {"embeddings.position_embedding.weight": "pos_embed",
     "embeddings.patch_embedding": "patch_embed.proj", "post_layernorm": "norm",
     "head.probe": "attn_pool.latent", "head.attention.out_proj": "attn_pool.proj",
     "head.layernorm": "attn_pool.norm", "head.mlp.fc1": "attn_pool.mlp.fc1",
     "head.mlp.fc2": "attn_pool.mlp.fc2"},
    ("siglip_vision_model", "siglip"), ("embeddings.position_ids",))
FAMILIES = (DEIT, DINOV2, CLIP, SIGLIP)  # in the order they are told apart
# transformers >= 5's in-memory names (torch.save of a live model) -> the hub's.
_MODERN = [(r"(^|\.)layers\.(\d+)\.attention\.(q|k|v)_proj\.",
            lambda m: f"{m.group(1)}encoder.layer.{m.group(2)}.attention.attention."
                      f"{dict(q='query', k='key', v='value')[m.group(3)]}."),
           (r"(^|\.)layers\.(\d+)\.attention\.o_proj\.",
            lambda m: f"{m.group(1)}encoder.layer.{m.group(2)}.attention.output.dense."),
           (r"(^|\.)layer\.(\d+)\.attention\.(q|k|v)_proj\.",
            lambda m: f"{m.group(1)}layer.{m.group(2)}.attention.attention."
                      f"{dict(q='query', k='key', v='value')[m.group(3)]}."),
           (r"(^|\.)layer\.(\d+)\.attention\.o_proj\.",
            lambda m: f"{m.group(1)}layer.{m.group(2)}.attention.output.dense.")]
_DEIT_MODERN = [(r"^layers\.(\d+)\.mlp\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
                (r"^layers\.(\d+)\.mlp\.fc2\.", r"encoder.layer.\1.output.dense."),
                (r"^layers\.(\d+)\.", r"encoder.layer.\1.")]


def hf_family(keys: Any) -> HFFamily | None:
    """The HF family whose names these are, or None (a plain ViT, or not HF)."""
    keys = list(keys)
    if not any("embeddings.patch_embedding" in k for k in keys):
        return None
    for family in FAMILIES:
        if any(k.endswith(family.marker) for k in keys):
            return family
    return None


def _strip(key: str, family: HFFamily) -> str | None:
    """The key without the family's prefix (or a CLIPModel's `vision_model.`); None for the
    text tower and the other tensors of a two-tower model."""
    for prefix in (family.prefix, "vision_model.", "dinov2.", "siglip.", "clip."):
        if prefix and key.startswith(prefix):
            key = key[len(prefix):]
            break
    if key.startswith(("text_model.", "text_projection", "logit_scale", "logit_bias")):
        return None
    for pattern, repl in _MODERN + (_DEIT_MODERN if family is DEIT else []):
        key = re.sub(pattern, repl, key)
    return key


def _rename(key: str, family: HFFamily) -> str | None:
    """The vitkit name of one (stripped) HF name, or None if no rule takes it."""
    block = re.escape(family.block).replace(r"\{i\}", r"(\d+)")
    match = re.fullmatch(block + r"(.+?)(\.weight|\.bias)?", key)
    if match:
        index, module, param = match.group(1), match.group(2), match.group(3) or ""
        if module in family.per_block:
            return f"blocks.{index}.{family.per_block[module]}{param}"
        return None
    for source, target in family.top.items():
        bare = source.lstrip("^")
        if key == bare:
            return target
        if key in (f"{bare}.weight", f"{bare}.bias"):
            return target + key[len(bare):]
    return None


def hf_family_to_vitkit(state_dict: dict[str, torch.Tensor], family: HFFamily
                        ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A family's HF tensors in vitkit names, and notes on what was dropped or reshaped."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], list[torch.Tensor | None]] = {}
    unknown, notes = [], []
    split = "|".join(re.escape(part) for part in family.qkv)
    block = re.escape(family.block).replace(r"\{i\}", r"(\d+)")
    for original, value in state_dict.items():
        if original in ("classifier.weight", "classifier.bias") and family is not DEIT:
            out["head." + original.split(".")[1]] = value
            continue
        key = _strip(original, family)
        if key is None or key in family.dropped:
            continue
        if match := re.fullmatch(block + f"({split})" + r"\.(weight|bias)", key):
            index, part, kind = match.groups()
            qkv.setdefault((index, kind), [None] * 3)[family.qkv.index(part)] = value
        elif key.startswith("head.attention.in_proj_"):  # SigLIP's pooling: q, then k and v
            kind = key.rsplit("_", 1)[-1]
            dim = value.shape[0] // 3
            out[f"attn_pool.q.{kind}"], out[f"attn_pool.kv.{kind}"] = value[:dim], value[dim:]
        elif key == "visual_projection.weight":  # CLIP's projection, as timm's head
            out["head.weight"], out["head.bias"] = value, value.new_zeros(value.shape[0])
            notes.append("read CLIP's visual_projection as the head (zero bias)")
        elif (target := _rename(key, family)) is not None:
            out[target] = value
        else:
            unknown.append(original)
    if family is DEIT and any(k.endswith("classifier.weight") and "_" not in k
                              for k in unknown):
        raise CheckpointError(
            "a Hugging Face DeiTForImageClassification classifies from the [class] token only, "
            "which vitkit's distilled DeiT (two heads, averaged) does not; load the "
            "DeiTForImageClassificationWithTeacher checkpoint instead")
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} tensors of this Hugging Face {family.name} checkpoint are not "
            f"part of it: {', '.join(unknown[:6])}; is it another architecture?")
    for (index, kind), parts in qkv.items():
        if any(part is None for part in parts):
            raise CheckpointError(f"block {index} lacks one of query/key/value {kind}")
        out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    return _to_timm_shapes(out, family), notes


def _to_timm_shapes(out: dict[str, torch.Tensor], family: HFFamily) -> dict[str, torch.Tensor]:
    """HF's embedding shapes as timm's: CLIP's and SigLIP's (tokens, D) tables and CLIP's (D,)
    class embedding get batch dimensions; DINOv2 with registers keeps E_pos of the [class]
    token inside it, which timm (no_embed_class) folds into the token."""
    if "pos_embed" in out and out["pos_embed"].ndim == 2:
        out["pos_embed"] = out["pos_embed"].unsqueeze(0)
    if "cls_token" in out and out["cls_token"].ndim == 1:
        out["cls_token"] = out["cls_token"].reshape(1, 1, -1)
    if family is DINOV2 and "reg_token" in out:
        pos = out["pos_embed"]
        out["cls_token"] = out["cls_token"] + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
    return out


_ACTS = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_pytorch_tanh": "gelu_tanh",
         "gelu_new": "gelu_tanh"}
# What a family's HF checkpoint implies when no config.json says otherwise.
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "deit-distilled": {"layer_norm_eps": 1e-12},
    "dinov2": {"layer_norm_eps": 1e-6},
    "clip": {"layer_norm_eps": 1e-5, "act_layer": "quick_gelu"},
    "siglip": {"layer_norm_eps": 1e-6, "act_layer": "gelu_tanh", "fc_norm": False},
}


def family_config_from_hf(document: dict[str, Any]) -> dict[str, Any]:
    """ViTConfig fields from the config.json of one of the families (a two-tower model's
    `vision_config`)."""
    kind = document.get("model_type")
    document = document.get("vision_config") or document
    act = document.get("hidden_act", "gelu")
    if act not in _ACTS:
        raise CheckpointError(f"this {kind} model uses the {act!r} activation, which vitkit's "
                              f"MLP does not have (it has {', '.join(_ACTS)})")
    if document.get("use_swiglu_ffn"):
        raise CheckpointError("a DINOv2 with a SwiGLU MLP (giant) is not built by vitkit yet")
    dim = document.get("hidden_size", 768)
    size = document.get("image_size", 224)
    fields: dict[str, Any] = dict(
        embed_dim=dim, depth=document.get("num_hidden_layers", 12),
        num_heads=document.get("num_attention_heads", 12),
        mlp_dim=document.get("intermediate_size") or int(dim * document.get("mlp_ratio", 4)),
        img_size=[size, size] if isinstance(size, int) else list(size),
        patch_size=document.get("patch_size", 16), in_chans=document.get("num_channels", 3),
        layer_norm_eps=document.get("layer_norm_eps", 1e-6), act_layer=_ACTS[act],
        qkv_bias=document.get("qkv_bias", True))
    if kind in ("dinov2", "dinov2_with_registers"):
        fields["init_values"] = document.get("layerscale_value", 1.0)
    if kind in ("siglip", "siglip_vision_model") and not document.get("vision_use_head", True):
        fields.update(global_pool="avg", class_token=False, fc_norm=False)
    return fields


def export_family(config: Any) -> HFFamily | None:
    """The HF family a vitkit model is written as; None for the paper's ViT (hf.py's)."""
    if config.distilled:
        return DEIT
    if config.pre_norm:
        return CLIP
    if not config.class_token and config.global_pool in ("map", "avg") and not config.fc_norm:
        return SIGLIP
    if config.init_values and (config.reg_tokens or not config.no_embed_class):
        return DINOV2
    if config.init_values or config.no_embed_class or config.reg_tokens:
        raise CheckpointError("transformers has no class for this model (DeiT III's layer "
                              "scale and patch-only E_pos); export it with --to timm")
    return None


def _hf_name(key: str, family: HFFamily) -> str:
    match = re.fullmatch(r"blocks\.(\d+)\.(.+?)(\.weight|\.bias|\.gamma)?", key)
    if match:
        index, module, param = match.groups()
        inverse = {v: k for k, v in family.per_block.items()}
        name = inverse.get(f"{module}{param or ''}") or (
            inverse.get(module, "") + (param or ""))
        if not name or name == (param or ""):
            raise CheckpointError(f"no Hugging Face {family.name} name for tensor {key}")
        return family.prefix + family.block.format(i=index) + name
    for source, target in family.top.items():
        bare, rooted = source.lstrip("^"), source.startswith("^")
        prefix = "" if rooted else family.prefix
        if key == target:
            return prefix + bare
        if key in (f"{target}.weight", f"{target}.bias"):
            return prefix + bare + key[len(target):]
    raise CheckpointError(f"no Hugging Face {family.name} name for tensor {key}")


def vitkit_to_hf_family(state_dict: dict[str, torch.Tensor], config: Any, family: HFFamily
                        ) -> dict[str, torch.Tensor]:
    """The tensors of a vitkit model in `family`'s HF names, as `save_pretrained` writes."""
    if family is not DEIT and config.num_classes:
        raise CheckpointError(f"transformers' {family.name} vision model has no classifier of "
                              "this kind; export a headless model (num_classes=0) or use --to "
                              "timm")
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    if family is DINOV2 and config.reg_tokens:  # HF keeps the [class] token's E_pos apart
        state["pos_embed"] = torch.cat([torch.zeros_like(state["cls_token"]),
                                        state["pos_embed"]], dim=1)
    if family in (CLIP, SIGLIP):
        state["pos_embed"] = state["pos_embed"][0]
        if "cls_token" in state:
            state["cls_token"] = state["cls_token"].reshape(-1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key)
        if match:
            block = family.prefix + family.block.format(i=match.group(1))
            for part, chunk in zip(family.qkv, value.chunk(3, dim=0), strict=True):
                out[f"{block}{part}.{match.group(2)}"] = chunk
        elif key.startswith("attn_pool.q.") or key.startswith("attn_pool.kv."):
            continue  # joined below
        else:
            out[_hf_name(key, family)] = value
    for kind in ("weight", "bias"):
        if f"attn_pool.q.{kind}" in state:
            out[f"head.attention.in_proj_{kind}"] = torch.cat(
                [state[f"attn_pool.q.{kind}"], state[f"attn_pool.kv.{kind}"]], dim=0)
    if family is DINOV2:
        out["embeddings.mask_token"] = torch.zeros(1, config.embed_dim)
    return {k: v.contiguous() for k, v in out.items()}


def _ratio(mlp_dim: int, dim: int) -> int | float:
    """DINOv2's mlp_ratio, an int where it is whole (transformers checks the type)."""
    ratio = mlp_dim / dim
    return int(ratio) if ratio.is_integer() else ratio


_HF_ACTS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "quick_gelu": "quick_gelu"}


def family_hf_config(config: Any, family: HFFamily, class_names: list[str] | None
                     ) -> dict[str, Any]:
    """The config.json of `family`'s HF class for a vitkit config."""
    height, width = config.img_size
    document: dict[str, Any] = {
        "hidden_size": config.embed_dim, "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads, "intermediate_size": config.mlp_dim,
        "hidden_act": _HF_ACTS[config.act_layer], "layer_norm_eps": config.layer_norm_eps,
        "image_size": height if height == width else [height, width],
        "patch_size": config.patch_size, "num_channels": config.in_chans,
        "qkv_bias": config.qkv_bias, "torch_dtype": "float32",
    }
    if family is DEIT:
        labels = class_names or [f"LABEL_{i}" for i in range(config.num_classes)]
        document.update(model_type="deit", architectures=[
            "DeiTForImageClassificationWithTeacher"], encoder_stride=config.patch_size,
            id2label={str(i): name for i, name in enumerate(labels)},
            label2id={name: i for i, name in enumerate(labels)})
    elif family is DINOV2:
        registers = config.reg_tokens
        document.update(
            model_type="dinov2_with_registers" if registers else "dinov2",
            architectures=["Dinov2WithRegistersModel" if registers else "Dinov2Model"],
            mlp_ratio=_ratio(config.mlp_dim, config.embed_dim),
            layerscale_value=config.init_values,
            use_swiglu_ffn=False, **({"num_register_tokens": registers} if registers else {}))
    elif family is CLIP:
        document.update(model_type="clip_vision_model", architectures=["CLIPVisionModel"])
    else:
        document.update(model_type="siglip_vision_model", architectures=["SiglipVisionModel"],
                        vision_use_head=config.global_pool == "map")
    return document


def shown_family(state_dict: dict[str, torch.Tensor]) -> str:
    """The HF family that tensors in vitkit names show: 'vit' when none of the switches is."""
    if "dist_token" in state_dict:
        return DEIT.name
    if "blocks.0.ls1.gamma" in state_dict:
        return DINOV2.name
    if "norm_pre.weight" in state_dict:
        return CLIP.name
    if "cls_token" not in state_dict:
        return SIGLIP.name
    return "vit"


def check_model_type(document: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    """A config.json's model_type must be the family the tensors show."""
    kind = document.get("model_type")
    family = next(f for f in FAMILIES if kind in f.config_types)
    shown = shown_family(state_dict)
    if shown != family.name:
        what = "a ViT" if shown == "vit" else f"the tensors of a {shown} model"
        raise CheckpointError(f"config.json describes a {kind!r} model, not {what}; the "
                              "config belongs to another checkpoint")
