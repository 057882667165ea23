from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from .space import StateSpace


class NetworkFactory(Protocol):
    """What ``register_networks`` registers: ``factory(space, output_shapes, **params) -> nn.Module``.

    The module's ``forward(x, t)`` takes a state batch ``x: (B, *event)`` and times ``t: (B,)`` and
    returns a tensor ``(B, *output_shape)`` or, when ``output_shapes`` is a tuple of shapes, a tuple
    of tensors (one head each). ``output_shapes == torch.Size([])`` means one scalar per row, (B,):
    that is how intermediate-energy networks are built.
    """

    def __call__(self, space: StateSpace, output_shapes: Any, **params: Any) -> nn.Module: ...


def is_multi_head(output_shapes: Any) -> bool:
    return isinstance(output_shapes, tuple) and not isinstance(output_shapes, torch.Size) and len(output_shapes) > 0 and not isinstance(output_shapes[0], int)
