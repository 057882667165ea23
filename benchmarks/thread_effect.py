"""Seconds per training step of the demo config (Ising 5×5, K = 256) with train.threads = 1 and 2,
each in its own process, alternating, to show thread oversubscription on a busy machine.

    python benchmarks/thread_effect.py [--steps 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, sys, time, torch
from egm_framework.cli import demo_config_path
from egm_framework.config import load_config
from egm_framework.trainer import Trainer
import tempfile
n, steps = int(sys.argv[1]), int(sys.argv[2])
cfg = load_config(demo_config_path(), ["train.progress=false", f"train.threads={n}"])
tr = Trainer(cfg, tempfile.mkdtemp(prefix="egm-threads-"))
tr.refill_buffer(); tr.train_step()
t = time.perf_counter()
for _ in range(steps): tr.train_step()
print(json.dumps({"threads": torch.get_num_threads(), "s_per_step": (time.perf_counter() - t) / steps}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for _ in range(a.repeats):
        for n in (1, 2):
            env = dict(os.environ, OMP_NUM_THREADS=str(n))
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(a.steps)], env=env, capture_output=True,
                                 text=True, check=True).stdout
            print(json.dumps(json.loads(out.strip().splitlines()[-1])))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
