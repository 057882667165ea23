"""Keeping finite outliers out of the replay buffer.

A sampler that is still poor can throw a few samples far into the tails (energies 10⁷ above the rest
on DW-4): they are finite, so the non-finite filter keeps them, and every later batch that draws them
trains on proposals from a region the target never visits. :func:`energy_outlier_mask` keeps a new
sample when its energy is at most

    q_90 + spreads · max(q_90 − q_10, 1)

of a reference set of energies: the buffer's together with the new samples' own. Robust quantiles,
so a few outliers cannot move the threshold much; and because the new samples are part of the
reference, a refill whose bulk has moved away from a stale buffer (a sampler that is still learning)
is kept, so the buffer follows the model: with the buffer alone as reference a bootstrapped GMM-25
run dropped 998 of 1,000 refill samples at every refill and trained on its first samples only.
"""

from __future__ import annotations

import torch

#: how many (q_90 − q_10) spreads above q_90 a refill sample's energy may lie
OUTLIER_SPREADS = 10.0


def energy_threshold(reference: torch.Tensor, spreads: float = OUTLIER_SPREADS) -> torch.Tensor:
    """q_90 + spreads · max(q_90 − q_10, 1) of the finite reference energies (0-dim tensor; +inf if none)."""
    ref = reference[torch.isfinite(reference)].float()
    if ref.numel() == 0:
        return torch.tensor(float("inf"), device=reference.device)
    q10, q90 = torch.quantile(ref, torch.tensor([0.1, 0.9], device=ref.device))
    return q90 + spreads * torch.clamp(q90 - q10, min=1.0)


def energy_outlier_mask(energies: torch.Tensor, reference: torch.Tensor | None = None,
                        spreads: float = OUTLIER_SPREADS) -> torch.Tensor:
    """Rows to keep, (B,) bool: finite energy not far above the quantiles of the new energies together
    with ``reference`` (the buffer's; None = the new ones alone)."""
    ref = energies if reference is None else torch.cat([reference.to(energies.dtype), energies])
    return torch.isfinite(energies) & (energies <= energy_threshold(ref, spreads))
