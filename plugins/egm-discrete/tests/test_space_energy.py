"""Pinned conventions: categorical space, Ising/Potts signs and bond counting, observables."""

import pytest
import torch

from egm_discrete.energies import IsingEnergy, PottsEnergy
from egm_discrete.ground_truth import enumerate_tokens, exact_distribution, ising_energy_tokens
from egm_discrete.space import CategoricalSpace


def test_space_basics():
    sp = CategoricalSpace([5, 5], 2)
    assert sp.event_shape == torch.Size([5, 5]) and sp.dim == 25 and sp.mask_token == 2
    enc = sp.encoder(8)
    x = torch.randint(0, 3, (4, 5, 5))  # mask token included
    assert enc(x).shape == (4, enc.out_features) and enc.out_features == 200
    sp.validate(torch.zeros(3, 5, 5, dtype=torch.long))
    sp.validate(torch.full((3, 5, 5), 2), allow_mask=True)
    with pytest.raises(ValueError, match="torch.long"):
        sp.validate(torch.zeros(3, 5, 5))
    with pytest.raises(ValueError, match="shape"):
        sp.validate(torch.zeros(3, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="0..1"):
        sp.validate(torch.full((3, 5, 5), 2))
    with pytest.raises(ValueError):
        CategoricalSpace([0, 3], 2)
    with pytest.raises(ValueError):
        CategoricalSpace([3], 1)


def test_ising_all_up_and_down_3x3():
    e = IsingEnergy(L=3, beta=0.7, J=1.3)
    up = torch.ones(1, 3, 3, dtype=torch.long)
    # 2·L² = 18 bonds, all satisfied
    assert torch.allclose(e(up), torch.tensor([-0.7 * 1.3 * 18]))
    assert torch.allclose(e(1 - up), torch.tensor([-0.7 * 1.3 * 18]))


def test_ising_checkerboard_4x4():
    e = IsingEnergy(L=4, beta=0.5, J=1.0)
    ij = torch.arange(4)[:, None] + torch.arange(4)[None, :]
    x = (ij % 2).long()[None]
    assert torch.allclose(e(x), torch.tensor([+0.5 * 1.0 * 32]))


def test_ising_single_flip_and_field():
    beta, J, h = 0.4, 1.0, 0.3
    e = IsingEnergy(L=3, beta=beta, J=J, h=h)
    x = torch.ones(1, 3, 3, dtype=torch.long)
    x[0, 1, 2] = 0  # one spin down: 4 bonds broken (18 − 4 = 14 satisfied, 4 unsatisfied)
    bonds = 14 - 4
    mag = 8 - 1
    assert torch.allclose(e(x), torch.tensor([beta * (-J * bonds - h * mag)]))
    # token 1 <-> spin +1: positive field favours token 1
    up, down = torch.ones(1, 3, 3, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.long)
    assert e(up) < e(down)
    assert torch.allclose(e(down) - e(up), torch.tensor([2 * beta * h * 9]))
    obs = e.observables(torch.cat([up, down, x]))
    assert torch.allclose(obs["magnetization"], torch.tensor([1.0, -1.0, 7 / 9]))
    assert torch.allclose(obs["abs_magnetization"], torch.tensor([1.0, 1.0, 7 / 9]))


def test_ising_L2_double_bonds():
    """L = 2: roll right+down joins each neighbouring pair twice per direction (8 bonds in all)."""
    e = IsingEnergy(L=2, beta=1.0)
    assert torch.allclose(e(torch.ones(1, 2, 2, dtype=torch.long)), torch.tensor([-8.0]))
    x = torch.tensor([[[1, 0], [1, 1]]])  # flip one spin: its 4 bond slots go from +1 to −1
    assert torch.allclose(e(x), torch.tensor([-(8 - 2 * 4.0)]))
    x = torch.tensor([[[1, 0], [0, 1]]])  # checkerboard: every bond −1
    assert torch.allclose(e(x), torch.tensor([8.0]))


def test_energy_helpers_agree():
    st = enumerate_tokens(9, 2).view(-1, 3, 3)
    e = IsingEnergy(L=3, beta=0.3, J=0.8, h=-0.2)
    assert torch.allclose(e(st), ising_energy_tokens(st, 0.3, 0.8, -0.2))
    states, p = exact_distribution(3, 0.3, 0.8, -0.2)
    ref = torch.softmax(-e(states).double(), 0)
    assert torch.allclose(p, ref, atol=1e-6)
    assert e.space_spec == ("categorical", {"shape": [3, 3], "vocab": 2})


def test_potts_energy():
    e = PottsEnergy(L=3, q=3, beta=0.5, J=2.0)
    x = torch.zeros(1, 3, 3, dtype=torch.long)
    assert torch.allclose(e(x), torch.tensor([-0.5 * 2.0 * 18]))
    x = (torch.arange(3)[:, None] + torch.arange(3)[None, :]) % 3  # no equal neighbours on the 3-torus
    assert torch.allclose(e(x[None]), torch.tensor([0.0]))
    assert torch.allclose(e.observables(x[None])["majority_fraction"], torch.tensor([3 / 9]))
    # q = 2 Potts is Ising with β_Ising J_Ising = βJ/2 up to a constant
    st = enumerate_tokens(9, 2).view(-1, 3, 3)
    diff = PottsEnergy(L=3, q=2, beta=0.6)(st) - IsingEnergy(L=3, beta=0.3)(st)
    assert torch.allclose(diff, diff[0].expand_as(diff), atol=1e-5)
