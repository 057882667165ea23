r"""The 2-D "banana" density, a third-party energy on the ``euclidean`` space of egm-continuous.

    x1 ~ N(0, s²),  x2 | x1 ~ N(b x1², 1),   E(x) = x1² / (2 s²) + (x2 − b x1²)² / 2,

normalizing constant dropped. Exact ground truth by sampling x1, then x2 given x1.
"""

from __future__ import annotations

from typing import Any

import torch

from egm_framework.interfaces import Energy
from egm_framework.validation import number


class BananaEnergy(Energy):
    """Banana: ``s`` (std of x1, > 0, default 2) and ``b`` (curvature, default 0.25)."""

    name = "banana"

    def __init__(self, s: float = 2.0, b: float = 0.25):
        self.s = number(s, "s", positive=True)
        self.b = number(b, "b")

    @property
    def space_spec(self) -> tuple[str, dict[str, Any]]:
        return ("euclidean", {"dim": 2})

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """E(x). x: (B, 2) -> (B,)."""
        x1, x2 = x[..., 0], x[..., 1]
        return 0.5 * (x1 / self.s) ** 2 + 0.5 * (x2 - self.b * x1 * x1) ** 2

    def observables(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x2": x[..., 1]}

    def ground_truth(self, n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
        z = torch.randn(n, 2, generator=generator, device=device)
        x1 = self.s * z[:, 0]
        return torch.stack([x1, self.b * x1 * x1 + z[:, 1]], dim=1)

    @property
    def ground_truth_method(self) -> str:
        return "exact: x1 ~ N(0, s^2), then x2 | x1 ~ N(b x1^2, 1)"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "s": self.s, "b": self.b}
