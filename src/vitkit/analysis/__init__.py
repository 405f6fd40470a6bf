"""What a ViT learned: the paper's Figure 6 (attention rollout) and Figure 7 (embedding
filters, position-embedding similarity, mean attention distance), as tensors and as plots."""

from .attention import (
    attention_maps,
    attention_rollout,
    mean_attention_distance,
    patch_distances,
)
from .embeddings import (
    embedding_filter_variance,
    embedding_filters,
    position_embedding_similarity,
    principal_components,
)
from .report import write_report

__all__ = [
    "attention_maps",
    "attention_rollout",
    "embedding_filter_variance",
    "embedding_filters",
    "mean_attention_distance",
    "patch_distances",
    "position_embedding_similarity",
    "principal_components",
    "write_report",
]
