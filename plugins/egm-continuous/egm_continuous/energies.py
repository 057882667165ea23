r"""Continuous target energies with ground truth, metrics and figures.

- ``gaussian``: N(m, Σ), E(x) = ½ (x − m)ᵀ Σ⁻¹ (x − m). Exact sampling.
- ``gmm25``: equal mixture of 25 Gaussians, std σ = 1, means on {−10, −5, 0, 5, 10}². Exact.
- ``gmm40``: the 40-mode 2-D benchmark of FAB / iDEM: 40 means uniform in [−40, 40]², drawn as
  ``(torch.rand(40, 2, generator=torch.Generator().manual_seed(0)) − 0.5) · 80`` (the same numbers as
  ``torch.manual_seed(0); torch.rand(40, 2)``), equal weights, isotropic std ``std`` (default 1.0;
  FAB/iDEM use a scale of softplus(1) ≈ 1.3133 — pass ``std=1.3133`` to reproduce them). Exact.
- ``dw4``: 4 particles in R², U(x) = ½ Σ_{i<j} [b (r_ij − d₀)² + c (r_ij − d₀)⁴], b = −4, c = 0.9,
  d₀ = 4, E = U / temperature, on the centre-of-mass-free subspace. Ground truth by long MALA.

``gmm25`` and ``gmm40`` declare a space with ``feature_scale`` = 1/10 and 1/40 (only the generic
encoder's input scaling; states stay in the original units).

Mixtures report mode coverage / mode-weight error and x-W2 (:func:`egm_continuous.metrics.x_w2`);
DW-4 reports the W1 between interatomic-distance distributions and x-W2.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import torch

from egm_framework.interfaces import Energy

from egm_framework.mcmc import mala
from egm_framework.validation import number

from .metrics import mode_metrics, w1_1d, x_w2

__all__ = ["GaussianEnergy", "GaussianMixtureEnergy", "GMM25Energy", "GMM40Energy", "DoubleWellEnergy"]


def _float(value: Any, what: str, positive: bool = False) -> float:
    return number(value, what, positive=positive)


def _vector(value: Any, dim: int, what: str) -> torch.Tensor:
    try:
        v = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number or a list of {dim} numbers, got {value!r}") from None
    if v.dim() == 0:
        v = v.expand(dim).clone()
    if v.shape != (dim,):
        raise ValueError(f"{what} must be a number or a list of {dim} numbers, got shape {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{what} must be finite")
    return v


def _scatter_over_contours(energy_fn, samples, reference, out_dir, fname, title, lim):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    n = 200
    xs = torch.linspace(lim[0], lim[1], n)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    grid = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1)
    with torch.no_grad():
        logp = -energy_fn(grid).reshape(n, n)
    logp = torch.clamp(logp - logp.max(), min=-50.0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    for ax, pts, label in ((axes[0], samples, "samples"), (axes[1], reference, "ground truth")):
        ax.contour(X.numpy(), Y.numpy(), logp.numpy(), levels=30, linewidths=0.5, cmap="viridis")
        if pts is not None:
            p = pts.detach().cpu().float()
            ax.scatter(p[:, 0].numpy(), p[:, 1].numpy(), s=2, alpha=0.5, color="tab:red")
        ax.set_title(f"{label} (n={0 if pts is None else len(pts)})")
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, fname), dpi=110)
    plt.close(fig)
    return [fname]


class _ContinuousEnergy(Energy):
    dim: int = 0
    #: encoder feature scale suggested to the space (keeps generic-network inputs O(1)); 1 = none
    feature_scale: float = 1.0

    @property
    def space_spec(self) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"dim": self.dim}
        if self.feature_scale != 1.0:
            params["feature_scale"] = self.feature_scale
        return ("euclidean", params)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{self.name or type(self).__name__} expects states of shape (B, {self.dim}), got {tuple(x.shape)}")
        return x


class GaussianEnergy(_ContinuousEnergy):
    """N(mean, Σ): E(x) = ½ (x − m)ᵀ Σ⁻¹ (x − m) (normalizing constant dropped).

    Parameters: ``dim``; ``mean`` (number or list); either ``std`` (number or list: diagonal Σ)
    or ``cov`` (dim × dim symmetric positive definite list of lists). Exact ground truth.
    """

    name = "gaussian"

    def __init__(self, dim: int = 2, mean: Any = 0.0, std: Any = 1.0, cov: Any = None):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        self.dim = dim
        self.mean = _vector(mean, dim, "mean")
        if cov is not None:
            try:
                c = torch.as_tensor(cov, dtype=torch.float64)
            except (TypeError, ValueError):
                raise ValueError(f"cov must be a {dim}x{dim} matrix, got {cov!r}") from None
            if c.shape != (dim, dim) or not torch.allclose(c, c.T):
                raise ValueError(f"cov must be a symmetric {dim}x{dim} matrix, got shape {tuple(c.shape)}")
            L, info = torch.linalg.cholesky_ex(c)
            if int(info) != 0:
                raise ValueError("cov must be positive definite")
            self.cov = c
        else:
            s = _vector(std, dim, "std")
            if not bool((s > 0).all()):
                raise ValueError(f"std must be positive, got {std!r}")
            self.cov = torch.diag(s * s)
            L = torch.diag(s)
        self.scale_tril = L
        self.precision = torch.cholesky_inverse(L)
        self._f = {}

    def _tensors(self, device, dtype):
        key = (str(device), dtype)
        if key not in self._f:
            self._f[key] = (self.mean.to(device, dtype), self.precision.to(device, dtype), self.scale_tril.to(device, dtype))
        return self._f[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) = ½ (x − m)ᵀ Σ⁻¹ (x − m). x: (B, d) -> (B,)."""
        self._check(x)
        m, P, _ = self._tensors(x.device, x.dtype)
        z = x - m
        return 0.5 * torch.einsum("bi,ij,bj->b", z, P, z)

    def ground_truth(self, n, generator, device="cpu"):
        m, _, L = self._tensors(device, torch.float32)
        eps = torch.randn(n, self.dim, generator=generator, device=device)
        return m + eps @ L.T

    @property
    def ground_truth_method(self) -> str:
        return "exact: m + L ε with Σ = L Lᵀ"

    def extra_metrics(self, samples, reference):
        return {"x_w2": x_w2(samples, reference)}

    def figures(self, samples, reference, out_dir):
        if self.dim != 2:
            return []
        s = torch.sqrt(torch.diagonal(self.cov)).max().item()
        lo = float(self.mean.min()) - 4 * s
        hi = float(self.mean.max()) + 4 * s
        return _scatter_over_contours(self, samples, reference, out_dir, "samples_2d.png", "gaussian", (lo, hi))

    def describe(self):
        return {"name": self.name, "dim": self.dim, "mean": self.mean.tolist(), "cov": self.cov.tolist()}


