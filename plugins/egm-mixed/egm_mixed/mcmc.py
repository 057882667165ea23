"""Vectorized MCMC kernels for ground truth: MALA (with the exact Metropolis–Hastings correction).

All chains are updated in parallel; randomness comes only from the explicit ``torch.Generator``.
"""

from __future__ import annotations

from typing import Callable

import torch

#: x (C, *shape) -> (U (C,), ∇U (C, *shape))
EnergyGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def mala_step(x: torch.Tensor, u: torch.Tensor, grad: torch.Tensor, energy_grad: EnergyGrad, step: torch.Tensor | float,
              generator: torch.Generator, project: Callable[[torch.Tensor], torch.Tensor] | None = None):
    r"""One Metropolis-adjusted Langevin step on each of C chains for p(x) ∝ exp(−U(x)).

    Proposal  x' = x − ε ∇U(x) + √(2ε) ξ,  ξ ~ N(0, I)  (projected by ``project`` if given, e.g. onto the
    zero-centre-of-mass subspace; the gradient of a translation-invariant U already lies there), i.e.
    q(x' | x) = N(x'; x − ε∇U(x), 2ε I). Accept with probability

        α = min(1, exp(−U(x') + U(x) + log q(x | x') − log q(x' | x))),
        log q(a | b) = −‖a − b + ε ∇U(b)‖² / (4ε) + const.

    Args: x (C, *shape); u = U(x) (C,); grad = ∇U(x) (C, *shape); step ε > 0 (scalar or (C,)).
    Returns (x_new, u_new, grad_new, accepted (C,) bool).
    """
    C = x.shape[0]
    eps = torch.as_tensor(step, dtype=x.dtype, device=x.device)
    eps_b = eps.view(-1, *([1] * (x.dim() - 1))) if eps.dim() else eps
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if project is not None:
        noise = project(noise)
    y = x - eps_b * grad + torch.sqrt(2 * eps_b) * noise
    u_y, g_y = energy_grad(y)
    fwd = ((y - x + eps_b * grad) ** 2).reshape(C, -1).sum(-1)
    bwd = ((x - y + eps_b * g_y) ** 2).reshape(C, -1).sum(-1)
    log_alpha = -u_y + u + (fwd - bwd) / (4 * eps)
    log_alpha = torch.where(torch.isfinite(log_alpha), log_alpha, torch.full_like(log_alpha, -float("inf")))
    uni = torch.rand(C, generator=generator, dtype=x.dtype, device=x.device)
    acc = torch.log(uni) < log_alpha
    accb = acc.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(accb, y, x), torch.where(acc, u_y, u), torch.where(accb, g_y, grad), acc
