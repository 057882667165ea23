r"""MCMC baselines: parallel chains run against EGM at a matched budget (``egm compare``).

A baseline is a registered component (kind ``baseline``) built by ``factory(energy, space, **params)``;
a factory raises :class:`BaselineNotApplicable` for a target it does not fit (Swendsen–Wang on a
non-lattice energy, MALA on tokens). It runs C parallel chains::

    b = registry.create("baseline", "gibbs", energy, space)
    b.init(initial_state(path, space, C, generator, device), generator)
    for _ in range(n):
        b.sweep(generator)                 # one update of every chain
    b.state                                # (C, *event): the current state of each chain
    b.energy_evals, b.grad_evals           # cumulative, python ints (no device sync)

**Counting convention** (the trainer counts EGM's cost the same way): one energy evaluation is E on
one full state. EGM's plain step costs B·K (every proposal weighted by the true energy); a Metropolis
or MALA step costs one per chain (the current energy is kept), MALA also one gradient per chain; a
Gibbs update of a site with q tokens costs q (E at every candidate token: a black-box energy needs
exactly these, and lattice implementations compute the same q energy differences in closed form,
charged at the same price); a Swendsen–Wang sweep is charged as one Gibbs sweep (q per site).
Initial energies (Metropolis, MALA) are counted too.

Chains start from the EGM path's prior (:func:`initial_state`); where that prior is not a state of the
space (the masked path's all-mask prior) the masked sites are filled with uniform tokens, as the
masked path's proposals fill them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch

from .errors import ConfigError
from .states import MixedState, State, batch_size, tree_map

__all__ = ["Baseline", "BaselineNotApplicable", "AdaptiveStep", "initial_state", "token_vocab",
           "gibbs_site_sweep", "MetropolisBaseline"]


class BaselineNotApplicable(ConfigError):
    """The baseline cannot run on this target (wrong modality or structure)."""


class Baseline(ABC):
    """C parallel MCMC chains on p(x) ∝ exp(−E(x)); see the module docstring for the cost convention."""

    #: registry name, set by the registry
    name: str = ""
    #: a generic fallback: ``egm compare`` runs it by default only where no specific baseline applies
    fallback: bool = False

    def __init__(self, energy: Callable, space: Any):
        self.energy = energy
        self.space = space
        self.state: State | None = None
        self.energy_evals = 0
        self.grad_evals = 0
        self.sweeps = 0

    def init(self, x0: State, generator: torch.Generator) -> None:
        """Start the chains at x0 (C, *event); subclasses that keep energies evaluate (and count) them."""
        self.state = x0

    @abstractmethod
    def _sweep(self, generator: torch.Generator) -> None:
        """Advance every chain by one sweep, updating ``state`` and the counters."""

    def sweep(self, generator: torch.Generator) -> None:
        if self.state is None:
            raise RuntimeError(f"baseline {self.name!r}: call init(x0, generator) before sweep()")
        self._sweep(generator)
        self.sweeps += 1

    def _count(self, n: int, grads: bool = False) -> None:
        self.energy_evals += int(n)
        if grads:
            self.grad_evals += int(n)

    def describe(self) -> str:
        """One line: what a sweep does and what it costs."""
        doc = (type(self).__doc__ or self.name).strip().splitlines()[0]
        return doc.rstrip(".")


class AdaptiveStep:
    """A step size adapted towards a target acceptance with diminishing Robbins–Monro steps,
    log h ← log h + (mean acceptance − target)/√(n + 1), kept on the device (no host sync). The
    adaptation vanishes as n grows, so the chain stays asymptotically exact."""

    @staticmethod
    def check(initial: float, target: float) -> tuple[float, float]:
        """Validate (step size > 0, target acceptance in (0, 1)) as floats."""
        if not isinstance(initial, (int, float)) or not initial > 0 or not isinstance(target, (int, float)) \
                or not 0 < target < 1:
            raise ValueError(f"step_size must be > 0 and target_accept in (0, 1), got {initial!r}, {target!r}")
        return float(initial), float(target)

    def __init__(self, initial: float, target: float, device):
        self.log_h = torch.tensor(math.log(initial), device=device)
        self.target = target
        self.n = 0

    @property
    def value(self) -> torch.Tensor:
        return self.log_h.exp()

    def update(self, accepted: torch.Tensor) -> None:
        self.log_h = (self.log_h + (accepted.float().mean() - self.target) / math.sqrt(self.n + 1.0)).clamp(-20, 5)
        self.n += 1


def token_vocab(space: Any) -> int | None:
    """Number of real tokens of the space's discrete part: ``space.vocab``, or a product space's
    ``space.discrete.vocab``; None for a space without tokens."""
    v = getattr(space, "vocab", None)
    if v is None:
        v = getattr(getattr(space, "discrete", None), "vocab", None)
    return int(v) if v is not None else None


def initial_state(path: Any, space: Any, n: int, generator: torch.Generator, device) -> State:
    """n chain starts from the path's prior; tokens outside 0..vocab−1 (a mask) become uniform tokens."""
    x = path.prior_sample(n, generator, device)
    vocab = token_vocab(space)

    def fill(v: torch.Tensor) -> torch.Tensor:
        if v.dtype.is_floating_point or vocab is None:
            return v
        u = torch.randint(0, vocab, v.shape, generator=generator, device=v.device)
        return torch.where((v < 0) | (v >= vocab), u, v)

    return tree_map(fill, x)


