"""Assemble a run's components from a :class:`~egm_framework.config.RunConfig` through the registry.

energy -> its declared state space -> path on that space -> generator parametrization ->
network with the generator's output shapes (and, for bootstrapping, a scalar-output energy network).
"""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import torch
from torch import nn

from .config import ComponentConfig, RunConfig, check_device_name
from .errors import ConfigError
from .interfaces import ConditionalPath, Energy, GeneratorParametrization, StateSpace, check_path_fits, simulate
from .registry import Registry, get_registry


@attrs.frozen(kw_only=True, eq=False)
class Components:
    energy: Energy
    space: StateSpace
    path: ConditionalPath
    generator: GeneratorParametrization
    network: nn.Module
    energy_network: nn.Module | None = None


def resolve_device(name: str) -> torch.device:
    check_device_name(name, "device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} but CUDA is not available here; use device \"cpu\" or \"auto\"")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s); use "
                          "\"cuda:0\" or \"auto\"")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} but MPS is not available here; use device \"cpu\" or \"auto\"")
    return dev


def _split_space_params(section: str, comp: ComponentConfig, space_name: str, space_params: dict,
                        factory=None) -> dict:
    """Parameters that restate the energy's state space (e.g. ``vocab``) must agree with it; they are
    checked here and not passed on — unless the component's factory itself takes a parameter of that
    name (e.g. the product path's ``continuous`` / ``discrete`` parts)."""
    params = dict(comp.params)
    accepted: set[str] = set()
    if factory is not None:
        try:
            accepted = set(inspect.signature(factory).parameters)
        except (TypeError, ValueError):
            pass
    for key in list(params):
        if key in space_params and key not in accepted:
            if _norm(params[key]) != _norm(space_params[key]):
                raise ConfigError(
                    f"{section}.{key} = {params[key]!r} does not match the energy's state space "
                    f"({space_name} with {key} = {space_params[key]!r}); remove {section}.{key} or change the energy")
            del params[key]
    return params


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (tuple, list)) else v


def build_components(cfg: RunConfig, registry: Registry | None = None, *, build_networks: bool = True,
                     device: torch.device | None = None) -> Components:
    """With ``device`` given, the memory training needs is estimated from shapes and a run that cannot
    fit is refused before its buffers are allocated (a network too large to allocate at all is a
    clear error too)."""
    reg = registry or get_registry()
    energy = reg.create("energy", cfg.energy.name, **cfg.energy.params)
    space_name, space_params = energy.space_spec
    space = reg.create("state_space", space_name, **dict(space_params))
    path = reg.create("path", cfg.path.name, space,
                      **_split_space_params("path", cfg.path, space_name, dict(space_params),
                                            reg.get("path", cfg.path.name).factory))
    gen = reg.create("generator", cfg.generator.name,
                     **_split_space_params("generator", cfg.generator, space_name, dict(space_params),
                                           reg.get("generator", cfg.generator.name).factory))
    check_path_fits(gen, path, cfg.generator.name, cfg.path.name)
    network = energy_network = None
    if build_networks:
        try:
            out_shapes = gen.output_shapes(path)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"generator {cfg.generator.name!r} does not fit path {cfg.path.name!r} on state space {space_name!r}: "
                f"{exc}. Pick a generator of the same modality (see `egm components generator`).") from None
        make_net = lambda: reg.create("network", cfg.network.name, space, out_shapes, **cfg.network.params)  # noqa: E731
        make_enet = None
        if cfg.estimator.kind == "bootstrap":
            assert cfg.energy_network is not None
            make_enet = lambda: reg.create("network", cfg.energy_network.name, space, torch.Size([]),  # noqa: E731
                                           **cfg.energy_network.params)
        from .budget import build_within_memory, check_training_fits, parameter_total

        if device is not None:  # buffer and proposals first: they are known from shapes alone
            check_training_fits(cfg, space, torch.device(device), None, None)
        network = build_within_memory(make_net, f"network {cfg.network.name!r}")
        energy_network = (build_within_memory(make_enet, f"energy network {cfg.energy_network.name!r}")
                          if make_enet is not None else None)
        if device is not None:
            check_training_fits(cfg, space, torch.device(device), parameter_total(network),
                                parameter_total(energy_network))
    return Components(energy=energy, space=space, path=path, generator=gen, network=network,
                      energy_network=energy_network)


class _PreflightDone(Exception):
    """Raised by the counting model once the trial simulation has made its network calls."""


#: network calls the trial simulation may make (a sampler with one call per site, e.g. the exact
#: masked sampler, is stopped after these: the preflight costs O(1) network calls at any size)
PREFLIGHT_CALLS = 3


def preflight(comp: Components, cfg: RunConfig, device) -> None:
    """Simulate two samples for two steps with the untrained network (at most ``PREFLIGHT_CALLS``
    network calls) and validate them: catches components of different modalities (e.g. a flow
    generator on a categorical path) with a clear message instead of an error deep inside training."""
    g = torch.Generator(device=device)
    g.manual_seed(0)
    calls = [0]

    def model(s, t):
        if calls[0] >= PREFLIGHT_CALLS:
            raise _PreflightDone
        calls[0] += 1
        return comp.network(s, t)

    try:
        with torch.no_grad():
            x = simulate(comp.generator, model, comp.path, 2, 2, g, device)
        comp.space.validate(x)
    except _PreflightDone:
        return
    except (MemoryError, torch.OutOfMemoryError) as exc:
        from .budget import ResourceError

        raise ResourceError(
            f"out of memory on {device} in a two-sample trial simulation ({type(exc).__name__}); the network or the "
            "state is too large for this machine: make the state smaller (e.g. energy.L) or the network smaller"
        ) from None
    except Exception as exc:  # noqa: BLE001 - reported as a configuration problem
        raise ConfigError(
            f"the components do not fit together: generator {cfg.generator.name!r} with path {cfg.path.name!r} and "
            f"network {cfg.network.name!r} on state space {comp.space.name!r} (energy {cfg.energy.name!r}) failed a "
            f"two-step trial simulation: {type(exc).__name__}: {exc}. Use a generator and path of the energy's "
            "modality (see `egm components`).") from None
    from .prior_check import check_prior_scale

    check_prior_scale(comp.path, comp.energy)

