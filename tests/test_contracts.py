"""The shared contract checks (egm_framework.testing) on first-party combinations of every modality,
and that they catch a broken component."""

import pytest
import torch

from egm_framework.errors import UnknownComponentError
from egm_framework.registry import get_registry
from egm_framework.testing import check_components, check_generator

COMBOS = [
    dict(energy="ising", energy_params={"L": 3, "beta": 0.3}, path="masked", generator="jump"),
    dict(energy="potts", energy_params={"L": 3, "q": 3, "beta": 0.5}, path="uniform", generator="jump"),
    dict(energy="ising", energy_params={"L": 4, "beta": 0.3}, path="masked", generator="jump",
         network="lattice_conv", network_params={"channels": 4, "layers": 1, "zero_init": False}),
    dict(energy="gaussian", energy_params={"dim": 2}, path="cond_ot", generator="flow"),
    dict(energy="gmm25", path="ve", generator="diffusion", generator_params={"g": "ve"}),
    dict(energy="gb_rbm", path="product", generator="product"),
    dict(energy="joint_mog", path="product", path_params={"continuous": {"name": "cond_ot"},
                                                          "discrete": {"name": "uniform"}}, generator="product"),
]


@pytest.fixture(scope="module")
def registry():
    try:
        reg = get_registry()
        for kind, name in (("state_space", "categorical"), ("state_space", "euclidean"), ("state_space", "product")):
            reg.get(kind, name)
    except UnknownComponentError as exc:  # pragma: no cover - the plugins are installed by `make test`
        pytest.skip(str(exc))
    return reg


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: f"{c['energy']}-{c['path']}-{c['generator']}")
def test_first_party_components_meet_the_contract(registry, combo):
    check_components(registry, **combo)


def test_contract_catches_a_target_that_is_not_linear_in_the_weights(registry):
    energy = registry.create("energy", "ising", L=3, beta=0.3)
    space = registry.create("state_space", *[energy.space_spec[0]], **energy.space_spec[1])
    path = registry.create("path", "masked", space)
    gp = registry.create("generator", "jump")
    net = registry.create("network", "mlp", space, gp.output_shapes(path), hidden=8, layers=1, zero_init=False)

    class Normalizing(type(gp)):
        def weighted_target(self, path, x_t, t, x_r, r, w):  # normalizes inside: breaks chunking
            return super().weighted_target(path, x_t, t, x_r, r, w / w.sum(1, keepdim=True))

    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(0, 2, (4, 3, 3), generator=g)
    with pytest.raises(AssertionError, match="not linear in w"):
        check_generator(Normalizing(), path, net, x1, g)
