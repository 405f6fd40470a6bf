"""Few-shot linear evaluation, the paper's (Section 4.1) and big_vision's `fewshot_lsr`: from
`shots` training images per class, a regularised least-squares regression of frozen
features onto {-1, 1} one-vs-rest targets, solved in closed form, scored by the argmax on the
test features. As big_vision does it: the features are standardised with the mean and std of
the sampled images, a constant bias feature of 100 is appended (large, so the bias is almost
unregularised), l2 = 2^10, and each seed draws one permutation per class whose first `shots`
images are used (so a seed's 5 shots include its 1 shot)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

BIAS_FEATURE = 100.0
DEFAULT_SHOTS = (1, 5, 10, 25)
DEFAULT_L2 = 2.0**10


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """`seeds` as a list: an int n means seeds 0..n-1."""
    chosen = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not chosen:
        raise ValueError(f"seeds={seeds!r} must be at least 1 (or a non-empty list)")
    return chosen


def check_shots(labels: torch.Tensor, shots: Sequence[int], num_classes: int) -> None:
    """A clear error for shot counts that are not positive or that a class cannot supply."""
    if not shots or any(int(s) < 1 for s in shots):
        raise ValueError(f"shots={list(shots)} must be positive image counts per class")
    counts = torch.bincount(labels.long(), minlength=num_classes)
    fewest = int(counts.min())
    if max(shots) > fewest:
        poorest = int(counts.argmin())
        raise ValueError(f"shots={max(shots)} needs {max(shots)} training images of every "
                         f"class, but class {poorest} has {fewest}; ask for at most {fewest}")


def sample_shots(labels: torch.Tensor, shots: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of `shots` images of each class, drawn with `seed` (class by class, in order)."""
    check_shots(labels, [shots], num_classes)
    rng = np.random.default_rng(seed)
    labels_np = labels.cpu().numpy()
    chosen = [rng.permutation(np.flatnonzero(labels_np == c))[:shots] for c in range(num_classes)]
    return torch.from_numpy(np.concatenate(chosen)).long()


def ridge_weights(x: torch.Tensor, targets: torch.Tensor, l2: float) -> torch.Tensor:
    """W minimising |X W - Y|^2 + l2 |W|^2: (X^T X + l2 I)^-1 X^T Y, or the same through the
    N x N system X^T (X X^T + l2 I)^-1 Y when there are fewer rows than columns."""
    rows, cols = x.shape
    if rows >= cols:
        gram = x.T @ x + l2 * torch.eye(cols, dtype=x.dtype)
        return torch.linalg.solve(gram, x.T @ targets)
    gram = x @ x.T + l2 * torch.eye(rows, dtype=x.dtype)
    return x.T @ torch.linalg.solve(gram, targets)


def with_bias(x: torch.Tensor) -> torch.Tensor:
    """`x` with the constant bias feature appended as a last column."""
    return torch.cat([x, torch.full((len(x), 1), BIAS_FEATURE, dtype=x.dtype)], dim=1)


def few_shot_predict(train_feats: torch.Tensor, train_labels: torch.Tensor,
                     test_feats: torch.Tensor, num_classes: int,
                     l2: float = DEFAULT_L2) -> torch.Tensor:
    """Predicted classes of `test_feats` by the closed-form regression fitted (in float64) on
    the given training features and labels."""
    x = train_feats.double()
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False) + 1e-5
    targets = 2.0 * torch.nn.functional.one_hot(train_labels.long(), num_classes).double() - 1
    weights = ridge_weights(with_bias((x - mean) / std), targets, l2)
    return (with_bias((test_feats.double() - mean) / std) @ weights).argmax(dim=1)


def few_shot_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    shots: Sequence[int] = DEFAULT_SHOTS,
    seeds: int | Sequence[int] = 3,
    l2: float = DEFAULT_L2,
    num_classes: int | None = None,
) -> dict[int, dict[str, float | list[float]]]:
    """{shots: {'mean', 'std', 'per_seed'}}: test top-1 (fractions) of the few-shot regression
    for each shot count over the seeds (an int n: seeds 0..n-1); 'std' is the sample standard
    deviation over seeds (0 for one seed)."""
    if l2 < 0:
        raise ValueError(f"l2={l2} must not be negative")
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    check_shots(train_labels, shots, num_classes)
    results = {}
    for count in shots:
        scores = []
        for seed in seed_list(seeds):
            chosen = sample_shots(train_labels, int(count), num_classes, seed)
            predicted = few_shot_predict(train_feats[chosen], train_labels[chosen], test_feats,
                                         num_classes, l2)
            scores.append((predicted == test_labels.long()).double().mean().item())
        spread = float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
        results[int(count)] = {"mean": float(np.mean(scores)), "std": spread,
                               "per_seed": scores}
    return results
