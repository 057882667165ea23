r"""What a generator needs from its path, as explicit protocols checked when components are assembled.

A generator parametrization declares ``path_protocol`` (a class below, or ``None`` for "any
:class:`~egm_framework.interfaces.ConditionalPath`"). :func:`check_path_fits` compares the path
with it and raises one line naming the missing members::

    generator 'jump' needs a mixture path (MixturePath); path 'mine' lacks kappa, kappa_dot

The protocols are ``typing.Protocol`` classes: a path satisfies one by having the members, no
subclassing needed (a plugin must not import another plugin's path classes). The math of each is in
its docstring and in ``docs/plugins/writing-a-plugin.md``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import ConfigError


@runtime_checkable
class MixturePath(Protocol):
    r"""A factorized mixture path on categorical states, what the ``jump`` generator needs.

    Site-wise p_{t|1}(x^i | x_1^i) = κ_t 1[x^i = x_1^i] + (1 − κ_t) p_0(x^i), with p_0 = δ_M (masked:
    mask token M = vocab) or uniform. A site the process can still change (``active_sites``) jumps at
    rate κ̇_t/(1 − κ_t) to a token drawn from the denoiser D^i(x, t) ≈ P(x_1^i = · | x_t = x).
    The regression target of one proposal x_r (end time r ≥ t) is a·onehot(x_r^i) + b·onehot(x_t^i)
    with (a, b) = ``denoiser_target_affine(t, r)`` ((1, 0) at r = 1; for the masked path
    a = (1 − κ_t)/(κ_r − κ_t), b = 1 − a). ``uses_mask``: prior all-mask (enables the exact sampler,
    which draws each site's unmasking time as κ^{-1}(U)).
    """

    vocab: int          #: N real tokens 0..N−1 (the mask, if any, is token N)
    num_sites: int      #: sites per state, prod(shape)
    shape: torch.Size   #: event shape of one state
    uses_mask: bool     #: prior is all-mask (token N)

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        """κ_t, (B,)."""

    def kappa_dot(self, t: torch.Tensor) -> torch.Tensor:
        """dκ_t/dt, (B,)."""

    def kappa_inverse(self, k: torch.Tensor) -> torch.Tensor:
        """t with κ_t = k."""

    def denoiser_target_affine(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b), each (B,): target a·onehot(x_r^i) + b·onehot(x_t^i) of one proposal."""

    def active_sites(self, x: torch.Tensor) -> torch.Tensor:
        """Bool (B, *shape): the sites that can still jump (masked sites; all sites for uniform noise)."""


@runtime_checkable
class AffineGaussianPath(Protocol):
    r"""An affine Gaussian path x_t = α_t x_1 + σ_t x_0 (x_0 ~ N(0, I)), what ``flow`` needs.

    Its bridges are Gaussian, p_{t|r}(x | x_r) = N(a x_r, v I) with a = α_t/α_r, v = σ_t² − a²σ_r², so
    the conditional velocity and score are affine in (x_r, x):

        u_t(x | x_r) = α_u x_r + β_u x,   β_u = v̇/(2v),  α_u = ȧ − a β_u,
        ∇_x log p_{t|r}(x | x_r) = α_s x_r + β_s x,   α_s = a/v,  β_s = −1/v,

    and the generator computes Σ_k w_k T(x_t | x_r^k) = α Σ_k w_k x_r^k + β (Σ_k w_k) x_t in one einsum.
    """

    def velocity_affine(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_u, β_u), each (B,)."""


@runtime_checkable
class AffineGaussianScorePath(AffineGaussianPath, Protocol):
    """An affine Gaussian path that also gives its conditional score, what ``diffusion`` needs
    (drift b_t(x | x_r) = u_t(x | x_r) + (g_t²/2) ∇_x log p_{t|r}(x | x_r))."""

    def score_affine(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_s, β_s), each (B,)."""


#: a human name for each protocol, used in messages
_LABELS = {"MixturePath": "a mixture path", "AffineGaussianPath": "an affine Gaussian path",
           "AffineGaussianScorePath": "an affine Gaussian path with a score",
           "MixtureSchedule": "a mixture schedule κ_t", "AffineSchedule": "an affine schedule (α_t, σ_t)"}


def protocol_members(protocol: type) -> list[str]:
    """The members a protocol (or ABC) requires, in declaration order (bases first)."""
    names: list[str] = []
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol) or klass.__module__ in ("typing", "abc"):
            continue
        for name in [*getattr(klass, "__annotations__", {}), *vars(klass)]:
            if name.startswith("_") or name in names or name in ("name", "describe", "snr_inverse", "bridge"):
                continue
            value = vars(klass).get(name)
            if name in vars(klass) and not (callable(value) or isinstance(value, property)):
                continue  # a class-level constant, not a requirement
            names.append(name)
    return names


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks."""
    return [m for m in protocol_members(protocol) if not hasattr(obj, m)]


def describe_protocol(protocol: type) -> str:
    return f"{_LABELS.get(protocol.__name__, protocol.__name__)} ({protocol.__name__})"


def check_path_fits(generator: Any, path: Any, generator_name: str | None = None, path_name: str | None = None) -> None:
    """Raise :class:`ConfigError` (one line) if ``path`` lacks a member that ``generator.path_protocol`` requires."""
    protocol = getattr(generator, "path_protocol", None)
    if protocol is None:
        return
    missing = missing_members(path, protocol)
    if missing:
        gname = generator_name or getattr(generator, "name", "") or type(generator).__name__
        pname = path_name or getattr(path, "name", "") or type(path).__name__
        raise ConfigError(
            f"generator {gname!r} needs {describe_protocol(protocol)}; path {pname!r} lacks {', '.join(missing)}. "
            "Pair it with a path that provides them (see `egm components path` and "
            "docs/plugins/writing-a-plugin.md, 'What a generator needs from a path')")
