"""Core networks that work on every state space through ``StateSpace.encoder``.

``mlp``: encoder features ⊕ sinusoidal time embedding -> MLP -> one linear head per output.
  ``fourier_features`` = F > 0 adds random Fourier features of the encoder's features,
  sin(2π h B) and cos(2π h B) with a fixed B ~ N(0, fourier_scale²) of shape (features, F): an MLP
  fed with raw coordinates learns sharp spatial structure slowly (spectral bias), e.g. the split of
  the velocity field between the modes of a multimodal target, which it smooths into the modes.
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


class FourierFeatures(nn.Module):
    """h (B, n) -> (B, n + 2F): h ⊕ sin(2π h B) ⊕ cos(2π h B), B ~ N(0, scale²) fixed at construction
    (drawn from its own seeded generator, so every build of the same config has the same B; stored in
    the state dict)."""

    def __init__(self, in_features: int, features: int, scale: float, seed: int = 0):
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"fourier_features must be a positive integer (0: off), got {features!r}")
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"fourier_scale must be a positive number, got {scale!r}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(in_features, features, generator=g) * float(scale))
        self.out_features = in_features + 2 * features

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = (2 * math.pi) * (h @ self.B)
        return torch.cat([h, torch.sin(z), torch.cos(z)], dim=-1)


class MLPNetwork(nn.Module):
    """Encoder [⊕ Fourier features] ⊕ time embedding -> [Linear, act] × layers -> heads."""

    def __init__(self, space: StateSpace, output_shapes: Any, hidden: int = 128, layers: int = 3,
                 time_embedding: int = 32, token_embedding: int = 8, activation: str = "silu",
                 residual: bool = False, zero_init: bool = True, fourier_features: int = 0,
                 fourier_scale: float = 1.0):
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be ≥ 1, got hidden={hidden}, layers={layers}")
        self.encoder = space.encoder(embedding_dim=token_embedding)
        self.fourier = (FourierFeatures(self.encoder.out_features, fourier_features, fourier_scale)
                        if fourier_features else None)
        n_in = self.fourier.out_features if self.fourier is not None else self.encoder.out_features
        self.time = SinusoidalTimeEmbedding(time_embedding)
        self.inp = nn.Linear(n_in + time_embedding, hidden)
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
        feats = self.encoder(x)
        if self.fourier is not None:
            feats = self.fourier(feats)
        h = self.inp(torch.cat([feats, self.time(t)], dim=-1))
        for block in self.blocks:
            h = h + block(h) if self.residual else block(h)
        return self.heads(self.act(h))


def build_mlp(space: StateSpace, output_shapes: Any, hidden: int = 128, layers: int = 3, time_embedding: int = 32,
              token_embedding: int = 8, activation: str = "silu", zero_init: bool = True, fourier_features: int = 0,
              fourier_scale: float = 1.0) -> nn.Module:
    """MLP on encoded states with a sinusoidal time embedding (any state space); ``fourier_features`` > 0
    adds that many random Fourier features (frequencies ~ N(0, fourier_scale²)) of the encoded state."""
    return MLPNetwork(space, output_shapes, hidden=hidden, layers=layers, time_embedding=time_embedding,
                      token_embedding=token_embedding, activation=activation, zero_init=zero_init,
                      fourier_features=fourier_features, fourier_scale=fourier_scale)


def build_resmlp(space: StateSpace, output_shapes: Any, hidden: int = 128, blocks: int = 3,
                 time_embedding: int = 32, token_embedding: int = 8, activation: str = "silu",
                 zero_init: bool = True, fourier_features: int = 0, fourier_scale: float = 1.0) -> nn.Module:
    """Residual MLP trunk (pre-norm blocks) with one head per output (any state space); Fourier
    features as in ``mlp``."""
    return MLPNetwork(space, output_shapes, hidden=hidden, layers=blocks, time_embedding=time_embedding,
                      token_embedding=token_embedding, activation=activation, residual=True, zero_init=zero_init,
                      fourier_features=fourier_features, fourier_scale=fourier_scale)
