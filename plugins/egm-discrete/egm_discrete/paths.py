"""Factorized mixture paths on categorical spaces, with a registered schedule κ_t (default ``linear``, κ_t = t).

``schedule`` is a registry name of kind ``schedule`` or a table, e.g. ``schedule = {name = "poly",
power = 2}`` (see ``egm components schedule``); everything below holds for any increasing κ with
κ_0 = 0, κ_1 = 1. Both paths satisfy :class:`egm_framework.interfaces.MixturePath`, the protocol of
the ``jump`` generator.

Both paths act site by site; for a bridge from time r down to t ≤ r write α = κ_t / κ_r ∈ [0, 1].

``masked`` (alias ``absorbing``), prior = all-mask (token M = N):
    p_{t|1}(x^i | x_1^i) = κ_t 1[x^i = x_1^i] + (1 − κ_t) 1[x^i = M]
    p_{t|r}(x^i | x_r^i) = α 1[x^i = x_r^i] + (1 − α) 1[x^i = M]   (x_r^i ≠ M),   1[x^i = M]   (x_r^i = M)
    Bridge normalizer Z_{r|t}(x_t) = Σ_{x_r} p_{t|r}(x_t | x_r): an unmasked site of x_t admits only
    x_r^i = x_t^i (mass α); a masked site admits N tokens (mass 1 − α each) and M (mass 1) for r < 1,
    and N tokens only for r = 1 (x_1 has no mask), mass 1 − κ_t each.
    Proposal: unmasked sites kept; a masked site is unmasked, to a uniform token, with probability
    u = (κ_r − κ_t)/(1 − κ_t) — the marginal process's own unmasking probability (u = 1 at r = 1,
    where the proposal is exactly ∝ p_{t|1}(x_t | ·)). For r < 1 this is ∝ p_{t|r}(x_t | ·) Z_{1|r}(·),
    not ∝ p_{t|r}(x_t | ·) (whose unmasking probability N(1 − α)/(1 + N(1 − α)) ignores how likely a
    state with more masks is at time r); :meth:`MaskedPath.proposal_log_correction` gives the exact
    log-ratio, and with an intermediate energy E_r = R_r − log Z_{1|r} the weights depend on R_r only.
    log Z_{r|t}(x_t) = n_unmasked · log α + n_masked · log(1 + N(1 − α))            (r < 1)
                     = n_unmasked · log κ_t + n_masked · log(N(1 − κ_t))            (r = 1)

``uniform``, prior = uniform tokens:
    p_{t|r}(x^i | x_r^i) = α 1[x^i = x_r^i] + (1 − α)/N
    Σ_y p_{t|r}(x^i | y) = α + (1 − α) = 1, so log Z = 0 and the proposal per site is "keep x_t^i with
    probability α, else draw a uniform token" (x_t^i itself then has mass α + (1 − α)/N).

Bridge generators and the denoiser target. The CTMC rate generating the bridge p_{s|r}(· | x_r) for
s ≤ r is κ̇_s/(κ_r − κ_s) (δ_{x_r^i} − δ_{x^i}) per site (0 where x_r^i = M); the marginal rate in
denoiser form is κ̇_t/(1 − κ_t) (D^i − δ_{x^i}). Matching the two off the diagonal gives
    D^i = a E[onehot(x_r^i)] + b onehot(x_t^i),   a = (1 − κ_t)/(κ_r − κ_t),   b = 1 − a
(onehot over real tokens only: a proposal site still masked contributes nothing); b fixes the
normalization on the diagonal (irrelevant on masked sites, where x_t^i = M is not a real token).
At r = 1, a = 1 and b = 0.

Bootstrapping (r < 1) and the denoiser. For the masked path the bridge-averaged rate *equals* the
denoiser rate: a·P(x_r^i = y | x_t) = P(x_1^i = y | x_t) exactly, so bootstrapped targets are unbiased
denoiser targets (``supports_bootstrap = True``). For the uniform path it does not: the bridge-averaged
rate is another valid generator of the same marginals (it differs from the denoiser one by a
probability-flux circulation, off-diagonal entries shifted by a constant per site), and its
"denoiser" a·P(x_r = y | x_t) (y ≠ x) can have off-diagonal mass > 1 (e.g. small κ_t), which no
distribution D represents. So the uniform path supports plain EGM (r = 1) only:
``supports_bootstrap = False``; trainers should refuse bootstrapped training with it.
"""

