"""The product state space: a continuous part × a discrete part, each any registered state space."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from egm_framework.interfaces import StateSpace
from egm_framework.states import MixedState

from ._parts import part_spec, resolve_registry


class ConcatEncoder(nn.Module):
    """features(x) = [enc_c(x.continuous), enc_d(x.discrete)]: (B, F_c + F_d)."""

    def __init__(self, continuous: nn.Module, discrete: nn.Module):
        super().__init__()
        self.continuous = continuous
        self.discrete = discrete
        self.out_features = int(continuous.out_features) + int(discrete.out_features)

    def forward(self, x) -> torch.Tensor:
        return torch.cat([self.continuous(x[0]), self.discrete(x[1])], dim=-1)


class ProductSpace(StateSpace):
    """X = X_c × X_d. A state is ``MixedState(continuous (B, *c_event) float, discrete (B, *d_event) long)``.

    Parameters
    ----------
    continuous, discrete:
        ``{"name": <state-space registry name>, **params}``, e.g.
        ``continuous={"name": "euclidean", "dim": 2}``, ``discrete={"name": "categorical", "shape": [3], "vocab": 2}``.
        Each is built with ``registry.create("state_space", name, **params)``.
    registry:
        Passed by the core (the active registry); defaults to the process-wide one.

    ``event_shape = (c_event, d_event)``; ``dim = dim_c + dim_d``; the encoder concatenates the parts'
    encoders (``out_features = F_c + F_d``).
    """

    def __init__(self, continuous: dict, discrete: dict, registry=None):
        reg = resolve_registry(registry)
        c_name, c_params = part_spec(continuous, "continuous", "{name = 'euclidean', dim = 2}")
        d_name, d_params = part_spec(discrete, "discrete", "{name = 'categorical', shape = [3], vocab = 2}")
        self.continuous = reg.create("state_space", c_name, **c_params)
        self.discrete = reg.create("state_space", d_name, **d_params)
        self.spec = {"continuous": {"name": c_name, **c_params}, "discrete": {"name": d_name, **d_params}}

    @property
    def event_shape(self) -> tuple[Any, Any]:
        return (self.continuous.event_shape, self.discrete.event_shape)

    @property
    def dim(self) -> int:
        return int(self.continuous.dim) + int(self.discrete.dim)

    def validate(self, x) -> None:
        if not isinstance(x, tuple) or len(x) != 2:
            raise ValueError(f"a state of the product space must be MixedState(continuous, discrete), got "
                             f"{type(x).__name__}")
        c, d = x
        if not isinstance(c, torch.Tensor) or not isinstance(d, torch.Tensor):
            raise ValueError("both parts of a mixed state must be tensors")
        if c.shape[0] != d.shape[0]:
            raise ValueError(f"continuous and discrete parts have different batch sizes: {c.shape[0]} vs {d.shape[0]}")
        try:
            self.continuous.validate(c)
        except ValueError as exc:
            raise ValueError(f"continuous part: {exc}") from None
        try:
            self.discrete.validate(d)
        except ValueError as exc:
            raise ValueError(f"discrete part: {exc}") from None

    def encoder(self, embedding_dim: int = 8) -> nn.Module:
        return ConcatEncoder(self.continuous.encoder(embedding_dim=embedding_dim),
                             self.discrete.encoder(embedding_dim=embedding_dim))

    def pair(self, continuous: torch.Tensor, discrete: torch.Tensor) -> MixedState:
        return MixedState(continuous, discrete)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "event_shape": str(self.event_shape),
                "continuous": self.continuous.describe(), "discrete": self.discrete.describe()}
