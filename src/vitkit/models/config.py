"""The configuration dataclasses and the named presets: the ViTs of the paper's Table 1, the
hybrids of Section 3.1 (ResNet feature map + ViT) and the ResNet baselines of Section 4."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def to_2tuple(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return (height, width) for an int or a pair."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


class ConfigRecord:
    """What every model config does with its fields: copy with changes, and to and from JSON."""

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        data = dataclasses.asdict(self)
        data["img_size"] = list(self.img_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Rebuild from `to_dict`, rejecting unknown fields by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class ViTConfig(ConfigRecord):
    """Every architectural knob of a Vision Transformer.

    The defaults are ViT-B/16 at 224x224 for ImageNet-1k, with timm's conventions so that
    checkpoints map one-to-one.

    The descendants' switches, each off by default (the README's table says where each acts):
    - distilled: DeiT (Touvron et al. 2021). Eq. (1) gains a distillation token after x_class;
      Eq. (4) adds a head on it (head_dist), the two heads' logits averaged.
    - init_values: layer scale, CaiT (Touvron et al. 2021), used by DeiT III and DINOv2.
      Eqs. (2)-(3) scale each residual branch by a learned per-channel gamma.
    - no_embed_class: DeiT III (Touvron et al. 2022), big_vision. Eq. (1) adds E_pos to the
      patches only, then concatenates x_class (and any other prefix token).
    - reg_tokens: "Vision Transformers Need Registers" (Darcet et al. 2024), DINOv2-reg.
      Eq. (1) gains learned register tokens after x_class; no head reads them.
    - pre_norm: CLIP (Radford et al. 2021). A LayerNorm on z_0 before Eq. (2) (norm_pre),
      and no bias in the patch projection E.
    - act_layer: 'quick_gelu' for OpenAI's CLIP, 'gelu_tanh' for SigLIP as transformers runs
      it: the non-linearity of Eq. (3)'s MLP.
    - global_pool='map' with class_token=False: SigLIP (Zhai et al. 2023). No x_class; Eq. (4)
      pools LN(z_L) by a learned query's attention (multihead attention pooling).
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768  # D, the hidden size
    depth: int = 12  # L, the number of encoder blocks
    num_heads: int = 12  # k, the heads of multi-head self-attention
    mlp_dim: int = 3072  # the hidden width of the MLP in Eq. (3)
    qkv_bias: bool = True
    class_token: bool = True
    # 'token': the [class] token (Eq. 4); 'avg': mean of patch tokens; 'map': attention pooling
    global_pool: str = "token"
    # LayerNorm after pooling instead of on all tokens before it; None means timm's rule
    # (on for 'avg', off for 'token').
    fc_norm: bool | None = None
    representation_size: int | None = None  # the pre-logits Linear + tanh of pre-training
    layer_norm_eps: float = 1e-6
    drop_rate: float = 0.0  # dropout after the embedding, in the MLP and before the head
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly to this over the blocks
    # The descendants' switches (timm's names; see models/variants.py and the README's table).
    distilled: bool = False  # DeiT: a distillation token with its own head, averaged
    init_values: float | None = None  # DeiT III, DINOv2: layer scale on each residual branch
    no_embed_class: bool = False  # DeiT III, DINOv2-reg: E_pos on the patches only
    reg_tokens: int = 0  # DINOv2 with registers: extra learned tokens, discarded at the end
    pre_norm: bool = False  # CLIP: LayerNorm on z_0 (norm_pre), no patch-embedding bias
    act_layer: str = "gelu"  # the MLP's non-linearity: gelu, gelu_tanh or quick_gelu (CLIP)

    def __post_init__(self) -> None:
        self.img_size = to_2tuple(self.img_size)
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {', '.join(GLOBAL_POOLS)}, got "
                             f"{self.global_pool!r}")
        if self.act_layer not in ACTIVATIONS:
            raise ValueError(f"act_layer must be one of {', '.join(ACTIVATIONS)}, got "
                             f"{self.act_layer!r}")
        if self.distilled and (self.global_pool != "token" or self.representation_size):
            raise ValueError("a distilled model (DeiT) classifies from its [class] and "
                             "distillation tokens: global_pool='token', no representation_size")
        if self.reg_tokens < 0:
            raise ValueError(f"reg_tokens must be >= 0, got {self.reg_tokens}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        if self.fc_norm is None:
            self.fc_norm = self.global_pool == "avg"
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        for side in self.img_size:
            if side % self.patch_size:
                raise ValueError(
                    f"image size {self.img_size} is not divisible by patch size {self.patch_size}"
                )

    @property
    def grid_size(self) -> tuple[int, int]:
        """The patch grid (gh, gw) at the configured image size."""
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        """N = HW / P^2, the number of patch tokens."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: [class], distillation and register tokens, in that order."""
        return int(self.class_token) + int(self.distilled) + self.reg_tokens

    @property
    def head_tokens(self) -> int | None:
        """How many leading tokens of z_L the head reads: x_class (and DeiT's distillation
        token) when it classifies from the [class] token; None where it reads every token
        (mean and attention pooling)."""
        return 1 + int(self.distilled) if self.global_pool == "token" else None

    @property
    def num_pos_prefix_tokens(self) -> int:
        """Prefix tokens that carry a position embedding (none with `no_embed_class`)."""
        return 0 if self.no_embed_class else self.num_prefix_tokens

    @property
    def family(self) -> str:
        """Which descendant of the paper's ViT these switches make (see FAMILIES)."""
        return family_of(self)



GLOBAL_POOLS = ("token", "avg", "map")
ACTIVATIONS = ("gelu", "gelu_tanh", "quick_gelu")


def family_of(config: ViTConfig) -> str:
    """The family a configuration belongs to, by its switches."""
    if config.distilled:
        return "deit-distilled"
    if config.reg_tokens:
        return "dinov2-reg"
    if config.pre_norm:
        return "clip"
    if not config.class_token and config.global_pool == "map":
        return "siglip"
    if config.init_values:
        return "dinov2" if config.patch_size == 14 else "deit3"
    return "vit"


@dataclass
class HybridConfig(ViTConfig):
    """A hybrid ViT (Section 3.1): the patches are the 1x1 pixels of a BiT ResNet's feature map.

    `resnet_layers` are the bottleneck blocks per stage ((3, 4, 9) for the paper's R50, whose
    fourth stage is dropped), `resnet_width` the stem's channels (64). patch_size is not free:
    it is the ResNet's total stride, 4 * 2^(stages - 1) (16 for R50), which makes the token grid.
    """

    patch_size: int | None = None  # derived from resnet_layers
    resnet_layers: tuple[int, ...] = (3, 4, 9)
    resnet_width: int = 64

    def __post_init__(self) -> None:
        self.resnet_layers = tuple(int(n) for n in self.resnet_layers)
        if not self.resnet_layers or min(self.resnet_layers) < 1:
            raise ValueError(f"resnet_layers must be positive block counts, got "
                             f"{self.resnet_layers}")
        if self.resnet_width <= 0 or self.resnet_width % 32:
            raise ValueError(f"resnet_width must be a multiple of 32 (GroupNorm's 32 groups), "
                             f"got {self.resnet_width}")
        stride = 4 * 2 ** (len(self.resnet_layers) - 1)
        if self.patch_size is None:
            self.patch_size = stride
        elif self.patch_size != stride:
            raise ValueError(f"a hybrid with {len(self.resnet_layers)} ResNet stages has "
                             f"stride-{stride} patches, not patch_size={self.patch_size}")
        super().__post_init__()

    @property
    def feature_dim(self) -> int:
        """Channels of the ResNet feature map, the input width of the projection E."""
        return 4 * self.resnet_width * 2 ** (len(self.resnet_layers) - 1)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["resnet_layers"] = list(self.resnet_layers)
        return data


@dataclass
class ResNetConfig(ConfigRecord):
    """A torchvision ResNet as a baseline with a CNN's inductive biases (locality, translation
    equivariance): the fields the trainer, evaluation and predict read (img_size, in_chans,
    num_classes) and the choices of the network.

    `small_input` swaps the ImageNet stem (7x7/2 conv + 3x3/2 max-pool: stride 4) for a 3x3/1
    conv without pooling, as CIFAR ResNets do; None chooses it for images of at most 64 px.
    `drop_path_rate` is accepted so that the ViT recipes apply unchanged, and not used.
    """

    arch: str = "resnet18"
    img_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    small_input: bool | None = None
    drop_rate: float = 0.0  # dropout before the classifier
    drop_path_rate: float = 0.0  # unused (ResNets here have no stochastic depth)

    def __post_init__(self) -> None:
        self.img_size = to_2tuple(self.img_size)
        if self.arch not in RESNET_ARCHS and self.arch not in CIFAR_RESNET_BLOCKS:
            known = ", ".join([*RESNET_ARCHS, *CIFAR_RESNET_BLOCKS])
            raise ValueError(f"unknown ResNet {self.arch!r}; use one of {known}")
        if self.small_input is None:
            self.small_input = max(self.img_size) <= 64



RESNET_ARCHS = ("resnet18", "resnet34", "resnet50")
# He et al. (2016) Section 4.2's ResNets for 32x32 images: three stages of n basic blocks with
# 16, 32 and 64 channels (6n + 2 layers), small enough to train in CPU minutes.
CIFAR_RESNET_BLOCKS: dict[str, int] = {"resnet20": 3, "resnet32": 5, "resnet56": 9}
# BiT-style ResNets (Kolesnikov et al., 2020): the hybrid's GroupNorm + weight-standardised
# bottlenecks (models/hybrid.py), all four stages, global average pooling and a linear head.
BIT_LAYERS: dict[str, tuple[int, ...]] = {"bit_resnet26": (2, 2, 2, 2),
                                          "bit_resnet50": (3, 4, 6, 3)}


@dataclass
class BiTResNetConfig(ResNetConfig):
    """A BiT-style ResNet baseline: `arch` one of BIT_LAYERS; otherwise as ResNetConfig."""

    arch: str = "bit_resnet50"

    def __post_init__(self) -> None:
        if self.arch not in BIT_LAYERS:
            raise ValueError(f"unknown BiT ResNet {self.arch!r}; use one of "
                             f"{', '.join(BIT_LAYERS)}")
        self.img_size = to_2tuple(self.img_size)
        if self.small_input is None:
            self.small_input = max(self.img_size) <= 64

    @property
    def layers(self) -> tuple[int, ...]:
        return BIT_LAYERS[self.arch]


@dataclass(frozen=True)
class Preset:
    """A named model: its size (Table 1 of the paper), patch size, resolution and a note."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    img_size: int
    extra: dict[str, Any] = field(default_factory=dict)
    family: str = "vit"  # the paper's ViT, or the descendant it belongs to (FAMILIES)
    # mean/std/crop_pct of its pretrained weights (timm's pretrained_cfg); None: Google's
    preprocessing: dict[str, Any] | None = None

    def config(self, **overrides: Any) -> ViTConfig:
        """The ViTConfig (HybridConfig when `extra` names ResNet layers) of this preset, with
        overrides applied."""
        base = dict(
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            patch_size=self.patch_size,
            img_size=self.img_size,
            **self.extra,
        )
        base.update(overrides)
        if "resnet_layers" in base:  # a hybrid: the patch size follows the ResNet's stages
            if "patch_size" not in overrides:
                del base["patch_size"]
            return HybridConfig(**base)
        return ViTConfig(**base)


# Table 1 of the paper (Base, Large, Huge) and DeiT's Tiny and Small: (D, L, heads, MLP).
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (192, 12, 3, 768),
    "small": (384, 12, 6, 1536),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
    "huge": (1280, 32, 16, 5120),
}


def _build_presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}

    def add(size: str, patch: int, res: int) -> None:
        dim, depth, heads, mlp = SIZES[size]
        presets[f"vit_{size}_patch{patch}_{res}"] = Preset(dim, depth, heads, mlp, patch, res)

    for size in ("tiny", "small", "base", "large"):
        for patch in (16, 32):
            for res in (224, 384):
                add(size, patch, res)
    add("small", 8, 224)
    add("base", 8, 224)
    add("huge", 14, 224)
    # Small models for small images, trained from scratch in minutes on a CPU.
    # Tuned for `vitkit demo` (>= 0.97 on digits in under 3 CPU minutes): mean-pooled patch
    # tokens learn much faster than the [class] token on 1,437 images (0.96 vs 0.94 at 50
    # epochs), and D=64, L=4 beat D=96/128 at the same wall-clock budget.
    presets["vit_digits_patch2_8"] = Preset(
        64, 4, 4, 128, 2, 8, extra=dict(num_classes=10, in_chans=1, global_pool="avg")
    )
    presets["vit_cifar_patch4_32"] = Preset(192, 9, 3, 384, 4, 32, extra=dict(num_classes=10))
    # A ViT for the data-scaling experiment against resnet20: as fast to train on a CPU
    # (about 500 images/s each on 2 AMD EPYC cores) with 0.46M parameters to its 0.27M.
    presets["vit_cifar_mini_patch4_32"] = Preset(96, 6, 3, 192, 4, 32,
                                                 extra=dict(num_classes=10))
    # The hybrids of Section 3.1 (timm's names): R50 (stages of 3, 4, 9 blocks) + ViT-B, on
    # 1x1 patches of its stride-16 feature map.
    # As in timm, the 224 model is the headless ImageNet-21k feature extractor (num_classes 0)
    # and the 384 one the ImageNet-1k classifier.
    presets["vit_base_r50_s16_224"] = Preset(
        *SIZES["base"], 16, 224, extra=dict(resnet_layers=(3, 4, 9), num_classes=0))
    presets["vit_base_r50_s16_384"] = Preset(
        *SIZES["base"], 16, 384, extra=dict(resnet_layers=(3, 4, 9)))
    # A hybrid for 32x32 images on a CPU: two stages of 2 blocks (stride 8, a 4x4 grid).
    presets["vit_cifar_r14_s8_32"] = Preset(
        192, 6, 3, 384, 8, 32, extra=dict(resnet_layers=(2, 2), resnet_width=32, num_classes=10))
    presets.update(_descendant_presets())
    return presets


# The descendants of the paper's ViT that people fine-tune, with what each changes.
FAMILIES: dict[str, str] = {
    "vit": "the paper's ViT (Eqs. 1-4)",
    "hybrid": "ResNet feature map as patches (Section 3.1)",
    "deit": "DeiT (Touvron et al. 2021): the paper's ViT trained on ImageNet-1k only",
    "deit-distilled": "DeiT: a distillation token with its own head, the heads averaged",
    "deit3": "DeiT III: layer scale, E_pos on the patches only",
    "dinov2": "DINOv2: patch 14, layer scale, E_pos for 518x518 resampled",
    "dinov2-reg": "DINOv2 with 4 register tokens (E_pos on the patches only)",
    "clip": "CLIP image tower: LayerNorm on z_0, no patch bias, eps 1e-5",
    "siglip": "SigLIP: no [class] token, attention-pooling head (map) or mean (gap)",
}


IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
OPENAI_CLIP = dict(mean=(0.48145466, 0.4578275, 0.40821073),
                   std=(0.26862954, 0.26130258, 0.27577711))


def _descendant_presets() -> dict[str, Preset]:
    """timm's presets of the descendants, with timm's names and parameter counts."""
    presets: dict[str, Preset] = {}
    deit_prep = dict(IMAGENET, crop_pct=0.9)
    for size in ("tiny", "small", "base"):
        presets[f"deit_{size}_patch16_224"] = Preset(*SIZES[size], 16, 224, family="deit",
                                                     preprocessing=deit_prep)
        presets[f"deit_{size}_distilled_patch16_224"] = Preset(
            *SIZES[size], 16, 224, extra=dict(distilled=True), family="deit-distilled",
            preprocessing=deit_prep)
    for size in ("small", "base"):
        presets[f"deit3_{size}_patch16_224"] = Preset(
            *SIZES[size], 16, 224, extra=dict(init_values=1e-6, no_embed_class=True),
            family="deit3", preprocessing=deit_prep)
        dino = dict(init_values=1e-5, num_classes=0)
        dino_prep = dict(IMAGENET, crop_pct=1.0)
        presets[f"vit_{size}_patch14_dinov2"] = Preset(
            *SIZES[size], 14, 518, extra=dino, family="dinov2", preprocessing=dino_prep)
        presets[f"vit_{size}_patch14_reg4_dinov2"] = Preset(
            *SIZES[size], 14, 518, extra=dict(dino, reg_tokens=4, no_embed_class=True),
            family="dinov2-reg", preprocessing=dino_prep)
    clip = dict(pre_norm=True, layer_norm_eps=1e-5)
    presets["vit_base_patch16_clip_224"] = Preset(
        *SIZES["base"], 16, 224, extra=clip, family="clip",
        preprocessing=dict(OPENAI_CLIP, crop_pct=0.95))
    presets["vit_base_patch16_clip_quickgelu_224"] = Preset(
        *SIZES["base"], 16, 224, extra=dict(clip, act_layer="quick_gelu", num_classes=512),
        family="clip", preprocessing=dict(OPENAI_CLIP, crop_pct=1.0))
    siglip = dict(class_token=False, num_classes=0)
    presets["vit_base_patch16_siglip_224"] = Preset(
        *SIZES["base"], 16, 224, extra=dict(siglip, global_pool="map"), family="siglip")
    presets["vit_base_patch16_siglip_gap_224"] = Preset(
        *SIZES["base"], 16, 224, extra=dict(siglip, global_pool="avg", fc_norm=False),
        family="siglip")
    return presets


PRESETS: dict[str, Preset] = _build_presets()


def preset_preprocessing(name: str | None) -> dict[str, Any] | None:
    """The preprocessing of a preset's pretrained weights (mean, std, crop_pct), if not
    Google's [-1, 1] default."""
    preset = PRESETS.get(name) if name else None
    if preset is None or preset.preprocessing is None:
        return None
    prep = dict(preset.preprocessing)
    return {**prep, "mean": list(prep["mean"]), "std": list(prep["std"])}


def preset_family(name: str) -> str:
    """The family of a named model: 'vit', 'hybrid', a descendant's, or 'cnn'."""
    if name in PRESETS:
        preset = PRESETS[name]
        return "hybrid" if "resnet_layers" in preset.extra else preset.family
    return "cnn"

# The CNN baselines: torchvision's ResNets, named as torchvision does, and BiT-style ones.
RESNET_PRESETS: tuple[str, ...] = (*RESNET_ARCHS, *CIFAR_RESNET_BLOCKS, *BIT_LAYERS)


def list_models() -> list[str]:
    """Names of every preset (ViTs, hybrids and ResNets), sorted."""
    return sorted([*PRESETS, *RESNET_PRESETS])


def get_config(name: str, **overrides: Any) -> ViTConfig | ResNetConfig:
    """The configuration of a named preset with overrides applied; unknown names are an error."""
    if name in RESNET_PRESETS:
        config_cls = BiTResNetConfig if name in BIT_LAYERS else ResNetConfig
        known = {f.name for f in dataclasses.fields(config_cls)} - {"arch"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{name} (a CNN) has no setting {', '.join(unknown)}; it takes "
                             f"{', '.join(sorted(known))}")
        if name in CIFAR_RESNET_BLOCKS:  # made for CIFAR: 32x32 images, 10 classes
            overrides = {"img_size": 32, "num_classes": 10, **overrides}
        return config_cls(arch=name, **overrides)
    if name not in PRESETS:
        close = _near_misses(name)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (see `vitkit models`)")
    return PRESETS[name].config(**overrides)


def _near_misses(name: str) -> list[str]:
    """Up to three presets close to `name`: those it begins (`vit-tiny`: the common
    patch16_224 one first), then difflib's closest."""
    import difflib

    key = name.lower().replace("-", "_")
    begun = sorted((n for n in list_models() if n.startswith(key)),
                   key=lambda n: (not n.endswith("patch16_224"), n))
    close = difflib.get_close_matches(key, list_models(), n=3, cutoff=0.5)
    return list(dict.fromkeys(begun[:2] + close))[:3]


# Fields that leave a preset's name true: its head, input channels and regularisation.
_UNNAMED = frozenset({"num_classes", "in_chans", "drop_rate", "attn_drop_rate", "drop_path_rate"})


def model_title(name: str | None, config: ViTConfig) -> str | None:
    """A preset's name plus the architecture fields that differ from it, e.g.
    'vit_cifar_patch4_32 (img_size=64, patch_size=8)', so outputs name what the model is."""
    if name not in PRESETS:
        return name
    preset, mine = get_config(name).to_dict(), config.to_dict()
    changed = []
    for key, value in mine.items():
        if key in _UNNAMED or value == preset[key]:
            continue
        if key == "fc_norm" and value == (mine["global_pool"] == "avg"):
            continue  # timm's rule for the pooling: implied by global_pool
        if key == "img_size":
            value = value[0] if value[0] == value[1] else f"{value[0]}x{value[1]}"
        changed.append(f"{key}={value}")
    return f"{name} ({', '.join(changed)})" if changed else name
