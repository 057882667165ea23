"""``lattice_conv``: a small periodic CNN for 2-D categorical lattices with a time embedding."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from egm_framework.interfaces.network import is_multi_head
from egm_framework.networks import SinusoidalTimeEmbedding

from .space import as_categorical


class LatticeConvNet(nn.Module):
    """x: (B, L1, L2) tokens (mask included) and t: (B,) -> per-site output (B, L1, L2, *rest) or a
    scalar per row (B,) when ``output_shapes == torch.Size([])``.

    token embedding (N + 1 → channels) + per-channel time shift (sinusoidal embedding → linear) →
    ``layers`` × [circular-padded k×k conv, SiLU] with residual connections → 1×1 conv head (per site)
    or global pool → linear (scalar). Heads start at zero (like the core networks). ``pool`` = "mean"
    or "sum" (the scalar head's pooling; "sum" suits an extensive quantity such as a lattice energy,
    whose spread grows with the number of sites: with a mean the head must grow by that factor).
    """

    def __init__(self, space, output_shapes: Any, channels: int = 32, layers: int = 4, kernel_size: int = 3,
                 time_embedding: int = 32, zero_init: bool = True, pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "sum"):
            raise ValueError(f"pool must be 'mean' or 'sum', got {pool!r}")
        self.pool = pool
        space = as_categorical(space, "network 'lattice_conv'")
        shape = torch.Size(space.event_shape)
        if len(shape) != 2:
            raise ValueError(f"lattice_conv needs a 2-D lattice, got event shape {tuple(shape)}")
        if channels < 1 or layers < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"channels, layers >= 1 and an odd kernel_size required, got "
                             f"channels={channels}, layers={layers}, kernel_size={kernel_size}")
        if is_multi_head(output_shapes):
            raise ValueError("lattice_conv has a single head; got several output shapes")
        out = torch.Size(output_shapes)
        if len(out) == 0:
            self.scalar = True
            out_ch = 1
        elif tuple(out[:2]) == tuple(shape):
            self.scalar = False
            out_ch = int(math.prod(out[2:]))
        else:
            raise ValueError(f"lattice_conv outputs per site (shape {tuple(shape)} + ...) or a scalar; "
                             f"got output shape {tuple(out)}")
        self.out_shape = out
        self.embed = nn.Embedding(space.vocab + 1, channels)
        self.time = SinusoidalTimeEmbedding(time_embedding)
        self.time_proj = nn.Linear(time_embedding, channels * layers)
        pad = kernel_size // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_size, padding=pad, padding_mode="circular") for _ in range(layers))
        self.norms = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(layers))
        self.act = nn.SiLU()
        self.channels, self.layers = channels, layers
        if self.scalar:
            self.head = nn.Linear(channels, 1)
        else:
            self.head = nn.Conv2d(channels, out_ch, 1)
        if zero_init:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        h = self.embed(x).permute(0, 3, 1, 2)  # (B, C, L1, L2)
        temb = self.time_proj(self.time(t)).view(B, self.layers, self.channels, 1, 1)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = h + conv(self.act(norm(h + temb[:, i])))
        h = self.act(h)
        if self.scalar:
            pooled = h.sum(dim=(2, 3)) if self.pool == "sum" else h.mean(dim=(2, 3))
            return self.head(pooled).squeeze(-1)
        o = self.head(h).permute(0, 2, 3, 1)  # (B, L1, L2, out_ch)
        return o.reshape(B, *self.out_shape)


def build_lattice_conv(space, output_shapes, channels: int = 32, layers: int = 4, kernel_size: int = 3,
                       time_embedding: int = 32, zero_init: bool = True, pool: str = "mean") -> nn.Module:
    """Periodic CNN on 2-D lattices with a time embedding (per-site logits or a scalar head, pooled by
    ``pool`` = "mean" | "sum")."""
    return LatticeConvNet(space, output_shapes, channels=channels, layers=layers, kernel_size=kernel_size,
                          time_embedding=time_embedding, zero_init=zero_init, pool=pool)
