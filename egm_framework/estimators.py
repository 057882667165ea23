"""EGM estimators of the marginal generator, written once for every modality.

Both estimators evaluate, for each training point (x_t, t) and an end time r ∈ (t, 1],

    F̂_t(x_t) = Σ_k w_k T(x_t, t | x_r^k),   x_r^k ~ q(· | x_t) ∝ p_{t|r}(x_t | ·),
    w_k = softmax_k( −E_r(x_r^k) + c_k ),

where T is the generator parametrization's (linear) regression target, E_r is the true energy at
r = 1 and a learned intermediate energy for r < 1 (bootstrapping), and c_k is the path's optional
proposal log-correction (zero for exact posterior proposals).

The K proposals are processed in chunks sized from a memory budget with an *online* softmax: a
running maximum m, running sums s = Σ e^{ℓ_k − m}, s₂ = Σ e^{2(ℓ_k − m)} and a running weighted
target are rescaled whenever m grows, so nothing of size (B, K, …) is ever stored and the result
equals the one-shot softmax exactly. No host synchronization happens here.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import torch

from .errors import EnergyEvaluationError
from .interfaces import ConditionalPath, GeneratorParametrization
from .states import State, batch_size, flatten_proposals, tree_leaves, tree_map, tree_map2

#: (x: (N, *event), r: (N,)) -> energies (N,)
EnergyFn = Callable[[State, torch.Tensor], torch.Tensor]


@attrs.frozen(kw_only=True, eq=False)
class Estimate:
    """Result of one estimator call for a batch of B training points."""

    #: normalized estimate of the marginal target, (B, *out) (tuple for product spaces); None if not asked
    target: Any
    #: effective sample size of the weights divided by K, (B,) in [1/K, 1]
    ess: torch.Tensor
    #: log (1/K) Σ_k exp(−E_r(x_r^k) + c_k), (B,)
    log_mean_weight: torch.Tensor
    #: log Z_{r|t}(x_t), (B,)
    log_normalizer: torch.Tensor

    @property
    def log_marginal(self) -> torch.Tensor:
        """Estimate of log p_t(x_t) up to a t-dependent constant: log mean weight + log Z_{r|t}(x_t)."""
        return self.log_mean_weight + self.log_normalizer

    @staticmethod
    def concat(parts: "list[Estimate]") -> "Estimate":
        """The estimates of consecutive groups of rows as one (targets None if any part has none)."""
        if len(parts) == 1:
            return parts[0]
        cat = lambda *vs: torch.cat(vs, dim=0)  # noqa: E731
        targets = [p.target for p in parts]
        target = None
        if all(tg is not None for tg in targets):
            target = targets[0]
            for tg in targets[1:]:
                target = tree_map2(cat, target, tg)
        return Estimate(target=target, ess=cat(*[p.ess for p in parts]),
                        log_mean_weight=cat(*[p.log_mean_weight for p in parts]),
                        log_normalizer=cat(*[p.log_normalizer for p in parts]))

    @staticmethod
    def where(rows: torch.Tensor, a: "Estimate", b: "Estimate") -> "Estimate":
        """Row-wise choice: a's rows where ``rows`` (B,) bool is true, b's elsewhere."""
        pick = lambda u, v: torch.where(_bcast(rows, u).bool(), u, v)  # noqa: E731
        target = None if a.target is None or b.target is None else tree_map2(pick, a.target, b.target)
        return Estimate(target=target, ess=pick(a.ess, b.ess), log_mean_weight=pick(a.log_mean_weight, b.log_mean_weight),
                        log_normalizer=pick(a.log_normalizer, b.log_normalizer))


def chunk_size_for(x_t: State, num_proposals: int, memory_mb: float, overhead: float = 8.0) -> int:
    """Proposals per chunk so that B × chunk proposals (× an overhead factor for the energy's
    temporaries) fit in ``memory_mb``."""
    per_row = sum(v[0].numel() * max(v.element_size(), 4) for v in tree_leaves(x_t))
    per_proposal = max(1, batch_size(x_t)) * per_row * overhead
    return int(max(1, min(num_proposals, (memory_mb * 2**20) // per_proposal)))


@attrs.frozen(kw_only=True, eq=False)
class ProposalStreams:
    """Where the K proposals of an estimate come from when they are split into shards: ``segments``
    lists (generator, count) pairs drawn one after the other; ``combine(m, s, s2, acc)`` (optional)
    merges this process's online-softmax statistics (running max m, Σ e^{ℓ−m}, Σ e^{2(ℓ−m)}, weighted
    target) with the other processes' and returns the merged four; the counts then cover only this
    process's share of K."""

    segments: list
    combine: Callable | None = None


