"""Build a model from pretrained weights: read a checkpoint (file, folder or hub id), adapt it
to the model asked for (new head, new resolution), and load it strictly."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..models import (
    ARCHITECTURES,
    PRESETS,
    HybridConfig,
    ModelMeta,
    Preprocessing,
    VisionTransformer,
    ViTConfig,
    config_class,
    get_config,
    model_title,
    resample_pos_embed,
)
from ..models.build import CNNS
from ..models.config import RESNET_PRESETS, preset_preprocessing
from .formats import read_weights
from .hf import class_names_from_hf, config_from_hf, preprocessing_from_hf
from .hf_families import FAMILIES as HF_FAMILIES
from .hf_families import check_model_type, family_config_from_hf
from .hub import download, parse_hub_id
from .io import CONFIG_NAME, assemble, read_document, run_checkpoint
from .timm import guess_num_heads, infer_switches, is_timm, read_timm_config
from .validate import validate

log = logging.getLogger("vitkit")
FAMILY_CONFIG_TYPES = {kind for family in HF_FAMILIES for kind in family.config_types}

# Weight files looked for in a folder, in this order.
FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt", "model.npz")
ARCHITECTURE = ("embed_dim", "depth", "num_heads", "mlp_dim", "patch_size")
# Fields that follow the checkpoint even when a preset name is given.
FOLLOW_CHECKPOINT = ("num_classes", "img_size", "representation_size", "layer_norm_eps",
                     "fc_norm", "global_pool", "class_token", "qkv_bias")


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
    layout: str = "vitkit"  # where the tensors came from: vitkit, timm, hf or flax
    architecture: str | None = None  # what a vitkit checkpoint says it is (None: a ViT)


def read_checkpoint(source: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint from a file, a folder or a hub id ('org/name'), detecting its format
    from its contents."""
    path = run_checkpoint(source)
    if path.exists():
        checkpoint = _read_folder(path) if path.is_dir() else _read_file(path)
        checkpoint.source = str(path)
        return _validated(checkpoint)
    hub = parse_hub_id(str(source))
    if hub is None:
        raise FileNotFoundError(
            f"no checkpoint at {source}: not a file, a folder, or a hub id like "
            "'google/vit-base-patch16-224'"
        )
    repo_id, revision = hub
    try:
        folder = download(repo_id, revision)
    except CheckpointError as error:
        raise CheckpointError(
            f"no file or folder {source} here, and from the hub: {error}"
        ) from error
    checkpoint = _read_folder(folder)
    checkpoint.source = str(source)
    if checkpoint.model_name is None and repo_id.startswith("timm/"):
        name = repo_id.split("/", 1)[1].split(".", 1)[0]
        checkpoint.model_name = name if name in PRESETS else None
    return _validated(checkpoint)


def _validated(checkpoint: Checkpoint) -> Checkpoint:
    """The checkpoint, once what it states agrees with itself (see `validate`)."""
    validate(checkpoint.config, checkpoint.state_dict, checkpoint.class_names,
             checkpoint.preprocessing, checkpoint.source, checkpoint.architecture)
    if checkpoint.model_name is not None and not isinstance(checkpoint.model_name, str):
        checkpoint.model_name = None
    return checkpoint


def _read_file(path: Path) -> Checkpoint:
    state_dict, config, layout, notes = read_weights(path)
    if layout == "vitkit":  # a vitkit file also carries its name, classes and preprocessing
        return _read_vitkit(path, state_dict)
    return Checkpoint(state_dict=state_dict, config=config, notes=notes, layout=layout)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as error:  # bad JSON, or bytes that aren't UTF-8
        raise CheckpointError(f"{path} is not valid JSON ({error}); fix or remove it") from error
    if not isinstance(document, dict):
        raise CheckpointError(f"{path} holds a JSON {type(document).__name__}, not an object; "
                              "fix or remove it")
    return document


