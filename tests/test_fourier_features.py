"""network.fourier_features: random Fourier features of the encoded state in the core MLP."""

from __future__ import annotations

import pytest
import torch

from egm_framework.assembly import build_components
from egm_framework.config import config_from_dict
from egm_framework.errors import ConfigError
from egm_framework.networks import FourierFeatures


def _cfg(**net):
    return config_from_dict({"energy": {"name": "gmm25"}, "path": "cond_ot", "generator": "flow",
                             "network": {"name": "mlp", "hidden": 16, "layers": 2, **net}})


def test_features_are_sin_cos_of_a_fixed_gaussian_projection():
    ff = FourierFeatures(2, 3, scale=2.0)
    h = torch.tensor([[0.1, -0.2], [0.0, 0.0]])
    z = 2 * torch.pi * h @ ff.B
    assert torch.allclose(ff(h), torch.cat([h, torch.sin(z), torch.cos(z)], dim=-1))
    assert ff.B.shape == (2, 3) and ff.out_features == 8
    assert torch.equal(FourierFeatures(2, 3, scale=2.0).B, ff.B)  # same B on every build
    big = FourierFeatures(2, 4000, scale=2.0)
    assert abs(float(big.B.std()) - 2.0) < 0.1  # frequencies ~ N(0, scale²)


def test_mlp_with_fourier_features_builds_trains_and_saves_its_projection():
    net = build_components(_cfg(fourier_features=8, fourier_scale=3.0)).network
    assert net.fourier is not None and "fourier.B" in net.state_dict()
    x, t = torch.randn(5, 2), torch.rand(5)
    assert net(x, t).shape == (5, 2)
    other = build_components(_cfg(fourier_features=8, fourier_scale=3.0)).network
    assert torch.equal(other.fourier.B, net.fourier.B)
    plain = build_components(_cfg()).network
    assert plain.fourier is None and "fourier.B" not in plain.state_dict()


@pytest.mark.parametrize("bad,match", [({"fourier_features": -1}, "fourier_features must be a positive integer"),
                                        ({"fourier_features": 4, "fourier_scale": 0}, "fourier_scale must be a positive"),
                                        ({"fourier_features": 2.5}, "fourier_features must be a positive integer")])
def test_bad_fourier_settings_are_clear_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        build_components(_cfg(**bad))
