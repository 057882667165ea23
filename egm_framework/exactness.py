r"""Exact answers from an imperfect sampler: importance weights, log Z, observables, SIR and MH.

With the model's log-probability log q(x) of each sample (see :mod:`egm_framework.likelihood`) the
log-weight is log w = −E(x) − log q(x), and for any observable f

    E_q[w] = Z,        E_p[f] = E_q[w f] / E_q[w].

Everything below is computed in float64 from the n log-weights; nothing needs the network again.

* :func:`log_z` — log Ẑ = log mean w with a delta-method interval: the standard error of log Ẑ is
  sd(w)/(√n mean w). log Ẑ is biased low by ≈ var/(2n) (Jensen); the interval is asymptotic.
* :func:`self_normalized` — Σ w̄_i f_i with the delta-method standard error √(Σ w̄_i² (f_i − μ̂)²).
* :func:`ess_fraction` — ESS/n = (Σ w)² / (n Σ w²): the honest quality number of the sampler.
* :func:`kl_estimates` — reverse KL(q‖p) = log Z − E_q[log w] (≥ 0; with log Ẑ it is a lower bound in
  expectation since E[log Ẑ] ≤ log Z) and forward KL(p‖q) = E_p[log w] − log Z (SNIS; low when ESS is
  small). For extended-space likelihoods (masked path) these are KLs of the extended laws, which
  bound the KLs of the x-marginals from above.
* :func:`sir` — sampling-importance-resampling (multinomial, ∝ w).
* :func:`independence_mh` — Metropolis–Hastings with the sampler as independent proposal:
  accept x' with probability min(1, w'/w); asymptotically exact; acceptance rate and the
  integrated autocorrelation time of the energy along the chain (:func:`integrated_autocorr_time`).

:func:`sample_with_log_prob` and :func:`estimate` drive a trained run (:class:`~egm_framework.trainer.Trainer`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .errors import ConfigError
from .interfaces import within_training_range
from .likelihood import LikelihoodUnavailableError, LogProbSample
from .states import State, cat, index, tree_map

if TYPE_CHECKING:
    from .trainer import Trainer

Z95 = 1.959963984540054


def _f64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64).reshape(-1)


def log_weights(energy, log_q) -> np.ndarray:
    """log w = −E − log q, float64 (n,)."""
    return -_f64(energy) - _f64(log_q)


def normalized_weights(logw) -> np.ndarray:
    """w̄ = w / Σ w from log-weights (stable)."""
    lw = _f64(logw)
    if not np.all(np.isfinite(lw)):
        raise ValueError("log-weights must be finite (a sample with zero model probability?)")
    w = np.exp(lw - lw.max())
    return w / w.sum()


def ess_fraction(logw) -> float:
    """ESS/n = 1 / (n Σ w̄²) ∈ (0, 1]."""
    wn = normalized_weights(logw)
    return float(1.0 / (wn.size * np.sum(wn * wn)))


def log_z(logw, level: float = 0.95) -> dict[str, float]:
    """log Ẑ = log mean w, its standard error sd(w)/(√n mean w) and the two-sided interval at ``level``."""
    lw = _f64(logw)
    n = lw.size
    m = lw.max()
    w = np.exp(lw - m)
    mean = w.mean()
    est = float(m + math.log(mean))
    se = float(w.std(ddof=1) / (math.sqrt(n) * mean)) if n > 1 else math.inf
    z = _z_of(level)
    return {"log_z": est, "log_z_se": se, "log_z_lo": est - z * se, "log_z_hi": est + z * se, "level": level}


def _z_of(level: float) -> float:
    if level == 0.95:
        return Z95
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def self_normalized(values, logw) -> tuple[float, float]:
    """(Σ w̄ f, delta-method standard error √(Σ w̄² (f − μ̂)²))."""
    f = _f64(values)
    wn = normalized_weights(logw)
    mu = float(np.sum(wn * f))
    return mu, float(math.sqrt(np.sum(wn * wn * (f - mu) ** 2)))


def raw_mean(values) -> tuple[float, float]:
    """(mean, standard error) of plain samples."""
    f = _f64(values)
    return float(f.mean()), float(f.std(ddof=1) / math.sqrt(f.size)) if f.size > 1 else math.inf


def kl_estimates(logw) -> dict[str, float]:
    """Reverse KL(q‖p) ≈ log Ẑ − mean log w and forward KL(p‖q) ≈ Σ w̄ log w − log Ẑ (nats)."""
    lw = _f64(logw)
    lz = log_z(lw)["log_z"]
    wn = normalized_weights(lw)
    return {"kl_reverse": float(lz - lw.mean()), "kl_forward": float(np.sum(wn * lw) - lz)}


def sir(logw, m: int, generator: np.random.Generator) -> np.ndarray:
    """m indices drawn with replacement ∝ w (sampling-importance-resampling)."""
    return generator.choice(len(_f64(logw)), size=m, replace=True, p=normalized_weights(logw))


def independence_mh(logw, generator: np.random.Generator) -> tuple[np.ndarray, float]:
    """Independence Metropolis–Hastings over the proposals in their order: start at proposal 0; at step
    i accept proposal i with probability min(1, w_i / w_current). Returns (chain indices (n,),
    acceptance rate over the n − 1 moves)."""
    lw = _f64(logw)
    n = lw.size
    logu = np.log(generator.random(n))
    chain = np.empty(n, dtype=np.int64)
    cur = 0
    accepted = 0
    chain[0] = 0
    for i in range(1, n):
        if logu[i] < lw[i] - lw[cur]:
            cur = i
            accepted += 1
        chain[i] = cur
    return chain, accepted / max(n - 1, 1)


def integrated_autocorr_time(x, c: float = 5.0) -> float:
    """τ_int = 1 + 2 Σ_{t≥1} ρ(t), with Sokal's automatic window (smallest W ≥ c·τ(W)); 1 for independent
    draws, n/τ is the effective number of samples. A constant chain returns n (nothing was learned)."""
    v = _f64(x)
    n = v.size
    v = v - v.mean()
    var = np.dot(v, v) / n
    if n < 2 or var <= 0:
        return float(n)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(v, size)
    acf = np.fft.irfft(f * np.conjugate(f), size)[:n] / (n * var)
    tau = 1.0
    for w in range(1, n):
        tau += 2.0 * acf[w]
        if w >= c * tau:
            break
    return float(max(tau, 1.0 / n))


# ------------------------------------------------------------------ driving a trained run
def log_prob_refusal(trainer: "Trainer") -> str | None:
    """None if the run's generator returns log q for its path; else the reason and the generators that work."""
    gen, path = trainer.comp.generator, trainer.comp.path
    reason = gen.log_prob_unsupported(path)
    if not reason:
        return None
    working = _working_generators(trainer)
    return (f"{reason}. Likelihoods are available for: {', '.join(working) or 'none installed'} "
            "(jump needs the masked path, flow an affine path such as cond_ot or ve, product both parts)")


