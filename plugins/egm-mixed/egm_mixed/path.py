"""The product conditional path: independent part paths driven by one shared clock."""

from __future__ import annotations

import math

import torch

from egm_framework.interfaces import ConditionalPath
from egm_framework.states import MixedState

from ._parts import part_spec, resolve_registry


def _intersect(a: tuple[float, float], b: tuple[float, float], what: str,
               names: tuple[str, str]) -> tuple[float, float]:
    lo, hi = max(float(a[0]), float(b[0])), min(float(a[1]), float(b[1]))
    if not lo < hi:
        raise ValueError(f"the {what} of the continuous path {names[0]!r} {tuple(a)} and of the discrete path "
                         f"{names[1]!r} {tuple(b)} do not overlap; choose parts whose time ranges intersect")
    return (lo, hi)


class ProductPath(ConditionalPath):
    r"""p_{t|r}(x | x_r) = p^c_{t|r}(x^c | x^c_r) · p^d_{t|r}(x^d | x^d_r) on a :class:`ProductSpace`.

    Both parts share the times t, r. Because the bridge factorizes, so does everything derived from it:

    * prior: x_0 = (x_0^c, x_0^d), independent draws from the part priors;
    * x_t ~ p_{t|1}(· | x_1): each part sampled from its own path at the same t;
    * proposals q(x_r | x_t) = q^c(x_r^c | x_t^c) · q^d(x_r^d | x_t^d): the k-th **joint** proposal is the
      pair (k-th continuous proposal, k-th discrete proposal), returned as
      ``MixedState((B, n, *c_event), (B, n, *d_event))``. The core estimator therefore weighs each joint
      proposal once, w_k ∝ exp(−E_r(x_r^{c,k}, x_r^{d,k}) + c_k), with the joint (true or learned) energy;
    * log Z_{r|t}(x_t) = log Z^c_{r|t}(x_t^c) + log Z^d_{r|t}(x_t^d);
    * proposal log-correction c_k = c^c_k + c^d_k over the parts that have one (``None`` if neither has).

    Time ranges are the intersections of the parts' ranges (training and sampling).

    Parameters
    ----------
    space: a product space (anything with ``.continuous`` and ``.discrete`` part spaces).
    continuous: ``{"name": <path name>, **params}`` built on ``space.continuous`` (default
        ``{"name": "cond_ot"}``: its N(0, I) prior is exact at t = 0 whatever the target's scale, while
        VE's N(0, σ_0²) prior is only good when σ_max is large against the target's spread; with the
        exact generator on GB-RBM, VE with σ_max = 2 alone gives a mode TV of 0.51).
    discrete: ``{"name": <path name>, **params}`` built on ``space.discrete`` (default ``{"name": "masked"}``).
    """

    def __init__(self, space, continuous: dict | str | None = None, discrete: dict | str | None = None,
                 registry=None):
        super().__init__(space)
        if not (hasattr(space, "continuous") and hasattr(space, "discrete")):
            raise ValueError(f"the product path needs a product state space (with continuous and discrete parts), "
                             f"got {type(space).__name__} {getattr(space, 'name', '')!r}")
        reg = resolve_registry(registry)
        c_name, c_params = part_spec({"name": "cond_ot"} if continuous is None else continuous, "continuous",
                                     "{name = 've', sigma_max = 2.0}")
        d_name, d_params = part_spec({"name": "masked"} if discrete is None else discrete, "discrete",
                                     "{name = 'masked'}")
        self.continuous = reg.create("path", c_name, space.continuous, **c_params)
        self.discrete = reg.create("path", d_name, space.discrete, **d_params)
        #: bootstrapping needs it from both parts (e.g. the uniform discrete path has no bootstrap target)
        self.supports_bootstrap = bool(getattr(self.continuous, "supports_bootstrap", True)
                                       and getattr(self.discrete, "supports_bootstrap", True))
        self.part_names = (c_name, d_name)
        self.spec = {"continuous": {"name": c_name, **c_params}, "discrete": {"name": d_name, **d_params}}
        self.train_time_range = _intersect(self.continuous.train_time_range, self.discrete.train_time_range,
                                           "training time ranges", self.part_names)
        self.sample_time_range = _intersect(self.continuous.sample_time_range, self.discrete.sample_time_range,
                                            "sampling time ranges", self.part_names)

    def prior_std(self) -> float | None:
        """Per-coordinate standard deviation of the continuous part's prior (None if it has none)."""
        fn = getattr(self.continuous, "prior_std", None)
        return fn() if fn is not None else None

    def prior_noise_std(self) -> float | None:
        """The continuous part's noise std at t = 0 (None if it does not say)."""
        fn = getattr(self.continuous, "prior_noise_std", None)
        return fn() if fn is not None else None

    # --------------------------------------------------------------------------------- sampling
    def prior_sample(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> MixedState:
        """x_0 = (x_0^c ~ p_0^c, x_0^d ~ p_0^d): ((n, *c_event), (n, *d_event))."""
        return MixedState(self.continuous.prior_sample(n, generator, device),
                          self.discrete.prior_sample(n, generator, device))

    def sample_xt(self, x1, t: torch.Tensor, generator: torch.Generator) -> MixedState:
        """x_t ~ p_{t|1}(· | x_1) part by part at the shared t: (B, ...) pairs."""
        return MixedState(self.continuous.sample_xt(x1[0], t, generator),
                          self.discrete.sample_xt(x1[1], t, generator))

    def propose(self, x_t, t: torch.Tensor, r: torch.Tensor, n: int, generator: torch.Generator) -> MixedState:
        """n joint proposals x_r^k = (x_r^{c,k}, x_r^{d,k}) ~ q^c(·|x_t^c) q^d(·|x_t^d):
        MixedState((B, n, *c_event), (B, n, *d_event))."""
        return MixedState(self.continuous.propose(x_t[0], t, r, n, generator),
                          self.discrete.propose(x_t[1], t, r, n, generator))

    # --------------------------------------------------------------------------------- weights
    def log_normalizer(self, x_t, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """log Z_{r|t}(x_t) = log Z^c_{r|t}(x_t^c) + log Z^d_{r|t}(x_t^d), (B,)."""
        return self.continuous.log_normalizer(x_t[0], t, r) + self.discrete.log_normalizer(x_t[1], t, r)

    def proposal_log_correction(self, x_t, t: torch.Tensor, r: torch.Tensor, x_r) -> torch.Tensor | None:
        """Sum of the parts' log-corrections (B, n) for parts that have one; None when both are exact."""
        cc = self.continuous.proposal_log_correction(x_t[0], t, r, x_r[0])
        cd = self.discrete.proposal_log_correction(x_t[1], t, r, x_r[1])
        if cc is None:
            return cd
        if cd is None:
            return cc
        return cc + cd

    # ------------------------------------------------------------------ collapsed (Rao–Blackwellized) proposals
    def collapse_unsupported(self, energy) -> str | None:
        """None if :meth:`collapsed_proposals` works for this path and energy, else why not."""
        if not getattr(energy, "supports_conditional_gaussian", False):
            return (f"energy {getattr(energy, 'name', '?')!r} does not declare a conditionally Gaussian continuous part "
                    "(Energy.conditional_gaussian)")
        if not hasattr(self.continuous, "coefficients"):
            return f"continuous path {self.part_names[0]!r} is not a Gaussian bridge path (x_t = a x_1 + √v ε)"
        space = self.continuous.space
        if getattr(space, "free_dim", None) != getattr(space, "dim", None):
            return "the continuous space has constraints (free_dim < dim); collapsing assumes an unconstrained space"
        return None

    def _collapsed_log_weight(self, energy, x_tc, a, v, b):
        """log ∫ p_t(x_t^c | x^c) e^{−E(x^c, b)} dx^c + d log a, and the posterior mean of x_1^c.
        x_tc (B, D); a, v (B,); b (B, n, *d_shape) -> (B, n), (B, n, D)."""
        B, n = b.shape[0], b.shape[1]
        flat = b.reshape(B * n, *b.shape[2:])
        mean, var = energy.conditional_gaussian(flat)  # (B n, D), (B n,)
        D = mean.shape[-1]
        e_at_mean = energy(MixedState(mean, flat))  # −log p̃(b) − (D/2) log(2π var)
        mean, var, e_at_mean = mean.view(B, n, D), var.view(B, n), e_at_mean.view(B, n)
        a2 = (a * a)[:, None]
        s2 = a2 * var + v[:, None]  # variance of x_t^c given b
        diff = x_tc[:, None, :] - a[:, None, None] * mean
        log_lik = -0.5 * (diff * diff).sum(-1) / s2 - 0.5 * D * torch.log(2 * math.pi * s2)
        logw = -e_at_mean + 0.5 * D * torch.log(2 * math.pi * var) + log_lik + D * torch.log(a)[:, None]
        prec = 1.0 / var + a2 / v[:, None]
        post = (mean / var[..., None] + (a / v)[:, None, None] * x_tc[:, None, :]) / prec[..., None]
        return logw, post

    def collapsed_proposals(self, x_t, t, n, generator, energy, with_conditionals: bool = False):
        """Proposals with the continuous part integrated out (r = 1): for a conditionally Gaussian energy,
        x^c | x^d ~ N(m(x^d), s²(x^d) I) (:meth:`Energy.conditional_gaussian`), and a Gaussian bridge path
        x_t^c = a x_1^c + √v ε,

            ∫ p_t(x_t^c | x^c) e^{−E(x^c, x^d)} dx^c = e^{−E(m, x^d)} (2π s²)^{D/2} N(x_t^c; a m, (a² s² + v) I),

        so each discrete proposal x_1^{d,k} ~ q^d(· | x_t^d) is weighted by that (times a^D, which puts the
        weights on the scale of e^{−E} / Z^c_{1|t}: :meth:`log_normalizer` is unchanged), and the continuous
        target uses E[x_1^c | x_1^{d,k}, x_t^c] (the targets are affine in x_1^c). Returns
        (MixedState(posterior means (B, n, D), discrete proposals (B, n, *d_shape)), log-weights (B, n),
        (None, conditional logits (B, n, *d_shape, N)) or None, energy evaluations used). The conditional
        logits are the collapsed log-weights with each site set to each token in turn (S·N more
        evaluations): the exact law of a site given the rest of the proposal and x_t^c."""
        x_tc, x_td = x_t
        ones = torch.ones_like(t)
        a, _, v, _ = self.continuous.coefficients(t, ones)
        b = self.discrete.propose(x_td, t, ones, n, generator)  # (B, n, *d_shape)
        logw, post = self._collapsed_log_weight(energy, x_tc, a, v, b)
        corr = self.discrete.proposal_log_correction(x_td, t, ones, b)
        if corr is not None:
            logw = logw + corr
        B = b.shape[0]
        evals = B * n
        cond = None
        if with_conditionals:
            N = self.discrete.vocab
            sites = b.reshape(B, n, -1)
            S = sites.shape[-1]
            cond = torch.empty(B, n, S, N, dtype=logw.dtype, device=logw.device)
            for j in range(S):
                for u in range(N):
                    sub = sites.clone()
                    sub[:, :, j] = u
                    cond[:, :, j, u] = self._collapsed_log_weight(energy, x_tc, a, v, sub.view_as(b))[0]
            cond = cond.view(*b.shape, N)
            evals += B * n * S * N
        return MixedState(post, b), logw, (None, cond) if cond is not None else None, evals

    def describe(self) -> dict:
        return {"name": self.name, "continuous": self.continuous.describe(), "discrete": self.discrete.describe(),
                "train_time_range": list(self.train_time_range), "sample_time_range": list(self.sample_time_range)}