class GaussianMixtureEnergy(_ContinuousEnergy):
    """Mixture Σ_k w_k N(μ_k, σ² I): E(x) = −log Σ_k w_k N(x; μ_k, σ² I) (normalized). Exact sampling.

    Parameters: ``means`` (M × d list), ``std`` σ > 0, ``weights`` (M, default equal).
    """

    name = "gmm"
    #: a sample counts a mode as covered with at least max(1, min_fraction · expected count) hits
    coverage_min_fraction = 0.2

    def __init__(self, means: Any, std: float = 1.0, weights: Any = None):
        try:
            mu = torch.as_tensor(means, dtype=torch.float32)
        except (TypeError, ValueError):
            raise ValueError(f"means must be an M x d list of numbers, got {means!r}") from None
        if mu.dim() != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
            raise ValueError(f"means must be an M x d list of numbers, got shape {tuple(mu.shape)}")
        self.means = mu
        self.dim = mu.shape[1]
        self.std = _float(std, "std", positive=True)
        if weights is None:
            w = torch.full((mu.shape[0],), 1.0 / mu.shape[0])
        else:
            w = _vector(weights, mu.shape[0], "weights").float()
            if not bool((w > 0).all()):
                raise ValueError("weights must be positive")
            w = w / w.sum()
        self.weights = w
        self._f = {}

    def _tensors(self, device, dtype):
        key = (str(device), dtype)
        if key not in self._f:
            self._f[key] = (self.means.to(device, dtype), torch.log(self.weights).to(device, dtype))
        return self._f[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) = −logsumexp_k [log w_k − ‖x − μ_k‖²/(2σ²)] + (d/2) log(2πσ²). x: (B, d) -> (B,)."""
        self._check(x)
        mu, logw = self._tensors(x.device, x.dtype)
        # ‖x − μ‖² = ‖x‖² − 2 x·μ + ‖μ‖² (one matmul, no (B, M, d) tensor)
        sq = (x * x).sum(-1, keepdim=True) - 2 * x @ mu.T + (mu * mu).sum(-1)[None, :]
        sq = sq.clamp_min(0)
        ll = torch.logsumexp(logw[None, :] - sq / (2 * self.std ** 2), dim=-1)
        return -ll + 0.5 * self.dim * math.log(2 * math.pi * self.std ** 2)

    def ground_truth(self, n, generator, device="cpu"):
        idx = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, device=device)
        return self.means.to(device)[idx] + self.std * eps

    @property
    def ground_truth_method(self) -> str:
        return "exact: component k ~ Categorical(w), then N(μ_k, σ² I)"

    def observables(self, x):
        return {"radius": x.norm(dim=-1)}

    #: values compared with the ground truth's own (not distances): reported with /reference
    reference_metrics = frozenset({"mode_coverage"})

    def extra_metrics(self, samples, reference):
        m = mode_metrics(samples, self.means, self.weights, self.coverage_min_fraction)
        m["x_w2"] = x_w2(samples, reference)
        return m

    def figures(self, samples, reference, out_dir):
        if self.dim != 2:
            return []
        pad = 4 * self.std
        lo = float(self.means.min()) - pad
        hi = float(self.means.max()) + pad
        return _scatter_over_contours(self, samples, reference, out_dir, "samples_2d.png", self.name, (lo, hi))

    def describe(self):
        return {"name": self.name, "dim": self.dim, "n_modes": int(self.means.shape[0]), "std": self.std}


class GMM25Energy(GaussianMixtureEnergy):
    """Equal mixture of 25 Gaussians with std σ on the grid {−2s, −s, 0, s, 2s}² (s = ``spacing`` = 5)."""

    name = "gmm25"

    def __init__(self, std: float = 1.0, spacing: float = 5.0):
        spacing = _float(spacing, "spacing", positive=True)
        ticks = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]) * spacing
        gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
        super().__init__(torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), std=std)
        self.spacing = spacing
        self.feature_scale = 1.0 / (2 * spacing)

    def describe(self):
        return {**super().describe(), "spacing": self.spacing}


class GMM40Energy(GaussianMixtureEnergy):
    """The 40-mode 2-D benchmark: means (U[0,1)² − ½)·2·``loc_scale`` from a generator seeded ``seed``."""

    name = "gmm40"

    def __init__(self, std: float = 1.0, loc_scale: float = 40.0, seed: int = 0, n_modes: int = 40):
        loc_scale = _float(loc_scale, "loc_scale", positive=True)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if isinstance(n_modes, bool) or not isinstance(n_modes, int) or n_modes < 1:
            raise ValueError(f"n_modes must be an integer >= 1, got {n_modes!r}")
        g = torch.Generator().manual_seed(seed)
        means = (torch.rand(n_modes, 2, generator=g) - 0.5) * 2 * loc_scale
        super().__init__(means, std=std)
        self.loc_scale, self.seed = loc_scale, seed
        self.feature_scale = 1.0 / loc_scale

    def describe(self):
        return {**super().describe(), "loc_scale": self.loc_scale, "seed": self.seed}


class DoubleWellEnergy(Energy):
    r"""DW-n (default DW-4): n particles in R^D,

        E(x) = U(x)/T,  U(x) = ½ Σ_{i<j} [b (r_ij − d₀)² + c (r_ij − d₀)⁴],  r_ij = ‖x_i − x_j‖,

    with b = −4, c = 0.9, d₀ = 4, T = ``temperature`` = 1. Invariant to translations, rotations and
    permutations; lives on the centre-of-mass-free subspace (space ``zero_com=True``). x: (B, n·D),
    particle i at coordinates i·D … i·D + D − 1.

    Ground truth: MALA (truncated drift, see :mod:`egm_framework.mcmc`) with ``gt_chains`` parallel chains started from N(0, 2²I) projected to zero
    centre of mass, step size adapted during ``gt_burn_in`` steps (target acceptance 0.6) then frozen,
    one state kept every ``gt_thin`` steps per chain.
    """

    name = "dw4"

    def __init__(self, n_particles: int = 4, spatial_dim: int = 2, b: float = -4.0, c: float = 0.9, d0: float = 4.0,
                 temperature: float = 1.0, gt_chains: int = 1000, gt_burn_in: int = 2000, gt_thin: int = 50):
        for v, what in ((n_particles, "n_particles"), (spatial_dim, "spatial_dim")):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
        if n_particles < 2:
            raise ValueError(f"n_particles must be an integer >= 2, got {n_particles!r}")
        self.n_particles, self.spatial_dim = n_particles, spatial_dim
        self.dim = n_particles * spatial_dim
        self.b = _float(b, "b")
        self.c = _float(c, "c")
        self.d0 = _float(d0, "d0")
        self.temperature = _float(temperature, "temperature", positive=True)
        for v, what, lo in ((gt_chains, "gt_chains", 1), (gt_burn_in, "gt_burn_in", 0), (gt_thin, "gt_thin", 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{what} must be an integer >= {lo}, got {v!r}")
        self.gt_chains, self.gt_burn_in, self.gt_thin = gt_chains, gt_burn_in, gt_thin
        iu = torch.triu_indices(n_particles, n_particles, offset=1)
        self._i, self._j = iu[0], iu[1]
        self.last_gt_acceptance: float | None = None

    @property
    def space_spec(self):
        return ("euclidean", {"n_particles": self.n_particles, "spatial_dim": self.spatial_dim, "zero_com": True})

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Interatomic distances r_ij, i < j. x: (B, n·D) -> (B, n(n−1)/2)."""
        p = x.reshape(x.shape[0], self.n_particles, self.spatial_dim)
        if self._i.device != x.device:
            self._i, self._j = self._i.to(x.device), self._j.to(x.device)
        diff = p[:, self._i] - p[:, self._j]
        return torch.sqrt((diff * diff).sum(-1) + 1e-12)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) = U(x)/T. x: (B, n·D) -> (B,)."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{self.name} expects states of shape (B, {self.dim}), got {tuple(x.shape)}")
        d = self.distances(x) - self.d0
        d2 = d * d
        u = 0.5 * (self.b * d2 + self.c * d2 * d2).sum(-1)
        return u / self.temperature

    def observables(self, x):
        return {"mean_distance": self.distances(x).mean(-1)}

    def _project(self, v):
        p = v.reshape(*v.shape[:-1], self.n_particles, self.spatial_dim)
        return (p - p.mean(-2, keepdim=True)).reshape(v.shape)

    def ground_truth(self, n, generator, device="cpu"):
        chains = min(self.gt_chains, n)
        x0 = 2.0 * torch.randn(chains, self.dim, generator=generator, device=device)
        res = mala(self, x0, n, generator, burn_in=self.gt_burn_in, thin=self.gt_thin, step_size=0.01,
                   target_accept=0.6, project=self._project)
        self.last_gt_acceptance = res.acceptance
        return res.samples

    @property
    def ground_truth_method(self) -> str:
        return (f"MALA (truncated drift, max 1 per step): min(n, {self.gt_chains}) parallel chains from N(0, 4I) (zero centre of mass), step size "
                f"adapted to 0.6 acceptance over {self.gt_burn_in} burn-in steps then frozen, "
                f"thinned every {self.gt_thin} steps, exact MH correction")

    def extra_metrics(self, samples, reference):
        return {"dist_w1": w1_1d(self.distances(samples), self.distances(reference)),
                "x_w2": x_w2(samples, reference)}

    def figures(self, samples, reference, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(out_dir, exist_ok=True)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        ds = self.distances(samples).reshape(-1).detach().cpu().numpy()
        dr = self.distances(reference).reshape(-1).detach().cpu().numpy()
        axes[0].hist(dr, bins=100, density=True, alpha=0.5, label=f"ground truth (n={len(reference)})")
        axes[0].hist(ds, bins=100, density=True, alpha=0.5, label=f"samples (n={len(samples)})")
        axes[0].set_xlabel("interatomic distance")
        axes[0].legend()
        with torch.no_grad():
            es = self(samples.float()).cpu().numpy()
            er = self(reference.float()).cpu().numpy()
        axes[1].hist(er, bins=100, density=True, alpha=0.5, label="ground truth")
        axes[1].hist(es, bins=100, density=True, alpha=0.5, label="samples")
        axes[1].set_xlabel("energy")
        axes[1].legend()
        fig.suptitle(self.name)
        fig.tight_layout()
        fname = "distances.png"
        fig.savefig(os.path.join(out_dir, fname), dpi=110)
        plt.close(fig)
        return [fname]

    def describe(self):
        return {"name": self.name, "n_particles": self.n_particles, "spatial_dim": self.spatial_dim, "b": self.b,
                "c": self.c, "d0": self.d0, "temperature": self.temperature}
