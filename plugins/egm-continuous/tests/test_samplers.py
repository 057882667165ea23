"""Samplers driven by the EXACT marginal generator of a Gaussian target reproduce its mean and covariance.

Target N(m, diag(s²)), m = (0.8, −0.5), s = (0.7, 1.3), n = 20000 samples (Monte Carlo standard error of
the mean ≈ s/√n ≤ 0.01). Tolerances: |mean error| ≤ 0.05, relative variance error ≤ 6 %.
"""

import pytest
import torch

from egm_framework.interfaces import simulate
from egm_continuous.generators import DiffusionGenerator, FlowGenerator
from egm_continuous.paths import CondOTPath, VEPath
from egm_continuous.space import EuclideanSpace
from gaussian_truth import GaussianTruth

MEAN = torch.tensor([0.8, -0.5])
STD = torch.tensor([0.7, 1.3])
N = 20000


def _check(x):
    assert torch.all((x.mean(0) - MEAN).abs() < 0.05), x.mean(0)
    assert torch.all(((x.var(0) - STD ** 2) / STD ** 2).abs() < 0.06), x.var(0)
    assert abs(float(torch.corrcoef(x.T)[0, 1])) < 0.05


def _model(gp, truth, path):
    def model(x, t):
        u = truth.velocity(x, t)
        if isinstance(gp, DiffusionGenerator):
            u = u + 0.5 * gp.g2(path, t)[:, None] * truth.score(x, t)
        return u
    return model


V = {"parametrization": "velocity"}


@pytest.mark.parametrize("gp,steps", [(FlowGenerator(solver="euler", **V), 200), (FlowGenerator(solver="heun", **V), 20),
                                      (DiffusionGenerator(g=1.0, **V), 300)], ids=["euler", "heun", "em"])
def test_cond_ot_samplers_exact_generator(gp, steps, gen):
    path = CondOTPath(EuclideanSpace(dim=2))
    truth = GaussianTruth(path, MEAN, STD)
    x = simulate(gp, _model(gp, truth, path), path, N, steps, gen)
    _check(x)


@pytest.mark.parametrize("gp,steps", [(FlowGenerator(solver="heun", **V), 100), (DiffusionGenerator(g="ve", **V), 400)],
                         ids=["heun", "em-ve"])
def test_ve_samplers_exact_generator(gp, steps, gen):
    """VE: start from the exact p_0 = N(m, s² + σ_0²) (the path's N(0, σ_0²) prior is the usual approximation)."""
    path = VEPath(EuclideanSpace(dim=2), sigma_min=0.01, sigma_max=2.0)
    truth = GaussianTruth(path, MEAN, STD)
    model = _model(gp, truth, path)
    # σ_t² changes fastest near t = 0: a grid refined there (t_i = 1 − (1 − i/n)²)
    s = torch.linspace(0, 1, steps + 1)
    grid = 1 - (1 - s) ** 2
    x = truth.sample_t(N, torch.zeros(N), gen)
    ones = torch.ones(N)
    for i in range(steps):
        x = gp.step(model, path, x, grid[i] * ones, grid[i + 1] * ones, gen)
    _check(x)


def test_last_diffusion_step_is_noise_free(gen):
    path = CondOTPath(EuclideanSpace(dim=2))
    gp = DiffusionGenerator(g=3.0, **V)
    x = torch.zeros(4, 2)
    out = torch.ones(4, 2)
    last = gp.step_from_output(path, x, torch.full((4,), 0.9), torch.ones(4), out, gen)
    assert torch.allclose(last, torch.full((4, 2), 0.1))
    mid = gp.step_from_output(path, x, torch.full((4,), 0.5), torch.full((4,), 0.6), out, gen)
    assert not torch.allclose(mid, torch.full((4, 2), 0.1))
    tail = DiffusionGenerator(g=3.0, noise_free_tail=0.5, **V)
    assert torch.allclose(tail.step_from_output(path, x, torch.full((4,), 0.5), torch.full((4,), 0.6), out, gen),
                          torch.full((4, 2), 0.1))


def test_clip_norm_and_loss():
    gp = FlowGenerator(clip_norm=2.0, **V)
    target = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    clipped = gp.finalize_target(target, None, None)
    assert torch.allclose(clipped, torch.tensor([[1.2, 1.6], [0.3, 0.4]]))
    loss = gp.loss(torch.zeros(2, 2), clipped, None, None)
    assert torch.allclose(loss, torch.tensor([(1.44 + 2.56) / 2, (0.09 + 0.16) / 2]))
    assert gp.output_shapes(CondOTPath(EuclideanSpace(dim=3))) == torch.Size([3])


