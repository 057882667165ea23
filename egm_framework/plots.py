"""Figures: observables against ground truth, loss and ESS curves. Matplotlib with the Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histograms(stats_model: dict, stats_ref: dict, out_dir: Path, title: str = "") -> list[str]:
    """One panel per statistic (energy, magnetization, ...): model vs ground truth."""
    plt = _plt()
    keys = list(stats_model)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        a_all, b_all = np.asarray(stats_model[k]), np.asarray(stats_ref[k])
        a, b = a_all[np.isfinite(a_all)], b_all[np.isfinite(b_all)]  # a diverged sample has E = inf
        if a.size < a_all.size:
            ax.set_title(f"{a_all.size - a.size} non-finite sampler values not shown", fontsize=8)
        finite = np.concatenate([a, b])
        lo, hi = (np.min(finite), np.max(finite)) if finite.size else (0, 1)
        uniq = np.unique(finite)
        if uniq.size <= 60:  # discrete levels (lattice energies, magnetization): one bar per level
            step = np.min(np.diff(uniq)) if uniq.size > 1 else 1.0
            bins = np.append(uniq - step / 2, uniq[-1] + step / 2) if uniq.size else 10
        else:
            bins = np.linspace(lo, hi, 50)
        if b.size:
            ax.hist(b, bins=bins, density=True, alpha=0.5, label="ground truth", color="tab:gray")
        if a.size:
            ax.hist(a, bins=bins, density=True, histtype="step", lw=1.6, label="EGM sampler", color="tab:blue")
        ax.set_xlabel(k)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    name = "histograms.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return [name]


def _loss_scale(ax, values) -> None:
    """Log scale for positive losses, linear otherwise; the y ticks always carry labels (a symlog axis
    whose range holds no power of ten had none)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size and (v > 0).all():
        ax.set_yscale("log")
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        if v.max() / v.min() < 10:  # less than a decade: label plain numbers at every minor step
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
            fmt = ScalarFormatter()
            fmt.set_scientific(True)
            ax.yaxis.set_major_formatter(fmt)
            ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("loss")


def training_curves(metrics_file: Path, out_dir: Path) -> list[str]:
    """Loss (and energy-network loss) per logged step; ESS over training and by time bin."""
    if not metrics_file.exists():
        return []
    from .runfolder import read_jsonl

    recs, _ = read_jsonl(metrics_file)  # a line cut by a kill or garbage is skipped
    recs = [r for r in recs if "loss" in r]
    if not recs:
        return []
    plt = _plt()
    steps = [r["step"] for r in recs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(steps, [r["loss"] for r in recs], label="generator loss")
    if "energy_loss" in recs[0]:
        axes[0].plot(steps, [r["energy_loss"] for r in recs], label="energy-net loss")
    _loss_scale(axes[0], [r["loss"] for r in recs] + [r["energy_loss"] for r in recs if "energy_loss" in r])
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, [r["ess"] for r in recs])
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("ESS / K")
    axes[1].set_yscale("log")
    bins = np.array([[np.nan if v is None else v for v in r["ess_by_time"]] for r in recs], dtype=float)
    centers = (np.arange(bins.shape[1]) + 0.5) / bins.shape[1]
    for frac, color in ((0.1, "tab:orange"), (0.5, "tab:green"), (1.0, "tab:blue")):
        i = min(len(recs) - 1, int(frac * (len(recs) - 1)))
        axes[2].plot(centers, bins[i], marker="o", color=color, label=f"step {recs[i]['step']}")
    axes[2].set_xlabel("t (relative position in the training range)")
    axes[2].set_ylabel("ESS / K")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    name = "training.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return [name]


def key_metric(metrics: dict, preferred: str | None = None) -> str | None:
    """The task's headline metric besides E-W1: ``preferred`` if it has a noise floor; else the first
    task-specific metric with a floor (the energy's ``extra_metrics``, e.g. a mode-weight error; an
    aggregate before per-mode entries), else
    the first observable's W1 (e.g. M-W1 for Ising)."""
    if preferred:
        return preferred if f"{preferred}/floor" in metrics else None
    floored = [k[: -len("/floor")] for k in metrics if k.endswith("/floor")]
    extra = [m for m in floored if not m.endswith(("-W1", "-W2"))]
    extra = [m for m in extra if "(" not in m] or extra  # an aggregate before per-mode entries like "w(0,5)"
    obs = [m for m in floored if m.endswith("-W1") and not m.startswith("E-")]
    return (extra or obs or [None])[0]


def quality_figure(curves: dict[str, list[dict]], metric_names: list[str], floors: dict[str, float], path: Path,
                   title: str = "", dpi: int = 90) -> str:
    """Metric / noise floor against cumulative energy evaluations (left) and seconds (right), log–log,
    one line per method; the floor (1) and 2× floor are drawn. A point is a dict with ``energy_evals``,
    ``seconds`` and the metric values."""
    plt = _plt()
    rows = [m for m in metric_names if floors.get(m)]
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.3 * len(rows)), squeeze=False)
    for r, m in enumerate(rows):
        for c, (xkey, xlabel) in enumerate((("energy_evals", "energy evaluations"), ("seconds", "seconds"))):
            ax = axes[r][c]
            for label, pts in curves.items():
                pts = [p for p in pts if p.get(xkey, 0) > 0 and m in p and np.isfinite(p[m])]
                if pts:
                    ax.plot([p[xkey] for p in pts], [max(p[m] / floors[m], 1e-3) for p in pts], marker="o", ms=3,
                            label=label)
            ax.axhline(1.0, color="k", lw=1, label="noise floor")
            ax.axhline(2.0, color="k", lw=1, ls="--", label="2× floor")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{m} / floor" + (f" (floor {floors[m]:.3g})" if floors[m] != 1.0 else ""))
            ax.grid(True, which="both", alpha=0.2)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path.name


def quality_curves(metrics_file: Path, final: dict | None, out_dir: Path) -> list[str]:
    """Time-to-quality of one run: its periodic evaluations (``train.eval_every``) and the final one,
    metric / floor against energy evaluations and against training seconds."""
    recs = []
    if metrics_file.exists():
        from .runfolder import read_jsonl

        recs, _ = read_jsonl(metrics_file)  # a line cut by a kill or garbage is skipped
    pts = [r["eval"] for r in recs if isinstance(r.get("eval"), dict)] + ([final] if final else [])
    pts = [dict(p, seconds=p.get("train_seconds", 0)) for p in pts if "energy_evals" in p]
    if not pts:
        return []
    last = pts[-1]
    names = [m for m in ("E-W1", key_metric(last)) if m]
    # each evaluation has its own floor (its sample size): plot every point against its own floor
    norm = [{**p, **{m: p[m] / p[f"{m}/floor"] for m in names if p.get(f"{m}/floor")}} for p in pts]
    return [quality_figure({"EGM": norm}, names, {m: 1.0 for m in names}, out_dir / "quality.png",
                           "time to quality (metric / its noise floor)")]
