"""The core SNIS / bootstrap estimators with these paths and the jump generator recover the exact
marginal denoiser P(x_1^i = y | x_t) of a 3×3 Ising model (2^9 states, enumerated)."""

import pytest
import torch

from egm_framework.estimators import estimate_marginal

from egm_discrete.energies import IsingEnergy
from egm_discrete.exact import enumerate_states, exact_denoiser, exact_intermediate_energy
from egm_discrete.generator import JumpGenerator
from egm_discrete.paths import MaskedPath, UniformPath

ENERGY = IsingEnergy(L=3, beta=0.2, h=0.1)  # ESS ≈ 0.2–0.3 at K = 20000
STATES = enumerate_states([3, 3], 2)
LOG_P = torch.log_softmax(-ENERGY(STATES).double(), 0)


def _points(path, t, gen, n=4):
    idx = torch.multinomial(LOG_P.exp(), n, replacement=True, generator=gen)
    tt = torch.full((n,), t)
    return path.sample_xt(STATES[idx], tt, gen), tt


def _compare(path, est, x_t, t, tol):
    D = exact_denoiser(path, STATES, LOG_P, x_t, t).float()
    active = path.active_sites(x_t)
    assert active.any()
    err = (est.target - D)[active].abs().max().item()
    assert err < tol, err
    # inactive sites carry no target
    assert est.target[~active].abs().max().item() == 0 if (~active).any() else True


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_snis_recovers_exact_denoiser(cls, t, gen):
    from egm_discrete.space import CategoricalSpace

    path, gp = cls(CategoricalSpace([3, 3], 2)), JumpGenerator()
    x_t, tt = _points(path, t, gen)
    est = estimate_marginal(path, gp, lambda x, r: ENERGY(x), x_t, tt, torch.ones_like(tt), 20000, gen,
                            chunk_size=5000)
    _compare(path, est, x_t, tt, tol=0.03)
    assert (est.ess > 0).all() and (est.ess <= 1).all()


def _energy_table(path, r):
    """E_r on every possible x_r (with the mask token for the masked path) as a lookup table."""
    base = path.vocab + (1 if path.uses_mask else 0)
    xs = enumerate_states([3, 3], base)
    table = exact_intermediate_energy(path, STATES, LOG_P, xs, r).float()
    powers = base ** torch.arange(8, -1, -1)

    def energy_fn(x, rr):
        return table[(x.flatten(1) * powers).sum(-1)]

    return energy_fn


@pytest.mark.parametrize("t", [0.3, 0.5, 0.8])
def test_bootstrap_with_exact_intermediate_energy(t, gen):
    """Masked path, r = t + 0.1, weights from the exact E_r = −log p_r: the bridge-averaged target
    a·E[onehot(x_r)] is the exact denoiser (a = (1 − t)/0.1 amplifies the noise, hence K = 100k)."""
    from egm_discrete.space import CategoricalSpace

    path = MaskedPath(CategoricalSpace([3, 3], 2))
    r = t + 0.1
    energy_fn = _energy_table(path, r)
    x_t, tt = _points(path, t, gen)
    rr = torch.full_like(tt, r)
    est = estimate_marginal(path, JumpGenerator(), energy_fn, x_t, tt, rr, 100000, gen, chunk_size=25000)
    _compare(path, est, x_t, tt, tol=0.04)
    # the unprojected estimate agrees too (the projection only removes noise off the simplex)
    est_raw = estimate_marginal(path, JumpGenerator(project_target=False), energy_fn, x_t, tt, rr, 100000, gen,
                                chunk_size=25000)
    _compare(path, est_raw, x_t, tt, tol=0.04)


