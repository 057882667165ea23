"""The Curie–Weiss model: the Ising model on the complete graph (mean-field Ising).

Spins are the tokens ``x ∈ {0, 1}^N`` (``torch.long``) of the ``categorical`` state space with
vocabulary 2, read as ``s = 2·x − 1 ∈ {−1, +1}``. With the total magnetization ``M = Σ_i s_i``,

    E(s) = β · ( −J/(2N) · M²  −  h · M ),        p(s) ∝ exp(−E(s)),

the same convention as the lattice Ising energy (inverse temperature multiplies the coupling and
the field). Because E depends on ``s`` only through ``M``, the law of ``k`` = number of up spins is

    P(k) ∝ C(N, k) · exp(−E(M = 2k − N)),    k = 0..N,

and given ``k`` every arrangement of the up spins is equally likely. Sampling ``k`` from this
(N+1)-point law and then a uniformly random subset of size ``k`` is an **exact** sampler. The
critical point is β·J = 1 (h = 0): below it the magnetization concentrates at 0, above it on ±m*.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch

from egm_framework.interfaces import Energy


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


class CurieWeissEnergy(Energy):
    """Curie–Weiss (mean-field Ising) energy E = β(−J/(2N)·M² − h·M) on N spins, M = Σ s_i.

    n_spins: number of spins N (≥ 2); beta: inverse temperature; J: coupling; h: external field.
    """

    def __init__(self, n_spins: int = 32, beta: float = 1.0, J: float = 1.0, h: float = 0.0):
        if isinstance(n_spins, bool) or not isinstance(n_spins, int) or n_spins < 2:
            raise ValueError(f"n_spins must be an integer >= 2, got {n_spins!r}")
        self.n_spins = n_spins
        self.beta = _real("beta", beta)
        self.J = _real("J", J)
        self.h = _real("h", h)

    # ------------------------------------------------------------------ the Energy interface
    @property
    def space_spec(self) -> tuple[str, dict[str, Any]]:
        """Lives on the ``categorical`` space (from the egm-discrete plugin): N sites, 2 tokens."""
        return ("categorical", {"shape": [self.n_spins], "vocab": 2})

    def _energy_of_m(self, m: torch.Tensor) -> torch.Tensor:
        """E as a function of the total magnetization M (any shape, float)."""
        return self.beta * (-(self.J / (2 * self.n_spins)) * m * m - self.h * m)

    def magnetization(self, x: torch.Tensor) -> torch.Tensor:
        """M = Σ_i (2·x_i − 1). x: (B, N) long -> (B,) float."""
        if x.shape[-1] != self.n_spins or x.dim() != 2:
            raise ValueError(f"curie_weiss expects tokens of shape (B, {self.n_spins}), got {tuple(x.shape)}")
        return (2 * x.sum(dim=-1) - self.n_spins).to(torch.get_default_dtype())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """E(x). x: (B, N) long tokens in {0, 1} -> (B,) float."""
        return self._energy_of_m(self.magnetization(x))

    def observables(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample magnetization per spin m = M/N and its absolute value, each (B,)."""
        m = self.magnetization(x) / self.n_spins
        return {"magnetization": m, "abs_magnetization": m.abs()}

    # ------------------------------------------------------------------ exact ground truth
    def level_log_probs(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """log P(k), k = 0..N up spins: log C(N, k) − E(2k − N), normalized. -> (N+1,)"""
        n = self.n_spins
        k = torch.arange(n + 1, dtype=dtype)
        log_binom = torch.lgamma(torch.tensor(n + 1.0, dtype=dtype)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        logits = log_binom - self._energy_of_m(2 * k - n)
        return logits - torch.logsumexp(logits, dim=0)

    def log_partition(self) -> float:
        """log Z = log Σ_s exp(−E(s)), computed exactly over the N+1 magnetization levels."""
        n = self.n_spins
        k = torch.arange(n + 1, dtype=torch.float64)
        log_binom = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        return float(torch.logsumexp(log_binom - self._energy_of_m(2 * k - n), dim=0))

    def exact_values(self) -> dict[str, float]:
        """Exact ⟨E⟩, ⟨|M|/N⟩ and log Z from the N+1 magnetization levels, for the run report."""
        n = self.n_spins
        p = self.level_log_probs().exp()
        m = 2 * torch.arange(n + 1, dtype=torch.float64) - n
        return {"E-mean": float((p * self._energy_of_m(m)).sum()), "|M|-mean": float((p * m.abs()).sum() / n),
                "log Z": self.log_partition()}

    def ground_truth(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """n exact, independent samples. -> (n, N) long tokens on ``device``."""
        gen_device = generator.device
        probs = self.level_log_probs().exp().to(device=gen_device, dtype=torch.float64)
        k = torch.multinomial(probs, n, replacement=True, generator=generator)  # (n,) up-spin counts
        # a uniformly random subset of size k: the k smallest of N i.i.d. uniforms
        u = torch.rand(n, self.n_spins, generator=generator, device=gen_device)
        rank = u.argsort(dim=1).argsort(dim=1)
        return (rank < k[:, None]).long().to(device)

    @property
    def ground_truth_method(self) -> str:
        return ("exact: up-spin count k ~ C(N,k)·exp(−E), then a uniformly random arrangement "
                "of the k up spins")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n_spins": self.n_spins, "beta": self.beta, "J": self.J, "h": self.h}
