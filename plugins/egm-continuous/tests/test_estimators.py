"""SNIS (r = 1) and bootstrapped (r = t + 0.1, exact E_r) estimates of the marginal velocity / drift
match the closed-form marginal generator of a Gaussian target at K = 20000."""

import pytest
import torch

from egm_framework.estimators import estimate_marginal
from egm_continuous.energies import GaussianEnergy
from egm_continuous.generators import DiffusionGenerator, FlowGenerator
from egm_continuous.paths import CondOTPath, VEPath
from egm_continuous.space import EuclideanSpace
from gaussian_truth import GaussianTruth

MEAN = [0.8, -0.5]
STD = [0.7, 1.3]
K = 20000


def _path(kind):
    space = EuclideanSpace(dim=2)
    if kind == "cond_ot_s3":  # the scaled prior N(0, 9 I)
        return CondOTPath(space, sigma0=3.0)
    return CondOTPath(space) if kind == "cond_ot" else VEPath(space, sigma_min=0.01, sigma_max=2.0)


def _points(truth, gen, gp=None):
    t = torch.tensor([0.15, 0.3, 0.5, 0.65, 0.8, 0.9])
    return truth.sample_t(len(t), t, gen), t


def _tolerance(gp, truth, path, t, r, est):
    """5 standard errors of the SNIS estimate + 1e-3.

    The target is α x_r + β x, so its posterior standard deviation is |α| · sd(x_r | x_t), with the
    Gaussian posterior variance 1 / (1/var_r + a²/v) (p_r = N(·, var_r), bridge N(a x_r, v)); the SNIS
    standard error is that over √(K · ESS)."""
    alpha = gp.target_affine(path, t, r)[0]
    _, var_r = truth.moments(r)
    a, _, v, _ = path.coefficients(t, r)
    post_var = 1.0 / (1.0 / var_r + (a * a / v)[:, None])
    se = alpha.abs()[:, None] * post_var.sqrt() / torch.sqrt(K * est.ess)[:, None]
    return 5 * se + 1e-3


def _expected(gp, truth, x, t, path):
    if gp.parametrization == "endpoint":
        return truth.endpoint(x, t) - x
    u = truth.velocity(x, t)
    if isinstance(gp, FlowGenerator):
        return u
    return u + 0.5 * gp.g2(path, t)[:, None] * truth.score(x, t)


V = {"parametrization": "velocity"}
CASES = [("cond_ot", FlowGenerator(**V)), ("cond_ot", DiffusionGenerator(g=1.0, **V)),
         ("ve", FlowGenerator(**V)), ("ve", DiffusionGenerator(g="ve", **V)), ("ve", DiffusionGenerator(g=0.5, **V)),
         ("cond_ot", FlowGenerator(parametrization="endpoint")), ("cond_ot_s3", FlowGenerator(**V)),
         ("cond_ot_s3", DiffusionGenerator(g=1.0, **V)), ("cond_ot_s3", FlowGenerator(parametrization="endpoint")),
         ("ve", DiffusionGenerator(g="ve", parametrization="endpoint"))]
IDS = [f"{k}-{g.name}-{getattr(g, 'g', '')}-{g.parametrization}" for k, g in CASES]


@pytest.mark.parametrize("kind,gp", CASES, ids=IDS)
def test_snis_matches_closed_form(kind, gp, gen):
    path = _path(kind)
    truth = GaussianTruth(path, MEAN, STD)
    energy = GaussianEnergy(dim=2, mean=MEAN, std=STD)
    x, t = _points(truth, gen, gp)
    r = torch.ones_like(t)
    est = estimate_marginal(path, gp, lambda xs, r: energy(xs), x, t, r, K, gen)
    expected = _expected(gp, truth, x, t, path)
    err = (est.target - expected).abs()
    tol = _tolerance(gp, truth, path, t, r, est)
    assert torch.all(err <= tol), (err / tol, est.ess)


@pytest.mark.parametrize("kind,gp", CASES, ids=IDS)
def test_bootstrap_with_exact_intermediate_energy(kind, gp, gen):
    path = _path(kind)
    truth = GaussianTruth(path, MEAN, STD)
    x, t = _points(truth, gen, gp)
    r = torch.clamp(t + 0.1, max=1.0)
    est = estimate_marginal(path, gp, truth.energy_at, x, t, r, K, gen)
    expected = _expected(gp, truth, x, t, path)
    err = (est.target - expected).abs()
    tol = _tolerance(gp, truth, path, t, r, est)
    assert torch.all(err <= tol), (err / tol, est.ess)
    assert torch.all(est.ess > 0.05)