def test_uniform_bootstrap_is_not_a_denoiser_target(gen):
    """Documented limitation: for the uniform path the bridge-averaged target differs from the denoiser
    (another generator of the same marginals), so the path declares supports_bootstrap = False."""
    from egm_discrete.space import CategoricalSpace

    path = UniformPath(CategoricalSpace([3, 3], 2))
    assert not path.supports_bootstrap and MaskedPath(path.space).supports_bootstrap
    t, r = 0.3, 0.4
    energy_fn = _energy_table(path, r)
    x_t, tt = _points(path, t, gen)
    est = estimate_marginal(path, JumpGenerator(project_target=False), energy_fn, x_t, tt, torch.full_like(tt, r),
                            20000, gen)
    D = exact_denoiser(path, STATES, LOG_P, x_t, tt).float()
    assert (est.target - D).abs().max() > 0.2


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
def test_log_marginal_estimate(cls, gen):
    """log mean weight + log Z_{1|t}(x_t) = log p_t(x_t) + const: differences between rows match."""
    from egm_discrete.space import CategoricalSpace

    path = cls(CategoricalSpace([3, 3], 2))
    x_t, tt = _points(path, 0.5, gen, n=6)
    est = estimate_marginal(path, None, lambda x, r: ENERGY(x), x_t, tt, torch.ones_like(tt), 20000, gen)
    log_Z = torch.logsumexp(-ENERGY(STATES).double(), 0)
    exact = -exact_intermediate_energy(path, STATES, LOG_P, x_t, 0.5) + log_Z  # log Σ p_{t|1}(x_t|x_1) e^{-E}
    got = est.log_marginal.double()
    assert torch.allclose(got, exact, atol=0.03)


def test_residual_energy_network_target_and_reconstruction(gen):
    """The bootstrap energy network learns R_t(x) = −log E_q[e^{−E(x_1)}]; adding −log Z_{1|t}(x)
    gives the intermediate energy E_t = −log p_t up to a constant (pins signs and arguments)."""
    from egm_framework.estimators import BootstrapEstimator
    from egm_discrete.space import CategoricalSpace

    path = MaskedPath(CategoricalSpace([3, 3], 2))
    est = BootstrapEstimator(path, JumpGenerator(), ENERGY, intermediate_energy=None, num_proposals=20000)
    x_t, tt = _points(path, 0.4, gen, n=6)
    exact_E = exact_intermediate_energy(path, STATES, LOG_P, x_t, 0.4)  # −log p_t(x_t), normalized
    target = est.energy_regression_target(x_t, tt, gen).double()
    ones = torch.ones_like(tt)
    residual_exact = exact_E + path.log_normalizer(x_t, tt, ones).double()
    diff = target - residual_exact  # = −log Z_E for every row
    assert diff.std().item() < 0.03, diff
    energy_r = est.intermediate_energy_from_residual(lambda x, r: residual_exact.float())
    rebuilt = energy_r(x_t, tt).double()
    assert torch.allclose(rebuilt, exact_E, atol=1e-4)


def _exact_teacher(path, states, log_p):
    """The exact denoiser at (x_r, r) as network logits: a perfect sampler as teacher."""
    def teacher(x, r):
        return exact_denoiser(path, states, log_p, x, r).clamp(min=1e-30).log().float()
    return teacher


@pytest.mark.parametrize("t", [0.1, 0.3, 0.6])
def test_teacher_target_with_exact_teacher_and_energy(t, gen):
    """Masked path, r = t + 0.1, exact E_r and the exact denoiser at r as teacher: the teacher target
    Σ_k w_k E[onehot(x_1) | x_r^k] is the exact denoiser at t, at 1/25 of the proposals the bridge
    target needs for the same tolerance (test_bootstrap_with_exact_intermediate_energy)."""
    from egm_discrete.space import CategoricalSpace

    path = MaskedPath(CategoricalSpace([3, 3], 2))
    r = t + 0.1
    energy_fn = _energy_table(path, r)
    x_t, tt = _points(path, t, gen)
    est = estimate_marginal(path, JumpGenerator(project_target=False), energy_fn, x_t, tt, torch.full_like(tt, r),
                            4000, gen, teacher_fn=_exact_teacher(path, STATES, LOG_P))
    _compare(path, est, x_t, tt, tol=0.03)


