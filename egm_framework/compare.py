"""``egm compare``: EGM against MCMC baselines at a matched budget, as curves.

    egm compare CONFIG [--budget-energy-evals N] [--budget-seconds S] [--baselines gibbs,metropolis]

1. Trains EGM from CONFIG (a normal run folder under OUT/egm) until it has used N energy
   evaluations (counted by the trainer: every state passed to the true energy) or S seconds of
   training, whichever comes first; evaluates the sampler at geometrically spaced points.
2. Runs every applicable registered baseline (``egm components baseline``) with C chains (default: the
   EGM batch size) started from the path's prior, until it has used both EGM's energy evaluations
   and EGM's training seconds (the two matched budgets); evaluates the chains' current states at
   geometrically spaced points. Baseline costs follow :mod:`egm_framework.baselines`.
3. Every evaluation compares C samples with the same ground-truth set of C samples (its noise floor:
   a second independent set), so all curves share one floor. Writes ``compare.json``, ``compare.md``
   (a table: quality at both matched budgets, and the cost to reach E-W1 ≤ 2× floor) and
   ``compare.png`` (metric / floor against energy evaluations and against seconds, log–log).

Wall-clock numbers are measured without the evaluations; on a shared machine they are noisy.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import torch

from . import plots
from .baselines import BaselineNotApplicable, initial_state
from .config import RunConfig
from .errors import ConfigError
from .metrics import compare
from .registry import Registry, get_registry
from .states import batch_size, tree_map

#: a curve point: cost so far and the metrics at that point
Point = dict[str, Any]


@attrs.frozen(kw_only=True)
class CompareSettings:
    budget_energy_evals: int | None = None
    budget_seconds: float | None = None
    baselines: tuple[str, ...] | None = None
    chains: int | None = None
    metric: str | None = None
    points: int = 12
    #: a baseline stops at this many seconds even if it has not used EGM's energy evaluations
    baseline_max_seconds: float | None = None
    #: cap on EGM's training seconds that the baselines do not match (they match the energy evaluations
    #: EGM used): for a slow EGM run under an energy budget; the learning-rate schedule anneals to it
    egm_max_seconds: float | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _grid(first: float, last: float, n: int) -> list[float]:
    """n geometrically spaced values from first to last (inclusive)."""
    if last <= first or n < 2:
        return [last]
    r = (last / first) ** (1.0 / (n - 1))
    return [first * r ** k for k in range(n)]


class _Checkpoints:
    """Evaluate whenever the cost crosses the next mark of either geometric grid (evaluations, seconds)."""

    def __init__(self, evals: list[float], seconds: list[float]):
        self.evals, self.seconds = list(evals), list(seconds)

    def due(self, n_evals: float, secs: float) -> bool:
        hit = False
        while self.evals and n_evals >= self.evals[0]:
            self.evals.pop(0)
            hit = True
        while self.seconds and secs >= self.seconds[0]:
            self.seconds.pop(0)
            hit = True
        return hit


def _point(energy, samples, ref, ref2, evals: int, secs: float, **extra) -> Point:
    m = compare(energy, tree_map(lambda v: v.detach().cpu(), samples), ref, ref2)
    return {"energy_evals": int(evals), "seconds": round(secs, 4), **extra,
            **{k: v for k, v in m.items() if isinstance(v, (int, float))}}


def train_egm(cfg: RunConfig, out: Path, s: CompareSettings, ref, ref2, registry: Registry | None, device: str | None,
              log: Callable[[str], None]) -> tuple[list[Point], Any]:
    """Train EGM to the budget, evaluating C model samples at geometric checkpoints."""
    from .trainer import Trainer

    B, K, inner = cfg.train.batch_size, cfg.estimator.num_proposals, cfg.train.inner_iterations
    per_step = B * K  # the plain estimator's exact cost; bootstrap is re-measured after the first step
    budget_e = s.budget_energy_evals
    if budget_e is None and s.budget_seconds is None:
        budget_e = cfg.train.outer_iterations * inner * per_step
    steps_est = math.ceil(budget_e / per_step) if budget_e else cfg.train.outer_iterations * inner
    cap = s.egm_max_seconds
    cfg = attrs.evolve(cfg, train=attrs.evolve(cfg.train, outer_iterations=max(1, math.ceil(steps_est / inner)),
                                               progress=False, eval_every=0,
                                               max_seconds=cap if cap is not None else cfg.train.max_seconds))
    trainer = Trainer(cfg, out, registry=registry, device=device)
    trainer.folder.open_for_writing()  # the run's lock: only its holder writes config, log and checkpoints
    trainer._write_config()
    n = batch_size(ref)
    g_eval = torch.Generator(device=trainer.device)
    marks = _Checkpoints(_grid(10 * per_step, budget_e, s.points) if budget_e else [],
                         _grid(max(1.0, s.budget_seconds / 200), s.budget_seconds, s.points) if s.budget_seconds else [])
    curve: list[Point] = []
    dev = trainer.device
    while True:
        _sync(dev)
        t0 = time.perf_counter()
        trainer._t0 = t0  # the cosine schedule's time fraction (with a time cap) counts training time only
        if trainer.step % inner == 0:
            trainer.refill_buffer()
        trainer.train_step()
        _sync(dev)
        trainer.elapsed += time.perf_counter() - t0
        trainer._t0 = None
        if trainer.step == 1 and budget_e and cfg.estimator.kind == "bootstrap":
            # bootstrap costs vary with the share of rows at r = 1: re-size the cosine schedule
            trainer.total_steps = max(1, math.ceil(budget_e / max(trainer.energy_evals, 1)))
        if trainer.step % inner == 0:
            trainer.outer += 1
        if trainer.step % cfg.train.log_every == 0:
            trainer._log(trainer._flush_stats())
        capped = cap is not None and trainer.elapsed >= cap
        done = capped or (budget_e is not None and trainer.energy_evals >= budget_e) or (
            s.budget_seconds is not None and trainer.elapsed >= s.budget_seconds)
        if marks.due(trainer.energy_evals, trainer.elapsed) or done:
            g_eval.manual_seed(cfg.eval.seed)
            x = trainer.sample(n, cfg.train.buffer_sample_steps, generator=g_eval)
            p = _point(trainer.comp.energy, x, ref, ref2, trainer.energy_evals, trainer.elapsed, step=trainer.step)
            curve.append(p)
            trainer._log({"step": trainer.step, "outer": trainer.outer,
                          "eval": {**p, "train_seconds": p["seconds"]}})
            log(f"  egm step {trainer.step}: {trainer.energy_evals:.3g} evals, {trainer.elapsed:.1f} s, "
                f"E-W1 {p.get('E-W1', float('nan')):.4g} (floor {p.get('E-W1/floor', float('nan')):.3g})")
        if done:
            break
    if trainer._count:
        trainer._log(trainer._flush_stats())
    trainer.save_checkpoint()
    trainer.folder.release_lock()
    if budget_e is not None and trainer.energy_evals >= budget_e:
        trainer.compare_stopped = "used the energy budget"
    elif cap is not None and trainer.elapsed >= cap:
        trainer.compare_stopped = f"time cap {cap:g} s (--egm-max-seconds) reached before the energy budget"
    else:
        trainer.compare_stopped = "used the time budget (--budget-seconds)"
    return curve, trainer


def run_baseline(name: str, cfg: RunConfig, comp, s: CompareSettings, chains: int, ref, ref2, budget_e: int,
                 budget_s: float, max_s: float, registry: Registry, device: torch.device,
                 log: Callable[[str], None]) -> dict:
    """Run one baseline until it has used ``budget_e`` energy evaluations and ``budget_s`` seconds
    (either may be 0: not matched), or the time cap; evaluate at geometric checkpoints."""
    b = registry.create("baseline", name, comp.energy, comp.space)
    g = torch.Generator(device=device)
    g.manual_seed(cfg.train.seed)
    b.init(initial_state(comp.path, comp.space, chains, g, device), g)
    cap = s.baseline_max_seconds if s.baseline_max_seconds is not None else 2 * max_s + 60
    # the first sweep sizes the evaluation grid
    t0 = time.perf_counter()
    b.sweep(g)
    _sync(device)
    secs = time.perf_counter() - t0
    marks = _Checkpoints(_grid(b.energy_evals, max(budget_e, b.energy_evals), s.points) if budget_e else [],
                         _grid(max(secs, budget_s / 200), max(budget_s, secs), s.points) if budget_s else [])
    curve: list[Point] = []
    stopped = "used the matched budget"
    while True:
        met = b.energy_evals >= budget_e and secs >= budget_s
        capped = secs >= cap and not met
        if marks.due(b.energy_evals, secs) or met or capped:
            curve.append(_point(comp.energy, b.state, ref, ref2, b.energy_evals, secs, sweeps=b.sweeps,
                                grad_evals=b.grad_evals))
        if met or capped:
            if capped:
                stopped = f"time cap {cap:.0f} s reached before the energy budget"
            break
        t0 = time.perf_counter()
        b.sweep(g)
        _sync(device)
        secs += time.perf_counter() - t0
    last = curve[-1]
    log(f"  {name}: {b.sweeps} sweeps, {b.energy_evals:.3g} evals, {secs:.1f} s, E-W1 "
        f"{last.get('E-W1', float('nan')):.4g}; {stopped}")
    return {"name": name, "description": b.describe(), "curve": curve, "stopped": stopped}


def select_baselines(names: list[str], comp, reg: Registry, explicit: bool, skipped: dict[str, str]) -> list[str]:
    """The baselines to run: every named one (explicit), else every applicable registered one, where a
    fallback (``Baseline.fallback``, e.g. metropolis) runs only if no specific baseline applies. Names
    left out are put in ``skipped`` with the reason."""
    usable, fallbacks = [], []
    for nm in names:
        try:
            b = reg.create("baseline", nm, comp.energy, comp.space)
        except BaselineNotApplicable as exc:
            if explicit:
                raise
            skipped[nm] = str(exc)
            continue
        (fallbacks if getattr(b, "fallback", False) and not explicit else usable).append(nm)
    if usable:
        skipped.update({nm: "a fallback, left out because a specific baseline applies (name it in --baselines "
                            "to run it)" for nm in fallbacks})
        return usable
    return fallbacks


def _value_at(curve: list[Point], key: str, budget: float, metric: str) -> float | None:
    """The metric at the last checkpoint within ``budget`` of cost ``key``."""
    pts = [p for p in curve if p[key] <= budget * (1 + 1e-9) and metric in p]
    return pts[-1][metric] if pts else None


def _reach(curve: list[Point], metric: str, threshold: float) -> Point | None:
    for p in curve:
        if metric in p and p[metric] <= threshold:
            return p
    return None


def run_compare(cfg: RunConfig, out: Path, settings: CompareSettings, registry: Registry | None = None,
                device: str | None = None, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    from .assembly import resolve_device
    from .evaluation import ground_truth_sets

    reg = registry or get_registry()
    if settings.budget_energy_evals is not None and settings.budget_energy_evals < 1:
        raise ConfigError("--budget-energy-evals must be ≥ 1")
    if settings.budget_seconds is not None and not settings.budget_seconds > 0:
        raise ConfigError("--budget-seconds must be > 0")
    if settings.egm_max_seconds is not None and not settings.egm_max_seconds > 0:
        raise ConfigError(f"--egm-max-seconds must be > 0, got {settings.egm_max_seconds}")
    out = Path(out)
    if (out / "compare.json").exists() or (out / "egm" / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"{out} already holds a comparison; choose another --out")
    chains = settings.chains or cfg.train.batch_size
    dev = resolve_device(device or cfg.train.device)
    from .assembly import build_components

    comp = build_components(cfg, reg, build_networks=False)
    names = list(settings.baselines) if settings.baselines is not None else reg.names("baseline")
    skipped: dict[str, str] = {}
    # unknown or inapplicable names fail before any training
    names = select_baselines(names, comp, reg, explicit=settings.baselines is not None, skipped=skipped)
    try:
        ref, ref2, method = ground_truth_sets(comp.energy, chains, cfg.eval.ground_truth_seed, dev,
                                              out / "ground_truth.pt")
    except NotImplementedError:
        raise ConfigError(f"energy {cfg.energy.name!r} has no ground-truth sampler; egm compare needs one") from None
    log(f"egm compare {cfg.name}: {chains} samples per evaluation vs ground truth ({method})")
    egm_curve, trainer = train_egm(cfg, out / "egm", settings, ref, ref2, reg, device, log)
    budget_e, budget_s = trainer.energy_evals, trainer.elapsed
    # what the baselines match: the energy budget unless only seconds were given; seconds if given
    match_e = budget_e if settings.budget_energy_evals is not None or settings.budget_seconds is None else 0
    match_s = budget_s if settings.budget_seconds is not None else 0.0
    baselines = []
    for nm in names:
        baselines.append(run_baseline(nm, cfg, comp, settings, chains, ref, ref2, match_e, match_s, budget_s,
                                      reg, trainer.device, log))
    metric = settings.metric
    last = egm_curve[-1]
    key = plots.key_metric(last, metric)
    if metric and key is None:
        raise ConfigError(f"--metric {metric!r} has no noise floor here; metrics: "
                          f"{', '.join(k[:-6] for k in last if k.endswith('/floor'))}")
    result = {"config": cfg.name, "chains": chains, "ground_truth": method, "budget_energy_evals": budget_e,
              "budget_seconds": round(budget_s, 4), "matched": {"energy_evals": bool(match_e), "seconds": bool(match_s)}, "egm": {"curve": egm_curve, "steps": trainer.step, "stopped": trainer.compare_stopped},
              "baselines": baselines, "skipped": skipped, "metrics": [m for m in ("E-W1", key) if m],
              "floors": {m: last.get(f"{m}/floor") for m in ("E-W1", key) if m}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=1))

    curves = {"EGM": egm_curve, **{b["name"]: b["curve"] for b in baselines}}
    plots.quality_figure(curves, result["metrics"], result["floors"], out / "compare.png",
                         f"{cfg.name}: EGM vs MCMC ({chains} samples, same ground truth)")
    (out / "compare.md").write_text(compare_table(result))
    return result


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def reach_cells(curve: list[Point], floor: float | None) -> tuple[str, str]:
    """(energy evaluations, seconds) at the first checkpoint with E-W1 ≤ 2× floor, or 'not reached'."""
    p = _reach(curve, "E-W1", 2 * floor) if floor else None
    if p is None:
        return "not reached", "not reached"
    return f"{p['energy_evals']:.3g}", f"{p['seconds']:.3g}"


def compare_table(r: dict) -> str:
    be, bs = r["budget_energy_evals"], r["budget_seconds"]
    lines = [f"# EGM vs MCMC: `{r['config']}`", "",
             f"{r['chains']} samples per evaluation (EGM: model samples; MCMC: the current state of each of "
             f"{r['chains']} chains) against the same {r['chains']} ground-truth samples ({r['ground_truth']}). "
             f"Matched budgets: **{be:.3g} energy evaluations** and **{bs:.1f} s** (what EGM used). "
             "Values are metric / noise floor (1 = as good as the evaluation can tell).", "",
             "| method | E-W1/floor at " + f"{be:.3g} evals | at {bs:.0f} s | "
             + (f"{r['metrics'][1]}/floor at evals | at s | " if len(r["metrics"]) > 1 else "")
             + "evals to E-W1 ≤ 2× floor | seconds to E-W1 ≤ 2× floor |",
             "|---|---|---|" + ("---|---|" if len(r["metrics"]) > 1 else "") + "---|---|"]
    rows = [("EGM", r["egm"]["curve"])] + [(b["name"], b["curve"]) for b in r["baselines"]]
    for name, curve in rows:
        cells = []
        for m in r["metrics"]:
            f = r["floors"].get(m)
            for key, budget in (("energy_evals", be), ("seconds", bs)):
                v = _value_at(curve, key, budget, m)
                cells.append(_fmt(v / f if v is not None and f else None))
        cells += list(reach_cells(curve, r["floors"].get("E-W1")))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "'not reached': not within the method's whole run. A baseline that used the matched energy budget in "
              "fewer seconds than EGM shows its last value in the seconds columns.",
              f"EGM: {r['egm']['steps']} training steps; {r['egm'].get('stopped', 'used the budget')}. Baselines:"]
    for b in r["baselines"]:
        lines.append(f"- `{b['name']}`: {b['description']}; {b['curve'][-1]['sweeps']} sweeps; {b['stopped']}.")
    for nm, why in r["skipped"].items():
        lines.append(f"- `{nm}` not applicable: {why}")
    lines += ["", "![curves](compare.png)", ""]
    return "\n".join(lines)
