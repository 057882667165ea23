r"""The core's schedules (registered as components of kind ``schedule``) and how paths resolve one.

Mixture schedules κ_t (discrete paths ``masked``, ``uniform``):

- ``linear``: κ_t = t
- ``poly`` (``polynomial``): κ_t = t^power, κ̇_t = power·t^{power−1}, κ^{-1}(k) = k^{1/power}
- ``cosine``: κ_t = 1 − cos(πt/2), κ̇_t = (π/2) sin(πt/2), κ^{-1}(k) = (2/π) arccos(1 − k)

Affine schedules (α_t, σ_t) (continuous path ``affine``; ``cond_ot`` and ``ve`` fix theirs):

- ``cond_ot``: α_t = t, σ_t = σ_0 (1 − t) (prior N(0, σ_0² I); σ_0 = ``sigma0``, default 1)
- ``vp`` (``vp_cosine``): α_t = sin(πt/2), σ_t = cos(πt/2)  (variance preserving: α² + σ² = 1)
- ``ve``: α_t = 1, σ_t² = σ_min²((σ_max/σ_min)^{2(1−t)} − 1)

A path takes ``schedule`` as a registry name, a table ``{name = "poly", power = 2}``, or a schedule
object, and resolves it with :func:`resolve_schedule`, which checks the family it needs.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from .errors import ConfigError
from .interfaces.protocols import describe_protocol, missing_members
from .interfaces.schedule import AffineSchedule, MixtureSchedule
from .validation import number

__all__ = ["LinearSchedule", "PolynomialSchedule", "CosineSchedule", "CondOTSchedule", "VPSchedule", "VESchedule",
           "resolve_schedule", "BUILTIN_SCHEDULES"]

_HALF_PI = 0.5 * math.pi


# ------------------------------------------------------------------------------------ mixture κ_t
class LinearSchedule(MixtureSchedule):
    """κ_t = t."""

    name = "linear"

    def kappa(self, t):
        return t

    def kappa_dot(self, t):
        return torch.ones_like(t)

    def kappa_inverse(self, k):
        return k

    def describe(self):
        return {"name": self.name, "kappa": "t"}


class PolynomialSchedule(MixtureSchedule):
    """κ_t = t^power (power > 0; power > 1 unmasks late, < 1 early)."""

    name = "poly"

    def __init__(self, power: float = 2.0):
        self.power = number(power, "power", positive=True)

    def kappa(self, t):
        return t.clamp_min(0) ** self.power

    def kappa_dot(self, t):
        return self.power * t.clamp_min(0) ** (self.power - 1) if self.power != 1 else torch.ones_like(t)

    def kappa_inverse(self, k):
        return k.clamp_min(0) ** (1.0 / self.power)

    def describe(self):
        return {"name": self.name, "power": self.power, "kappa": f"t^{self.power:g}"}


class CosineSchedule(MixtureSchedule):
    """κ_t = 1 − cos(πt/2)."""

    name = "cosine"

    def kappa(self, t):
        return 1 - torch.cos(_HALF_PI * t)

    def kappa_dot(self, t):
        return _HALF_PI * torch.sin(_HALF_PI * t)

    def kappa_inverse(self, k):
        return torch.arccos((1 - k).clamp(-1.0, 1.0)) / _HALF_PI

    def describe(self):
        return {"name": self.name, "kappa": "1 - cos(pi t / 2)"}


# ------------------------------------------------------------------------------------ affine (α_t, σ_t)
class CondOTSchedule(AffineSchedule):
    r"""α_t = t, σ_t = σ_0 (1 − t) (the linear, conditional optimal-transport path from N(0, σ_0² I)).

    ``sigma0`` = σ_0 sets the prior's scale: the default 1 is the usual path; a σ_0 near the target's
    spread makes the flow from prior to target gentler (nearly the identity for a target ≈ N(0, σ_0² I)).
    Bridge in a form stable for r → t: a = t/r, v = σ_0² ((r − t)/r)((1 − t) + t(1 − r)/r),
    v̇ = −2σ_0² ((1 − t) + t((1 − r)/r)²)."""

    name = "cond_ot"

    def __init__(self, sigma0: float = 1.0):
        self.sigma0 = number(sigma0, "cond_ot schedule: sigma0", positive=True)

    def alpha(self, t):
        return t

    def alpha_dot(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return self.sigma0 * (1 - t)

    def sigma_dot(self, t):
        return torch.full_like(t, -self.sigma0)

    def snr_inverse(self, snr):
        q = self.sigma0 * snr
        return q / (1 + q)

    def bridge(self, t, r):
        t, r = t.float(), r.float()
        c = (1 - r) / r
        s2 = self.sigma0 ** 2
        return t / r, 1.0 / r, s2 * ((r - t) / r) * ((1 - t) + t * c), -2 * s2 * ((1 - t) + t * c * c)

    def describe(self):
        return {"name": self.name, "sigma0": self.sigma0}


class VPSchedule(AffineSchedule):
    """α_t = sin(πt/2), σ_t = cos(πt/2) (variance preserving, cosine)."""

    name = "vp"

    def alpha(self, t):
        return torch.sin(_HALF_PI * t)

    def alpha_dot(self, t):
        return _HALF_PI * torch.cos(_HALF_PI * t)

    def sigma(self, t):
        return torch.cos(_HALF_PI * t)

    def sigma_dot(self, t):
        return -_HALF_PI * torch.sin(_HALF_PI * t)

    def snr_inverse(self, snr):
        return torch.atan(snr) / _HALF_PI


class VESchedule(AffineSchedule):
    r"""α_t = 1, σ_t² = σ_min²((σ_max/σ_min)^{2(1−t)} − 1) (variance exploding; σ_1 = 0).

    Bridge v = σ_t² − σ_r² = σ_min² ρ^{2(1−r)}(ρ^{2(r−t)} − 1) with ρ = σ_max/σ_min (stable for r → t)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 2.0):
        self.sigma_min = number(sigma_min, "sigma_min")
        self.sigma_max = number(sigma_max, "sigma_max")
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"ve needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.log_rho = math.log(self.sigma_max / self.sigma_min)

    def sigma2(self, t):
        """σ_t²."""
        return self.sigma_min ** 2 * torch.expm1(2 * (1 - t.float()) * self.log_rho)

    def dsigma2_dt(self, t):
        """dσ_t²/dt = −2 log(σ_max/σ_min) σ_min² (σ_max/σ_min)^{2(1 − t)}."""
        return -2 * self.log_rho * self.sigma_min ** 2 * torch.exp(2 * (1 - t.float()) * self.log_rho)

    def alpha(self, t):
        return torch.ones_like(t)

    def alpha_dot(self, t):
        return torch.zeros_like(t)

    def sigma(self, t):
        return self.sigma2(t).clamp_min(0).sqrt()

    def sigma_dot(self, t):
        return self.dsigma2_dt(t) / (2 * self.sigma(t).clamp_min(torch.finfo(torch.float32).tiny))

    def snr_inverse(self, snr):
        # 1/snr² = σ_t²  ->  1 − t = log(1 + 1/(snr² σ_min²)) / (2 log ρ)
        return 1 - torch.log1p(1.0 / (snr.float() ** 2 * self.sigma_min ** 2)) / (2 * self.log_rho)

    def bridge(self, t, r):
        t, r = t.float(), r.float()
        v = self.sigma_min ** 2 * torch.exp(2 * (1 - r) * self.log_rho) * torch.expm1(2 * (r - t) * self.log_rho)
        return torch.ones_like(t), torch.zeros_like(t), v, self.dsigma2_dt(t)

    def describe(self):
        return {"name": self.name, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


#: name -> (factory, aliases, summary), registered by the core (``egm_framework.builtin``)
BUILTIN_SCHEDULES: dict[str, tuple[Any, tuple[str, ...], str]] = {
    "linear": (LinearSchedule, (), "mixture schedule κ_t = t (discrete paths)"),
    "poly": (PolynomialSchedule, ("polynomial",), "mixture schedule κ_t = t^power (discrete paths)"),
    "cosine": (CosineSchedule, (), "mixture schedule κ_t = 1 - cos(πt/2) (discrete paths)"),
    "cond_ot": (CondOTSchedule, (), "affine schedule α_t = t, σ_t = 1 - t (continuous paths)"),
    "vp": (VPSchedule, ("vp_cosine",), "affine schedule α_t = sin(πt/2), σ_t = cos(πt/2) (continuous paths)"),
    "ve": (VESchedule, (), "affine schedule α_t = 1, σ_t² = smin²((smax/smin)^(2(1-t)) - 1) (continuous paths)"),
}


def resolve_schedule(spec: Any, family: type, *, registry=None, owner: str = "path") -> Any:
    """A schedule object of ``family`` (:class:`MixtureSchedule` or :class:`AffineSchedule`) from ``spec``:
    a registry name, a table ``{"name": ..., **params}``, or an object already built.

    Names are looked up in ``registry`` (the process-wide one when None); the core's own schedules are
    always available, also on a registry without the core plugin. A schedule of the wrong family, or
    one lacking a member, is a :class:`ConfigError` naming the missing members."""
    if isinstance(spec, (str, dict)):
        if isinstance(spec, str):
            name, params = spec, {}
        else:
            if not isinstance(spec.get("name"), str):
                raise ConfigError(f"{owner}: schedule must be a name or a table with name = \"...\", got {spec!r}")
            name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        if registry is None:
            from .registry import get_registry

            registry = get_registry()
        builtin = _builtin_registry()
        use = registry if name in registry.names("schedule") or name not in builtin.names("schedule") else builtin
        obj = use.create("schedule", name, **params)
    else:
        obj = spec
        name = getattr(obj, "name", "") or type(obj).__name__
    missing = missing_members(obj, family)
    if missing:
        raise ConfigError(f"{owner} needs {describe_protocol(family)}; schedule {name!r} lacks {', '.join(missing)} "
                          "(see `egm components schedule`)")
    return obj


@functools.lru_cache(maxsize=1)
def _builtin_registry():
    """The core's own components alone (schedules resolve here when a registry lacks the core plugin)."""
    from . import builtin
    from .plugins import PluginManager
    from .registry import Registry

    manager = PluginManager()
    manager.register(builtin, "core", distribution="egm-framework")
    return Registry(manager)
