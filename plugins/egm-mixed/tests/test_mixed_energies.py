"""The mixed energies: definitions, exact samplers, the MALA / Metropolis-within-Gibbs ground truth."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from egm_framework.errors import ConfigError
from egm_framework.states import MixedState
from egm_mixed.energies import GaussBernoulliRBM, JointDW4, JointMoG
from egm_framework.mcmc import mala_step


# ------------------------------------------------------------------------------------------- gb_rbm
def test_gb_rbm_modes_match_enumeration():
    e = GaussBernoulliRBM()
    # hand enumeration: log w(h) = c·h + ‖Wh‖²/2 with c = −12, W = [[5,0,−5],[0,5,0]]
    W = np.array([[5.0, 0, -5], [0, 5, 0]])
    expected: dict[tuple, float] = {}
    for h in itertools.product([0, 1], repeat=3):
        m = tuple(W @ np.array(h))
        expected[m] = expected.get(m, 0.0) + math.exp(-12 * sum(h) + 0.5 * float(np.dot(m, m)))
    Z = sum(expected.values())
    assert len(expected) == 6 == len(e.mode_weights)
    for m, w in zip(e.mode_means, e.mode_weights):
        assert w == pytest.approx(expected[tuple(float(v) for v in m)] / Z, rel=1e-12)
    unnorm = {(0, 0): 1.0, (5, 0): math.exp(0.5), (-5, 0): math.exp(0.5), (0, 5): math.exp(0.5),
              (5, 5): math.e, (-5, 5): math.e}
    Zu = sum(unnorm.values())
    for m, w in zip(e.mode_means, e.mode_weights):
        assert w == pytest.approx(unnorm[tuple(int(v) for v in m)] / Zu, rel=1e-9)  # duplicates ~e^-24


def test_gb_rbm_energy_and_exact_sampler(gen):
    e = GaussBernoulliRBM()
    v = torch.tensor([[1.0, -2.0], [5.0, 5.0]])
    h = torch.tensor([[1, 0, 1], [1, 1, 0]])
    W = torch.tensor([[5.0, 0, -5], [0, 5, 0]])
    want = (v ** 2).sum(-1) / 2 + 12 * h.sum(-1) - ((v @ W) * h).sum(-1)
    torch.testing.assert_close(e(MixedState(v, h)), want)
    x = e.ground_truth(20000, gen)
    assert x.continuous.shape == (20000, 2) and x.discrete.dtype == torch.long
    m = e.extra_metrics(x, x)
    assert m["modes_found"] == 6 and len(e.mode_weights) == 6 and "modes_total" not in m
    assert m["mode_tv"] < 0.02 and m["hidden_tv"] < 0.02
    # a sampler that misses the three upper modes (0,5), (±5,5) is penalized (their mass is 0.62)
    keep = x.continuous[:, 1] < 2.5
    bad = MixedState(x.continuous[keep], x.discrete[keep])
    mb = e.extra_metrics(bad, x)
    assert mb["modes_found"] == 3 and mb["mode_tv"] > 0.5


def test_gb_rbm_parameters_validated(registry):
    with pytest.raises(ConfigError, match="sigma"):
        registry.create("energy", "gb_rbm", sigma=0)
    with pytest.raises(ConfigError, match="b must have shape"):
        registry.create("energy", "gb_rbm", b=[0.0, 0.0, 0.0])
    e = registry.create("energy", "gb_rbm", W=[[1.0, 2.0]], sigma=0.5)
    assert e.D == 1 and e.H == 2 and e.name == "gb_rbm"


# ------------------------------------------------------------------------------------------- joint_mog
def test_joint_mog_energy_sampler_metrics(gen):
    e = JointMoG(dim=3, sigma=0.3)
    x = torch.tensor([[1.0, -1.0, 0.0]])
    b = torch.tensor([[1, 1, 0]])
    assert float(e(MixedState(x, b))) == pytest.approx((0 + 4 + 1) / (2 * 0.09))
    s = e.ground_truth(4000, gen)
    m = e.extra_metrics(s, s)
    assert m["label_consistency"] > 0.99 and m["patterns_hit_fraction"] == 1.0 and m["ones_count_tv"] < 0.05
    flipped = MixedState(-s.continuous, s.discrete)
    assert e.extra_metrics(flipped, s)["label_consistency"] < 0.01


# ------------------------------------------------------------------------------------------- joint_dw4
def test_joint_dw4_energy_hand_computed():
    e = JointDW4()
    # particles on a unit-spaced line: 0, 1, 3, 6 (y = 0); types 0, 1, 1, 0
    pos = torch.tensor([[0.0, 0, 1, 0, 3, 0, 6, 0]])
    types = torch.tensor([[0, 1, 1, 0]])
    ab = {(0, 0): (0.8, -3.0), (0, 1): (0.4, -2.5), (1, 0): (0.4, -2.5), (1, 1): (0.6, -2.8)}
    xs, ts = [0, 1, 3, 6], [0, 1, 1, 0]
    want = 0.0
    for i in range(4):
        for j in range(i + 1, 4):
            a, b = ab[(ts[i], ts[j])]
            d = abs(xs[i] - xs[j]) - 2.0
            want += 0.5 * (a * d ** 4 + b * d ** 2)
    assert float(e(MixedState(pos, types))) == pytest.approx(want, rel=1e-6)
    assert e(MixedState(pos.view(1, 4, 2), types)).shape == (1,)  # (B, n, s) also accepted


def test_joint_dw4_gradient_matches_autograd():
    e = JointDW4()
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(7, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    types = torch.randint(0, 2, (7, 4), generator=g)
    u, grad = e.energy_and_grad(pos.detach(), types)
    e(MixedState(pos.reshape(7, 8), types)).sum().backward()
    torch.testing.assert_close(grad, pos.grad)
    torch.testing.assert_close(u, e(MixedState(pos.detach().reshape(7, 8), types)))


def test_mala_is_exact_on_a_gaussian_with_a_large_step():
    """N(1, 0.5²) with ε = 0.2: unadjusted Langevin would have variance σ²/(1 − ε/(2σ²)) = 0.4167;
    the corrected chain must hit mean 1 and variance 0.25."""
    mu, s2, eps = 1.0, 0.25, 0.2
    energy_grad = lambda x: (((x - mu) ** 2).sum(-1) / (2 * s2), (x - mu) / s2)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4000, 1, dtype=torch.float64)
    u, gr = energy_grad(x)
    acc_total, draws = 0.0, []
    for i in range(300):
        x, u, gr, acc = mala_step(x, u, gr, energy_grad, eps, g)
        if i >= 100:
            acc_total += float(acc.double().mean())
            if i % 10 == 0:
                draws.append(x.clone())
    d = torch.cat(draws).squeeze(-1)
    assert 0.3 < acc_total / 200 < 0.99
    assert float(d.mean()) == pytest.approx(mu, abs=0.01)
    assert float(d.var()) == pytest.approx(s2, rel=0.04)  # ULA would give 0.4167


def test_type_gibbs_matches_enumeration():
    """With positions frozen, repeated Gibbs sweeps over the types sample p(τ | x) ∝ exp(−U(x, τ))."""
    e = JointDW4()
    g = torch.Generator().manual_seed(3)
    pos0 = e.center(torch.tensor([[[0.0, 0.0], [1.2, 0.3], [2.5, -0.4], [0.7, 2.9]]], dtype=torch.float64))
    C = 20000
    pos = pos0.expand(C, 4, 2)
    types = torch.zeros(C, 4, dtype=torch.long)
    for _ in range(4):
        types = e.gibbs_types(pos, types, g)
    codes = (types * torch.tensor([8, 4, 2, 1])).sum(-1)
    emp = torch.bincount(codes, minlength=16).double() / C
    configs = torch.tensor(list(itertools.product([0, 1], repeat=4)))
    u = e(MixedState(pos0.reshape(1, 8).expand(16, 8), configs)).double()
    exact = torch.softmax(-u, 0)
    assert float(0.5 * (emp - exact).abs().sum()) < 0.02


def test_joint_dw4_ground_truth_small_run():
    e = JointDW4(n_chains=200, burn_in=200, thin=5)
    g = torch.Generator().manual_seed(0)
    s = e.ground_truth(400, g)
    assert s.continuous.shape == (400, 8) and s.discrete.shape == (400, 4)
    com = s.continuous.view(400, 4, 2).mean(1)
    assert float(com.abs().max()) < 1e-5
    assert 0.3 < e.last_run["acceptance"] < 0.85
    m = e.extra_metrics(s, s)
    assert m["distance_w1"] == 0.0 and m["n_type1_tv"] == 0.0
    assert e.ground_truth_method.startswith("Metropolis-within-Gibbs")


@pytest.mark.parametrize("name", ["gb_rbm", "joint_mog", "joint_dw4"])
def test_figures_and_space_spec(registry, name, tmp_path):
    kw = {"n_chains": 50, "burn_in": 20, "thin": 2} if name == "joint_dw4" else {}
    e = registry.create("energy", name, **kw)
    space_name, params = e.space_spec
    space = registry.create("state_space", space_name, **params)
    g = torch.Generator().manual_seed(0)
    x = e.ground_truth(100, g)
    space.validate(x)
    assert e(x).shape == (100,)
    for v in e.observables(x).values():
        assert v.shape == (100,)
    names = e.figures(x, x, tmp_path)
    assert names and all((tmp_path / n).is_file() for n in names)
