"""Gauss–Bernoulli restricted Boltzmann machine: v ∈ R^D (continuous), h ∈ {0,1}^H (discrete tokens)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from egm_framework.interfaces import Energy
from egm_framework.states import MixedState

from ._common import DeviceCache, as_numpy, float_list, new_figure, parts, save, tv_histograms

DEFAULT_W = [[5.0, 0.0, -5.0], [0.0, 5.0, 0.0]]


class GaussBernoulliRBM(Energy):
    r"""E(v, h) = ‖v − b‖² / (2σ²) − c·h − (v/σ²)ᵀ W h,   v ∈ R^D, h ∈ {0,1}^H (tokens 0/1).

    Defaults (the EGM benchmark): D = 2, H = 3, W = [[5, 0, −5], [0, 5, 0]], b = 0, c = (−12, −12, −12), σ = 1
    (b defaults to 0 and c to −12 per unit for any W).

    Exact sampling. Completing the square,
        −E(v, h) = −‖v − (b + Wh)‖²/(2σ²) + c·h + (‖b + Wh‖² − ‖b‖²)/(2σ²),
    so p(h) ∝ exp(c·h + (‖b + Wh‖² − ‖b‖²)/(2σ²)) (enumerated over the 2^H configurations) and
    v | h ~ N(b + Wh, σ² I). The marginal of v is a Gaussian mixture whose *modes* are the distinct means
    b + Wh, each weighted by the total p(h) of the configurations mapping to it. With the defaults:
    (0,0) ∝ 1 (+ e^−24 from h = 101), (5,0), (−5,0) ∝ e^0.5, (0,5) ∝ e^0.5 (+ e^−23.5 from h = 111),
    (5,5), (−5,5) ∝ e — six modes from eight configurations.

    Shapes: x = MixedState(v (B, D) float, h (B, H) long) -> (B,).
    """

    def __init__(self, W: Any = None, b: Any = None, c: Any = None, sigma: float = 1.0):
        W = float_list(DEFAULT_W if W is None else W, "W")
        if W.dim() != 2 or W.shape[0] < 1 or W.shape[1] < 1:
            raise ValueError(f"W must be a D×H matrix (list of D rows of H numbers), got shape {list(W.shape)}")
        D, H = W.shape
        if H > 20:
            raise ValueError(f"gb_rbm enumerates the 2^H hidden states; H must be <= 20, got {H}")
        b = float_list([0.0] * D if b is None else b, "b", (D,))
        c = float_list([-12.0] * H if c is None else c, "c", (H,))
        if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
            raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
        self.D, self.H, self.sigma = int(D), int(H), float(sigma)
        self.W64, self.b64, self.c64 = W, b, c
        self.W, self.b, self.c = W.float(), b.float(), c.float()
        self._consts = DeviceCache(W=self.W, b=self.b, c=self.c)
        # enumeration of p(h) and of the distinct modes of v
        hs = torch.tensor(list(itertools.product([0, 1], repeat=self.H)), dtype=torch.float64)  # (2^H, H)
        means = b[None, :] + hs @ W.T  # (2^H, D)
        logp = hs @ c + ((means ** 2).sum(-1) - (b ** 2).sum()) / (2 * self.sigma ** 2)
        self.hidden_configs = hs.long()
        self.hidden_means = means
        self.hidden_logp = logp - torch.logsumexp(logp, 0)
        self.log_partition = float(torch.logsumexp(logp, 0)) + 0.5 * self.D * math.log(2 * math.pi * self.sigma ** 2)
        self.mode_means, self.mode_weights, self.hidden_to_mode = self._distinct_modes()

    def _distinct_modes(self):
        means = self.hidden_means.numpy()
        p = self.hidden_logp.exp().numpy()
        tol = 1e-6 * max(1.0, float(np.abs(means).max()))
        mode_means: list[np.ndarray] = []
        weights: list[float] = []
        h2m = np.zeros(len(means), dtype=np.int64)
        for i, m in enumerate(means):
            for j, mm in enumerate(mode_means):
                if np.max(np.abs(m - mm)) <= tol:
                    weights[j] += p[i]
                    h2m[i] = j
                    break
            else:
                mode_means.append(m)
                weights.append(float(p[i]))
                h2m[i] = len(mode_means) - 1
        return np.stack(mode_means), np.asarray(weights), h2m

    @property
    def space_spec(self) -> tuple[str, dict[str, Any]]:
        return ("product", {"continuous": {"name": "euclidean", "dim": self.D},
                            "discrete": {"name": "categorical", "shape": [self.H], "vocab": 2}})

    def __call__(self, x) -> torch.Tensor:
        v, h = parts(x)
        k = self._consts.get(v.device, v.dtype)
        W, b, c = k["W"], k["b"], k["c"]
        hf = h.to(v.dtype)
        s2 = self.sigma ** 2
        return ((v - b) ** 2).sum(-1) / (2 * s2) - hf @ c - ((v @ W) * hf).sum(-1) / s2

    supports_conditional_gaussian = True

    def conditional_gaussian(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v | h ~ N(b + W h, σ² I): (mean (B, D), var (B,))."""
        k = self._consts.get(h.device, torch.float32)
        return k["b"] + h.float() @ k["W"].T, torch.full((h.shape[0],), self.sigma ** 2, device=h.device)

    supports_conditionals = True

    def conditional_logits(self, x) -> tuple[None, torch.Tensor]:
        """(None, logits (B, H, 2)): 0 for h_j = 0 and c_j + (vW)_j / σ² for h_j = 1 (the hidden units are
        conditionally independent given v)."""
        v, _ = parts(x)
        k = self._consts.get(v.device, v.dtype)
        on = k["c"] + (v @ k["W"]) / self.sigma ** 2
        return None, torch.stack([torch.zeros_like(on), on], dim=-1)

    # ----------------------------------------------------------------------------- ground truth
    def ground_truth(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> MixedState:
        dev = generator.device  # draw where the generator lives, then move
        idx = torch.multinomial(self.hidden_logp.exp().float().to(dev), n, replacement=True, generator=generator)
        h = self.hidden_configs.to(dev)[idx]
        noise = torch.randn(n, self.D, generator=generator, device=dev)
        v = self.hidden_means.float().to(dev)[idx] + self.sigma * noise
        return MixedState(v.to(device), h.to(device))

    @property
    def ground_truth_method(self) -> str:
        return (f"exact: h ~ p(h) by enumerating all 2^{self.H} hidden states, then v | h ~ N(b + Wh, σ²I)")

    # ----------------------------------------------------------------------------- evaluation
    def observables(self, x) -> dict[str, torch.Tensor]:
        v, h = parts(x)
        out = {f"v{i}": v[:, i] for i in range(min(self.D, 4))}
        out["hidden_on"] = h.to(v.dtype).sum(-1)
        return out

    def mode_assignment(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest mode mean of each sample (index) and its distance in units of σ."""
        d = np.sqrt(((v[:, None, :] - self.mode_means[None, :, :]) ** 2).sum(-1)) / self.sigma
        idx = d.argmin(1)
        return idx, d[np.arange(len(v)), idx]

    def mode_label(self, j: int) -> str:
        return "(" + ",".join(f"{c:g}" for c in self.mode_means[j]) + ")"

    #: values compared with the ground truth's own (not distances): reported with /reference
    reference_metrics = frozenset({"modes_found", "off_mode_fraction"})

    def extra_metrics(self, samples, reference) -> dict[str, float]:
        """Mode weights in v against the exact ones, and hidden-state frequencies against exact p(h).

        * ``mode_weight_error[m]`` = |p̂_m − p_m| for each distinct mode m (nearest-mean assignment);
        * ``mode_weight_error_max``, ``mode_tv`` = ½ Σ_m |p̂_m − p_m|;
        * ``modes_found`` = modes with at least one sample within 3σ of their mean (of ``len(self.mode_weights)``;
          the constant total is not a metric and is not returned: every extra metric gets a noise floor);
        * ``hidden_tv`` = ½ Σ_h |p̂(h) − p(h)| over the 2^H configurations (the discrete part);
        * ``off_mode_fraction`` = share of samples farther than 3σ from every mode mean.
        ``reference`` is not needed (the weights are exact) and is ignored.
        """
        v, h = parts(samples)
        v = as_numpy(v).astype(np.float64)
        n = max(len(v), 1)
        idx, dist = self.mode_assignment(v)
        counts = np.bincount(idx, minlength=len(self.mode_weights))
        emp = counts / n
        err = np.abs(emp - self.mode_weights)
        out: dict[str, float] = {}
        for j in range(len(self.mode_weights)):
            out[f"mode_weight_error{self.mode_label(j)}"] = float(err[j])
        near = dist <= 3.0
        found = np.bincount(idx[near], minlength=len(self.mode_weights)) > 0
        out["mode_weight_error_max"] = float(err.max())
        out["mode_tv"] = float(0.5 * err.sum())
        out["modes_found"] = float(found.sum())
        out["off_mode_fraction"] = float(1.0 - near.mean()) if len(v) else float("nan")
        codes = as_numpy(h).astype(np.int64) @ (1 << np.arange(self.H - 1, -1, -1))
        h_emp = np.bincount(codes, minlength=2 ** self.H)
        out["hidden_tv"] = tv_histograms(h_emp, self.hidden_logp.exp().numpy())
        return out

    def density_v(self, grid: np.ndarray) -> np.ndarray:
        """Exact marginal density of v on points (M, D): Σ_h p(h) N(v; b + Wh, σ² I)."""
        p = self.hidden_logp.exp().numpy()
        m = self.hidden_means.numpy()
        d2 = ((grid[:, None, :] - m[None]) ** 2).sum(-1)
        return (p[None] * np.exp(-d2 / (2 * self.sigma ** 2))).sum(1) / (2 * math.pi * self.sigma ** 2) ** (self.D / 2)

    def figures(self, samples, reference, out_dir) -> list[str]:
        names = []
        v, h = (as_numpy(a) for a in parts(samples))
        rv, rh = (as_numpy(a) for a in parts(reference))
        if self.D >= 2:
            fig, (ax1, ax2) = new_figure(2)
            lo = self.mode_means.min(0)[:2] - 4 * self.sigma
            hi = self.mode_means.max(0)[:2] + 4 * self.sigma
            g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150))
            pts = np.zeros((g0.size, self.D))
            pts[:, 0], pts[:, 1] = g0.ravel(), g1.ravel()
            # (for D > 2 this is the density at v_2.. = 0 of the means' plane: a guide only)
            dens = self.density_v(pts).reshape(g0.shape) if self.D == 2 else None
            for ax, data, title in ((ax1, v, "sampler"), (ax2, rv, "ground truth")):
                if dens is not None:
                    ax.contour(g0, g1, np.log(dens + 1e-300), levels=np.linspace(-20, np.log(dens.max()), 12),
                               cmap="Greys", linewidths=0.6)
                ax.scatter(data[:, 0], data[:, 1], s=2, alpha=0.4)
                ax.set_xlim(lo[0], hi[0])
                ax.set_ylim(lo[1], hi[1])
                ax.set_title(f"v, {title} (n={len(data)})")
                ax.set_xlabel("v0")
                ax.set_ylabel("v1")
            names.append(save(fig, out_dir, "gb_rbm_v_projection.png"))
        fig, (ax,) = new_figure(1, width=6)
        weights = 1 << np.arange(self.H - 1, -1, -1)
        k = np.arange(2 ** self.H)
        ax.bar(k - 0.2, np.bincount(h.astype(np.int64) @ weights, minlength=2 ** self.H) / max(len(h), 1), 0.4,
               label="sampler")
        ax.bar(k + 0.2, np.bincount(rh.astype(np.int64) @ weights, minlength=2 ** self.H) / max(len(rh), 1), 0.4,
               label="ground truth")
        ax.plot(k, self.hidden_logp.exp().numpy(), "k_", markersize=14, label="exact p(h)")
        ax.set_xticks(k)
        ax.set_xticklabels([format(i, f"0{self.H}b") for i in k], rotation=90 if self.H > 4 else 0)
        ax.set_xlabel("hidden configuration h")
        ax.set_ylabel("frequency")
        ax.legend()
        names.append(save(fig, out_dir, "gb_rbm_hidden_histogram.png"))
        return names

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "D": self.D, "H": self.H, "sigma": self.sigma, "W": self.W64.tolist(),
                "b": self.b64.tolist(), "c": self.c64.tolist(),
                "modes": {self.mode_label(j): float(w) for j, w in enumerate(self.mode_weights)}}
