"""Train and evaluate several shipped configs (in parallel) and tabulate their metrics.

    python benchmarks/train_all.py configs/ising10_*.toml --device cuda --max-seconds 300 --jobs 6 \\
        --out runs/bench [--set eval.num_samples=2000 ...]

Each config runs as `python -m egm_framework.cli train CONFIG --out OUT/NAME` with
train.max_seconds (the cosine schedule then ends when the time is up), train.device and any --set
overrides, one thread per process. When all are done, OUT/results.md holds one row per run with the
steps it trained, its training time, and each metric next to its noise floor (two independent
ground-truth sets of the evaluation size); OUT/results.json holds everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

KEY_METRICS = ["E-W1", "E-W2", "M-W1", "M-W2", "|M|-W1", "x-W2", "mode_coverage", "mode_weight_tv",
               "modes_found", "mode_weight_error", "distance_w1", "label_consistency", "type1_fraction_error"]


def run_all(configs: list[str], out: Path, device: str, max_seconds: float | None, jobs: int,
            overrides: list[str], extra_args: list[str] = ()) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    pending = list(configs)
    running: list[tuple[str, subprocess.Popen, float]] = []
    finished: list[dict] = []
    while pending or running:
        while pending and len(running) < jobs:
            cfg = pending.pop(0)
            name = Path(cfg).stem
            cmd = [sys.executable, "-m", "egm_framework.cli", "train", cfg, "--out", str(out / name),
                   "--set", f'train.device="{device}"', "--set", "train.progress=false"]
            if max_seconds:
                cmd += ["--set", f"train.max_seconds={max_seconds}"]
            for o in overrides:
                cmd += ["--set", o]
            cmd += list(extra_args)
            log = open(out / f"{name}.log", "w")
            running.append((cfg, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                            time.perf_counter()))
            print(f"started {name}", flush=True)
        time.sleep(1.0)
        for item in list(running):
            cfg, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            name = Path(cfg).stem
            rec = {"config": cfg, "name": name, "exit": proc.returncode, "wall_seconds": round(time.perf_counter() - t0, 1)}
            ev = out / name / "eval.json"
            if ev.exists():
                rec["metrics"] = json.loads(ev.read_text())
            print(f"finished {name}: exit {proc.returncode} in {rec['wall_seconds']} s", flush=True)
            finished.append(rec)
    return finished


def table(results: list[dict]) -> str:
    lines = ["| run | steps | train s | metrics (value / noise floor) |", "|---|---|---|---|"]
    for rec in sorted(results, key=lambda r: r["name"]):
        m = rec.get("metrics")
        if not m:
            lines.append(f"| {rec['name']} | - | - | failed (exit {rec['exit']}, see {rec['name']}.log) |")
            continue
        parts = []
        for k in KEY_METRICS:
            if k in m:
                f = m.get(f"{k}/floor")
                parts.append(f"{k} {m[k]:.3g}" + (f" / {f:.3g}" if f is not None else ""))
        train_s = rec.get("train_seconds", "-")
        lines.append(f"| {rec['name']} | {m.get('step', '-')} | {train_s} | {'; '.join(parts)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)
    out = Path(args.out)
    results = run_all(args.configs, out, args.device, args.max_seconds, args.jobs, args.overrides)
    for rec in results:
        metrics_file = out / rec["name"] / "metrics.jsonl"
        if metrics_file.exists():
            times = [json.loads(x).get("time") for x in metrics_file.read_text().splitlines() if '"loss"' in x]
            rec["train_seconds"] = round(max([t for t in times if t is not None] or [0]), 1)
    previous = out / "results.json"
    if previous.exists():  # a rerun of some configs replaces their rows and keeps the others
        names = {r["name"] for r in results}
        results = [r for r in json.loads(previous.read_text()) if r["name"] not in names] + results
    previous.write_text(json.dumps(results, indent=2))
    cmd = "python benchmarks/train_all.py " + " ".join(argv if argv is not None else sys.argv[1:])
    commands = out / "commands.txt"
    with open(commands, "a") as fh:
        fh.write(cmd + "\n")
    md = "".join(f"Command: `{c}`\n" for c in commands.read_text().splitlines()) + "\n" + table(results) + "\n"
    (out / "results.md").write_text(md)
    print(md)
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
