"""MCMC baselines (kind ``baseline``): chains converge to exact answers on enumerable targets, and the
energy-evaluation counters match a hand count (and a counting wrapper around the energy)."""

from __future__ import annotations

import math

import pytest
import torch

from egm_framework.baselines import BaselineNotApplicable, initial_state
from egm_framework.registry import get_registry
from egm_framework.states import MixedState

torch.set_num_threads(1)


class Counting:
    """Wraps an energy; counts every state it is evaluated on."""

    def __init__(self, energy):
        self.energy, self.n = energy, 0

    def __call__(self, x):
        self.n += (x.continuous if isinstance(x, MixedState) else x).shape[0]
        return self.energy(x)

    def __getattr__(self, name):  # token_potts etc. of the wrapped energy
        return getattr(self.energy, name)


def _setup(energy_name, path_name, **params):
    reg = get_registry()
    energy = reg.create("energy", energy_name, **params)
    space_name, space_params = energy.space_spec
    space = reg.create("state_space", space_name, **dict(space_params))
    path = reg.create("path", path_name, space)
    return reg, energy, space, path


def _run(reg, name, energy, space, path, chains, sweeps, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = reg.create("baseline", name, energy, space)
    b.init(initial_state(path, space, chains, g, "cpu"), g)
    for _ in range(sweeps):
        b.sweep(g)
    return b


def _exact_lattice(energy, L, q):
    from egm_discrete.ground_truth import enumerate_tokens

    states = enumerate_tokens(L * L, q).view(-1, L, L)
    e = energy(states).double()
    p = torch.softmax(-e, 0)
    return states, e, p


def _assert_mean_close(samples: torch.Tensor, exact_mean: float, exact_var: float, what: str, z: float = 5.0):
    se = math.sqrt(exact_var / samples.numel())
    assert abs(float(samples.double().mean()) - exact_mean) < z * se + 1e-9, (what, float(samples.mean()), exact_mean, se)


@pytest.mark.parametrize("name,sweeps", [("gibbs", 30), ("swendsen_wang", 30), ("metropolis", 300)])
def test_ising_3x3_chains_reach_exact_energy_and_magnetization(name, sweeps):
    reg, energy, space, path = _setup("ising", "masked", L=3, beta=0.4)
    states, e, p = _exact_lattice(energy, 3, 2)
    absm = (2 * states - 1).double().flatten(1).mean(-1).abs()
    C = 4000
    b = _run(reg, name, energy, space, path, C, sweeps)
    x = b.state
    assert x.shape == (C, 3, 3) and x.dtype == torch.long and int(x.min()) >= 0 and int(x.max()) <= 1
    mE, vE = float((p * e).sum()), float((p * e * e).sum() - (p * e).sum() ** 2)
    mM, vM = float((p * absm).sum()), float((p * absm ** 2).sum() - (p * absm).sum() ** 2)
    _assert_mean_close(energy(x), mE, vE, f"{name} <E>")
    _assert_mean_close((2 * x - 1).double().flatten(1).mean(-1).abs(), mM, vM, f"{name} <|M|>")


@pytest.mark.parametrize("name,sweeps", [("gibbs", 40), ("swendsen_wang", 40), ("metropolis", 400)])
def test_potts_3x3_q3_chains_reach_exact_energy(name, sweeps):
    reg, energy, space, path = _setup("potts", "uniform", L=3, q=3, beta=0.8)
    states, e, p = _exact_lattice(energy, 3, 3)
    C = 4000
    b = _run(reg, name, energy, space, path, C, sweeps, seed=1)
    mE, vE = float((p * e).sum()), float((p * e * e).sum() - (p * e).sum() ** 2)
    _assert_mean_close(energy(b.state), mE, vE, f"{name} potts <E>")
    # the distribution of the majority fraction, not just a mean
    maj = energy.observables(states)["majority_fraction"].double()
    got = energy.observables(b.state)["majority_fraction"].double()
    for level in torch.unique(maj):
        pe = float(p[maj == level].sum())
        ps = float((got == level).double().mean())
        assert abs(ps - pe) < 5 * math.sqrt(pe * (1 - pe) / C) + 1e-3, (name, float(level), ps, pe)


def _small_rbm():
    return dict(W=[[1.5, 0.0, -1.5], [0.0, 1.5, 0.0]], c=[-1.0, -0.5, -1.0], sigma=1.0)


@pytest.mark.parametrize("name,sweeps", [("mwg", 150), ("metropolis", 600)])
def test_gb_rbm_chains_reach_exact_hidden_distribution_and_visible_mean(name, sweeps):
    reg, energy, space, path = _rbm_setup()
    C = 4000
    b = _run(reg, name, energy, space, path, C, sweeps, seed=2)
    v, h = b.state
    assert v.shape == (C, 2) and h.shape == (C, 3) and h.dtype == torch.long
    p_h = energy.hidden_logp.exp()                               # exact, by enumeration (2^3 states)
    idx = (h * torch.tensor([4, 2, 1])).sum(-1)                  # same order as hidden_configs
    freq = torch.bincount(idx, minlength=8).double() / C
    assert float((freq - p_h).abs().sum()) / 2 < 0.035, (name, freq, p_h)
    exact_v = (p_h[:, None] * energy.hidden_means).sum(0)        # E[v] = Σ_h p(h) (b + W h)
    var_v = (p_h[:, None] * (energy.hidden_means ** 2 + 1.0)).sum(0) - exact_v ** 2
    for d in range(2):
        _assert_mean_close(v[:, d], float(exact_v[d]), float(var_v[d]), f"{name} E[v_{d}]")


def _rbm_setup():
    reg = get_registry()
    energy = reg.create("energy", "gb_rbm", **_small_rbm())
    space_name, space_params = energy.space_spec
    space = reg.create("state_space", space_name, **dict(space_params))
    path = reg.create("path", "product", space, continuous="cond_ot", discrete="uniform")
    return reg, energy, space, path


def test_mala_reaches_exact_gaussian_moments():
    reg = get_registry()
    energy = reg.create("energy", "gaussian", dim=2, mean=[1.0, -2.0], std=[0.5, 2.0])
    space = reg.create("state_space", "euclidean", dim=2)
    path = reg.create("path", "cond_ot", space)
    b = _run(reg, "mala", energy, space, path, 4000, 300, seed=3)
    x = b.state
    for d, (m, s) in enumerate(((1.0, 0.5), (-2.0, 2.0))):
        _assert_mean_close(x[:, d], m, s * s, f"mala mean {d}")
        assert abs(float(x[:, d].std()) / s - 1) < 0.08, (d, float(x[:, d].std()))


def test_energy_counters_match_a_hand_count():
    reg, energy, space, path = _setup("ising", "masked", L=3, beta=0.3)
    C, n = 7, 5
    for name, per_sweep, init in (("gibbs", 2 * 9, 0), ("swendsen_wang", 2 * 9, 0), ("metropolis", 1, 1)):
        counted = Counting(energy)
        b = _run(reg, name, counted, space, path, C, n)
        assert b.energy_evals == C * (init + n * per_sweep), name
        assert b.grad_evals == 0 and b.sweeps == n
        if name == "metropolis":  # calls the energy: the wrapper agrees with the counter
            assert counted.n == b.energy_evals

    # the black-box Gibbs scan (no lattice structure): q evaluations per site update, checked by the wrapper
    class Opaque:
        def __init__(self, e):
            self.e = e

        def __call__(self, x):
            return self.e(x)

    counted = Counting(Opaque(energy))
    b = _run(reg, "gibbs", counted, space, path, C, n)
    assert b.energy_evals == counted.n == C * n * 2 * 9

    reg, rbm, space, path = _rbm_setup()
    for name, per_sweep, grads in (("mwg", 1 + 2 * 3 + 1, 2), ("metropolis", 2, 0)):
        counted = Counting(rbm)
        b = _run(reg, name, counted, space, path, C, n)
        assert b.energy_evals == counted.n == C * (1 + n * per_sweep), name
        assert b.grad_evals == (C * (1 + n * grads) if grads else 0), name

    g = reg.create("energy", "gaussian", dim=3)
    sp = reg.create("state_space", "euclidean", dim=3)
    counted = Counting(g)
    b = _run(reg, "mala", counted, sp, reg.create("path", "cond_ot", sp), C, n)
    assert b.energy_evals == b.grad_evals == counted.n == C * (1 + n)


def test_chains_start_from_the_path_prior_masks_filled():
    reg, energy, space, path = _setup("ising", "masked", L=4, beta=0.3)
    g = torch.Generator().manual_seed(0)
    x0 = initial_state(path, space, 500, g, "cpu")
    assert int(x0.max()) <= 1 and 0.4 < float(x0.double().mean()) < 0.6  # no mask token, uniform fill
    sp = reg.create("state_space", "euclidean", dim=2)
    pth = reg.create("path", "ve", sp, sigma_max=3.0, sigma_min=0.01)
    x0 = initial_state(pth, sp, 4000, g, "cpu")
    assert abs(float(x0.std()) - 3.0) < 0.1  # the VE prior N(0, σ_max² − σ_min²)


def test_not_applicable_baselines_say_why():
    reg, energy, space, path = _setup("ising", "masked", L=3, beta=0.3)
    for name in ("mala", "mwg"):
        with pytest.raises(BaselineNotApplicable, match="needs a"):
            reg.create("baseline", name, energy, space)
    g = reg.create("energy", "gaussian", dim=2)
    with pytest.raises(BaselineNotApplicable, match="Ising/Potts"):
        reg.create("baseline", "swendsen_wang", g, reg.create("state_space", "euclidean", dim=2))