def gibbs_site_sweep(tokens: torch.Tensor, energy_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     vocab: int, generator: torch.Generator, chunk_states: int = 1 << 16) -> tuple[torch.Tensor, int]:
    """One systematic-scan Gibbs sweep over all sites of a black-box energy on tokens.

    Site by site, every chain's site i is redrawn from P(x_i = k | rest) ∝ exp(−E(x with x_i = k)),
    evaluating E on the q candidates of every chain. tokens: (C, *sites) long; ``energy_of(cand, rows)``
    maps a batch of candidate tokens (N, *sites) and the chain each row belongs to (N,) long to E (N,)
    (the chain index lets a mixed energy pair tokens with that chain's continuous part). Candidates are
    evaluated in chunks of ``chunk_states``. Returns (new tokens, energy evaluations = C·q·sites)."""
    C = tokens.shape[0]
    flat = tokens.reshape(C, -1).clone()
    S = flat.shape[1]
    ks = torch.arange(vocab, device=tokens.device)
    rows = torch.arange(C, device=tokens.device).repeat_interleave(vocab)
    for i in range(S):
        cand = flat[:, None, :].expand(C, vocab, S).clone()
        cand[:, :, i] = ks
        cand = cand.reshape(C * vocab, *tokens.shape[1:])
        e = torch.cat([energy_of(cand[j:j + chunk_states], rows[j:j + chunk_states])
                       for j in range(0, C * vocab, chunk_states)]).view(C, vocab)
        logits = torch.nan_to_num(-e.float(), nan=-math.inf)
        flat[:, i] = categorical(logits, generator)
    return flat.view_as(tokens), C * vocab * S


def categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of softmax(logits) by the Gumbel-max trick. logits (C, q) -> (C,) long."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(min=1e-30, max=1 - 1e-7)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)


class MetropolisBaseline(Baseline):
    """Random-walk Metropolis on any state space: one proposal per chain per part and sweep.

    Tokens: one uniformly chosen site moves to a uniformly chosen *other* token (symmetric). Floats:
    x + h·ξ, ξ ~ N(0, I) (projected by ``space.project`` where the space has one), h adapted towards
    acceptance ``target_accept`` with diminishing steps. A mixed state updates its continuous part,
    then its discrete part (two evaluations per chain and sweep). Works on every energy: the fallback.
    """

    fallback = True

    def __init__(self, energy, space, step_size: float = 0.5, target_accept: float = 0.3):
        super().__init__(energy, space)
        self.vocab = token_vocab(space)
        self.step_size, self.target_accept = AdaptiveStep.check(step_size, target_accept)
        self.project = getattr(space, "project", None) if not hasattr(space, "discrete") else \
            getattr(getattr(space, "continuous", None), "project", None)
        self.u: torch.Tensor | None = None
        self.h: AdaptiveStep | None = None

    def init(self, x0, generator):
        super().init(x0, generator)
        self.u = self.energy(x0)
        self._count(batch_size(x0))
        dev = self.u.device
        self.h = AdaptiveStep(self.step_size, self.target_accept, dev)

    def _propose_tokens(self, v: torch.Tensor, generator) -> torch.Tensor:
        if self.vocab is None:
            raise BaselineNotApplicable("metropolis: a token part needs a space with `vocab`")
        C = v.shape[0]
        flat = v.reshape(C, -1)
        site = torch.randint(0, flat.shape[1], (C,), generator=generator, device=v.device)
        shift = torch.randint(1, self.vocab, (C,), generator=generator, device=v.device)
        new = flat.clone()
        cur = new.gather(1, site[:, None]).squeeze(1)
        new.scatter_(1, site[:, None], ((cur + shift) % self.vocab)[:, None])
        return new.view_as(v)

    def _propose_floats(self, v: torch.Tensor, generator) -> torch.Tensor:
        xi = torch.randn(v.shape, generator=generator, device=v.device, dtype=v.dtype)
        if self.project is not None:
            xi = self.project(xi)
        return v + self.h.value.to(v.dtype) * xi

    def _mh(self, y: State, generator, adapt: bool) -> None:
        u_y = self.energy(y)
        self._count(batch_size(y))
        log_a = torch.nan_to_num(self.u - u_y, nan=-math.inf)
        acc = torch.log(torch.rand(log_a.shape, generator=generator, device=log_a.device)) < log_a
        self.state = _select(acc, y, self.state)
        self.u = torch.where(acc, u_y, self.u)
        if adapt:
            self.h.update(acc)

    def _sweep(self, generator):
        x = self.state
        if isinstance(x, MixedState):
            self._mh(MixedState(self._propose_floats(x.continuous, generator), x.discrete), generator, True)
            x = self.state
            self._mh(MixedState(x.continuous, self._propose_tokens(x.discrete, generator)), generator, False)
        elif x.dtype.is_floating_point:
            self._mh(self._propose_floats(x, generator), generator, True)
        else:
            self._mh(self._propose_tokens(x, generator), generator, False)


def _select(acc: torch.Tensor, y: State, x: State) -> State:
    """Row-wise where(acc, y, x) over every leaf."""
    from .states import tree_map2

    return tree_map2(lambda a, b: torch.where(acc.view(-1, *([1] * (a.dim() - 1))), a, b), y, x)