def test_teacher_target_three_tokens(gen):
    """The same on a 3-token vocabulary (the softmax/scatter branch) with a random target on 2×3 sites."""
    from egm_discrete.space import CategoricalSpace

    path = MaskedPath(CategoricalSpace([2, 3], 3))
    states = enumerate_states([2, 3], 3)
    log_p = torch.log_softmax(2.0 * torch.randn(states.shape[0], generator=gen, dtype=torch.float64), 0)
    base = 4
    xs = enumerate_states([2, 3], base)
    t, r = 0.25, 0.45
    table = exact_intermediate_energy(path, states, log_p, xs, r).float()
    powers = base ** torch.arange(5, -1, -1)
    idx = torch.multinomial(log_p.exp(), 4, replacement=True, generator=gen)
    tt = torch.full((4,), t)
    x_t = path.sample_xt(states[idx], tt, gen)
    est = estimate_marginal(path, JumpGenerator(project_target=False), lambda x, rr: table[(x.flatten(1) * powers).sum(-1)],
                            x_t, tt, torch.full_like(tt, r), 4000, gen, teacher_fn=_exact_teacher(path, states, log_p))
    D = exact_denoiser(path, states, log_p, x_t, tt).float()
    active = path.active_sites(x_t)
    assert (est.target - D)[active].abs().max().item() < 0.03
    assert est.target[~active].abs().max().item() == 0


def test_teacher_target_has_lower_error_than_bridge_target(gen):
    """At the small K a training step uses (64), t = 0.1, Δ = 0.1: the bridge target hears about a site
    from ~1/9 of the proposals and multiplies them by a = 9; the teacher target averages the teacher over
    all of them. Its mean error against the exact denoiser is several times smaller."""
    from egm_discrete.space import CategoricalSpace

    path = MaskedPath(CategoricalSpace([3, 3], 2))
    t, r = 0.1, 0.2
    energy_fn = _energy_table(path, r)
    teacher = _exact_teacher(path, STATES, LOG_P)
    errs = {"bridge": [], "teacher": []}
    for _ in range(20):
        x_t, tt = _points(path, t, gen, n=8)
        D = exact_denoiser(path, STATES, LOG_P, x_t, tt).float()
        active = path.active_sites(x_t)
        rr = torch.full_like(tt, r)
        for kind, fn in (("bridge", None), ("teacher", teacher)):
            est = estimate_marginal(path, JumpGenerator(), energy_fn, x_t, tt, rr, 64, gen, teacher_fn=fn)
            errs[kind].append((est.target - D)[active].abs().mean())
    bridge, teach = torch.stack(errs["bridge"]).mean().item(), torch.stack(errs["teacher"]).mean().item()
    assert teach < 0.25 * bridge, (teach, bridge)


def test_teacher_targets_need_the_masked_path():
    from egm_discrete.space import CategoricalSpace

    space = CategoricalSpace([3, 3], 2)
    gp = JumpGenerator()
    assert gp.teacher_unsupported(MaskedPath(space)) is None
    assert "masked path" in gp.teacher_unsupported(UniformPath(space))
    x_r = torch.zeros(1, 2, 3, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="masked path"):
        gp.weighted_teacher_target(UniformPath(space), x_r[:, 0], torch.full((1,), 0.3), x_r, torch.full((1,), 0.4),
                                   torch.ones(1, 2), torch.zeros(1, 2, 3, 3, 2))


def _random_model(gen, sites=9, vocab=2, scale=0.1):
    """A fixed, deliberately wrong denoiser: logits linear in the one-hot state (mask included) and t
    (scaled so that the weights keep an ESS/K of a few per cent on 3×3 Ising)."""
    W = scale * torch.randn(sites * (vocab + 1), sites * vocab, generator=gen)
    b = scale * torch.randn(sites * vocab, generator=gen)

    def model(x, t):
        h = torch.nn.functional.one_hot(x.flatten(1), vocab + 1).float().flatten(1)
        return (h @ W + t.view(-1, 1) * b).view(*x.shape, vocab)
    return model


