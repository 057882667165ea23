"""The "jump" generator: a CTMC on categorical states parametrized by a denoiser.

The network returns logits ``(B, *shape, N)``; D^i = softmax(logits^i) is a distribution over the N
real tokens of site i. On the sites the path can still change (``path.active_sites``) the rates are

    u_t(y | x)^i = κ̇_t / (1 − κ_t) · (D^i(y) − δ_{x^i}(y)),

which is the marginal generator when D^i(y) = P(x_1^i = y | x_t = x) (r = 1). With a bootstrap end
time r < 1 the regression target is the affine image a·E[onehot(x_r^i)] + b·onehot(x_t^i) of the
bridge expectation (see :meth:`FactorizedMixturePath.denoiser_target_affine`).

Inactive sites (unmasked sites of the masked path) carry an all-zero target; :meth:`JumpGenerator.loss`
averages over the sites whose target has mass or whose token is the mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from egm_framework.interfaces import GeneratorParametrization, MixturePath


def _bc(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(v.shape[0], *([1] * (like.dim() - 1)))


def sample_categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``logits`` (..., N) by the Gumbel-max trick -> (...) long."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    u = u.clamp_(min=torch.finfo(torch.float32).tiny, max=1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    return torch.argmax(logits.float() + gumbel, dim=-1)


class JumpGenerator(GeneratorParametrization):
    """CTMC jump rates from a denoiser D_θ(x, t)^i ∈ Δ^{N−1} (network output: logits (B, *shape, N)).

    Parameters: ``loss`` = ``"ce"`` (default; KL(target ‖ D) per site, the Bregman divergence of the
    negative entropy, linear in the target up to a target-only term) or ``"mse"`` (‖D − target‖² per
    site); ``project_target`` (default True): clip the normalized estimate to ≥ 0 and renormalize each
    site to sum 1 (a noisy bootstrap estimate can leave the simplex, which makes "ce" unbounded).
    """

    name = "jump"
    #: what the path must provide (checked when the components are assembled)
    path_protocol = MixturePath

    #: vocabularies up to this size accumulate targets by one batched matmul per token value
    #: (faster than a scatter on CPU and GPU); larger ones use ``scatter_add_``
    bmm_max_vocab = 8

    def __init__(self, loss: str = "ce", project_target: bool = True, sampler: str = "auto"):
        if loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {loss!r}")
        if sampler not in ("auto", "exact", "tau_leaping"):
            raise ValueError(f"sampler must be 'auto', 'exact' or 'tau_leaping', got {sampler!r}")
        self.sampler = sampler
        self.loss_kind = loss
        self.project_target = bool(project_target)

    def output_shapes(self, path) -> torch.Size:
        return torch.Size([*path.space.event_shape, path.space.vocab])

    # ----------------------------------------------------------------- targets
    def weighted_target(self, path, x_t, t, x_r, r, w):
        """Σ_k w_k [a·onehot(x_r^{k,i}) + b·onehot(x_t^i)] on active sites, 0 elsewhere.

        x_t: (B, *shape), x_r: (B, n, *shape), w: (B, n) -> (B, *shape, N). The one-hot sum is one
        batched matmul of the weights with the indicator 1[x_r = v] per token value v (small
        vocabularies) or a ``scatter_add_`` into (B, sites, N + 1) (mask channel dropped); never a
        (B, n, sites, N) one-hot."""
        B, n = w.shape
        N = path.vocab
        S = path.num_sites
        flat = x_r.reshape(B, n, S)
        if N <= self.bmm_max_vocab:
            # per token value v: Σ_k w_k 1[x_r^{k,i} = v] as a batched (1 × n)·(n × S) product
            acc = torch.stack([torch.bmm(w.unsqueeze(1), (flat == v).to(w.dtype)).squeeze(1) for v in range(N)],
                              dim=-1)  # (B, S, N)
        else:
            acc = torch.zeros(B, S, N + 1, dtype=w.dtype, device=w.device)
            acc.scatter_add_(2, flat.transpose(1, 2), w.unsqueeze(1).expand(B, S, n))
            acc = acc[..., :N]
        a, b = path.denoiser_target_affine(t, r)
        a = a.to(w.dtype)
        b = b.to(w.dtype)
        own = torch.zeros(B, S, N + 1, dtype=w.dtype, device=w.device)
        own.scatter_(2, x_t.reshape(B, S, 1), (b * w.sum(dim=1)).view(B, 1, 1).expand(B, S, 1).contiguous())
        target = a.view(B, 1, 1) * acc + own[..., :N]
        active = path.active_sites(x_t).reshape(B, S, 1)
        target = torch.where(active, target, torch.zeros_like(target))
        return target.view(B, *path.space.event_shape, N)

    def finalize_target(self, target, x_t, t):
        if not self.project_target:
            return target
        target = target.clamp(min=0)
        mass = target.sum(dim=-1, keepdim=True)
        return torch.where(mass > 0, target / torch.clamp(mass, min=torch.finfo(target.dtype).tiny), target)

    # ----------------------------------------------------------------- loss
    def loss(self, output, target, x_t, t):
        """Per-row loss (B,): the per-site divergence averaged over active sites (sites whose target
        has mass, or whose token is the mask N; see the module docstring)."""
        N = output.shape[-1]
        logp = F.log_softmax(output.float(), dim=-1)
        target = target.to(logp.dtype)
        if self.loss_kind == "ce":
            tp = target.clamp(min=0)
            per_site = (torch.xlogy(tp, tp) - target * logp).sum(-1)
        else:
            per_site = ((logp.exp() - target) ** 2).sum(-1)
        active = (target.sum(-1) != 0) | (x_t == N)
        B = x_t.shape[0]
        per_site = torch.where(active, per_site, torch.zeros_like(per_site)).reshape(B, -1)
        n_active = active.reshape(B, -1).sum(-1).clamp(min=1).to(per_site.dtype)
        return per_site.sum(-1) / n_active

    # ----------------------------------------------------------------- simulation
    def step_from_output(self, path, x, t, t_next, output, generator):
        """τ-leaping step: each active site jumps with probability min(1, h κ̇_t/(1 − κ_t)) to a token
        drawn from D^i (for the uniform path a draw equal to x^i means "stay", which makes the
        probability of moving to y ≠ x^i exactly h κ̇/(1 − κ) D^i(y)). At t_next ≥ 1 every active site
        takes its draw from D (final denoising)."""
        h = (t_next - t).to(torch.float32)
        kt = path.kappa(t).float()
        rate = path.kappa_dot(t).float() / torch.clamp(1 - kt, min=torch.finfo(torch.float32).tiny)
        p_jump = torch.where(t_next >= 1, torch.ones_like(h), torch.clamp(h * rate, 0.0, 1.0))
        u = torch.rand(x.shape, generator=generator, device=x.device)
        jump = (u < _bc(p_jump, x)) & path.active_sites(x)
        y = sample_categorical(output, generator)
        return torch.where(jump, y, x)

    def sample(self, model, path, n, steps, generator, device="cpu"):
        """Masked path (``sampler`` "auto" or "exact"): exact simulation of the CTMC, one network
        evaluation per site, ``steps`` unused. Every masked site leaves the mask at total rate
        κ̇_t/(1 − κ_t) whatever the state (Σ_y D^i(y) = 1), so its unmasking time T_i is independent
        of the others with P(T_i ≤ t) = κ_t (T_i = κ^{-1}(U), U uniform); at T_i it takes a token
        drawn from D^i(x_{T_i−}, T_i). Visiting the sites in the order of their times reproduces
        the process exactly (no τ-leaping error) in S = number-of-sites evaluations.
        Other paths, or ``sampler = "tau_leaping"``: the τ-leaping grid of the base class."""
        if self.sampler == "tau_leaping" or not getattr(path, "uses_mask", False):  # see sampling_note
            return super().sample(model, path, n, steps, generator, device)
        x = path.prior_sample(n, generator, device)
        S, N = path.num_sites, path.vocab
        u = torch.rand(n, S, generator=generator, device=device)
        times = path.kappa_inverse(u)
        times, order = torch.sort(times, dim=1)
        flat = x.reshape(n, S)
        for j in range(S):
            logits = model(flat.view(n, *path.shape), times[:, j]).reshape(n, S, N)
            site = order[:, j].view(n, 1)
            site_logits = logits.gather(1, site.unsqueeze(-1).expand(n, 1, N)).squeeze(1)  # (n, N)
            flat = flat.scatter(1, site, sample_categorical(site_logits, generator).view(n, 1))
        return flat.view(n, *path.shape)

    def sampling_note(self, path, steps: int) -> str:
        if self.sampler == "tau_leaping" or not getattr(path, "uses_mask", False):
            return f"{steps} τ-leaping steps"
        return "exact CTMC simulation (one network call per site, no integration steps)"

    def describe(self) -> dict:
        return {"name": self.name, "loss": self.loss_kind, "project_target": self.project_target,
                "sampler": self.sampler}
