"""`egm components --params` / `--json`: each component's accepted parameters, read from its factory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from egm_framework.cli import main
from egm_framework.registry import factory_params


def test_json_lists_parameters_with_defaults_through_the_real_entry_point():
    proc = subprocess.run([sys.executable, "-m", "egm_framework.cli", "components", "--json"], capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    comps = {(c["kind"], c["name"]): c for c in json.loads(proc.stdout)}
    mlp = {p["name"]: p for p in comps[("network", "mlp")]["params"]}
    assert mlp["hidden"] == {"name": "hidden", "required": False, "default": 128}
    assert "space" not in mlp and "output_shapes" not in mlp  # context, not user parameters
    ising = {p["name"]: p for p in comps[("energy", "ising")]["params"]}
    assert ising["L"]["required"] and ising["J"]["default"] == 1.0
    masked = [p["name"] for p in comps[("path", "masked")]["params"]]
    assert masked == ["schedule"]  # `space` is context, `registry` is injected
    assert comps[("schedule", "poly")]["params"] == [{"name": "power", "required": False, "default": 2.0}]


def test_text_listing_with_params(capsys):
    assert main(["components", "schedule", "--params"]) == 0
    out = capsys.readouterr().out.splitlines()
    i = next(k for k, line in enumerate(out) if " poly " in line)
    assert out[i + 1].split() == ["params:", "power=2.0"]
    j = next(k for k, line in enumerate(out) if line.split()[1:2] == ["linear"])
    assert out[j + 1].split() == ["params:", "(none)"]


def test_factory_params_of_odd_signatures():
    def f(space, output_shapes, *args, registry=None, hidden: int = 3, **extra):
        pass

    assert factory_params(f, 2) == [{"name": "hidden", "required": False, "default": 3},
                                    {"name": "**extra", "required": False, "default": None}]
    assert factory_params(lambda x=object(): x)[0]["default"].startswith("<object object")
