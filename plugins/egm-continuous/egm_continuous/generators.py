r"""Flow (ODE) and diffusion (SDE) generator parametrizations for Gaussian-bridge paths.

The network outputs a vector field of the event's shape, (B, d):

- ``flow``: the marginal velocity u_t(x) = E_{x_r ~ p_{r|t}(·|x)}[u_t(x | x_r)]; samples by
  integrating dx/dt = u_t(x) from the prior with Euler or Heun steps.
- ``diffusion``: the drift b_t(x) = u_t(x) + (g_t²/2) ∇log p_t(x) of the SDE
  dX = b_t(X) dt + g_t dW, which has the same marginals p_t for any g_t ≥ 0; its conditional form
  b_t(x | x_r) = u_t(x | x_r) + (g_t²/2) ∇_x log p_{t|r}(x | x_r) is affine in (x_r, x), so the same
  SNIS machinery estimates it. Samples by Euler–Maruyama; the last step is noise-free.

Both read the path's affine forms (α, β) with T(x | x_r) = α x_r + β x, so for weights w (B, n)

    Σ_k w_k T(x_t | x_r^k) = α · einsum('bk,bkd->bd', w, x_r) + β · (Σ_k w_k) · x_t,

linear in w and without a (B, n, d) target tensor.

Two parametrizations of that field (``parametrization``):

- ``"velocity"`` (default): the network outputs the field (velocity or drift) itself;
- ``"endpoint"``: the network outputs D = x̂_1 − x_t, the offset of the posterior mean
  x̂_1(x_t, t) = E[x_1 | x_t] from the current state. For a Gaussian path the conditional field at
  r = 1 is affine in x_1, F_t(x | x_1) = α_1(t) x_1 + β_1(t) x, so the marginal field follows in
  closed form, F_t(x) = α_1 x̂_1 + β_1 x (for x_t = α_t x_1 + σ_t x_0 the velocity is
  (α̇_t − σ̇_t α_t/σ_t) x̂_1 + (σ̇_t/σ_t) x_t). The plain SNIS target Σ_k w_k x_1^k − x_t is a convex
  combination of proposals minus x_t: bounded, with no 1/(1 − t) factor near t = 1. A bridge
  estimate to r < 1 gives E[x_r | x_t]; the velocity of the bridge, u = α_u(t, r) E[x_r|x_t] + β_u x,
  is the same marginal velocity, so x̂_1 = (u − β_1^u x) / α_1^u with the velocity's own r = 1 form.

The velocity stays the default: at equal steps it learned GMM-25 and joint MoG better (docs/results.md,
"Hard targets: continuous and mixed"). The endpoint target is a convex combination of the proposals,
but at small t the proposals themselves spread like (1 − t)/t, so it is not small there; and the
endpoint's unweighted loss puts little weight on t → 1, where the sampler amplifies its error by
α_1(t) (``loss_weight = "field"`` restores that weight, capped). The bounded EGNN needs the endpoint
form (its output moves particles by less than layers × distance_scale).
"""

from __future__ import annotations

from typing import Any

import torch

from egm_framework.interfaces import AffineGaussianPath, AffineGaussianScorePath, ConditionalPath, GeneratorParametrization
from egm_framework.validation import number

__all__ = ["FlowGenerator", "DiffusionGenerator", "PARAMETRIZATIONS"]

#: what the network outputs: the generator's field, or the posterior-mean offset x̂_1 − x_t
PARAMETRIZATIONS = ("velocity", "endpoint")


def _check_clip(clip_norm):
    return number(clip_norm, "clip_norm", positive=True, optional=True)


def _check_parametrization(value):
    if value not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {', '.join(PARAMETRIZATIONS)}, got {value!r}")
    return value


def _affine_of(path: ConditionalPath, which: str):
    fn = getattr(path, which, None)
    if fn is None:
        raise ValueError(f"path {getattr(path, 'name', type(path).__name__)!r} does not provide {which}(t, r); "
                         "continuous generators need a Gaussian-bridge path such as cond_ot or ve")
    return fn


