"""Energies: values, exact samplers, MALA ground truth, metrics and figures."""

import math

import numpy as np
import pytest
import torch

from egm_continuous.energies import DoubleWellEnergy, GaussianEnergy, GMM25Energy, GMM40Energy
from egm_framework.mcmc import mala
from egm_continuous.metrics import mode_metrics, w1_1d, w2_1d, x_w2

#: long-run reference for DW-4 (T = 1): MALA, 4000 chains, burn-in 5000, 40000 kept states -> <E> = −9.750 ± 0.008,
#: <r_ij> = 3.971; an independent random-walk Metropolis run (4000 chains, 20000 steps) gave −9.751 and 3.974.
DW4_MEAN_ENERGY = -9.75
DW4_MEAN_DISTANCE = 3.97


def test_gmm25_exact_sampler_modes(gen):
    e = GMM25Energy()
    assert e.means.shape == (25, 2)
    assert sorted(set(e.means[:, 0].tolist())) == [-10.0, -5.0, 0.0, 5.0, 10.0]
    x = e.ground_truth(25_000, gen)
    assert x.shape == (25_000, 2)
    m = mode_metrics(x, e.means, e.weights)
    assert m["mode_coverage"] == 1.0 and m["mode_weight_tv"] < 0.03
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.15)
    assert torch.allclose(x.var(0), torch.full((2,), 51.0), rtol=0.03)  # grid variance 50 + σ² = 1
    # samples from one mode only: coverage 1/25 and TV 24/25
    one = e.means[7] + 0.5 * torch.randn(1000, 2, generator=gen)
    m1 = mode_metrics(one, e.means, e.weights)
    assert m1["mode_coverage"] == pytest.approx(1 / 25) and m1["mode_weight_tv"] > 0.9


def test_gmm_energy_is_normalized_and_matches_mixture_density():
    e = GMM25Energy()
    xs = torch.linspace(-18, 18, 721, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, xs, indexing="ij")
    grid = torch.stack([X.reshape(-1), Y.reshape(-1)], 1)
    p = torch.exp(-e(grid))
    z = torch.trapezoid(torch.trapezoid(p.reshape(721, 721), xs, dim=1), xs)
    assert abs(float(z) - 1.0) < 1e-3
    x = torch.tensor([[0.3, -4.2]])
    dens = sum(math.exp(-0.5 * float(((x - mu) ** 2).sum())) / (2 * math.pi) / 25 for mu in e.means)
    assert float(e(x)) == pytest.approx(-math.log(dens), rel=1e-5)


def test_gmm40_means_follow_seeded_uniform():
    e = GMM40Energy()
    torch.manual_seed(0)
    expected = (torch.rand(40, 2) - 0.5) * 2 * 40
    assert torch.equal(e.means, expected)
    assert e.means.abs().max() <= 40 and e.std == 1.0 and e.space_spec == ("euclidean", {"dim": 2, "feature_scale": 1 / 40})


def test_gaussian_energy_and_sampler(gen):
    cov = [[2.0, 0.6], [0.6, 1.0]]
    e = GaussianEnergy(dim=2, mean=[1.0, -1.0], cov=cov)
    x = torch.tensor([[2.0, 0.0]])
    z = torch.tensor([1.0, 1.0])
    expected = 0.5 * float(z @ torch.linalg.inv(torch.tensor(cov)) @ z)
    assert float(e(x)) == pytest.approx(expected, rel=1e-5)
    s = e.ground_truth(40_000, gen)
    assert torch.allclose(torch.cov(s.T), torch.tensor(cov), atol=0.05)
    with pytest.raises(ValueError):
        GaussianEnergy(dim=2, cov=[[1.0, 2.0], [2.0, 1.0]])


