"""A check that an approximate prior is not far narrower than the target.

Some paths start from a prior that only approximates the true t = 0 marginal: the VE path's
p_0 = N(0, σ_0² I) stands in for the target convolved with N(0, σ_0² I), which is close only when σ_0
is large against the target's spread. A path with such a prior exposes ``prior_std()`` (a product path
forwards its continuous part's); paths whose prior is exact (cond-OT) do not.
"""

from __future__ import annotations

import math
import warnings

import torch

from .states import tree_leaves


class PriorScaleWarning(UserWarning):
    """The path's approximate prior is narrower than the target."""


def target_std(energy, n: int = 2000, seed: int = 0) -> float | None:
    """Largest per-coordinate standard deviation of the target's continuous coordinates, from its exact
    ground-truth sampler; None when the energy has no exact sampler or no continuous coordinates."""
    if not str(getattr(energy, "ground_truth_method", "")).lower().startswith("exact"):
        return None
    g = torch.Generator()
    g.manual_seed(seed)
    try:
        x = energy.ground_truth(n, g)
    except NotImplementedError:
        return None
    stds = [leaf.reshape(leaf.shape[0], -1).float().std(dim=0).max() for leaf in tree_leaves(x)
            if leaf.dtype.is_floating_point]
    return float(max(stds)) if stds else None


#: the prior may be this much narrower than the t = 0 marginal before the check warns (a VE prior
#: 17 % too narrow made DW-4's samples 7 % too narrow and tripled their distance error: docs/results.md)
TOLERANCE = 0.05


def check_prior_scale(path, energy) -> str | None:
    """Warn (:class:`PriorScaleWarning`) and return the message when ``path.prior_std()`` is more than
    :data:`TOLERANCE` below the standard deviation of the exact t = 0 marginal, √(σ_0² + s²) for a path
    that adds noise of std σ_0 = ``path.prior_noise_std()`` to a target whose largest per-coordinate
    standard deviation is s (just s for a path without ``prior_noise_std``); None when fine or not
    checkable (no ``prior_std``, or no exact ground truth to measure s)."""
    fn = getattr(path, "prior_std", None)
    prior = fn() if fn is not None else None
    if prior is None:
        return None
    spread = target_std(energy)
    if spread is None:
        return None
    noise_fn = getattr(path, "prior_noise_std", None)
    noise = noise_fn() if noise_fn is not None else None
    marginal = math.sqrt(noise ** 2 + spread ** 2) if noise is not None else spread
    if prior >= (1.0 - TOLERANCE) * marginal:
        return None
    msg = (f"the path's prior N(0, {prior:.3g}²) is narrower than the target's t = 0 marginal (std "
           f"{marginal:.3g}: the target's per-coordinate std is up to {spread:.3g}): a flow carries the "
           f"difference to the samples (a diffusion partly forgets it), which come out too narrow and miss mass "
           f"far from the origin. Raise the "
           f"VE path's sigma_max to several times {spread:.3g}, set its target_std to {spread:.3g} (a prior with "
           f"the t = 0 marginal's variance), or use cond_ot.")
    warnings.warn(msg, PriorScaleWarning, stacklevel=2)
    return msg
