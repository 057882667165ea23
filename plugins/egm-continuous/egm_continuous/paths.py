r"""Gaussian conditional paths on R^d: ``affine`` (any registered schedule (α_t, σ_t)), and its fixed
instances linear (cond-OT) and variance exploding (VE).

Both are *Gaussian bridges*: for 0 ≤ t ≤ r ≤ 1

    p_{t|r}(x | x_r) = N(x; a(t, r) · x_r, v(t, r) · I),          p_{t|1} is the case r = 1,

with scalar coefficients a, v (per row, shape (B,)). Everything the estimators and generators need
follows from a, v and their t-derivatives ȧ = ∂a/∂t, v̇ = ∂v/∂t:

- proposal (the bridge read as a density of x_r):   q(x_r | x_t) = N(x_t / a, (v / a²) I),
  log normalizer log Z_{r|t}(x_t) = log ∫ p_{t|r}(x_t | x_r) dx_r = −d_free · log a;
- conditional velocity of the bridge s ↦ p_{s|r}(· | x_r) at s = t (x_s = a x_r + √v ε):
  u_t(x | x_r) = ȧ x_r + (v̇ / 2v)(x − a x_r)  =  α_u x_r + β_u x,
  α_u = ȧ − a v̇/(2v),  β_u = v̇/(2v);
- conditional score ∇_x log p_{t|r}(x | x_r) = −(x − a x_r)/v = α_s x_r + β_s x,  α_s = a/v, β_s = −1/v.

The affine forms (:meth:`GaussianBridgePath.velocity_affine`, :meth:`GaussianBridgePath.score_affine`)
let a generator compute Σ_k w_k T(x_t | x_r^k) = α Σ_k w_k x_r^k + β (Σ_k w_k) x_t with one einsum,
without a per-proposal target tensor.

On a ``zero_com`` particle space every Gaussian noise is projected onto the centre-of-mass-free
subspace, and ``d_free = (n − 1)·D``; otherwise d_free = d.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from egm_framework.interfaces import AffineSchedule, ConditionalPath
from egm_framework.interfaces.schedule import affine_bridge
from egm_framework.schedules import CondOTSchedule, VESchedule, resolve_schedule
from egm_framework.validation import number

from .space import EuclideanSpace

__all__ = ["GaussianBridgePath", "AffinePath", "CondOTPath", "VEPath"]


def _bc(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, …) broadcastable against x: (B, …)."""
    return v.view(v.shape[0], *([1] * (x.dim() - 1)))


def _as_float(value: Any, what: str) -> float:
    return number(value, what)


