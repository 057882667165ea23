"""Typed double-well particles: n particles in R^s with a binary type each (default 4 in R^2: 8 + 4 dims)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from egm_framework.interfaces import Energy
from egm_framework.states import MixedState

from egm_framework.mcmc import mala_step
from ._common import DeviceCache, as_numpy, float_list, new_figure, parts, save, tv_histograms, wasserstein_1d

PAIR_LABELS = ("00", "01", "11")


class JointDW4(Energy):
    r"""U(x, τ) = Σ_{i<j} ½ [a_{τ_i τ_j} (r_ij − d₀)⁴ + b_{τ_i τ_j} (r_ij − d₀)²],  r_ij = ‖x_i − x_j‖,

    with (a, b) per type pair: 0–0 (0.8, −3.0), 0–1 (0.4, −2.5), 1–1 (0.6, −2.8); d₀ = 2.
    x: n particles in R^s (default 4 × 2, flattened to (B, n·s) or given as (B, n, s)); τ ∈ {0,1}^n tokens.

    U is invariant under translations of x, so the density is normalizable only on the zero-centre-of-mass
    subspace: the space is ``euclidean`` with ``zero_com = true`` and the ground truth lives there (the
    energy itself is evaluated on any x).

    Ground truth: Metropolis-within-Gibbs on ``n_chains`` parallel chains. One sweep = one MALA step on all
    coordinates given τ (proposal x' = x − ε∇U + √(2ε) P ξ with P the centre-of-mass projection, and the
    exact MH correction with the proposal densities both ways; see :func:`egm_framework.mcmc.mala_step`) and
    then an exact Gibbs update of each type τ_i given x and the other types (systematic scan,
    P(τ_i = 1 | ·) = σ(U_i(τ_i = 0) − U_i(τ_i = 1))). The step size ε is adapted during burn-in toward
    ``target_accept`` and frozen afterwards; after ``burn_in`` sweeps every ``thin``-th state of each chain is kept.

    Shapes: x = MixedState(coords (B, n·s) or (B, n, s) float, types (B, n) long) -> (B,).
    """

    def __init__(self, n_particles: int = 4, spatial_dim: int = 2, a: Any = None, b: Any = None, d0: float = 2.0,
                 n_chains: int = 1000, burn_in: int = 2000, thin: int = 50, step_size: float = 0.05,
                 target_accept: float = 0.57):
        for label, v, lo in (("n_particles", n_particles, 2), ("spatial_dim", spatial_dim, 1),
                             ("n_chains", n_chains, 1), ("burn_in", burn_in, 0), ("thin", thin, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{label} must be an integer >= {lo}, got {v!r}")
        a = float_list([0.8, 0.4, 0.6] if a is None else a, "a (for type pairs 00, 01, 11)", (3,))
        b = float_list([-3.0, -2.5, -2.8] if b is None else b, "b (for type pairs 00, 01, 11)", (3,))
        if not (a > 0).all():
            raise ValueError(f"a must be > 0 for every type pair (the quartic term confines), got {a.tolist()}")
        if not isinstance(step_size, (int, float)) or not step_size > 0:
            raise ValueError(f"step_size must be a number > 0, got {step_size!r}")
        if not isinstance(target_accept, (int, float)) or not 0 < target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
        self.n, self.s = n_particles, spatial_dim
        self.a64, self.b64 = a, b
        self.a, self.b = a.float(), b.float()
        self.d0 = float(d0)
        self.n_chains, self.burn_in, self.thin = n_chains, burn_in, thin
        self.step_size, self.target_accept = float(step_size), float(target_accept)
        iu = torch.triu_indices(self.n, self.n, offset=1)
        self.I, self.J = iu[0], iu[1]
        self._others = [torch.tensor([j for j in range(self.n) if j != i]) for i in range(self.n)]
        self._consts = DeviceCache(I=self.I, J=self.J, a=self.a, b=self.b,
                                   **{f"others{i}": o for i, o in enumerate(self._others)})
        self.last_run: dict[str, float] = {}

    @property
    def space_spec(self) -> tuple[str, dict[str, Any]]:
        return ("product", {"continuous": {"name": "euclidean", "dim": self.n * self.s, "n_particles": self.n,
                                           "spatial_dim": self.s, "zero_com": True},
                            "discrete": {"name": "categorical", "shape": [self.n], "vocab": 2}})

    # ----------------------------------------------------------------------------- energy
    def _positions(self, c: torch.Tensor) -> torch.Tensor:
        return c.reshape(c.shape[0], self.n, self.s)

    def pair_distances(self, c: torch.Tensor) -> torch.Tensor:
        """r_ij for i < j: (B, n(n−1)/2), pairs in ``torch.triu_indices`` order."""
        pos = self._positions(c)
        k = self._consts.get(c.device, c.dtype)
        return (pos[:, k["I"]] - pos[:, k["J"]]).norm(dim=-1)

    def pair_class(self, types: torch.Tensor) -> torch.Tensor:
        """τ_i + τ_j ∈ {0: 00, 1: 01, 2: 11} for i < j: (B, n(n−1)/2) long."""
        k = self._consts.get(types.device)
        return types[:, k["I"]] + types[:, k["J"]]

    def __call__(self, x) -> torch.Tensor:
        c, t = parts(x)
        r = self.pair_distances(c)
        k = self.pair_class(t.long())
        consts = self._consts.get(c.device, c.dtype)
        a = consts["a"][k]
        b = consts["b"][k]
        d = r - self.d0
        d2 = d * d
        return 0.5 * (a * d2 * d2 + b * d2).sum(-1)

    def energy_and_grad(self, pos: torch.Tensor, types: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U and ∇_x U for positions (C, n, s) (analytic): dU/dr = 2a(r − d₀)³ + b(r − d₀)."""
        consts = self._consts.get(pos.device, pos.dtype)
        I, J = consts["I"], consts["J"]
        diff = pos[:, I] - pos[:, J]  # (C, P, s)
        r = diff.norm(dim=-1)
        k = types[:, I] + types[:, J]
        a = consts["a"][k]
        b = consts["b"][k]
        d = r - self.d0
        u = 0.5 * (a * d ** 4 + b * d ** 2).sum(-1)
        du = 2 * a * d ** 3 + b * d
        f = (du / r.clamp_min(1e-12))[..., None] * diff  # ∂U/∂x_i of pair (i, j); −f for x_j
        g = torch.zeros_like(pos)
        g.index_add_(1, I, f)
        g.index_add_(1, J, -f)
        return u, g

    # ----------------------------------------------------------------------------- ground truth
    def gibbs_types(self, pos: torch.Tensor, types: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One systematic-scan exact Gibbs sweep over the n types given the positions. (C, n) long."""
        types = types.clone()
        C = pos.shape[0]
        consts = self._consts.get(pos.device, pos.dtype)
        a, b = consts["a"], consts["b"]
        dist = (pos[:, :, None, :] - pos[:, None, :, :]).norm(dim=-1)  # (C, n, n)
        d = dist - self.d0
        d2 = d * d
        d4 = d2 * d2
        for i in range(self.n):
            others = consts[f"others{i}"]
            tj = types[:, others]  # (C, n-1)
            ui = []
            for ti in (0, 1):
                k = tj + ti
                ui.append(0.5 * (a[k] * d4[:, i, others] + b[k] * d2[:, i, others]).sum(-1))
            p1 = torch.sigmoid(ui[0] - ui[1])
            uni = torch.rand(C, generator=generator, dtype=pos.dtype, device=pos.device)
            types[:, i] = (uni < p1).long()
        return types

    @staticmethod
    def center(pos: torch.Tensor) -> torch.Tensor:
        return pos - pos.mean(dim=1, keepdim=True)

    def run_chains(self, n: int, generator: torch.Generator, n_chains: int | None = None, burn_in: int | None = None,
                   thin: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Metropolis-within-Gibbs; returns n samples (positions (n, n_p, s) float64, types (n, n_p) long)."""
        C = min(n, self.n_chains if n_chains is None else n_chains)
        burn_in = self.burn_in if burn_in is None else burn_in
        thin = self.thin if thin is None else thin
        per_chain = math.ceil(n / C)
        dt = torch.float64
        dev = generator.device  # chains run where the generator lives (CPU or GPU)
        pos = self.center(1.5 * torch.randn(C, self.n, self.s, generator=generator, dtype=dt, device=dev))
        types = torch.randint(0, 2, (C, self.n), generator=generator, device=dev)
        eps = torch.tensor(self.step_size, dtype=dt, device=dev)
        u, g = self.energy_and_grad(pos, types)
        kept_pos, kept_types = [], []
        acc_sum, acc_n = torch.zeros((), dtype=dt, device=dev), 0
        window = torch.zeros((), dtype=dt, device=dev)
        total = burn_in + per_chain * thin
        for step in range(total):
            pos, u, g, acc = mala_step(pos, u, g, lambda y: self.energy_and_grad(y, types), eps, generator,
                                       project=self.center)
            types = self.gibbs_types(pos, types, generator)
            u, g = self.energy_and_grad(pos, types)
            if step < burn_in:
                window = window + acc.to(dt).mean()
                if (step + 1) % 25 == 0:  # adapt toward the target acceptance, frozen after burn-in
                    eps = eps * torch.exp(window / 25 - self.target_accept)
                    window = torch.zeros_like(window)
            else:
                acc_sum = acc_sum + acc.to(dt).mean()
                acc_n += 1
                if (step - burn_in + 1) % thin == 0:
                    kept_pos.append(pos.clone())
                    kept_types.append(types.clone())
        self.last_run = {"step_size": float(eps), "acceptance": float(acc_sum) / max(acc_n, 1), "chains": C,
                         "burn_in": burn_in, "thin": thin}
        P = torch.stack(kept_pos, 1).reshape(-1, self.n, self.s)[:n]
        T = torch.stack(kept_types, 1).reshape(-1, self.n)[:n]
        return P, T

    def ground_truth(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> MixedState:
        P, T = self.run_chains(n, generator)
        return MixedState(P.reshape(n, self.n * self.s).float().to(device), T.to(device))

    @property
    def ground_truth_method(self) -> str:
        return (f"Metropolis-within-Gibbs, {self.n_chains} parallel chains (or n if fewer): per sweep one MALA step "
                f"on the centre-of-mass-free coordinates (exact MH correction, step size adapted to acceptance "
                f"{self.target_accept} during burn-in, then frozen) and one systematic-scan exact Gibbs sweep over "
                f"the types; burn-in {self.burn_in} sweeps, then every {self.thin}-th sweep kept")

    # ----------------------------------------------------------------------------- evaluation
    def observables(self, x) -> dict[str, torch.Tensor]:
        c, t = parts(x)
        r = self.pair_distances(c)
        return {"type1_fraction": t.to(c.dtype).mean(-1), "mean_distance": r.mean(-1)}

    def extra_metrics(self, samples, reference) -> dict[str, float]:
        """Against the reference set:
        * ``type1_fraction_error`` = |f − f_ref| (the raw fraction is the observable ``type1_fraction``, reported
          as ``type1_fraction-mean`` against its ground-truth ``/reference``; it has no noise floor);
        * ``n_type1_tv``: TV between the histograms of the number of type-1 particles (0..n);
        * ``distance_w1``: W1 between the pooled interatomic distances; ``distance_w1_00/01/11`` per type pair.
        """
        c, t = parts(samples)
        rc, rt = parts(reference)
        t, rt = as_numpy(t).astype(np.int64), as_numpy(rt).astype(np.int64)
        out = {"type1_fraction_error": float(abs(t.mean() - rt.mean()))}
        out["n_type1_tv"] = tv_histograms(np.bincount(t.sum(-1), minlength=self.n + 1),
                                          np.bincount(rt.sum(-1), minlength=self.n + 1))
        r, rr = as_numpy(self.pair_distances(c.float())), as_numpy(self.pair_distances(rc.float()))
        k, rk = as_numpy(self.pair_class(torch.as_tensor(t))), as_numpy(self.pair_class(torch.as_tensor(rt)))
        out["distance_w1"] = wasserstein_1d(r.ravel(), rr.ravel())
        for cls, label in enumerate(PAIR_LABELS):
            a, b = r[k == cls], rr[rk == cls]
            out[f"distance_w1_{label}"] = wasserstein_1d(a, b) if a.size and b.size else float("nan")
        return out

    def figures(self, samples, reference, out_dir) -> list[str]:
        c, t = parts(samples)
        rc, rt = parts(reference)
        r, rr = as_numpy(self.pair_distances(c.float())).ravel(), as_numpy(self.pair_distances(rc.float())).ravel()
        fig, (ax1, ax2) = new_figure(2)
        bins = np.linspace(0, max(r.max(initial=0), rr.max(initial=0), 1.0), 60)
        ax1.hist(rr, bins=bins, density=True, alpha=0.5, label="ground truth")
        ax1.hist(r, bins=bins, density=True, histtype="step", lw=1.5, label="sampler")
        ax1.set_xlabel("interatomic distance r_ij")
        ax1.set_ylabel("density")
        ax1.legend()
        k = np.arange(self.n + 1)
        t, rt = as_numpy(t).astype(np.int64), as_numpy(rt).astype(np.int64)
        ax2.bar(k - 0.2, np.bincount(t.sum(-1), minlength=self.n + 1) / max(len(t), 1), 0.4, label="sampler")
        ax2.bar(k + 0.2, np.bincount(rt.sum(-1), minlength=self.n + 1) / max(len(rt), 1), 0.4, label="ground truth")
        ax2.set_xlabel("number of type-1 particles")
        ax2.set_ylabel("frequency")
        ax2.legend()
        return [save(fig, out_dir, "joint_dw4_distances_types.png")]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n_particles": self.n, "spatial_dim": self.s, "a": self.a64.tolist(),
                "b": self.b64.tolist(), "d0": self.d0, "n_chains": self.n_chains, "burn_in": self.burn_in,
                "thin": self.thin}
