"""Robust regression of the intermediate-energy network (bootstrapped EGM).

The energy network R_θ(x, t) learns the residual R_t(x) = −log E_{q(·|x)}[e^{−E(x_1)}] (see
:class:`~egm_framework.estimators.BootstrapEstimator`). Its direct target
R̂ = −log (1/K) Σ_k e^{−E(x_1^k)} is a log-mean-exp of K proposals: where the proposals are spread
far wider than the target (small t) it is dominated by the one lowest-energy proposal, and its error
is heavy-tailed (measured on GMM-25, cond-OT, K = 128: sd 857 at t = 0.01, 15.5 at t = 0.05, while
R varies by about 1 over x). Regressed raw by least squares, one such row can move the network by
orders of magnitude, the EMA copy follows, and every later bootstrap weight is garbage.

:class:`RobustEnergyLoss` protects the regression in three ways, all without host synchronization:

1. **limit**: rows whose |target| exceeds c (``estimator.energy_target_limit``, 1000; the authors
   clamp at 1000) are left out. Clamping them instead kept them in the loss, each pulling towards
   ±c: on GMM-25 the few rows from buffer outliers (|x| huge, so R huge) then outweighed the
   signal, and the network learned nothing in 300 steps;
2. **per-time normalization** (``estimator.energy_normalize``): the target is centered by its
   running median in the row's time bin and the residual divided by the target's running robust
   spread (MAD) across x in that bin, so a bin whose targets are mostly noise cannot dominate the loss and the
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

#: time bins of the running target statistics (a batch of ~100 rows gives each bin enough rows
#: for a median)
NORM_BINS = 10
#: MAD → standard deviation for a normal distribution
_MAD_TO_SD = 1.4826


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """0.5 r² for |r| ≤ δ, δ(|r| − δ/2) beyond: gradient bounded by δ."""
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def binned_medians(y: torch.Tensor, b: torch.Tensor, valid: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-bin median of y over valid rows (lower median), rows per bin); bins without rows get 0.
    Sorting-based, no host synchronization."""
    big = torch.finfo(y.dtype).max
    key = torch.where(valid, y, torch.full_like(y, big))  # invalid rows sort last in their bin
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(b[order], stable=True)]  # grouped by bin, sorted by y within a bin
    cnt = torch.zeros(bins, device=y.device).index_add_(0, b, valid.float())
    total = torch.zeros(bins, device=y.device).index_add_(0, b, torch.ones_like(y))
    start = torch.cumsum(total, 0) - total
    pos = (start + ((cnt - 1).clamp(min=0) // 2)).long().clamp(max=y.shape[0] - 1)
    med = torch.where(cnt > 0, key[order][pos], torch.zeros_like(cnt))
    return med, cnt


class RobustEnergyLoss:
    """Per-row loss of the energy network against a (possibly heavy-tailed, possibly non-finite)
    target, with running robust per-time-bin target statistics: the center is a running average of
    the batches' per-bin medians, the spread a running geometric average of 1.4826 × the per-bin
    median absolute deviation (outlying rows move neither; a plain running std was inflated 400-fold
    by a few buffer outliers on GMM-25 and the network then learned nothing).

    ``t_range`` is the path's training time range; rows are binned uniformly over it.
    """

    def __init__(self, t_range: tuple[float, float], device, kind: str = "huber", huber_delta: float = 1.0,
                 target_limit: float | None = 1000.0, normalize: bool = True, momentum: float = 0.01,
                 min_scale: float = 1e-2, bins: int = NORM_BINS, min_rows: int = 3):
        self.lo, self.hi = float(t_range[0]), float(t_range[1])
        self.kind = kind
        self.huber_delta = huber_delta
        self.target_limit = target_limit
        self.normalize = normalize
        self.momentum = momentum
        self.min_scale = min_scale
        self.bins = bins
        self.min_rows = min_rows
        #: data-parallel hooks (None: one process). ``reduce_sum`` sums a tensor over the ranks (the
        #: loss's normalizer is the global batch's); ``gather_rows`` maps this rank's (N, 3) rows
        #: (target, bin, valid) to every rank's, padded with invalid rows, so the running medians are
        #: those of the global batch (medians cannot be merged from sums)
        self.reduce_sum = None
        self.gather_rows = None
        z = lambda: torch.zeros(bins, device=device)  # noqa: E731
        #: updates of the center / of the spread per bin; running center and log spread per bin
        self.n_center, self.n_scale, self.center, self.log_scale = z(), z(), z(), z()

    def valid_rows(self, target: torch.Tensor) -> torch.Tensor:
        """Rows that enter the loss: finite target within ±target_limit."""
        valid = torch.isfinite(target)
        return valid if self.target_limit is None else valid & (target.abs() <= self.target_limit)

    def bin_of(self, t: torch.Tensor) -> torch.Tensor:
        return ((t - self.lo) / max(self.hi - self.lo, 1e-12) * self.bins).long().clamp_(0, self.bins - 1)

    def scale(self, b: torch.Tensor) -> torch.Tensor:
        """Running robust spread of the target in time bins b; ≥ min_scale. A bin without an estimate
        yet (never ``min_rows`` rows in one batch) uses the geometric mean of the others' (1 if none)."""
        has = self.n_scale > 0
        pooled = torch.where(has, self.log_scale, torch.zeros_like(self.log_scale)).sum() / has.sum().clamp(min=1)
        log_s = torch.where(has, self.log_scale, pooled)
        return log_s.exp().clamp(min=self.min_scale)[b]

    def _rate(self, n: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        return torch.where(has, torch.maximum(torch.full_like(n, self.momentum), 1.0 / n.clamp(min=1.0)),
                           torch.zeros_like(n))

    @torch.no_grad()
    def update(self, target: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> None:
        """Fold the batch's per-bin median and MAD of the (clamped, finite) targets into the running
        statistics: an average over the first 1/momentum batches with data, then an EMA. In a
        data-parallel run the rows of every rank are gathered first (``gather_rows``), so the medians
        are those of the global batch, exactly."""
        if self.gather_rows is not None:
            rows = self.gather_rows(torch.stack([target, b.to(target.dtype), valid.to(target.dtype)], 1))
            target, b, valid = rows[:, 0], rows[:, 1].long(), rows[:, 2] > 0
        med, cnt = binned_medians(target, b, valid, self.bins)
        has = cnt > 0
        self.n_center += has.float()
        self.center += self._rate(self.n_center, has) * (med - self.center)
        dev = (target - med[b]).abs()
        mad, _ = binned_medians(dev, b, valid, self.bins)
        ok = cnt >= self.min_rows
        self.n_scale += ok.float()
        log_s = torch.log(_MAD_TO_SD * mad + self.min_scale)
        self.log_scale += self._rate(self.n_scale, ok) * torch.where(ok, log_s - self.log_scale, torch.zeros_like(log_s))

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor,
                 weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss, per-row loss (detached, 0 on rows without a finite target)).

        ``kind = "mse"`` with ``normalize=False`` and ``target_limit=None`` is the plain squared error.

        Rows whose target is not finite or beyond ±target_limit are left out (their per-row loss is 0).
        ``weight`` (optional, (N,), ≥ 0) multiplies each row's loss; the loss is the weighted mean.
        """
        valid = self.valid_rows(target)
        y = torch.where(valid, target, torch.zeros_like(target))
        b = self.bin_of(t)
        if self.normalize:
            self.update(y, b, valid)
            r = (pred - (y - self.center[b])) / self.scale(b)
        else:
            r = pred - y
        per_row = huber(r, self.huber_delta) if self.kind == "huber" else r * r
        w = valid.float() if weight is None else valid.float() * weight
        per_row = per_row * w
        total_w = w.sum() if self.reduce_sum is None else self.reduce_sum(w.sum())
        loss = per_row.sum() / total_w.clamp(min=1e-12)
        return loss, per_row.detach()

    # checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"n_center": self.n_center, "n_scale": self.n_scale, "center": self.center, "log_scale": self.log_scale}

    def load_state_dict(self, d: dict) -> None:
        for k in ("n_center", "n_scale", "center", "log_scale"):
            getattr(self, k).copy_(d[k])
