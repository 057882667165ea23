r"""Vectorized Metropolis-adjusted Langevin (MALA) for ground-truth sampling, shared by the plugins.

One step on each of C parallel chains for p(x) ∝ exp(−U(x)):

    y = x + μ(x) + √(2ε) P ξ,   ξ ~ N(0, I),   μ(x) = −ε ∇U(x) · min(1, D / ‖ε ∇U(x)‖)

(P an optional projection, e.g. onto the centre-of-mass-free subspace; D = ``max_drift`` truncates
the drift (Roberts & Tweedie 1996) so chains started far out in a steep potential still move; with
D = None the drift is the plain −ε∇U). Accepted with probability

    min(1, exp(−U(y) + U(x) + log q(x | y) − log q(y | x))),   log q(a | b) = −‖a − b − μ(b)‖² / (4ε),

so the chain is exactly reversible with respect to p (the same μ enters both directions). All
randomness comes from the explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch

__all__ = ["EnergyGrad", "energy_and_grad", "mala_step", "mala", "MALAResult"]

#: x (C, *shape) -> (U (C,), ∇U (C, *shape))
EnergyGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def energy_and_grad(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """(U(x), ∇U(x)) by autograd, detached."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g.detach()


def _drift(grad: torch.Tensor, eps_b: torch.Tensor, max_drift: float | None) -> torch.Tensor:
    step = -eps_b * grad
    if max_drift is None:
        return step
    norm = step.reshape(step.shape[0], -1).norm(dim=-1).view(-1, *([1] * (step.dim() - 1)))
    return step * torch.clamp(max_drift / torch.clamp(norm, min=1e-30), max=1.0)


def mala_step(x: torch.Tensor, u: torch.Tensor, grad: torch.Tensor, energy_grad: EnergyGrad, step: torch.Tensor | float,
              generator: torch.Generator, project: Callable[[torch.Tensor], torch.Tensor] | None = None,
              max_drift: float | None = None):
    """One MALA step (see the module docstring). x (C, *shape); u = U(x) (C,); grad = ∇U(x);
    step ε > 0 (scalar or (C,)). Returns (x_new, u_new, grad_new, accepted (C,) bool)."""
    C = x.shape[0]
    eps = torch.as_tensor(step, dtype=x.dtype, device=x.device)
    eps_b = eps.view(-1, *([1] * (x.dim() - 1))) if eps.dim() else eps
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if project is not None:
        noise = project(noise)
    mu_x = _drift(grad, eps_b, max_drift)
    y = x + mu_x + torch.sqrt(2 * eps_b) * noise
    u_y, g_y = energy_grad(y)
    fwd = ((y - x - mu_x) ** 2).reshape(C, -1).sum(-1)
    bwd = ((x - y - _drift(g_y, eps_b, max_drift)) ** 2).reshape(C, -1).sum(-1)
    log_alpha = -u_y + u + (fwd - bwd) / (4 * eps)
    log_alpha = torch.where(torch.isfinite(log_alpha), log_alpha, torch.full_like(log_alpha, -math.inf))
    acc = torch.log(torch.rand(C, generator=generator, dtype=x.dtype, device=x.device)) < log_alpha
    accb = acc.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(accb, y, x), torch.where(acc, u_y, u), torch.where(accb, g_y, grad), acc


@attrs.frozen(kw_only=True, eq=False)
class MALAResult:
    #: kept samples (n_samples, *shape): thinned states of all chains, round by round
    samples: torch.Tensor
    #: acceptance rate after burn-in
    acceptance: float
    #: final step size ε
    step_size: float


def mala(energy: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, n_samples: int, generator: torch.Generator,
         burn_in: int = 2000, thin: int = 20, step_size: float = 0.01, target_accept: float = 0.6,
         project: Callable[[torch.Tensor], torch.Tensor] | None = None, max_drift: float | None = 1.0) -> MALAResult:
    """Run ``x0.shape[0]`` parallel chains; adapt one global step size during burn-in only
    (Robbins–Monro on log ε towards ``target_accept``), then freeze it and keep every ``thin``-th
    state until ``n_samples`` states are collected. x0: (C, *shape) -> samples (n_samples, *shape)."""
    project = project or (lambda v: v)
    x = project(x0.detach().clone())
    C = x.shape[0]
    u, g = energy_and_grad(energy, x)
    log_h = math.log(step_size)
    kept: list[torch.Tensor] = []
    total = burn_in + math.ceil(n_samples / C) * thin
    acc_sum, acc_n = 0.0, 0
    for it in range(total):
        x, u, g, acc = mala_step(x, u, g, lambda y: energy_and_grad(energy, y), math.exp(log_h), generator,
                                 project=project, max_drift=max_drift)
        rate = float(acc.float().mean())  # ground truth, not a hot path: one sync per sweep is fine
        if it < burn_in:
            log_h += (rate - target_accept) / math.sqrt(it + 1.0)
        else:
            acc_sum += rate
            acc_n += 1
            if (it - burn_in + 1) % thin == 0:
                kept.append(x.clone())
    return MALAResult(samples=torch.cat(kept, dim=0)[:n_samples], acceptance=acc_sum / max(acc_n, 1),
                      step_size=math.exp(log_h))
