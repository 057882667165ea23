"""Metropolis-within-Gibbs baseline on product (continuous × discrete) spaces (``egm compare``).

One sweep on every chain: a MALA step on the continuous part given the tokens (exact MH correction,
:func:`egm_framework.mcmc.mala_step`; one energy and one gradient evaluation per chain; ε adapted with
diminishing steps), then a systematic-scan exact Gibbs sweep over the tokens given the continuous
part (:func:`egm_framework.baselines.gibbs_site_sweep`; q energy evaluations per site and chain).
Each part's update leaves p invariant, so their composition does.
"""

from __future__ import annotations

from egm_framework.baselines import AdaptiveStep, Baseline, BaselineNotApplicable, gibbs_site_sweep
from egm_framework.mcmc import energy_and_grad, mala_step
from egm_framework.states import MixedState

from .space import ProductSpace


class MwGBaseline(Baseline):
    """Metropolis-within-Gibbs: MALA on the continuous part, exact Gibbs on the tokens."""

    def __init__(self, energy, space, step_size: float = 0.01, target_accept: float = 0.574,
                 max_drift: float | None = None):
        super().__init__(energy, space)
        if not isinstance(space, ProductSpace):
            raise BaselineNotApplicable(f"mwg needs a product (mixed) state space, got {type(space).__name__}")
        self.vocab = int(space.discrete.vocab)
        self.project = getattr(space.continuous, "project", None) if getattr(space.continuous, "zero_com", False) \
            else None
        self.step_size, self.target_accept = AdaptiveStep.check(step_size, target_accept)
        self.max_drift = max_drift

    def _grad_given(self, d):
        return lambda c: energy_and_grad(lambda y: self.energy(MixedState(y, d)), c)

    def init(self, x0, generator):
        c = self.project(x0.continuous) if self.project is not None else x0.continuous
        super().init(MixedState(c, x0.discrete), generator)
        self.u, self.g = self._grad_given(x0.discrete)(c)
        self._count(c.shape[0], grads=True)
        self.h = AdaptiveStep(self.step_size, self.target_accept, c.device)

    def _sweep(self, generator):
        c, d = self.state
        c, _, _, acc = mala_step(c, self.u, self.g, self._grad_given(d), self.h.value.to(c.dtype), generator,
                                 project=self.project, max_drift=self.max_drift)
        self._count(c.shape[0], grads=True)
        self.h.update(acc)
        d, n = gibbs_site_sweep(d, lambda dd, rows: self.energy(MixedState(c[rows], dd)), self.vocab, generator)
        self._count(n)
        self.state = MixedState(c, d)
        # the tokens changed, so the kept energy and gradient of the continuous part are recomputed
        # (counted: one energy and one gradient per chain)
        self.u, self.g = self._grad_given(d)(c)
        self._count(c.shape[0], grads=True)

    def describe(self) -> str:
        return ("Metropolis-within-Gibbs: MALA on the continuous part (ε adapted towards "
                f"{self.target_accept}), exact systematic-scan Gibbs on the tokens (q evaluations per site)")