def _working_generators(trainer: "Trainer") -> list[str]:
    from .registry import get_registry

    reg = trainer.registry or get_registry()
    return [c.name for c in reg.components("generator") if getattr(c.factory, "supports_log_prob", False)]


def sample_with_log_prob(trainer: "Trainer", n: int, steps: int, generator: torch.Generator,
                         chunk: int = 5000, **options: Any) -> LogProbSample:
    """n samples of the run's model with log q (chunked like :meth:`Trainer.sample`); raises
    :class:`LikelihoodUnavailableError` (naming the generators that work) when unsupported."""
    reason = log_prob_refusal(trainer)
    if reason:
        raise LikelihoodUnavailableError(reason)
    was = trainer.model.training
    trainer.model.eval()
    parts = []
    try:
        for i in range(0, n, chunk):
            with torch.no_grad():  # a generator that needs gradients (flow Jacobians) enables them itself
                parts.append(trainer.comp.generator.sample_with_log_prob(
                    within_training_range(trainer.model_fn, trainer.comp.path), trainer.comp.path, min(chunk, n - i),
                    steps, generator, trainer.device,
                    **options))
    finally:
        trainer.model.train(was)
    x = cat([tree_map(lambda v: v.detach(), p.x) for p in parts]) if len(parts) > 1 else parts[0].x
    log_q = torch.cat([p.log_q for p in parts])
    std = [p.log_q_std for p in parts]
    log_q_std = torch.cat(std) if all(s is not None for s in std) else None
    return LogProbSample(x=tree_map(lambda v: v.detach().cpu(), x), log_q=log_q.cpu(), exact=parts[0].exact,
                         log_q_std=None if log_q_std is None else log_q_std.cpu(), info=parts[0].info)