def _read_folder(path: Path) -> Checkpoint:
    """A vitkit, Hugging Face or timm-hub folder: a weights file plus its config.json."""
    document = _read_json(path / CONFIG_NAME) or {}
    if document.get("library") == "vitkit":
        return _read_vitkit(path)
    weights = next((path / name for name in FOLDER_WEIGHTS if (path / name).exists()), None)
    weights = weights or next(iter(sorted(path.glob("*.npz"))), None)
    if weights is None:
        raise CheckpointError(
            f"{path} holds no weights file (looked for {', '.join(FOLDER_WEIGHTS)}, *.npz)"
        )
    checkpoint = _read_file(weights)
    checkpoint.config = dict(checkpoint.config or {})
    try:
        _read_folder_config(path, document, checkpoint)
    except CheckpointError as error:
        if str(path) in str(error):
            raise
        raise CheckpointError(f"{path / CONFIG_NAME}: {error}") from error
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as error:
        # A field of another JSON type than timm or HF write (a list for a dict, ...).
        raise CheckpointError(
            f"{path}: config.json or preprocessor_config.json has a field of the wrong type "
            f"({type(error).__name__}: {error}); fix or remove the file"
        ) from error
    return checkpoint


def _read_folder_config(path: Path, document: dict[str, Any], checkpoint: Checkpoint) -> None:
    """What a timm-hub or HF config.json states, into `checkpoint`."""
    config = checkpoint.config
    if "architecture" in document or "pretrained_cfg" in document:  # timm's hub layout
        stated = read_timm_config(document)
        config.update(stated["config"])
        arch = stated["architecture"]
        checkpoint.model_name = arch if isinstance(arch, str) and arch in PRESETS else None
        checkpoint.class_names = stated["class_names"]
        checkpoint.preprocessing = stated["preprocessing"]
    elif document.get("model_type") in FAMILY_CONFIG_TYPES:  # DeiT, DINOv2, CLIP, SigLIP
        check_model_type(document, checkpoint.state_dict)
        config.update(family_config_from_hf(document))
        checkpoint.class_names = class_names_from_hf(document, config.get("num_classes", 0))
        processor = _read_json(path / "preprocessor_config.json")
        if processor:
            checkpoint.preprocessing = preprocessing_from_hf(processor)
    elif document.get("model_type") == "vit" or "hidden_size" in document:
        config.update(config_from_hf(document))
        checkpoint.class_names = class_names_from_hf(document, config.get("num_classes", 0))
        processor = _read_json(path / "preprocessor_config.json")
        if processor:
            checkpoint.preprocessing = preprocessing_from_hf(processor)


def _read_vitkit(path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> Checkpoint:
    document, weights = read_document(path)
    if state_dict is None:
        state_dict, _, _, _ = read_weights(weights)
    return Checkpoint(
        state_dict=state_dict,
        config=document.get("config"),
        model_name=document.get("model_name"),
        class_names=document.get("class_names"),
        preprocessing=document.get("preprocessing"),
        architecture=document.get("architecture") if isinstance(
            document.get("architecture"), str) else None,
    )


def target_config(
    name: str | None, checkpoint: Checkpoint, overrides: dict[str, Any]
) -> ViTConfig:
    """The configuration to build: the named preset, or the checkpoint's own, plus overrides.

    Unless overridden, the class count and resolution follow the checkpoint. A checkpoint that
    does not state its head count takes it from the preset with the same shape.
    """
    stated = dict(checkpoint.config or {})
    complete = all(key in stated for key in ARCHITECTURE)
    if name is None and checkpoint.model_name in PRESETS and not complete:
        # The checkpoint names its own preset: what its tensors show wins, the preset fills in.
        stated = {**get_config(checkpoint.model_name).to_dict(), **stated}
    elif name is not None and (name != checkpoint.model_name or not complete):
        base = get_config(name).to_dict()
        for key in FOLLOW_CHECKPOINT:
            if key in stated:
                base[key] = stated[key]
        stated = base
    elif not complete:
        if "num_heads" not in stated and "num_heads" not in overrides:
            guess = guess_num_heads(stated)
            if guess is None:
                raise CheckpointError(
                    f"{checkpoint.source} does not say how many attention heads it has; pass "
                    "the model name (--model NAME) or num_heads="
                )
            stated["num_heads"] = guess[0]
            note = f"took num_heads={guess[0]} from {guess[1]}"
            if note not in checkpoint.notes:
                checkpoint.notes.append(note)
        missing = [key for key in ARCHITECTURE if key not in stated and key not in overrides]
        if missing:
            raise CheckpointError(
                f"{checkpoint.source} does not state its {', '.join(missing)}; pass a model name"
            )
    new_head = overrides.get("num_classes", stated.get("num_classes")) != stated.get("num_classes")
    if new_head and stated.get("representation_size") and "representation_size" not in overrides:
        # Fine-tuning replaces the whole pre-training head, pre-logits layer included (Sec. 3.2).
        stated["representation_size"] = None
    stated.update(overrides)
    config_cls = HybridConfig if "resnet_layers" in stated else ViTConfig
    try:
        return config_cls.from_dict(stated)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint.source}: cannot build the model: {error}") from error