def test_dw4_energy_hand_computed():
    e = DoubleWellEnergy()
    assert e.space_spec == ("euclidean", {"n_particles": 4, "spatial_dim": 2, "zero_com": True})
    # square of side 4: four sides at r = d0 contribute 0, two diagonals at r = 4√2
    sq = torch.tensor([[-2.0, -2.0, 2.0, -2.0, 2.0, 2.0, -2.0, 2.0]])
    dlt = 4 * math.sqrt(2) - 4
    expected = 0.5 * 2 * (-4 * dlt ** 2 + 0.9 * dlt ** 4)  # = −4.198...
    assert float(e(sq)) == pytest.approx(expected, rel=1e-5)
    # all particles on a line at spacing 1: distances 1 (×3), 2 (×2), 3 (×1)
    line = torch.tensor([[0.0, 0, 1, 0, 2, 0, 3, 0]])
    u = sum(k * (-4 * (r - 4) ** 2 + 0.9 * (r - 4) ** 4) for r, k in ((1, 3), (2, 2), (3, 1)))
    assert float(e(line)) == pytest.approx(0.5 * u, rel=1e-5)
    assert float(DoubleWellEnergy(temperature=2.0)(line)) == pytest.approx(0.25 * u, rel=1e-5)


def test_dw4_invariances(gen):
    e = DoubleWellEnergy()
    x = torch.randn(5, 8, generator=gen) * 2
    th = 0.7
    R = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    p = x.view(5, 4, 2)
    rot = (p @ R.T + torch.tensor([3.0, -1.0])).reshape(5, 8)
    perm = p[:, [2, 0, 3, 1]].reshape(5, 8)
    assert torch.allclose(e(x), e(rot), rtol=1e-4, atol=1e-4)
    assert torch.allclose(e(x), e(perm))


def test_mala_on_gaussian(gen):
    e = GaussianEnergy(dim=3, mean=[1.0, 0.0, -2.0], std=[0.5, 1.0, 2.0])
    res = mala(e, torch.zeros(400, 3), 4000, gen, burn_in=400, thin=10, step_size=0.1)
    assert res.samples.shape == (4000, 3)
    assert torch.allclose(res.samples.mean(0), torch.tensor([1.0, 0.0, -2.0]), atol=0.15)
    assert torch.allclose(res.samples.std(0), torch.tensor([0.5, 1.0, 2.0]), rtol=0.08)
    assert 0.4 < res.acceptance < 0.8


def test_dw4_mala_ground_truth_short(gen):
    e = DoubleWellEnergy(gt_chains=500, gt_burn_in=600, gt_thin=10)
    x = e.ground_truth(1000, gen)
    assert x.shape == (1000, 8)
    assert e.space_spec[1]["zero_com"] and x.view(1000, 4, 2).mean(1).abs().max() < 1e-4
    assert 0.45 < e.last_gt_acceptance < 0.75
    assert float(e(x).mean()) == pytest.approx(DW4_MEAN_ENERGY, abs=0.35)
    assert float(e.distances(x).mean()) == pytest.approx(DW4_MEAN_DISTANCE, abs=0.1)
    assert "MALA" in e.ground_truth_method


def test_metrics_exact_values(gen):
    a = torch.randn(300, 2, generator=gen)
    assert x_w2(a, a + torch.tensor([3.0, 4.0])) == pytest.approx(5.0, rel=1e-6)  # a translation is optimal
    assert x_w2(a, a[torch.randperm(300, generator=gen)]) == pytest.approx(0.0, abs=1e-6)
    scipy_stats = pytest.importorskip("scipy.stats")
    u, v = torch.randn(500, generator=gen), 1 + 2 * torch.randn(300, generator=gen)
    assert w1_1d(u, v) == pytest.approx(scipy_stats.wasserstein_distance(u.numpy(), v.numpy()), rel=1e-6)
    assert w2_1d(u, u + 0.5) == pytest.approx(0.5, rel=1e-5)


def test_extra_metrics_and_figures(tmp_path, gen):
    e = GMM25Energy()
    a, b = e.ground_truth(500, gen), e.ground_truth(500, gen)
    m = e.extra_metrics(a, b)
    assert set(m) == {"mode_coverage", "mode_weight_tv", "x_w2"} and m["mode_coverage"] == 1.0
    assert all(np.isfinite(v) for v in m.values())
    files = e.figures(a, b, tmp_path)
    assert files and (tmp_path / files[0]).stat().st_size > 1000
    dw = DoubleWellEnergy(gt_chains=200, gt_burn_in=200, gt_thin=5)
    x, y = dw.ground_truth(200, gen), dw.ground_truth(200, gen)
    m = dw.extra_metrics(x, y)
    assert set(m) == {"dist_w1", "x_w2"} and m["dist_w1"] < 0.5
    assert (tmp_path / dw.figures(x, y, tmp_path)[0]).exists()
    assert set(dw.observables(x)) == {"mean_distance"}
