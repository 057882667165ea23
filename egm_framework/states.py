"""State containers and batch utilities shared by every modality.

A *state* is either a single tensor of shape ``(B, *event)`` (continuous float or discrete
``torch.long`` tokens) or a :class:`MixedState`, a typed pair of such tensors with the same batch
size. Nothing in the core casts tokens to floats: every operation below is applied leaf by leaf.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence, Union

import torch

__all__ = [
    "MixedState",
    "State",
    "tree_map",
    "tree_map2",
    "tree_leaves",
    "batch_size",
    "index",
    "cat",
    "flatten_proposals",
    "to_device",
    "to_saveable",
    "from_saveable",
]


class MixedState(NamedTuple):
    """A state on a product space: ``continuous`` (B, *c_event) float, ``discrete`` (B, *d_event) long."""

    continuous: torch.Tensor
    discrete: torch.Tensor


State = Union[torch.Tensor, MixedState, tuple]


def tree_map(fn: Callable[[torch.Tensor], Any], x: Any) -> Any:
    """Apply ``fn`` to every tensor leaf of a (nested) tuple / NamedTuple of tensors."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, tuple):
        items = [tree_map(fn, e) for e in x]
        return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)
    if x is None:
        return None
    raise TypeError(f"expected a tensor or a tuple of tensors, got {type(x).__name__}")


def tree_map2(fn: Callable[[torch.Tensor, torch.Tensor], Any], a: Any, b: Any) -> Any:
    """Apply ``fn`` leaf-wise to two trees of the same structure."""
    if isinstance(a, torch.Tensor):
        return fn(a, b)
    if isinstance(a, tuple):
        items = [tree_map2(fn, x, y) for x, y in zip(a, b, strict=True)]
        return type(a)(*items) if hasattr(a, "_fields") else type(a)(items)
    raise TypeError(f"expected a tensor or a tuple of tensors, got {type(a).__name__}")


def tree_leaves(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, tuple):
        return [leaf for e in x for leaf in tree_leaves(e)]
    return []


def batch_size(x: State) -> int:
    """Leading dimension of a state (all leaves share it)."""
    return tree_leaves(x)[0].shape[0]


def index(x: State, idx) -> State:
    """``x[idx]`` on every leaf (idx: slice, index tensor or boolean mask over the batch)."""
    return tree_map(lambda v: v[idx], x)


def cat(states: Sequence[State]) -> State:
    """Concatenate states along the batch dimension."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(states), dim=0)
    parts = [cat([s[i] for s in states]) for i in range(len(first))]
    return type(first)(*parts) if hasattr(first, "_fields") else type(first)(parts)


def flatten_proposals(x: State) -> State:
    """(B, K, *event) -> (B*K, *event) on every leaf."""
    return tree_map(lambda v: v.reshape(v.shape[0] * v.shape[1], *v.shape[2:]), x)


def to_device(x: State, device: torch.device | str) -> State:
    return tree_map(lambda v: v.to(device), x)


def to_saveable(x: State) -> dict[str, torch.Tensor]:
    """A flat dict of CPU tensors (safe for ``torch.load(weights_only=True)`` and ``np.savez``)."""
    if isinstance(x, torch.Tensor):
        return {"x": x.detach().cpu()}
    if isinstance(x, MixedState):
        return {"continuous": x.continuous.detach().cpu(), "discrete": x.discrete.detach().cpu()}
    raise TypeError(f"cannot save a state of type {type(x).__name__}")


def from_saveable(d: dict) -> State:
    if "x" in d:
        return torch.as_tensor(d["x"])
    return MixedState(torch.as_tensor(d["continuous"]), torch.as_tensor(d["discrete"]))
