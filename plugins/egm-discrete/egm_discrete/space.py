"""The categorical state space: L sites on a grid, each holding a token 0..N−1 (mask token N)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from egm_framework.interfaces import StateSpace


class TokenEncoder(nn.Module):
    """x: (B, *shape) long in 0..N (N = mask) -> (B, prod(shape) · embedding_dim) float.

    Each token, mask included, is embedded by one ``nn.Embedding(N + 1, d)``; the per-site embeddings
    are flattened site-major. ``out_features`` is the feature width.
    """

    def __init__(self, shape: torch.Size, vocab: int, embedding_dim: int):
        super().__init__()
        self.shape = torch.Size(shape)
        self.embedding = nn.Embedding(vocab + 1, embedding_dim)
        self.out_features = int(math.prod(self.shape)) * embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x).reshape(x.shape[0], self.out_features)


class CategoricalSpace(StateSpace):
    """Tokens 0..vocab−1 on a grid of ``shape`` sites; the mask token (for absorbing paths) is ``vocab``.

    A batch is ``(B, *shape)`` of ``torch.long``. ``shape`` is a list/tuple of positive ints, e.g.
    ``[5, 5]`` for a 5×5 lattice; ``vocab`` ≥ 2 is the number of real tokens N.
    """

    name = "categorical"

    def __init__(self, shape: Sequence[int] | int, vocab: int):
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = [shape]
        if not isinstance(shape, (list, tuple, torch.Size)) or len(shape) == 0 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise ValueError(f"shape must be a non-empty list of positive integers (e.g. [5, 5]), got {shape!r}")
        if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 2:
            raise ValueError(f"vocab must be an integer >= 2, got {vocab!r}")
        self.shape = torch.Size(shape)
        self.vocab = int(vocab)

    # ----------------------------------------------------------------- StateSpace
    @property
    def event_shape(self) -> torch.Size:
        return self.shape

    @property
    def dim(self) -> int:
        return int(math.prod(self.shape))

    @property
    def mask_token(self) -> int:
        return self.vocab

    @property
    def num_sites(self) -> int:
        return self.dim

    def validate(self, x: Any, allow_mask: bool = False) -> None:
        """Check dtype (long), shape (B, *shape) and range (0..N−1, or 0..N with ``allow_mask``).

        Not for hot paths: the range check synchronizes with the device."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"a categorical state must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.long:
            raise ValueError(f"categorical states must have dtype torch.long (tokens), got {x.dtype}; "
                             "do not cast tokens to floats")
        if x.dim() != len(self.shape) + 1 or x.shape[1:] != self.shape:
            raise ValueError(f"expected a batch of shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        if x.numel():
            hi = self.vocab if allow_mask else self.vocab - 1
            lo_v, hi_v = int(x.min()), int(x.max())
            if lo_v < 0 or hi_v > hi:
                raise ValueError(f"tokens must lie in 0..{hi}" + (" (mask token included)" if allow_mask else "")
                                 + f", found values in {lo_v}..{hi_v}")

    def encoder(self, embedding_dim: int = 8) -> nn.Module:
        """``nn.Embedding(vocab + 1, embedding_dim)`` per site, flattened -> (B, sites · embedding_dim)."""
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        return TokenEncoder(self.shape, self.vocab, embedding_dim)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "vocab": self.vocab}

    def __repr__(self) -> str:
        return f"CategoricalSpace(shape={list(self.shape)}, vocab={self.vocab})"


def as_categorical(space: Any, who: str) -> CategoricalSpace:
    """Check that ``space`` is categorical (has ``vocab`` and ``shape``)."""
    if not (hasattr(space, "vocab") and hasattr(space, "event_shape")) or getattr(space, "vocab", None) is None:
        raise ValueError(f"{who} needs a categorical state space (tokens 0..N-1), got {space!r}")
    return space