@pytest.mark.parametrize("t", [0.1, 0.5])
@pytest.mark.parametrize("steps,spacing", [(1, 1.0), (3, 1.0), (3, 2.0), (4, 3.5)])
def test_sampler_proposals_estimate_the_exact_answers_whatever_the_network(t, steps, spacing, gen):
    """Completions drawn by a wrong network, reweighted by log q_uniform − log q_model: the SNIS target is
    the exact denoiser and log mean weight + log Z_{1|t} the exact log p_t (up to the constant log Z), as
    with the path's own proposals. A wrong normalization of q_model (e.g. a missing site or round) would
    shift the log mean weight by the mass it leaves out."""
    from egm_discrete.space import CategoricalSpace

    path, gp = MaskedPath(CategoricalSpace([3, 3], 2)), JumpGenerator()
    model = _random_model(gen)
    x_t, tt = _points(path, t, gen, n=6)

    def proposals(x, tq, k, g):
        return gp.sample_completions(model, path, x, tq, k, steps, g, spacing=spacing)

    ones = torch.ones_like(tt)
    est = estimate_marginal(path, gp, lambda x, r: ENERGY(x), x_t, tt, ones, 40000, gen, proposal_fn=proposals)
    assert est.ess.min().item() < 0.5  # the network is wrong: the weights are far from flat
    _compare(path, est, x_t, tt, tol=0.04)
    log_Z = torch.logsumexp(-ENERGY(STATES).double(), 0)
    exact = -exact_intermediate_energy(path, STATES, LOG_P, x_t, t) + log_Z
    assert torch.allclose(est.log_marginal.double(), exact, atol=0.05)


def test_sampler_completions_keep_unmasked_sites_and_three_tokens(gen):
    from egm_discrete.space import CategoricalSpace

    path, gp = MaskedPath(CategoricalSpace([2, 3], 3)), JumpGenerator()
    x_t = torch.tensor([[[3, 1, 3], [0, 3, 2]]])
    x_1, log_ratio = gp.sample_completions(_random_model(gen, sites=6, vocab=3, scale=0.3), path, x_t, torch.tensor([0.5]), 20000,
                                           2, gen)
    assert x_1.shape == (1, 20000, 2, 3) and log_ratio.shape == (1, 20000)
    assert (x_1 != path.mask_token).all()
    keep = x_t != path.mask_token
    assert (x_1[:, :, keep[0]] == x_t[:, keep[0]].unsqueeze(1)).all()
    # E_q[q_uniform / q_model] = Σ_x q_uniform(x) = 1 for a normalized q_model
    assert abs(log_ratio.double().exp().mean().item() - 1.0) < 0.05


def test_sampler_proposals_from_the_exact_denoiser_have_flat_weights(gen):
    """With the exact denoiser as model and more rounds than sites, the completions are (nearly) exact
    posterior draws: ESS/K close to 1 at t = 0.1, where the uniform proposals' is far lower."""
    from egm_discrete.space import CategoricalSpace

    path, gp = MaskedPath(CategoricalSpace([3, 3], 2)), JumpGenerator()
    energy = IsingEnergy(L=3, beta=0.6)
    log_p = torch.log_softmax(-energy(STATES).double(), 0)
    exact_model = _exact_teacher(path, STATES, log_p)
    idx = torch.multinomial(log_p.exp(), 4, replacement=True, generator=gen)
    tt = torch.full((4,), 0.1)
    x_t = path.sample_xt(STATES[idx], tt, gen)
    ones = torch.ones_like(tt)

    def proposals(x, tq, k, g):
        return gp.sample_completions(exact_model, path, x, tq, k, 200, g)

    by_model = estimate_marginal(path, None, lambda x, r: energy(x), x_t, tt, ones, 256, gen, proposal_fn=proposals)
    uniform = estimate_marginal(path, None, lambda x, r: energy(x), x_t, tt, ones, 256, gen)
    assert by_model.ess.min().item() > 0.6
    assert uniform.ess.max().item() < 0.5 * by_model.ess.min().item()


