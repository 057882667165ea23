"""Core networks that work on every state space through ``StateSpace.encoder``.

``mlp``: encoder features ⊕ sinusoidal time embedding -> MLP -> one linear head per output.
``resmlp``: the same with pre-norm residual blocks (the shared trunk of mixed models).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .interfaces.network import is_multi_head
from .interfaces.space import StateSpace


class SinusoidalTimeEmbedding(nn.Module):
    """t (B,) in [0, 1] -> (B, dim) sin/cos features at geometric frequencies."""

    def __init__(self, dim: int = 32, max_period: float = 1000.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"time_embedding must be an even number ≥ 2, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs * max_period, persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def _activation(name: str) -> nn.Module:
    table = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}
    if name not in table:
        raise ValueError(f"activation must be one of {', '.join(table)}, got {name!r}")
    return table[name]()


class Heads(nn.Module):
    """Linear heads reshaped to the requested output shapes (a scalar head returns (B,))."""

    def __init__(self, in_features: int, output_shapes: Any, zero_init: bool = True):
        super().__init__()
        self.multi = is_multi_head(output_shapes)
        shapes = list(output_shapes) if self.multi else [output_shapes]
        self.shapes = [torch.Size(s) for s in shapes]
        self.layers = nn.ModuleList(nn.Linear(in_features, max(1, s.numel())) for s in self.shapes)
        if zero_init:
            for layer in self.layers:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor):
        outs = []
        for layer, shape in zip(self.layers, self.shapes):
            o = layer(h)
            outs.append(o.squeeze(-1) if len(shape) == 0 else o.view(h.shape[0], *shape))
        return tuple(outs) if self.multi else outs[0]


class MLPNetwork(nn.Module):
    """Encoder ⊕ time embedding -> [Linear, act] × layers -> heads."""

    def __init__(self, space: StateSpace, output_shapes: Any, hidden: int = 128, layers: int = 3,
                 time_embedding: int = 32, token_embedding: int = 8, activation: str = "silu",
                 residual: bool = False, zero_init: bool = True):
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be ≥ 1, got hidden={hidden}, layers={layers}")
        self.encoder = space.encoder(embedding_dim=token_embedding)
        self.time = SinusoidalTimeEmbedding(time_embedding)
        self.inp = nn.Linear(self.encoder.out_features + time_embedding, hidden)
        self.residual = residual
        if residual:
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), _activation(activation),
                              nn.Linear(hidden, hidden)) for _ in range(layers))
        else:
            self.blocks = nn.ModuleList(nn.Sequential(_activation(activation), nn.Linear(hidden, hidden))
                                        for _ in range(layers - 1))
        self.act = _activation(activation)
        self.heads = Heads(hidden, output_shapes, zero_init=zero_init)

    def forward(self, x, t: torch.Tensor):
        h = self.inp(torch.cat([self.encoder(x), self.time(t)], dim=-1))
        for block in self.blocks:
            h = h + block(h) if self.residual else block(h)
        return self.heads(self.act(h))


def build_mlp(space: StateSpace, output_shapes: Any, hidden: int = 128, layers: int = 3, time_embedding: int = 32,
              token_embedding: int = 8, activation: str = "silu", zero_init: bool = True) -> nn.Module:
    """MLP on encoded states with a sinusoidal time embedding (any state space)."""
    return MLPNetwork(space, output_shapes, hidden=hidden, layers=layers, time_embedding=time_embedding,
                      token_embedding=token_embedding, activation=activation, zero_init=zero_init)


def build_resmlp(space: StateSpace, output_shapes: Any, hidden: int = 128, blocks: int = 3,
                 time_embedding: int = 32, token_embedding: int = 8, activation: str = "silu",
                 zero_init: bool = True) -> nn.Module:
    """Residual MLP trunk (pre-norm blocks) with one head per output (any state space)."""
    return MLPNetwork(space, output_shapes, hidden=hidden, layers=blocks, time_embedding=time_embedding,
                      token_embedding=token_embedding, activation=activation, residual=True, zero_init=zero_init)