def adapt_state_dict(
    state_dict: dict[str, torch.Tensor], config: ViTConfig, source_grid: tuple[int, int] | None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fit a checkpoint to `config`: a new zero head for another class count, resampled E_pos
    for another resolution. Returns the new state dict and what was changed, in words."""
    notes: list[str] = []
    state_dict = dict(state_dict)
    if not config.representation_size and "pre_logits.fc.weight" in state_dict:
        del state_dict["pre_logits.fc.weight"], state_dict["pre_logits.fc.bias"]
        notes.append("dropped the checkpoint's representation layer (pre_logits), as the paper "
                     "does when fine-tuning; pass representation_size= to keep it")
    head_in = config.representation_size or config.embed_dim
    notes += _fit_head(state_dict, "head", config.num_classes, head_in)
    if config.distilled:  # DeiT's distillation head follows the class head
        _fit_head(state_dict, "head_dist", config.num_classes, head_in)
    pos = state_dict.get("pos_embed")
    expected_tokens = config.num_pos_prefix_tokens + config.num_patches
    if pos is not None and pos.ndim == 3 and pos.shape[-1] == config.embed_dim:
        if source_grid is None and pos.shape[1] == expected_tokens:
            source_grid = config.grid_size  # same token count: taken as the same grid
        resampled = resample_pos_embed(pos, config.grid_size, source_grid,
                                       config.num_pos_prefix_tokens)
        if resampled is not pos:
            state_dict["pos_embed"] = resampled
            notes.append(
                f"resampled position embeddings from {pos.shape[1]} to {expected_tokens} tokens "
                f"for {config.img_size[0]}x{config.img_size[1]} images"
            )
    return state_dict, notes


# What a descendant's switch adds to the tensors, in words, for the error of a wrong model.
_SWITCH_WORDS = {"distilled": "a distillation token (DeiT)", "reg_tokens": "register tokens "
                 "(DINOv2-reg)", "pre_norm": "a LayerNorm before the blocks (CLIP)",
                 "init_values": "layer scale (DeiT III, DINOv2)",
                 "map": "an attention-pooling head (SigLIP)"}


def check_family(checkpoint: Checkpoint, config: ViTConfig) -> None:
    """The model to build must have the checkpoint's family: the same prefix tokens, layer
    scale, pre-norm and pooling head, or a one-line error names what differs."""
    if not is_timm(checkpoint.state_dict):
        return
    shown = infer_switches(checkpoint.state_dict)
    shown["map"] = "attn_pool.latent" in checkpoint.state_dict
    wanted = {key: getattr(config, key) for key in ("distilled", "reg_tokens", "pre_norm",
                                                     "init_values")}
    wanted["map"] = config.global_pool == "map"
    for key, words in _SWITCH_WORDS.items():
        has, needs = bool(shown.get(key)), bool(wanted[key])
        if has != needs or (key == "reg_tokens" and shown.get(key, 0) != wanted[key]):
            what = "has" if has else "lacks"
            raise CheckpointError(
                f"{checkpoint.source} {what} {words}, unlike the {config.family} model asked "
                "for; pass its own model name, or none")


def _fit_head(state_dict: dict[str, torch.Tensor], name: str, num_classes: int,
              head_in: int) -> list[str]:
    """A zero-initialised `name` head (Linear) for num_classes, unless the checkpoint's fits;
    none for num_classes 0. Changes state_dict in place; returns what it did, in words."""
    head = state_dict.get(f"{name}.weight")
    if head is not None and tuple(head.shape) == (num_classes, head_in):
        return []
    if head is not None:
        note = (f"replaced the {head.shape[0]}-class {name} with a zero-initialised "
                f"{num_classes}-class {name}")
        del state_dict[f"{name}.weight"]
        state_dict.pop(f"{name}.bias", None)
    elif num_classes:
        note = f"added a zero-initialised {num_classes}-class {name}"
    else:
        return []
    if num_classes:
        state_dict[f"{name}.weight"] = torch.zeros(num_classes, head_in)
        state_dict[f"{name}.bias"] = torch.zeros(num_classes)
    return [note]


def _source_grid(checkpoint: Checkpoint, config: ViTConfig) -> tuple[int, int] | None:
    stated = checkpoint.config or {}
    if "img_size" not in stated:
        return None
    size = stated["img_size"]
    size = (size, size) if isinstance(size, int) else size
    patch = stated.get("patch_size", config.patch_size)
    return (size[0] // patch, size[1] // patch)


def create_pretrained(
    name: str | None, source: str | os.PathLike | Checkpoint, overrides: dict[str, Any]
) -> VisionTransformer:
    """A model named `name` (or the checkpoint's own) holding the weights of `source`."""
    owned = not isinstance(source, Checkpoint)
    checkpoint = read_checkpoint(source) if owned else source
    if checkpoint.architecture not in (None, *ARCHITECTURES):
        raise CheckpointError(f"{checkpoint.source}: unknown architecture "
                              f"{checkpoint.architecture!r}; vitkit builds "
                              f"{', '.join(ARCHITECTURES)} (saved by a newer vitkit?)")
    is_cnn = checkpoint.architecture in CNNS
    stated_arch = (checkpoint.config or {}).get("arch")
    wrong_kind = is_cnn != (name in RESNET_PRESETS) or (is_cnn and name != stated_arch)
    if name is not None and wrong_kind:
        kind = f"a {stated_arch}" if is_cnn else "a Vision Transformer"
        raise CheckpointError(f"{checkpoint.source} holds {kind}, not a {name}; pass its own "
                              "model name, or none")
    if is_cnn:
        return _pretrained_resnet(checkpoint, overrides, owned)
    config = target_config(name, checkpoint, overrides)
    check_family(checkpoint, config)
    try:
        state_dict, notes = adapt_state_dict(
            checkpoint.state_dict, config, _source_grid(checkpoint, config)
        )
    except ValueError as error:  # position embeddings that fit no grid
        raise CheckpointError(f"{checkpoint.source}: {error}") from error
    if not owned:  # the model takes the tensors over: leave the caller's checkpoint alone
        state_dict = {key: value.clone() for key, value in state_dict.items()}
    same_head = config.num_classes == (checkpoint.config or {}).get("num_classes")
    model = assemble(config, state_dict, checkpoint.source, ModelMeta(
        name=model_title(name, config) if name else checkpoint.model_name,
        class_names=checkpoint.class_names if same_head else None,
        preprocessing=Preprocessing.from_dict(
            checkpoint.preprocessing or (preset_preprocessing(name or checkpoint.model_name)
                                         if config.in_chans == 3 else None),
            config.in_chans)))
    for note in checkpoint.notes + notes:
        log.warning("%s: %s", checkpoint.source, note)
    return model.eval()


def _pretrained_resnet(checkpoint: Checkpoint, overrides: dict[str, Any], owned: bool) -> Any:
    """A CNN baseline from a vitkit checkpoint; a different num_classes gets a fresh
    zero-initialised classifier, as the ViT's head does."""
    stated = dict(checkpoint.config or {})
    num_classes = overrides.get("num_classes", stated.get("num_classes"))
    try:
        config = config_class(checkpoint.architecture).from_dict(
            {**stated, **{k: v for k, v in overrides.items() if k != "num_classes"}})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint.source}: cannot build the model: {error}") from error
    state_dict = checkpoint.state_dict
    if not owned:
        state_dict = {key: value.clone() for key, value in state_dict.items()}
    model = assemble(config, state_dict, checkpoint.source, ModelMeta(
        name=checkpoint.model_name, class_names=checkpoint.class_names,
        preprocessing=Preprocessing.from_dict(checkpoint.preprocessing, config.in_chans)))
    if num_classes != config.num_classes:
        log.warning("%s: replaced the %d-class classifier with a zero-initialised %d-class one",
                    checkpoint.source, config.num_classes, num_classes)
        model.reset_classifier(num_classes)
    return model.eval()
