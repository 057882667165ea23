"""Lattice energies on categorical spaces: the L×L periodic Ising and Potts models.

Conventions (pinned, see DESIGN §5): tokens x ∈ {0..q−1}; Ising spins s = 2x − 1;
E_Ising(x) = β(−J Σ_⟨ij⟩ s_i s_j − h Σ_i s_i), E_Potts(x) = −βJ Σ_⟨ij⟩ 1[x_i = x_j].
Bonds: the 2L² bonds (i, i + x̂) and (i, i + ŷ) of the torus, each once, computed with
``torch.roll`` to the right and down. For L = 2 the right and left neighbour of a site are the same
site, so each neighbouring pair is joined by **two** bonds per direction (the torus stays 4-regular,
2L² = 8 bonds; all-up 2×2 Ising has E = −8βJ). The transfer-matrix and enumeration helpers use the
same convention.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from egm_framework.interfaces import Energy
from egm_framework.validation import integer, number

from .ground_truth import SamplerSettings, TokenPotts, method_text, sample_lattice


def _check_L(L: Any) -> int:
    return integer(L, "L", minimum=2)


def _check_float(name: str, v: Any, nonneg: bool = False) -> float:
    return number(v, name, minimum=0.0 if nonneg else None)


class LatticeEnergy(Energy):
    """Shared ground-truth plumbing for lattice models written in token-Potts form."""

    L: int
    q: int

    def __init__(self, gt_method: str = "auto", gt_burn_in: int | None = None, gt_thin: int = 10,
                 gt_chains: int | None = None):
        try:
            self.sampler = SamplerSettings(method=gt_method, burn_in=gt_burn_in, thin=gt_thin, chains=gt_chains)
        except (TypeError, ValueError) as exc:  # attrs validators raise either
            raise ValueError(f"ground-truth sampler settings: {exc}") from None

    @property
    def space_spec(self):
        return ("categorical", {"shape": [self.L, self.L], "vocab": self.q})

    def token_potts(self) -> TokenPotts:
        raise NotImplementedError

    def exact_feasible(self) -> bool:
        return self.q ** (self.L * self.L) <= 2 ** 16

    def near_critical(self) -> bool:
        raise NotImplementedError

    def resolved_method(self) -> str:
        m = self.sampler.method
        if m == "exact" and not self.q ** (self.L * self.L) <= 2 ** 20:
            raise ValueError(f"exact enumeration of {self.q}^{self.L * self.L} states is not feasible")
        if m != "auto":
            return m
        if self.exact_feasible():
            return "exact"
        if self.token_potts().K > 0 and self.near_critical():
            return "swendsen_wang"
        return "gibbs"

    def ground_truth(self, n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
        """n samples (n, L, L) long; computed on the generator's device, returned on ``device``."""
        return sample_lattice(self.token_potts(), n, generator, self.resolved_method(), self.sampler).to(device)

    @property
    def ground_truth_method(self) -> str:
        return method_text(self.resolved_method(), self.token_potts(), self.sampler)


