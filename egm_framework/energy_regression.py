"""Robust regression of the intermediate-energy network (bootstrapped EGM).

The energy network R_θ(x, t) learns the residual R_t(x) = −log E_{q(·|x)}[e^{−E(x_1)}] (see
:class:`~egm_framework.estimators.BootstrapEstimator`). Its direct target
R̂ = −log (1/K) Σ_k e^{−E(x_1^k)} is a log-mean-exp of K proposals: where the proposals are spread
far wider than the target (small t) it is dominated by the one lowest-energy proposal, and its error
is heavy-tailed (measured on GMM-25, cond-OT, K = 128: sd 857 at t = 0.01, 15.5 at t = 0.05, while
R varies by about 1 over x). Regressed raw by least squares, one such row can move the network by
orders of magnitude, the EMA copy follows, and every later bootstrap weight is garbage.

:class:`RobustEnergyLoss` protects the regression in three ways, all without host synchronization:

1. **clamp** the target to [−c, c] (``estimator.energy_target_clamp``; the authors use 1000);
2. **per-time normalization** (``estimator.energy_normalize``): the target is centered by its
   running mean in the row's time bin and the residual divided by the target's running spread
   across x in that bin, so a bin whose targets are mostly noise cannot dominate the loss and the
   loss is scale-free across t. Centering is free: the bootstrap weights softmax_k(−E_r(x_r^k))
   compare energies at one r, so a function of t added to R changes nothing, while learning the
   target's t-dependent level (it moves by ~10 over t ∈ [0.01, 0.1] on GMM-25) would take an Adam-
   driven network thousands of steps (its bias moves by about lr per step);
3. **Huber loss** on the normalized residual (``estimator.energy_loss = "huber"``, threshold
   ``estimator.energy_huber_delta``): quadratic for small residuals, linear (bounded gradient)
   beyond.

The energy network also gets its own gradient clip (``estimator.energy_grad_clip``, applied by the
trainer), independent of the sampler's ``train.grad_clip``. The small-t policy (which rows get the
direct target) lives in the trainer: see ``estimator.energy_t_min``.
"""

from __future__ import annotations

import torch

#: time bins of the running target statistics (finer than the logging bins: the target's spread
#: changes by orders of magnitude within t ∈ [0, 0.1])
NORM_BINS = 50


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """0.5 r² for |r| ≤ δ, δ(|r| − δ/2) beyond: gradient bounded by δ."""
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


class RobustEnergyLoss:
    """Per-row loss of the energy network against a (possibly heavy-tailed, possibly non-finite)
    target, with running per-time-bin target statistics.

    ``t_range`` is the path's training time range; rows are binned uniformly over it.
    """

    def __init__(self, t_range: tuple[float, float], device, kind: str = "huber", huber_delta: float = 1.0,
                 target_clamp: float | None = 1000.0, normalize: bool = True, momentum: float = 0.01,
                 min_scale: float = 1e-2, bins: int = NORM_BINS, min_rows: int = 32):
        self.lo, self.hi = float(t_range[0]), float(t_range[1])
        self.kind = kind
        self.huber_delta = huber_delta
        self.target_clamp = target_clamp
        self.normalize = normalize
        self.momentum = momentum
        self.min_scale = min_scale
        self.bins = bins
        self.min_rows = min_rows
        z = lambda: torch.zeros(bins, device=device)  # noqa: E731
        #: batches and rows seen per bin; running mean and mean square of the target per bin
        self.count, self.rows, self.mean, self.sq = z(), z(), z(), z()

    def bin_of(self, t: torch.Tensor) -> torch.Tensor:
        return ((t - self.lo) / max(self.hi - self.lo, 1e-12) * self.bins).long().clamp_(0, self.bins - 1)

    def scale(self, b: torch.Tensor) -> torch.Tensor:
        """Running spread (std over x) of the target in time bins b; ≥ min_scale. A bin that has seen
        fewer than ``min_rows`` rows uses the spread pooled over all bins instead (one or two rows
        give no spread, and a zero spread would blow the normalized residual up)."""
        var = (self.sq - self.mean * self.mean).clamp(min=0.0)
        share = self.rows / self.rows.sum().clamp(min=1.0)
        g_mean = (share * self.mean).sum()
        g_var = ((share * self.sq).sum() - g_mean * g_mean).clamp(min=0.0)
        var = torch.where(self.rows >= self.min_rows, var, g_var)
        return var.sqrt().clamp(min=self.min_scale)[b]

    @torch.no_grad()
    def update(self, target: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> None:
        """Fold the batch's per-bin mean and mean square of the (clamped, finite) targets into the
        running statistics: an average over the first 1/momentum batches with data, then an EMA."""
        v = valid.float()
        y = torch.where(valid, target, torch.zeros_like(target))
        cnt = torch.zeros_like(self.count).index_add_(0, b, v)
        s = torch.zeros_like(self.count).index_add_(0, b, y)
        s2 = torch.zeros_like(self.count).index_add_(0, b, y * y)
        has = cnt > 0
        self.count += has.float()
        self.rows += cnt
        rate = torch.where(has, torch.maximum(torch.full_like(cnt, self.momentum), 1.0 / self.count.clamp(min=1.0)),
                           torch.zeros_like(cnt))
        c = cnt.clamp(min=1.0)
        self.mean += rate * (s / c - self.mean)
        self.sq += rate * (s2 / c - self.sq)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor,
                 weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss, per-row loss (detached, 0 on rows without a finite target)).

        ``kind = "mse"`` with ``normalize=False`` and ``target_clamp=None`` is the plain squared error.

        Rows whose target is NaN or −inf are left out; +inf is clamped like any large value.
        ``weight`` (optional, (N,), ≥ 0) multiplies each row's loss; the loss is the weighted mean.
        """
        valid = ~torch.isnan(target) & ~torch.isneginf(target)
        y = torch.where(valid, target, torch.zeros_like(target))
        if self.target_clamp is not None:
            y = y.clamp(-self.target_clamp, self.target_clamp)
        b = self.bin_of(t)
        if self.normalize:
            self.update(y, b, valid)
            r = (pred - (y - self.mean[b])) / self.scale(b)
        else:
            r = pred - y
        per_row = huber(r, self.huber_delta) if self.kind == "huber" else r * r
        w = valid.float() if weight is None else valid.float() * weight
        per_row = per_row * w
        loss = per_row.sum() / w.sum().clamp(min=1e-12)
        return loss, per_row.detach()

    # checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"count": self.count, "rows": self.rows, "mean": self.mean, "sq": self.sq}

    def load_state_dict(self, d: dict) -> None:
        for k in ("count", "rows", "mean", "sq"):
            getattr(self, k).copy_(d[k])