def test_weighted_target_is_linear_in_w(gen):
    path = _path("cond_ot")
    x = torch.randn(3, 2, generator=gen)
    t = torch.tensor([0.2, 0.5, 0.9])
    r = torch.tensor([0.3, 0.6, 1.0])
    xr = path.propose(x, t, r, 5, gen)
    w1, w2 = torch.rand(3, 5, generator=gen), torch.rand(3, 5, generator=gen)
    for gp in (FlowGenerator(**V), DiffusionGenerator(g=0.7, **V)):
        a = gp.weighted_target(path, x, t, xr, r, w1 + 2 * w2)
        b = gp.weighted_target(path, x, t, xr, r, w1) + 2 * gp.weighted_target(path, x, t, xr, r, w2)
        assert torch.allclose(a, b, atol=1e-4)
        # equals the explicit per-proposal sum of conditional targets
        u = path.conditional_velocity(x, t, xr, r)
        if isinstance(gp, DiffusionGenerator):
            u = u + 0.5 * 0.49 * path.conditional_score(x, t, xr, r)
        assert torch.allclose(a, ((w1 + 2 * w2)[..., None] * u).sum(1), atol=1e-4)


def test_log_marginal_matches_gaussian_density(gen):
    """log mean weight + log Z_{1|t} estimates log p_t(x) up to a constant (same for all x at a fixed t)."""
    path = _path("cond_ot")
    truth = GaussianTruth(path, MEAN, STD)
    energy = GaussianEnergy(dim=2, mean=MEAN, std=STD)
    t = torch.full((6,), 0.6)
    x = truth.sample_t(6, t, gen)
    est = estimate_marginal(path, None, lambda xs, r: energy(xs), x, t, torch.ones_like(t), K, gen)
    exact = -truth.energy_at(x, t)
    diff = est.log_marginal - exact
    assert float(diff.max() - diff.min()) < 0.05


@pytest.mark.parametrize("kind", ["cond_ot", "ve"])
def test_endpoint_target_is_the_velocity_target_in_closed_form(kind, gen):
    """For any weights, the endpoint target D = x̂_1 − x turned into a velocity by the closed form
    α_1 (x + D) + β_1 x equals the velocity parametrization's target, for bridges to r < 1 as well;
    at r = 1 it is the convex combination Σ_k w_k x_1^k / Σ_k w_k minus x."""
    path = _path(kind)
    x = torch.randn(4, 2, generator=gen)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    r = torch.tensor([0.2, 0.45, 1.0, 1.0])
    xr = path.propose(x, t, r, 7, gen)
    w = torch.rand(4, 7, generator=gen)
    vel, end = FlowGenerator(**V), FlowGenerator(parametrization="endpoint")
    u = vel.weighted_target(path, x, t, xr, r, w) / w.sum(1, keepdim=True)
    d = end.weighted_target(path, x, t, xr, r, w) / w.sum(1, keepdim=True)
    assert torch.allclose(end.field(path, x, t, d), u, rtol=1e-4, atol=1e-3)
    hull = (w[..., None] * xr).sum(1) / w.sum(1, keepdim=True) - x
    assert torch.allclose(d[2:], hull[2:], atol=1e-5)


@pytest.mark.parametrize("kind,gp", CASES, ids=IDS)
def test_teacher_target_with_exact_teacher_and_energy(kind, gp, gen):
    """Bridge proposals to r = t + 0.1 with the exact E_r, and the exact network output at (x_r, r) as
    teacher: every proposal contributes the r = 1 target of E[x_1 | x_r], and the estimate is the exact
    marginal field at t (within the bridge estimate's own tolerance: it averages out more)."""
    path = _path(kind)
    truth = GaussianTruth(path, MEAN, STD)
    x, t = _points(truth, gen, gp)
    r = torch.clamp(t + 0.1, max=0.999)
    teacher = lambda xr, rr: _expected(gp, truth, xr, rr, path)  # noqa: E731
    est = estimate_marginal(path, gp, truth.energy_at, x, t, r, K, gen, teacher_fn=teacher)
    expected = _expected(gp, truth, x, t, path)
    err = (est.target - expected).abs()
    tol = _tolerance(gp, truth, path, t, r, est)
    assert torch.all(err <= tol), (err / tol, est.ess)
    # the teacher changes what each proposal says: with a wrong teacher the estimate is off
    off = estimate_marginal(path, gp, truth.energy_at, x, t, r, K, gen,
                            teacher_fn=lambda xr, rr: teacher(xr, rr) + 1.0)
    assert (off.target - expected).abs().max() > 0.1