@pytest.mark.parametrize("spacing", [1.0, 2.0])
def test_sampler_completion_rounds_follow_the_spacing(spacing, gen):
    """Round j draws the masked sites of rank n_m (j/C)^γ … n_m ((j+1)/C)^γ in a random order and sees
    the network at κ_s = κ_t + (1 − κ_t)(j/C)^γ: γ = 2, C = 16 and 100 masked sites give rounds of
    1, 1, 2, 3, 3, … sites (every site once), γ = 1 rounds of 6 or 7."""
    from egm_discrete.space import CategoricalSpace

    path, gp = MaskedPath(CategoricalSpace([10, 10], 2)), JumpGenerator()
    calls = []

    def model(x, s):
        calls.append(((x == path.mask_token).flatten(1).sum(1), s.clone()))
        return torch.zeros(*x.shape, 2)

    x_t = torch.full((2, 10, 10), path.mask_token)
    x_t[1, 0, :4] = 1  # 96 masked sites in the second row
    t = torch.tensor([0.0, 0.04])
    x_1, _ = gp.sample_completions(model, path, x_t, t, 3, 16, gen, spacing=spacing)
    assert (x_1 != path.mask_token).all() and (x_1[1, :, 0, :4] == 1).all()
    assert len(calls) == 16
    for row, n_m in ((0, 100), (1, 96)):
        masked_before = torch.stack([c[0].view(2, 3)[row] for c in calls] + [torch.zeros(3, dtype=torch.long)])
        sizes = (masked_before[:-1] - masked_before[1:]).T  # (3 proposals, 16 rounds)
        bounds = [sum(1 for rho in range(n_m) if rho >= n_m * (j / 16) ** spacing) for j in range(17)]
        expected = torch.tensor([bounds[j] - bounds[j + 1] for j in range(16)])
        assert (sizes == expected).all(), (sizes, expected)
        times = torch.stack([c[1].view(2, 3)[row, 0] for c in calls])
        kt = t[row].item()
        assert torch.allclose(times, torch.tensor([kt + (1 - kt) * (j / 16) ** spacing for j in range(16)]))
        if row == 0:
            assert expected[:5].tolist() == ([1, 1, 2, 3, 3] if spacing == 2.0 else [7, 6, 6, 6, 7])


def test_finer_first_rounds_find_the_other_sign(gen):
    """3×3 Ising at β = 1 (two signs, 1 : 1 by symmetry) and a sampler that is exact except at the
    all-masked state, where it prefers +1 at every site (P = 0.9): SNIS over its completions of the
    all-masked state with γ = 1 (first round: 3 sites at once, all −1 with probability 10⁻³) has
    almost no −1 configurations to reweight and keeps the preference; γ = 3 draws the first site alone
    (−1 with probability 0.1) and the weights restore the balance."""
    from egm_discrete.space import CategoricalSpace

    path = MaskedPath(CategoricalSpace([3, 3], 2))
    gp = JumpGenerator()
    energy = IsingEnergy(L=3, beta=1.0)
    log_p = torch.log_softmax(-energy(STATES).double(), 0)
    exact = _exact_teacher(path, STATES, log_p)

    def biased(x, s):
        out = exact(x, s)
        all_masked = (x == path.mask_token).flatten(1).all(1)
        prefer = torch.tensor([0.0, 2.2])  # softmax: P(+1) = 0.9
        return torch.where(all_masked.view(-1, 1, 1, 1), prefer.expand_as(out), out)

    x_t = torch.full((1, 3, 3), path.mask_token)
    tt = torch.zeros(1)
    ones = torch.ones_like(tt)
    plus = {}
    for spacing in (1.0, 3.0):
        def proposals(x, tq, k, g):
            return gp.sample_completions(biased, path, x, tq, k, 3, g, spacing=spacing)
        # P(x^i = +1 | all masked) from 20 estimates at K = 64, as the trainer's rows would see it; exact 0.5
        plus[spacing] = torch.tensor([
            estimate_marginal(path, gp, lambda x, r: energy(x), x_t, tt, ones, 64, gen,
                              proposal_fn=proposals).target[0, ..., 1].mean().item() for _ in range(20)])
    assert plus[1.0].mean() > 0.8, plus  # the preference survives the reweighting
    assert abs(plus[3.0].mean() - 0.5) < 0.1 and plus[3.0].std() < 0.15, plus


