from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from ..states import State


class Energy(ABC):
    """A target Boltzmann density p(x) ∝ exp(−E(x)).

    Pinned convention: ``energy(x)`` returns the **energy** E(x) of shape ``(B,)``, lower = more
    probable; never log p. An energy declares the state space it lives on by registry name and
    parameters (:attr:`space_spec`), so a third-party energy package needs no modality code.
    """

    #: registry name, set by the factory's registration
    name: str = ""

    @property
    @abstractmethod
    def space_spec(self) -> tuple[str, dict[str, Any]]:
        """(state-space registry name, its parameters), e.g. ``("categorical", {"shape": (5, 5), "vocab": 2})``."""

    @abstractmethod
    def __call__(self, x: State) -> torch.Tensor:
        """E(x). x: (B, *event) -> (B,) float."""

    # ----------------------------------------------------------------- optional capabilities
    #: whether :meth:`conditional_logits` is implemented (enables ``estimator.conditional_targets``)
    supports_conditionals: bool = False

    def conditional_logits(self, x: State) -> Any:
        """Single-site conditionals of p: for every categorical site i and token v,
        ``−E(x with x^i := v)`` up to a constant per (state, site), i.e. the logits of
        p(x^i = v | x^{−i}). x: (B, *shape) -> (B, *shape, N) float; for a product state, a tuple with
        one entry per part and None for a continuous part.

        Optional (set :attr:`supports_conditionals`). Plain EGM then regresses the denoiser of a
        categorical site on Σ_k w_k p(x^i = · | x_1^{k, −i}) instead of Σ_k w_k onehot(x_1^{k, i})
        (Rao–Blackwellization: the same expectation, and a site's coupling to its fixed neighbours is
        exact in every proposal rather than diluted by the selection of the whole state).
        :func:`egm_framework.interfaces.energy.conditional_logits_by_substitution` computes it from
        the energy alone with B·S·N evaluations (a reference for tests, or for small models)."""
        raise NotImplementedError(f"energy {self.name!r} provides no single-site conditionals")

    #: whether :meth:`conditional_gaussian` is implemented (enables ``estimator.collapse_continuous``)
    supports_conditional_gaussian: bool = False

    def conditional_gaussian(self, x_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For a product energy whose continuous part is Gaussian given the discrete part,
        x^c | x^d ~ N(mean(x^d), var(x^d) I): x_d (B, *d_shape) -> (mean (B, D), var (B,)).

        Optional (set :attr:`supports_conditional_gaussian`). Plain EGM can then integrate the
        continuous part out of each proposal analytically (``estimator.collapse_continuous``): the
        proposals are discrete only, weighted by their exact marginal likelihood of x_t, and the
        continuous target uses the exact posterior mean of x_1^c given the proposal and x_t."""
        raise NotImplementedError(f"energy {self.name!r} does not declare a conditionally Gaussian continuous part")

    def observables(self, x: State) -> dict[str, torch.Tensor]:
        """Named scalar statistics per sample, each (B,), compared between sampler and ground truth
        (e.g. magnetization). The energy itself is always compared and need not be listed."""
        return {}

    def ground_truth(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> State:
        """n independent (or well-thinned) samples from p. Raise ``NotImplementedError`` if unknown."""
        raise NotImplementedError(f"energy {self.name!r} provides no ground-truth sampler")

    @property
    def ground_truth_method(self) -> str:
        """One line saying how :meth:`ground_truth` samples (exact, Gibbs with burn-in ..., MALA ...)."""
        return "unavailable"

    def extra_metrics(self, samples: State, reference: State) -> dict[str, float]:
        """Task-specific metrics (mode coverage, weights of known modes, ...): name -> value.

        Called with model samples and a ground-truth set; also called with two ground-truth sets to
        give each metric its noise floor."""
        return {}

    #: keys of :meth:`extra_metrics` that are values to compare with ground truth (a count, a share),
    #: not distances: their ground-truth value is reported as ``key/reference`` instead of a noise floor
    reference_metrics: frozenset[str] = frozenset()

    def exact_values(self) -> dict[str, float]:
        """Exact reference values for the report, name -> value (e.g. ⟨E⟩, log Z, a ground-state share),
        computed from the model itself rather than estimated from ground-truth samples.

        A name equal to a reported metric (``E-mean``; ``M-mean`` and ``|M|-mean`` for the observables
        ``magnetization`` and ``abs_magnetization``; ``<observable>-mean`` otherwise; a key of
        :meth:`extra_metrics`) puts the exact value next to the sampler's estimate; any other name
        (``log Z``) is listed with its value. Default: none. Written to ``eval.json`` as ``name/exact``."""
        return {}

    def figures(self, samples: State, reference: State, out_dir) -> list[str]:
        """Write task-specific figures into ``out_dir``; return their file names."""
        return []

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def conditional_logits_by_substitution(energy: Energy, x: torch.Tensor, vocab: int) -> torch.Tensor:
    """−E(x with x^i := v) for every site i and token v, by evaluating the energy on each substituted
    state: x (B, *shape) long -> (B, *shape, vocab) float. Costs B·S·vocab energy evaluations; a
    reference for :meth:`Energy.conditional_logits` (closed forms are checked against it)."""
    B, shape = x.shape[0], x.shape[1:]
    S = int(torch.tensor(shape).prod()) if len(shape) else 1
    flat = x.reshape(B, S)
    sub = flat[:, None, None, :].expand(B, S, vocab, S).clone()  # (B, site, value, S)
    idx = torch.arange(S, device=x.device)
    sub[:, idx, :, idx] = torch.arange(vocab, device=x.device).expand(S, B, vocab)
    e = energy(sub.reshape(B * S * vocab, *shape))
    return (-e).view(B, *shape, vocab)
