"""Model likelihoods of generated samples: the record, the refusal error and the step-map Jacobian.

A generator parametrization that can return the log-probability of its own samples declares
``supports_log_prob = True`` and implements
:meth:`~egm_framework.interfaces.GeneratorParametrization.sample_with_log_prob`, which returns a
:class:`LogProbSample`. Two kinds exist:

* **Exact in an extended space** (masked jump process). The unmasking schedule σ is drawn
  independently of the network, so log q(x | σ) = Σ_i log D_θ(x before site i unmasks, t_i)^i[x^i]
  is exact; the importance weight exp(−E(x)) / q(x | σ) is unbiased for the extended target
  p(x)·π(σ) whose x-marginal is p.
* **Change of variables** (deterministic flow steps). Each step x ↦ Φ_k(x) is a map, so
  log q(x_K) = log p_0(x_0) − Σ_k log |det ∂Φ_k/∂x|. With the full Jacobian (small dimension) this is
  the exact density of the *simulated* map, whatever the step size; above a dimension threshold the
  log-determinant is replaced by Hutchinson's estimate of tr(∂Φ_k/∂x − I) (first order in the step,
  i.e. the divergence integral −∫ div u dt), whose Monte-Carlo variance is reported per sample.

The helpers below compute the per-step term for any deterministic step of a continuous state; the
core holds them so every continuous generator (and product generators) shares one implementation.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import torch

from .errors import EGMError

__all__ = ["LogProbSample", "LikelihoodUnavailableError", "step_log_det", "invert_step", "gaussian_log_prob",
           "log_det_options"]


@attrs.frozen(kw_only=True, eq=False)
class LogProbSample:
    """Samples with the model's log-probability of each.

    x: the samples (B, *event) or a MixedState; log_q: (B,) float64, log q(x | σ) in the generator's
    extended space; exact: whether log_q is exact (False: a Hutchinson estimate);
    log_q_std: (B,) float64 standard deviation of log_q's Monte-Carlo error (zeros when exact);
    info: how it was computed (method, solver, probes, ...)."""

    x: Any
    log_q: torch.Tensor
    exact: bool = True
    log_q_std: torch.Tensor | None = None
    info: dict = attrs.field(factory=dict)


class LikelihoodUnavailableError(EGMError):
    """The run's generator cannot return the probability of its own samples."""


def gaussian_log_prob(x: torch.Tensor, std: float, free_dim: int | None = None) -> torch.Tensor:
    """log N(x; 0, std² I) per row, (B,) float64, with ``free_dim`` degrees of freedom (default: all)."""
    xf = x.detach().flatten(1).double()
    d = xf.shape[1] if free_dim is None else int(free_dim)
    return -0.5 * (xf * xf).sum(1) / (std * std) - 0.5 * d * torch.log(torch.tensor(2 * torch.pi * std * std,
                                                                                       dtype=torch.float64))


def log_det_options(x: torch.Tensor, options: dict, exact_max_dim: int) -> tuple[bool, int, torch.Generator]:
    """The log-determinant settings of a ``sample_with_log_prob`` call: (exact, probes, probe generator).
    exact when x has at most ``options["exact_max_dim"]`` (default ``exact_max_dim``) coordinates;
    ``probes`` (default 2) Hutchinson vectors per step from a generator seeded with ``probe_seed`` (default
    0), separate from the sampling generator so that the samples do not depend on the likelihood mode."""
    exact = int(x[0].numel()) <= int(options.get("exact_max_dim", exact_max_dim))
    pg = torch.Generator(device=x.device)
    pg.manual_seed(int(options.get("probe_seed", 0)))
    return exact, int(options.get("probes", 2)), pg


def _jacobian(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∂y/∂x per row, (B, d, d) (row j = ∂y_j/∂x), by d reverse passes over the retained graph."""
    B, d = x.shape[0], x[0].numel()
    yf = y.reshape(B, d)
    rows = []
    for j in range(d):
        (g,) = torch.autograd.grad(yf[:, j].sum(), x, retain_graph=True)
        rows.append(g.reshape(B, d))
    return torch.stack(rows, dim=1)


def step_log_det(
    step: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, exact: bool, probes: int = 2,
    probe_generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply one deterministic step y = Φ(x) and return (y detached, log|det ∂Φ/∂x| (B,) float64,
    variance of that value (B,) float64).

    exact=True: the full Jacobian (d reverse passes) and its log-determinant, variance 0.
    exact=False: Hutchinson with ``probes`` Rademacher vectors ε:
    tr(∂Φ/∂x − I) ≈ mean_m ε_mᵀ(∂Φ/∂x)ε_m − d
    (first-order log-determinant of a step close to the identity), variance = sample variance / probes.
    ``step`` must be differentiable in x; x: (B, *event)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        y = step(xg)
        B, d = xg.shape[0], xg[0].numel()
        if exact:
            J = _jacobian(y, xg).double()
            logdet = torch.linalg.slogdet(J)[1]
            var = torch.zeros_like(logdet)
        else:
            m = max(int(probes), 1)
            ests = []
            for k in range(m):
                eps = torch.randint(0, 2, xg.shape, generator=probe_generator, device=xg.device).to(y.dtype) * 2 - 1
                (g,) = torch.autograd.grad(y, xg, grad_outputs=eps, retain_graph=k < m - 1)
                ests.append((g * eps).reshape(B, d).sum(1).double() - d)
            est = torch.stack(ests, 0)
            logdet = est.mean(0)
            var = est.var(0, unbiased=True) / m if m > 1 else torch.zeros_like(logdet)
    return y.detach(), logdet.detach(), var.detach()


def invert_step(step: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, iterations: int = 50,
                tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve Φ(z) = y row-wise by Newton's method with the full Jacobian (small dimension), starting at z = y.
    Returns (z, log|det ∂Φ/∂z| at z (B,) float64). Rows that have not converged to
    ‖Φ(z) − y‖ ≤ tol·(1 + ‖y‖) after ``iterations`` raise ValueError (the step is not invertible there, e.g. too large a step)."""
    z = y.detach().clone()
    B, d = y.shape[0], y[0].numel()
    yf = y.detach().reshape(B, d).double()
    for _ in range(iterations):
        with torch.enable_grad():
            zg = z.detach().requires_grad_(True)
            out = step(zg)
            J = _jacobian(out, zg).double()
        res = out.detach().reshape(B, d).double() - yf
        if bool((res.norm(dim=1) <= tol * (1 + yf.norm(dim=1))).all()):
            return z, torch.linalg.slogdet(J)[1]
        dz = torch.linalg.solve(J, res.unsqueeze(-1)).squeeze(-1)
        z = (z.reshape(B, d).double() - dz).to(y.dtype).reshape(y.shape)
    raise ValueError(f"inverting a solver step did not converge in {iterations} Newton iterations "
                     f"(largest residual {float(res.norm(dim=1).max()):.3g}); use more steps")