def _weighted_affine(alpha: torch.Tensor, beta: torch.Tensor, x_t: torch.Tensor, x_r: torch.Tensor,
                     w: torch.Tensor) -> torch.Tensor:
    """α Σ_k w_k x_r^k + β (Σ_k w_k) x_t. α, β: (B,), x_t: (B, d), x_r: (B, n, d), w: (B, n) -> (B, d)."""
    w = w.to(x_r.dtype)
    wx = torch.einsum("bk,bkd->bd", w, x_r.reshape(x_r.shape[0], x_r.shape[1], -1)).reshape(x_t.shape)
    ws = w.sum(dim=1)
    view = (-1,) + (1,) * (x_t.dim() - 1)
    return alpha.to(x_t.dtype).view(view) * wx + (beta.to(x_t.dtype) * ws).view(view) * x_t


def _clip_rows(v: torch.Tensor, clip: float | None) -> torch.Tensor:
    """Scale each row to norm ≤ clip (no-op when clip is None)."""
    if clip is None:
        return v
    norm = v.flatten(1).norm(dim=1)
    factor = torch.clamp(clip / torch.clamp(norm, min=1e-12), max=1.0)
    return v * factor.view(-1, *([1] * (v.dim() - 1)))


#: the cap of the "field" loss weight α_1(t)² (reached at t = 0.95 on cond-OT)
FIELD_WEIGHT_CAP = 400.0


