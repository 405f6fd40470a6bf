"""Google's Flax checkpoints (.npz): the original vit_jax naming and big_vision's, both ways.

Flax stores a Dense kernel as (in, out), the patch embedding as HWIO (P, P, C, D), attention
projections per head: query/key/value kernel (D, heads, head_dim), out kernel (heads,
head_dim, D). The blocks are `Transformer/encoderblock_i/` or, scanned, one
`Transformer/encoderblock/` whose tensors carry a leading layer axis.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, not_enough_memory

POS_VIT_JAX = "Transformer/posembed_input/pos_embedding"
PREFIXES = ("opt/target/", "params/img/", "params/", "")
# Sub-module names inside an encoder block: (attention, first LayerNorm, second LayerNorm, MLP).
NAMINGS = {
    "vit_jax": ("MultiHeadDotProductAttention_1", "LayerNorm_0", "LayerNorm_2", "MlpBlock_3"),
    "big_vision": ("MultiHeadDotProductAttention_0", "LayerNorm_0", "LayerNorm_1", "MlpBlock_0"),
}


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an .npz file; pickled objects are refused, damage is a CheckpointError.

    Each array's header is checked against the size of its member before anything is
    allocated, so a damaged header can't claim more memory than the file holds.
    """
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(str(path)) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue  # np.savez writes only .npy members; anything else is no array
                _check_member(archive, info, path)
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                arrays[info.filename[: -len(".npy")]] = array
    except CheckpointError:
        raise
    except MemoryError as error:
        raise CheckpointError(not_enough_memory(path, "arrays", "download it again")) from error
    except Exception as error:  # noqa: BLE001 - zipfile and numpy raise many kinds on damage
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable .npz file ({type(error).__name__}: {reason}); it may be "
            "truncated or corrupted: download it again"
        ) from error
    if not arrays:
        raise CheckpointError(f"{path} is a zip archive without .npy arrays, not an .npz file")
    return arrays


# Deflate expands at most ~1032:1; a member claiming more is damaged (or a zip bomb).
_MAX_DEFLATE_RATIO = 1100


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> None:
    """Refuse an .npy member whose header claims more bytes than the member holds, or objects."""
    name = info.filename
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size == info.compress_size
    else:
        plausible = info.file_size <= _MAX_DEFLATE_RATIO * max(info.compress_size, 1)
    if not plausible:
        raise CheckpointError(
            f"{path}: member {name} claims {info.file_size:,} bytes from {info.compress_size:,} "
            "stored ones; the file is damaged: download it again"
        )
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        header = member.tell()
    if dtype.hasobject:
        raise CheckpointError(
            f"refused to load {path}: {name} holds pickled Python objects, which could run code"
        )
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != info.file_size - header:
        raise CheckpointError(
            f"{path}: array {name} claims shape {shape} of {dtype} ({claimed:,} bytes) but holds "
            f"{info.file_size - header:,} bytes; the file is damaged: download it again"
        )


def is_flax(keys: Any) -> bool:
    """Whether these keys are a Flax ViT checkpoint (any of the known prefixes)."""
    return any(f"{prefix}embedding/kernel" in keys for prefix in PREFIXES)


def _t(array: np.ndarray) -> torch.Tensor:
    if array.dtype.kind != "f":
        raise CheckpointError(
            f"unsupported array type {array.dtype} in the .npz file; convert it to float32"
        )
    return torch.from_numpy(np.ascontiguousarray(array)).float()


