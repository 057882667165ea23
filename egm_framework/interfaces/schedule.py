r"""Time schedules of conditional paths, a registered component kind (``schedule``).

Two families, one per kind of path:

- :class:`MixtureSchedule` κ_t for the factorized mixture paths of discrete spaces
  (p_{t|1}(x^i | x_1^i) = κ_t 1[x^i = x_1^i] + (1 − κ_t) p_0(x^i)): increasing, κ_0 = 0, κ_1 = 1.
- :class:`AffineSchedule` (α_t, σ_t) for affine Gaussian paths of continuous spaces,
  x_t = α_t x_1 + σ_t x_0 with x_0 ~ N(0, I): signal-to-noise ratio α_t/σ_t increasing in t,
  σ_1 = 0, α_1 = 1.

All methods take and return tensors of the same shape (usually (B,)); time runs from the prior
(t = 0) to the target (t = 1).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class MixtureSchedule(ABC):
    """κ_t: the probability that a site already holds its final value at time t.

    Needs the derivative κ̇_t (the jump rate of a site is κ̇_t/(1 − κ_t)) and the inverse t = κ^{-1}(k)
    (exact simulation draws each site's unmasking time as κ^{-1}(U), U uniform)."""

    name: str = ""

    @abstractmethod
    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        """κ_t ∈ [0, 1], increasing, κ_0 = 0, κ_1 = 1."""

    @abstractmethod
    def kappa_dot(self, t: torch.Tensor) -> torch.Tensor:
        """dκ_t/dt ≥ 0."""

    @abstractmethod
    def kappa_inverse(self, k: torch.Tensor) -> torch.Tensor:
        """t with κ_t = k, for k ∈ [0, 1]."""

    def describe(self) -> dict:
        return {"name": self.name}


class AffineSchedule(ABC):
    r"""(α_t, σ_t) of the affine Gaussian path x_t = α_t x_1 + σ_t x_0, x_0 ~ N(0, I).

    The bridge from r down to t ≤ r is Gaussian: p_{t|r}(x | x_r) = N(a x_r, v I) with
    a = α_t/α_r and v = σ_t² − a² σ_r² (≥ 0 because α/σ increases); p_{t|1} is the case r = 1
    (a = α_t, v = σ_t²). :meth:`bridge` returns (a, ∂a/∂t, v, ∂v/∂t); override it where the generic
    formula loses precision (e.g. v for r → t)."""

    name: str = ""

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """α_t (signal scale), α_1 = 1."""

    @abstractmethod
    def alpha_dot(self, t: torch.Tensor) -> torch.Tensor:
        """dα_t/dt."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ_t ≥ 0 (noise scale), σ_1 = 0."""

    @abstractmethod
    def sigma_dot(self, t: torch.Tensor) -> torch.Tensor:
        """dσ_t/dt."""

    def snr_inverse(self, snr: torch.Tensor) -> torch.Tensor:
        """t with α_t/σ_t = snr (the inverse of the monotone signal-to-noise ratio). The default bisects
        on [0, 1] (40 halvings); schedules with a closed form override it."""
        lo = torch.zeros_like(snr, dtype=torch.float32)
        hi = torch.ones_like(lo)
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            below = self.alpha(mid) < snr * self.sigma(mid)
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def bridge(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, ȧ, v, v̇) of p_{t|r}(x | x_r) = N(a x_r, v I), each shaped like t; derivatives in t."""
        return affine_bridge(self, t, r)

    def describe(self) -> dict:
        return {"name": self.name}


def affine_bridge(schedule, t: torch.Tensor, r: torch.Tensor):
    """The generic bridge coefficients (a, ȧ, v, v̇) of any object with alpha, alpha_dot, sigma, sigma_dot:
    a = α_t/α_r, ȧ = α̇_t/α_r, v = σ_t² − a²σ_r², v̇ = 2σ_tσ̇_t − 2aȧσ_r²."""
    t, r = t.float(), r.float()
    ar, sr = schedule.alpha(r), schedule.sigma(r)
    a = schedule.alpha(t) / ar
    ad = schedule.alpha_dot(t) / ar
    st = schedule.sigma(t)
    v = st * st - a * a * sr * sr
    vd = 2 * st * schedule.sigma_dot(t) - 2 * a * ad * sr * sr
    return a, ad, v, vd
