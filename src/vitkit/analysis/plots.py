"""Matplotlib figures of the analyses: rollout overlays (Figure 6) and the three panels of
Figure 7. Plotting only; the numbers come from `attention` and `embeddings`."""

from __future__ import annotations

import math
import sys

import matplotlib

if "ipykernel" not in sys.modules:  # in a notebook, keep its inline backend
    matplotlib.use("Agg")  # elsewhere no windows, also without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

DISPLAY_SIZE = 224  # pixels that overlays are drawn at, so that 8x8 images stay readable


def _as_hwc(image: torch.Tensor) -> np.ndarray:
    """A uint8 (C, H, W) tensor as a float (H, W, 3) array in [0, 1] for imshow."""
    array = image.detach().cpu().float().numpy() / 255.0
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    elif array.shape[0] != 3:
        array = np.repeat(array[:1], 3, axis=0)  # show the first channel of odd layouts
    return np.clip(array.transpose(1, 2, 0), 0.0, 1.0)


def _upsample(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a (C, H, W) or (H, W) float tensor for display."""
    batch = image.float()[None, None] if image.ndim == 2 else image.float()[None]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(batch, size=size, mode=mode, **kwargs)[0]
    return out[0] if image.ndim == 2 else out


def _display_size(height: int, width: int) -> tuple[int, int]:
    scale = max(1, round(DISPLAY_SIZE / max(height, width)))
    return height * scale, width * scale


def plot_rollout(image: torch.Tensor, rollout: torch.Tensor, title: str = "") -> Figure:
    """Figure 6 for one image: the image, its rollout map on the patch grid, and the map
    (bilinearly upsampled, scaled to its maximum) laid over the image.

    image: uint8 (C, H, W); rollout: (gh, gw) from `attention_rollout`.
    """
    rollout = rollout.detach().cpu().float()
    gh, gw = rollout.shape
    size = _display_size(image.shape[-2], image.shape[-1])
    shown = _as_hwc(_upsample(image.float(), size, "nearest").round().clamp(0, 255))
    heat = _upsample(rollout / rollout.max().clamp_min(1e-12), size, "bilinear").numpy()

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6), layout="constrained")
    axes[0].imshow(shown, interpolation="nearest")
    axes[0].set_title("Input")
    im = axes[1].imshow(rollout.numpy(), cmap="inferno", interpolation="nearest")
    axes[1].set_title(f"Attention rollout ({gh}x{gw} patches)")
    axes[1].set_xlabel("patch column")
    axes[1].set_ylabel("patch row")
    axes[1].set_xticks(range(gw))
    axes[1].set_yticks(range(gh))
    fig.colorbar(im, ax=axes[1], shrink=0.85, label="rollout weight")
    gray = shown.mean(axis=-1)
    axes[2].imshow(gray, cmap="gray", interpolation="nearest")
    over = axes[2].imshow(heat, cmap="inferno", alpha=0.55, vmin=0.0, vmax=1.0)
    axes[2].set_title("Rollout over the input")
    fig.colorbar(over, ax=axes[2], shrink=0.85, label="rollout / max")
    for ax in (axes[0], axes[2]):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def _mosaic(tiles: np.ndarray, rows: int, cols: int, fill: float) -> np.ndarray:
    """Tile (n, h, w[, c]) images into one rows x cols image with one-pixel gaps."""
    n, h, w = tiles.shape[:3]
    extra = tiles.shape[3:]
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, *extra), fill, dtype=np.float64)
    for index in range(n):
        r, c = divmod(index, cols)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tiles[index]
    return out


def plot_filters(ax: plt.Axes, components: torch.Tensor, variance: torch.Tensor | None = None
                 ) -> None:
    """Figure 7 (left): principal components (k, C, P, P) of the patch-embedding filters,
    each min-max scaled to [0, 1], shown as RGB (3 channels) or grey, in reading order."""
    comps = components.detach().cpu().double()
    low = comps.flatten(1).min(dim=1).values[:, None, None, None]
    high = comps.flatten(1).max(dim=1).values[:, None, None, None]
    scaled = ((comps - low) / (high - low).clamp_min(1e-12)).numpy()
    tiles = np.stack([_as_hwc(torch.from_numpy(t * 255.0)) for t in scaled])
    scale = max(1, 16 // tiles.shape[1])  # blow tiny (e.g. 2x2) filters up to ~16 pixels
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    count = tiles.shape[0]
    cols = 7 if count > 16 else math.ceil(math.sqrt(count))  # 4 x 7 like the paper for 28
    rows = math.ceil(count / cols)
    ax.imshow(_mosaic(tiles, rows, cols, fill=1.0), interpolation="nearest")
    size = tiles.shape[1]
    for index in range(count):  # frame each filter, so white filters stand out from the gaps
        r, c = divmod(index, cols)
        ax.add_patch(Rectangle((c * (size + 1) - 0.5, r * (size + 1) - 0.5), size, size,
                               fill=False, edgecolor="0.35", linewidth=0.8))
    ax.set_xticks([])
    ax.set_yticks([])
    title = f"Embedding filters\n(first {count} principal components)"
    if variance is not None:
        title += f", {100 * float(variance.sum()):.0f}% of variance"
    ax.set_title(title)


def _grid_ticks(count: int, tile: int) -> tuple[list[float], list[str]]:
    step = max(1, math.ceil(count / 8))
    index = list(range(0, count, step))
    return [i * (tile + 1) + (tile - 1) / 2 for i in index], [str(i + 1) for i in index]


def plot_position_similarity(ax: plt.Axes, similarity: torch.Tensor) -> None:
    """Figure 7 (centre): for each patch (row, column), a tile showing the cosine similarity
    of its position embedding with those of all patches."""
    gh, gw = similarity.shape[:2]
    tiles = similarity.detach().cpu().double().reshape(gh * gw, gh, gw).numpy()
    mosaic = _mosaic(tiles, gh, gw, fill=np.nan)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    im = ax.imshow(mosaic, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_title("Position embedding similarity")
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    ax.set_xticks(*_grid_ticks(gw, gw))
    ax.set_yticks(*_grid_ticks(gh, gh))
    ax.figure.colorbar(im, ax=ax, shrink=0.85, label="Cosine similarity")


def plot_attention_distance(
    ax: plt.Axes, distance: torch.Tensor, uniform_distance: float | None = None
) -> None:
    """Figure 7 (right): mean attention distance (pixels) of every head against depth; the
    dashed line is the distance uniform attention would give."""
    values = distance.detach().cpu().numpy()
    layers, heads = values.shape
    depth = np.arange(1, layers + 1)
    cmap = plt.get_cmap("tab20" if heads > 10 else "tab10")
    for head in range(heads):
        ax.scatter(depth, values[:, head], s=18, color=cmap(head % cmap.N),
                   label=f"Head {head + 1}")
    if uniform_distance is not None:
        ax.axhline(uniform_distance, color="gray", linestyle="--", linewidth=1,
                   label="uniform attention")
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_title("Mean attention distance")
    ax.set_xticks(depth if layers <= 16 else depth[:: math.ceil(layers / 12)])
    top = max(float(values.max()), uniform_distance or 0.0)
    ax.set_ylim(0, top * 1.1 + 1e-6)
    ax.grid(alpha=0.3)
    if heads <= 16:
        ax.legend(fontsize=7, ncol=2 if heads > 4 else 1, loc="lower right")


def plot_figure7(
    components: torch.Tensor,
    similarity: torch.Tensor,
    distance: torch.Tensor,
    variance: torch.Tensor | None = None,
    uniform_distance: float | None = None,
    title: str = "",
) -> Figure:
    """The paper's Figure 7: filters (left), position similarity (centre), attention distance
    against depth (right), side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1.15, 1.1]})
    plot_filters(axes[0], components, variance)
    plot_position_similarity(axes[1], similarity)
    plot_attention_distance(axes[2], distance, uniform_distance)
    if title:
        fig.suptitle(title)
    return fig


def single_panel(draw, *args, figsize: tuple[float, float] = (5.5, 5)) -> Figure:  # noqa: ANN001
    """One Figure 7 panel on its own figure, e.g. single_panel(plot_filters, components)."""
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    draw(ax, *args)
    return fig
