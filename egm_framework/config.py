"""Run configuration: TOML sections that name components by registry name, validated by attrs.

A config file looks like::

    [energy]
    name = "ising"
    L = 5
    beta = 0.2

    [path]
    name = "masked"

    [generator]
    name = "jump"

    [network]
    name = "mlp"
    hidden = 32

    [estimator]
    kind = "snis"            # or "bootstrap" (then [energy_network] names the intermediate-energy net)
    num_proposals = 1000

    [train]
    batch_size = 300
    ...

Component sections hold ``name`` plus that component's parameters (checked against its factory
when it is created). ``[estimator]``, ``[train]`` and ``[eval]`` are checked here; a bad value is
reported with its key path and the allowed range.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError, did_you_mean

COMPONENT_SECTIONS = ("energy", "path", "generator", "network", "energy_network")


# ---------------------------------------------------------------------------------- validators
def _num(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
         integer: bool = False, optional: bool = False):
    lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo}"
    hi_s = "" if hi is None else f"{hi}" + (")" if hi_open else "]")
    rng = f"{lo_s or '(-inf'}, {hi_s or 'inf)'}"

    def check(inst, attribute, value):
        where = f"{inst.SECTION}.{attribute.name}"
        if value is None and optional:
            return
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
            kind = "an integer" if integer else "a finite number"
            raise ConfigError(f"{where}: must be {kind}{' or omitted' if optional else ''}, got {value!r}")
        bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
            hi is not None and (value >= hi if hi_open else value > hi))
        if bad:
            raise ConfigError(f"{where}: must be in {rng}, got {value!r}")
    check.allowed = ("integer in " if integer else "") + rng + (" or unset" if optional else "")  # docs reference
    return check


#: seeds are 64-bit signed integers (torch.Generator.manual_seed)
MAX_SEED = 2**63 - 1
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device_name(value: Any, where: str = "--device") -> str:
    """'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; anything else is a clear error."""
    if not isinstance(value, str) or not _DEVICE_RE.match(value):
        raise ConfigError(f"{where}: must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")
    return value


