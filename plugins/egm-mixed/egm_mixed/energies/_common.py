"""Small shared helpers for the mixed energies (metrics and figures)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from egm_framework.metrics import wasserstein_1d  # noqa: F401  (re-exported for the energies)


class DeviceCache:
    """Constant tensors moved once per (device, dtype) and reused: no host→device copy per energy call."""

    def __init__(self, **tensors: torch.Tensor):
        self._base = tensors
        self._cache: dict[tuple, dict[str, torch.Tensor]] = {}

    def get(self, device, dtype=None) -> dict[str, torch.Tensor]:
        key = (str(device), dtype)
        hit = self._cache.get(key)
        if hit is None:
            hit = {k: (v.to(device, dtype) if (dtype is not None and v.is_floating_point()) else v.to(device))
                   for k, v in self._base.items()}
            self._cache[key] = hit
        return hit


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def parts(x) -> tuple[torch.Tensor, torch.Tensor]:
    """(continuous, discrete) from a MixedState or a 2-tuple."""
    if not isinstance(x, tuple) or len(x) != 2:
        raise TypeError(f"a mixed energy expects MixedState(continuous, discrete), got {type(x).__name__}")
    return x[0], x[1]


def tv_histograms(p: np.ndarray, q: np.ndarray) -> float:
    """½ Σ |p − q| of two histograms (normalized here)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / max(p.sum(), 1e-300)
    q = q / max(q.sum(), 1e-300)
    return float(0.5 * np.abs(p - q).sum())


def new_figure(ncols: int = 1, width: float = 4.5, height: float = 4.0):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def save(fig, out_dir, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    return name


def float_list(value: Any, what: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{what} must be numeric, got {value!r}") from exc
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{what} must have shape {list(shape)}, got {list(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return t
