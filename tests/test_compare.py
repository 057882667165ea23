"""`egm compare` through the real CLI, the trainer's energy-evaluation counter, time-to-quality
records in every run, and train.threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from egm_framework.config import config_from_dict, load_config_dict
from egm_framework.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

#: the embedded demo config shrunk to a tiny Ising 3×3 run
TINY_SET = ["energy.L=3", "energy.beta=0.3", 'network={name="mlp",hidden=16,layers=2}', "estimator.num_proposals=16",
            "train.batch_size=16", "train.outer_iterations=2", "train.inner_iterations=3", "train.buffer_size=64",
            "train.buffer_refresh=32", "train.log_every=2", "train.progress=false", 'train.device="cpu"',
            "train.threads=1", "eval.num_samples=64",
            # the budgets below count B·K true energies per step; conditional targets add one more pass
            "estimator.conditional_targets=false"]


def tiny_dict() -> dict:
    from egm_framework.cli import demo_config_path
    from egm_framework.config import apply_overrides

    return apply_overrides(load_config_dict(demo_config_path()), list(TINY_SET))


def egm(*args, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "egm_framework.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture()
def cfg_path(tmp_path: Path) -> Path:
    from egm_framework.config import to_toml

    p = tmp_path / "tiny.toml"
    p.write_text(to_toml(tiny_dict()))
    return p


def test_compare_cli_writes_table_figure_and_matched_curves(cfg_path, tmp_path, capsys):
    out = tmp_path / "cmp"
    budget = 16 * 16 * 40  # 40 EGM steps of B·K = 256 evaluations
    res = egm("compare", str(cfg_path), "--out", str(out), "--budget-energy-evals", str(budget), "--points", "4")
    assert res.returncode == 0, res.stderr
    r = json.loads((out / "compare.json").read_text())
    assert (out / "compare.png").stat().st_size > 1000 and "| EGM |" in (out / "compare.md").read_text()
    assert r["budget_energy_evals"] == budget and r["egm"]["steps"] == 40  # plain step = B·K exactly
    assert [b["name"] for b in r["baselines"]] == ["gibbs", "swendsen_wang"]  # metropolis: fallback only
    assert "metropolis" in r["skipped"] and "mala" in r["skipped"]
    egm_curve = r["egm"]["curve"]
    assert egm_curve[-1]["energy_evals"] == budget and all(p["num_samples"] == 16 for p in egm_curve)
    floor = egm_curve[0]["E-W1/floor"]
    for b in r["baselines"]:
        c = b["curve"]
        assert c[-1]["energy_evals"] >= budget and c[-2]["energy_evals"] < budget  # stopped at the budget
        assert all(p["E-W1/floor"] == floor for p in c)  # the same ground truth for everyone
        evals = [p["energy_evals"] for p in c]
        assert evals == sorted(evals) and all(e % (16 * 2 * 9) == 0 for e in evals)  # whole sweeps of C·q·L²
    # the EGM half is an ordinary run folder with time-to-quality records
    recs = [json.loads(line) for line in (out / "egm" / "metrics.jsonl").read_text().splitlines()]
    evals = [x["eval"] for x in recs if "eval" in x]
    assert len(evals) == len(egm_curve) and all("energy_evals" in e and "train_seconds" in e for e in evals)
    # the results page gets a row and a figure per comparison, inside its own markers
    import importlib.util

    spec = importlib.util.spec_from_file_location("collect_compare", ROOT / "benchmarks" / "collect_compare.py")
    cc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cc)
    page = tmp_path / "results.md"
    page.write_text("# Results\n\nintro\n\n## Exactness (issue 9)\n\nkept\n")
    assert cc.main([str(tmp_path), "--results", str(page), "--figures", str(tmp_path / "figs")]) == 0
    text = page.read_text()
    assert text.index(cc.BEGIN) < text.index("## Exactness (issue 9)") and "kept" in text
    row = next(line for line in text.splitlines() if line.startswith("| cmp |"))
    assert "| gibbs |" in row or "| swendsen_wang |" in row
    assert (tmp_path / "figs" / "compare-cmp.png").exists()
    assert cc.main([str(tmp_path), "--results", str(page), "--figures", str(tmp_path / "figs")]) == 0
    assert page.read_text().count(cc.BEGIN) == 1  # replaced, not appended
    # a second run into the same folder is refused; bad input is a clean one-line error before any training
    from egm_framework.cli import main

    cases = [((str(out), "--budget-energy-evals", "100"), "already holds"),
             ((str(tmp_path / "x"), "--budget-energy-evals", "0"), "--budget-energy-evals"),
             ((str(tmp_path / "y"), "--baselines", "gibbz"), "did you mean 'gibbs'"),
             ((str(tmp_path / "z"), "--baselines", "mala"), "euclidean")]
    for (o, *rest), msg in cases:
        assert main(["compare", str(cfg_path), "--out", o, *rest]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert o == str(out) or not Path(o).exists()


def test_trainer_counts_energy_evaluations_and_records_them_with_each_evaluation(tmp_path):
    from egm_framework.trainer import Trainer

    data = tiny_dict()
    data["train"].update(eval_every=1, eval_samples=32)
    tr = Trainer(config_from_dict(data), tmp_path / "run")
    metrics = tr.fit()
    assert tr.energy_evals == 2 * 3 * 16 * 16  # steps · B · K, nothing else
    assert metrics["energy_evals"] == tr.energy_evals and metrics["train_seconds"] > 0
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ev = [r["eval"] for r in recs if "eval" in r]
    assert [e["energy_evals"] for e in ev] == [3 * 16 * 16]  # after outer iteration 1 (the last is the final)
    assert (tmp_path / "run" / "figures" / "quality.png").exists()
    assert "quality.png" in (tmp_path / "run" / "report.md").read_text()
    resumed = Trainer.resume(tmp_path / "run")
    assert resumed.energy_evals == tr.energy_evals  # kept in the checkpoint


def test_train_threads_setting(tmp_path):
    from egm_framework.trainer import Trainer, resolve_threads

    assert resolve_threads(3) == 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= resolve_threads(None) <= max(1, cores // 2)
    before = torch.get_num_threads()
    try:
        data = tiny_dict()
        data["train"]["threads"] = 2
        Trainer(config_from_dict(data), tmp_path / "r")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    data["train"]["threads"] = 0
    with pytest.raises(ConfigError, match="train.threads"):
        config_from_dict(data)


def test_shipped_configs_parse_with_threads_default():
    root = Path(__file__).resolve().parents[1]
    for p in sorted((root / "configs").glob("*.toml")):
        assert config_from_dict(load_config_dict(p)).train.threads is None


def test_key_metric_prefers_task_metrics_then_observables():
    from egm_framework.plots import key_metric

    ising = {"E-W1/floor": 1, "E-W2/floor": 1, "M-W1/floor": 1, "M-W2/floor": 1, "|M|-W1/floor": 1}
    rbm = {"E-W1/floor": 1, "v0-W1/floor": 1, "modes_found/reference": 6, "w(0,5)/floor": 0.1, "mode_tv/floor": 0.1}
    assert key_metric(ising) == "M-W1" and key_metric(rbm) == "mode_tv"
    assert key_metric(ising, "|M|-W1") == "|M|-W1" and key_metric(ising, "nope") is None
    assert key_metric({"E-W1/floor": 1}) is None


def test_compare_by_wall_clock_runs_baselines_for_egms_seconds(tmp_path):
    from egm_framework.compare import CompareSettings, run_compare

    cfg = config_from_dict(tiny_dict())
    r = run_compare(cfg, tmp_path / "c", CompareSettings(budget_seconds=1.0, baselines=("metropolis",), points=3),
                    log=lambda m: None)
    assert r["matched"] == {"energy_evals": False, "seconds": True}
    assert 1.0 <= r["budget_seconds"] < 5.0 and r["egm"]["stopped"] == "used the time budget (--budget-seconds)"
    (b,) = r["baselines"]
    assert b["name"] == "metropolis" and b["curve"][-1]["seconds"] >= r["budget_seconds"]
    assert b["curve"][-1]["energy_evals"] == 16 * (1 + b["curve"][-1]["sweeps"])  # one proposal per chain and sweep


def test_egm_time_cap_stops_egm_and_baselines_match_its_energy_evals(tmp_path):
    from egm_framework.compare import CompareSettings, run_compare

    cfg = config_from_dict(tiny_dict())
    r = run_compare(cfg, tmp_path / "c", CompareSettings(budget_energy_evals=10**12, egm_max_seconds=0.5,
                                                         baselines=("metropolis",), points=3), log=lambda m: None)
    assert "time cap" in r["egm"]["stopped"] and r["matched"] == {"energy_evals": True, "seconds": False}
    assert r["budget_energy_evals"] < 10**12 and r["egm"]["curve"][-1]["seconds"] >= 0.5
    (b,) = r["baselines"]
    assert b["curve"][-1]["energy_evals"] >= r["budget_energy_evals"]
    assert "time cap 0.5 s" in (tmp_path / "c" / "compare.md").read_text()


def test_egm_time_cap_must_be_positive(tmp_path):
    from egm_framework.compare import CompareSettings, run_compare

    with pytest.raises(ConfigError, match="--egm-max-seconds must be > 0"):
        run_compare(config_from_dict(tiny_dict()), tmp_path / "c", CompareSettings(egm_max_seconds=0.0))
