"""The Euclidean state space R^d, optionally structured as n particles in R^D.

A state is a float tensor ``x: (B, d)``. For particle systems ``d = n_particles · spatial_dim`` and
the flat vector is read row-major as ``(n_particles, spatial_dim)`` (particle i occupies
coordinates ``i·D … i·D + D − 1``); :meth:`EuclideanSpace.particles` gives that view.

Translation-invariant particle energies (DW-4, LJ, …) define an improper density on R^{nD}; the
usual fix, used here when ``zero_com=True``, is to live on the centre-of-mass-free subspace
{x : Σ_i x_i = 0} of dimension ``(n − 1)·D``. Paths then project all their Gaussian noise with
:meth:`EuclideanSpace.project`, so every state they produce stays in that subspace, and normalizers
use :attr:`EuclideanSpace.free_dim` degrees of freedom.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from egm_framework.interfaces import StateSpace

__all__ = ["EuclideanSpace", "FlattenEncoder"]


class FlattenEncoder(nn.Module):
    """x: (B, *event) -> (B, d) features ``x.flatten(1) · scale``; ``out_features = d``."""

    def __init__(self, dim: int, scale: float = 1.0):
        super().__init__()
        self.out_features = int(dim)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).float()
        return h * self.scale if self.scale != 1.0 else h


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


class EuclideanSpace(StateSpace):
    """R^d with event shape ``(d,)``.

    Parameters (give ``dim``, or ``shape``, or ``n_particles`` and ``spatial_dim``):

    - ``dim``: number of coordinates d.
    - ``shape``: a one-element sequence ``[d]`` (accepted for symmetry with other spaces).
    - ``n_particles``, ``spatial_dim``: particle structure; then d = n_particles · spatial_dim.
    - ``zero_com``: states live in the centre-of-mass-free subspace (particles only).
    - ``feature_scale``: the generic encoder multiplies coordinates by this factor (e.g. 1/40 for
      GMM-40 whose modes spread to ±40), which keeps core MLP inputs O(1).
    """

    name = "euclidean"

    def __init__(self, dim: int | None = None, shape: Sequence[int] | None = None, n_particles: int | None = None,
                 spatial_dim: int | None = None, zero_com: bool = False, feature_scale: float = 1.0):
        d_from = []
        if dim is not None:
            d_from.append(_positive_int(dim, "dim"))
        if shape is not None:
            if isinstance(shape, int):
                shape = (shape,)
            shape = tuple(shape)
            if len(shape) != 1:
                raise ValueError(f"shape of a euclidean space must have one entry [d] (flat vectors), got {list(shape)}; "
                                 "use n_particles and spatial_dim for particle systems")
            d_from.append(_positive_int(shape[0], "shape[0]"))
        if (n_particles is None) != (spatial_dim is None):
            raise ValueError("give both n_particles and spatial_dim (or neither), got "
                             f"n_particles={n_particles!r}, spatial_dim={spatial_dim!r}")
        if n_particles is not None:
            n_particles = _positive_int(n_particles, "n_particles")
            spatial_dim = _positive_int(spatial_dim, "spatial_dim")
            d_from.append(n_particles * spatial_dim)
        if not d_from:
            raise ValueError("a euclidean space needs dim (or shape, or n_particles and spatial_dim)")
        if len(set(d_from)) != 1:
            raise ValueError(f"inconsistent dimensions: dim/shape/n_particles·spatial_dim give {sorted(set(d_from))}")
        if not isinstance(zero_com, bool):
            raise ValueError(f"zero_com must be true or false, got {zero_com!r}")
        if zero_com and (n_particles is None or n_particles < 2):
            raise ValueError("zero_com needs a particle structure with n_particles >= 2")
        try:
            feature_scale = float(feature_scale)
        except (TypeError, ValueError):
            raise ValueError(f"feature_scale must be a positive number, got {feature_scale!r}") from None
        if not feature_scale > 0:
            raise ValueError(f"feature_scale must be a positive number, got {feature_scale!r}")
        self._dim = d_from[0]
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.zero_com = zero_com
        self.feature_scale = feature_scale

    # ------------------------------------------------------------------ StateSpace
    @property
    def event_shape(self) -> torch.Size:
        return torch.Size([self._dim])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def free_dim(self) -> int:
        """Degrees of freedom: d, or (n − 1)·D on the centre-of-mass-free subspace."""
        return self._dim - self.spatial_dim if self.zero_com else self._dim

    @property
    def is_particle_system(self) -> bool:
        return self.n_particles is not None

    def validate(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"a euclidean state must be a float tensor of shape (B, {self._dim}), got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"a euclidean state must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != 2 or x.shape[1] != self._dim:
            raise ValueError(f"a euclidean state must have shape (B, {self._dim}), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("a euclidean state contains NaN or infinite values")
        if self.zero_com:
            com = self.particles(x).mean(dim=-2)
            scale = 1.0 + x.abs().max()
            if bool((com.abs() > 1e-3 * scale).any()):
                raise ValueError("states of a zero_com space must have zero centre of mass "
                                 f"(max |com| = {float(com.abs().max()):.3g}); apply space.project(x)")

    def encoder(self, embedding_dim: int = 8) -> nn.Module:
        """Flatten (times ``feature_scale``): (B, d) -> (B, d). ``embedding_dim`` is unused."""
        return FlattenEncoder(self._dim, self.feature_scale)

    def describe(self) -> dict[str, Any]:
        d = {"name": self.name, "event_shape": str(tuple(self.event_shape)), "dim": self._dim}
        if self.is_particle_system:
            d.update(n_particles=self.n_particles, spatial_dim=self.spatial_dim, zero_com=self.zero_com)
        if self.feature_scale != 1.0:
            d["feature_scale"] = self.feature_scale
        return d

    # ------------------------------------------------------------------ particle helpers
    def particles(self, x: torch.Tensor) -> torch.Tensor:
        """(…, n·D) -> (…, n, D) view (requires a particle structure)."""
        if not self.is_particle_system:
            raise ValueError("this euclidean space has no particle structure (give n_particles and spatial_dim)")
        return x.reshape(*x.shape[:-1], self.n_particles, self.spatial_dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection onto the state subspace: removes the centre of mass when ``zero_com``,
        identity otherwise. x: (…, d) -> (…, d)."""
        if not self.zero_com:
            return x
        p = self.particles(x)
        return (p - p.mean(dim=-2, keepdim=True)).reshape(x.shape)

    def __repr__(self) -> str:
        return f"EuclideanSpace({self.describe()})"
