"""MALA baseline on Euclidean spaces (``egm compare``), built on the core's MALA step.

One sweep = one Metropolis-adjusted Langevin step on every chain (:func:`egm_framework.mcmc.mala_step`,
exact MH correction with the proposal densities both ways), costing one energy and one gradient
evaluation per chain. The step size ε is adapted towards ``target_accept`` (0.574, optimal for MALA)
with diminishing Robbins–Monro steps, so the chain stays asymptotically exact.
"""

from __future__ import annotations

from egm_framework.baselines import AdaptiveStep, Baseline, BaselineNotApplicable
from egm_framework.mcmc import energy_and_grad, mala_step

from .space import EuclideanSpace


class MALABaseline(Baseline):
    """MALA with step-size adaptation: one energy and one gradient evaluation per chain and sweep."""

    def __init__(self, energy, space, step_size: float = 0.01, target_accept: float = 0.574,
                 max_drift: float | None = None):
        super().__init__(energy, space)
        if not isinstance(space, EuclideanSpace):
            raise BaselineNotApplicable(f"mala needs a euclidean state space, got {type(space).__name__}")
        self.step_size, self.target_accept = AdaptiveStep.check(step_size, target_accept)
        self.max_drift = max_drift
        self.project = space.project if space.zero_com else None

    def _grad(self, x):
        return energy_and_grad(self.energy, x)

    def init(self, x0, generator):
        x0 = self.project(x0) if self.project is not None else x0
        super().init(x0, generator)
        self.u, self.g = self._grad(x0)
        self._count(x0.shape[0], grads=True)
        self.h = AdaptiveStep(self.step_size, self.target_accept, x0.device)

    def _sweep(self, generator):
        x = self.state
        self.state, self.u, self.g, acc = mala_step(x, self.u, self.g, self._grad, self.h.value.to(x.dtype),
                                                    generator, project=self.project, max_drift=self.max_drift)
        self._count(x.shape[0], grads=True)
        self.h.update(acc)

    def describe(self) -> str:
        return (f"MALA, ε adapted towards acceptance {self.target_accept} (diminishing steps); one energy and "
                "one gradient evaluation per chain and sweep")
