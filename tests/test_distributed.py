"""Data-parallel training with the gloo backend on CPU, 2 processes spawned here (docs/scaling.md).

* 2 ranks take the same steps as 1 process with the same shards (loss and energy-loss trajectories
  and final parameters agree to float tolerance), every checkpoint is written once, by rank 0, and
  the 2-rank run resumes on 1 rank exactly where the 1-process run goes on;
* with train.parallel = "proposals" (each row's K proposals split over the ranks, statistics
  combined by all-reduce) 2 ranks equal 1 process with the same proposal streams;
* a SIGKILL of one rank under the real `torchrun -m egm_framework.cli train` stops the job with a clear
  message from the surviving rank, and the run resumes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from egm_framework.distributed import shard_seed, shard_sizes

CFG = """
name = "dp"
[energy]
name = "ising"
L = 3
beta = 0.3
[path]
name = "masked"
[generator]
name = "jump"
[network]
name = "mlp"
hidden = 16
layers = 2
[energy_network]
name = "mlp"
hidden = 16
layers = 2
[estimator]
kind = "bootstrap"
num_proposals = 16
[train]
batch_size = 15         # not divisible by 2: shards of 8 and 7 rows
outer_iterations = 3
inner_iterations = 4
lr = 1e-3
lr_final = 1e-3         # constant rate: stopping early and resuming does not bend the schedule
grad_clip = 1.0
buffer_size = 64
buffer_refresh = 33     # refills of 17 + 16
log_every = 1
progress = false
device = "cpu"
[eval]
num_samples = 64
"""

ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]

# Runs the CLI as one rank with torchrun's environment and records every checkpoint write of this rank.
RANK_SCRIPT = """
import sys
from pathlib import Path
import egm_framework.distributed as d
from egm_framework.runfolder import RunFolder
real = RunFolder.save_checkpoint
def counted(self, state):
    with open(Path(sys.argv[1]) / f"writes-rank{d.launched_world()[0]}.txt", "a") as fh:
        fh.write(str(self.checkpoint_path) + "\\n")
    real(self, state)
