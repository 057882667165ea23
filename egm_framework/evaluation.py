"""Evaluate a trained sampler against ground truth; write ``eval.json``, figures and ``report.md``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .metrics import ANNOTATIONS, compare, format_metrics, statistics
from .states import State, batch_size, from_saveable, index, to_saveable, tree_map

if TYPE_CHECKING:
    from .trainer import Trainer


def shared_cache_dir() -> Path | None:
    """``$EGM_CACHE_DIR`` or ``~/.cache/egm-framework``; ``EGM_CACHE_DIR=""`` turns the shared cache off."""
    env = os.environ.get("EGM_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None
    return Path.home() / ".cache" / "egm-framework"


def ground_truth_sets(energy, n: int, seed: int, device, cache: Path | None = None) -> tuple[State, State, str]:
    """Two independent ground-truth sets of size n (the second gives the noise floor).

    Cached in the run folder (``cache``) and in a shared cache keyed by the energy's parameters, n, the
    seed and the device type, so runs of the same target (plain and bootstrapped, say) share one
    expensive Gibbs / Swendsen–Wang / MCMC set."""
    key = {"energy": energy.describe(), "n": n, "seed": seed, "device": torch.device(device).type}
    key_s = json.dumps(key, sort_keys=True, default=str)
    shared = shared_cache_dir()
    candidates = [c for c in (cache, shared / f"gt-{hashlib.sha256(key_s.encode()).hexdigest()[:20]}.pt"
                              if shared is not None else None) if c is not None]
    for c in candidates:
        if c.exists():
            try:
                d = torch.load(c, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                continue
            if not isinstance(d, dict) or d.get("key") != key_s:
                continue
            try:
                intact = d.get("sha256") == _content_hash(d["a"], d["b"])
            except Exception:  # noqa: BLE001 - an entry of the wrong structure is recomputed too
                intact = False
            if not intact:  # altered or truncated samples: never used, recomputed below
                if "sha256" in d:  # (an entry from before content hashes is recomputed silently)
                    print(f"egm: warning: ground-truth cache {c} does not match its content hash; recomputing it",
                          file=sys.stderr)
                continue
            if c != cache and cache is not None:
                _save_gt(cache, d)
            return from_saveable(d["a"]), from_saveable(d["b"]), d["method"]
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    both = energy.ground_truth(2 * n, g, device)
    a, b = index(both, slice(0, n)), index(both, slice(n, 2 * n))
    method = energy.ground_truth_method
    record = {"key": key_s, "a": to_saveable(a), "b": to_saveable(b), "method": method}
    record["sha256"] = _content_hash(record["a"], record["b"])
    for c in candidates:
        _save_gt(c, record)
    return tree_map(lambda v: v.cpu(), a), tree_map(lambda v: v.cpu(), b), method


def _content_hash(a: dict, b: dict) -> str:
    """sha256 over the names, dtypes, shapes and bytes of both sets (checked on every cache read)."""
    h = hashlib.sha256()
    for part in (a, b):
        for k in sorted(part):
            v = part[k].contiguous()
            h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
            h.update(v.numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _save_gt(path: Path, record: dict) -> None:
    from .runfolder import atomic_save

    try:
        atomic_save(record, path)
    except OSError:  # a read-only or full cache folder only costs a recomputation next time
        pass


def evaluate_trainer(trainer: "Trainer", num_samples: int | None = None, steps: int | None = None,
                     write: bool = True, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Metrics of the trainer's model against ground truth. With ``write``, ``eval.json``,
    ``samples.pt``, ``ground_truth.pt``, ``figures/`` and ``report.md`` go to ``out_dir`` (default:
    the run folder); nothing else is written (config, metrics and checkpoints are the trainer's)."""
    cfg = trainer.cfg
    n = num_samples or cfg.eval.num_samples
    steps = steps or cfg.eval.sample_steps
    g = torch.Generator(device=trainer.device)
    g.manual_seed(cfg.eval.seed)
    t0 = time.perf_counter()
    from .exactness import log_prob_refusal, sample_with_log_prob, summarize

    refusal = log_prob_refusal(trainer)
    with_q = None
    if refusal is None:  # the same samples as trainer.sample, with the model's log q of each
        with_q = sample_with_log_prob(trainer, n, steps, g)
        samples = with_q.x
    else:
        samples = tree_map(lambda v: v.cpu(), trainer.sample(n, steps, generator=g))
    sample_time = time.perf_counter() - t0
    energy = trainer.comp.energy
    out = Path(out_dir) if out_dir is not None else trainer.run_dir
    try:
        ref, ref2, method = ground_truth_sets(energy, n, cfg.eval.ground_truth_seed, trainer.device,
                                              out / "ground_truth.pt" if write else None)
    except NotImplementedError:
        ref = ref2 = None
        method = "unavailable"
    if ref is not None:
        metrics = compare(energy, samples, ref, ref2)
    else:
        st = statistics(energy, samples)
        metrics = {"num_samples": n, **{f"{k}-mean": float(v.mean()) for k, v in st.items()}}
    metrics.update({"sample_steps": steps, "sample_seconds": round(sample_time, 3), "step": trainer.step,
                    "energy_evals": trainer.energy_evals, "train_seconds": round(trainer.elapsed, 3),
                    "ground_truth": method})
    metrics["sampler"] = trainer.comp.generator.sampling_note(trainer.comp.path, steps)
    metrics.update(exact_reference_values(energy, cfg.energy.name))
    if with_q is not None:
        try:
            metrics["exactness"] = summarize(energy, samples, with_q.log_q, exact_log_q=with_q.exact,
                                             log_q_std=with_q.log_q_std)
        except ValueError as exc:  # e.g. every log-weight non-finite: report why, keep the metrics
            metrics["exactness"] = {"unavailable": str(exc)}
    else:
        metrics["exactness"] = {"unavailable": refusal}
    if write:
        try:
            _write_outputs(trainer, metrics, samples, ref, out)
        except OSError as exc:
            from .runfolder import describe_os_error

            raise describe_os_error(exc, f"the evaluation into {out}",
                                    "free space, or write it elsewhere with `egm evaluate RUN --out DIR`") from None
    return metrics


