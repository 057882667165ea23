r"""The product space / path / generator composed from the installed continuous and discrete plugins.

Toy target (enumerable discrete part, Gaussian continuous part):

    E(x, b) = (x − m_b)² / (2 s_b²) + c_b,   x ∈ R, b ∈ {0,1}²,

so ∫ exp(−E) dx = √(2π s_b²) e^{−c_b}. With the ``ve`` path, p_{t|1}(x_t | x_1) = N(x_t; x_1, σ_t²), and the
``masked`` path (κ_t = t), the joint posterior of the end point given (x_t, b_t) is exact:

    π_b ∝ 1[b compatible with b_t] · e^{−c_b} √(2π s_b²) · N(x_t; m_b, σ_t² + s_b²),
    x_1 | b, x_t ~ N(μ_b, τ_b²),   μ_b = (x_t s_b² + m_b σ_t²)/(s_b² + σ_t²).

The marginal velocity of the VE flow is u_t(x_t) = (σ̇_t² / 2σ_t²) (x_t − E[x_1 | x_t, b_t]) and the
marginal denoiser of a masked site i is P(b_i = y | x_t, b_t) = Σ_b π_b 1[b_i = y].
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from egm_framework import hookimpl
from egm_framework.estimators import estimate_marginal
from egm_framework.interfaces import ConditionalPath, Energy, simulate
from egm_framework.states import MixedState

from _mixed_helpers import make_registry

CONFIGS = torch.tensor(list(itertools.product([0, 1], repeat=2)))  # (4, 2)
M = torch.tensor([-1.5, 0.5, 1.0, 2.5], dtype=torch.float64)  # m_b for b = 00, 01, 10, 11
S = torch.tensor([0.4, 0.7, 0.5, 0.3], dtype=torch.float64)  # s_b
C = torch.tensor([0.0, 0.8, -0.3, 1.2], dtype=torch.float64)  # c_b


class ToyEnergy(Energy):
    """The enumerable mixed toy above; x = MixedState((B, 1), (B, 2))."""

    @property
    def space_spec(self):
        return ("product", {"continuous": {"name": "euclidean", "dim": 1},
                            "discrete": {"name": "categorical", "shape": [2], "vocab": 2}})

    def __call__(self, x):
        c, d = x
        k = d[:, 0] * 2 + d[:, 1]
        m, s, cc = (v.to(c.dtype)[k] for v in (M, S, C))
        return (c[:, 0] - m) ** 2 / (2 * s ** 2) + cc

    def ground_truth(self, n, generator, device="cpu"):
        logw = -C + torch.log(S)
        k = torch.multinomial(torch.softmax(logw, 0).float(), n, replacement=True, generator=generator)
        x = M[k] + S[k] * torch.randn(n, generator=generator, dtype=torch.float64)
        return MixedState(x[:, None].float(), CONFIGS[k])


def build(registry, discrete_path="masked", parametrization="velocity"):
    e = ToyEnergy()
    name, params = e.space_spec
    space = registry.create("state_space", name, **params)
    path = registry.create("path", "product", space, continuous={"name": "ve"}, discrete={"name": discrete_path})
    gen = registry.create("generator", "product", continuous={"name": "flow", "parametrization": parametrization})
    return e, space, path, gen


def exact_targets(path, x_t: MixedState, t: torch.Tensor):
    """Exact marginal (velocity (B, 1), denoiser (B, 2, 2), posterior π (B, 4)) for the ve × masked toy."""
    ve = path.continuous
    s2t = ve.sigma2(t).double()  # σ_t²
    ds2 = ve.dsigma2_dt(t).double()
    x = x_t.continuous[:, 0].double()
    b_t = x_t.discrete
    mask = path.discrete.mask_token
    var = s2t[:, None] + S[None] ** 2  # (B, 4)
    logpi = -C[None] + torch.log(S)[None] - 0.5 * torch.log(var) - (x[:, None] - M[None]) ** 2 / (2 * var)
    compatible = ((b_t[:, None, :] == mask) | (b_t[:, None, :] == CONFIGS[None])).all(-1)
    logpi = torch.where(compatible, logpi, torch.full_like(logpi, -math.inf))
    pi = torch.softmax(logpi, dim=1)
    mu = (x[:, None] * S[None] ** 2 + M[None] * s2t[:, None]) / var
    post_mean = (pi * mu).sum(1)
    velocity = (ds2 / (2 * s2t) * (x - post_mean))[:, None]
    den = torch.stack([torch.stack([(pi * (CONFIGS[None, :, i] == y)).sum(1) for y in (0, 1)], -1)
                       for i in range(2)], 1)  # (B, 2 sites, 2 tokens)
    den = torch.where((b_t == mask)[..., None], den, torch.zeros_like(den))
    return velocity, den, pi, mu, var


def test_space_event_shape_validate_encoder(registry):
    e, space, path, gen = build(registry)
    assert space.event_shape == (torch.Size([1]), torch.Size([2]))
    assert space.dim == 3
    enc = space.encoder(embedding_dim=4)
    x = MixedState(torch.randn(5, 1), torch.randint(0, 3, (5, 2)))
    assert enc(x).shape == (5, enc.out_features) and enc.out_features == 1 + 2 * 4
    space.validate(MixedState(torch.randn(5, 1), torch.randint(0, 2, (5, 2))))
    with pytest.raises(ValueError, match="discrete part"):
        space.validate(MixedState(torch.randn(5, 1), torch.randn(5, 2)))
    with pytest.raises(ValueError, match="batch sizes"):
        space.validate(MixedState(torch.randn(4, 1), torch.randint(0, 2, (5, 2))))
    with pytest.raises(ValueError, match="MixedState"):
        space.validate(torch.randn(5, 3))


def test_bad_part_specs_are_config_errors(registry):
    from egm_framework.errors import ConfigError, UnknownComponentError

    with pytest.raises(ConfigError, match="continuous must be a table"):
        registry.create("state_space", "product", continuous={"dim": 1}, discrete={"name": "categorical"})
    with pytest.raises(UnknownComponentError, match="did you mean 'masked'"):
        build(registry, discrete_path="maskd")
    e, space, *_ = build(registry)
    with pytest.raises(ConfigError, match="weight"):
        registry.create("generator", "product", continuous_weight=-1)


def test_product_shapes_times_and_prior(registry, gen):
    e, space, path, g = build(registry)
    assert path.train_time_range == (0.0, 0.999) and path.sample_time_range == (0.0, 1.0)
    x0 = path.prior_sample(6, gen)
    assert x0.continuous.shape == (6, 1) and (x0.discrete == 2).all()
    x1 = e.ground_truth(6, gen)
    t = torch.full((6,), 0.5)
    xt = path.sample_xt(x1, t, gen)
    prop = path.propose(xt, t, torch.ones_like(t), 7, gen)
    assert prop.continuous.shape == (6, 7, 1) and prop.discrete.shape == (6, 7, 2)
    assert g.output_shapes(path) == (torch.Size([1]), torch.Size([2, 2]))


@pytest.mark.parametrize("r_value", [1.0, 0.7])
def test_log_normalizer_is_sum_of_parts_and_normalizes(registry, gen, r_value):
    """log Z = log Z^c + log Z^d, and numerically Z = Σ_b ∫ p_{t|r}(x_t | x_r, b_r) dx_r (masked: with
    the mask among the end points for r < 1)."""
    e, space, path, g = build(registry)
    x1 = e.ground_truth(8, gen)
    t = torch.full((8,), 0.4)
    r = torch.full((8,), r_value)
    xt = path.sample_xt(x1, t, gen)
    logz = path.log_normalizer(xt, t, r)
    parts = path.continuous.log_normalizer(xt.continuous, t, r) + path.discrete.log_normalizer(xt.discrete, t, r)
    torch.testing.assert_close(logz, parts)
    # closed forms: VE ∫ N(x_t; x_r, v) dx_r = 1; masked Σ over end points of Π_i p(b_t^i | b_r^i)
    kt, kr = 0.4, r_value
    alpha = kt / kr
    N, mask = 2, 2
    ends = [0, 1] if r_value == 1.0 else [0, 1, mask]
    z = []
    for row in xt.discrete:
        tot = 0.0
        for br in itertools.product(ends, repeat=2):
            p = 1.0
            for bt_i, br_i in zip(row.tolist(), br):
                if br_i == mask:
                    p *= 1.0 if bt_i == mask else 0.0
                elif bt_i == mask:
                    p *= 1 - alpha
                else:
                    p *= alpha if bt_i == br_i else 0.0
            tot += p
        z.append(math.log(tot))
    torch.testing.assert_close(logz.double(), torch.tensor(z, dtype=torch.float64), atol=1e-5, rtol=1e-5)


def test_proposal_log_correction_sums_parts(registry, gen):
    e, space, path, g = build(registry)

    class Corr:  # stand-ins for parts with corrections
        def __init__(self, base, value):
            self.base, self.value = base, value

        def proposal_log_correction(self, x_t, t, r, x_r):
            return None if self.value is None else torch.full(x_r.shape[:2], self.value)

    x = MixedState(torch.zeros(3, 1), torch.zeros(3, 2, dtype=torch.long))
    xr = MixedState(torch.zeros(3, 4, 1), torch.zeros(3, 4, 2, dtype=torch.long))
    t = torch.full((3,), 0.5)
    # the real parts: only the masked path corrects its bridge proposal (zero here: nothing is masked)
    assert path.continuous.proposal_log_correction(x[0], t, t, xr[0]) is None
    torch.testing.assert_close(path.proposal_log_correction(x, t, t, xr),
                               path.discrete.proposal_log_correction(x[1], t, t, xr[1]))
    c_path, d_path = path.continuous, path.discrete
    try:
        path.continuous, path.discrete = Corr(c_path, 0.25), Corr(d_path, None)
        torch.testing.assert_close(path.proposal_log_correction(x, t, t, xr), torch.full((3, 4), 0.25))
        path.discrete = Corr(d_path, 1.0)
        torch.testing.assert_close(path.proposal_log_correction(x, t, t, xr), torch.full((3, 4), 1.25))
    finally:
        path.continuous, path.discrete = c_path, d_path


@pytest.mark.parametrize("parametrization", ["velocity", "endpoint"])
def test_snis_matches_exact_joint_marginal_generator(registry, parametrization):
    """Large-K SNIS with ONE shared weight per joint proposal recovers both heads of the exact marginal
    generator (velocity, also through the endpoint form, and denoiser), i.e. the weights are the joint
    posterior weights."""
    e, space, path, g = build(registry, parametrization=parametrization)
    gen = torch.Generator().manual_seed(7)
    mask = path.discrete.mask_token
    xt = MixedState(torch.tensor([[0.3], [-1.0], [1.8], [0.9], [0.1], [2.2]]),
                    torch.tensor([[mask, mask], [mask, mask], [mask, 1], [1, mask], [mask, mask], [1, 1]]))
    t = torch.tensor([0.15, 0.3, 0.45, 0.6, 0.75, 0.9])
    K = 40000
    est = estimate_marginal(path, g, lambda x, r: e(x), xt, t, torch.ones_like(t), K, gen)
    out, den = est.target
    vel = g.continuous.field(path.continuous, xt.continuous, t, out)  # the identity for the velocity
    ev, ed, pi, mu, var = exact_targets(path, xt, t)
    # tolerances from the exact posterior spread and the estimator's own ESS
    keff = (K * est.ess).double()
    s2t = path.continuous.sigma2(t).double()
    tau2 = s2t[:, None] * S[None] ** 2 / var
    post_var = (pi * (tau2 + mu ** 2)).sum(1) - (pi * mu).sum(1) ** 2
    scale = (path.continuous.dsigma2_dt(t).double() / (2 * s2t)).abs()
    tol_v = 6 * scale * (post_var / keff).sqrt() + 1e-4
    assert ((vel[:, 0].double() - ev[:, 0]).abs() <= tol_v).all(), (vel[:, 0], ev[:, 0], tol_v)
    tol_d = 6 * (0.25 / keff).sqrt()[:, None, None] + 1e-6
    assert ((den.double() - ed).abs() <= tol_d).all(), (den, ed)
    # the posterior is genuinely joint: a weight that ignored the continuous part (uniform over the
    # compatible configurations) would be far from the exact denoiser on the fully masked rows
    assert (ed[0, :, 1] - 0.5).abs().max() > 0.1
    # log normalizer term of the estimate is the product path's
    torch.testing.assert_close(est.log_normalizer, path.log_normalizer(xt, t, torch.ones_like(t)))


def test_weighted_target_is_the_parts_with_the_same_weights(registry, gen):
    e, space, path, g = build(registry)
    x1 = e.ground_truth(4, gen)
    t = torch.full((4,), 0.5)
    r = torch.ones_like(t)
    xt = path.sample_xt(x1, t, gen)
    xr = path.propose(xt, t, r, 5, gen)
    w = torch.rand(4, 5, generator=gen)
    tc, td = g.weighted_target(path, xt, t, xr, r, w)
    torch.testing.assert_close(tc, g.continuous.weighted_target(path.continuous, xt[0], t, xr[0], r, w))
    torch.testing.assert_close(td, g.discrete.weighted_target(path.discrete, xt[1], t, xr[1], r, w))
    out = (torch.randn(4, 1), torch.randn(4, 2, 2))
    loss = g.loss(out, (tc, td), xt, t)
    parts = g.part_losses(out, (tc, td), xt, t)
    torch.testing.assert_close(loss, parts["continuous"] + parts["discrete"])
    g2 = make_generator_weights(path, 0.5, 10.0)
    torch.testing.assert_close(g2.loss(out, (tc, td), xt, t), 0.5 * parts["continuous"] + 10 * parts["discrete"])


def make_generator_weights(path, cw, dw):
    reg = make_registry()
    return reg.create("generator", "product", continuous={"name": "flow"}, discrete={"name": "jump"},
                      continuous_weight=cw, discrete_weight=dw)


def test_sampling_steps_both_parts(registry, gen):
    e, space, path, g = build(registry)
    net = registry.create("network", "resmlp", space, g.output_shapes(path), hidden=16, blocks=1)
    x = simulate(g, net, path, 10, 8, gen)
    space.validate(x)
    assert (x.discrete != path.discrete.mask_token).all()  # the last jump step denoises every site


# ----------------------------------------------------------------------------- a third-party discrete path
class _DelegatingPath(ConditionalPath):
    """A test-only discrete path: same behaviour as the registered one it wraps, under another name and
    another class (the mixed plugin and the jump generator must only rely on the interface + duck typing)."""

    name = ""

    def __init__(self, inner):
        super().__init__(inner.space)
        self.inner = inner
        self.train_time_range = inner.train_time_range
        self.sample_time_range = inner.sample_time_range
        self.calls = 0

    def __getattr__(self, item):  # kappa, vocab, active_sites, denoiser_target_affine, ...
        return getattr(self.__dict__["inner"], item)

    def prior_sample(self, n, generator, device="cpu"):
        return self.inner.prior_sample(n, generator, device)

    def sample_xt(self, x1, t, generator):
        return self.inner.sample_xt(x1, t, generator)

    def propose(self, x_t, t, r, n, generator):
        self.calls += 1
        return self.inner.propose(x_t, t, r, n, generator)

    def log_normalizer(self, x_t, t, r):
        return self.inner.log_normalizer(x_t, t, r)


class ThrowawayPlugin:
    """Registers 'test_masked' (and the toy energy) on a fresh plugin manager."""

    @hookimpl
    def register_paths(self, register):
        def test_masked(space, registry, **params):
            return _DelegatingPath(registry.create("path", "masked", space, **params))

        def test_product(space, registry, **params):
            """ve × test_masked through the unchanged product path (a config-free route, see below)."""
            return registry.create("path", "product", space, continuous={"name": "ve"},
                                   discrete={"name": "test_masked"}, **params)

        register("test_masked", test_masked)
        register("test_product", test_product)

    @hookimpl
    def register_energies(self, register):
        register("mixed_toy", ToyEnergy)


def _trainer_config(path_section: dict):
    from egm_framework.config import config_from_dict

    return config_from_dict({
        "energy": {"name": "mixed_toy"},
        "path": path_section,
        "generator": {"name": "product", "discrete_weight": 10.0},
        "network": {"name": "resmlp", "hidden": 16, "blocks": 1},
        "estimator": {"num_proposals": 32},
        "train": {"batch_size": 16, "outer_iterations": 2, "inner_iterations": 3, "buffer_size": 64,
                  "buffer_refresh": 32, "buffer_sample_steps": 5, "device": "cpu", "progress": False,
                  "log_every": 1},
        "eval": {"num_samples": 64, "sample_steps": 5, "figures": False},
    })


def _fit_few_steps(cfg, run_dir, reg):
    from egm_framework.trainer import Trainer

    trainer = Trainer(cfg, run_dir, registry=reg)
    assert isinstance(trainer.comp.path.discrete, _DelegatingPath)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(evaluate_at_end=False)
    assert trainer.step == 6
    assert trainer.comp.path.discrete.calls > 0
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters()))


def test_third_party_discrete_path_trains_with_the_core_trainer(tmp_path):
    """A discrete path registered by a throwaway plugin, composed by the unchanged product path, trained by
    the core Trainer for a few steps."""
    reg = make_registry(ThrowawayPlugin())
    assert "test_masked" in reg.names("path")
    _fit_few_steps(_trainer_config({"name": "test_product"}), tmp_path / "run", reg)


def test_product_path_parts_from_a_config_section(tmp_path):
    reg = make_registry(ThrowawayPlugin())
    cfg = _trainer_config({"name": "product", "continuous": {"name": "ve"}, "discrete": {"name": "test_masked"}})
    _fit_few_steps(cfg, tmp_path / "run", reg)


def test_third_party_discrete_path_manual_loop(gen):
    """The same composition trained by hand (estimate_marginal + loss + Adam): no trainer involved."""
    reg = make_registry(ThrowawayPlugin())
    e, space, path, g = build(reg, discrete_path="test_masked")
    net = reg.create("network", "resmlp", space, g.output_shapes(path), hidden=16, blocks=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        x1 = simulate(g, net, path, 16, 4, gen)
        lo, hi = path.train_time_range
        t = lo + (hi - lo) * torch.rand(16, generator=gen)
        xt = path.sample_xt(x1, t, gen)
        with torch.no_grad():
            est = estimate_marginal(path, g, lambda x, r: e(x), xt, t, torch.ones_like(t), 32, gen)
        loss = g.loss(net(xt, t), est.target, xt, t).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert path.discrete.calls == 4


@pytest.mark.parametrize("c_path", ["ve", "cond_ot"])
@pytest.mark.parametrize("d_path", ["masked", "uniform"])
@pytest.mark.parametrize("c_gen", ["flow", "diffusion"])
def test_any_registered_pair_composes(registry, c_path, d_path, c_gen):
    """Every registered continuous × discrete pair: plain and bootstrapped (r < 1) estimates, loss,
    a scalar energy network on the product space, and simulation."""
    gen = torch.Generator().manual_seed(0)
    e = registry.create("energy", "gb_rbm")
    name, params = e.space_spec
    space = registry.create("state_space", name, **params)
    path = registry.create("path", "product", space, continuous={"name": c_path}, discrete={"name": d_path})
    g = registry.create("generator", "product", continuous={"name": c_gen}, discrete={"name": "jump"})
    net = registry.create("network", "mlp", space, g.output_shapes(path), hidden=16, layers=2)
    enet = registry.create("network", "mlp", space, torch.Size([]), hidden=16, layers=2)
    x1 = e.ground_truth(8, gen)
    lo, hi = path.train_time_range
    t = lo + (hi - lo) * torch.rand(8, generator=gen)
    xt = path.sample_xt(x1, t, gen)
    for r in (torch.ones_like(t), torch.clamp(t + 0.01, max=1.0)):
        energy_fn = (lambda x, rr: e(x)) if bool((r == 1).all()) else (lambda x, rr: enet(x, rr))
        est = estimate_marginal(path, g, energy_fn, xt, t, r, 16, gen)
        assert est.target[0].shape == (8, 2) and est.target[1].shape == (8, 3, 2)
        assert torch.isfinite(est.target[0]).all() and torch.isfinite(est.target[1]).all()
        assert torch.isfinite(est.log_marginal).all()
        loss = g.loss(net(xt, t), est.target, xt, t)
        assert loss.shape == (8,) and torch.isfinite(loss).all()
    x = simulate(g, net, path, 5, 4, gen)
    space.validate(x)


def test_default_continuous_path_is_cond_ot_and_a_narrow_ve_prior_warns():
    """The product path's default continuous part is cond_ot (exact N(0, I) prior). A VE part whose
    N(0, σ_0²) prior is more than 5 % narrower than the t = 0 marginal N(0, σ_0² + s²) warns (GB-RBM: the
    largest per-coordinate std s is 4.5, so σ_max = 10 still warns and 15 does not)."""
    import warnings

    from egm_framework.prior_check import PriorScaleWarning, check_prior_scale, target_std
    from egm_framework.registry import get_registry

    reg = get_registry()
    e = reg.create("energy", "gb_rbm")
    name, params = e.space_spec
    space = reg.create("state_space", name, **params)
    assert reg.create("path", "product", space).continuous.name == "cond_ot"
    assert check_prior_scale(reg.create("path", "product", space), e) is None
    narrow = reg.create("path", "product", space, continuous={"name": "ve", "sigma_max": 2.0})
    with pytest.warns(PriorScaleWarning, match="sigma_max"):
        assert "narrower than the target" in check_prior_scale(narrow, e)
    wide = reg.create("path", "product", space, continuous={"name": "ve", "sigma_max": 15.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_prior_scale(wide, e) is None
    # wider than the target, but 13 % narrower than the t = 0 marginal √(σ_0² + s²): still warns
    s = target_std(e)
    closer = reg.create("path", "product", space, continuous={"name": "ve", "sigma_max": 1.5 * s})
    with pytest.warns(PriorScaleWarning, match="target_std"):
        assert "t = 0 marginal" in check_prior_scale(closer, e)
    # the prior widened to the marginal's variance (target_std = s) passes
    matched = reg.create("path", "product", space, continuous={"name": "ve", "sigma_max": 1.5 * s, "target_std": s})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_prior_scale(matched, e) is None
