"""How wide are a GMM-25 sampler's modes? Distance of each sample to its nearest mode centre, against
the exact value (unit Gaussians: Rayleigh, median 1.18, 1.1 % beyond 3).

    python benchmarks/gmm25_mode_widths.py runs/hard/gmm25_flow_velocity runs/hard/gmm25_flow_endpoint

Draws 2,000 samples per run with `egm sample` (1,000 Euler steps, seed 0) into a temporary folder;
the run folders are only read.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def main(runs: list[str]) -> int:
    g = torch.arange(-10, 11, 5.0)
    mu = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    exact = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0)).norm(dim=1).numpy()
    print("| run | median | q90 | q99 | share beyond 3 |\n|---|---|---|---|---|")
    print(f"| exact | {np.median(exact):.2f} | {np.quantile(exact, 0.9):.2f} | {np.quantile(exact, 0.99):.2f} | "
          f"{(exact > 3).mean():.3f} |")
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(runs):
            out = Path(tmp) / f"s{i}.pt"  # egm sample never overwrites a file
            subprocess.run([sys.executable, "-m", "egm_framework.cli", "sample", run, "-n", "2000", "-o", str(out),
                            "--steps", "1000", "--seed", "0"], check=True, capture_output=True)
            x = torch.load(out, weights_only=True)["x"].float()
            d = torch.cdist(x, mu).min(1).values.numpy()
            print(f"| {Path(run).name} | {np.median(d):.2f} | {np.quantile(d, 0.9):.2f} | {np.quantile(d, 0.99):.2f} | "
                  f"{(d > 3).mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