from __future__ import annotations

import math

import torch

from egm_framework.interfaces import ConditionalPath, MixtureSchedule
from egm_framework.schedules import resolve_schedule

from .space import as_categorical


def _bc(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like`` (B, ...)."""
    return v.view(v.shape[0], *([1] * (like.dim() - 1)))


class FactorizedMixturePath(ConditionalPath):
    """Shared machinery of the masked and uniform paths (schedule κ_t from ``schedule``)."""

    #: training times (t ≤ 0.999 keeps κ_r − κ_t > 0 and the rate κ̇/(1 − κ) finite)
    train_time_range = (0.0, 0.999)
    sample_time_range = (0.0, 1.0)
    uses_mask = False
    #: whether bridge proposals to r < 1 give unbiased denoiser targets (see the module docstring)
    supports_bootstrap = False

    def __init__(self, space, schedule: str | dict | MixtureSchedule = "linear", registry=None):
        space = as_categorical(space, f"path {self.name!r}")
        super().__init__(space)
        self.schedule = resolve_schedule(schedule, MixtureSchedule, registry=registry, owner=f"path {self.name!r}")
        self.shape = torch.Size(space.event_shape)
        self.vocab = int(space.vocab)
        self.mask_token = self.vocab
        self.num_sites = int(math.prod(self.shape))

    # ----------------------------------------------------------------- schedule
    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        """κ_t of the schedule."""
        return self.schedule.kappa(t)

    def kappa_dot(self, t: torch.Tensor) -> torch.Tensor:
        """dκ_t/dt."""
        return self.schedule.kappa_dot(t)

    def kappa_inverse(self, k: torch.Tensor) -> torch.Tensor:
        """t with κ_t = k (the time at which a site with uniform draw k leaves the mask)."""
        return self.schedule.kappa_inverse(k)

    def alpha(self, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """α = κ_t / κ_r (B,), 0 where κ_r = 0."""
        kr = self.kappa(r)
        return torch.where(kr > 0, self.kappa(t) / torch.clamp(kr, min=torch.finfo(kr.dtype).tiny),
                           torch.zeros_like(kr))

    def denoiser_target_affine(self, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b), each (B,): the denoiser-space target of one proposal x_r is
        a·onehot(x_r^i) + b·onehot(x_t^i), a = (1 − κ_t)/(κ_r − κ_t), b = 1 − a (a = 1, b = 0 at r = 1)."""
        kt, kr = self.kappa(t), self.kappa(r)
        gap = torch.clamp(kr - kt, min=torch.finfo(kt.dtype).tiny)
        a = torch.where(r >= 1, torch.ones_like(kt), (1 - kt) / gap)
        return a, 1 - a

    def active_sites(self, x: torch.Tensor) -> torch.Tensor:
        """Bool (B, *shape): sites the process can still change."""
        raise NotImplementedError

    # ----------------------------------------------------------------- densities
    def site_log_kernel(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Elementwise log p_{t|r}(x^i | x_r^i = y^i); all arguments broadcast together."""
        raise NotImplementedError

    def log_bridge(self, x: torch.Tensor, t: torch.Tensor, x_r: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """log p_{t|r}(x | x_r) = Σ_i log p_{t|r}(x^i | x_r^i). x, x_r: (B, *shape), t, r: (B,) -> (B,)."""
        lp = self.site_log_kernel(x, _bc(t, x), x_r, _bc(r, x))
        return lp.reshape(x.shape[0], -1).sum(-1)

    def describe(self) -> dict:
        return {"name": self.name, "schedule": self.schedule.describe(), "vocab": self.vocab, "shape": list(self.shape)}


class MaskedPath(FactorizedMixturePath):
    """Absorbing ("masked") path: prior all-mask, sites unmask to their x_1 value at rate κ̇/(1 − κ)."""

    name = "masked"
    uses_mask = True
    supports_bootstrap = True

    def active_sites(self, x: torch.Tensor) -> torch.Tensor:
        return x == self.mask_token

    def prior_sample(self, n, generator, device="cpu"):
        return torch.full((n, *self.shape), self.mask_token, dtype=torch.long, device=device)

    def sample_xt(self, x1, t, generator):
        keep = torch.rand(x1.shape, generator=generator, device=x1.device) < _bc(self.kappa(t), x1)
        return torch.where(keep, x1, torch.full_like(x1, self.mask_token))

    def site_log_kernel(self, x, t, y, r):
        alpha = torch.where(self.kappa(r) > 0, self.kappa(t) / torch.clamp(self.kappa(r), min=1e-30),
                            torch.zeros_like(self.kappa(r)))
        M = self.mask_token
        x_m, y_m = x == M, y == M
        ninf = torch.tensor(-math.inf, dtype=alpha.dtype, device=alpha.device)
        zero = torch.zeros((), dtype=alpha.dtype, device=alpha.device)
        from_token = torch.where(x == y, torch.log(alpha), torch.where(x_m, torch.log1p(-alpha), ninf))
        return torch.where(y_m, torch.where(x_m, zero, ninf), from_token)

    def unmask_probability(self, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """u = (κ_r − κ_t)/(1 − κ_t), (B,): the probability that a site masked at t is unmasked at r under
        the marginal process, whatever the target (1 at r = 1)."""
        kt, kr = self.kappa(t), self.kappa(r)
        u = ((kr - kt) / torch.clamp(1 - kt, min=torch.finfo(kt.dtype).tiny)).clamp(0.0, 1.0)
        return torch.where(r >= 1, torch.ones_like(u), u)

    def propose(self, x_t, t, r, n, generator):
        """Keep the unmasked sites; unmask each masked site with probability u (:meth:`unmask_probability`)
        to a uniform token. At r = 1 (u = 1) this is exactly q ∝ p_{t|1}(x_t | ·). For r < 1 it is
        q ∝ p_{t|r}(x_t | ·) · Z_{1|r}(·) (the bridge times the end point's own normalizer), so that with
        an intermediate energy E_r = R_r − log Z_{1|r} the weights depend on the learned residual R_r
        only; :meth:`proposal_log_correction` returns the exact log-ratio to the bridge.

        One uniform draw v per site: ⌊v·N/u⌋ is a token j < N with probability u/N each, ≥ N (mask)
        otherwise. One random tensor per chunk: this is the hot path."""
        B = x_t.shape[0]
        out_shape = (B, n, *self.shape)
        N = self.vocab
        scale = N / torch.clamp(self.unmask_probability(t, r), min=1e-6)
        v = torch.rand(out_shape, generator=generator, device=x_t.device)
        tok = v.mul_(scale.view(B, 1, *([1] * len(self.shape)))).to(torch.long).clamp_(max=self.mask_token)
        xt = x_t.unsqueeze(1)
        return torch.where(xt == self.mask_token, tok, xt)

    def proposal_log_correction(self, x_t, t, r, x_r):
        """c = log p_{t|r}(x_t | x_r) − log q(x_r | x_t) − log Z_{r|t}(x_t), (B, n); 0 where r = 1.

        Per site masked in x_t (unmasked sites contribute log α − log 1 − log α = 0): staying masked
        gives log 1 − log(1 − u), unmasking to a token gives log(1 − α) − log(u/N); minus the masked
        sites' share n_m log(1 + N(1 − α)) of log Z_{r|t}."""
        B, n = x_r.shape[0], x_r.shape[1]
        M = self.mask_token
        masked_t = (x_t == M).reshape(B, 1, -1)
        n_m = masked_t.sum(-1).to(t.dtype)  # (B, 1)
        stay = ((x_r.reshape(B, n, -1) == M) & masked_t).sum(-1).to(t.dtype)  # (B, n)
        gone = n_m - stay
        N = self.vocab
        alpha = self.alpha(t, r).view(B, 1)
        u = self.unmask_probability(t, r).view(B, 1)
        u_c = torch.clamp(u, min=1e-12, max=1 - 1e-7)
        per_gone = torch.log(N * torch.clamp(1 - alpha, min=1e-30)) - torch.log(u_c)
        c = (-stay * torch.log1p(-u_c) + torch.where(gone > 0, gone * per_gone, torch.zeros_like(gone))
             - n_m * torch.log1p(N * (1 - alpha)))
        return torch.where((r >= 1).view(B, 1), torch.zeros_like(c), c)

    def log_normalizer(self, x_t, t, r):
        masked = (x_t == self.mask_token).reshape(x_t.shape[0], -1)
        n_m = masked.sum(-1).to(t.dtype)
        n_u = self.num_sites - n_m
        kt = self.kappa(t)
        alpha = self.alpha(t, r)
        N = self.vocab
        bridge = torch.xlogy(n_u, alpha) + n_m * torch.log1p(N * (1 - alpha))
        final = torch.xlogy(n_u, kt) + torch.xlogy(n_m, N * (1 - kt))
        return torch.where(r >= 1, final, bridge)


class UniformPath(FactorizedMixturePath):
    """Uniform-noise path: prior uniform tokens, p_{t|1}(x^i|x_1^i) = κ_t 1[x^i = x_1^i] + (1 − κ_t)/N.

    Plain EGM only (``supports_bootstrap = False``): with r < 1 the affine denoiser target of
    :meth:`denoiser_target_affine` describes the bridge generator, not the denoiser.
    """

    name = "uniform"

    def active_sites(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x, dtype=torch.bool)

    def prior_sample(self, n, generator, device="cpu"):
        return torch.randint(0, self.vocab, (n, *self.shape), generator=generator, device=device)

    def _keep_or_uniform(self, x: torch.Tensor, keep_prob: torch.Tensor, generator) -> torch.Tensor:
        """Per site: keep x with probability keep_prob (broadcast), else a uniform token."""
        u = torch.rand(x.shape, generator=generator, device=x.device)
        tok = torch.randint(0, self.vocab, x.shape, generator=generator, device=x.device)
        return torch.where(u < keep_prob, x, tok)

    def sample_xt(self, x1, t, generator):
        return self._keep_or_uniform(x1, _bc(self.kappa(t), x1), generator)

    def site_log_kernel(self, x, t, y, r):
        alpha = torch.where(self.kappa(r) > 0, self.kappa(t) / torch.clamp(self.kappa(r), min=1e-30),
                            torch.zeros_like(self.kappa(r)))
        N = self.vocab
        return torch.where(x == y, torch.log(alpha + (1 - alpha) / N), torch.log((1 - alpha) / N))

    def propose(self, x_t, t, r, n, generator):
        B = x_t.shape[0]
        xt = x_t.unsqueeze(1).expand(B, n, *self.shape)
        alpha = self.alpha(t, r).view(B, 1, *([1] * len(self.shape)))
        return self._keep_or_uniform(xt, alpha, generator)

    def log_normalizer(self, x_t, t, r):
        # Σ_y p_{t|r}(x^i | y) = α + N (1 − α)/N = 1 per site
        return torch.zeros(x_t.shape[0], dtype=t.dtype, device=t.device)
