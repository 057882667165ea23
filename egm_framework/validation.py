"""Parameter checks for component factories (shared by every plugin).

They raise ``ValueError`` with the parameter's name, the allowed range and the value given; the
registry turns that into a ``ConfigError`` naming the component, e.g.
``energy 'ising': L must be an integer >= 2, got 1``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["number", "integer"]


def number(value: Any, what: str, *, minimum: float | None = None, positive: bool = False,
           optional: bool = False) -> float | None:
    """A finite float (bools rejected); ``positive``: > 0; ``minimum``: ≥ minimum; ``optional``: None passes."""
    if value is None and optional:
        return None
    tail = " or None" if optional else ""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a finite number{tail}, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a finite number{tail}, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number{tail}, got {value!r}")
    if positive and not v > 0:
        raise ValueError(f"{what} must be > 0{tail}, got {value!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{what} must be >= {minimum:g}{tail}, got {value!r}")
    return v


def integer(value: Any, what: str, *, minimum: int | None = None) -> int:
    """An int (bools and floats rejected), ≥ minimum if given."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        rng = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{what} must be an integer{rng}, got {value!r}")
    return value