def summarize(energy, x: State, log_q, observables: Sequence[str] | None = None,
              exact_log_q: bool = True, log_q_std=None) -> dict[str, Any]:
    """The exactness numbers of samples x with log q: n, ESS/n, log Z (95% interval), KL estimates and,
    for the energy and each observable, the raw and the reweighted mean with standard errors."""
    from .metrics import statistics

    stats = statistics(energy, x)
    if observables:
        unknown = [o for o in observables if o not in stats]
        if unknown:
            raise ConfigError(f"unknown observable {unknown[0]!r} for energy {getattr(energy, 'name', '?')!r}; "
                              f"available: {', '.join(stats)}")
        names = ["energy"] + [o for o in observables if o != "energy"]
    else:
        names = list(stats)
    lw = log_weights(stats["energy"], log_q)
    finite = np.isfinite(lw)
    out: dict[str, Any] = {"num_samples": int(lw.size), "log_q": "exact" if exact_log_q else "estimated (Hutchinson)"}
    if not finite.all():
        out["nonfinite_log_weights"] = int((~finite).sum())
        lw = lw[finite]
        stats = {k: v[finite] for k, v in stats.items()}
    out["ess_fraction"] = ess_fraction(lw)
    out.update(log_z(lw))
    out.update(kl_estimates(lw))
    exact_lz = getattr(energy, "log_partition", None)  # energies that know their own log Z say so
    if isinstance(exact_lz, (int, float)) and not isinstance(exact_lz, bool):
        out["log_z_exact"] = float(exact_lz)
    if log_q_std is not None:
        out["log_q_std_mean"] = float(_f64(log_q_std).mean())
    obs = {}
    for k in names:
        rm, rse = raw_mean(stats[k])
        wm, wse = self_normalized(stats[k], lw)
        obs[k] = {"raw": rm, "raw_se": rse, "reweighted": wm, "reweighted_se": wse}
    out["observables"] = obs
    return out


def estimate(trainer: "Trainer", n: int, steps: int, seed: int = 0, observables: Sequence[str] | None = None,
             solver_check: bool = True) -> dict[str, Any]:
    """Draw n samples with log q from the run and summarize them (:func:`summarize`). For generators
    whose log q depends on the step count (flow), also re-simulate the same prior draws with 2·steps
    and report the mean and largest |Δ log q| and |Δx| (``solver_check``): the ODE solver error."""
    g = torch.Generator(device=trainer.device)
    g.manual_seed(seed)
    s = sample_with_log_prob(trainer, n, steps, g)
    out = summarize(trainer.comp.energy, s.x, s.log_q, observables, s.exact, s.log_q_std)
    out.update({"steps": steps, "seed": seed, "method": s.info.get("method", ""),
                **({"log_det": s.info["log_det"]} if "log_det" in s.info else {})})
    if solver_check and "log_det" in s.info:  # step-count dependent log q (flow, product)
        g2 = torch.Generator(device=trainer.device)
        g2.manual_seed(seed)
        s2 = sample_with_log_prob(trainer, n, 2 * steps, g2)
        dlq = (s.log_q - s2.log_q).abs()
        dx = torch.stack([(a.double() - b.double()).flatten(1).norm(dim=1) for a, b in
                          zip(_float_leaves(s.x), _float_leaves(s2.x))]).sum(0) if _float_leaves(s.x) else None
        out["solver_check"] = {"steps": [steps, 2 * steps], "log_q_abs_diff_mean": float(dlq.mean()),
                               "log_q_abs_diff_max": float(dlq.max()),
                               **({"x_abs_diff_mean": float(dx.mean())} if dx is not None else {})}
    return out