class _VectorFieldGenerator(GeneratorParametrization):
    def __init__(self, clip_norm: float | None = None, parametrization: str = "velocity", loss_weight: str = "none"):
        self.clip_norm = _check_clip(clip_norm)
        self.parametrization = _check_parametrization(parametrization)
        if loss_weight not in ("none", "field"):
            raise ValueError(f"loss_weight must be one of none, field, got {loss_weight!r}")
        self.loss_weight = loss_weight
        self._path = None  # set by output_shapes: the "field" weight reads the path's coefficients

    def output_shapes(self, path: ConditionalPath) -> torch.Size:
        self._path = path
        return torch.Size(path.space.event_shape)

    def field_affine(self, path: ConditionalPath, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, β), each (B,), of the conditional field F_t(x | x_r) = α x_r + β x (velocity or drift)."""
        raise NotImplementedError

    def target_affine(self, path: ConditionalPath, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, β), each (B,), of the per-proposal regression target T(x | x_r) = α x_r + β x.

        velocity: the field's own form. endpoint: D = x̂_1 − x with x̂_1 = (u − β_1 x)/α_1, where
        u = α_u(t, r) x_r + β_u(t, r) x is the bridge velocity and (α_1, β_1) = velocity_affine(t, 1);
        at r = 1 this is exactly (1, −1), the convex combination Σ_k w_k x_1^k minus x."""
        if self.parametrization == "velocity":
            return self.field_affine(path, t, r)
        vel = _affine_of(path, "velocity_affine")
        au, bu = vel(t, r)
        a1, b1 = vel(t, torch.ones_like(t))
        return au / a1, (bu - b1) / a1 - 1.0

    def weighted_target(self, path, x_t, t, x_r, r, w):
        """Σ_k w_k T(x_t | x_r^k). x_t: (B, d), x_r: (B, n, d), w: (B, n) -> (B, d)."""
        alpha, beta = self.target_affine(path, t, r)
        return _weighted_affine(alpha, beta, x_t, x_r, w)

    def field(self, path: ConditionalPath, x: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The generator's field at (x, t) from the network output: the output itself (velocity), or
        α_1 (x + D) + β_1 x with (α_1, β_1) = field_affine(t, 1) (endpoint). x, output: (B, d) -> (B, d)."""
        if self.parametrization == "velocity":
            return output
        a1, b1 = self.field_affine(path, t, torch.ones_like(t))
        view = (-1,) + (1,) * (x.dim() - 1)
        return a1.to(x.dtype).view(view) * output + (a1 + b1).to(x.dtype).view(view) * x

    def endpoint_from_output(self, path: ConditionalPath, x: torch.Tensor, t: torch.Tensor,
                             output: torch.Tensor) -> torch.Tensor:
        """The posterior mean x̂_1(x, t) the network output stands for: x + D (endpoint), or
        (F − β_1 x)/α_1 with the field's r = 1 form (velocity). x, output: (B, d), t: (B,) < 1."""
        if self.parametrization == "endpoint":
            return x + output
        a1, b1 = self.field_affine(path, t, torch.ones_like(t))
        view = (-1,) + (1,) * (x.dim() - 1)
        return (output - b1.to(x.dtype).view(view) * x) / a1.to(x.dtype).view(view)

    supports_teacher_targets = True

    def weighted_teacher_target(self, path, x_t, t, x_r, r, w, teacher_output):
        """Σ_k w_k T(x_t | x̂_1(x_r^k, r)) with the r = 1 target form: each bridge proposal x_r^k
        contributes the r = 1 target of the teacher's posterior mean E[x_1 | x_r^k] instead of the bridge
        target (the r = 1 target is affine in x_1, and x_1 → x_r → x_t is Markov on a Gaussian-bridge path,
        so E[x_1 | x_t] = E[E[x_1 | x_r] | x_t]). x_r, teacher_output: (B, n, d), w: (B, n) -> (B, d)."""
        B, n = w.shape
        event = x_t.shape[1:]
        xhat = self.endpoint_from_output(path, x_r.reshape(B * n, *event), r.repeat_interleave(n),
                                         teacher_output.reshape(B * n, *event))
        alpha, beta = self.target_affine(path, t, torch.ones_like(t))
        return _weighted_affine(alpha, beta, x_t, xhat.view(B, n, *event), w)

    def finalize_target(self, target: torch.Tensor, x_t, t) -> torch.Tensor:
        """Clip the normalized estimate by its norm per row (``clip_norm``; None = off). With the
        endpoint parametrization the clip applies to D = x̂_1 − x_t (rarely needed: it is bounded)."""
        return _clip_rows(target, self.clip_norm)

    def loss(self, output: torch.Tensor, target: torch.Tensor, x_t, t) -> torch.Tensor:
        """Mean squared error per row: mean_j (output_j − target_j)², (B,). With the endpoint
        parametrization and ``loss_weight = "field"`` it is weighted by min(α_1(t)², 400): the error of
        the field α_1 (x + D) + β_1 x that the sampler integrates, capped near t = 1."""
        diff = output.float() - target.float()
        mse = (diff * diff).flatten(1).mean(dim=1)
        if self.parametrization == "endpoint" and self.loss_weight == "field":
            if self._path is None:
                raise ValueError('loss_weight = "field" needs the path: call output_shapes(path) first')
            a1, _ = self.field_affine(self._path, t, torch.ones_like(t))
            mse = mse * (a1.float() ** 2).clamp(max=FIELD_WEIGHT_CAP)
        return mse


class FlowGenerator(_VectorFieldGenerator):
    """Velocity field u_t(x) of the probability-flow ODE dx/dt = u_t(x).

    Parameters: ``solver`` "euler" (one network call per step) or "heun" (two, second order; the
    corrector is skipped on a step that ends beyond the path's training range, e.g. the last one,
    where the network has never been trained and the VE velocity is singular);
    ``parametrization`` "velocity" (default) or "endpoint" (the network predicts x̂_1 − x);
    ``clip_norm`` clips the estimated target to this norm per row (None = no clipping).
    """

    name = "flow"
    path_protocol = AffineGaussianPath

    def __init__(self, solver: str = "euler", clip_norm: float | None = None, parametrization: str = "velocity",
                 loss_weight: str = "none"):
        super().__init__(clip_norm, parametrization, loss_weight)
        if solver not in ("euler", "heun"):
            raise ValueError(f"solver must be one of euler, heun, got {solver!r}")
        self.solver = solver

    def field_affine(self, path, t, r):
        """(α, β) of the conditional velocity u_t(x | x_r) = α x_r + β x."""
        return _affine_of(path, "velocity_affine")(t, r)

    def step_from_output(self, path, x, t, t_next, output, generator):
        """Euler: x + (t_next − t) u. x: (B, d), t, t_next: (B,)."""
        h = (t_next - t).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return x + h * self.field(path, x, t, output)

    def step(self, model, path, x, t, t_next, generator):
        if self.solver == "euler":
            return self.step_from_output(path, x, t, t_next, model(x, t), generator)
        view = (-1,) + (1,) * (x.dim() - 1)
        h = (t_next - t).to(x.dtype).view(view)
        u1 = self.field(path, x, t, model(x, t))
        euler = x + h * u1
        # corrector at the end time, held inside the training range; steps that end beyond it stay Euler
        t_max = float(path.train_time_range[1])
        t_c = t_next.clamp(max=t_max)
        u2 = self.field(path, euler, t_c, model(euler, t_c))
        heun = x + 0.5 * h * (u1 + u2)
        return torch.where((t_next > t_max).view(view), euler, heun)

    def describe(self) -> dict:
        return {"name": self.name, "solver": self.solver, "parametrization": self.parametrization,
                "loss_weight": self.loss_weight, "clip_norm": self.clip_norm}

    # ----------------------------------------------------------------- model likelihood
    supports_log_prob = True
    #: up to this many coordinates the step Jacobian is computed in full (exact log-determinant)
    exact_max_dim = 8

    def log_prob_unsupported(self, path):
        if not hasattr(path, "prior_log_prob"):
            return (f"generator 'flow' needs the prior density of path {getattr(path, 'name', '?')!r} "
                    "(prior_log_prob); use cond_ot, ve or affine")
        if getattr(path.space, "zero_com", False):
            return ("generator 'flow' on a zero_com space: the likelihood on the centre-of-mass-free subspace is "
                    "not implemented; use a space without zero_com")
        return None

    def sample_with_log_prob(self, model, path, n, steps, generator, device="cpu", **options):
        r"""Samples and log q by the change of variables through every solver step (Euler or Heun):
        log q(x_K) = log p_0(x_0) − Σ_k log|det ∂Φ_k/∂x|. Up to ``exact_max_dim`` coordinates (option,
        default :attr:`exact_max_dim`) the step Jacobian is computed in full: log q is then the exact
        density of the simulated map (no solver error in q). Above it, Hutchinson's estimate with
        ``probes`` (default 2) Rademacher vectors per step (from a separate generator seeded with
        ``probe_seed``, default 0) gives −Σ_k h·div u (first order), with the per-sample standard
        deviation of its Monte-Carlo error in ``log_q_std``. Draws the same samples as :meth:`sample`."""
        from egm_framework.interfaces.generator import time_grid
        from egm_framework.likelihood import LikelihoodUnavailableError, LogProbSample, log_det_options, step_log_det

        reason = self.log_prob_unsupported(path)
        if reason:
            raise LikelihoodUnavailableError(reason)
        x = path.prior_sample(n, generator, device)
        exact, probes, pg = log_det_options(x, options, self.exact_max_dim)
        log_q = path.prior_log_prob(x)
        var = torch.zeros_like(log_q)
        grid = time_grid(path, steps, device)
        ones = torch.ones(n, device=device)
        for i in range(steps):
            t, t_next = grid[i] * ones, grid[i + 1] * ones
            x, logdet, v = step_log_det(lambda z: self.step(model, path, z, t, t_next, generator), x, exact,
                                        probes, pg)
            log_q = log_q - logdet
            var = var + v
        info = {"method": "change of variables through the solver steps", "solver": self.solver, "steps": steps,
                "log_det": "exact (full Jacobian)" if exact else f"Hutchinson, {probes} probes per step"}
        return LogProbSample(x=x, log_q=log_q, exact=exact, log_q_std=var.sqrt(), info=info)

    def log_prob(self, model, path, x, steps, tol: float = 1e-6):
        """log q(x) (B,) float64 of the simulated map at given points x (B, d): every solver step is inverted
        by Newton's method with the full Jacobian, from t = 1 back to the prior; up to ``exact_max_dim``
        coordinates only. For samples of :meth:`sample_with_log_prob` it returns the same values; at any
        other point it is the density of the sampler there (quadrature checks, forward KL on reference data)."""
        from egm_framework.interfaces.generator import time_grid
        from egm_framework.likelihood import LikelihoodUnavailableError, invert_step

        reason = self.log_prob_unsupported(path)
        if reason:
            raise LikelihoodUnavailableError(reason)
        n = x.shape[0]
        if x[0].numel() > self.exact_max_dim:
            raise LikelihoodUnavailableError(f"log_prob at given points needs the full Jacobian: at most "
                                             f"{self.exact_max_dim} coordinates, got {x[0].numel()}")
        grid = time_grid(path, steps, x.device)
        ones = torch.ones(n, device=x.device)
        total = torch.zeros(n, dtype=torch.float64, device=x.device)
        y = x.detach()
        for i in reversed(range(steps)):
            t, t_next = grid[i] * ones, grid[i + 1] * ones
            y, logdet = invert_step(lambda z: self.step(model, path, z, t, t_next, None), y, tol=tol)
            total = total + logdet
        return path.prior_log_prob(y) - total


class DiffusionGenerator(_VectorFieldGenerator):
    r"""Drift b_t(x) = u_t(x) + (g_t²/2) ∇log p_t(x) of dX = b dt + g_t dW (same marginals as the flow).

    Parameters:

    - ``g``: the diffusion coefficient. A number ≥ 0 gives a constant g_t = g (g = 0 is the flow);
      ``"ve"`` (alias ``"natural"``) uses the path's own coefficient g_t² = −dσ_t²/dt, defined by the
      ``ve`` path, for which the drift becomes the reverse-time VE SDE drift 2u_t.
    - ``noise_free_tail``: Euler–Maruyama steps whose end time t_next > t_end − noise_free_tail add
      no noise; the last step (t_next = t_end) is always noise-free. Default 0 (only the last step).
    - ``parametrization``: "velocity" (default; the network outputs the drift) or "endpoint" (the
      network predicts x̂_1 − x and the drift is α_1 x̂_1 + β_1 x with the drift's r = 1 form).
    - ``clip_norm``: clip the estimated target by norm per row (None = off).
    """

    name = "diffusion"
    path_protocol = AffineGaussianScorePath

    def __init__(self, g: float | str = 1.0, noise_free_tail: float = 0.0, clip_norm: float | None = None,
                 parametrization: str = "velocity", loss_weight: str = "none"):
        super().__init__(clip_norm, parametrization, loss_weight)
        if isinstance(g, str):
            if g not in ("ve", "natural"):
                raise ValueError(f"g must be a number >= 0 or 've', got {g!r}")
            self.g: float | str = "ve"
        else:
            try:
                gv = number(g, "g", minimum=0.0)
            except ValueError:
                raise ValueError(f"g must be a number >= 0 or 've', got {g!r}") from None
            self.g = gv
        try:
            self.noise_free_tail = float(noise_free_tail)
        except (TypeError, ValueError):
            raise ValueError(f"noise_free_tail must be a number in [0, 1), got {noise_free_tail!r}") from None
        if not 0.0 <= self.noise_free_tail < 1.0:
            raise ValueError(f"noise_free_tail must be a number in [0, 1), got {noise_free_tail!r}")

    def g2(self, path: ConditionalPath, t: torch.Tensor) -> torch.Tensor:
        """g_t², (B,)."""
        if self.g == "ve":
            fn = getattr(path, "natural_g2", None)
            if fn is None:
                raise ValueError("g='ve' needs a path with natural_g2(t), such as ve")
            return fn(t)
        return torch.full_like(t, self.g ** 2, dtype=torch.float32)

    def drift_affine(self, path, t, r) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, β) of the conditional drift b_t(x | x_r) = α x_r + β x, each (B,)."""
        au, bu = _affine_of(path, "velocity_affine")(t, r)
        as_, bs = _affine_of(path, "score_affine")(t, r)
        half_g2 = 0.5 * self.g2(path, t)
        return au + half_g2 * as_, bu + half_g2 * bs

    def field_affine(self, path, t, r):
        """(α, β) of the conditional drift (see :meth:`drift_affine`)."""
        return self.drift_affine(path, t, r)

    def step_from_output(self, path, x, t, t_next, output, generator):
        """Euler–Maruyama: x + h b + g_t √h ε (ε projected on the path's space), noise-free at the end."""
        view = (-1,) + (1,) * (x.dim() - 1)
        h = (t_next - t).to(x.dtype)
        g = self.g2(path, t).clamp_min(0).sqrt().to(x.dtype)
        t_end = path.sample_time_range[1]
        noisy = (t_next < t_end - self.noise_free_tail - 1e-6).to(x.dtype)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        space = getattr(path, "space", None)
        if hasattr(space, "project"):
            eps = space.project(eps)
        drift = self.field(path, x, t, output)
        return x + h.view(view) * drift + (g * h.clamp_min(0).sqrt() * noisy).view(view) * eps

    def log_prob_unsupported(self, path):
        return ("generator 'diffusion' simulates an SDE: a sample's probability integrates over all noise paths "
                "(intractable); use generator 'flow' (the same marginals, deterministic)")

    def describe(self) -> dict:
        return {"name": self.name, "g": self.g, "noise_free_tail": self.noise_free_tail,
                "parametrization": self.parametrization, "loss_weight": self.loss_weight, "clip_norm": self.clip_norm}
