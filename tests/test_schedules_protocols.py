"""Schedules (a registered kind) and the path protocols generators require, checked at assembly."""

from __future__ import annotations

import pytest
import torch

from egm_framework import hookimpl
from egm_framework.assembly import build_components
from egm_framework.config import config_from_dict
from egm_framework.errors import ConfigError
from egm_framework.interfaces import AffineSchedule, ConditionalPath, MixturePath, MixtureSchedule
from egm_framework.interfaces.protocols import check_path_fits, protocol_members
from egm_framework.interfaces.schedule import affine_bridge
from egm_framework.plugins import default_plugin_manager
from egm_framework.registry import Registry, get_registry
from egm_framework.schedules import BUILTIN_SCHEDULES, resolve_schedule

T = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)


def _schedules(family):
    reg = get_registry()
    out = []
    for name in BUILTIN_SCHEDULES:
        obj = reg.create("schedule", name)
        if isinstance(obj, family):
            out.append(obj)
    if family is AffineSchedule:
        out.append(reg.create("schedule", "cond_ot", sigma0=3.0))  # the scaled prior N(0, 9 I)
    return out


@pytest.mark.parametrize("sched", _schedules(MixtureSchedule), ids=lambda s: s.name)
def test_mixture_schedules_derivative_inverse_and_ends(sched):
    h = 1e-6
    k = sched.kappa(T)
    numeric = (sched.kappa(T + h) - sched.kappa(T - h)) / (2 * h)
    assert torch.allclose(sched.kappa_dot(T), numeric, rtol=1e-5, atol=1e-6)
    assert torch.allclose(sched.kappa_inverse(k), T, atol=1e-9)
    ends = sched.kappa(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(ends, torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-12)
    assert (k[1:] > k[:-1]).all()


@pytest.mark.parametrize("sched", _schedules(AffineSchedule), ids=lambda s: s.name)
def test_affine_schedules_derivatives_inverse_and_bridge(sched):
    h = 1e-3  # some schedules compute in float32
    for f, df in ((sched.alpha, sched.alpha_dot), (sched.sigma, sched.sigma_dot)):
        assert torch.allclose(df(T).double(), (f(T + h) - f(T - h)).double() / (2 * h), rtol=1e-3, atol=1e-4)
    snr = sched.alpha(T) / sched.sigma(T)
    assert torch.allclose(sched.snr_inverse(snr).double(), T, atol=1e-5)
    assert torch.allclose(AffineSchedule.snr_inverse(sched, snr).double(), T, atol=1e-5)  # the generic bisection
    t, r = T.float()[:-2], T.float()[2:]
    # the schedule's (possibly specialised) bridge equals the generic formula, and it composes:
    # Var(x_t | x_1) = a² Var(x_r | x_1) + v  with a = α_t/α_r
    a, ad, v, vd = sched.bridge(t, r)
    ga, gad, gv, gvd = affine_bridge(sched, t, r)
    for x, y in ((a, ga), (ad, gad), (v, gv), (vd, gvd)):
        assert torch.allclose(x, y, rtol=1e-3, atol=1e-4)
    assert torch.allclose(a * a * sched.sigma(r.double()).float() ** 2 + v, sched.sigma(t.double()).float() ** 2,
                          rtol=1e-4, atol=1e-5)


def test_poly_validates_its_power():
    with pytest.raises(ConfigError, match="schedule 'poly': power must be > 0"):
        get_registry().create("schedule", "poly", power=-1)


def test_schedule_from_a_table_in_a_config():
    cfg = config_from_dict({"energy": {"name": "ising", "L": 3, "beta": 0.2},
                            "path": {"name": "masked", "schedule": {"name": "poly", "power": 2}},
                            "generator": "jump", "network": "mlp"})
    path = build_components(cfg, build_networks=False).path
    t = torch.tensor([0.5])
    assert torch.allclose(path.kappa(t), t ** 2) and path.describe()["schedule"]["power"] == 2.0


def test_existing_paths_keep_their_schedule():
    reg = get_registry()
    disc = reg.create("state_space", "categorical", shape=[3], vocab=2)
    assert reg.create("path", "masked", disc).schedule.name == "linear"
    cont = reg.create("state_space", "euclidean", dim=2)
    t, r = torch.tensor([0.3, 0.5]), torch.tensor([0.4, 1.0])
    a, _, v, _ = reg.create("path", "cond_ot", cont).coefficients(t, r)
    assert torch.allclose(a, t / r) and torch.allclose(v[1], torch.tensor(0.25))
    a, _, v, _ = reg.create("path", "affine", cont).coefficients(t, r)  # default schedule: cond_ot
    assert torch.allclose(a, t / r) and torch.allclose(v[1], torch.tensor(0.25))


def test_core_schedules_resolve_on_a_registry_without_the_core():
    from egm_framework.plugins import PluginManager

    empty = Registry(PluginManager())
    assert resolve_schedule("cosine", MixtureSchedule, registry=empty).name == "cosine"
    with pytest.raises(Exception, match="unknown schedule 'nope'"):
        resolve_schedule("nope", MixtureSchedule, registry=empty)


def test_protocol_members_are_the_documented_ones():
    assert protocol_members(MixturePath) == ["vocab", "num_sites", "shape", "uses_mask", "kappa", "kappa_dot",
                                             "kappa_inverse", "denoiser_target_affine", "active_sites"]


# ------------------------------------------------------------------ refused at assembly
class _NoSchedulePath(ConditionalPath):
    """A categorical path without the mixture members the jump generator needs."""

    def __init__(self, space):
        super().__init__(space)
        self.vocab = space.vocab
        self.shape = torch.Size(space.event_shape)

    def prior_sample(self, n, generator, device="cpu"):
        return torch.zeros((n, *self.shape), dtype=torch.long)

    def sample_xt(self, x1, t, generator):
        return x1

    def propose(self, x_t, t, r, n, generator):
        return x_t.unsqueeze(1).expand(-1, n, *self.shape)

    def log_normalizer(self, x_t, t, r):
        return torch.zeros(x_t.shape[0])


class _Plugin:
    @hookimpl
    def register_paths(self, register):
        register("mine", _NoSchedulePath)


def test_a_path_lacking_what_its_generator_needs_is_refused_at_assembly():
    manager = default_plugin_manager({})
    manager.register(_Plugin(), "mine")
    cfg = config_from_dict({"energy": {"name": "ising", "L": 3, "beta": 0.2}, "path": "mine", "generator": "jump",
                            "network": "mlp"})
    with pytest.raises(ConfigError) as err:
        build_components(cfg, Registry(manager))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("generator 'jump' needs a mixture path (MixturePath); path 'mine' lacks num_sites, "
                          "uses_mask, kappa, kappa_dot, kappa_inverse, denoiser_target_affine, active_sites.")


def test_flow_needs_an_affine_gaussian_path():
    reg = get_registry()
    disc = reg.create("state_space", "categorical", shape=[3], vocab=2)
    with pytest.raises(ConfigError, match=r"generator 'flow' needs an affine Gaussian path \(AffineGaussianPath\); "
                                          r"path 'masked' lacks velocity_affine"):
        check_path_fits(reg.create("generator", "flow"), reg.create("path", "masked", disc))
    with pytest.raises(ConfigError, match=r"path 'cond_ot' lacks vocab, num_sites, shape, uses_mask, kappa,"):
        check_path_fits(reg.create("generator", "jump"),
                        reg.create("path", "cond_ot", reg.create("state_space", "euclidean", dim=2)))