def flax_to_vitkit(arrays: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """Convert a Flax ViT checkpoint to vitkit (timm) names; returns the state dict and the
    ViTConfig fields the tensors imply (all of them: Flax kernels keep the head count)."""
    try:
        return _flax_to_vitkit(arrays)
    except (RuntimeError, IndexError, ValueError, TypeError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(
            f"the arrays do not have the shapes of a Flax ViT ({error}); the file is damaged "
            "or holds another architecture"
        ) from error


def _flax_to_vitkit(arrays: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    prefix = next(p for p in PREFIXES if f"{p}embedding/kernel" in arrays)
    w = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
    if any(key.startswith("MAPHead_0/") for key in w):
        raise CheckpointError(
            "this checkpoint pools with a MAP head (attention pooling), which vitkit's ViT "
            "does not have; only [class]-token and average-pooling models can be loaded"
        )
    blocks, scanned = _encoder_blocks(w)
    naming = "big_vision" if f"{blocks[0]}MlpBlock_0/Dense_0/kernel" in w else "vit_jax"

    def get(key: str, layer: int | None = None) -> torch.Tensor:
        if key not in w:
            raise CheckpointError(f"the {naming} checkpoint lacks {prefix}{key}")
        array = w[key]
        return _t(array[layer] if scanned and layer is not None else array)

    sd, (patch, in_chans, dim, side) = _embedding(get, w)
    heads = None
    for i, block in enumerate(blocks):
        heads = _encoder_block(get, w, sd, i, block, i if scanned else None, dim, naming)
    # Both codebases normalise the tokens before pooling, also for global average pooling.
    sd["norm.weight"] = get("Transformer/encoder_norm/scale")
    sd["norm.bias"] = get("Transformer/encoder_norm/bias")
    representation = None
    if "pre_logits/kernel" in w:
        sd["pre_logits.fc.weight"] = get("pre_logits/kernel").T
        sd["pre_logits.fc.bias"] = get("pre_logits/bias")
        representation = sd["pre_logits.fc.weight"].shape[0]
    num_classes = 0
    if "head/kernel" in w:
        sd["head.weight"] = get("head/kernel").T
        sd["head.bias"] = get("head/bias")
        num_classes = sd["head.weight"].shape[0]
    class_token = "cls_token" in sd
    config = dict(
        img_size=[side * patch, side * patch], patch_size=patch, in_chans=in_chans,
        num_classes=num_classes, embed_dim=dim, depth=len(blocks), num_heads=heads,
        mlp_dim=sd["blocks.0.mlp.fc1.weight"].shape[0], qkv_bias="blocks.0.attn.qkv.bias" in sd,
        class_token=class_token, global_pool="token" if class_token else "avg", fc_norm=False,
        representation_size=representation,
    )
    return {k: v.contiguous() for k, v in sd.items()}, config


def _encoder_blocks(w: dict[str, np.ndarray]) -> tuple[list[str], bool]:
    """The key prefix of each encoder block, and whether the blocks are scanned (stacked
    along a leading layer axis, as big_vision saves them)."""
    if "Transformer/encoderblock/LayerNorm_0/scale" in w:
        depth = w["Transformer/encoderblock/LayerNorm_0/scale"].shape[0]
        blocks, scanned = ["Transformer/encoderblock/"] * depth, True
    else:
        pattern = re.compile(r"Transformer/encoderblock_(\d+)/")
        indices = {int(m.group(1)) for k in w if (m := pattern.match(k))}
        depth = len(indices)
        if indices != set(range(depth)):
            raise CheckpointError(f"encoder blocks {sorted(indices)} are not numbered 0..{depth-1}")
        blocks, scanned = [f"Transformer/encoderblock_{i}/" for i in range(depth)], False
    if depth == 0:
        raise CheckpointError("the .npz file holds an embedding but no encoder blocks")
    return blocks, scanned


def _embedding(get, w: dict[str, np.ndarray]
               ) -> tuple[dict[str, torch.Tensor], tuple[int, int, int, int]]:
    """Eq. (1)'s tensors (E, its bias, the [class] token, E_pos) in vitkit names, and
    (patch, in_chans, dim, grid side)."""
    kernel = get("embedding/kernel")
    if kernel.ndim != 4:
        raise CheckpointError(f"embedding/kernel has shape {tuple(kernel.shape)}, not (P,P,C,D)")
    patch, _, in_chans, dim = kernel.shape
    sd: dict[str, torch.Tensor] = {
        "patch_embed.proj.weight": kernel.permute(3, 2, 0, 1).contiguous(),
        "patch_embed.proj.bias": get("embedding/bias"),
    }
    class_token = "cls" in w
    if class_token:
        sd["cls_token"] = get("cls").reshape(1, 1, dim)
    pos_key = "pos_embedding" if "pos_embedding" in w else POS_VIT_JAX
    pos = get(pos_key).reshape(1, -1, dim)
    grid_tokens = pos.shape[1]
    if class_token:
        side = int(round((grid_tokens - 1) ** 0.5))
        if side * side != grid_tokens - 1:
            # big_vision adds E_pos before prepending the [class] token: a zero entry for it.
            pos = torch.cat([torch.zeros(1, 1, dim), pos], dim=1)
        grid_tokens = pos.shape[1] - 1
    side = int(round(grid_tokens**0.5))
    if side * side != grid_tokens:
        raise CheckpointError(f"{grid_tokens} position embeddings do not form a square grid")
    sd["pos_embed"] = pos
    return sd, (patch, in_chans, dim, side)


def _encoder_block(get, w: dict[str, np.ndarray], sd: dict[str, torch.Tensor], index: int,
                   block: str, layer: int | None, dim: int, naming: str) -> int:
    """One encoder block's tensors into `sd` as blocks.{index}.*; returns its head count."""
    attn_name, ln1, ln2, mlp = NAMINGS[naming]
    out, attn = f"blocks.{index}.", f"{block}{attn_name}/"
    heads = get(f"{attn}query/kernel", layer).shape[1]
    sd[out + "norm1.weight"] = get(f"{block}{ln1}/scale", layer)
    sd[out + "norm1.bias"] = get(f"{block}{ln1}/bias", layer)
    sd[out + "attn.qkv.weight"] = torch.cat(
        [get(f"{attn}{n}/kernel", layer).reshape(dim, dim).T for n in ("query", "key", "value")]
    )
    if f"{attn}query/bias" in w:
        sd[out + "attn.qkv.bias"] = torch.cat(
            [get(f"{attn}{n}/bias", layer).reshape(dim) for n in ("query", "key", "value")]
        )
    sd[out + "attn.proj.weight"] = get(f"{attn}out/kernel", layer).reshape(dim, dim).T
    sd[out + "attn.proj.bias"] = get(f"{attn}out/bias", layer)
    sd[out + "norm2.weight"] = get(f"{block}{ln2}/scale", layer)
    sd[out + "norm2.bias"] = get(f"{block}{ln2}/bias", layer)
    for r in range(2):
        sd[out + f"mlp.fc{r + 1}.weight"] = get(f"{block}{mlp}/Dense_{r}/kernel", layer).T
        sd[out + f"mlp.fc{r + 1}.bias"] = get(f"{block}{mlp}/Dense_{r}/bias", layer)
    return heads


def vitkit_to_flax(
    state_dict: dict[str, torch.Tensor], num_heads: int, naming: str = "vit_jax"
) -> dict[str, np.ndarray]:
    """The Flax arrays of a vitkit (timm-named) state dict, in `naming` ('vit_jax' or
    'big_vision', the latter with the `params/` prefix); the inverse of `flax_to_vitkit`."""
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {', '.join(NAMINGS)}, got {naming!r}")
    if "fc_norm.weight" in state_dict:
        raise CheckpointError(
            "Flax ViTs normalise before pooling; this model has its LayerNorm after pooling "
            "(fc_norm) and has no .npz equivalent"
        )
    attn_name, ln1, ln2, mlp = NAMINGS[naming]
    prefix = "params/" if naming == "big_vision" else ""
    sd = {k: v.detach().float().cpu() for k, v in state_dict.items()}
    dim = sd["patch_embed.proj.weight"].shape[0]
    head_dim = dim // num_heads
    out: dict[str, torch.Tensor] = {
        "embedding/kernel": sd["patch_embed.proj.weight"].permute(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
    }
    pos = sd["pos_embed"]
    if "cls_token" in sd:
        if naming == "big_vision":  # E_pos of the [class] token folds into the token itself
            out["cls"] = sd["cls_token"] + pos[:, :1]
            pos = pos[:, 1:]
        else:
            out["cls"] = sd["cls_token"]
    out["pos_embedding" if naming == "big_vision" else POS_VIT_JAX] = pos
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        src, block = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        attn = f"{block}{attn_name}/"
        qkv_w = sd[src + "attn.qkv.weight"].reshape(3, dim, dim)
        for j, name in enumerate(("query", "key", "value")):
            out[f"{attn}{name}/kernel"] = qkv_w[j].T.reshape(dim, num_heads, head_dim)
            if src + "attn.qkv.bias" in sd:
                bias = sd[src + "attn.qkv.bias"].reshape(3, num_heads, head_dim)[j]
                out[f"{attn}{name}/bias"] = bias
        out[f"{attn}out/kernel"] = sd[src + "attn.proj.weight"].T.reshape(num_heads, head_dim, dim)
        out[f"{attn}out/bias"] = sd[src + "attn.proj.bias"]
        for ln, name in ((ln1, "norm1"), (ln2, "norm2")):
            out[f"{block}{ln}/scale"] = sd[f"{src}{name}.weight"]
            out[f"{block}{ln}/bias"] = sd[f"{src}{name}.bias"]
        for r in range(2):
            out[f"{block}{mlp}/Dense_{r}/kernel"] = sd[f"{src}mlp.fc{r + 1}.weight"].T
            out[f"{block}{mlp}/Dense_{r}/bias"] = sd[f"{src}mlp.fc{r + 1}.bias"]
    if "pre_logits.fc.weight" in sd:
        out["pre_logits/kernel"] = sd["pre_logits.fc.weight"].T
        out["pre_logits/bias"] = sd["pre_logits.fc.bias"]
    if "head.weight" in sd:
        out["head/kernel"] = sd["head.weight"].T
        out["head/bias"] = sd["head.bias"]
    return {prefix + k: np.ascontiguousarray(v.numpy()) for k, v in out.items()}
