"""Jump generator: target assembly, loss, shapes; lattice_conv network."""

import pytest
import torch
import torch.nn.functional as F

from egm_discrete.generator import JumpGenerator
from egm_discrete.networks import build_lattice_conv
from egm_discrete.paths import MaskedPath, UniformPath
from egm_discrete.space import CategoricalSpace

SPACE = CategoricalSpace([3, 3], 3)


@pytest.mark.parametrize("cls", [MaskedPath, UniformPath])
@pytest.mark.parametrize("bmm_max_vocab", [8, 0], ids=["per-token-bmm", "scatter"])
def test_weighted_target_matches_onehot_reference(cls, bmm_max_vocab, gen):
    path = cls(SPACE)
    gp = JumpGenerator()
    gp.bmm_max_vocab = bmm_max_vocab  # both accumulation strategies
    B, K = 4, 7
    x1 = torch.randint(0, 3, (B, 3, 3), generator=gen)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9])
    r = torch.tensor([0.2, 1.0, 0.7, 1.0])
    x_t = path.sample_xt(x1, t, gen)
    x_r = path.propose(x_t, t, r, K, gen)
    w = torch.rand(B, K, generator=gen)
    got = gp.weighted_target(path, x_t, t, x_r, r, w)
    assert got.shape == (B, 3, 3, 3) == (B, *gp.output_shapes(path))
    a, b = path.denoiser_target_affine(t, r)
    oh_r = F.one_hot(x_r, 4)[..., :3].double()  # mask channel dropped
    oh_t = F.one_hot(x_t, 4)[..., :3].double()
    ref = torch.einsum("bk,bkijn->bijn", w.double(), oh_r) * a.double().view(B, 1, 1, 1) \
        + (w.sum(1) * b).double().view(B, 1, 1, 1) * oh_t
    ref = ref * path.active_sites(x_t)[..., None]
    assert torch.allclose(got.double(), ref, atol=1e-5)
    # linear in w
    got2 = gp.weighted_target(path, x_t, t, x_r, r, 2.5 * w)
    assert torch.allclose(got2, 2.5 * got, atol=1e-5)


@pytest.mark.parametrize("kind", ["ce", "mse"])
def test_loss_minimized_at_target(kind, gen):
    path = MaskedPath(SPACE)
    gp = JumpGenerator(loss=kind)
    x_t = path.sample_xt(torch.randint(0, 3, (5, 3, 3), generator=gen), torch.full((5,), 0.5), gen)
    target = torch.softmax(torch.randn(5, 3, 3, 3, generator=gen), -1) * path.active_sites(x_t)[..., None]
    t = torch.full((5,), 0.5)
    at_target = gp.loss(torch.log(target.clamp(min=1e-30)), target, x_t, t)
    assert at_target.shape == (5,)
    assert at_target.abs().max() < 1e-5
    other = gp.loss(torch.randn(5, 3, 3, 3, generator=gen), target, x_t, t)
    assert (other >= at_target - 1e-6).all()
    # unmasked sites do not contribute
    logits = torch.randn(5, 3, 3, 3, generator=gen, requires_grad=True)
    gp.loss(logits, target, x_t, t).sum().backward()
    assert logits.grad[~path.active_sites(x_t)].abs().max() == 0


def test_finalize_projects_to_simplex():
    gp = JumpGenerator()
    x_t = torch.zeros(1, 1, dtype=torch.long)
    tgt = torch.tensor([[[0.7, -0.1, 0.6]]])
    out = gp.finalize_target(tgt, x_t, torch.zeros(1))
    assert torch.allclose(out, torch.tensor([[[0.7 / 1.3, 0.0, 0.6 / 1.3]]]))
    assert torch.equal(JumpGenerator(project_target=False).finalize_target(tgt, x_t, None), tgt)
    with pytest.raises(ValueError):
        JumpGenerator(loss="l1")


def test_step_masked_final_denoise(gen):
    path = MaskedPath(SPACE)
    gp = JumpGenerator()
    x = torch.full((8, 3, 3), 3)
    x[:, 0, 0] = 1
    logits = torch.full((8, 3, 3, 3), -1e9)
    logits[..., 2] = 0
    out = gp.step_from_output(path, x, torch.full((8,), 0.99), torch.ones(8), logits, gen)
    assert out[:, 0, 0].eq(1).all() and out.flatten(1)[:, 1:].eq(2).all()
    # a zero-length step changes nothing
    same = gp.step_from_output(path, x, torch.full((8,), 0.5), torch.full((8,), 0.5), logits, gen)
    assert torch.equal(same, x)


@pytest.mark.parametrize("shape", [torch.Size([3, 3, 3]), torch.Size([])])
def test_lattice_conv_shapes(shape, gen):
    net = build_lattice_conv(SPACE, shape, channels=8, layers=2)
    x = torch.randint(0, 4, (5, 3, 3), generator=gen)
    out = net(x, torch.rand(5, generator=gen))
    assert out.shape == (5, *shape)
    with pytest.raises(ValueError):
        build_lattice_conv(SPACE, torch.Size([4, 4, 3]))


def test_lattice_conv_sum_pool_is_the_mean_pool_times_the_number_of_sites(gen):
    torch.manual_seed(0)
    mean_net = build_lattice_conv(SPACE, torch.Size([]), channels=8, layers=2, zero_init=False)
    sum_net = build_lattice_conv(SPACE, torch.Size([]), channels=8, layers=2, zero_init=False, pool="sum")
    sum_net.load_state_dict(mean_net.state_dict())
    x = torch.randint(0, 4, (5, 3, 3), generator=gen)
    t = torch.rand(5, generator=gen)
    b = mean_net.head.bias
    assert torch.allclose(sum_net(x, t) - b, 9 * (mean_net(x, t) - b), atol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        build_lattice_conv(SPACE, torch.Size([]), pool="max")
