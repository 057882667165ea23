"""Bridges compose (Chapman–Kolmogorov), proposals are normalized, conditional velocity / score are right."""

import math

import pytest
import torch

from egm_continuous.paths import CondOTPath, VEPath
from egm_continuous.space import EuclideanSpace


def make(kind, **space_kw):
    space = EuclideanSpace(**(space_kw or {"dim": 2}))
    return CondOTPath(space) if kind == "cond_ot" else VEPath(space, sigma_min=0.01, sigma_max=2.0)


@pytest.mark.parametrize("kind", ["cond_ot", "ve"])
@pytest.mark.parametrize("t,r", [(0.2, 0.5), (0.5, 0.9), (0.7, 0.75), (0.4, 1.0)])
def test_chapman_kolmogorov(kind, t, r, gen):
    """x_r ~ p_{r|1}(·|x_1), then x_t ~ p_{t|r}(·|x_r) has the mean and variance of p_{t|1}(·|x_1)."""
    path = make(kind)
    n = 200_000
    x1 = torch.tensor([[1.5, -2.0]]).expand(n, 2)
    tt, rr = torch.full((n,), t), torch.full((n,), r)
    xr = path.sample_bridge(x1, rr, torch.ones(n), gen)
    xt = path.sample_bridge(xr, tt, rr, gen)
    direct = path.sample_xt(x1, tt, gen)
    a, _, v, _ = path.coefficients(tt[:1], torch.ones(1))
    exp_mean, exp_var = a * x1[0], v.expand(2)
    for sample in (xt, direct):
        assert torch.allclose(sample.mean(0), exp_mean, atol=4 * float(v.sqrt()) / math.sqrt(n) + 1e-4)
        assert torch.allclose(sample.var(0), exp_var, rtol=0.02, atol=1e-6)


@pytest.mark.parametrize("kind", ["cond_ot", "ve"])
@pytest.mark.parametrize("t,r", [(0.1, 0.3), (0.5, 0.8), (0.6, 1.0), (0.9, 0.95)])
def test_log_normalizer_by_quadrature_1d(kind, t, r):
    """log Z_{r|t}(x_t) = log ∫ p_{t|r}(x_t | x_r) dx_r, by trapezoidal integration over x_r in 1-D."""
    path = make(kind, dim=1)
    x_t = torch.tensor([[0.37]], dtype=torch.float64)
    tt, rr = torch.tensor([t]), torch.tensor([r])
    a, _, v, _ = path.coefficients(tt, rr)
    center, width = float(x_t) / float(a), 12 * math.sqrt(float(v)) / float(a)
    grid = torch.linspace(center - width, center + width, 200_001, dtype=torch.float64)
    a64, v64 = float(a), float(v)
    dens = torch.exp(-0.5 * (0.37 - a64 * grid) ** 2 / v64) / math.sqrt(2 * math.pi * v64)
    z = torch.trapezoid(dens, grid)
    assert abs(math.log(float(z)) - float(path.log_normalizer(x_t.float(), tt, rr))) < 1e-4


@pytest.mark.parametrize("kind", ["cond_ot", "ve"])
def test_proposal_is_the_bridge_read_in_x_r(kind, gen):
    """q(x_r|x_t) ∝ p_{t|r}(x_t|x_r): mean x_t/a, variance v/a²; samples agree in mean and variance,
    and log p_{t|r}(x_t|x_r) − log q(x_r|x_t) = log Z is constant in x_r."""
    path = make(kind)
    x_t = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    t, r = torch.tensor([0.3, 0.6]), torch.tensor([0.5, 1.0])
    xr = path.propose(x_t, t, r, 100_000, gen)  # (2, n, 2)
    a, _, v, _ = path.coefficients(t, r)
    assert xr.shape == (2, 100_000, 2)
    assert torch.allclose(xr.mean(1), x_t / a[:, None], atol=0.02)
    assert torch.allclose(xr.var(1), (v / a ** 2)[:, None].expand(2, 2), rtol=0.02)
    # log p_{t|r}(x_t | x_r) − log q(x_r | x_t) for a few proposals
    few = xr[:, :5]
    lp = torch.stack([path.bridge_log_prob(x_t, t, few[:, k], r) for k in range(5)], 1)
    qvar = (v / a ** 2)[:, None]
    lq = -0.5 * ((few - (x_t / a[:, None])[:, None]) ** 2).sum(-1) / qvar - math.log(2 * math.pi) - torch.log(qvar)
    diff = lp - lq
    assert torch.allclose(diff, path.log_normalizer(x_t, t, r)[:, None].expand(2, 5), atol=1e-3)


