"""Report details: exact reference values from the energy, Markdown-safe metric names, the sampler
description, the time-budget message, and labelled loss axes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from egm_framework import hookimpl, plots
from egm_framework.config import config_from_dict
from egm_framework.evaluation import _exact_rows, _metric_rows
from egm_framework.interfaces import Energy
from egm_framework.plugins import default_plugin_manager
from egm_framework.registry import Registry
from egm_framework.trainer import Trainer


class FieldSpins(Energy):
    """Independent spins in a field, E = −h Σ s_i: ⟨E⟩ = −n h tanh(h) exactly."""

    def __init__(self, n: int = 3, h: float = 0.7):
        self.n, self.h = n, h

    @property
    def space_spec(self):
        return ("categorical", {"shape": [self.n], "vocab": 2})

    def __call__(self, x):
        return -self.h * (2 * x - 1).sum(-1).float()

    def ground_truth(self, n, generator, device="cpu"):
        p_up = 1 / (1 + np.exp(-2 * self.h))
        return (torch.rand(n, self.n, generator=generator, device=device) < p_up).long()

    def exact_values(self):
        return {"E-mean": -self.n * self.h * float(np.tanh(self.h)), "log Z": self.n * float(np.log(2 * np.cosh(self.h)))}


class _Plugin:
    @hookimpl
    def register_energies(self, register):
        register("field_spins", FieldSpins)


TINY = {"energy": {"name": "field_spins"}, "path": "masked", "generator": "jump",
        "network": {"name": "mlp", "hidden": 8, "layers": 1},
        "estimator": {"num_proposals": 8},
        "train": {"batch_size": 8, "outer_iterations": 1, "inner_iterations": 2, "buffer_size": 16,
                  "buffer_refresh": 8, "progress": False, "device": "cpu"},
        "eval": {"num_samples": 64, "figures": False}}


@pytest.fixture
def registry():
    manager = default_plugin_manager({})
    manager.register(_Plugin(), "field")
    return Registry(manager)


def test_exact_values_reach_eval_json_and_the_report(registry, tmp_path):
    trainer = Trainer(config_from_dict(TINY), tmp_path / "run", registry=registry)
    metrics = trainer.fit()
    exact = -3 * 0.7 * np.tanh(0.7)
    assert metrics["E-mean/exact"] == pytest.approx(exact)
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["log Z/exact"] == pytest.approx(3 * np.log(2 * np.cosh(0.7)))
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Exact reference values" in report
    assert f"| E-mean | {exact:.6g} | {metrics['E-mean']:.4g} |" in report
    # the exact masked sampler uses no integration steps, and the report says so
    heading = report.split("## Evaluation", 1)[1].split("\n", 1)[0]
    assert "1000 integration steps" not in heading and "exact CTMC simulation" in heading


def test_metric_names_with_bars_keep_the_table_intact():
    rows = _metric_rows({"|M|-W1": 0.1, "|M|-W1/floor": 0.05}) + _exact_rows({"|M|-mean/exact": 0.5})
    for row in rows:
        if row.startswith("| "):
            cells = [c for c in row.replace("\\|", "").split("|")]
            assert len(cells) == 6, row  # 4 columns between the outer bars
    assert rows[0].startswith("| \\|M\\|-W1 |")


def test_time_budget_message_under_no_eval(registry, tmp_path, capsys):
    cfg = dict(TINY, train=dict(TINY["train"], max_seconds=1e-9, inner_iterations=50))
    trainer = Trainer(config_from_dict(cfg), tmp_path / "run", registry=registry)
    assert trainer.fit(evaluate_at_end=False) is None
    err = capsys.readouterr().err
    assert "train.max_seconds = 1e-09 reached" in err and "evaluating" not in err


@pytest.mark.parametrize("lo,hi", [(0.02, 0.09), (0.5, 30.0), (1e-4, 2.0)])
def test_loss_axis_has_labels(tmp_path, monkeypatch, lo, hi):
    recs = [{"step": i, "loss": float(v), "ess": 0.5, "ess_by_time": [0.5] * 10}
            for i, v in enumerate(np.geomspace(hi, lo, 20))]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    plt = plots._plt()
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    plots.training_curves(tmp_path / "m.jsonl", tmp_path)
    fig = figs[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    y0, y1 = ax.get_ylim()
    visible = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks()) if y0 <= v <= y1 and t.get_text()]
    assert len(visible) >= 2, visible