RunFolder.save_checkpoint = counted
from egm_framework.cli import main
sys.exit(main(sys.argv[2:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def egm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "egm_framework.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def spawn_ranks(n: int, log_dir: Path, *args: str, timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """n processes with the environment torchrun gives its workers, running `egm ARGS`; as under
    torchrun, the rendezvous store is hosted outside the ranks (here, by this test process)."""
    import torch.distributed as dist

    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)  # noqa: F841 - kept alive
    procs = []
    for r in range(n):
        env = dict(ENV, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True",
                   TORCHELASTIC_RESTART_COUNT="0")
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(log_dir), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        del store
    return out


def losses(run: Path) -> list[tuple[int, float, float]]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["energy_loss"]) for r in recs if "loss" in r]


def test_shards_split_the_batch_the_same_way_for_any_number_of_ranks():
    assert shard_sizes(15, 2) == [8, 7] and shard_sizes(7, 3) == [3, 2, 2] and shard_sizes(4, 4) == [1, 1, 1, 1]
    assert sum(shard_sizes(1001, 7)) == 1001
    assert shard_seed(5, 0) == 5  # shard 0 is the single-process stream
    seeds = {shard_seed(5, s) for s in range(1, 64)} | {shard_seed(6, s) for s in range(1, 64)}
    assert len(seeds) == 126 and 5 not in seeds


def test_two_ranks_follow_one_process_and_resume_on_one(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CFG)
    one, two = tmp_path / "one", tmp_path / "two"
    # 1 process, the batch split into 2 shards: the reference trajectory (12 steps)
    res = egm("train", str(cfg), "--out", str(one), "--no-eval", "--set", "train.batch_shards=2")
    assert res.returncode == 0, res.stderr
    # 2 ranks (shards by default = ranks), stopped after 2 of the 3 outer iterations ...
    ranks = spawn_ranks(2, tmp_path, "train", str(cfg), "--out", str(two), "--no-eval",
                        "--set", "train.outer_iterations=2")
    for r in ranks:
        assert r.returncode == 0, r.stderr
    assert "run folder" in ranks[0].stdout and ranks[1].stdout == ""
    assert "batch_shards = 2" in (two / "config.toml").read_text()
    # ... every checkpoint written once, by rank 0 alone
    assert (tmp_path / "writes-rank0.txt").read_text().splitlines() == [str(two / "checkpoints" / "last.pt")] * 2
    assert not (tmp_path / "writes-rank1.txt").exists()
    a, b = losses(one), losses(two)
    assert [s for s, *_ in b] == list(range(1, 9))
    for (sa, la, ea), (sb, lb, eb) in zip(a, b):
        assert sa == sb and la == pytest.approx(lb, rel=1e-4, abs=1e-6) and ea == pytest.approx(eb, rel=1e-4, abs=1e-6)
    # ... and resumed on 1 rank for the last outer iteration: the state carries no trace of the rank count
    res = egm("train", "--resume", str(two), "--no-eval", "--set", "train.outer_iterations=3")
    assert res.returncode == 0, res.stderr
    b = losses(two)
    assert [s for s, *_ in b] == [s for s, *_ in a] == list(range(1, 13))
    for (_, la, ea), (_, lb, eb) in zip(a, b):
        assert la == pytest.approx(lb, rel=1e-4, abs=1e-6) and ea == pytest.approx(eb, rel=1e-4, abs=1e-6)
    evals = lambda run: [r["energy_evals"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                         if "loss" in r]
    assert evals(one) == evals(two) and evals(one)[-1] > 0  # counted over all ranks, carried across the resume
    pa = torch.load(one / "checkpoints" / "last.pt", weights_only=True)
    pb = torch.load(two / "checkpoints" / "last.pt", weights_only=True)
    assert pa["step"] == pb["step"] == 12
    for k, v in pa["model"].items():
        torch.testing.assert_close(v, pb["model"][k], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(pa["buffer"]["data"]["x"], pb["buffer"]["data"]["x"], rtol=0, atol=0)


def test_ranks_sharing_each_rows_proposals_equal_one_process(tmp_path):
    """train.parallel = "proposals": both ranks take the whole batch and 9 + 8 of each row's K = 17
    proposals; the online-softmax statistics combine exactly, so targets, ESS and losses are the
    one-process ones with the same two proposal streams."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CFG)
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--no-eval", "--set", "train.parallel=proposals", "--set", "estimator.num_proposals=17",
              "--set", "train.outer_iterations=2"]
    res = egm("train", str(cfg), "--out", str(one), *common, "--set", "train.proposal_shards=2")
    assert res.returncode == 0, res.stderr
    ranks = spawn_ranks(2, tmp_path, "train", str(cfg), "--out", str(two), *common)
    for r in ranks:
        assert r.returncode == 0, r.stderr
    assert "proposal_shards = 2" in (two / "config.toml").read_text()
    assert not (tmp_path / "writes-rank1.txt").exists()
    recs = lambda run: [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                        if "loss" in r]
    a, b = recs(one), recs(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b):
        for k in ("loss", "energy_loss", "ess"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), (k, ra, rb)
        assert ra["energy_evals"] == rb["energy_evals"] > 0  # both ranks' evaluations counted
    pa = torch.load(one / "checkpoints" / "last.pt", weights_only=True)
    pb = torch.load(two / "checkpoints" / "last.pt", weights_only=True)
    for k, v in pa["model"].items():
        torch.testing.assert_close(v, pb["model"][k], rtol=1e-4, atol=1e-6)
    assert len(pb["proposal_rngs"]) == 2


def test_more_ranks_than_shards_is_refused(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CFG)
    ranks = spawn_ranks(2, tmp_path, "train", str(cfg), "--out", str(tmp_path / "r"), "--no-eval",
                        "--set", "train.batch_shards=1")
    for r in ranks:
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert "at most 1 rank(s)" in r.stderr and "--set train.batch_shards=2" in r.stderr


def _rank_pid(launcher: int, rank: int) -> int | None:
    try:
        kids = [int(c) for f in Path(f"/proc/{launcher}/task").glob("*/children") for c in f.read_text().split()]
    except OSError:
        return None
    for pid in kids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers through /proc (Linux)")
def test_sigkill_of_one_rank_stops_the_job_clearly_and_the_run_resumes(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CFG)
    run = tmp_path / "run"
    cmd = [*TORCHRUN, "--nproc-per-node", "2", "--master-port", str(free_port()), "-m", "egm_framework.cli",
           "train", str(cfg), "--out", str(run), "--no-eval", "--set", "train.outer_iterations=500"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    ckpt = run / "checkpoints" / "last.pt"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:  # wait for the second checkpoint, then kill rank 1 hard
            if ckpt.exists():
                try:
                    if torch.load(ckpt, weights_only=True)["outer"] >= 2:
                        break
                except Exception:  # noqa: BLE001 - a read racing the atomic rename; retried
                    pass
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint written in time")
        victim = _rank_pid(job.pid, 1)
        assert victim is not None, "rank 1's process not found"
        os.kill(victim, signal.SIGKILL)
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode != 0
    assert "egm: error: rank 0 of 2: training stopped at step" in stderr, stderr[:6000]
    assert f"--resume {run}" in stderr
    state = torch.load(ckpt, weights_only=True)  # a complete checkpoint survives
    killed_at, outer = state["step"], state["outer"]
    assert killed_at == 4 * outer and 2 <= outer < 500
    res = subprocess.run([*TORCHRUN, "--nproc-per-node", "2", "--master-port", str(free_port()), "-m",
                          "egm_framework.cli", "train", "--resume", str(run), "--no-eval",
                          "--set", f"train.outer_iterations={outer + 1}"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming {run} at step {killed_at}" in res.stderr
    assert torch.load(ckpt, weights_only=True)["step"] == killed_at + 4
    steps = [s for s, *_ in losses(run)]
    assert steps == list(range(1, killed_at + 5))  # each step logged once, in order