@pytest.mark.parametrize("kind", ["cond_ot", "ve"])
def test_velocity_and_score_of_the_bridge(kind, gen):
    """u_t(x|x_r) is the time derivative of x_s = a(s,r) x_r + √v(s,r) ε at fixed ε (finite differences),
    and the score equals the autograd gradient of log p_{t|r}(x|x_r)."""
    path = make(kind)
    B = 5
    x_r = torch.randn(B, 2, generator=gen, dtype=torch.float64).float()
    eps = torch.randn(B, 2, generator=gen)
    t = torch.tensor([0.2, 0.35, 0.5, 0.6, 0.7])
    r = torch.tensor([0.4, 0.5, 1.0, 0.9, 0.8])
    h = 1e-3

    def xs(s):
        a, _, v, _ = path.coefficients(s, r)
        return a[:, None] * x_r + v.sqrt()[:, None] * eps

    fd = (xs(t + h) - xs(t - h)) / (2 * h)
    u = path.conditional_velocity(xs(t), t, x_r, r)
    assert torch.allclose(u, fd, rtol=2e-2, atol=2e-3)
    x = xs(t).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(path.bridge_log_prob(x, t, x_r, r).sum(), x)
    assert torch.allclose(path.conditional_score(xs(t), t, x_r, r), g, rtol=1e-4, atol=1e-4)


def test_cond_ot_velocity_at_r1_is_linear_formula(gen):
    path = make("cond_ot")
    x1 = torch.randn(4, 2, generator=gen)
    x = torch.randn(4, 2, generator=gen)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    u = path.conditional_velocity(x, t, x1, torch.ones(4))
    assert torch.allclose(u, (x1 - x) / (1 - t)[:, None], rtol=1e-4, atol=1e-4)


def test_bridge_variance_is_nonnegative_and_vanishes_at_r():
    for kind in ("cond_ot", "ve"):
        path = make(kind)
        t = torch.linspace(0.01, 0.99, 50)
        for dr in (0.0, 1e-4, 0.01, 0.3):
            r = torch.clamp(t + dr, max=1.0)
            _, _, v, _ = path.coefficients(t, r)
            assert torch.all(v >= 0)
            if dr == 0.0:
                assert torch.all(v.abs() < 1e-6)


def test_zero_com_paths_stay_in_subspace(gen):
    space = EuclideanSpace(n_particles=4, spatial_dim=2, zero_com=True)
    for path in (CondOTPath(space), VEPath(space)):
        x0 = path.prior_sample(16, gen)
        space.validate(x0)
        t = torch.full((16,), 0.5)
        xt = path.sample_xt(x0, t, gen)
        space.validate(xt)
        xr = path.propose(xt, t, torch.full((16,), 0.6), 7, gen)
        assert space.particles(xr).mean(-2).abs().max() < 1e-5
        assert torch.allclose(path.log_normalizer(xt, t, torch.ones(16)),
                              -6 * torch.log(path.coefficients(t, torch.ones(16))[0]))


def test_prior_and_time_ranges(gen):
    p = make("cond_ot")
    assert p.train_time_range == (0.01, 0.999) and p.sample_time_range == (0.0, 1.0)
    x0 = p.prior_sample(50_000, gen)
    assert torch.allclose(x0.var(0), torch.ones(2), rtol=0.03)
    ve = make("ve")
    x0 = ve.prior_sample(50_000, gen)
    assert torch.allclose(x0.var(0), torch.full((2,), 4.0 - 1e-4), rtol=0.03)
    assert float(ve.sigma2(torch.tensor([1.0]))) == 0.0
