from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from ..states import State


class StateSpace(ABC):
    """Where samples live.

    A state is a batch ``x`` of shape ``(B, *event_shape)``: ``torch.long`` tokens for categorical
    spaces, floats for Euclidean ones, or a :class:`~egm_framework.states.MixedState` pair for
    product spaces. A space knows how to validate a batch and how to turn it into flat features for
    a generic network (:meth:`encoder`), so that core networks work on every modality.
    """

    #: registry name of the space, set by the registering plugin's factory
    name: str = ""

    @property
    @abstractmethod
    def event_shape(self) -> Any:
        """Shape of one state (``torch.Size``; a tuple of sizes for product spaces)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Number of scalar coordinates/sites of one state (for reports)."""

    @abstractmethod
    def validate(self, x: State) -> None:
        """Raise ``ValueError`` saying what is wrong if ``x`` is not a batch of this space."""

    @abstractmethod
    def encoder(self, embedding_dim: int = 8) -> nn.Module:
        """A module mapping ``x: (B, *event)`` to float features ``(B, F)``; it has ``out_features = F``.

        Categorical spaces embed each token (mask included) in ``embedding_dim`` dimensions;
        Euclidean spaces flatten; product spaces concatenate their parts.
        """

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters, written into run reports."""
        return {"name": self.name, "event_shape": str(self.event_shape)}

    def empty_like(self, x: State) -> State:  # pragma: no cover - convenience
        from ..states import tree_map

        return tree_map(torch.empty_like, x)
