"""MCMC baselines on categorical spaces: parallel Gibbs and Swendsen–Wang (``egm compare``).

Both reuse the lattice samplers of :mod:`egm_discrete.ground_truth` (token-Potts form); Gibbs also
runs on any other categorical energy as a systematic scan that evaluates the energy at every
candidate token (:func:`egm_framework.baselines.gibbs_site_sweep`). Cost convention (see
:mod:`egm_framework.baselines`): a site update with q tokens costs q energy evaluations; a
Swendsen–Wang sweep is charged as one Gibbs sweep, q·L² per chain.
"""

from __future__ import annotations

from egm_framework.baselines import Baseline, BaselineNotApplicable, gibbs_site_sweep

from .ground_truth import gibbs_sweep, swendsen_wang_sweep, torus_colouring
from .space import CategoricalSpace


def _lattice_model(energy):
    tp = getattr(energy, "token_potts", None)
    if tp is None:
        return None
    try:
        return tp()
    except NotImplementedError:
        return None


class GibbsBaseline(Baseline):
    """Parallel Gibbs: colour classes of the torus at once (checkerboard for even L, 3 colours for odd
    L) on Ising/Potts lattices; a systematic site scan on any other categorical energy. q evaluations
    per site update."""

    def __init__(self, energy, space):
        super().__init__(energy, space)
        if not isinstance(space, CategoricalSpace):
            raise BaselineNotApplicable(f"gibbs needs a categorical state space, got {type(space).__name__}")
        self.model = _lattice_model(energy)
        self.vocab = space.vocab
        self.colours = torus_colouring(self.model.L) if self.model is not None else None

    def init(self, x0, generator):
        super().init(x0, generator)
        if self.colours is not None:
            self.colours = self.colours.to(x0.device)

    def _sweep(self, generator):
        x = self.state
        if self.model is not None:
            self.state = gibbs_sweep(x, self.model, self.colours, generator)
            self._count(x.shape[0] * self.model.q * self.model.L * self.model.L)
        else:
            self.state, n = gibbs_site_sweep(x, lambda t, rows: self.energy(t), self.vocab, generator)
            self._count(n)

    def describe(self) -> str:
        if self.model is None:
            return "Gibbs, systematic scan over sites (black-box energy), q evaluations per site update"
        L = self.model.L
        how = "checkerboard" if L % 2 == 0 else f"{self.colours.shape[0]}-colouring"
        return f"parallel Gibbs, {how} of the {L}×{L} torus, q = {self.model.q} evaluations per site update"


class SwendsenWangBaseline(Baseline):
    """Swendsen–Wang cluster updates for ferromagnetic Ising/Potts lattices, charged as one Gibbs
    sweep (q·L² evaluations per chain)."""

    def __init__(self, energy, space):
        super().__init__(energy, space)
        self.model = _lattice_model(energy)
        if self.model is None:
            raise BaselineNotApplicable("swendsen_wang needs an Ising/Potts lattice energy (token_potts form)")
        if self.model.K < 0:
            raise BaselineNotApplicable("swendsen_wang needs a ferromagnetic coupling (J ≥ 0)")

    def _sweep(self, generator):
        x = self.state
        self.state = swendsen_wang_sweep(x, self.model, generator)
        self._count(x.shape[0] * self.model.q * self.model.L * self.model.L)

    def describe(self) -> str:
        return (f"Swendsen–Wang on the {self.model.L}×{self.model.L} torus, charged q·L² = "
                f"{self.model.q * self.model.L ** 2} evaluations per chain and sweep")


__all__ = ["GibbsBaseline", "SwendsenWangBaseline"]
