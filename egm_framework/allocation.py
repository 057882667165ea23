"""Adaptive number of proposals per time bin (``estimator.proposal_allocation = "ess"``).

Where the importance weights are poor (small t on most paths: the posterior proposals are broad) a
row's target is noisy and biased by ~1/(K · ess); where they are good, most of the K proposals are
wasted. With the batch split into strata of t (one per logged ESS bin, so the training times stay
uniform overall), stratum g gets K_g proposals per row. Minimizing the summed variance
Σ_g n_g / (K_g · ess_g) under a fixed budget Σ_g n_g K_g = B · K gives

    K_g ∝ ess_g^{−1/2},

ess_g being the normalized effective sample size measured in that bin (smoothed over log lines).
K_g is kept within [K / max_ratio, K · max_ratio]; clipping moves the budget by at most what was
clipped. Everything here runs on the host from numbers the trainer logs anyway: no device sync.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def allocate_proposals(ess: Sequence[float | None], K: int, max_ratio: float) -> list[int]:
    """Proposals per time bin for equal-sized strata: K_g = K · G · a_g / Σ_h a_h, a_g = ess_g^{−1/2},
    clipped to [ceil(K / max_ratio), K · max_ratio]. A bin without a measurement (None) counts as the
    mean of the others (all None: K everywhere)."""
    G = len(ess)
    known = [float(e) for e in ess if e is not None and math.isfinite(float(e)) and float(e) > 0]
    if not known:
        return [int(K)] * G
    fill = float(np.mean(known))
    vals = np.array([float(e) if (e is not None and math.isfinite(float(e)) and float(e) > 0) else fill
                     for e in ess])
    a = vals ** -0.5
    raw = K * G * a / a.sum()
    lo = max(1, math.ceil(K / max_ratio))
    hi = max(lo, int(K * max_ratio))
    return [int(min(hi, max(lo, round(v)))) for v in raw]


def stratum_sizes(B: int, G: int, host_rng: np.random.Generator) -> list[int]:
    """B rows over G strata: B // G each, the remainder to distinct strata chosen at random (so that
    every t keeps the same chance of being drawn)."""
    sizes = [B // G] * G
    for g in host_rng.choice(G, size=B % G, replace=False):
        sizes[int(g)] += 1
    return sizes


def stratified_times(sizes: Sequence[int], lo: float, hi: float, gen: torch.Generator, device,
                     cut: float | None = None, host_rng: np.random.Generator | None = None
                     ) -> tuple[torch.Tensor, list[int]]:
    """t for each stratum g (sizes[g] rows, uniform on the g-th of len(sizes) equal bins of [lo, hi]),
    stratum after stratum. With ``cut`` (bootstrapping: rows with t ≥ cut have r = 1), the rows of a
    stratum at or above the cut are put last within it and counted on the host (a binomial draw with
    the bin's share above the cut): returns t and the number of such rows per stratum."""
    G = len(sizes)
    width = (hi - lo) / G
    u = torch.rand(sum(sizes), generator=gen, device=device)
    t = torch.empty_like(u)
    finals: list[int] = []
    start = 0
    for g, n in enumerate(sizes):
        a, b = lo + g * width, lo + (g + 1) * width
        sl = slice(start, start + n)
        if cut is None or cut >= b:
            t[sl] = a + (b - a) * u[sl]
            finals.append(0)
        elif cut <= a:
            t[sl] = a + (b - a) * u[sl]
            finals.append(n)
        else:
            nf = int(host_rng.binomial(n, (b - cut) / (b - a))) if n else 0
            nb = n - nf
            t[start:start + nb] = a + (cut - a) * u[start:start + nb]
            t[start + nb:start + n] = cut + (b - cut) * u[start + nb:start + n]
            finals.append(nf)
        start += n
    return t, finals
