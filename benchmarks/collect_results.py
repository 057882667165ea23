"""Assemble docs/results.md from benchmark outputs (run folders written by train_all.py and the JSON
of step_time.py), so every number in that page comes from a command in this repository.

    python benchmarks/collect_results.py --runs runs/cpu --step-time runs/cpu/step_time.json \\
        --command "bash benchmarks/cpu_results.sh" --out docs/results.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: metrics shown per task (when present), each with its noise floor or ground-truth value
COLUMNS = {
    "ising": ["E-W1", "E-W2", "M-W1", "|M|-W1", "E-mean"],
    "gmm25": ["mode_coverage", "mode_weight_tv", "x_w2", "E-W1"],
    "dw4": ["dist_w1", "x_w2", "E-W1", "E-W2"],
    "gb_rbm": ["modes_found", "mode_tv", "mode_weight_error_max", "hidden_tv", "off_mode_fraction", "E-W1"],
    "joint_mog": ["label_consistency", "ones_count_tv", "label_site_tv", "x_mean-W1", "E-W1"],
    "joint_dw4": ["type1_fraction_error", "n_type1_tv", "distance_w1", "E-W1"],
}


def _task(cfg_name: str) -> str:
    for t in ("joint_mog", "joint_dw4", "gb_rbm", "gmm25", "dw4", "ising"):
        if cfg_name.startswith(t):
            return t
    return cfg_name


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def cell(m: dict, k: str) -> str:
    if k not in m:
        return "-"
    if f"{k}/floor" in m:
        return f"{_fmt(m[k])} ({_fmt(m[f'{k}/floor'])})"
    if f"{k}/reference" in m:
        return f"{_fmt(m[k])} [{_fmt(m[f'{k}/reference'])}]"
    return _fmt(m[k])


def exact_ising(cfg: dict) -> str:
    try:
        from egm_discrete.ground_truth import transfer_matrix_moments
    except ImportError:  # pragma: no cover
        return ""
    e = cfg.get("energy", {})
    if e.get("name") != "ising" or e.get("L", 99) > 10:
        return ""
    mom = transfer_matrix_moments(e["L"], e["beta"], e.get("J", 1.0), e.get("h", 0.0))
    mean = mom[0] if isinstance(mom, tuple) else mom.get("mean", mom.get("E_mean"))
    return f"{float(mean):.3f}"


def group_table(folder: Path) -> list[str]:
    res_file = folder / "results.json"
    if not res_file.exists():
        return [f"(no results in {folder})"]
    results = sorted(json.loads(res_file.read_text()), key=lambda r: r["name"])
    lines: list[str] = []
    by_task: dict[str, list] = {}
    for r in results:
        by_task.setdefault(_task(r["name"]), []).append(r)
    for task, runs in by_task.items():
        cols = COLUMNS.get(task, ["E-W1", "E-W2"])
        extra = ["exact ⟨E⟩"] if task == "ising" else []
        lines.append("| run | steps | train s | " + " | ".join(cols + extra) + " |")
        lines.append("|---" * (3 + len(cols) + len(extra)) + "|")
        for r in runs:
            m = r.get("metrics")
            if not m:
                lines.append(f"| {r['name']} | failed (exit {r['exit']}) |" + " |" * (1 + len(cols) + len(extra)))
                continue
            row = [r["name"], str(m.get("step", "-")), _fmt(r.get("train_seconds"))] + [cell(m, k) for k in cols]
            if extra:
                import tomllib

                cfg = tomllib.loads((folder / r["name"] / "config.toml").read_text())
                row.append(exact_ising(cfg))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    cmd_file = folder / "commands.txt"
    if cmd_file.exists():
        for c in cmd_file.read_text().splitlines():
            lines.append(f"Produced by `{c}`.  ")
        lines.append("")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/cpu")
    ap.add_argument("--step-time", default=None)
    ap.add_argument("--command", default="bash benchmarks/cpu_results.sh")
    ap.add_argument("--out", default="docs/results.md")
    ap.add_argument("--intro", default=None, help="a Markdown file placed after the title")
    ap.add_argument("--append", action="append", default=[],
                    help="a Markdown file appended at the end (hand-assembled sections, e.g. "
                         "benchmarks/results_hard_targets.md); repeatable")
    args = ap.parse_args(argv)
    root = Path(args.runs)
    out = ["# Results", ""]
    if args.intro:
        out += [Path(args.intro).read_text().rstrip(), ""]
    # the curves section (benchmarks/collect_compare.py) is kept as it is
    prev = Path(args.out).read_text() if Path(args.out).exists() else ""
    begin, end = "<!-- compare:begin -->", "<!-- compare:end -->"
    if begin in prev and end in prev:
        out += [prev[prev.index(begin):prev.index(end) + len(end)], ""]
    if args.step_time and Path(args.step_time).exists():
        st = json.loads(Path(args.step_time).read_text())
        out += ["## Speed: one training step against its energy evaluations", "",
                f"Ising {st['L']}×{st['L']}, B = {st['B']}, K = {st['K']}, device {st['device']}, torch {st['torch']}, "
                f"{st['threads']} threads. Produced by `python benchmarks/step_time.py --steps 10 --json ...`.", "",
                "| estimator | step s | B·K energies alone, s (estimator's chunks) | same, one batch | step / energies | peak MiB above footprint |",
                "|---|---|---|---|---|---|"]
        for kind in ("snis", "bootstrap"):
            if kind in st:
                k = st[kind]
                out.append(f"| {kind} | {k['step_seconds']:.3f} | {k['energy_seconds']:.3f} | "
                           f"{k.get('energy_one_shot_seconds', float('nan')):.3f} | {k['ratio']:.2f} | {k['peak_mib']:.0f} |")
        out.append("")
    titles = {"ising10": "Ising 10×10, plain EGM", "ising10_boot": "Ising 10×10, bootstrapped EGM",
              "continuous": "Continuous: GMM-25 and DW-4, plain EGM",
              "continuous_boot": "Continuous: GMM-25 and DW-4, bootstrapped EGM",
              "mixed": "Mixed: GB-RBM, joint MoG, joint DW-4, plain EGM",
              "mixed_boot": "Mixed: GB-RBM, joint MoG, joint DW-4, bootstrapped EGM"}
    for name, title in titles.items():
        if (root / name).exists():
            out += [f"## {title}", ""] + group_table(root / name)
    for extra in args.append:
        out += [Path(extra).read_text().rstrip(), ""]
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
