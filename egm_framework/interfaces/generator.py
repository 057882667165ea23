from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import torch

from ..states import State
from .path import ConditionalPath

#: A model function: (x: (B, *event), t: (B,)) -> network output (tensor, or tuple of heads)
ModelFn = Callable[[State, torch.Tensor], Any]


class GeneratorParametrization(ABC):
    """How a network parametrizes the generator F_t(x) of a Markov process, what it regresses on,
    and how the process is simulated.

    EGM needs the marginal generator F_t(x) = E_{x_r ~ p_{r|t}(·|x)}[F_t(x | x_r)]. Every
    parametrization here maps the conditional generator F_t(x | x_r) *linearly* to a regression
    target T(x_t, t | x_r) in the network's output space (a velocity, a drift, a denoiser
    distribution, ...), so a weighted sum of per-proposal targets is the estimate of the marginal
    one. :meth:`weighted_target` computes that sum without materializing per-proposal one-hots.
    """

    name: str = ""

    @abstractmethod
    def output_shapes(self, path: ConditionalPath) -> Any:
        """Shape of the network output for one state (``torch.Size``), or a tuple of shapes (one per
        head) for product spaces."""

    @abstractmethod
    def weighted_target(
        self, path: ConditionalPath, x_t: State, t: torch.Tensor, x_r: State, r: torch.Tensor, w: torch.Tensor
    ) -> Any:
        """Σ_k w_k T(x_t, t | x_r^k). x_t: (B, *event), x_r: (B, n, *event), w: (B, n) nonnegative
        (unnormalized) -> target of the output's shape (B, *out), linear in ``w``."""

    #: whether :meth:`weighted_conditional_target` is implemented
    supports_conditional_targets: bool = False

    def weighted_conditional_target(
        self, path: ConditionalPath, x_t: State, t: torch.Tensor, x_1: State, r: torch.Tensor, w: torch.Tensor,
        cond_logits: Any,
    ) -> Any:
        """Rao–Blackwellized form of :meth:`weighted_target` for end time r = 1: each categorical site's
        indicator of x_1^{k, i} is replaced by its conditional law given the rest of the proposal and
        x_t, from ``cond_logits`` (:meth:`Energy.conditional_logits` of x_1, (B, n, *shape, N)) and the
        path's likelihood of x_t^i. Same expectation under the posterior, lower variance and a smaller
        finite-K bias. Optional: set :attr:`supports_conditional_targets`."""
        raise NotImplementedError(f"generator {self.name!r} has no conditional (Rao–Blackwellized) targets")

    #: whether :meth:`weighted_teacher_target` is implemented
    supports_teacher_targets: bool = False

    def weighted_teacher_target(
        self, path: ConditionalPath, x_t: State, t: torch.Tensor, x_r: State, r: torch.Tensor, w: torch.Tensor,
        teacher_output: Any,
    ) -> Any:
        """Bootstrapped form of :meth:`weighted_target` for r < 1 with the sampler network as teacher:
        Σ_k w_k E[T(x_t, t | x_1) | x_r^k], the r = 1 target averaged over the end points x_1 that
        proposal x_r^k leaves open, as the network's output at (x_r^k, r) (``teacher_output``, (B, n, *out))
        predicts them. x_t ⊥ x_1 given x_r on the path, so with an exact teacher and exact weights the
        expectation is the marginal target at t, as for the bridge target; what the bridge target leaves
        to chance (which parts of x_r^k have resolved) is averaged out by the teacher. Optional: set
        :attr:`supports_teacher_targets`."""
        raise NotImplementedError(f"generator {self.name!r} has no teacher targets")

    def teacher_unsupported(self, path: ConditionalPath) -> str | None:
        """Why teacher targets cannot be used with this path (a sentence for a config error), or None."""
        if not self.supports_teacher_targets:
            return f"generator {self.name!r} has no teacher targets (GeneratorParametrization.weighted_teacher_target)"
        return None

    #: whether :meth:`sample_completions` is implemented
    supports_sampler_proposals: bool = False
    #: whether :meth:`sample_completions` also takes ``r`` < 1 (bridge proposals)
    supports_sampler_bridges: bool = False

    def sample_completions(
        self, model: ModelFn, path: ConditionalPath, x_t: State, t: torch.Tensor, n: int, steps: int,
        generator: torch.Generator, spacing: float = 1.0, r: torch.Tensor | None = None,
    ) -> tuple[State, torch.Tensor]:
        """Sampler proposals for r = 1: n end points per row simulated by the model from (x_t, t), and
        their log importance ratio to the path's own posterior proposal (:meth:`ConditionalPath.propose`
        at r = 1), log q_path(x_1 | x_t) − log q_model(x_1 | x_t), (B, n). Adding the ratio to −E(x_1)
        puts the model's proposals on the scale of the uniform ones, so the same estimators (targets,
        log mean weight, ESS) apply unchanged; q_model must be exactly normalized over x_1 (it may be the
        density in an extended space, e.g. given a schedule drawn independently of the network).
        ``steps`` network evaluations per proposal; ``spacing`` γ ≥ 1 makes the early ones finer (the
        share of the way done after step j is (j/steps)^γ), where the generator has such a choice.
        x_t: (B, *event), t: (B,) -> ((B, n, *event), (B, n)). Optional: set
        :attr:`supports_sampler_proposals`.

        ``r`` (B,), r < 1 (bootstrapping, ``estimator.sampler_bridges``): simulate only from t to r and
        return bridge proposals x_r with log q_path(x_r | x_t) − log q_model(x_r | x_t), the ratio to the
        path's proposal at r (:meth:`ConditionalPath.propose`); the estimator adds the path's own
        :meth:`ConditionalPath.proposal_log_correction` to it. Optional: set
        :attr:`supports_sampler_bridges` (the trainer passes ``r`` only then; ``r=None`` means r = 1)."""
        raise NotImplementedError(f"generator {self.name!r} has no sampler proposals")

    def sampler_proposals_unsupported(self, path: ConditionalPath) -> str | None:
        """Why sampler proposals cannot be used with this path (a sentence for a config error), or None."""
        if not self.supports_sampler_proposals:
            return f"generator {self.name!r} has no sampler proposals (GeneratorParametrization.sample_completions)"
        return None

    def finalize_target(self, target: Any, x_t: State, t: torch.Tensor) -> Any:
        """Post-process the normalized estimate (e.g. clip by norm). Default: unchanged."""
        return target

    @abstractmethod
    def loss(self, output: Any, target: Any, x_t: State, t: torch.Tensor) -> torch.Tensor:
        """Bregman-divergence regression loss per row, (B,), minimized at output ≙ target."""

    @abstractmethod
    def step_from_output(
        self, path: ConditionalPath, x: State, t: torch.Tensor, t_next: torch.Tensor, output: Any,
        generator: torch.Generator,
    ) -> State:
        """One explicit (Euler / Euler–Maruyama / τ-leaping) step from t to t_next given the
        network output at (x, t). t, t_next: (B,)."""

    def step(
        self, model: ModelFn, path: ConditionalPath, x: State, t: torch.Tensor, t_next: torch.Tensor,
        generator: torch.Generator,
    ) -> State:
        """One integration step; the default evaluates the model once (higher-order schemes override)."""
        return self.step_from_output(path, x, t, t_next, model(x, t), generator)

    def sample(self, model: ModelFn, path: ConditionalPath, n: int, steps: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> State:
        """Draw n samples: integrate from the prior (t = 0) to t = 1 on a uniform grid of ``steps``
        steps. A parametrization with an exact or cheaper simulation for some paths overrides this."""
        x = path.prior_sample(n, generator, device)
        grid = time_grid(path, steps, device)
        ones = torch.ones(n, device=device)
        for i in range(steps):
            x = self.step(model, path, x, grid[i] * ones, grid[i + 1] * ones, generator)
        return x

    def sampling_note(self, path: ConditionalPath, steps: int) -> str:
        """How :meth:`sample` simulates with ``steps``, for reports (override when it uses no steps)."""
        return f"{steps} integration steps"

    # ----------------------------------------------------------------- model likelihood (optional)
    #: whether :meth:`sample_with_log_prob` is implemented (for some paths; see :meth:`log_prob_unsupported`)
    supports_log_prob: bool = False

    def log_prob_unsupported(self, path: ConditionalPath) -> str | None:
        """None if :meth:`sample_with_log_prob` works with ``path``, else why not (one sentence)."""
        if not self.supports_log_prob:
            return f"generator {self.name!r} has no tractable probability of its samples"
        return None

    def sample_with_log_prob(self, model: ModelFn, path: ConditionalPath, n: int, steps: int,
                             generator: torch.Generator, device: torch.device | str = "cpu", **options: Any):
        """Draw n samples together with the model's log-probability of each: a
        :class:`~egm_framework.likelihood.LogProbSample` (x, log_q (n,) float64, exact, log_q_std, info).
        log_q may live in an extended space (e.g. given a network-independent schedule σ that is part
        of the simulation): exp(−E(x)) / q(x | σ) is then the exact importance weight. Optional:
        parametrizations that implement it set ``supports_log_prob = True``."""
        from ..likelihood import LikelihoodUnavailableError

        raise LikelihoodUnavailableError(self.log_prob_unsupported(path) or
                                         f"generator {self.name!r} does not implement sample_with_log_prob")

    def describe(self) -> dict:
        return {"name": self.name}


def time_grid(path: ConditionalPath, steps: int, device) -> torch.Tensor:
    t0, t1 = path.sample_time_range
    return torch.linspace(t0, t1, steps + 1, device=device, dtype=torch.float32)


@torch.no_grad()
def simulate(
    generator_param: GeneratorParametrization, model: ModelFn, path: ConditionalPath, n: int, steps: int,
    generator: torch.Generator, device: torch.device | str = "cpu",
) -> State:
    """Draw n samples by simulating the process from the prior (t = 0) to t = 1 (see
    :meth:`GeneratorParametrization.sample`). Every solver sees the model through
    :func:`within_training_range`, so the network is never evaluated at a time it was not trained on."""
    return generator_param.sample(within_training_range(model, path), path, n, steps, generator, device)


def within_training_range(model: ModelFn, path: ConditionalPath) -> ModelFn:
    """The model with its time argument clamped into ``path.train_time_range``: the sampler integrates
    over ``sample_time_range`` (e.g. [0, 1]) while training draws t from a narrower interval (cond-OT
    [0.01, 0.999]); outside it the network's output is an untrained extrapolation. A parametrization
    that converts the output with t-dependent coefficients still uses the true t for those."""
    lo, hi = (float(v) for v in path.train_time_range)

    def clamped(x: State, t: torch.Tensor):
        return model(x, t.clamp(lo, hi))
    return clamped
