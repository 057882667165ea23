"""Ground-truth samplers against exact results (enumeration and the row transfer matrix)."""

import math

import pytest
import torch

from egm_discrete.energies import IsingEnergy, PottsEnergy
from egm_discrete.ground_truth import (enumerate_tokens, exact_distribution, torus_colouring,
                                       transfer_matrix_moments)


@pytest.mark.parametrize("L,beta,h", [(2, 0.3, 0.1), (3, 0.44, 0.0), (4, 0.25, -0.2)])
def test_transfer_matrix_matches_enumeration(L, beta, h):
    states, p = exact_distribution(L, beta, 1.0, h)
    s = (2 * states - 1).double()
    bonds = (s * s.roll(1, -1)).flatten(1).sum(-1) + (s * s.roll(1, -2)).flatten(1).sum(-1)
    e = beta * (-bonds - h * s.flatten(1).sum(-1))
    mean = (p * e).sum().item()
    var = (p * (e - mean) ** 2).sum().item()
    m, v = transfer_matrix_moments(L, beta, 1.0, h)
    assert m == pytest.approx(mean, rel=1e-8, abs=1e-9)
    assert v == pytest.approx(var, rel=1e-8, abs=1e-9)


def test_transfer_matrix_known_limits():
    assert transfer_matrix_moments(5, 0.0) == (0.0, 0.0)
    # very low temperature: ground state energy −2L²βJ
    m, v = transfer_matrix_moments(5, 5.0)
    assert m == pytest.approx(-2 * 25 * 5.0, rel=1e-6)


def test_colourings_are_proper():
    for L in (2, 3, 4, 5, 6, 7):
        col = torus_colouring(L)
        assert col.sum(0).eq(1).all()  # a partition
        for c in col:
            for dims in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
                assert not (c & c.roll(*dims)).any() or L == 1


def _moments_check(x, energy, L, beta, h, n_sigma=4.0):
    e = energy(x).double()
    m, v = transfer_matrix_moments(L, beta, 1.0, h)
    se = math.sqrt(v / len(e))
    assert abs(e.mean().item() - m) < n_sigma * se, (e.mean().item(), m, se)
    assert abs(e.var().item() - v) < 0.12 * v


def test_enumeration_sampler_matches_exact_probs(gen):
    E = IsingEnergy(L=2, beta=0.3, h=0.2)
    assert "exact" in E.ground_truth_method
    x = E.ground_truth(40000, gen)
    states, p = exact_distribution(2, 0.3, 1.0, 0.2)
    codes = (x.flatten(1) * (2 ** torch.arange(3, -1, -1))).sum(-1)
    freq = torch.bincount(codes, minlength=16).double() / len(x)
    assert 0.5 * (freq - p).abs().sum() < 0.02


def test_gibbs_even_L(gen):
    E = IsingEnergy(L=6, beta=0.3, gt_method="gibbs", gt_burn_in=150)
    assert "checkerboard" in E.ground_truth_method
    _moments_check(E.ground_truth(3000, gen), E, 6, 0.3, 0.0)


def test_gibbs_odd_L_with_field(gen):
    E = IsingEnergy(L=5, beta=0.3, h=0.1, gt_method="gibbs", gt_burn_in=150)
    assert "colouring" in E.ground_truth_method
    _moments_check(E.ground_truth(3000, gen), E, 5, 0.3, 0.1)


def test_swendsen_wang_near_critical(gen):
    E = IsingEnergy(L=6, beta=0.4407, gt_burn_in=40)
    assert "Swendsen" in E.ground_truth_method  # chosen automatically
    _moments_check(E.ground_truth(2000, gen), E, 6, 0.4407, 0.0)


def test_swendsen_wang_with_field_and_thinning(gen):
    E = IsingEnergy(L=5, beta=0.5, h=0.1, gt_method="swendsen_wang", gt_burn_in=30, gt_chains=500, gt_thin=3)
    x = E.ground_truth(2000, gen)
    assert x.shape == (2000, 5, 5) and x.dtype == torch.long
    _moments_check(x, E, 5, 0.5, 0.1, n_sigma=6.0)  # correlated within a chain: looser bound


@pytest.mark.parametrize("method", ["gibbs", "swendsen_wang"])
def test_potts_samplers_match_enumeration(gen, method):
    q, L, beta = 3, 3, 0.9
    E = PottsEnergy(L=L, q=q, beta=beta, gt_method=method, gt_burn_in=50)
    states = enumerate_tokens(L * L, q).view(-1, L, L)
    e_all = E(states).double()
    p = torch.softmax(-e_all, 0)
    mean = (p * e_all).sum().item()
    sd = math.sqrt((p * (e_all - mean) ** 2).sum().item())
    e = E(E.ground_truth(3000, gen)).double()
    assert abs(e.mean().item() - mean) < 4 * sd / math.sqrt(3000)


def test_potts_auto_method():
    assert "exact" in PottsEnergy(L=3, q=3, beta=0.5).ground_truth_method
    assert "Gibbs" in PottsEnergy(L=5, q=3, beta=0.2).ground_truth_method
    assert "Swendsen" in PottsEnergy(L=5, q=3, beta=1.0).ground_truth_method