def _check_name(name: Any) -> str:
    """The run name becomes runs/<name>-<time>: a plain file name, never a path."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}", name):
        raise ConfigError(f"name = {name!r}: a run name must be a plain name of letters, digits, '.', '_', '+' or "
                          "'-' (no '/', '..' or absolute path; at most 100 characters); to put the run elsewhere "
                          "use --out DIR")
    return name


def _choice(*options: str):
    def check(inst, attribute, value):
        if value not in options:
            raise ConfigError(f"{inst.SECTION}.{attribute.name}: must be one of {', '.join(map(repr, options))}, "
                              f"got {value!r}{did_you_mean(str(value), options)}")
    check.allowed = " or ".join(f'`"{o}"`' for o in options)  # docs reference
    return check


def _bool(inst, attribute, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{inst.SECTION}.{attribute.name}: must be true or false (a TOML boolean, unquoted), "
                          f"got {value!r}")


@attrs.frozen(kw_only=True)
class ComponentConfig:
    """``name`` of a registered component and its parameters."""

    name: str
    params: dict = attrs.field(factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, **self.params}


@attrs.frozen(kw_only=True)
class EstimatorConfig:
    SECTION = "estimator"
    #: "snis": proposals to t = 1 weighted by the true energy; "bootstrap": bridge proposals to
    #: r = min(t + delta, 1) weighted by a learned intermediate energy
    kind: str = attrs.field(default="snis", validator=_choice("snis", "bootstrap"))
    num_proposals: int = attrs.field(default=1000, validator=_num(1, integer=True))
    delta: float = attrs.field(default=0.01, validator=_num(0, 1, lo_open=True))
    #: bootstrapping: rows with t at or above min(this, 1 − delta) take r = 1 (the true energy) instead
    #: of a bridge to t + delta; default (unset) 1 − delta, i.e. only where t + delta reaches 1
    bootstrap_t_max: float | None = attrs.field(default=None, validator=_num(0, 1, lo_open=True, optional=True))
    #: bootstrapping: K of the rows with r = 1 alone (default: num_proposals); they cost true-energy
    #: evaluations only, the bootstrapped rows energy-network (and teacher) evaluations too
    final_num_proposals: int | None = attrs.field(default=None, validator=_num(1, integer=True, optional=True))
    #: memory budget for one chunk of proposals (MiB)
    chunk_memory_mb: float = attrs.field(default=256.0, validator=_num(0, lo_open=True))
    #: "direct": E_net regressed on −log mean exp(−E(x_1^k)) − log Z_{1|t}; "bootstrap": on the bridge
    #: proposals' own weights (no extra energy evaluations)
    energy_target: str = attrs.field(default="direct", validator=_choice("direct", "bootstrap"))
    #: share of the batch used for the energy-network target (direct target costs K energies per row)
    energy_batch_fraction: float = attrs.field(default=1.0, validator=_num(0, 1, lo_open=True))
    energy_ema_decay: float = attrs.field(default=0.999, validator=_num(0, 1, hi_open=True))
    #: fraction of training after which the EMA starts averaging (before: it copies the network)
    energy_ema_start: float = attrs.field(default=0.0, validator=_num(0, 1))
    energy_loss_weight: float = attrs.field(default=1.0, validator=_num(0, lo_open=True))
    #: learning-rate of the energy network (defaults to train.lr)
    energy_lr: float | None = attrs.field(default=None, validator=_num(0, lo_open=True, optional=True))
    #: robust energy regression (egm_framework/energy_regression.py): "huber" or "mse" on the residual
    energy_loss: str = attrs.field(default="huber", validator=_choice("huber", "mse"))
    #: Huber threshold, in units of the normalized residual (of the raw one if energy_normalize = false)
    energy_huber_delta: float = attrs.field(default=1.0, validator=_num(0, lo_open=True))
    #: rows whose |target| exceeds this are left out of the loss (a huge value such as 1e30 disables it)
    energy_target_limit: float | None = attrs.field(default=1000.0, validator=_num(0, lo_open=True, optional=True))
    #: center the target by its running median in its time bin and divide the residual by its
    #: running robust spread there (1.4826 × median absolute deviation)
    energy_normalize: bool = attrs.field(default=True, validator=_bool)
    #: global-norm gradient clip of the energy network alone (train.grad_clip clips the sampler alone)
    energy_grad_clip: float | None = attrs.field(default=1.0, validator=_num(0, lo_open=True, optional=True))
    #: small-t policy: rows with t < energy_t_min take the bootstrapped target (from the bridge
    #: estimate the step computes anyway) instead of the heavy-tailed direct one
    energy_t_min: float = attrs.field(default=0.0, validator=_num(0, 1))
    #: K of the direct energy target alone (default: num_proposals): at small t the target is a
    #: best-of-K estimate, so a bootstrapped run with a small sampler K can give its regression more
    energy_num_proposals: int | None = attrs.field(default=None, validator=_num(1, integer=True, optional=True))
    #: "none" or "variance": weight each direct-target row by 1 / (1 + v/s²), v its delta-method
    #: variance from the proposals' ESS, s the target's running spread in its time bin
    energy_weighting: str = attrs.field(default="none", validator=_choice("none", "variance"))
    #: Rao–Blackwellized targets on categorical sites: each proposal contributes its site's conditional
    #: law given the rest (the energy's `conditional_logits`) instead of its token; rows with r = 1 only;
    #: one extra energy-sized evaluation per proposal (counted in energy_evals)
    conditional_targets: bool = attrs.field(default=False, validator=_bool)
    #: bootstrapping (kind = "bootstrap"), rows with r < 1: each proposal x_r contributes the sampler
    #: network's own prediction at (x_r, r) (its EMA copy when train.ema_decay > 0, no gradient) for
    #: what x_r leaves open, instead of the bridge target; one sampler evaluation per proposal
    teacher_targets: bool = attrs.field(default=False, validator=_bool)
    #: sampler proposals: the r = 1 estimates (plain rows, bootstrapped rows at or above the cut, the
    #: direct energy target) of rows with t < sampler_proposal_t_max draw this many completions of x_t
    #: from the sampler network (its EMA copy when train.ema_decay > 0) instead of num_proposals from the
    #: path, weighted by e^{−E} times q_path/q_sampler (0: off). Each costs sampler_proposal_steps sampler
    #: evaluations (counted as sampler_proposal_evals) and one true-energy evaluation
    sampler_proposals: int = attrs.field(default=0, validator=_num(0, integer=True))
    #: network evaluations per sampler proposal (rounds of the masked completion; more rounds capture
    #: more of the correlation between the sites drawn together)
    sampler_proposal_steps: int = attrs.field(default=8, validator=_num(1, integer=True))
    #: γ of those rounds: after round j a share (j/steps)^γ of the open part is drawn (jump: round j takes
    #: the masked sites of rank n_m (j/C)^γ … n_m ((j+1)/C)^γ in a random order). 1: rounds of equal
    #: size; 2: the first rounds draw single sites, so a global choice (the magnetization's sign near
    #: β_c) is made by a few sites that see each other instead of many drawn at once
    sampler_proposal_spacing: float = attrs.field(default=1.0, validator=_num(1))
    #: rows with t at or above this keep the path's proposals (below 1 both are made for every row, the
    #: choice is per row; rows that are all at or above it, e.g. bootstrapped rows past the cut, skip the
    #: sampler's)
    sampler_proposal_t_max: float = attrs.field(default=1.0, validator=_num(0, 1, lo_open=True))
    #: bootstrapping, rows with r < 1: draw their num_proposals bridge proposals x_r from the sampler
    #: network (its EMA copy when train.ema_decay > 0) instead of the path: the sites that open by r are
    #: drawn as the path draws them, their tokens by the network in sampler_bridge_steps rounds of spacing
    #: sampler_proposal_spacing; weighted by e^{−E_r} times q_path/q_sampler, so the estimate keeps its
    #: meaning whatever the network. Each proposal costs sampler_bridge_steps sampler evaluations (counted
    #: as sampler_proposal_evals)
    sampler_bridges: bool = attrs.field(default=False, validator=_bool)
    #: network evaluations per sampler bridge proposal
    sampler_bridge_steps: int = attrs.field(default=4, validator=_num(1, integer=True))
    #: product energies whose continuous part is Gaussian given the discrete part (gb_rbm, joint_mog):
    #: propose the discrete part only, integrate the continuous part out exactly (rows with r = 1)
    collapse_continuous: bool = attrs.field(default=False, validator=_bool)
    #: "uniform": K proposals for every row; "ess": the batch is stratified over the 10 logged time bins
    #: and bin g gets K_g ∝ ess_g^(−1/2) proposals per row (same total B·K; egm_framework/allocation.py),
    #: updated at every log line from the measured ESS
    proposal_allocation: str = attrs.field(default="uniform", validator=_choice("uniform", "ess"))
    #: with proposal_allocation = "ess": K_g stays within [K / ratio, K · ratio]
    proposal_allocation_max_ratio: float = attrs.field(default=16.0, validator=_num(1))


@attrs.frozen(kw_only=True)
class TrainConfig:
    SECTION = "train"
    batch_size: int = attrs.field(default=300, validator=_num(1, integer=True))
    outer_iterations: int = attrs.field(default=100, validator=_num(1, integer=True))
    inner_iterations: int = attrs.field(default=100, validator=_num(1, integer=True))
    lr: float = attrs.field(default=1e-3, validator=_num(0, lo_open=True))
    #: cosine decay from lr to lr_final over all inner steps
    lr_final: float = attrs.field(default=1e-4, validator=_num(0))
    grad_clip: float | None = attrs.field(default=None, validator=_num(0, lo_open=True, optional=True))
    buffer_size: int = attrs.field(default=10000, validator=_num(1, integer=True))
    buffer_refresh: int = attrs.field(default=2000, validator=_num(1, integer=True))
    #: integration steps when simulating the model to refill the buffer
    buffer_sample_steps: int = attrs.field(default=100, validator=_num(1, integer=True))
    seed: int = attrs.field(default=0, validator=_num(0, MAX_SEED, integer=True))
    device: str = attrs.field(default="auto")
    #: write a checkpoint every this many outer iterations (and always at the end)
    checkpoint_every: int = attrs.field(default=1, validator=_num(1, integer=True))
    #: evaluate every this many outer iterations (0: only at the end)
    eval_every: int = attrs.field(default=0, validator=_num(0, integer=True))
    #: samples used by the intermediate evaluations
    eval_samples: int = attrs.field(default=500, validator=_num(2, integer=True))
    #: log averaged loss/ESS every this many inner steps
    log_every: int = attrs.field(default=25, validator=_num(1, integer=True))
    #: exponential moving average of the sampler network's weights, used for every simulation (buffer
    #: refills, evaluation, `egm sample`/`estimate`); 0: off (the raw weights). The decay ramps up as
    #: min(ema_decay, (1 + step)/(10 + step)), so early refills are not stuck at the initialization
    ema_decay: float = attrs.field(default=0.0, validator=_num(0, 1, hi_open=True))
    #: stop training after this many seconds (then checkpoint and evaluate); None: no limit
    max_seconds: float | None = attrs.field(default=None, validator=_num(0, lo_open=True, optional=True))
    progress: bool = attrs.field(default=True, validator=_bool)
    #: CPU threads for torch (torch.set_num_threads); None: half the usable cores, at least 1
    threads: int | None = attrs.field(default=None, validator=_num(1, integer=True, optional=True))
    #: split the global batch (and each buffer refill) into this many shards, each with its own random
    #: stream, shared out over the data-parallel ranks (docs/scaling.md); None: the number of ranks
    #: at the run's start (1 without torchrun)
    batch_shards: int | None = attrs.field(default=None, validator=_num(1, integer=True, optional=True))
    #: what the ranks of a torchrun job split: "batch" (data parallel) or "proposals" (every rank takes
    #: the whole batch and a share of each row's K proposals; for very expensive energies)
    parallel: str = attrs.field(default="batch", validator=_choice("batch", "proposals"))
    #: with parallel = "proposals": shards the K proposals are split into, each with its own random
    #: stream; None: the number of ranks at the run's start
    proposal_shards: int | None = attrs.field(default=None, validator=_num(1, integer=True, optional=True))

    @device.validator
    def _dev(self, attribute, value):
        check_device_name(value, "train.device")


@attrs.frozen(kw_only=True)
class EvalConfig:
    SECTION = "eval"
    num_samples: int = attrs.field(default=2000, validator=_num(2, integer=True))
    sample_steps: int = attrs.field(default=1000, validator=_num(1, integer=True))
    seed: int = attrs.field(default=1234, validator=_num(0, MAX_SEED, integer=True))
    #: seeds of the two independent ground-truth sets (the second gives the noise floor)
    ground_truth_seed: int = attrs.field(default=4321, validator=_num(0, MAX_SEED, integer=True))
    figures: bool = attrs.field(default=True, validator=_bool)


@attrs.frozen(kw_only=True)
class RunConfig:
    SECTION = "run"
    energy: ComponentConfig
    path: ComponentConfig
    generator: ComponentConfig
    network: ComponentConfig
    energy_network: ComponentConfig | None = None
    estimator: EstimatorConfig = attrs.field(factory=EstimatorConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    name: str = "run"

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name}
        for sec in COMPONENT_SECTIONS:
            comp = getattr(self, sec)
            if comp is not None:
                out[sec] = comp.to_dict()
        for sec in ("estimator", "train", "eval"):
            out[sec] = {k: v for k, v in attrs.asdict(getattr(self, sec)).items() if v is not None}
        return out


_SECTION_CLASSES = {"estimator": EstimatorConfig, "train": TrainConfig, "eval": EvalConfig}


def section_defaults() -> dict[str, dict[str, Any]]:
    """The defaults of the estimator, train and eval sections as :meth:`RunConfig.to_dict` writes them
    (keys that default to None are absent)."""
    return {sec: {k: v for k, v in attrs.asdict(cls()).items() if v is not None}
            for sec, cls in _SECTION_CLASSES.items()}


#: keys renamed since a release: old name -> new name (run folders written before keep loading)
_RENAMED = {"estimator": {"energy_target_clamp": "energy_target_limit"}}


def _section(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(data).__name__}")
    renamed = _RENAMED.get(where, {})
    if any(k in data for k in renamed):
        data = {renamed.get(k, k): v for k, v in data.items()}
    fields = [f.name for f in attrs.fields(cls)]
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key; accepted: {', '.join(fields)}{did_you_mean(key, fields)}")
    return cls(**data)


def _component(data: Any, where: str) -> ComponentConfig:
    if isinstance(data, str):
        return ComponentConfig(name=data)
    if not isinstance(data, dict) or "name" not in data or not isinstance(data["name"], str):
        raise ConfigError(f"[{where}] needs a `name = \"...\"` naming a registered component "
                          f"(see `egm components`), got {data!r}")
    params = {k: v for k, v in data.items() if k != "name"}
    return ComponentConfig(name=data["name"], params=params)


def config_from_dict(data: dict) -> RunConfig:
    """Validate a nested dict (parsed TOML) into a :class:`RunConfig`."""
    known = set(COMPONENT_SECTIONS) | set(_SECTION_CLASSES) | {"name"}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown section [{key}]; sections are: {', '.join(sorted(known))}"
                              f"{did_you_mean(key, known)}")
    for req in ("energy", "path", "generator", "network"):
        if req not in data:
            raise ConfigError(f"missing section [{req}]; every run names its {req} by registry name "
                              f"(see `egm components {req if req != 'network' else 'network'}`)")
    kwargs: dict[str, Any] = {sec: _component(data[sec], sec) for sec in COMPONENT_SECTIONS if sec in data}
    for sec, cls in _SECTION_CLASSES.items():
        if sec in data:
            kwargs[sec] = _section(cls, data[sec], sec)
    if "name" in data:
        kwargs["name"] = _check_name(data["name"])
    cfg = RunConfig(**kwargs)
    if cfg.estimator.kind == "bootstrap" and cfg.energy_network is None:
        raise ConfigError("estimator.kind = 'bootstrap' needs an [energy_network] section naming the network that "
                          "learns the intermediate energy (e.g. name = \"mlp\")")
    if cfg.estimator.kind != "bootstrap" and cfg.energy_network is not None:
        raise ConfigError(f"[energy_network] is used only by estimator.kind = \"bootstrap\", but the estimator is "
                          f"{cfg.estimator.kind!r}; remove the [energy_network] section or set estimator.kind = "
                          "\"bootstrap\"")
    return cfg


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 0.0003). Values are TOML literals; bare words are strings."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. train.lr=3e-4), got {item!r}")
    key, raw = item.split("=", 1)
    keys = [k.strip() for k in key.strip().split(".") if k.strip()]
    if not keys:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
        if re.fullmatch(r"[+-]?\d+", value):  # beyond TOML's 64-bit integers: keep it a number for the range check
            value = int(value)
    return keys, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a table")
        node[keys[-1]] = value
    return data


def load_config_dict(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} not found; pass a TOML file (examples in configs/)")
    if p.is_dir():
        raise ConfigError(f"config {str(p)!r} is a folder, not a file; pass the TOML file (examples in configs/)"
                          + ("; to continue a run use `egm train --resume DIR`" if (p / "config.toml").exists() else ""))
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(p)!r}: {exc.strerror or exc}; check the path and its "
                          "permissions") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (some Windows editors) is harmless
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); TOML files "
                          "must be UTF-8: save it as UTF-8 (e.g. `iconv -t utf-8`)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}; fix that line (TOML syntax: https://toml.io)") from None
    return data


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    return config_from_dict(apply_overrides(load_config_dict(path), list(overrides)))


# ---------------------------------------------------------------------------------- TOML writer
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(e)}" for k, e in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(data: dict) -> str:
    """Write a two-level dict (top-level scalars, then tables) as TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None)
    return "\n".join(lines) + "\n"