def exact_reference_values(energy, name: str) -> dict[str, float]:
    """``{key/exact: value}`` from :meth:`Energy.exact_values`; a failing hook costs only these values."""
    try:
        return {f"{k}/exact": float(v) for k, v in (energy.exact_values() or {}).items()}
    except Exception as exc:  # noqa: BLE001 - reported, the evaluation goes on
        print(f"egm: warning: energy {name!r} could not compute its exact values: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return {}


def _md(name: str) -> str:
    """A metric name as a Markdown table cell (``|M|-W1`` would split the row)."""
    return name.replace("|", "\\|")


def _exact_rows(m: dict) -> list[str]:
    rows = []
    for key, exact in m.items():
        if not key.endswith("/exact"):
            continue
        k = key[: -len("/exact")]
        est = m.get(k)
        if isinstance(est, (int, float)) and not isinstance(est, bool):
            rows.append(f"| {_md(k)} | {exact:.6g} | {est:.4g} | {abs(est - exact):.3g} |")
        else:
            rows.append(f"| {_md(k)} | {exact:.6g} | | |")
    if not rows:
        return []
    return ["", "## Exact reference values", "",
            "Computed by the energy itself (`Energy.exact_values`), not estimated from ground-truth samples.", "",
            "| quantity | exact | EGM | abs. difference |", "|---|---|---|---|", *rows]


def _write_outputs(trainer: "Trainer", metrics: dict, samples: State, ref: State | None, out: Path) -> None:
    from .runfolder import atomic_save, atomic_write, dumps_json

    cfg, energy = trainer.cfg, trainer.comp.energy
    out.mkdir(parents=True, exist_ok=True)
    text = dumps_json(metrics, indent=2).encode()
    atomic_write(out / "eval.json", lambda fh: fh.write(text))
    atomic_save(to_saveable(samples), out / "samples.pt")
    figs: list[str] = []
    if cfg.eval.figures:
        from . import plots

        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        figs += plots.training_curves(trainer.run_dir / "metrics.jsonl", fig_dir)
        figs += plots.quality_curves(trainer.run_dir / "metrics.jsonl", metrics, fig_dir)
        if ref is not None:
            figs += plots.histograms(statistics(energy, samples), statistics(energy, ref), fig_dir, cfg.name)
            try:
                figs += energy.figures(samples, ref, fig_dir) or []
            except Exception as exc:  # noqa: BLE001 - a figure must not cost the metrics and the report
                print(f"egm: warning: energy {cfg.energy.name!r} could not draw its figures: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
    write_report(trainer, metrics, figs, out)


def _metric_rows(m: dict) -> list[str]:
    rows = []
    for k, v in m.items():
        if k.endswith(ANNOTATIONS) or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if k in ("num_samples", "num_reference", "sample_steps", "sample_seconds", "step", "energy_evals",
                 "train_seconds"):
            continue
        f = m.get(f"{k}/floor")
        ref = m.get(f"{k}/reference")
        extra = f"{f:.4g}" if f is not None else (f"{ref:.4g} (ground truth)" if ref is not None else "")
        ratio = f"{v / f:.2f}" if f else ""
        rows.append(f"| {_md(k)} | {v:.4g} | {extra} | {ratio} |")
    return rows


def write_report(trainer: "Trainer", metrics: dict, figures: list[str], out: Path | None = None) -> None:
    cfg = trainer.cfg
    comp = trainer.comp
    lines = [
        f"# EGM run `{cfg.name}`",
        "",
        f"Trained {trainer.step} steps ({trainer.outer} outer iterations, {trainer.energy_evals:.3g} energy "
        f"evaluations) in {trainer.elapsed:.1f} s on "
        f"{trainer.device} ({platform.processor() or platform.machine()}), egm-framework {__version__}.",
        f"Target: energy `{cfg.energy.name}` {cfg.energy.params} on state space `{comp.space.name}` "
        f"({comp.space.dim} dims); path `{cfg.path.name}`, generator `{cfg.generator.name}`, network "
        f"`{cfg.network.name}`; estimator `{cfg.estimator.kind}` with K = {cfg.estimator.num_proposals} proposals"
        + (f", Δ = {cfg.estimator.delta}" if cfg.estimator.kind == "bootstrap" else "") + ".",
        "",
        f"## Evaluation ({metrics.get('num_samples')} model samples vs {metrics.get('num_reference', '-')} "
        f"ground-truth samples, {metrics.get('sampler', str(metrics['sample_steps']) + ' integration steps')}, "
        f"{metrics['sample_seconds']} s to sample)",
        "",
        f"Ground truth: {metrics['ground_truth']}. The noise floor is the same metric between two independent "
        "ground-truth sets of the same size.",
        "",
        "| metric | EGM | noise floor | ratio |",
        "|---|---|---|---|",
        *_metric_rows(metrics),
        *_exact_rows(metrics),
        "",
        "Produced by `egm train` / `egm evaluate` from `config.toml` in this folder.",
    ]
    lines += exactness_section(metrics.get("exactness"))
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f}](figures/{f})" for f in figures]
    text = ("\n".join(lines) + "\n").encode()
    from .runfolder import atomic_write

    atomic_write(Path(out or trainer.run_dir) / "report.md", lambda fh: fh.write(text))


