"""The Vision Transformer of Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021).

Each module below is one equation of Section 3.1; parameter names follow timm, so that the
field's checkpoints map onto this model one to one.

    z_0  = [x_class; x_p^1 E; ...; x_p^N E] + E_pos    (1)  VisionTransformer.embed
    z'_l = MSA(LN(z_{l-1})) + z_{l-1},   l = 1..L      (2)  EncoderBlock, MultiHeadSelfAttention
    z_l  = MLP(LN(z'_l)) + z'_l,         l = 1..L      (3)  EncoderBlock, MLP
    y    = LN(z_L^0)                                   (4)  VisionTransformer.forward_features,
                                                            pool, forward_head
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import check_image_batch
from . import intermediates
from .config import ViTConfig, to_2tuple
from .init import init_vit_weights
from .layers import DropPath, resample_pos_embed, zero_head
from .meta import ModelMeta, Preprocessing
from .variants import AttentionPoolHead, LayerScale, make_activation


class PatchEmbedding(nn.Module):
    """Eq. (1), x_p E: cut the image into P x P patches and project each linearly to D dims.

    A stride-P convolution with a P x P kernel is exactly a linear map of each flattened
    patch (flattened in (C, P, P) order).
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size,
                              bias=bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(images)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), patches in row-major order


class MultiHeadSelfAttention(nn.Module):
    """MSA of Eq. (2): k heads of scaled dot-product attention, softmax(q k^T / sqrt(D_h)) v.

    Runs through the fused `scaled_dot_product_attention`; the attention probabilities are
    formed explicitly only when `need_weights` is true (for analysis).
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)  # U_qkv, all heads at once
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)  # U_msa
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, need_weights: bool = False, queries: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The MSA output of every token, or with `queries` of the first `queries` tokens
        only (they still attend to every token)."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, D_h)
        if queries is not None:
            q = q[:, :, :queries]
        attn = None
        if need_weights:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = attn.float().softmax(dim=-1).to(q.dtype)  # (B, heads, N, N)
            out = F.dropout(attn, self.attn_drop, self.training) @ v
        else:
            dropout_p = self.attn_drop if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=self.scale)
        out = out.transpose(1, 2).flatten(2)  # concatenate the heads
        return self.proj_drop(self.proj(out)), attn


class MLP(nn.Module):
    """The MLP of Eq. (3): two layers with a GELU non-linearity (or `act_layer`) between them."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0,
                 act_layer: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = make_activation(act_layer)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class EncoderBlock(nn.Module):
    """One Transformer encoder layer: Eq. (2) then Eq. (3), each pre-LayerNorm and residual."""

    def __init__(self, config: ViTConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        dim, eps = config.embed_dim, config.layer_norm_eps
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadSelfAttention(
            dim, config.num_heads, config.qkv_bias, config.attn_drop_rate, config.drop_rate
        )
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, config.mlp_dim, config.drop_rate, config.act_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        scale = config.init_values  # DeiT III / DINOv2's layer scale, else the paper's 1
        self.ls1 = LayerScale(dim, scale) if scale else nn.Identity()
        self.ls2 = LayerScale(dim, scale) if scale else nn.Identity()

    def forward(
        self, z: torch.Tensor, need_weights: bool = False, queries: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z_l from z_{l-1}; with `queries`, only its first `queries` tokens (what the head
        reads of the last block: every token is still a key and a value)."""
        attn_out, attn = self.attn(self.norm1(z), need_weights, queries)
        if queries is not None:
            z = z[:, :queries]
        z = z + self.drop_path(self.ls1(attn_out))  # Eq. (2)
        z = z + self.drop_path(self.ls2(self.mlp(self.norm2(z))))  # Eq. (3)
        return z, attn


class VisionTransformer(nn.Module):
    """ViT: Eq. (1) embedding, L encoder blocks (Eqs. 2-3), Eq. (4) LayerNorm and a linear head."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = self.make_patch_embedding(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.class_token else None
        # DeiT's distillation token and DINOv2's registers: more learned prefix tokens.
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.distilled else None
        self.reg_token = (nn.Parameter(torch.zeros(1, config.reg_tokens, dim))
                          if config.reg_tokens else None)
        num_tokens = config.num_pos_prefix_tokens + config.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))  # E_pos
        self.pos_drop = nn.Dropout(config.drop_rate)
        # CLIP's LayerNorm on z_0 before the blocks.
        eps = config.layer_norm_eps
        self.norm_pre = nn.LayerNorm(dim, eps=eps) if config.pre_norm else nn.Identity()

        steps = max(config.depth - 1, 1)
        rates = [config.drop_path_rate * i / steps for i in range(config.depth)]
        self.blocks = nn.ModuleList(EncoderBlock(config, rate) for rate in rates)

        self.norm = nn.Identity() if config.fc_norm else nn.LayerNorm(dim, eps=eps)
        self.attn_pool = (AttentionPoolHead(dim, config.num_heads, config.mlp_dim, eps,
                                            config.act_layer)
                          if config.global_pool == "map" else None)
        self.fc_norm = nn.LayerNorm(dim, eps=eps) if config.fc_norm else nn.Identity()
        self.pre_logits = nn.Identity()
        if config.representation_size:
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(dim, config.representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
        self.head_drop = nn.Dropout(config.drop_rate)
        head_in = config.representation_size or dim
        self.head = nn.Linear(head_in, config.num_classes) if config.num_classes else nn.Identity()
        self.head_dist = None  # DeiT's distillation head, averaged with `head` (forward_head)
        self.distilled_training = False  # see set_distilled_training
        if config.distilled:
            self.head_dist = nn.Linear(dim, config.num_classes) if config.num_classes \
                else nn.Identity()
        # Name, class names and preprocessing: set by loaders and trainers, saved with the
        # weights by `save_pretrained`.
        self.meta = ModelMeta(preprocessing=Preprocessing.default(config.in_chans))
        self.grad_checkpointing = False  # see set_grad_checkpointing
        init_vit_weights(self)

    def make_patch_embedding(self, config: ViTConfig) -> nn.Module:
        """x_p E of Eq. (1) on raw image patches (the hybrid of Section 3.1 overrides this)."""
        return PatchEmbedding(config.patch_size, config.in_chans, config.embed_dim,
                              bias=not config.pre_norm)

    # -- Eq. (1) -----------------------------------------------------------------------------
    def check_input(self, images: torch.Tensor) -> tuple[int, int]:
        """Validate an image batch and return its patch grid (gh, gw)."""
        check_image_batch(images.shape, self.config.in_chans)
        _, _, height, width = images.shape
        patch = self.config.patch_size
        if height % patch or width % patch:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the patch size {patch}; "
                f"resize or crop to a multiple of {patch}"
            )
        return height // patch, width // patch

    def position_embeddings(self, grid: tuple[int, int]) -> torch.Tensor:
        """E_pos for a patch grid, resampled bicubically when it differs from the native one."""
        return resample_pos_embed(
            self.pos_embed, grid, self.config.grid_size, self.config.num_pos_prefix_tokens
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Eq. (1): z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos, shape (B, 1+N, D)."""
        grid = self.check_input(images)
        return self.add_class_and_position(self.patch_embed(images), grid)  # x_p E: (B, N, D)

    def add_class_and_position(self, patches: torch.Tensor, grid: tuple[int, int]
                               ) -> torch.Tensor:
        """The rest of Eq. (1) for patch embeddings (B, N, D): prepend x_class (and the
        distillation or register tokens), add E_pos (to the patches only with no_embed_class),
        then CLIP's norm_pre."""
        prefix = [token.expand(patches.shape[0], -1, -1)
                  for token in (self.cls_token, self.dist_token, self.reg_token)
                  if token is not None]
        pos = self.position_embeddings(grid)
        if self.config.no_embed_class:  # DeiT III, DINOv2-reg: E_pos on the patches, then concat
            z = torch.cat([*prefix, patches + pos], dim=1)
        else:
            z = torch.cat([*prefix, patches], dim=1) + pos
        return self.norm_pre(self.pos_drop(z))

    # -- Eqs. (2)-(3) ------------------------------------------------------------------------
    def encode(self, z: torch.Tensor, last_queries: int | None = None) -> torch.Tensor:
        """Eqs. (2)-(3) for l = 1..L: the L encoder blocks take z_0 to z_L, shape (B, 1+N, D);
        with `last_queries`, z_L of the first `last_queries` tokens only."""
        for index, block in enumerate(self.blocks):
            last = index == len(self.blocks) - 1
            z, _ = self._run_block(block, z, last_queries if last else None)
        return z

    def _run_block(self, block: EncoderBlock, z: torch.Tensor, queries: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One block; with gradient checkpointing on (training only), its activations are
        recomputed in the backward pass instead of kept (memory for compute)."""
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, z, False, queries, use_reentrant=False)
        return block(z, queries=queries)

    # -- Eq. (4) -----------------------------------------------------------------------------
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """LN(z_L): every output token after the final LayerNorm of Eq. (4), (B, 1+N, D)."""
        return self.norm(self.encode(self.embed(images)))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image representation: z_L^0 (the [class] token), the mean patch token, or
        SigLIP's attention pooling over every token."""
        if self.attn_pool is not None:
            return self.attn_pool(tokens)
        if self.config.global_pool == "avg":
            return tokens[:, self.config.num_prefix_tokens :].mean(dim=1)
        return tokens[:, 0]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> Any:
        """Eq. (4) and the classifier: pool, (fc_norm), representation layer, linear head."""
        if self.head_dist is not None:  # DeiT: the two heads' average, in training too
            cls, dist = self.head_drop(tokens[:, 0]), self.head_drop(tokens[:, 1])
            if pre_logits:
                return (cls + dist) / 2
            if self.distilled_training and self.training:  # each head to its own loss
                return self.head(cls), self.head_dist(dist)
            return (self.head(cls) + self.head_dist(dist)) / 2
        y = self.fc_norm(self.pool(tokens))
        y = self.head_drop(self.pre_logits(y))
        return y if pre_logits else self.head(y)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for images (B, C, H, W). The last block computes only
        the tokens the head reads (`ViTConfig.head_tokens`): the same logits as
        forward_head(forward_features(images)), about 1/L less work for [class] pooling."""
        z = self.encode(self.embed(images), last_queries=self.config.head_tokens)
        return self.forward_head(self.norm(z))

    # -- for analysis ------------------------------------------------------------------------
    def forward_with_attention(
        self, images: torch.Tensor, layers: Collection[int] | None = None
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """LN(z_L), as `forward_features`, plus the attention probabilities (B, heads, 1+N, 1+N)
        of `layers`.

        `layers=None` asks for every layer; only the layers asked for leave the fused path.
        Negative indices count from the last layer.
        """
        depth = len(self.blocks)
        wanted = set(range(depth)) if layers is None else {i % depth for i in layers}
        z = self.embed(images)
        maps: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            z, attn = block(z, need_weights=index in wanted)
            if attn is not None:
                maps[index] = attn
        return self.norm(z), maps

    # -- features for downstream use ---------------------------------------------------------
    def forward_intermediates(
        self, images: torch.Tensor, indices: int | Sequence[int] | None = None,
        return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
        output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> Any:
        """timm's forward_intermediates: the z_l of blocks `indices` (see models/intermediates)."""
        return intermediates.forward_intermediates(
            self, images, indices, return_prefix_tokens, norm, stop_early, output_fmt,
            intermediates_only)

    def get_intermediate_layers(
        self, images: torch.Tensor, n: int | Sequence[int] = 1, reshape: bool = False,
        return_class_token: bool = False, norm: bool = True,
    ) -> tuple[Any, ...]:
        """DINOv2's get_intermediate_layers: the last n blocks' patch tokens, final-normed."""
        return intermediates.get_intermediate_layers(self, images, n, reshape,
                                                     return_class_token, norm)

    # -- changing the model ------------------------------------------------------------------
    def set_image_size(self, img_size: int | tuple[int, int]) -> None:
        """Resample E_pos to a new native resolution for good, e.g. to fine-tune at 384."""
        new_config = self.config.replace(img_size=to_2tuple(img_size))
        with torch.no_grad():
            resampled = self.position_embeddings(new_config.grid_size)
        self.pos_embed = nn.Parameter(resampled.detach().clone())
        self.config = new_config

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a zero-initialised one for num_classes (paper, Section 3.2)."""
        head_in = self.config.representation_size or self.config.embed_dim
        self.head = zero_head(head_in, num_classes, self.pos_embed.device, self.pos_embed.dtype)
        if self.head_dist is not None:  # DeiT keeps its distillation token and head
            self.head_dist = zero_head(head_in, num_classes, self.pos_embed.device,
                                       self.pos_embed.dtype)
        self.config = self.config.replace(num_classes=num_classes)
        self.meta.class_names = None

    def set_distilled_training(self, enable: bool = True) -> None:
        """While training, return the [class] and distillation heads' logits apart, for a
        distillation loss (`vitkit.train.distill`); evaluation still averages them."""
        if enable and self.head_dist is None:
            raise ValueError("only a model with a distillation token (distilled=True) trains "
                             "by distillation")
        self.distilled_training = enable

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them:
        less memory (for ViT-L/H), about one more forward pass of compute."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameters that weight decay should skip besides biases and norms."""
        return {"pos_embed", "cls_token", "dist_token", "reg_token"}
