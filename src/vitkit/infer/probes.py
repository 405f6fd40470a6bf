"""Two classifiers on frozen features: a linear probe (multinomial logistic regression,
scikit-learn's L-BFGS, on standardised features) and k-nearest neighbours (cosine similarity
of L2-normalised features, majority vote)."""

from __future__ import annotations

import numpy as np
import torch

# Inverse regularisation strengths tried when no C is given, picked on a held-out 10%.
PROBE_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
PROBE_VAL_FRACTION = 0.1


def probe_carve(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val) indices: a seeded 10% of each class with 2+ images held out for choosing C."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        count = min(max(round(PROBE_VAL_FRACTION * len(members)), 1), len(members) - 1)
        val.append(members[:count])
        fit.append(members[count:])
    return np.concatenate(fit), np.concatenate(val)


def _fit_probe(x: np.ndarray, y: np.ndarray, c: float):
    """A multinomial logistic regression with inverse regularisation `c`, fitted."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=1000).fit(x, y)


def choose_c(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, dict[float, float]]:
    """The C of `PROBE_C_GRID` with the best accuracy on a held-out carve of (x, y), with each
    C's accuracy; 1.0 (scikit-learn's default) when no class has 2 images to carve from."""
    fit, val = probe_carve(y, seed)
    if len(val) == 0 or len(np.unique(y[fit])) < 2:
        return 1.0, {}
    scores = {c: float((_fit_probe(x[fit], y[fit], c).predict(x[val]) == y[val]).mean())
              for c in PROBE_C_GRID}
    return max(scores, key=lambda c: (scores[c], -c)), scores


def linear_probe_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    c: float | None = None,
    seed: int = 0,
) -> dict[str, object]:
    """{'top1', 'c', 'val_top1'}: test top-1 of a logistic regression on the training features
    (standardised with their mean and std), with inverse regularisation `c`, or with the C of
    `PROBE_C_GRID` best on a seeded 10% validation carve (then refitted on all of them)."""
    if c is not None and c <= 0:
        raise ValueError(f"c={c} must be positive (the inverse regularisation strength)")
    x, y = train_feats.double().numpy(), train_labels.long().numpy()
    if len(np.unique(y)) < 2:
        raise ValueError("a linear probe needs training images of at least 2 classes")
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-5
    x = (x - mean) / std
    val_scores: dict[float, float] = {}
    if c is None:
        c, val_scores = choose_c(x, y, seed)
    probe = _fit_probe(x, y, c)
    predicted = probe.predict((test_feats.double().numpy() - mean) / std)
    top1 = float((predicted == test_labels.long().numpy()).mean())
    return {"top1": top1, "c": c, "val_top1": {str(k): v for k, v in val_scores.items()}}


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    chunk: int = 1024,
) -> dict[str, float]:
    """{'top1', 'k'}: test top-1 of a majority vote of each test feature's `k` most
    cosine-similar training features; a tie goes to the class with the larger summed
    similarity."""
    if not 1 <= k <= len(train_feats):
        raise ValueError(f"k={k} must be between 1 and the {len(train_feats)} training images")
    train = torch.nn.functional.normalize(train_feats.float(), dim=1)
    test = torch.nn.functional.normalize(test_feats.float(), dim=1)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    correct = 0
    for start in range(0, len(test), chunk):
        similarity, nearest = (test[start:start + chunk] @ train.T).topk(k, dim=1)
        votes = torch.nn.functional.one_hot(train_labels[nearest].long(), num_classes).float()
        # One vote each; the summed similarity (|sum| < k) scaled below one vote breaks ties.
        scores = votes.sum(1) + (votes * similarity[..., None]).sum(1) / (2 * k + 1)
        correct += (scores.argmax(1) == test_labels[start:start + chunk].long()).sum().item()
    return {"top1": correct / len(test), "k": k}
