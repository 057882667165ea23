"""Joint mixture of Gaussians: x ∈ R^d and labels b ∈ {0,1}^d, 2^d equally weighted modes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from egm_framework.interfaces import Energy
from egm_framework.states import MixedState

from ._common import as_numpy, new_figure, parts, save, tv_histograms


class JointMoG(Energy):
    r"""E(x, b) = Σ_i (x_i − μ(b_i))² / (2σ²),  μ(1) = +1, μ(0) = −1  (μ(b) = 2b − 1).

    x ∈ R^d, b ∈ {0,1}^d (tokens), d = ``dim`` (default 10, i.e. 20 dimensions in all), σ = 0.3.
    Every label pattern has the same mass (∫ exp(−E) dx = (2πσ²)^{d/2} for each b), so
    b_i ~ Bernoulli(½) i.i.d. and x_i | b_i ~ N(μ(b_i), σ²): exact sampling, 2^d equal modes.

    Shapes: x = MixedState(x (B, d) float, b (B, d) long) -> (B,).
    """

    def __init__(self, dim: int = 10, sigma: float = 0.3):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
            raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
        self.d = dim
        self.sigma = float(sigma)

    @property
    def space_spec(self) -> tuple[str, dict[str, Any]]:
        return ("product", {"continuous": {"name": "euclidean", "dim": self.d},
                            "discrete": {"name": "categorical", "shape": [self.d], "vocab": 2}})

    def __call__(self, x) -> torch.Tensor:
        c, b = parts(x)
        mu = 2.0 * b.to(c.dtype) - 1.0
        return ((c - mu) ** 2).sum(-1) / (2 * self.sigma ** 2)

    supports_conditional_gaussian = True

    def conditional_gaussian(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x | b ~ N(2b − 1, σ² I): (mean (B, d), var (B,))."""
        mean = 2.0 * b.float() - 1.0
        return mean, torch.full((b.shape[0],), self.sigma ** 2, device=b.device)

    supports_conditionals = True

    def conditional_logits(self, x) -> tuple[None, torch.Tensor]:
        """(None, logits (B, d, 2)): −(x_i − μ(b))²/(2σ²) for b = 0, 1 (the labels are conditionally
        independent given x)."""
        c, _ = parts(x)
        s2 = 2 * self.sigma ** 2
        return None, torch.stack([-(c + 1.0) ** 2 / s2, -(c - 1.0) ** 2 / s2], dim=-1)

    def ground_truth(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> MixedState:
        dev = generator.device
        b = torch.randint(0, 2, (n, self.d), generator=generator, device=dev)
        x = (2.0 * b.float() - 1.0) + self.sigma * torch.randn(n, self.d, generator=generator, device=dev)
        return MixedState(x.to(device), b.to(device))

    @property
    def ground_truth_method(self) -> str:
        return "exact: b_i ~ Bernoulli(1/2), x_i | b_i ~ N(2 b_i − 1, σ²), independently"

    def observables(self, x) -> dict[str, torch.Tensor]:
        c, b = parts(x)
        return {"label_mean": b.to(c.dtype).mean(-1), "x_mean": c.mean(-1)}

    #: values compared with the ground truth's own (not distances): reported with /reference
    reference_metrics = frozenset({"label_consistency", "site_consistency", "patterns_hit_fraction"})

    def extra_metrics(self, samples, reference) -> dict[str, float]:
        """* ``label_consistency``: share of samples with every x_i closer to μ(b_i) than to μ(1 − b_i)
          (i.e. sign(x_i) = 2b_i − 1); ``site_consistency``: the same per coordinate, averaged;
        * ``label_site_tv``: mean over sites of the TV of the Bernoulli frequency from ½, |f_i − ½|;
        * ``ones_count_tv``: TV of the histogram of Σ_i b_i from Binomial(d, ½);
        * ``patterns_hit_fraction``: distinct label patterns among the samples, as a share of 2^d (its "floor" is
          the ground truth's own value at the same n, about 1 − (1 − 2^−d)^n; the raw count is not returned).
        ``reference`` is not needed (exact statistics) and is ignored.
        """
        c, b = parts(samples)
        c = as_numpy(c).astype(np.float64)
        b = as_numpy(b).astype(np.int64)
        n = max(len(b), 1)
        ok = np.sign(c) == (2 * b - 1)
        out = {"label_consistency": float(ok.all(-1).mean()) if len(b) else float("nan"),
               "site_consistency": float(ok.mean()) if len(b) else float("nan")}
        f = b.mean(0) if len(b) else np.full(self.d, np.nan)
        out["label_site_tv"] = float(np.abs(f - 0.5).mean())
        from math import comb

        binom = np.array([comb(self.d, k) for k in range(self.d + 1)], dtype=np.float64) / 2.0 ** self.d
        out["ones_count_tv"] = tv_histograms(np.bincount(b.sum(-1), minlength=self.d + 1), binom)
        if self.d <= 62:
            codes = b @ (1 << np.arange(self.d, dtype=np.int64))
        else:  # pragma: no cover - hashing fallback for very wide tasks
            codes = np.array([hash(row.tobytes()) for row in b])
        hit = len(np.unique(codes))
        out["patterns_hit_fraction"] = float(hit / 2.0 ** self.d)
        return out

    def figures(self, samples, reference, out_dir) -> list[str]:
        names = []
        c, b = (as_numpy(a) for a in parts(samples))
        rc, rb = (as_numpy(a) for a in parts(reference))
        fig, (ax1, ax2, ax3) = new_figure(3)
        k = np.arange(self.d + 1)
        ax1.bar(k - 0.2, np.bincount(b.sum(-1).astype(np.int64), minlength=self.d + 1) / max(len(b), 1), 0.4,
                label="sampler")
        ax1.bar(k + 0.2, np.bincount(rb.sum(-1).astype(np.int64), minlength=self.d + 1) / max(len(rb), 1), 0.4,
                label="ground truth")
        ax1.set_xlabel("number of labels b_i = 1")
        ax1.set_ylabel("frequency")
        ax1.legend()
        s = np.arange(self.d)
        ax2.bar(s - 0.2, b.mean(0), 0.4, label="sampler")
        ax2.bar(s + 0.2, rb.mean(0), 0.4, label="ground truth")
        ax2.axhline(0.5, color="k", lw=0.8)
        ax2.set_xlabel("site i")
        ax2.set_ylabel("P(b_i = 1)")
        ax2.legend()
        if self.d >= 2:
            ax3.scatter(rc[:, 0], rc[:, 1], s=2, alpha=0.3, label="ground truth")
            ax3.scatter(c[:, 0], c[:, 1], s=2, alpha=0.3, label="sampler")
            ax3.set_xlabel("x0")
            ax3.set_ylabel("x1")
        else:
            ax3.hist([c[:, 0], rc[:, 0]], bins=60, label=["sampler", "ground truth"], density=True)
            ax3.set_xlabel("x0")
        ax3.legend()
        names.append(save(fig, out_dir, "joint_mog_labels_and_projection.png"))
        return names

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.d, "sigma": self.sigma}