def exactness_section(ex: dict | None) -> list[str]:
    """Report lines of the "exactness" section (importance weights of the evaluation samples)."""
    if not ex:
        return []
    lines = ["", "## Exactness", ""]
    if "unavailable" in ex:
        return lines + [f"Not available: {ex['unavailable']}."]
    from .exactness import LOW_ESS

    lines += [
        f"Importance weights w = exp(−E) / q of the {ex['num_samples']} evaluation samples (log q "
        f"{ex['log_q']}; see docs/exactness.md). ESS/n = {ex['ess_fraction']:.4g}; "
        f"log Z = {ex['log_z']:.6g}, 95% interval [{ex['log_z_lo']:.6g}, {ex['log_z_hi']:.6g}]"
        + (f" (exact {ex['log_z_exact']:.6g})" if "log_z_exact" in ex else "") + "; "
        f"KL(q‖p) ≈ {ex['kl_reverse']:.4g}, KL(p‖q) ≈ {ex['kl_forward']:.4g} nats.",
        "",
    ]
    if ex["ess_fraction"] < LOW_ESS:
        lines += [f"ESS/n is below {LOW_ESS}: the reweighted values and their error bars are not to be trusted.", ""]
    lines += ["| observable | raw mean ± se | reweighted ± se |", "|---|---|---|"]
    for k, v in ex["observables"].items():
        lines.append(f"| {k} | {v['raw']:.5g} ± {v['raw_se']:.2g} | "
                     f"{v['reweighted']:.5g} ± {v['reweighted_se']:.2g} |")
    lines += ["", "Recompute with more samples: `egm estimate RUN_DIR -n N` (writes estimate.json)."]
    return lines
