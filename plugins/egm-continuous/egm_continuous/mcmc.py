r"""Vectorized MALA (Metropolis-adjusted Langevin) for ground-truth sampling of continuous energies.

Proposal y = x + μ(x) + √(2h) P ε (P the space's projection, identity off zero_com spaces), with the
*truncated* Langevin drift (Roberts & Tweedie 1996)

    μ(x) = −h ∇E(x) · min(1, D / ‖h ∇E(x)‖),

accepted with probability min(1, exp(−E(y) + E(x) − log q(x|y) + log q(y|x))),
log q(y|x) = −‖y − x − μ(x)‖² / (4h) + const. The truncation (D = ``max_drift``) keeps chains that
start far out in a steep (e.g. quartic) potential from being stuck forever, and since the same μ
enters both q(y|x) and q(x|y) the chain stays exactly reversible. For translation-invariant energies
∇E lies in the centre-of-mass-free subspace, so the same formula is the exact MH ratio on it.

All chains run in parallel; a global step size is adapted *during burn-in only* (Robbins–Monro on
log h towards a target acceptance rate), then frozen, so the kept samples come from an exact
(reversible) Markov chain.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch

__all__ = ["MALAResult", "mala"]


@attrs.frozen(kw_only=True, eq=False)
class MALAResult:
    #: kept samples, (n_keep, d) — chain-major order is interleaved across chains (thinned draws)
    samples: torch.Tensor
    #: acceptance rate after burn-in
    acceptance: float
    #: final step size h
    step_size: float


def _energy_and_grad(energy: Callable, x: torch.Tensor):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g.detach()


def mala(energy: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, n_samples: int, generator: torch.Generator,
         burn_in: int = 2000, thin: int = 20, step_size: float = 0.01, target_accept: float = 0.6,
         project: Callable[[torch.Tensor], torch.Tensor] | None = None, max_drift: float = 1.0) -> MALAResult:
    """Run ``x0.shape[0]`` parallel MALA chains; keep every ``thin``-th state after ``burn_in`` steps
    until ``n_samples`` states are collected. x0: (C, d) -> samples (n_samples, d)."""
    project = project or (lambda v: v)
    x = project(x0.detach().clone())
    C = x.shape[0]
    e, g = _energy_and_grad(energy, x)
    log_h = math.log(step_size)
    kept: list[torch.Tensor] = []
    n_keep_rounds = math.ceil(n_samples / C)
    total = burn_in + n_keep_rounds * thin
    acc_sum = 0.0
    acc_n = 0

    def drift(grad, h):
        step = -h * grad
        norm = step.norm(dim=-1, keepdim=True)
        return step * torch.clamp(max_drift / torch.clamp(norm, min=1e-30), max=1.0)

    for it in range(total):
        h = math.exp(log_h)
        noise = project(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
        y = x + drift(g, h) + math.sqrt(2 * h) * noise
        ey, gy = _energy_and_grad(energy, y)
        fwd = ((y - x - drift(g, h)) ** 2).sum(-1) / (4 * h)
        bwd = ((x - y - drift(gy, h)) ** 2).sum(-1) / (4 * h)
        log_alpha = -ey + e - bwd + fwd
        u = torch.rand(C, generator=generator, device=x.device, dtype=x.dtype)
        accept = (torch.log(u) < log_alpha) & torch.isfinite(ey)
        x = torch.where(accept[:, None], y, x)
        e = torch.where(accept, ey, e)
        g = torch.where(accept[:, None], gy, g)
        rate = float(accept.float().mean())
        if it < burn_in:
            # adapt on the burn-in only (decaying gain)
            log_h += (rate - target_accept) / math.sqrt(it + 1.0)
        else:
            acc_sum += rate
            acc_n += 1
            if (it - burn_in + 1) % thin == 0:
                kept.append(x.clone())
    samples = torch.cat(kept, dim=0)[:n_samples]
    return MALAResult(samples=samples, acceptance=acc_sum / max(acc_n, 1), step_size=math.exp(log_h))