@pytest.mark.parametrize("t,gap", [(0.1, 0.3), (0.5, 0.2)])
@pytest.mark.parametrize("steps,spacing", [(1, 1.0), (3, 2.0)])
def test_sampler_bridges_estimate_the_exact_answers_whatever_the_network(t, gap, steps, spacing, gen):
    """Bridge proposals x_r (r = t + gap < 1) drawn by a wrong network, weighted by the exact E_r and
    log q_path − log q_model plus the path's own correction: with the exact teacher the target is the
    exact denoiser at t, and log mean weight + log Z_{r|t} is the exact log p_t(x_t) (E_r = −log p_r has
    no constant). A wrong law of the opened sites, or a wrong round normalization, shifts the latter."""
    from egm_discrete.space import CategoricalSpace

    path, gp = MaskedPath(CategoricalSpace([3, 3], 2)), JumpGenerator(project_target=False)
    model = _random_model(gen, scale=0.3)
    x_t, tt = _points(path, t, gen, n=6)
    rr = tt + gap
    energy_fn = _energy_table(path, t + gap)

    def bridges(x, tq, k, g):
        return gp.sample_completions(model, path, x, tq, k, steps, g, spacing=spacing, r=rr)

    est = estimate_marginal(path, gp, energy_fn, x_t, tt, rr, 8000, gen, proposal_fn=bridges,
                            teacher_fn=_exact_teacher(path, STATES, LOG_P))
    assert est.ess.min().item() < 0.7  # the network is wrong: the weights are not flat
    _compare(path, est, x_t, tt, tol=0.03)
    exact = -exact_intermediate_energy(path, STATES, LOG_P, x_t, t)
    assert torch.allclose(est.log_marginal.double(), exact, atol=0.08), (est.log_marginal, exact)


def test_sampler_bridges_open_the_paths_share_of_sites_in_rounds(gen):
    """r < 1: each masked site opens with the path's probability u = (κ_r − κ_t)/(1 − κ_t), whatever the
    network; unmasked sites are kept; the C rounds see the network at κ_t + (κ_r − κ_t)(j/C)^γ; r = 1
    given explicitly is the completion (every masked site opens)."""
    from egm_discrete.space import CategoricalSpace

    path, gp = MaskedPath(CategoricalSpace([10, 10], 2)), JumpGenerator()
    times = []

    def model(x, s):
        times.append(s.clone())
        return torch.zeros(*x.shape, 2)

    x_t = torch.full((2, 10, 10), path.mask_token)
    x_t[1, :5] = 0  # 50 masked sites in the second row
    t, r = torch.tensor([0.0, 0.5]), torch.tensor([0.1, 0.7])
    x_r, log_ratio = gp.sample_completions(model, path, x_t, t, 400, 4, gen, spacing=2.0, r=r)
    opened = ((x_t.unsqueeze(1) == path.mask_token) & (x_r != path.mask_token)).flatten(2).sum(-1).double()
    for row, n_m, u in ((0, 100, 0.1), (1, 50, 0.4)):
        assert abs(opened[row].mean().item() - n_m * u) < 4 * (n_m * u * (1 - u) / 400) ** 0.5
    assert (x_r[1, :, :5] == 0).all()
    # a network that is uniform over the tokens is the path's proposal: the ratio is 0
    assert log_ratio.abs().max().item() < 1e-4
    assert len(times) == 4
    for j, s in enumerate(times):
        assert torch.allclose(s.view(2, 400)[:, 0], t + (r - t) * (j / 4) ** 2.0)
    x_1, _ = gp.sample_completions(model, path, x_t, t, 3, 2, gen, r=torch.ones(2))
    assert (x_1 != path.mask_token).all()


def test_sampler_proposals_need_the_masked_path():
    from egm_discrete.space import CategoricalSpace

    space = CategoricalSpace([3, 3], 2)
    gp = JumpGenerator()
    assert gp.sampler_proposals_unsupported(MaskedPath(space)) is None
    assert "masked path" in gp.sampler_proposals_unsupported(UniformPath(space))
    with pytest.raises(ValueError, match="masked path"):
        gp.sample_completions(lambda x, t: None, UniformPath(space), torch.zeros(1, 3, 3, dtype=torch.long),
                              torch.full((1,), 0.3), 2, 2, None)
