"""Does any shipped bootstrapped config diverge? Trains every configs/*_boot.toml for a few hundred
steps with CPU-sized overrides (no evaluation) and tabulates the energy network's loss over the run:
first, largest and last logged value, whether every value is finite, and the largest loss of the
last quarter relative to the first logged value.

    python benchmarks/boot_stability.py --steps 300 --jobs 2 --out runs/boot_stability [CONFIG ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from train_all import run_all

ROOT = Path(__file__).resolve().parents[1]
CPU = ["train.batch_size=64", "estimator.num_proposals=128", "train.buffer_refresh=500",
       "estimator.energy_ema_decay=0.99", "train.log_every=10"]
#: the GPU-sized Ising lattice_conv is 64 × 6; the CPU results use 32 × 4
SMALLER = {"ising10": ["network.channels=32", "network.layers=4"]}


def summarize(run: Path) -> dict:
    recs = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
    recs = [r for r in recs if "loss" in r]  # not the buffer's notes
    el = [r["energy_loss"] for r in recs if "energy_loss" in r]
    if not el:
        return {"steps": 0}
    tail = el[-max(1, len(el) // 4):]
    return {"steps": recs[-1]["step"], "energy_loss_first": el[0], "energy_loss_max": max(el),
            "energy_loss_last": el[-1], "all_finite": all(math.isfinite(v) for v in el),
            "last_quarter_max_over_first": max(tail) / el[0] if el[0] > 0 else None,
            "sampler_loss_last": recs[-1]["loss"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="*")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs/boot_stability")
    a = ap.parse_args(argv)
    configs = a.configs or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*_boot.toml"))
    inner = 100
    sets = CPU + [f"train.outer_iterations={max(1, a.steps // inner)}", f"train.inner_iterations={inner}"]
    rows = []
    for prefix, more in list(SMALLER.items()) + [(None, [])]:
        group = [c for c in configs if (Path(c).stem.startswith(prefix) if prefix else
                                        not any(Path(c).stem.startswith(k) for k in SMALLER))]
        if group:
            rows += run_all(group, a.out, "cpu", None, a.jobs, sets + more, extra_args=["--no-eval"])
    rows = [{"config": r["name"], "exit": r["exit"], "wall_s": r["wall_seconds"], **summarize(a.out / r["name"])}
            for r in rows]
    cmd_line = "python benchmarks/boot_stability.py " + " ".join(argv if argv is not None else sys.argv[1:])
    f = lambda x: "-" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))  # noqa: E731
    lines = [f"Command: `{cmd_line}`", "",
             "| config | exit | steps | energy loss first | max | last | all finite | last-quarter max / first |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["config"]):
        lines.append(f"| {r['config']} | {r['exit']} | {r.get('steps')} | {f(r.get('energy_loss_first'))} | "
                     f"{f(r.get('energy_loss_max'))} | {f(r.get('energy_loss_last'))} | {r.get('all_finite')} | "
                     f"{f(r.get('last_quarter_max_over_first'))} |")
    md = "\n".join(lines) + "\n"
    (a.out / "results.md").write_text(md)
    (a.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(md)
    return 0 if all(r["exit"] == 0 and r.get("all_finite") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
