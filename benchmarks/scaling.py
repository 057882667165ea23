"""Data-parallel scaling of an EGM training step: steps/s and energy evaluations/s for 1..N ranks.

Plain SNIS on Ising L×L (β = 0.4407, masked path, MLP), K proposals per training point, so one step
evaluates exactly B·K energies (B = the global batch). For each rank count the script starts
`torchrun --nproc-per-node N` on itself (workers: `--worker`), fills every rank's buffer with the same
random lattices, runs 2 warm-up steps, then times `--steps` steps between two barriers (the slowest
rank sets the time). Two figures per rank count:

* weak scaling (the one that matters): the per-rank batch is fixed (`--per-rank-batch`), the global
  batch grows with N; ideal: steps/s constant, energy evaluations/s × N;
* strong scaling: the global batch is fixed (`--global-batch`); ideal: steps/s × N.

Usage:
    python benchmarks/scaling.py                         # CPU, gloo, 1 and 2 processes
    python benchmarks/scaling.py --ranks 1 2 4 --steps 10
    python benchmarks/scaling.py --device cuda --ranks 1  # one GPU (NCCL for more than one)
Prints a Markdown table; all numbers come from one run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import torch


def _config(L: int, B: int, K: int, device: str, shards: int) -> dict:
    return {
        "name": "bench-scaling",
        "energy": {"name": "ising", "L": L, "beta": 0.4407},
        "path": {"name": "masked"}, "generator": {"name": "jump"},
        "network": {"name": "mlp", "hidden": 32, "layers": 3, "token_embedding": 8, "time_embedding": 32},
        "estimator": {"kind": "snis", "num_proposals": K},
        "train": {"batch_size": B, "buffer_size": 2000, "buffer_refresh": 2000, "progress": False,
                  "device": device, "batch_shards": shards},
    }


def worker(args) -> None:
    import torch.distributed as dist

    from egm_framework.config import config_from_dict
    from egm_framework.distributed import DataParallelTrainer, launched_world, shutdown

    torch.set_num_threads(args.threads)
    _, world, _ = launched_world()
    B = args.per_rank_batch * world if args.mode == "weak" else args.global_batch
    tr = DataParallelTrainer(config_from_dict(_config(args.L, B, args.K, args.device, world)),
                             tempfile.mkdtemp(prefix="egm-scaling-"))
    g = torch.Generator(device=tr.device).manual_seed(0)
    tr.buffer.add(torch.randint(0, 2, (2000, args.L, args.L), generator=g, device=tr.device))

    def sync():
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        if world > 1:
            dist.barrier()

    for _ in range(2):
        tr.train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        tr.train_step()
    sync()
    dt = time.perf_counter() - t0
    if tr.is_main:
        print(json.dumps({"mode": args.mode, "ranks": world, "global_batch": B, "K": args.K,
                          "steps_per_s": args.steps / dt, "energy_evals_per_s": args.steps * B * args.K / dt}))
    shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, mode: str, ranks: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-port",
           str(_free_port()), os.path.abspath(__file__), "--worker", "--mode", mode, "--steps", str(args.steps),
           "--L", str(args.L), "--K", str(args.K), "--per-rank-batch", str(args.per_rank_batch),
           "--global-batch", str(args.global_batch), "--device", args.device, "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--L", type=int, default=10)
    p.add_argument("--K", type=int, default=1000)
    p.add_argument("--per-rank-batch", type=int, default=100)
    p.add_argument("--global-batch", type=int, default=200)
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (one GPU per rank, NCCL)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (OMP_NUM_THREADS)")
    p.add_argument("--modes", nargs="+", default=["weak", "strong"], choices=["weak", "strong"])
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="weak", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"Ising {args.L}×{args.L}, plain SNIS, K = {args.K}, device {args.device}, {args.threads} thread(s) per "
          f"rank, {args.steps} timed steps; torch {torch.__version__}, {os.cpu_count()} CPU(s) visible\n")
    print("| scaling | ranks | global batch | steps/s | energy evals/s | speed-up of evals/s | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes:
        base = None
        for n in args.ranks:
            r = launch(args, mode, n)
            base = base or r
            speedup = r["energy_evals_per_s"] / base["energy_evals_per_s"]
            eff = speedup / (n / base["ranks"])
            print(f"| {mode} | {n} | {r['global_batch']} | {r['steps_per_s']:.2f} | {r['energy_evals_per_s']:.3g} | "
                  f"{speedup:.2f}× | {eff:.0%} |", flush=True)


if __name__ == "__main__":
    main()
