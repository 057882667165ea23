"""Acceptance of issue 12: a third party ships schedules, a path and a network from the docs alone.

``tests/thirdparty`` is a package written against docs/plugins/writing-a-plugin.md. It is installed
by this test into a temporary folder (never into the environment) and found through the entry-point
group only. It imports the core and no plugin module; it adds a discrete schedule κ_t = t², a
continuous cosine schedule, a discrete path used by the `jump` generator through the documented
`MixturePath` protocol, and a network. Each passes `check_components` and trains a few steps
through `egm train` by name."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from egm_framework.errors import ConfigError
from egm_framework.plugins import default_plugin_manager
from egm_framework.registry import Registry
from egm_framework.testing import check_components

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: tests/ is not on sys.path
from pip_target import clean_env, egm_cli, on_sys_path, pip_install_to  # noqa: E402

PACKAGE = Path(__file__).resolve().parent / "thirdparty"
FIRST_PARTY_MODULES = ("egm_discrete", "egm_continuous", "egm_mixed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    folder = tmp_path_factory.mktemp("thirdparty") / "site"
    pip_install_to(PACKAGE, folder)
    return folder


@pytest.fixture(scope="module")
def registry(target):
    with on_sys_path(target, "egm_thirdparty"):
        yield Registry(default_plugin_manager({}))


def test_found_through_the_entry_point_group(registry):
    for kind, name in (("schedule", "tp_square"), ("schedule", "tp_cosine"), ("path", "tp_flip"),
                       ("network", "tp_net")):
        info = registry.get(kind, name)
        assert (info.plugin, info.distribution) == ("thirdparty", "egm-thirdparty-test"), info


def test_the_package_imports_no_plugin_module(target):
    code = ("import sys, egm_thirdparty.plugin, egm_thirdparty.path, egm_thirdparty.schedules, egm_thirdparty.network;"
            f"print([m for m in sys.modules if m.split('.')[0] in {FIRST_PARTY_MODULES!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(target),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_square_schedule_in_the_masked_path(registry):
    path = registry.create("path", "masked", registry.create("state_space", "categorical", shape=[4], vocab=2),
                           schedule="tp_square")
    t = torch.tensor([0.0, 0.3, 0.5, 1.0])
    assert torch.allclose(path.kappa(t), t * t) and torch.allclose(path.kappa_dot(t), 2 * t)
    assert torch.allclose(path.kappa_inverse(t * t), t)
    check_components(registry, energy="ising", energy_params={"L": 3, "beta": 0.3}, path="masked",
                     path_params={"schedule": "tp_square"}, generator="jump", network="tp_net")


def test_new_discrete_path_reuses_jump(registry):
    check_components(registry, energy="ising", energy_params={"L": 3, "beta": 0.3}, path="tp_flip",
                     generator="jump", network="tp_net")
    # and with a core schedule given as a table
    check_components(registry, energy="ising", energy_params={"L": 3, "beta": 0.3}, path="tp_flip",
                     path_params={"schedule": {"name": "poly", "power": 3}}, generator="jump", network="mlp")


def test_cosine_schedule_in_the_affine_path(registry):
    space = registry.create("state_space", "euclidean", dim=2)
    path = registry.create("path", "affine", space, schedule="tp_cosine")
    t, r = torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0.3, 1.0, 0.95])
    a, _, v, _ = path.coefficients(t, r)
    alpha = lambda s: 1 - torch.cos(0.5 * torch.pi * s)  # noqa: E731
    sigma = lambda s: torch.cos(0.5 * torch.pi * s)  # noqa: E731
    assert torch.allclose(a, alpha(t) / alpha(r))
    assert torch.allclose(v, sigma(t) ** 2 - (alpha(t) / alpha(r)) ** 2 * sigma(r) ** 2, atol=1e-6)
    check_components(registry, energy="gaussian", energy_params={"dim": 2}, path="affine",
                     path_params={"schedule": "tp_cosine"}, generator="flow", network="tp_net")
    check_components(registry, energy="gaussian", energy_params={"dim": 2}, path="affine",
                     path_params={"schedule": "tp_cosine"}, generator="diffusion", network="tp_net")


def test_schedule_of_the_wrong_family_is_refused(registry):
    space = registry.create("state_space", "categorical", shape=[4], vocab=2)
    with pytest.raises(ConfigError, match=r"schedule 'tp_cosine' lacks kappa, kappa_dot, kappa_inverse"):
        registry.create("path", "masked", space, schedule="tp_cosine")


TINY = ["--set", "train.outer_iterations=1", "--set", "train.inner_iterations=3", "--set", "train.batch_size=8",
        "--set", "train.buffer_size=16", "--set", "train.buffer_refresh=8", "--set", "train.buffer_sample_steps=4",
        "--set", "estimator.num_proposals=8", "--set", "train.progress=false", "--set", "train.device=\"cpu\"",
        "--no-eval"]

CONFIGS = {
    "square": ('[energy]\nname = "ising"\nL = 3\nbeta = 0.3\n[path]\nname = "masked"\nschedule = "tp_square"\n'
               '[generator]\nname = "jump"\n[network]\nname = "tp_net"\nhidden = 16\n'),
    "flip": ('[energy]\nname = "ising"\nL = 3\nbeta = 0.3\n[path]\nname = "tp_flip"\n'
             '[generator]\nname = "jump"\n[network]\nname = "tp_net"\n'),
    "cosine": ('[energy]\nname = "gaussian"\ndim = 2\n[path]\nname = "affine"\nschedule = {name = "tp_cosine"}\n'
               '[generator]\nname = "flow"\n[network]\nname = "tp_net"\n'),
}


def test_trains_through_egm_train_by_name(target, tmp_path):
    """``egm train`` for each config; one fresh process runs the CLI's ``main`` for all three (one torch
    import instead of three), the first through the installed ``egm`` script itself."""
    runs = []
    for which in sorted(CONFIGS):
        cfg = tmp_path / f"{which}.toml"
        cfg.write_text(f'name = "{which}"\n' + CONFIGS[which])
        runs.append(["train", str(cfg), "--out", str(tmp_path / which), *TINY])
    proc = egm_cli(*runs[0], target=target)
    assert proc.returncode == 0, proc.stderr
    code = f"import sys; from egm_framework.cli import main; sys.exit(max(main(a) for a in {runs[1:]!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(target),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    for which in CONFIGS:
        run = tmp_path / which
        steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps[-1]["step"] == 3 and all(torch.isfinite(torch.tensor(s["loss"])) for s in steps), which
        assert (run / "checkpoints" / "last.pt").exists()
        # the run records where each component came from ...
        prov = json.loads((run / "components.json").read_text())
        assert prov["network"] == {"kind": "network", "name": "tp_net", "plugin": "thirdparty",
                                   "distribution": "egm-thirdparty-test", "version": "0.2.0"}
    assert json.loads((tmp_path / "square" / "components.json").read_text())["path.schedule"]["name"] == "tp_square"
    # ... and config.toml holds the resolved parameters, defaults included
    cfg = tomllib.loads((tmp_path / "flip" / "config.toml").read_text())
    assert cfg["path"] == {"name": "tp_flip", "schedule": "tp_square"} and cfg["network"] == {"name": "tp_net",
                                                                                               "hidden": 32}
    assert cfg["generator"] == {"name": "jump", "loss": "ce", "project_target": True, "sampler": "auto"}
    # without the package, reading the run names the distribution to install
    proc = egm_cli("sample", str(tmp_path / "flip"), "-n", "2", "-o", str(tmp_path / "x.pt"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'tp_flip' came from plugin 'thirdparty' of the distribution 'egm-thirdparty-test' 0.2.0" in proc.stderr
    assert "pip install egm-thirdparty-test==0.2.0" in proc.stderr and "egm-discrete" not in proc.stderr
