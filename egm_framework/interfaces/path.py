from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..states import State
from .space import StateSpace


class ConditionalPath(ABC):
    """A conditional probability path p_{t|1}(x | x_1) from the prior (t = 0) to x_1 (t = 1), and its
    bridges p_{t|r}(x | x_r) for t ≤ r ≤ 1 (with p_{t|1} the case r = 1).

    The bridges must compose: p_{t|1}(x | x_1) = ∫ p_{t|r}(x | x_r) p_{r|1}(x_r | x_1) dx_r, so that
    p_t = ∫ p_{t|r}(· | x_r) p_r(x_r) dx_r for every target.

    Proposals (what the estimators draw) are the bridge density read as a function of its end point:

        q(x_r | x_t) = p_{t|r}(x_t | x_r) / Z_{r|t}(x_t),   Z_{r|t}(x_t) = ∫ p_{t|r}(x_t | x_r) dx_r.

    With them the self-normalized importance weights of EGM are softmax_k(−E_r(x_r^k)). A path whose
    proposal is not exactly proportional to the bridge returns the extra log-ratio
    log p_{t|r}(x_t|x_r) − log q(x_r|x_t) − log Z_{r|t}(x_t) from :meth:`proposal_log_correction`.

    Shapes: x_1, x_t: (B, *event); t, r: (B,) floats; n proposals per row come back as (B, n, *event).
    """

    name: str = ""

    def __init__(self, space: StateSpace):
        self.space = space

    #: training times are drawn uniformly from this interval (keeps proposals well defined)
    train_time_range: tuple[float, float] = (0.0, 1.0)
    #: the sampler integrates over this interval
    sample_time_range: tuple[float, float] = (0.0, 1.0)

    @abstractmethod
    def prior_sample(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> State:
        """x_0 ~ p_0, shape (n, *event)."""

    @abstractmethod
    def sample_xt(self, x1: State, t: torch.Tensor, generator: torch.Generator) -> State:
        """x_t ~ p_{t|1}(· | x_1). x_1: (B, *event), t: (B,) -> (B, *event)."""

    @abstractmethod
    def propose(self, x_t: State, t: torch.Tensor, r: torch.Tensor, n: int, generator: torch.Generator) -> State:
        """x_r^k ~ q(· | x_t) ∝ p_{t|r}(x_t | ·), k = 1..n. x_t: (B, *event), t, r: (B,) -> (B, n, *event).

        For r = 1 this is the posterior proposal of the plain SNIS estimator."""

    @abstractmethod
    def log_normalizer(self, x_t: State, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """log Z_{r|t}(x_t) = log ∫ p_{t|r}(x_t | x_r) dx_r. -> (B,)"""

    def proposal_log_correction(self, x_t: State, t: torch.Tensor, r: torch.Tensor, x_r: State) -> torch.Tensor | None:
        """Extra log-weight (B, n) for proposals not exactly ∝ p_{t|r}(x_t | ·); ``None`` when exact."""
        return None

    def describe(self) -> dict:
        return {"name": self.name}
