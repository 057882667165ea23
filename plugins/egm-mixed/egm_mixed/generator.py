"""The product generator: one network output per part (two heads on a shared trunk)."""

from __future__ import annotations

from typing import Any

import torch

from egm_framework.interfaces import GeneratorParametrization
from egm_framework.states import MixedState

from ._parts import part_spec, resolve_registry


class ProductGenerator(GeneratorParametrization):
    r"""Generator of a product process: the continuous part (flow / diffusion / ...) and the discrete part
    (jump / ...) evolve independently *given* the current joint state, so the joint generator is the sum
    F_t(x) = F^c_t(x) ⊕ F^d_t(x), and each part's marginal generator is the posterior mean of its
    conditional generator under the **joint** posterior p_{r|t}(x_r^c, x_r^d | x_t^c, x_t^d):

        F̂^c_t(x_t) = Σ_k w_k T^c(x_t^c, t | x_r^{c,k}),   F̂^d_t(x_t) = Σ_k w_k T^d(x_t^d, t | x_r^{d,k}),

    with ONE shared weight w_k per joint proposal k (computed by the core from the joint energy).

    Network output: a pair (out_c (B, *out_c), out_d (B, *out_d)) — :meth:`output_shapes` returns the tuple of
    the parts' shapes, so core networks build one trunk with two heads.

    Loss: λ_c · loss_c + λ_d · loss_d per row, (B,).

    Sampling: :meth:`step_from_output` advances both parts from ONE network evaluation at (x, t) with each
    part's own explicit step (Euler / Euler–Maruyama for continuous parts, τ-leaping / Euler jump step for
    discrete ones). Higher-order schemes of a part (e.g. Heun in its ``step``) are *not* used jointly: they
    would need the network at an intermediate state that the other part does not share.

    Parameters
    ----------
    continuous: ``{"name": <generator name>, **params}`` (default ``{"name": "flow"}``).
    discrete: ``{"name": <generator name>, **params}`` (default ``{"name": "jump"}``).
    continuous_weight, discrete_weight: loss weights λ_c, λ_d ≥ 0, not both 0.
    """

    def __init__(self, continuous: dict | str | None = None, discrete: dict | str | None = None,
                 continuous_weight: float = 1.0, discrete_weight: float = 1.0, registry=None):
        reg = resolve_registry(registry)
        c_name, c_params = part_spec({"name": "flow"} if continuous is None else continuous, "continuous",
                                     "{name = 'flow'}")
        d_name, d_params = part_spec({"name": "jump"} if discrete is None else discrete, "discrete",
                                     "{name = 'jump'}")
        for label, v in (("continuous_weight", continuous_weight), ("discrete_weight", discrete_weight)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"{label} must be a number >= 0, got {v!r}")
        if continuous_weight == 0 and discrete_weight == 0:
            raise ValueError("continuous_weight and discrete_weight cannot both be 0")
        self.continuous = reg.create("generator", c_name, **c_params)
        self.discrete = reg.create("generator", d_name, **d_params)
        self.continuous_weight = float(continuous_weight)
        self.discrete_weight = float(discrete_weight)
        self.spec = {"continuous": {"name": c_name, **c_params}, "discrete": {"name": d_name, **d_params}}

    def output_shapes(self, path) -> tuple[Any, Any]:
        """(shape of the continuous head, shape of the discrete head)."""
        return (self.continuous.output_shapes(path.continuous), self.discrete.output_shapes(path.discrete))

    def weighted_target(self, path, x_t, t: torch.Tensor, x_r, r: torch.Tensor, w: torch.Tensor) -> tuple:
        """(Σ_k w_k T^c(x_t^c | x_r^{c,k}), Σ_k w_k T^d(x_t^d | x_r^{d,k})) with the SAME w (B, n)."""
        return (self.continuous.weighted_target(path.continuous, x_t[0], t, x_r[0], r, w),
                self.discrete.weighted_target(path.discrete, x_t[1], t, x_r[1], r, w))

    @property
    def supports_conditional_targets(self) -> bool:
        return bool(getattr(self.discrete, "supports_conditional_targets", False))

    def weighted_conditional_target(self, path, x_t, t, x_1, r, w, cond_logits) -> tuple:
        """The discrete part's Rao–Blackwellized target from the energy's conditionals of the labels given
        the whole proposal (``cond_logits`` = (None, (B, n, *shape, N))); the continuous part's plain one."""
        cond_c, cond_d = cond_logits
        if cond_c is not None:
            raise NotImplementedError("conditional targets of a continuous part are not implemented; the energy's "
                                      "conditional_logits must return None for it")
        return (self.continuous.weighted_target(path.continuous, x_t[0], t, x_1[0], r, w),
                self.discrete.weighted_conditional_target(path.discrete, x_t[1], t, x_1[1], r, w, cond_d))

    def finalize_target(self, target, x_t, t: torch.Tensor) -> tuple:
        return (self.continuous.finalize_target(target[0], x_t[0], t),
                self.discrete.finalize_target(target[1], x_t[1], t))

    def loss(self, output, target, x_t, t: torch.Tensor) -> torch.Tensor:
        """λ_c · loss_c(out_c, T^c) + λ_d · loss_d(out_d, T^d), (B,)."""
        lc = self.continuous.loss(output[0], target[0], x_t[0], t)
        ld = self.discrete.loss(output[1], target[1], x_t[1], t)
        return self.continuous_weight * lc + self.discrete_weight * ld

    def part_losses(self, output, target, x_t, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted per-part losses {"continuous": (B,), "discrete": (B,)} (for logging)."""
        return {"continuous": self.continuous.loss(output[0], target[0], x_t[0], t),
                "discrete": self.discrete.loss(output[1], target[1], x_t[1], t)}

    def step_from_output(self, path, x, t: torch.Tensor, t_next: torch.Tensor, output,
                         generator: torch.Generator) -> MixedState:
        """Both parts' explicit steps from the one joint output at (x, t)."""
        return MixedState(
            self.continuous.step_from_output(path.continuous, x[0], t, t_next, output[0], generator),
            self.discrete.step_from_output(path.discrete, x[1], t, t_next, output[1], generator))

    # ----------------------------------------------------------------- model likelihood
    supports_log_prob = True

    def log_prob_unsupported(self, path):
        """Both parts must have a likelihood, the continuous one a deterministic step (flow) and the
        discrete one a per-step token log-probability (jump on the masked path)."""
        for role, gen, part in (("continuous", self.continuous, path.continuous),
                                ("discrete", self.discrete, path.discrete)):
            reason = gen.log_prob_unsupported(part)
            if reason:
                return f"product generator, {role} part: {reason}"
        if not hasattr(self.discrete, "step_log_prob"):
            return (f"product generator: the discrete part {self.discrete.name!r} gives no per-step token "
                    "log-probability (step_log_prob); use 'jump' with the masked path")
        if not hasattr(self.continuous, "exact_max_dim"):
            return (f"product generator: the continuous part {self.continuous.name!r} has no deterministic step; "
                    "use 'flow'")
        return None

    def sample_with_log_prob(self, model, path, n, steps, generator, device="cpu", **options):
        r"""Samples and log q(x^c, x^d | σ) of the product process as simulated by :meth:`sample` (one joint
        network call per Euler step): the discrete part's schedule σ (which grid step each site unmasks)
        does not depend on the network, so

            log q = log p_0(x_0^c) − Σ_k log|det ∂x_{k+1}^c/∂x_k^c| + Σ_k log P(tokens chosen at step k),

        the continuous Jacobian taken with the discrete state held fixed (the product map is
        triangular given σ). Exact for continuous parts up to ``exact_max_dim`` coordinates, Hutchinson
        above (as for ``flow``). Same random draws, hence the same samples, as :meth:`sample`."""
        from egm_framework.interfaces.generator import time_grid
        from egm_framework.likelihood import LikelihoodUnavailableError, LogProbSample, log_det_options, step_log_det

        reason = self.log_prob_unsupported(path)
        if reason:
            raise LikelihoodUnavailableError(reason)
        pc, pd = path.continuous, path.discrete
        x = path.prior_sample(n, generator, device)
        xc, xd = x[0], x[1]
        exact, probes, pg = log_det_options(xc, options, self.continuous.exact_max_dim)
        log_q = pc.prior_log_prob(xc)
        var = torch.zeros_like(log_q)
        grid = time_grid(path, steps, device)
        ones = torch.ones(n, device=device)
        for i in range(steps):
            t, t_next = grid[i] * ones, grid[i + 1] * ones
            held = {}

            def cont_step(z, t=t, t_next=t_next, xd=xd):
                out = model(MixedState(z, xd), t)
                held["d"] = out[1]
                return self.continuous.step_from_output(pc, z, t, t_next, out[0], generator)

            xc_next, logdet, v = step_log_det(cont_step, xc, exact, probes, pg)
            out_d = held["d"].detach()
            xd_next = self.discrete.step_from_output(pd, xd, t, t_next, out_d, generator)
            log_q = log_q - logdet + self.discrete.step_log_prob(pd, xd, xd_next, out_d)
            var = var + v
            xc, xd = xc_next, xd_next
        info = {"method": "product: change of variables (continuous) × token probabilities given the schedule",
                "steps": steps, "log_det": "exact (full Jacobian)" if exact else f"Hutchinson, {probes} probes"}
        return LogProbSample(x=MixedState(xc, xd), log_q=log_q, exact=exact, log_q_std=var.sqrt(), info=info)

    def describe(self) -> dict:
        return {"name": self.name, "continuous": self.continuous.describe(), "discrete": self.discrete.describe(),
                "continuous_weight": self.continuous_weight, "discrete_weight": self.discrete_weight}
