"""The few modules by which the ViT's descendants differ from Eqs. (1)-(4), each a switch of
`ViTConfig` (timm's names). Where each one acts is in the README's table of families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerScale(nn.Module):
    """Layer scale (Touvron et al. 2021, CaiT; used by DeiT III and DINOv2): Eqs. (2)-(3) add
    diag(gamma) MSA(LN(z)) and diag(gamma) MLP(LN(z')), gamma a learned per-channel gain."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class QuickGELU(nn.Module):
    """QuickGELU (Radford et al. 2021, OpenAI's CLIP): the MLP of Eq. (3) uses
    x * sigmoid(1.702 x) in place of the exact GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    """The MLP non-linearity of Eq. (3): 'gelu' (the paper's), 'gelu_tanh' (SigLIP's
    tanh approximation, as transformers runs it) or 'quick_gelu' (OpenAI's CLIP)."""
    if name == "quick_gelu":
        return QuickGELU()
    return nn.GELU(approximate="tanh" if name == "gelu_tanh" else "none")


class AttentionPoolHead(nn.Module):
    """Multihead attention pooling, 'map' (Zhai et al. 2022; SigLIP): Eq. (4) pools LN(z_L)
    by one learned query attending over every token, then a residual MLP, not by z_L^0."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, eps: float,
                 act_layer: str = "gelu") -> None:
        super().__init__()
        self.num_heads = num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))  # the learned query ("probe")
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, mlp_hidden))
        self.mlp.add_module("act", make_activation(act_layer))
        self.mlp.add_module("fc2", nn.Linear(mlp_hidden, dim))
        nn.init.trunc_normal_(self.latent, std=dim**-0.5)

    def attention(self, tokens: torch.Tensor, need_weights: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The pooled vector (B, D) and, if asked, the query's attention (B, heads, 1, N)."""
        batch, length, dim = tokens.shape
        head_dim = dim // self.num_heads
        q = self.q(self.latent.expand(batch, -1, -1))
        q = q.reshape(batch, 1, self.num_heads, head_dim).transpose(1, 2)
        kv = self.kv(tokens).reshape(batch, length, 2, self.num_heads, head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        weights = None
        if need_weights:
            weights = ((q * head_dim**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        x = self.proj(out.transpose(1, 2).reshape(batch, 1, dim))
        x = x + self.mlp(self.norm(x))
        return x[:, 0], weights

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.attention(tokens)[0]