class IsingEnergy(LatticeEnergy):
    """L×L periodic Ising model, E = β(−J Σ_⟨ij⟩ s_i s_j − h Σ s_i), s = 2·token − 1, bonds once.

    Parameters: L ≥ 2 (int), beta ≥ 0, J = 1.0, h = 0.0; ground truth: gt_method (auto | exact |
    gibbs | swendsen_wang), gt_burn_in (sweeps), gt_thin (sweeps), gt_chains. 'auto' enumerates for
    L² ≤ 16, uses Swendsen–Wang for βJ ≥ 0.35 (near and below T_c, β_c ≈ 0.4407), Gibbs otherwise.
    """

    name = "ising"
    q = 2

    def __init__(self, L: int, beta: float, J: float = 1.0, h: float = 0.0, gt_method: str = "auto",
                 gt_burn_in: int | None = None, gt_thin: int = 10, gt_chains: int | None = None):
        self.L = _check_L(L)
        self.beta = _check_float("beta", beta, nonneg=True)
        self.J = _check_float("J", J)
        self.h = _check_float("h", h)
        super().__init__(gt_method, gt_burn_in, gt_thin, gt_chains)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, L) long tokens {0, 1} -> E (B,) float32."""
        s = (2 * x - 1).to(torch.float32)
        bonds = (s * torch.roll(s, 1, -1)).flatten(1).sum(-1) + (s * torch.roll(s, 1, -2)).flatten(1).sum(-1)
        return self.beta * (-self.J * bonds - self.h * s.flatten(1).sum(-1))

    supports_conditionals = True

    def conditional_logits(self, x: torch.Tensor) -> torch.Tensor:
        """−E(x with x^i := v) up to a per-site constant: ±β(J h_i + h) for v = 1 / 0 (s = ±1), with
        h_i the sum of the four neighbouring spins (a neighbour joined by two bonds, L = 2, counts
        twice). x: (B, L, L) -> (B, L, L, 2) float32."""
        s = (2 * x - 1).to(torch.float32)
        nb = (torch.roll(s, 1, -1) + torch.roll(s, -1, -1) + torch.roll(s, 1, -2) + torch.roll(s, -1, -2))
        up = self.beta * (self.J * nb + self.h)
        return torch.stack([-up, up], dim=-1)

    def observables(self, x):
        m = (2 * x - 1).to(torch.float32).flatten(1).mean(-1)
        return {"magnetization": m, "abs_magnetization": m.abs()}

    #: the largest L whose exact log Z is computed (a 2^L × 2^L transfer matrix: 0.1 s at L = 10, ~10 s at 12)
    LOG_PARTITION_MAX_L = 10

    @property
    def log_partition(self) -> float | None:
        """Exact log Z = log Σ_s e^{−E(s)} from the row transfer matrix for L ≤ 10 (None above), so that
        evaluation reports it beside the importance-weight estimate (``exactness.log_z_exact``)."""
        if self.L > self.LOG_PARTITION_MAX_L:
            return None
        if getattr(self, "_log_partition", None) is None:
            from .ground_truth import transfer_matrix_log_partition

            self._log_partition = transfer_matrix_log_partition(self.L, self.beta, self.J, self.h)
        return self._log_partition

    def token_potts(self) -> TokenPotts:
        bh = self.beta * self.h
        return TokenPotts(L=self.L, q=2, K=2 * self.beta * self.J, field=(-bh, bh))

    def exact_feasible(self) -> bool:
        return self.L * self.L <= 16

    def near_critical(self) -> bool:
        return self.beta * self.J >= 0.35

    def describe(self):
        return {"name": self.name, "L": self.L, "beta": self.beta, "J": self.J, "h": self.h,
                "ground_truth": self.ground_truth_method}


class PottsEnergy(LatticeEnergy):
    """L×L periodic q-state Potts model, E = −βJ Σ_⟨ij⟩ 1[x_i = x_j], bonds once.

    Parameters: L ≥ 2, q ≥ 2, beta ≥ 0, J = 1.0, and the gt_* sampler settings of ``ising``. 'auto'
    enumerates for q^(L²) ≤ 2^16, uses Swendsen–Wang for βJ ≥ 0.8·ln(1 + √q) (β_c = ln(1 + √q)),
    Gibbs otherwise. Observable: ``majority_fraction`` (share of sites holding the commonest token).
    """

    name = "potts"

    def __init__(self, L: int, q: int, beta: float, J: float = 1.0, gt_method: str = "auto",
                 gt_burn_in: int | None = None, gt_thin: int = 10, gt_chains: int | None = None):
        self.L = _check_L(L)
        if not isinstance(q, int) or isinstance(q, bool) or q < 2:
            raise ValueError(f"q must be an integer >= 2, got {q!r}")
        self.q = q
        self.beta = _check_float("beta", beta, nonneg=True)
        self.J = _check_float("J", J)
        super().__init__(gt_method, gt_burn_in, gt_thin, gt_chains)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, L) long tokens 0..q−1 -> E (B,) float32."""
        eq = (x == torch.roll(x, 1, -1)).flatten(1).sum(-1) + (x == torch.roll(x, 1, -2)).flatten(1).sum(-1)
        return -self.beta * self.J * eq.to(torch.float32)

    supports_conditionals = True

    def conditional_logits(self, x: torch.Tensor) -> torch.Tensor:
        """−E(x with x^i := v) up to a per-site constant: βJ × (number of the four neighbours equal to v).
        x: (B, L, L) -> (B, L, L, q) float32 (a scatter of the neighbours' tokens, no one-hot of x)."""
        B = x.shape[0]
        counts = torch.zeros(B, self.L * self.L, self.q, device=x.device)
        ones = torch.ones(B, self.L * self.L, 1, device=x.device)
        for shift, dim in ((1, -1), (-1, -1), (1, -2), (-1, -2)):
            counts.scatter_add_(2, torch.roll(x, shift, dim).reshape(B, -1, 1), ones)
        return (self.beta * self.J * counts).view(B, self.L, self.L, self.q)

    def observables(self, x):
        counts = torch.zeros(x.shape[0], self.q, device=x.device).scatter_add_(
            1, x.flatten(1), torch.ones(x.flatten(1).shape, device=x.device))
        return {"majority_fraction": counts.max(-1).values / (self.L * self.L)}

    def token_potts(self) -> TokenPotts:
        return TokenPotts(L=self.L, q=self.q, K=self.beta * self.J)

    def near_critical(self) -> bool:
        return self.beta * self.J >= 0.8 * math.log(1 + math.sqrt(self.q))

    def describe(self):
        return {"name": self.name, "L": self.L, "q": self.q, "beta": self.beta, "J": self.J,
                "ground_truth": self.ground_truth_method}
