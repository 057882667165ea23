r"""E(n)-equivariant graph network (EGNN, Satorras et al. 2021) for particle systems.

State x: (B, n·D) read as positions p_i ∈ R^D, i = 1..n, centred (p_i ← p_i − p̄). With node features
h_i (initialised from the time embedding, identical for all particles) and a fully connected graph,
each layer computes

    m_ij = φ_e(h_i, h_j, ρ(r_ij), τ(t)),          r_ij = ‖p_i − p_j‖,  ρ(r) = r / (r + s) ∈ [0, 1),
    p_i ← p_i + (1/(n−1)) Σ_{j≠i} (p_i − p_j) / (r_ij + 1) · s · tanh(φ_x(m_ij)),
    h_i ← h_i + φ_h(h_i, Σ_{j≠i} m_ij),

with s = ``distance_scale``. The distance feature ρ is normalized (bounded, resolution s) and each
layer moves a particle by less than s, so the output stays bounded for any input: with raw squared
distances and an unbounded coordinate MLP the velocity grew like |x|⁴ and a DW-4 flow blew up.

ρ alone resolves distances poorly far from s (DW-4's two wells at r ≈ 2.5 and 5.5 map to ρ = 0.71
and 0.85 with s = 1). ``distance_rbf = R > 0`` adds R Gaussian radial basis functions
exp(−((r − μ_k)/γ)²), centres μ_k evenly spaced on [0, ``rbf_max``] and γ their spacing (SchNet's
expansion): bounded in [0, 1] like ρ, with a resolution γ wherever the target's distances lie.

Vector output (velocity/drift, or the offset x̂_1 − x of the endpoint parametrization):
v = p^{(L)} − p^{(0)}, centred, |v_i| < L·s; equivariant to rotations,
reflections and permutations, invariant to translations, and centre-of-mass free.
Scalar output (``output_shapes == torch.Size([])``, intermediate energies): Σ_i φ_o(h_i^{(L)}),
invariant to all of them. Cost O(B n² H) per layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from egm_framework.interfaces.network import is_multi_head
from egm_framework.networks import SinusoidalTimeEmbedding, _activation

from .space import EuclideanSpace

__all__ = ["EGNN", "build_egnn"]


class _EGNNLayer(nn.Module):
    def __init__(self, hidden: int, time_dim: int, act: str, update_nodes: bool = True, update_coords: bool = True,
                 rbf: int = 0):
        super().__init__()
        self.edge = nn.Sequential(nn.Linear(2 * hidden + 1 + rbf + time_dim, hidden), _activation(act),
                                  nn.Linear(hidden, hidden), _activation(act))
        self.coord = None
        if update_coords:
            self.coord = nn.Sequential(nn.Linear(hidden, hidden), _activation(act), nn.Linear(hidden, 1))
            nn.init.zeros_(self.coord[-1].weight)
            nn.init.zeros_(self.coord[-1].bias)
        self.node = (nn.Sequential(nn.Linear(2 * hidden, hidden), _activation(act), nn.Linear(hidden, hidden))
                     if update_nodes else None)

    def forward(self, h, p, temb, mask, distance_scale, rbf_centres=None):
        B, n, H = h.shape
        diff = p[:, :, None, :] - p[:, None, :, :]  # (B, n, n, D)
        dist = torch.sqrt((diff * diff).sum(-1, keepdim=True) + 1e-8)  # (B, n, n, 1)
        parts = [h[:, :, None, :].expand(B, n, n, H), h[:, None, :, :].expand(B, n, n, H),
                 dist / (dist + distance_scale)]
        if rbf_centres is not None:  # (R,) centres, evenly spaced: width = their spacing
            width = rbf_centres[1] - rbf_centres[0] if rbf_centres.numel() > 1 else rbf_centres[0].clamp(min=1.0)
            parts.append(torch.exp(-((dist - rbf_centres) / width) ** 2))
        parts.append(temb[:, None, None, :].expand(B, n, n, temb.shape[-1]))
        feats = torch.cat(parts, dim=-1)
        m = self.edge(feats) * mask  # (B, n, n, H), zero on the diagonal
        if self.coord is not None:
            w = distance_scale * torch.tanh(self.coord(m)) * mask  # (B, n, n, 1), |w| < s
            p = p + (diff / (dist + 1.0) * w).sum(2) / max(n - 1, 1)
        if self.node is not None:
            h = h + self.node(torch.cat([h, m.sum(2)], dim=-1))
        return h, p


class EGNN(nn.Module):
    """EGNN on a particle space; see the module docstring. forward(x: (B, n·D), t: (B,)) -> (B, n·D) or (B,)."""

    def __init__(self, space: EuclideanSpace, output_shapes: Any, hidden: int = 64, layers: int = 4,
                 time_embedding: int = 32, activation: str = "silu", distance_scale: float = 1.0,
                 distance_rbf: int = 0, rbf_max: float | None = None):
        super().__init__()
        if not isinstance(space, EuclideanSpace) or not space.is_particle_system:
            raise ValueError("egnn needs a euclidean space with a particle structure (n_particles, spatial_dim)")
        if is_multi_head(output_shapes):
            raise ValueError("egnn has a single head; got several output shapes")
        shape = torch.Size(output_shapes)
        if shape == torch.Size([]):
            self.scalar = True
        elif shape == space.event_shape:
            self.scalar = False
        else:
            raise ValueError(f"egnn outputs a vector of the event shape {tuple(space.event_shape)} or a scalar (); "
                             f"got output shape {tuple(shape)}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
        if not float(distance_scale) > 0:
            raise ValueError(f"distance_scale must be positive, got {distance_scale!r}")
        if isinstance(distance_rbf, bool) or not isinstance(distance_rbf, int) or distance_rbf < 0:
            raise ValueError(f"distance_rbf must be an integer >= 0 (0: no radial basis features), got {distance_rbf!r}")
        rbf_max = 4.0 * float(distance_scale) if rbf_max is None else rbf_max
        if not (isinstance(rbf_max, (int, float)) and not isinstance(rbf_max, bool) and rbf_max > 0):
            raise ValueError(f"rbf_max must be a positive number (the last radial basis centre), got {rbf_max!r}")
        self.n, self.D = space.n_particles, space.spatial_dim
        self.distance_scale = float(distance_scale)
        if distance_rbf:
            self.register_buffer("rbf_centres", torch.linspace(0.0, float(rbf_max), distance_rbf)
                                 if distance_rbf > 1 else torch.tensor([float(rbf_max)]), persistent=False)
        else:
            self.rbf_centres = None
        self.time = SinusoidalTimeEmbedding(time_embedding)
        self.h0 = nn.Sequential(nn.Linear(time_embedding, hidden), _activation(activation), nn.Linear(hidden, hidden))
        # the vector head reads only coordinates and the scalar head only node features, so the last
        # layer skips the update nobody reads (every parameter then gets a gradient)
        last = layers - 1
        self.layers = nn.ModuleList(
            _EGNNLayer(hidden, time_embedding, activation, update_nodes=self.scalar or i < last,
                       update_coords=not self.scalar or i < last, rbf=distance_rbf) for i in range(layers))
        if self.scalar:
            self.out = nn.Sequential(nn.Linear(hidden, hidden), _activation(activation), nn.Linear(hidden, 1))
        mask = 1.0 - torch.eye(self.n)
        self.register_buffer("mask", mask[None, :, :, None], persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        p = x.float().reshape(B, self.n, self.D)
        p = p - p.mean(1, keepdim=True)
        p0 = p
        temb = self.time(t)
        h = self.h0(temb)[:, None, :].expand(B, self.n, -1)
        for layer in self.layers:
            h, p = layer(h, p, temb, self.mask, self.distance_scale, self.rbf_centres)
        if self.scalar:
            return self.out(h).squeeze(-1).sum(-1)
        v = p - p0
        v = v - v.mean(1, keepdim=True)
        return v.reshape(B, self.n * self.D)


def build_egnn(space: EuclideanSpace, output_shapes: Any, hidden: int = 64, layers: int = 4, time_embedding: int = 32,
               activation: str = "silu", distance_scale: float = 1.0, distance_rbf: int = 0,
               rbf_max: float | None = None) -> nn.Module:
    """E(n)-equivariant GNN for particle systems (equivariant velocity or invariant scalar).

    distance_scale: resolution of the bounded distance feature r/(r + s) and the most a layer moves a
    particle; distance_rbf: number of Gaussian radial basis features of r (0: none), centres on
    [0, rbf_max] (default 4 · distance_scale)."""
    return EGNN(space, output_shapes, hidden=hidden, layers=layers, time_embedding=time_embedding,
                activation=activation, distance_scale=distance_scale, distance_rbf=distance_rbf, rbf_max=rbf_max)