def check_energy_output(e: torch.Tensor, n: int, who: str = "energy") -> torch.Tensor:
    """Shape check (host-side metadata only: no synchronization)."""
    if not isinstance(e, torch.Tensor) or e.shape != (n,):
        shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
        raise EnergyEvaluationError(
            f"{who} returned shape {shape} for a batch of {n} states; it must return one energy per state, "
            f"shape ({n},). Reduce over the event dimensions in Energy.__call__.")
    if not e.dtype.is_floating_point:
        raise EnergyEvaluationError(
            f"{who} returned dtype {e.dtype}; energies must be real floating-point numbers (lower = more probable): "
            "return a float tensor (e.g. `.real` or `.float()` in Energy.__call__)")
    return e


def estimate_marginal(
    path: ConditionalPath,
    generator_param: GeneratorParametrization | None,
    energy_fn: EnergyFn,
    x_t: State,
    t: torch.Tensor,
    r: torch.Tensor,
    num_proposals: int,
    generator: torch.Generator | ProposalStreams,
    chunk_size: int | None = None,
    memory_mb: float = 256.0,
    conditional_fn: Callable[[State], Any] | None = None,
    collapsed_fn: Callable | None = None,
    teacher_fn: Callable[[State, torch.Tensor], Any] | None = None,
    proposal_fn: Callable | None = None,
) -> Estimate:
    """Self-normalized importance-sampling estimate with proposals to time r (see module docstring).

    ``generator_param=None`` skips the target and returns only the weight statistics (used for the
    intermediate-energy regression target). ``generator`` may be a :class:`ProposalStreams`: the K
    proposals are then drawn in segments from several generators, and possibly only this process's
    share of them, the statistics being combined over processes by its ``combine``.

    ``conditional_fn(x_1) -> logits`` (the energy's :meth:`~egm_framework.interfaces.Energy.conditional_logits`,
    r = 1 only) switches to the generator's Rao–Blackwellized target
    (:meth:`~egm_framework.interfaces.GeneratorParametrization.weighted_conditional_target`).

    ``collapsed_fn(x_t, t, k, generator) -> (x_1, log_w, cond_logits or None)`` (r = 1 only) replaces the
    proposals and their weights: a path that integrates part of the state out analytically (the product
    path's :meth:`collapsed_proposals`) returns proposals whose integrated part is its posterior mean
    (the targets are affine in it), their log-weights on the same scale as −E + c, and optionally the
    conditional logits of the categorical sites under the collapsed model.

    ``teacher_fn(x_r, r) -> output`` (r < 1, bootstrapping) is the sampler network itself (no gradient):
    each proposal then contributes the generator's *teacher target*
    (:meth:`~egm_framework.interfaces.GeneratorParametrization.weighted_teacher_target`), the
    conditional expectation of its r = 1 target given x_r as the network predicts it, instead of the
    bridge target.

    ``proposal_fn(x_t, t, k, generator) -> (x_r, log_ratio)`` draws the proposals from another
    normalized law q than the path's proposal (the sampler's own completions, or its bridge proposals
    for r < 1, :meth:`~egm_framework.interfaces.GeneratorParametrization.sample_completions`);
    ``log_ratio`` (B, k) is log q_path − log q and is added to −E together with the path's own
    :meth:`~egm_framework.interfaces.ConditionalPath.proposal_log_correction`, so every statistic keeps
    its meaning.
    """
    B = batch_size(x_t)
    K = int(num_proposals)
    segments = generator.segments if isinstance(generator, ProposalStreams) else [(generator, K)]
    if chunk_size is None:
        # a teacher's output and activations per proposal are several times the state's size
        chunk_size = chunk_size_for(x_t, K, memory_mb,
                                    overhead=32.0 if (teacher_fn is not None or proposal_fn is not None) else 8.0)
    device = t.device
    m = torch.full((B,), -math.inf, device=device)
    s = torch.zeros(B, device=device)
    s2 = torch.zeros(B, device=device)
    acc: Any = None
    chunks = [(gen, min(chunk_size, count - d)) for gen, count in segments for d in range(0, count, chunk_size)]
    for gen, k in chunks:
        collapsed_cond = None
        if collapsed_fn is not None:
            x_r, logw, collapsed_cond = collapsed_fn(x_t, t, k, gen)
            logw = logw.float()
        else:
            if proposal_fn is not None:
                x_r, corr = proposal_fn(x_t, t, k, gen)  # (B, k, *event), (B, k): log q_path − log q
                path_corr = path.proposal_log_correction(x_t, t, r, x_r)  # the path's proposal to the bridge
                if path_corr is not None:
                    corr = corr + path_corr
            else:
                x_r = path.propose(x_t, t, r, k, gen)  # (B, k, *event)
                corr = path.proposal_log_correction(x_t, t, r, x_r)
            flat = flatten_proposals(x_r)
            e = check_energy_output(energy_fn(flat, r.repeat_interleave(k)), B * k)
            logw = -e.view(B, k).float()
            if corr is not None:
                logw = logw + corr
        m_new = torch.maximum(m, logw.max(dim=1).values)
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        scale = torch.exp(m - m_safe)  # exp(-inf) = 0 on the first chunk
        w = torch.exp(logw - m_safe[:, None])
        s = s * scale + w.sum(dim=1)
        s2 = s2 * scale * scale + (w * w).sum(dim=1)
        if generator_param is not None and collapsed_cond is not None:
            part = generator_param.weighted_conditional_target(path, x_t, t, x_r, r, w, collapsed_cond)
        elif generator_param is not None and conditional_fn is not None and collapsed_fn is None:
            cond = tree_map(lambda v, k=k: v.reshape(B, k, *v.shape[1:]), conditional_fn(flat))
            part = generator_param.weighted_conditional_target(path, x_t, t, x_r, r, w, cond)
        elif generator_param is not None and teacher_fn is not None and collapsed_fn is None:
            out = tree_map(lambda v, k=k: v.reshape(B, k, *v.shape[1:]), teacher_fn(flat, r.repeat_interleave(k)))
            part = generator_param.weighted_teacher_target(path, x_t, t, x_r, r, w, out)
        elif generator_param is not None:
            part = generator_param.weighted_target(path, x_t, t, x_r, r, w)
        if generator_param is not None:
            if acc is None:
                acc = part
            else:
                acc = tree_map2(lambda a, p: a * _bcast(scale, a) + p, acc, part)
        m = m_new
    if isinstance(generator, ProposalStreams) and generator.combine is not None:
        m, s, s2, acc = generator.combine(m, s, s2, acc)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    target = None
    if acc is not None:
        denom = torch.clamp(s, min=torch.finfo(s.dtype).tiny)
        target = tree_map(lambda a: a / _bcast(denom, a), acc)
        target = generator_param.finalize_target(target, x_t, t)
    ess = (s * s) / torch.clamp(s2, min=torch.finfo(s.dtype).tiny) / K
    log_mean = torch.log(s) + m_safe - math.log(K)
    return Estimate(target=target, ess=ess, log_mean_weight=log_mean, log_normalizer=path.log_normalizer(x_t, t, r))


