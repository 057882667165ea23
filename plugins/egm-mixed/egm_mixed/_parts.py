"""Helpers for resolving the parts of a product component by registry name."""

from __future__ import annotations

from typing import Any


def part_spec(value: Any, role: str, example: str) -> tuple[str, dict]:
    """Split ``{"name": ..., **params}`` into (name, params) and say what is wrong otherwise."""
    if isinstance(value, str):  # a bare name is accepted as {"name": value}
        return value, {}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        raise ValueError(f"{role} must be a table with a component name and its parameters, e.g. {example}; "
                         f"got {value!r}")
    params = {k: v for k, v in value.items() if k != "name"}
    return value["name"], params


def resolve_registry(registry):
    if registry is not None:
        return registry
    from egm_framework.registry import get_registry

    return get_registry()
