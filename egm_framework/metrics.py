"""Evaluation metrics: exact 1-D Wasserstein distances of energies and observables, with noise floors.

Every metric is computed twice: sampler vs ground truth, and ground truth vs an independent
ground-truth set of the same size (the *noise floor*). A result reads "E-W1 = 0.21 (floor 0.15)".
W2 is reported as a distance (the square root), never W2².
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .states import State, batch_size, tree_map


def _as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64).reshape(-1)


def wasserstein_1d(a, b, p: float = 1.0) -> float:
    """Exact W_p between the empirical distributions of two 1-D samples (any sizes).

    W_p^p = ∫_0^1 |F_a^{-1}(u) − F_b^{-1}(u)|^p du, integrated exactly over the merged breakpoints of
    the two empirical quantile functions. Returns W_p (a distance)."""
    a = np.sort(_as_numpy(a))
    b = np.sort(_as_numpy(b))
    if a.size == 0 or b.size == 0:
        raise ValueError("wasserstein_1d needs non-empty samples")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    if a.size == b.size:
        d = np.abs(a - b)
        return float(np.mean(d ** p) ** (1.0 / p))
    ua = np.arange(1, a.size + 1) / a.size
    ub = np.arange(1, b.size + 1) / b.size
    u = np.unique(np.concatenate([ua, ub]))
    du = np.diff(np.concatenate([[0.0], u]))
    ia = np.minimum(np.searchsorted(ua, u - 1e-12, side="left"), a.size - 1)
    ib = np.minimum(np.searchsorted(ub, u - 1e-12, side="left"), b.size - 1)
    return float(np.sum(du * np.abs(a[ia] - b[ib]) ** p) ** (1.0 / p))


@torch.no_grad()
def statistics(energy, x: State, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Energy and the energy's observables per sample, as numpy arrays."""
    n = batch_size(x)
    out: dict[str, list] = {}
    for i in range(0, n, chunk):
        xi = tree_map(lambda v: v[i:i + chunk], x)
        vals = {"energy": energy(xi)}
        vals.update(energy.observables(xi))
        for k, v in vals.items():
            out.setdefault(k, []).append(_as_numpy(v))
    return {k: np.concatenate(v) for k, v in out.items()}


#: suffixes of keys that annotate a metric (its noise floor, ground-truth value, exact value), not metrics
ANNOTATIONS = ("/floor", "/reference", "/exact")

ABBREV = {"energy": "E", "magnetization": "M", "abs_magnetization": "|M|"}


def compare(energy, samples: State, reference: State, reference2: State | None = None) -> dict[str, Any]:
    """Metrics of ``samples`` against ``reference``; with ``reference2`` also their noise floors.

    Returns a flat dict: ``E-W1``, ``E-W2``, ``<obs>-W1``, ... ``E-mean`` and, for each metric m,
    ``m/floor``; plus the energy's ``extra_metrics`` (and their floors)."""
    s = statistics(energy, samples)
    r = statistics(energy, reference)
    r2 = statistics(energy, reference2) if reference2 is not None else None
    out: dict[str, Any] = {"num_samples": int(batch_size(samples)), "num_reference": int(batch_size(reference))}
    for key in s:
        tag = ABBREV.get(key, key)
        for p in (1, 2):
            out[f"{tag}-W{p}"] = wasserstein_1d(s[key], r[key], p)
            if r2 is not None:
                out[f"{tag}-W{p}/floor"] = wasserstein_1d(r2[key], r[key], p)
        out[f"{tag}-mean"] = float(np.mean(s[key]))
        out[f"{tag}-mean/reference"] = float(np.mean(r[key]))
    extra = energy.extra_metrics(samples, reference)
    out.update({k: float(v) for k, v in extra.items()})
    if reference2 is not None and extra:
        floor = energy.extra_metrics(reference2, reference)
        refs = getattr(energy, "reference_metrics", frozenset())
        out.update({f"{k}/{'reference' if k in refs else 'floor'}": float(v) for k, v in floor.items() if k in extra})
    return out


def format_metrics(m: dict[str, Any], keys: list[str] | None = None) -> str:
    """One line, e.g. ``E-W1 0.210 (floor 0.150)  M-W1 ...``."""
    parts = []
    for k, v in m.items():
        if k.endswith(ANNOTATIONS) or (keys and k not in keys):
            continue
        if not isinstance(v, (int, float)) or k.startswith("num_"):
            continue
        f = m.get(f"{k}/floor")
        parts.append(f"{k} {v:.4g}" + (f" (floor {f:.3g})" if f is not None else ""))
    return "  ".join(parts)
