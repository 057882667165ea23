"""Rao–Blackwellized ("conditional") denoiser targets: the energies' single-site conditionals, and the
estimator with them against the exact denoiser of an enumerable Ising model."""

import pytest
import torch

from egm_framework.estimators import SNISEstimator, estimate_marginal
from egm_framework.interfaces.energy import conditional_logits_by_substitution

from egm_discrete.energies import IsingEnergy, PottsEnergy
from egm_discrete.exact import enumerate_states, exact_denoiser
from egm_discrete.generator import JumpGenerator
from egm_discrete.paths import MaskedPath, UniformPath
from egm_discrete.space import CategoricalSpace


@pytest.mark.parametrize("energy", [IsingEnergy(L=2, beta=0.7, h=0.3), IsingEnergy(L=4, beta=0.44, J=-1.0, h=-0.2),
                                    PottsEnergy(L=2, q=3, beta=0.9), PottsEnergy(L=3, q=4, beta=1.1, J=0.5)])
def test_closed_form_conditionals_match_substitution(energy, gen):
    """The closed forms equal −E of every single-site substitution up to a per-site constant (the L = 2
    torus, with two bonds per neighbouring pair, included)."""
    x = torch.randint(0, energy.q, (6, energy.L, energy.L), generator=gen)
    got = torch.log_softmax(energy.conditional_logits(x).double(), -1)
    ref = torch.log_softmax(conditional_logits_by_substitution(energy, x, energy.q).double(), -1)
    assert got.shape == (6, energy.L, energy.L, energy.q)
    assert torch.allclose(got, ref, atol=1e-5)


ENERGY = IsingEnergy(L=3, beta=0.25, h=0.1)  # ESS/K ≈ 0.2 at t = 0.1
STATES = enumerate_states([3, 3], 2)
LOG_P = torch.log_softmax(-ENERGY(STATES).double(), 0)


def _points(path, t, gen, n=6):
    idx = torch.multinomial(LOG_P.exp(), n, replacement=True, generator=gen)
    tt = torch.full((n,), t)
    return path.sample_xt(STATES[idx], tt, gen), tt


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
@pytest.mark.parametrize("t", [0.1, 0.6])
def test_conditional_targets_recover_exact_denoiser(cls, t, gen):
    path, gp = cls(CategoricalSpace([3, 3], 2)), JumpGenerator()
    x_t, tt = _points(path, t, gen)
    est = estimate_marginal(path, gp, lambda x, r: ENERGY(x), x_t, tt, torch.ones_like(tt), 20000, gen,
                            chunk_size=4000, conditional_fn=ENERGY.conditional_logits)
    D = exact_denoiser(path, STATES, LOG_P, x_t, tt).float()
    active = path.active_sites(x_t)
    assert (est.target - D)[active].abs().max().item() < 0.02
    if (~active).any():
        assert est.target[~active].abs().max().item() == 0


def test_conditional_targets_have_smaller_finite_k_bias(gen):
    """At K = 4 (weights far from converged) the average of many estimates is biased; the conditional
    targets' average is clearly closer to the exact denoiser than the indicator targets' (mean absolute
    error over sites, masked path, t = 0.3)."""
    path, gp = MaskedPath(CategoricalSpace([3, 3], 2)), JumpGenerator()
    x_t, tt = _points(path, 0.3, gen, n=8)
    reps = 3000
    xs = x_t.repeat(reps, 1, 1)
    ts = tt.repeat(reps)
    D = exact_denoiser(path, STATES, LOG_P, x_t, tt).float()
    active = path.active_sites(x_t)
    errs = {}
    for name, cond in (("indicator", None), ("conditional", ENERGY.conditional_logits)):
        est = estimate_marginal(path, gp, lambda x, r: ENERGY(x), xs, ts, torch.ones_like(ts), 4, gen,
                                conditional_fn=cond)
        mean = est.target.view(reps, *x_t.shape, 2).mean(0)
        errs[name] = (mean - D)[active].abs().mean().item()
    assert errs["conditional"] < 0.7 * errs["indicator"], errs


def test_snis_estimator_counts_the_conditional_pass(gen):
    path, gp = MaskedPath(CategoricalSpace([3, 3], 2)), JumpGenerator()
    x_t, tt = _points(path, 0.5, gen, n=3)
    plain = SNISEstimator(path, gp, ENERGY, num_proposals=10)
    rb = SNISEstimator(path, gp, ENERGY, num_proposals=10, conditional_targets=True)
    plain.estimate(x_t, tt, gen)
    rb.estimate(x_t, tt, gen)
    assert plain.energy_evals == 30 and rb.energy_evals == 60
    rb.estimate(x_t, tt, gen, with_target=False)  # weight statistics only: no conditionals needed
    assert rb.energy_evals == 90
