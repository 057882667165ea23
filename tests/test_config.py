"""Config validation: key paths and allowed ranges in every message, overrides, TOML round trip."""

import tomllib

import pytest

from egm_framework.config import apply_overrides, config_from_dict, parse_override, to_toml
from egm_framework.errors import ConfigError

BASE = {"energy": {"name": "ising", "L": 3, "beta": 0.3}, "path": {"name": "masked"},
        "generator": {"name": "jump"}, "network": {"name": "mlp"}}


def cfg(**sections):
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    d.update(sections)
    return d


@pytest.mark.parametrize("section,key,value,message", [
    ("train", "lr", 0.0, "train.lr: must be in (0, inf), got 0.0"),
    ("train", "batch_size", 0, "train.batch_size: must be in [1, inf), got 0"),
    ("train", "batch_size", 2.5, "train.batch_size: must be an integer, got 2.5"),
    ("train", "grad_clip", -1.0, "train.grad_clip: must be in (0, inf), got -1.0"),
    ("train", "device", "tpu", "train.device: must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu'"),
    ("train", "max_seconds", 0, "train.max_seconds: must be in (0, inf), got 0"),
    ("estimator", "delta", 1.5, "estimator.delta: must be in (0, 1], got 1.5"),
    ("estimator", "delta", 0.0, "estimator.delta: must be in (0, 1], got 0.0"),
    ("estimator", "num_proposals", 0, "estimator.num_proposals: must be in [1, inf), got 0"),
    ("estimator", "kind", "snsi", "estimator.kind: must be one of 'snis', 'bootstrap', got 'snsi'; did you mean 'snis'?"),
    ("estimator", "energy_ema_decay", 1.0, "estimator.energy_ema_decay: must be in [0, 1), got 1.0"),
    ("estimator", "num_proposals", True, "estimator.num_proposals: must be an integer, got True"),
    ("eval", "num_samples", 1, "eval.num_samples: must be in [2, inf), got 1"),
    ("train", "lr", float("nan"), "train.lr: must be a finite number, got nan"),
])
def test_bad_values_name_the_key_and_the_range(section, key, value, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(cfg(**{section: {key: value}}))
    assert str(err.value) == message


def test_unknown_keys_sections_and_missing_sections():
    with pytest.raises(ConfigError, match=r"train.btach_size: unknown key; accepted: .*did you mean 'batch_size'"):
        config_from_dict(cfg(train={"btach_size": 3}))
    with pytest.raises(ConfigError, match=r"unknown section \[trian\].*did you mean 'train'"):
        config_from_dict(cfg(trian={}))
    d = cfg()
    del d["path"]
    with pytest.raises(ConfigError, match=r"missing section \[path\]"):
        config_from_dict(d)
    with pytest.raises(ConfigError, match=r"\[energy\] needs a `name"):
        config_from_dict(cfg(energy={"L": 3}))
    with pytest.raises(ConfigError, match=r"\[energy_network\]"):
        config_from_dict(cfg(estimator={"kind": "bootstrap"}))


def test_component_sections_keep_their_parameters_and_short_form():
    c = config_from_dict(cfg(path="masked"))
    assert c.path.name == "masked" and c.path.params == {}
    assert c.energy.params == {"L": 3, "beta": 0.3}


def test_overrides_are_toml_literals():
    assert parse_override("train.lr=3e-4") == (["train", "lr"], 3e-4)
    assert parse_override("energy.name=ising") == (["energy", "name"], "ising")  # bare word -> string
    assert parse_override('path.continuous={name="ve", sigma_max=2.0}') == (
        ["path", "continuous"], {"name": "ve", "sigma_max": 2.0})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.lr")
    d = apply_overrides(cfg(), ["train.batch_size=7", "energy.beta=0.5"])
    c = config_from_dict(d)
    assert c.train.batch_size == 7 and c.energy.params["beta"] == 0.5


def test_resolved_config_round_trips_through_toml():
    c = config_from_dict(cfg(path={"name": "product", "continuous": {"name": "ve", "sigma_max": 2.0}},
                             estimator={"kind": "bootstrap", "delta": 0.05},
                             energy_network={"name": "mlp", "hidden": 8}, train={"grad_clip": 1.0}))
    again = config_from_dict(tomllib.loads(to_toml(c.to_dict())))
    assert again == c
