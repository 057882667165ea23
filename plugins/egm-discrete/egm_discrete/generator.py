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

import math

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

    supports_conditional_targets = True

    def weighted_conditional_target(self, path, x_t, t, x_1, r, w, cond_logits):
        """Σ_k w_k P(x_1^i = · | x_1^{k, −i}, x_t) on active sites, 0 elsewhere (r = 1: a = 1, b = 0).

        The conditional of site i given the rest of proposal k and x_t is
        softmax_v(cond_logits^{k,i}(v) + log p_{t|1}(x_t^i | v)): the energy's single-site logits times
        the path's likelihood of the observed token (constant in v on a masked site). x_1: (B, n, *shape),
        cond_logits: (B, n, *shape, N), w: (B, n) -> (B, *shape, N), one einsum over the proposals."""
        B, n = w.shape
        N = path.vocab
        S = path.num_sites
        logits = cond_logits.reshape(B, n, S, N).to(w.dtype)
        tokens = torch.arange(N, device=w.device)
        kernel = path.site_log_kernel(x_t.reshape(B, 1, S, 1), t.view(B, 1, 1, 1).to(w.dtype), tokens,
                                      torch.ones(B, 1, 1, 1, dtype=w.dtype, device=w.device))
        if N == 2:  # binary sites: the softmax is a sigmoid of the logit difference (far cheaper on CPU)
            p1 = torch.sigmoid((logits[..., 1] - logits[..., 0]) + (kernel[..., 1] - kernel[..., 0]))  # (B, n, S)
            t1 = torch.bmm(w.unsqueeze(1), p1).squeeze(1)  # (B, S)
            target = torch.stack([w.sum(dim=1, keepdim=True) - t1, t1], dim=-1)
        else:
            probs = torch.softmax(logits + kernel, dim=-1)  # (B, n, S, N)
            target = torch.einsum("bk,bksv->bsv", w, probs)
        active = path.active_sites(x_t).reshape(B, S, 1)
        target = torch.where(active, target, torch.zeros_like(target))
        return target.view(B, *path.space.event_shape, N)

    supports_teacher_targets = True

    def teacher_unsupported(self, path):
        if not getattr(path, "uses_mask", False):
            return (f"teacher targets need the masked path (there a site's token at r decides it for good); path "
                    f"{getattr(path, 'name', type(path).__name__)!r} is not one")
        return None

    def weighted_teacher_target(self, path, x_t, t, x_r, r, w, teacher_logits):
        """Σ_k w_k E[onehot(x_1^i) | x_r^k] on active sites, 0 elsewhere (masked path, r < 1).

        A site that proposal k has unmasked is known at r (its token); a site it leaves masked gets the
        teacher's denoiser D(x_r^k, r)^i = softmax(teacher_logits^{k,i}). On the masked path
        P(x_1^i | x_t) = E[P(x_1^i | x_r) | x_t] exactly, so every proposal informs every masked site,
        where the bridge target a·E[onehot(x_r^i)] hears only from the fraction u = 1/a of proposals that
        unmasked it (and multiplies their noise by a). x_r: (B, n, *shape), teacher_logits:
        (B, n, *shape, N), w: (B, n) -> (B, *shape, N)."""
        why = self.teacher_unsupported(path)
        if why:
            raise ValueError(why)
        B, n = w.shape
        N = path.vocab
        S = path.num_sites
        flat = x_r.reshape(B, n, S)
        still = flat == path.mask_token  # (B, n, S)
        logits = teacher_logits.reshape(B, n, S, N)
        if N == 2:  # binary sites: P(token 1) as a sigmoid, one batched matmul over the proposals
            p1 = torch.sigmoid((logits[..., 1] - logits[..., 0]).to(w.dtype))
            p1 = torch.where(still, p1, (flat == 1).to(w.dtype))
            t1 = torch.bmm(w.unsqueeze(1), p1).squeeze(1)  # (B, S)
            target = torch.stack([w.sum(dim=1, keepdim=True) - t1, t1], dim=-1)
        else:
            probs = torch.softmax(logits.to(w.dtype), dim=-1) * still.unsqueeze(-1).to(w.dtype)
            probs.scatter_add_(-1, flat.clamp(max=N - 1).unsqueeze(-1), (~still).unsqueeze(-1).to(w.dtype))
            target = torch.einsum("bk,bksv->bsv", w, probs)
        active = path.active_sites(x_t).reshape(B, S, 1)
        target = torch.where(active, target, torch.zeros_like(target))
        return target.view(B, *path.space.event_shape, N)

    supports_sampler_proposals = True
    #: sample_completions takes r < 1 (bridge proposals for bootstrapped rows)
    supports_sampler_bridges = True

    def sampler_proposals_unsupported(self, path):
        if not getattr(path, "uses_mask", False):
            return (f"sampler proposals need the masked path (there a completion's probability is a product of "
                    f"the denoiser's site laws); path {getattr(path, 'name', type(path).__name__)!r} is not one")
        return None

    @torch.no_grad()
    def sample_completions(self, model, path, x_t, t, n, steps, generator, spacing=1.0, r=None):
        """n completions of each x_t (masked path) simulated by the denoiser in ``steps`` rounds, with
        log q_uniform(x_1 | x_t) − log q_model(x_1 | x_t | σ).

        σ is a uniformly random order of the masked sites, drawn independently of the network. Round
        j ∈ {0, …, C − 1} (C = ``steps``) takes the sites of rank ρ with n_m (j/C)^γ ≤ ρ < n_m ((j+1)/C)^γ
        (n_m masked sites, γ = ``spacing``), evaluates the network once at the time where that share is
        revealed, κ_s = κ_t + (1 − κ_t)(j/C)^γ, and draws every site of the round from its denoiser law
        there. γ = 1 gives rounds of equal size; γ > 1 makes the first rounds small (γ = 2, C = 16, 100
        masked sites: 1, 1, 2, 3, 3, … sites), so the few sites that decide a global feature (the sign of
        the magnetization near a critical point) are drawn one at a time, each seeing the others.
        q_model(· | x_t, σ) = Π log D^i[x_1^i] is exactly normalized for every σ, so with weights
        e^{−E(x_1)} q_uniform/q_model the estimators stay consistent (the SNIS target, the log mean
        weight) whatever the network; a good network makes the weights flat. One site per round is the
        exact any-order sampler; fewer rounds ignore the correlation between sites drawn in the same
        round (cost: ``steps`` network evaluations per proposal). x_t: (B, *shape), t: (B,) ->
        ((B, n, *shape), (B, n)).

        ``r`` (B,) with r < 1: a bridge proposal x_r (bootstrapping) instead of a completion. Which masked
        sites open by r is drawn as the path's own proposal draws it (each with probability
        u = (κ_r − κ_t)/(1 − κ_t), :meth:`MaskedPath.unmask_probability`), independently of the network;
        the rounds then draw the tokens of those sites only, at κ_s = κ_t + (κ_r − κ_t)(j/C)^γ. The log
        ratio is then log q_path(x_r | x_t) − log q_model(x_r | x_t | σ) to :meth:`MaskedPath.propose`
        at r: the unmasking pattern has the same law in both, so it is −n_open log N − Σ log D^i[x_r^i]."""
        why = self.sampler_proposals_unsupported(path)
        if why:
            raise ValueError(why)
        B = x_t.shape[0]
        S, N, M = path.num_sites, path.vocab, path.mask_token
        C, gamma = int(steps), float(spacing)
        x = x_t.reshape(B, 1, S).expand(B, n, S).reshape(B * n, S)
        keys = torch.rand(x.shape, generator=generator, device=x.device)
        kt = path.kappa(t.float()).repeat_interleave(n)  # (B n,)
        if r is None:
            opens = x == M
            kr = torch.ones_like(kt)
        else:  # the sites that open by r: a uniform key below u, the same law as MaskedPath.propose
            u = path.unmask_probability(t.float(), r.float()).repeat_interleave(n)
            opens = (x == M) & (torch.rand(x.shape, generator=generator, device=x.device) < u.unsqueeze(1))
            kr = path.kappa(r.float()).repeat_interleave(n)
        n_o = opens.sum(1)
        # σ: a random order of the opening sites (other sites sort last); rank ρ -> round ⌊C (ρ/n_o)^{1/γ}⌋
        rank = keys.masked_fill(~opens, 2.0).argsort(1).argsort(1).double()
        share = rank / n_o.clamp(min=1).double().unsqueeze(1)
        rounds = torch.floor(C * share ** (1.0 / gamma)).clamp(max=C - 1).long()
        log_q = torch.zeros(B * n, dtype=torch.float64, device=x.device)
        for j in range(C):
            s_j = path.kappa_inverse(kt + (kr - kt) * (j / C) ** gamma)
            logits = model(x.view(B * n, *path.shape), s_j).reshape(B * n, S, N)
            x_next = torch.where(opens & (rounds == j), sample_categorical(logits, generator), x)
            log_q += self.step_log_prob(path, x, x_next, logits)
            x = x_next
        log_ratio = -n_o.double() * math.log(N) - log_q
        return x.view(B, n, *path.shape), log_ratio.view(B, n).float()

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
        return self._exact_masked(model, path, n, generator, device, want_log_prob=False)[0]

    def _exact_masked(self, model, path, n, generator, device, want_log_prob: bool, schedule=None, target=None):
        """The exact masked-path simulation of :meth:`sample`, optionally accumulating
        log q(x | σ) = Σ_j log D_θ(x before step j, t_j)^{i_j}[x^{i_j}] from the same network calls.

        schedule: (times (n, S) ascending, order (n, S) site indices) or None (drawn: T_i = κ^{-1}(U_i));
        target: (n, *shape) tokens to place instead of drawing them (teacher forcing: then log_q is
        log q(target | σ)). Returns (x (n, *shape), log_q (n,) float64 or None, (times, order))."""
        x = path.prior_sample(n, generator, device)
        S, N = path.num_sites, path.vocab
        if schedule is None:
            u = torch.rand(n, S, generator=generator, device=device)
            times, order = torch.sort(path.kappa_inverse(u), dim=1)
        else:
            times, order = schedule
        flat = x.reshape(n, S)
        forced = None if target is None else target.reshape(n, S)
        log_q = torch.zeros(n, dtype=torch.float64, device=device) if want_log_prob else None
        for j in range(S):
            logits = model(flat.view(n, *path.shape), times[:, j]).reshape(n, S, N)
            site = order[:, j].view(n, 1)
            site_logits = logits.gather(1, site.unsqueeze(-1).expand(n, 1, N)).squeeze(1)  # (n, N)
            tok = sample_categorical(site_logits, generator) if forced is None else forced.gather(1, site).squeeze(1)
            if log_q is not None:
                log_q += F.log_softmax(site_logits.float(), dim=-1).gather(1, tok.view(n, 1)).squeeze(1).double()
            flat = flat.scatter(1, site, tok.view(n, 1))
        return flat.view(n, *path.shape), log_q, (times, order)

    # ----------------------------------------------------------------- model likelihood
    supports_log_prob = True

    def log_prob_unsupported(self, path):
        if not getattr(path, "uses_mask", False):
            return (f"generator 'jump' with path {getattr(path, 'name', '?')!r} is simulated by τ-leaping, "
                    "where a site can change many times and a sample's probability sums over all its histories (intractable); "
                    "use path 'masked'")
        return None

    def step_log_prob(self, path, x, x_next, output) -> torch.Tensor:
        """log-probability (n,) float64 of the tokens chosen in one masked-path step x -> x_next, given the
        network output (logits) at x: Σ over sites unmasked in this step of log D^i[x_next^i]. Which sites
        unmask does not depend on the network (their jump times have a fixed law), so this is the only
        model-dependent factor of the step."""
        n = x.shape[0]
        N = output.shape[-1]
        new = (x == path.mask_token) & (x_next != path.mask_token)
        logp = F.log_softmax(output.float(), dim=-1).reshape(n, -1, N)
        picked = logp.gather(2, x_next.reshape(n, -1, 1).clamp(max=N - 1)).squeeze(2)
        return torch.where(new.reshape(n, -1), picked, torch.zeros_like(picked)).sum(1).double()

    @torch.no_grad()
    def sample_with_log_prob(self, model, path, n, steps, generator, device="cpu", **options):
        """Samples and log q(x | σ) (exact, extended space). Masked path only: with the exact sampler σ is
        the unmasking order and times (one network call per site, the same calls as :meth:`sample`, the
        same random draws, hence the same samples for the same generator state); with ``sampler =
        "tau_leaping"`` σ records in which grid step each site unmasks (also network-independent).
        ``options``: ``return_schedule=True`` puts (times, order) of the exact sampler in ``info``."""
        from egm_framework.likelihood import LikelihoodUnavailableError, LogProbSample

        reason = self.log_prob_unsupported(path)
        if reason:
            raise LikelihoodUnavailableError(reason)
        if self.sampler == "tau_leaping":
            from egm_framework.interfaces.generator import time_grid

            x = path.prior_sample(n, generator, device)
            grid = time_grid(path, steps, device)
            ones = torch.ones(n, device=device)
            log_q = torch.zeros(n, dtype=torch.float64, device=device)
            for i in range(steps):
                out = model(x, grid[i] * ones)
                x_next = self.step_from_output(path, x, grid[i] * ones, grid[i + 1] * ones, out, generator)
                log_q += self.step_log_prob(path, x, x_next, out)
                x = x_next
            return LogProbSample(x=x, log_q=log_q, info={"method": "masked τ-leaping, exact given the schedule"})
        x, log_q, sched = self._exact_masked(model, path, n, generator, device, want_log_prob=True)
        info = {"method": "masked exact sampler, exact given the unmasking schedule"}
        if options.get("return_schedule"):
            info["schedule"] = sched
        return LogProbSample(x=x, log_q=log_q, info=info)

    @torch.no_grad()
    def log_prob_given_schedule(self, model, path, x, times, order) -> torch.Tensor:
        """log q(x | σ) (n,) float64 for given samples x (n, *shape) and a given unmasking schedule σ =
        (times (n, S) ascending, order (n, S)): teacher-forced through the exact sampler's network calls.
        Summed over all x for one σ, exp(log q) is 1 (a check on the likelihood, see the tests)."""
        return self._exact_masked(model, path, x.shape[0], None, x.device, want_log_prob=True,
                                  schedule=(times, order), target=x)[1]

    def sampling_note(self, path, steps: int) -> str:
        if self.sampler == "tau_leaping" or not getattr(path, "uses_mask", False):
            return f"{steps} τ-leaping steps"
        return "exact CTMC simulation (one network call per site, no integration steps)"

    def describe(self) -> dict:
        return {"name": self.name, "loss": self.loss_kind, "project_target": self.project_target,
                "sampler": self.sampler}