def _float_leaves(x: State) -> list[torch.Tensor]:
    from .states import tree_leaves

    return [v for v in tree_leaves(x) if v.is_floating_point()]


def corrected_samples(trainer: "Trainer", n: int, steps: int, generator: torch.Generator, method: str,
                      seed: int = 0) -> tuple[State, dict[str, Any]]:
    """n bias-corrected samples: ``sir`` (n draws ∝ w from n model samples; duplicates possible) or
    ``mh`` (the n states of an independence MH chain over n model samples). Returns (samples, info)."""
    if method not in ("sir", "mh"):
        raise ConfigError(f"--correct must be 'sir' or 'mh', got {method!r}")
    s = sample_with_log_prob(trainer, n, steps, generator)
    from .metrics import statistics

    e = statistics(trainer.comp.energy, s.x)["energy"]
    lw = log_weights(e, s.log_q)
    if not np.all(np.isfinite(lw)):
        raise LikelihoodUnavailableError("some samples have a non-finite log-weight; the model assigns them zero "
                                         "probability (retrain, or check the energy)")
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {"method": method, "ess_fraction": ess_fraction(lw), "num_proposals": n}
    if method == "sir":
        idx = sir(lw, n, rng)
        info["unique_fraction"] = float(len(np.unique(idx)) / n)
    else:
        idx, acc = independence_mh(lw, rng)
        info["acceptance_rate"] = acc
        info["energy_autocorr_time"] = integrated_autocorr_time(e[idx])
    return index(s.x, torch.as_tensor(idx)), info


def format_summary(r: dict[str, Any]) -> str:
    """Human-readable lines of :func:`summarize` / :func:`estimate` output."""
    exact = f" exact {r['log_z_exact']:.6g}" if "log_z_exact" in r else ""
    lines = [f"samples {r['num_samples']}  ESS/n {r['ess_fraction']:.4g}  log Z {r['log_z']:.6g} "
             f"[{r['log_z_lo']:.6g}, {r['log_z_hi']:.6g}] (95%){exact}  KL(q||p) ≈ {r['kl_reverse']:.4g}  "
             f"KL(p||q) ≈ {r['kl_forward']:.4g}  log q {r['log_q']}"]
    if r["ess_fraction"] < LOW_ESS:
        lines.append(f"warning: ESS/n = {r['ess_fraction']:.3g} < {LOW_ESS}: reweighted values and their error bars "
                     "are unreliable (see docs/exactness.md)")
    lines.append(f"{'observable':<20} {'raw':>24} {'reweighted':>24}")
    for k, v in r["observables"].items():
        lines.append(f"{k:<20} {v['raw']:>14.6g} ± {v['raw_se']:<8.2g}"
                     f"{v['reweighted']:>14.6g} ± {v['reweighted_se']:<8.2g}")
    if "solver_check" in r:
        sc = r["solver_check"]
        lines.append(f"solver check ({sc['steps'][0]} vs {sc['steps'][1]} steps): mean |Δ log q| "
                     f"{sc['log_q_abs_diff_mean']:.3g}, max {sc['log_q_abs_diff_max']:.3g}")
    return "\n".join(lines)


#: below this ESS/n the delta-method error bars are not to be trusted (docs/exactness.md)
LOW_ESS = 0.01
