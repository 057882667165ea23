"""Hook specifications: the ways a plugin contributes components, one hook per component kind.

Each hook receives a ``register`` callback::

    register(name: str, factory: Callable, *, aliases: Sequence[str] = (), summary: str | None = None)

A plugin module implements any subset of these, each decorated with
``egm_framework.hookimpl``, and is found through the entry-point group ``egm_framework``.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import pluggy

PROJECT = "egm_framework"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Registrar(Protocol):
    def __call__(
        self, name: str, factory: Callable, *, aliases: Sequence[str] = (), summary: str | None = None
    ) -> None: ...


@hookspec
def register_state_spaces(register: Registrar) -> None:
    """Register state spaces: ``factory(**params) -> StateSpace``.

    e.g. ``register("categorical", CategoricalSpace, summary="tokens 0..N-1 on a grid")``
    """


@hookspec
def register_energies(register: Registrar) -> None:
    """Register target energies: ``factory(**params) -> Energy``.

    e.g. ``register("ising", IsingEnergy, summary="L×L periodic Ising model")``
    """


@hookspec
def register_paths(register: Registrar) -> None:
    """Register conditional paths: ``factory(space, **params) -> ConditionalPath``.

    e.g. ``register("masked", MaskedPath, aliases=("absorbing",))``
    """


@hookspec
def register_generators(register: Registrar) -> None:
    """Register generator parametrizations: ``factory(**params) -> GeneratorParametrization``.

    e.g. ``register("jump", JumpGenerator, summary="CTMC rates from a denoiser")``
    """


@hookspec
def register_networks(register: Registrar) -> None:
    """Register networks: ``factory(space, output_shapes, **params) -> torch.nn.Module``.

    e.g. ``register("mlp", build_mlp, summary="MLP on encoded states with a time embedding")``
    """


@hookspec
def register_baselines(register: Registrar) -> None:
    """Register MCMC baselines run against EGM at a matched budget (``egm compare``):
    ``factory(energy, space, **params) -> Baseline``; a factory raises
    :class:`~egm_framework.baselines.BaselineNotApplicable` for a target it does not fit.

    e.g. ``register("gibbs", GibbsBaseline, summary="parallel Gibbs, checkerboard on even lattices")``
    """


@hookspec
def register_schedules(register: Registrar) -> None:
    """Register time schedules of paths: ``factory(**params) -> Schedule``
    (a :class:`~egm_framework.interfaces.MixtureSchedule` κ_t or an
    :class:`~egm_framework.interfaces.AffineSchedule` (α_t, σ_t)).

    e.g. ``register("poly", PolynomialSchedule, summary="κ_t = t^power")``
    """


#: component kind -> hook name. Adding a kind: one ``@hookspec`` above and one line here; the
#: registry, ``egm components`` and the plugin checks derive everything else from this table.
KIND_HOOKS = {
    "state_space": "register_state_spaces",
    "energy": "register_energies",
    "path": "register_paths",
    "generator": "register_generators",
    "network": "register_networks",
    "schedule": "register_schedules",
    "baseline": "register_baselines",
}