@pytest.mark.parametrize("kind", ["cond_ot", "ve"])
def test_endpoint_field_equals_velocity_and_drift_in_closed_form(kind, gen):
    """With the exact posterior mean E[x_1 | x_t] of a Gaussian target, the endpoint parametrization's
    velocity and diffusion drift equal the closed-form marginal velocity and drift."""
    space = EuclideanSpace(dim=2)
    path = CondOTPath(space) if kind == "cond_ot" else VEPath(space, sigma_min=0.01, sigma_max=2.0)
    truth = GaussianTruth(path, MEAN, STD)
    t = torch.linspace(0.02, 0.95, 9)  # float32: near t = 1 the O(1/(1 − t)) coefficient amplifies rounding
    x = truth.sample_t(9, t, gen)
    d = truth.endpoint(x, t) - x
    flow = FlowGenerator(parametrization="endpoint")
    u = truth.velocity(x, t)
    assert torch.allclose(flow.field(path, x, t, d), u, rtol=1e-4, atol=1e-4)
    for g in ((1.0, "ve") if kind == "ve" else (1.0, 0.3)):
        diff = DiffusionGenerator(g=g, parametrization="endpoint")
        drift = u + 0.5 * diff.g2(path, t)[:, None] * truth.score(x, t)
        assert torch.allclose(diff.field(path, x, t, d), drift, rtol=1e-4, atol=1e-3)


def _endpoint_model(truth):
    return lambda x, t: truth.endpoint(x, t) - x


E = {"parametrization": "endpoint"}


@pytest.mark.parametrize("gp,steps", [(FlowGenerator(solver="euler", **E), 200), (FlowGenerator(solver="heun", **E), 20),
                                      (DiffusionGenerator(g=1.0, **E), 300)], ids=["euler", "heun", "em"])
def test_cond_ot_samplers_exact_endpoint(gp, steps, gen):
    path = CondOTPath(EuclideanSpace(dim=2))
    truth = GaussianTruth(path, MEAN, STD)
    _check(simulate(gp, _endpoint_model(truth), path, N, steps, gen))


class _TimeRecorder:
    def __init__(self, inner):
        self.inner, self.times = inner, []

    def __call__(self, x, t):
        self.times.append(t.detach().clone())
        return self.inner(x, t)


@pytest.mark.parametrize("kind", ["cond_ot", "ve"])
@pytest.mark.parametrize("gp", [FlowGenerator(solver="euler", **E), FlowGenerator(solver="heun", **E),
                                FlowGenerator(solver="heun", **V), DiffusionGenerator(g=1.0, **E)],
                         ids=["euler", "heun", "heun-velocity", "em"])
def test_no_solver_evaluates_the_network_outside_the_training_range(kind, gp, gen):
    """simulate() integrates over [0, 1] but the network only ever sees t in train_time_range (Heun's
    corrector at t = 1 used to hit the VE singularity); the samples stay finite."""
    space = EuclideanSpace(dim=2)
    path = CondOTPath(space) if kind == "cond_ot" else VEPath(space, sigma_min=0.01, sigma_max=2.0, t_min=0.005)
    truth = GaussianTruth(path, MEAN, STD)
    rec = _TimeRecorder(_endpoint_model(truth) if gp.parametrization == "endpoint" else _model(gp, truth, path))
    x = simulate(gp, rec, path, 64, 10, gen)
    ts = torch.cat(rec.times)
    lo, hi = torch.tensor(path.train_time_range, dtype=torch.float32)  # the float32 bounds training draws from
    assert ts.min() >= lo and ts.max() <= hi
    assert torch.isfinite(x).all()


def test_field_loss_weight_is_the_capped_velocity_error():
    """loss_weight = "field": the endpoint MSE times min(α_1(t)², 400) = the error of the velocity the
    sampler integrates (cond-OT: α_1 = 1/(1 − t)), capped near t = 1."""
    path = CondOTPath(EuclideanSpace(dim=2))
    gp = FlowGenerator(parametrization="endpoint", loss_weight="field")
    gp.output_shapes(path)
    t = torch.tensor([0.0, 0.5, 0.99])
    out, target = torch.zeros(3, 2), torch.ones(3, 2)
    assert torch.allclose(gp.loss(out, target, None, t), torch.tensor([1.0, 4.0, 400.0]))
    assert torch.allclose(FlowGenerator().loss(out, target, None, t), torch.ones(3))
    with pytest.raises(ValueError, match="loss_weight"):
        FlowGenerator(loss_weight="snr")


def test_ve_target_std_makes_the_prior_the_exact_marginal_of_a_gaussian_target(gen):
    """The VE prior N(0, σ_0²) is narrower than p_0 = N(0, s² + σ_0²); the exact flow carries that to the
    samples (std s σ_0 / √(σ_0² + s²), 15 % too narrow here). With target_std = s the prior is p_0
    and the exact flow from it reproduces the target."""
    s = 1.3
    for target_std, expected_std in ((0.0, s * 2.0 / (4.0 + s * s) ** 0.5), (s, s)):
        path = VEPath(EuclideanSpace(dim=2), sigma_min=0.01, sigma_max=2.0, target_std=target_std)
        assert path.prior_std() == pytest.approx((4.0 - 1e-4 + target_std ** 2) ** 0.5)
        truth = GaussianTruth(path, torch.zeros(2), torch.full((2,), s))
        x = simulate(FlowGenerator(solver="heun", **V), _model(FlowGenerator(**V), truth, path), path, N, 200, gen)
        assert torch.allclose(x.std(0), torch.full((2,), expected_std), rtol=0.03), (target_std, x.std(0))
        x0 = path.prior_sample(5, gen)
        expected = torch.distributions.Normal(0.0, path.prior_std()).log_prob(x0).sum(-1).double()
        assert torch.allclose(path.prior_log_prob(x0), expected, atol=1e-5)
    with pytest.raises(ValueError, match="target_std >= 0"):
        VEPath(EuclideanSpace(dim=2), target_std=-1.0)