class GaussianBridgePath(ConditionalPath):
    """Base class: a path given by the bridge coefficients a(t, r), v(t, r) (see module docstring).

    Subclasses implement :meth:`coefficients` and :meth:`prior_sample`.
    Shapes: x_t, x_1: (B, d); t, r: (B,); proposals (B, n, d).
    """

    def __init__(self, space: EuclideanSpace):
        if not isinstance(space, EuclideanSpace):
            raise ValueError(f"path {type(self).__name__} needs a euclidean state space, got {type(space).__name__}")
        super().__init__(space)

    # ------------------------------------------------------------------ coefficients
    def coefficients(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, ȧ, v, v̇) of the bridge p_{t|r}, each (B,); derivatives are with respect to t."""
        raise NotImplementedError

    def _noise(self, shape, generator: torch.Generator, device, dtype=torch.float32) -> torch.Tensor:
        eps = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return self.space.project(eps)

    # ------------------------------------------------------------------ ConditionalPath
    def sample_xt(self, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x_t = a(t,1) x_1 + √v(t,1) ε. x_1: (B, d), t: (B,) -> (B, d)."""
        a, _, v, _ = self.coefficients(t, torch.ones_like(t))
        eps = self._noise(x1.shape, generator, x1.device, x1.dtype)
        return _bc(a, x1).to(x1.dtype) * x1 + _bc(v.clamp_min(0).sqrt(), x1).to(x1.dtype) * eps

    def sample_bridge(self, x_r: torch.Tensor, t: torch.Tensor, r: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x_t ~ p_{t|r}(· | x_r) = N(a x_r, v I). x_r: (B, d) -> (B, d)."""
        a, _, v, _ = self.coefficients(t, r)
        eps = self._noise(x_r.shape, generator, x_r.device, x_r.dtype)
        return _bc(a, x_r) * x_r + _bc(v.clamp_min(0).sqrt(), x_r) * eps

    def propose(self, x_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """x_r^k ~ N(x_t / a, (v / a²) I), k = 1..n. x_t: (B, d) -> (B, n, d)."""
        a, _, v, _ = self.coefficients(t, r)
        B, d = x_t.shape
        eps = self._noise((B, n, d), generator, x_t.device, x_t.dtype)
        inv_a = (1.0 / a).to(x_t.dtype)
        std = (v.clamp_min(0).sqrt() / a).to(x_t.dtype)
        return (inv_a[:, None] * x_t)[:, None, :] + std[:, None, None] * eps

    def log_normalizer(self, x_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """log Z_{r|t}(x_t) = −d_free · log a(t, r), (B,) (independent of x_t)."""
        a, _, _, _ = self.coefficients(t, r)
        return -self.space.free_dim * torch.log(a)

    def bridge_log_prob(self, x_t: torch.Tensor, t: torch.Tensor, x_r: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """log p_{t|r}(x_t | x_r) (density on the d_free-dimensional subspace). x_t, x_r: (B, d) -> (B,)."""
        a, _, v, _ = self.coefficients(t, r)
        diff = x_t - _bc(a, x_t) * x_r
        k = self.space.free_dim
        return -0.5 * (diff * diff).sum(-1) / v - 0.5 * k * torch.log(2 * math.pi * v)

    # ------------------------------------------------------------------ conditional generators
    def velocity_affine(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, β), each (B,), with u_t(x | x_r) = α x_r + β x the velocity of the bridge p_{·|r}(· | x_r)."""
        a, ad, v, vd = self.coefficients(t, r)
        beta = vd / (2 * v)
        return ad - a * beta, beta

    def score_affine(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, β), each (B,), with ∇_x log p_{t|r}(x | x_r) = α x_r + β x."""
        a, _, v, _ = self.coefficients(t, r)
        return a / v, -1.0 / v

    def conditional_velocity(self, x_t: torch.Tensor, t: torch.Tensor, x_r: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """u_t(x_t | x_r). x_t: (B, d), x_r: (B, d) or (B, n, d) -> shape of x_r."""
        alpha, beta = self.velocity_affine(t, r)
        return self._affine(alpha, beta, x_t, x_r)

    def conditional_score(self, x_t: torch.Tensor, t: torch.Tensor, x_r: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """∇_x log p_{t|r}(x_t | x_r). x_t: (B, d), x_r: (B, d) or (B, n, d) -> shape of x_r."""
        alpha, beta = self.score_affine(t, r)
        return self._affine(alpha, beta, x_t, x_r)

    @staticmethod
    def _affine(alpha, beta, x_t, x_r):
        if x_r.dim() == x_t.dim() + 1:
            return _bc(alpha, x_r) * x_r + _bc(beta, x_r) * x_t[:, None]
        return _bc(alpha, x_r) * x_r + _bc(beta, x_r) * x_t

    def natural_g2(self, t: torch.Tensor) -> torch.Tensor:
        """The path's own squared diffusion coefficient g_t², (B,) (used by ``diffusion`` with g='ve')."""
        raise ValueError(f"path {self.name or type(self).__name__!r} defines no natural diffusion coefficient; "
                         "give the diffusion generator a constant g (a number)")


class AffinePath(GaussianBridgePath):
    r"""Affine Gaussian path x_t = α_t x_1 + σ_t x_0, x_0 ~ N(0, I), with a registered schedule (α_t, σ_t).

    ``schedule``: a registry name of kind ``schedule`` or a table (``{name = "vp"}``; see
    ``egm components schedule``) giving an :class:`~egm_framework.interfaces.AffineSchedule`. The
    bridge is p_{t|r}(x | x_r) = N((α_t/α_r) x_r, (σ_t² − (α_t/α_r)² σ_r²) I) (the schedule's
    ``bridge``). Prior N(0, σ_0² I): exact when α_0 = 0, the usual approximation otherwise (VE).
    The proposal divides by a = α_t/α_r, so training times start at ``t_min`` > 0 when α_0 = 0.
    """

    name = "affine"

    def __init__(self, space: EuclideanSpace, schedule: Any = "cond_ot", t_min: float = 0.01, t_max: float = 0.999,
                 registry=None):
        super().__init__(space)
        self.schedule = resolve_schedule(schedule, AffineSchedule, registry=registry, owner=f"path {self.name!r}")
        t_min = _as_float(t_min, "t_min")
        t_max = _as_float(t_max, "t_max")
        if not 0.0 <= t_min < t_max < 1.0:
            raise ValueError(f"{self.name} needs 0 <= t_min < t_max < 1, got t_min={t_min}, t_max={t_max}")
        if t_min == 0.0 and float(self.schedule.alpha(torch.zeros(1))[0]) <= 0.0:
            raise ValueError(f"{self.name}: the schedule has α_0 = 0, so proposals need t_min > 0, got t_min=0")
        self.t_min, self.t_max = t_min, t_max
        self.train_time_range = (t_min, t_max)
        self.sample_time_range = (0.0, 1.0)

    def coefficients(self, t, r):
        bridge = getattr(self.schedule, "bridge", None)
        return bridge(t, r) if bridge is not None else affine_bridge(self.schedule, t, r)

    def prior_sample(self, n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
        """x_0 ~ N(0, σ_0² I) (projected on zero_com spaces). -> (n, d)."""
        s0 = float(self.schedule.sigma(torch.zeros(1))[0])
        noise = self._noise((n, self.space.dim), generator, device)
        return noise if s0 == 1.0 else s0 * noise

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, σ_0² I) of the prior draws on the space's free coordinates, (B,) float64."""
        from egm_framework.likelihood import gaussian_log_prob

        return gaussian_log_prob(x, float(self.schedule.sigma(torch.zeros(1))[0]), self.space.free_dim)

    def describe(self) -> dict:
        return {"name": self.name, "schedule": self.schedule.describe(), "t_min": self.t_min, "t_max": self.t_max}


class CondOTPath(AffinePath):
    r"""Linear (conditional optimal-transport) path: x_t = t x_1 + (1 − t) x_0, x_0 ~ N(0, σ_0² I)
    (the ``affine`` path with the ``cond_ot`` schedule); ``sigma0`` = σ_0, default 1. The formulas
    below are for σ_0 = 1; a σ_0 ≠ 1 multiplies every variance by σ_0².

    A σ_0 near the target's spread (e.g. 7 for GMM-25, whose coordinates have std 7.1) makes the
    marginal flow gentler than from N(0, I): the network then learns a map close to the identity
    instead of one that stretches a unit ball over the whole target.

    p_{t|1}(x | x_1) = N(t x_1, (1 − t)² I). Bridge for t ≤ r ≤ 1:

        p_{t|r}(x | x_r) = N((t/r) x_r, s² I),
        s² = (1 − t)² − (t/r)²(1 − r)² = ((r − t)/r) · ((1 − t) + t(1 − r)/r)   (stable form),

    which composes: with x_r = r x_1 + (1 − r) z, (t/r) x_r + s ε has mean t x_1 and variance
    (t/r)²(1 − r)² + s² = (1 − t)². Proposal q(x_r | x_t) = N((r/t) x_t, (r/t)² s² I),
    log Z_{r|t} = d log(r/t). Bridge velocity u = x_r / r + (v̇/2v)(x − (t/r) x_r) with
    v̇ = −2(1 − t) − 2t((1 − r)/r)²; at r = 1 this is (x_1 − x)/(1 − t).

    The proposal needs t > 0: training times are drawn from [t_min, t_max] (``train_time_range``);
    the sampler integrates over [0, 1] (the network is then evaluated a little below t_min).
    """

    name = "cond_ot"

    def __init__(self, space: EuclideanSpace, t_min: float = 0.01, t_max: float = 0.999, sigma0: float = 1.0):
        t_min = _as_float(t_min, "t_min")
        t_max = _as_float(t_max, "t_max")
        if not 0.0 < t_min < t_max < 1.0:
            raise ValueError(f"cond_ot needs 0 < t_min < t_max < 1, got t_min={t_min}, t_max={t_max}")
        super().__init__(space, CondOTSchedule(_as_float(sigma0, "sigma0")), t_min, t_max)
        self.sigma0 = self.schedule.sigma0

    def describe(self) -> dict:
        return {"name": self.name, "t_min": self.t_min, "t_max": self.t_max, "sigma0": self.sigma0}


class VEPath(AffinePath):
    r"""Variance-exploding path: p_{t|1}(x | x_1) = N(x_1, σ_t² I) (the ``affine`` path with the ``ve`` schedule),

        σ_t² = σ_min² ((σ_max/σ_min)^{2(1 − t)} − 1),   σ_1 = 0,  σ_0² = σ_max² − σ_min².

    Bridge p_{t|r}(x | x_r) = N(x_r, (σ_t² − σ_r²) I) (variances add, so it composes);
    proposal N(x_t, (σ_t² − σ_r²) I), log Z = 0; velocity (dσ_t²/dt) / (2(σ_t² − σ_r²)) · (x − x_r);
    score −(x − x_r)/(σ_t² − σ_r²). dσ_t²/dt = −2 log(σ_max/σ_min) (σ_t² + σ_min²) < 0.

    Prior: N(0, (σ_0² + s²) I) with s = ``target_std`` (default 0). The exact t = 0 marginal is the
    target convolved with N(0, σ_0² I); the centred Gaussian N(0, σ_0² I) (s = 0) is the usual VE
    approximation, good only when σ_max is large against the target's spread: the flow carries the
    prior's error to the samples unchanged in KL (for a Gaussian target a prior too narrow by a factor
    f gives samples too narrow by the same factor; DW-4's 17 % too narrow prior gave 7 % too narrow samples). ``target_std`` = the target's per-coordinate standard deviation matches the
    prior's first two moments to a zero-mean target's exactly (for a Gaussian target the prior is
    then exact); alternatively raise σ_max (Song and Ermon: about the largest distance between two
    target states). The generator diverges like (1 − t)^{−1/2} at t → 1, so training times stop at t_max.
    """

    name = "ve"

    def __init__(self, space: EuclideanSpace, sigma_min: float = 0.01, sigma_max: float = 2.0,
                 t_min: float = 0.0, t_max: float = 0.999, target_std: float = 0.0):
        t_min = _as_float(t_min, "t_min")
        t_max = _as_float(t_max, "t_max")
        if not 0.0 <= t_min < t_max < 1.0:
            raise ValueError(f"ve needs 0 <= t_min < t_max < 1, got t_min={t_min}, t_max={t_max}")
        target_std = _as_float(target_std, "target_std")
        if not (math.isfinite(target_std) and target_std >= 0.0):
            raise ValueError(f"ve needs target_std >= 0 (the target's per-coordinate standard deviation; 0 for the "
                             f"plain N(0, sigma_max^2) prior), got target_std={target_std}")
        super().__init__(space, VESchedule(sigma_min, sigma_max), t_min, t_max)
        self.sigma_min, self.sigma_max = self.schedule.sigma_min, self.schedule.sigma_max
        self.log_rho = self.schedule.log_rho
        self.target_std = target_std

    def sigma2(self, t: torch.Tensor) -> torch.Tensor:
        """σ_t², (B,)."""
        return self.schedule.sigma2(t)

    def dsigma2_dt(self, t: torch.Tensor) -> torch.Tensor:
        """dσ_t²/dt = −2 log(σ_max/σ_min) σ_min² (σ_max/σ_min)^{2(1 − t)}, (B,)."""
        return self.schedule.dsigma2_dt(t)

    def natural_g2(self, t: torch.Tensor) -> torch.Tensor:
        """g_t² = −dσ_t²/dt: with it the diffusion drift is the reverse-time VE SDE drift (= 2u)."""
        return -self.dsigma2_dt(t)

    def prior_std(self) -> float:
        """Standard deviation of the (approximate) prior, √(σ_0² + target_std²) with σ_0² = σ_max² − σ_min²;
        the core warns when it is below the target's spread (``egm_framework.prior_check``)."""
        return math.sqrt(self.sigma_max ** 2 - self.sigma_min ** 2 + self.target_std ** 2)

    def prior_noise_std(self) -> float:
        """σ_0 = √(σ_max² − σ_min²), the noise the path adds at t = 0: the exact t = 0 marginal is the
        target convolved with N(0, σ_0² I) (``egm_framework.prior_check`` compares the prior with it)."""
        return math.sqrt(self.sigma_max ** 2 - self.sigma_min ** 2)

    def prior_sample(self, n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
        """x_0 ~ N(0, prior_std()² I) (projected on zero_com spaces). -> (n, d)."""
        return self.prior_std() * self._noise((n, self.space.dim), generator, device)

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, prior_std()² I) on the space's free coordinates, (B,) float64."""
        from egm_framework.likelihood import gaussian_log_prob

        return gaussian_log_prob(x, self.prior_std(), self.space.free_dim)

    def describe(self) -> dict:
        d = {"name": self.name, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
             "t_min": self.t_min, "t_max": self.t_max}
        if self.target_std:  # only when set, so that runs made before the option describe as they did
            d["target_std"] = self.target_std
        return d
