"""What the embedding layers learned (the paper's Figure 7, left and centre): principal
components of the patch-embedding filters and the similarity of position embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import VisionTransformer


def position_embedding_similarity(model: VisionTransformer) -> torch.Tensor:
    """Cosine similarity of each patch's position embedding with every other: (gh, gw, gh, gw).

    Entry [i, j, r, c] compares the embedding of patch (i, j) with that of patch (r, c); the
    [class] token's embedding (and any other prefix token's) is left out (Figure 7, centre).
    """
    gh, gw = model.config.grid_size
    with torch.no_grad():
        grid = model.pos_embed[0, model.config.num_pos_prefix_tokens :].detach().float().cpu()
        unit = F.normalize(grid, dim=-1)
        return (unit @ unit.T).reshape(gh, gw, gh, gw)


def principal_components(samples: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k principal components of the rows of `samples` (n, d) and the fraction of the
    variance each explains: ((k, d), (k,)). Rows are centred first; each component's sign is
    fixed so that its largest-magnitude entry is positive. k is capped at min(n, d).
    """
    if samples.ndim != 2:
        raise ValueError(f"samples must be a matrix (n, d), got shape {tuple(samples.shape)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    data = samples.detach().double().cpu()
    data = data - data.mean(dim=0, keepdim=True)
    _, singular, vh = torch.linalg.svd(data, full_matrices=False)
    k = min(k, vh.shape[0])
    components = vh[:k]
    peak = components.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(components.gather(1, peak))
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    variance = singular.square()
    ratio = variance[:k] / variance.sum().clamp_min(1e-300)
    return components.float(), ratio.float()


def embedding_filters(model: VisionTransformer, k: int = 28) -> torch.Tensor:
    """Figure 7 (left): the top-k principal components of the patch-embedding filters E as
    images, (k, C, P, P); k is capped at min(D, C*P*P).

    Each of the D filters (a row of E, i.e. a C x P x P kernel of the patch projection) is one
    sample of the principal component analysis.
    """
    weight = model.patch_embed.proj.weight  # (D, C, P, P)
    components, _ = principal_components(weight.flatten(1), k)
    return components.reshape(-1, *weight.shape[1:])


def embedding_filter_variance(model: VisionTransformer, k: int = 28) -> torch.Tensor:
    """The fraction of the filters' variance each of `embedding_filters`' components explains."""
    return principal_components(model.patch_embed.proj.weight.flatten(1), k)[1]
