"""Hook specifications: the five ways a plugin contributes components.

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


#: component kind -> hook name
KIND_HOOKS = {
    "state_space": "register_state_spaces",
    "energy": "register_energies",
    "path": "register_paths",
    "generator": "register_generators",
    "network": "register_networks",
}
