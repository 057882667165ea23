"""Sample-based distances for continuous states (evaluation only, not the training hot path).

- :func:`x_w2`: Wasserstein-2 between two point clouds by exact optimal transport (POT ``ot.emd2``,
  squared Euclidean cost, uniform weights), reported as a distance (the square root).
- :func:`w1_1d`, :func:`w2_1d`: exact 1-D Wasserstein distances between empirical distributions of
  equal or unequal size (through the quantile functions).
- :func:`nearest_mode_counts`, :func:`mode_metrics`: mode coverage and mode-weight error.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["x_w2", "w1_1d", "w2_1d", "nearest_mode_counts", "mode_metrics"]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def x_w2(a, b, max_iter: int = 1_000_000) -> float:
    """W2(a, b) = sqrt(min_π Σ π_ij ‖a_i − b_j‖²) with uniform marginals. a: (n, d), b: (m, d).

    Exact network-simplex OT (``ot.emd2``); memory O(n·m), time roughly O(n³) — intended for
    evaluation sizes of a few thousand points.
    """
    import ot

    a = _np(a).reshape(len(a), -1)
    b = _np(b).reshape(len(b), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x_w2 needs point clouds of the same dimension, got {a.shape[1]} and {b.shape[1]}")
    cost = ot.dist(a, b, metric="sqeuclidean")
    wa = np.full(len(a), 1.0 / len(a))
    wb = np.full(len(b), 1.0 / len(b))
    w2sq = ot.emd2(wa, wb, cost, numItermax=max_iter)
    return float(np.sqrt(max(float(w2sq), 0.0)))


def _quantile_diff(a, b, p: int) -> float:
    a = np.sort(_np(a).ravel())
    b = np.sort(_np(b).ravel())
    if len(a) == len(b):
        d = np.abs(a - b)
        return float(np.mean(d ** p) ** (1.0 / p))
    # unequal sizes: integrate |F_a^{-1}(u) − F_b^{-1}(u)|^p over the merged quantile grid
    u = np.union1d(np.arange(1, len(a) + 1) / len(a), np.arange(1, len(b) + 1) / len(b))
    du = np.diff(np.concatenate([[0.0], u]))
    qa = a[np.minimum(np.ceil(u * len(a) - 1e-12).astype(int) - 1, len(a) - 1)]
    qb = b[np.minimum(np.ceil(u * len(b) - 1e-12).astype(int) - 1, len(b) - 1)]
    return float(np.sum(du * np.abs(qa - qb) ** p) ** (1.0 / p))


def w1_1d(a, b) -> float:
    """Exact 1-D W1 between the empirical distributions of a and b (any shapes, flattened)."""
    return _quantile_diff(a, b, 1)


def w2_1d(a, b) -> float:
    """Exact 1-D W2 (a distance) between the empirical distributions of a and b."""
    return _quantile_diff(a, b, 2)


def nearest_mode_counts(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Number of samples whose nearest mean is mode k. x: (n, d), means: (M, d) -> (M,) long."""
    x = x.detach().float().cpu()
    means = means.detach().float().cpu()
    idx = torch.cdist(x, means).argmin(dim=1)
    return torch.bincount(idx, minlength=means.shape[0])


def mode_metrics(x: torch.Tensor, means: torch.Tensor, weights: torch.Tensor, min_fraction: float = 0.2) -> dict[str, float]:
    """Mode coverage and mode-weight error of samples x for a mixture with the given means and weights.

    - ``mode_coverage``: share of modes k whose count of assigned samples (nearest mean) is at least
      max(1, min_fraction · n · w_k), i.e. at least a fifth of the expected count by default.
    - ``mode_weight_tv``: total variation ½ Σ_k |n_k/n − w_k| between empirical and true mode weights
      (assignment by nearest mean, so it also counts the overlap between neighbouring components).
    """
    counts = nearest_mode_counts(x, means).double()
    n = counts.sum().clamp_min(1)
    w = weights.detach().double().cpu()
    w = w / w.sum()
    need = torch.clamp(min_fraction * n * w, min=1.0)
    coverage = (counts >= need).double().mean()
    tv = 0.5 * (counts / n - w).abs().sum()
    return {"mode_coverage": float(coverage), "mode_weight_tv": float(tv)}