def log_mean_variance(ess: torch.Tensor, num_proposals: int) -> torch.Tensor:
    """Delta-method variance of log (1/K) Σ_k w_k from the normalized ESS of the same weights:
    Var ≈ Var(w) / (K E[w]²) ≈ 1/(K·ess) − 1/K. An underestimate where the weights have collapsed
    (ess ≈ 1/K hides how heavy the tail is), so use it to rank rows, not as an exact variance."""
    K = float(num_proposals)
    return (1.0 / (K * ess.clamp(min=1.0 / K)) - 1.0 / K).clamp(min=0.0)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(v.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


class SNISEstimator:
    """Plain EGM: posterior proposals to r = 1, weights from the true energy."""

    def __init__(self, path: ConditionalPath, generator_param: GeneratorParametrization, energy: Callable,
                 num_proposals: int = 1000, memory_mb: float = 256.0, conditional_targets: bool = False,
                 collapse_continuous: bool = False):
        self.path = path
        self.generator_param = generator_param
        self.energy = energy
        self.num_proposals = num_proposals
        self.memory_mb = memory_mb
        #: Rao–Blackwellized targets from the energy's single-site conditionals (r = 1 rows only)
        self.conditional_targets = bool(conditional_targets)
        #: bound once: ``self.energy`` may be swapped for a checking wrapper (the trainer's first step)
        self._conditional_logits = getattr(energy, "conditional_logits", None)
        #: integrate the continuous part out analytically (path.collapsed_proposals; r = 1 rows only)
        self.collapse_continuous = bool(collapse_continuous)
        self._energy_object = energy
        #: states the true energy was evaluated on so far (host-side count from shapes: no sync); a
        #: state whose single-site conditionals were computed counts once more (one local-field pass)
        self.energy_evals = 0
        #: sampler proposals (``estimator.sampler_proposals``): ``sampler_fn(x_t, t, k, generator) ->
        #: (x_1, log_ratio)`` (see :func:`estimate_marginal`'s ``proposal_fn``), or None; the r = 1 rows with
        #: t < ``sampler_t_max`` take ``sampler_num_proposals`` of them instead of the path's proposals
        self.sampler_fn: Callable | None = None
        self.sampler_num_proposals = 0
        self.sampler_t_max = 1.0

    def true_energy_fn(self, x: State, r: torch.Tensor) -> torch.Tensor:
        self.energy_evals += batch_size(x)
        return self.energy(x)

    def conditional_fn(self, x: State) -> Any:
        self.energy_evals += batch_size(x)
        return self._conditional_logits(x)

    def _final_conditional(self, with_target: bool):
        return self.conditional_fn if (with_target and self.conditional_targets) else None

    def _final_collapsed(self, with_target: bool):
        """The collapsed proposal function for rows with r = 1, or None (its evaluations are counted:
        one per proposal, and one per proposal, site and token for the conditional logits)."""
        if not self.collapse_continuous:
            return None
        want_cond = with_target and self.conditional_targets

        def collapsed(x_t, t, k, gen):
            x_1, logw, cond, evals = self.path.collapsed_proposals(x_t, t, k, gen, self._energy_object,
                                                                   with_conditionals=want_cond)
            self.energy_evals += evals
            return x_1, logw, cond
        return collapsed

    def estimate(self, x_t: State, t: torch.Tensor, generator: torch.Generator, with_target: bool = True,
                 num_proposals: int | None = None) -> Estimate:
        """``num_proposals`` overrides K for this call (the trainer's per-time-bin allocation)."""
        K = self.num_proposals if num_proposals is None else num_proposals
        return self._final_estimate(x_t, t, K, generator, with_target)

    def _final_estimate(self, x_t: State, t: torch.Tensor, K: int, generator: torch.Generator, with_target: bool,
                        t_lower: float | None = None) -> Estimate:
        """The r = 1 estimate with the true energy: K path proposals, or on rows with t < sampler_t_max
        the sampler's proposals. Rows are selected by ``torch.where`` (no host synchronization), so with
        sampler_t_max < 1 both estimates are made for every row; ``t_lower`` (a bound on t known on the
        host, e.g. the bootstrap cut) skips the sampler's when no row can be below sampler_t_max."""
        r = torch.ones_like(t)
        gp = self.generator_param if with_target else None

        def with_path():
            return estimate_marginal(self.path, gp, self.true_energy_fn, x_t, t, r, K, generator,
                                     memory_mb=self.memory_mb, conditional_fn=self._final_conditional(with_target),
                                     collapsed_fn=self._final_collapsed(with_target))

        if self.sampler_fn is None or self.sampler_num_proposals < 1 or (
                t_lower is not None and t_lower >= self.sampler_t_max):
            return with_path()
        # the path's estimate first: rows at or above sampler_t_max then see the same draws as without the option
        by_path = with_path() if self.sampler_t_max < 1.0 else None
        by_sampler = estimate_marginal(self.path, gp, self.true_energy_fn, x_t, t, r, self.sampler_num_proposals,
                                       generator, memory_mb=self.memory_mb,
                                       conditional_fn=self._final_conditional(with_target), proposal_fn=self.sampler_fn)
        return by_sampler if by_path is None else Estimate.where(t < self.sampler_t_max, by_sampler, by_path)


class BootstrapEstimator(SNISEstimator):
    """Bootstrapped EGM: bridge proposals to r = min(t + Δ, 1), weights from a learned intermediate
    energy E_r (the true energy where r = 1).

    ``intermediate_energy(x, r) -> (N,)`` is E_r; the trainer builds it from the EMA copy of the energy
    network with :meth:`intermediate_energy_from_residual` (the network learns the residual R below).
    Rows are split by the caller so that the *last* ``n_final`` rows have r = 1: that keeps the
    true-energy and learned-energy rows in separate calls without a host synchronization.
    """

    def __init__(self, path, generator_param, energy, intermediate_energy: EnergyFn, delta: float = 0.01,
                 num_proposals: int = 1000, memory_mb: float = 256.0, conditional_targets: bool = False,
                 collapse_continuous: bool = False, final_num_proposals: int | None = None):
        super().__init__(path, generator_param, energy, num_proposals, memory_mb, conditional_targets,
                         collapse_continuous)
        #: K of the rows with r = 1 (true energy), or None: the same K as the bootstrapped rows
        self.final_num_proposals = final_num_proposals
        self.intermediate_energy = intermediate_energy
        self.delta = delta
        #: the sampler network as teacher on the rows with r < 1 (``estimator.teacher_targets``), or None
        self.teacher_fn: Callable[[State, torch.Tensor], Any] | None = None
        #: a lower bound on the t of the rows with r = 1 (the trainer's bootstrap cut), or None
        self.final_t_min: float | None = None
        #: sampler bridge proposals on the rows with r < 1 (``estimator.sampler_bridges``):
        #: ``bridge_fn(x_t, t, r, k, generator) -> (x_r, log q_path − log q)``, or None (the path's)
        self.bridge_fn: Callable | None = None

    def end_times(self, t: torch.Tensor) -> torch.Tensor:
        return torch.clamp(t + self.delta, max=1.0)

    def estimate(self, x_t: State, t: torch.Tensor, generator: torch.Generator, n_final: int = 0,
                 with_target: bool = True, num_proposals: int | None = None) -> Estimate:
        B = t.shape[0]
        K = self.num_proposals if num_proposals is None else num_proposals
        gp = self.generator_param if with_target else None
        parts = []
        n_boot = B - n_final
        if n_boot > 0:
            xb = tree_map(lambda v: v[:n_boot], x_t)
            tb = t[:n_boot]
            rb = self.end_times(tb)
            bridge = None
            if self.bridge_fn is not None:
                def bridge(x, tq, k, g, rb=rb):
                    return self.bridge_fn(x, tq, rb, k, g)
            parts.append(estimate_marginal(self.path, gp, self.intermediate_energy, xb, tb, rb,
                                           K, generator, memory_mb=self.memory_mb,
                                           teacher_fn=self.teacher_fn if with_target else None,
                                           proposal_fn=bridge))
        if n_final > 0:
            xf = tree_map(lambda v: v[n_boot:], x_t)
            tf = t[n_boot:]
            parts.append(self._final_estimate(xf, tf, self.final_num_proposals or K, generator, with_target,
                                              t_lower=self.final_t_min))
        return Estimate.concat(parts)

    # ------------------------------------------------------------------ the intermediate energy
    # p_t(x) = Z_{1|t}(x) · E_{x_1 ~ q(·|x)}[e^{−E(x_1)}] / Z, so the intermediate energy splits into an
    # analytic part and a learned residual:
    #     E_t(x) = R_t(x) − log Z_{1|t}(x) + const,   R_t(x) = −log E_{q(·|x)}[e^{−E(x_1)}].
    # The network learns R only. log Z_{1|t} is known from the path and can vary steeply with x (for
    # the masked path it is linear in the number of masked sites, with slopes of order log N and
    # log(1/t)); leaving it to the network would make early bootstrap weights nearly meaningless.

    def intermediate_energy_from_residual(self, residual_fn: EnergyFn) -> EnergyFn:
        """E_r(x) = R(x, r) − log Z_{1|r}(x), given the learned residual R (the energy network)."""
        def energy_r(x: State, r: torch.Tensor) -> torch.Tensor:
            return residual_fn(x, r) - self.path.log_normalizer(x, r, torch.ones_like(r))
        return energy_r

    def energy_regression_target(self, x_t: State, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Direct target for the residual network R(x_t, t): −log (1/K) Σ_k exp(−E(x_1^k)), x_1^k ~ q(·|x_t)."""
        return -self.energy_regression_estimate(x_t, t, generator).log_mean_weight

    def energy_regression_estimate(self, x_t: State, t: torch.Tensor, generator: torch.Generator,
                                   num_proposals: int | None = None) -> Estimate:
        """The plain (r = 1) weight statistics behind the direct target: −log_mean_weight is the target,
        ``ess`` gives its delta-method variance ≈ 1/(K·ess) − 1/K (see :func:`log_mean_variance`).
        ``num_proposals`` overrides K for this call (``estimator.energy_num_proposals``)."""
        return super().estimate(x_t, t, generator, with_target=False, num_proposals=num_proposals)

    def residual_target_from(self, est: Estimate, x_t: State, t: torch.Tensor) -> torch.Tensor:
        """Bootstrapped target for R(x_t, t) from a bridge estimate to r: −log p_t(x_t) + log Z_{1|t}(x_t)
        with −log p_t(x_t) ≈ −[log mean_k e^{−E_r(x_r^k)} + log Z_{r|t}(x_t)] (no extra energy evaluations)."""
        return -est.log_marginal + self.path.log_normalizer(x_t, t, torch.ones_like(t))
