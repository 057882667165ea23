"""The EGM training loop, modality-agnostic.

    buffer of model samples x_1 ─► t ~ U(train range) ─► x_t ~ p_{t|1}(·|x_1)
      ─► estimator: K proposals, weights softmax(−E), target Σ_k w_k T(x_t | x^k)   (no grad)
      ─► generator.loss(net(x_t, t), target) ─► Adam (cosine lr) ─► [EMA of the energy net]
    every outer iteration: refill the buffer by simulating the current sampler, log, checkpoint.

Usage::

    trainer = Trainer(cfg, run_dir)          # cfg: RunConfig; run_dir is created
    trainer.fit()                            # trains, checkpoints atomically, evaluates at the end
    Trainer.resume(run_dir).fit()            # continues from the last checkpoint (takes the run's lock)
    Trainer.open(run_dir)                    # the trained model, for sampling: writes nothing

The run folder (see :mod:`egm_framework.runfolder`, which owns every file operation on it) holds
``config.toml`` (resolved), ``metrics.jsonl`` (one JSON object per log line),
``checkpoints/last.pt``, ``eval.json``, ``report.md`` and ``figures/``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from .assembly import Components, build_components, preflight, resolve_device
from .config import RunConfig, config_from_dict
from .errors import ConfigError
from .errors import CheckpointError, EnergyEvaluationError, EGMError
from .energy_regression import RobustEnergyLoss
from .allocation import allocate_proposals, stratified_times, stratum_sizes
from .estimators import BootstrapEstimator, Estimate, ProposalStreams, SNISEstimator, check_energy_output, log_mean_variance
from .guards import guarded_energy
from .runfolder import RunFolder, atomic_save, check_config_change, load_checkpoint  # noqa: F401 (re-exported)
from .interfaces import simulate
from .registry import Registry
from .states import State, batch_size, from_saveable, index, to_saveable, tree_map

ESS_BINS = 10
#: torch's own thread count at import (before any train.threads was applied)
_TORCH_THREADS = torch.get_num_threads()


def resolve_threads(threads: int | None) -> int:
    """train.threads, or the machine default: half the usable cores (at least 1, at most torch's own
    default), so that one other busy process cannot oversubscribe the cores (see README, "Threads")."""
    if threads is not None:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(_TORCH_THREADS, cores // 2))


class TrainingDivergedError(EGMError):
    pass


@attrs.frozen(kw_only=True, eq=False)
class TrainingBatch:
    """Training points (x_t, t) with their estimated targets; x_e, t_e, e_target feed the energy network."""

    x_t: Any
    t: torch.Tensor
    target: Any
    ess: torch.Tensor
    x_e: Any = None
    t_e: torch.Tensor | None = None
    e_target: torch.Tensor | None = None
    e_weight: torch.Tensor | None = None
    #: the estimate's log mean weight per row (−inf on a row without one finite weight)
    log_mean_weight: torch.Tensor | None = None


class ReplayBuffer:
    """FIFO buffer of model samples x_1 on the training device."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.data: State | None = None
        self.size = 0
        self.ptr = 0

    def add(self, x: State) -> None:
        n = batch_size(x)
        if self.data is None:
            self.data = tree_map(lambda v: torch.empty((self.capacity, *v.shape[1:]), dtype=v.dtype, device=v.device), x)
        if n >= self.capacity:
            x = index(x, slice(n - self.capacity, n))
            n = self.capacity
        idx = (torch.arange(n, device=_dev(x)) + self.ptr) % self.capacity
        def put(buf, new):
            buf[idx] = new
            return buf
        from .states import tree_map2
        tree_map2(put, self.data, x)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int, generator: torch.Generator) -> State:
        idx = torch.randint(0, self.size, (n,), generator=generator, device=generator.device)
        return index(self.data, idx)

    def state_dict(self) -> dict:
        saved = to_saveable(index(self.data, slice(0, self.size))) if self.data is not None else {}
        return {"size": self.size, "ptr": self.ptr, "data": saved}

    def load_state_dict(self, d: dict, device) -> None:
        self.data = None
        self.size = self.ptr = 0
        if d["data"]:
            self.add(tree_map(lambda v: v.to(device), from_saveable(d["data"])))
        self.ptr = d["ptr"] % self.capacity
        self.size = d["size"]


def _dev(x: State) -> torch.device:
    from .states import tree_leaves
    return tree_leaves(x)[0].device


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, registry: Registry | None = None,
                 device: str | None = None):
        self.cfg = cfg
        self.folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
        self.run_dir = self.folder.path
        self.registry = registry
        self.device = resolve_device(device or cfg.train.device)
        tc = cfg.train
        torch.set_num_threads(resolve_threads(tc.threads))
        torch.manual_seed(tc.seed)  # network initialization
        comp = build_components(cfg, registry, device=self.device)
        self.comp: Components = attrs.evolve(comp, energy=guarded_energy(comp.energy, cfg.energy.name))
        self.model = self.comp.network.to(self.device)
        self.energy_net = self.comp.energy_network.to(self.device) if self.comp.energy_network is not None else None
        self.energy_ema = copy.deepcopy(self.energy_net).requires_grad_(False) if self.energy_net is not None else None
        #: EMA of the sampler's weights (train.ema_decay > 0): what every simulation uses
        self.model_ema = copy.deepcopy(self.model).requires_grad_(False).eval() if tc.ema_decay > 0 else None
        preflight(self.comp, cfg, self.device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(tc.seed)
        self.host_rng = np.random.default_rng(tc.seed)
        groups = [{"params": list(self.model.parameters()), "lr": tc.lr}]
        if self.energy_net is not None:
            groups.append({"params": list(self.energy_net.parameters()), "lr": cfg.estimator.energy_lr or tc.lr})
        self.optimizer = torch.optim.Adam(groups)
        self.total_steps = tc.outer_iterations * tc.inner_iterations
        floor = tc.lr_final / tc.lr

        def cosine(step: int) -> float:
            frac = min(1.0, max(step / max(1, self.total_steps), self._time_fraction()))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine)
        self.buffer = ReplayBuffer(tc.buffer_size)
        est = cfg.estimator
        if est.kind == "bootstrap" and not getattr(self.comp.path, "supports_bootstrap", True):
            raise ConfigError(
                f"path {cfg.path.name!r} does not support bootstrapped estimation (its bridge generator has no "
                "representation in this generator's parametrization); use estimator.kind = \"snis\" or another path")
        if est.conditional_targets:
            self._check_conditional_targets()
        if est.teacher_targets:
            self._check_teacher_targets()
        if est.sampler_proposals > 0:
            self._check_sampler_proposals()
        if est.sampler_bridges:
            self._check_sampler_bridges()
        if est.collapse_continuous:
            check = getattr(self.comp.path, "collapse_unsupported", None)
            why = (check(self.comp.energy) if check is not None else
                   f"path {cfg.path.name!r} cannot integrate a part of the state out (it has no collapsed_proposals)")
            if why:
                raise ConfigError(f"estimator.collapse_continuous = true: {why}; set estimator.collapse_continuous "
                                  "= false")
        if est.kind == "bootstrap":
            self.estimator = BootstrapEstimator(self.comp.path, self.comp.generator, self.comp.energy,
                                                self._intermediate_energy, delta=est.delta,
                                                num_proposals=est.num_proposals, memory_mb=est.chunk_memory_mb,
                                                conditional_targets=est.conditional_targets,
                                                collapse_continuous=est.collapse_continuous,
                                                final_num_proposals=est.final_num_proposals)
            self.estimator.intermediate_energy = self.estimator.intermediate_energy_from_residual(
                self._intermediate_energy)
            if est.teacher_targets:
                self.estimator.teacher_fn = self._teacher
            if est.sampler_bridges:
                self.estimator.bridge_fn = self._sampler_bridges
            self.estimator.final_t_min = self._bootstrap_cut()
        else:
            self.estimator = SNISEstimator(self.comp.path, self.comp.generator, self.comp.energy,
                                           num_proposals=est.num_proposals, memory_mb=est.chunk_memory_mb,
                                           conditional_targets=est.conditional_targets,
                                           collapse_continuous=est.collapse_continuous)
        if est.sampler_proposals > 0:
            self.estimator.sampler_fn = self._sampler_completions
            self.estimator.sampler_num_proposals = est.sampler_proposals
            self.estimator.sampler_t_max = est.sampler_proposal_t_max
        self.energy_loss_fn = None
        if self.energy_net is not None:
            self.energy_loss_fn = RobustEnergyLoss(
                self.comp.path.train_time_range, self.device, kind=est.energy_loss, huber_delta=est.energy_huber_delta,
                target_limit=est.energy_target_limit, normalize=est.energy_normalize)
        #: proposals per time bin (estimator.proposal_allocation = "ess"; None: K for every row) and the
        #: smoothed ESS per bin it is computed from
        self.allocation: list[int] | None = None
        self._alloc_ess: list[float | None] | None = None
        if est.proposal_allocation == "ess":
            self.allocation = [int(est.num_proposals)] * ESS_BINS
            self._alloc_ess = [None] * ESS_BINS
        self.step = 0
        self.outer = 0
        self.elapsed = 0.0
        self._t0: float | None = None
        self._checked_energy = False
        #: sampler-network evaluations made as teacher (estimator.teacher_targets)
        self.teacher_evals = 0
        #: sampler-network evaluations made to draw sampler proposals (estimator.sampler_proposals)
        self.sampler_proposal_evals = 0
        self._reset_stats()

    # ------------------------------------------------------------------ pieces
    def _check_conditional_targets(self) -> None:
        energy, gen = self.comp.energy, self.comp.generator
        if not getattr(energy, "supports_conditionals", False):
            raise ConfigError(
                f"estimator.conditional_targets = true needs the energy's single-site conditionals, and energy "
                f"{self.cfg.energy.name!r} provides none (Energy.conditional_logits); set estimator.conditional_targets "
                "= false, or implement conditional_logits (and supports_conditionals = True) in the energy")
        if not getattr(gen, "supports_conditional_targets", False):
            raise ConfigError(
                f"estimator.conditional_targets = true needs a generator with Rao–Blackwellized targets, and generator "
                f"{self.cfg.generator.name!r} has none (GeneratorParametrization.weighted_conditional_target); set "
                "estimator.conditional_targets = false")

    def _check_teacher_targets(self) -> None:
        est, gen = self.cfg.estimator, self.comp.generator
        if est.kind != "bootstrap":
            raise ConfigError(
                "estimator.teacher_targets = true applies to bootstrapped estimation (the rows with r = t + delta < 1); "
                "set estimator.kind = \"bootstrap\", or estimator.teacher_targets = false")
        self._require_generator("estimator.teacher_targets = true", "estimator.teacher_targets = false",
                                "supports_teacher_targets", "teacher targets", "weighted_teacher_target",
                                gen.teacher_unsupported)

    def _check_sampler_proposals(self) -> None:
        est, gen = self.cfg.estimator, self.comp.generator
        setting = f"estimator.sampler_proposals = {est.sampler_proposals}"
        self._require_generator(setting, "estimator.sampler_proposals = 0", "supports_sampler_proposals",
                                "completions of known probability", "sample_completions",
                                gen.sampler_proposals_unsupported)
        if est.collapse_continuous:
            raise ConfigError(f"{setting} with estimator.collapse_continuous = true: a row's proposals come from one "
                              "of the two; set one of them off")
        if est.proposal_allocation != "uniform":
            raise ConfigError(f"{setting} with estimator.proposal_allocation = {est.proposal_allocation!r}: the "
                              "allocation sets the path's K per time bin, not the sampler's; set "
                              "estimator.proposal_allocation = \"uniform\" or estimator.sampler_proposals = 0")

    def _check_sampler_bridges(self) -> None:
        est = self.cfg.estimator
        setting, off = "estimator.sampler_bridges = true", "estimator.sampler_bridges = false"
        if est.kind != "bootstrap":
            raise ConfigError(f"{setting} applies to bootstrapped estimation (the rows with r = t + delta < 1); set "
                              f"estimator.kind = \"bootstrap\", or {off}")
        self._require_generator(setting, off, "supports_sampler_bridges", "bridge proposals of known probability",
                                "sample_completions with r < 1", self.comp.generator.sampler_proposals_unsupported)
        if est.proposal_allocation != "uniform":
            raise ConfigError(f"{setting} with estimator.proposal_allocation = {est.proposal_allocation!r}: the "
                              f"allocation sets the path's K per time bin, not the sampler's; set "
                              f"estimator.proposal_allocation = \"uniform\" or {off}")

    def _require_generator(self, setting: str, off: str, supports: str, what: str, method: str, why_not) -> None:
        """Config errors for an estimator option that needs the generator's ``method`` (flag ``supports``)
        and that ``why_not(path)`` may refuse for this path."""
        if not getattr(self.comp.generator, supports, False):
            raise ConfigError(f"{setting} needs a generator with {what}, and generator {self.cfg.generator.name!r} "
                              f"has none (GeneratorParametrization.{method}); set {off}")
        why = why_not(self.comp.path)
        if why:
            raise ConfigError(f"{setting}: {why}; set {off}")

    def _sampler_completions(self, x_t: State, t: torch.Tensor, k: int, generator: torch.Generator):
        """Sampler proposals: k completions per row from the sampler network (EMA copy if any; counted)."""
        steps = self.cfg.estimator.sampler_proposal_steps
        self.sampler_proposal_evals += batch_size(x_t) * k * steps
        with torch.no_grad():
            spacing = self.cfg.estimator.sampler_proposal_spacing
            # spacing only when set, so a plugin generator written before the keyword keeps working at γ = 1
            kw = {} if spacing == 1 else {"spacing": spacing}
            return self.comp.generator.sample_completions(self.model_fn, self.comp.path, x_t, t, k, steps, generator, **kw)

    def _sampler_bridges(self, x_t: State, t: torch.Tensor, r: torch.Tensor, k: int, generator: torch.Generator):
        """Sampler bridge proposals: k partial completions to r per row from the sampler network (counted)."""
        est = self.cfg.estimator
        self.sampler_proposal_evals += batch_size(x_t) * k * est.sampler_bridge_steps
        with torch.no_grad():
            return self.comp.generator.sample_completions(self.model_fn, self.comp.path, x_t, t, k,
                                                          est.sampler_bridge_steps, generator,
                                                          spacing=est.sampler_proposal_spacing, r=r)

    def _teacher(self, x: State, r: torch.Tensor):
        """The sampler network as teacher for bootstrapped targets (no gradient; counted)."""
        self.teacher_evals += batch_size(x)
        with torch.no_grad():
            return self.model_fn(x, r)

    def _time_fraction(self) -> float:
        """Share of train.max_seconds used so far (0 without a time budget): with a budget the cosine
        schedule runs on whichever of steps and time is further along, so it ends when time runs out."""
        limit = self.cfg.train.max_seconds
        if not limit or getattr(self, "_t0", None) is None:
            return 0.0
        return (self.elapsed + time.perf_counter() - self._t0) / limit

    def _intermediate_energy(self, x: State, r: torch.Tensor) -> torch.Tensor:
        """The learned residual R_r(x) (EMA copy); the estimator adds −log Z_{1|r}(x) to make E_r."""
        return self.energy_ema(x, r)

    def model_fn(self, x: State, t: torch.Tensor):
        """The sampler network as the simulations see it: its EMA copy when train.ema_decay > 0."""
        return (self.model_ema if self.model_ema is not None else self.model)(x, t)

    @torch.no_grad()
    def sample(self, n: int, steps: int, generator: torch.Generator | None = None, chunk: int = 5000) -> State:
        """n samples from the current model (simulated in chunks)."""
        gen = generator or self.gen
        was = self.model.training
        self.model.eval()
        outs = []
        for i in range(0, n, chunk):
            outs.append(simulate(self.comp.generator, self.model_fn, self.comp.path, min(chunk, n - i), steps, gen,
                                 self.device))
        self.model.train(was)
        from .states import cat
        return cat(outs) if len(outs) > 1 else outs[0]

    def _bootstrap_cut(self) -> float:
        """Training times at or above this have r = 1: 1 − Δ (where t + Δ reaches 1), or
        estimator.bootstrap_t_max if lower (clamped to the train range)."""
        lo, hi = self.comp.path.train_time_range
        ec = self.cfg.estimator
        cut = 1.0 - ec.delta if ec.bootstrap_t_max is None else min(1.0 - ec.delta, ec.bootstrap_t_max)
        return min(max(cut, lo), hi)

    def sample_times(self, B: int, gen: torch.Generator | None = None,
                     host_rng: np.random.Generator | None = None) -> tuple[torch.Tensor, int]:
        """t ~ U(train range); for bootstrapping the rows with r = min(t+Δ, 1) = 1 are put last and
        counted on the host (a binomial draw), so no device sync is needed to split them."""
        lo, hi = self.comp.path.train_time_range
        u = torch.rand(B, generator=gen or self.gen, device=self.device)
        if self.cfg.estimator.kind != "bootstrap":
            return lo + (hi - lo) * u, 0
        cut = self._bootstrap_cut()
        p_final = (hi - cut) / (hi - lo) if hi > lo else 1.0
        n_final = int((host_rng or self.host_rng).binomial(B, p_final))
        t = torch.empty(B, device=self.device)
        n_boot = B - n_final
        t[:n_boot] = lo + (cut - lo) * u[:n_boot]
        t[n_boot:] = cut + (hi - cut) * u[n_boot:]
        return t, n_final

    @property
    def energy_evals(self) -> int:
        """States passed to the true energy by training so far (evaluations not included)."""
        return self.estimator.energy_evals

    def _energy_for_check(self, x: State) -> torch.Tensor:
        e = self.comp.energy(x)
        check_energy_output(e, batch_size(x), f"energy {self.cfg.energy.name!r}")
        if torch.isnan(e).any() or torch.isneginf(e).any():  # one sync, first step only
            raise EnergyEvaluationError(
                f"energy {self.cfg.energy.name!r} returned NaN or -inf on valid states; energies must be finite "
                "(or +inf for states of zero probability)")
        return e

    # ------------------------------------------------------------------ stats
    def _reset_stats(self) -> None:
        z = lambda: torch.zeros((), device=self.device)  # noqa: E731
        self._loss_sum, self._eloss_sum, self._count = z(), z(), 0
        self._ess_sum = torch.zeros(ESS_BINS, device=self.device)
        self._ess_cnt = torch.zeros(ESS_BINS, device=self.device)
        self._eloss_bin_sum = torch.zeros(ESS_BINS, device=self.device)
        self._eloss_bin_cnt = torch.zeros(ESS_BINS, device=self.device)
        #: training batches in which no row had a single finite weight (read at the next log line)
        self._dead_batches = torch.zeros((), dtype=torch.long, device=self.device)
        self._edropped = torch.zeros((), device=self.device)

    def _time_bin(self, t: torch.Tensor) -> torch.Tensor:
        lo, hi = self.comp.path.train_time_range
        return ((t - lo) / max(hi - lo, 1e-12) * ESS_BINS).long().clamp_(0, ESS_BINS - 1)

    def _record(self, loss: torch.Tensor, eloss: torch.Tensor | None, t: torch.Tensor, ess: torch.Tensor,
                eloss_rows: tuple[torch.Tensor, torch.Tensor] | None = None,
                log_mean_weight: torch.Tensor | None = None) -> None:
        self._loss_sum += loss.detach()
        if eloss is not None:
            self._eloss_sum += eloss.detach()
        self._count += 1
        b = self._time_bin(t)
        self._ess_sum.index_add_(0, b, ess.float())
        self._ess_cnt.index_add_(0, b, torch.ones_like(ess, dtype=torch.float))
        if eloss_rows is not None:
            rows, t_e, kept = eloss_rows
            self._edropped += (~kept).sum()
            be = self._time_bin(t_e)
            self._eloss_bin_sum.index_add_(0, be, rows.float())
            self._eloss_bin_cnt.index_add_(0, be, torch.ones_like(rows, dtype=torch.float))
        if log_mean_weight is not None:
            self._dead_batches += (~torch.isfinite(log_mean_weight)).all()

    def _flush_stats(self) -> dict:
        n = max(1, self._count)
        loss = float(self._loss_sum) / n
        cnt = self._ess_cnt.cpu().numpy()
        ess_bins = (self._ess_sum.cpu().numpy() / np.maximum(cnt, 1)).tolist()
        rec = {"step": self.step, "outer": self.outer, "loss": loss,
               "ess": float(self._ess_sum.sum().cpu() / max(cnt.sum(), 1)),
               "ess_by_time": [round(v, 5) if c > 0 else None for v, c in zip(ess_bins, cnt)],
               "lr": self.scheduler.get_last_lr()[0], "time": round(self.elapsed, 3),
               "energy_evals": self.estimator.energy_evals}
        if self.cfg.estimator.teacher_targets:
            rec["teacher_evals"] = self.teacher_evals
        if self.cfg.estimator.sampler_proposals > 0 or self.cfg.estimator.sampler_bridges:
            rec["sampler_proposal_evals"] = self.sampler_proposal_evals
        if self.allocation is not None:
            rec["proposals_by_time"] = list(self.allocation)  # what the logged ESS was measured with
            self._update_allocation(rec["ess_by_time"])
        if self.energy_net is not None:
            rec["energy_loss"] = float(self._eloss_sum) / n
            ecnt = self._eloss_bin_cnt.cpu().numpy()
            ebins = (self._eloss_bin_sum.cpu().numpy() / np.maximum(ecnt, 1)).tolist()
            rec["energy_loss_by_time"] = [float(f"{v:.5g}") if c > 0 else None for v, c in zip(ebins, ecnt)]
            rec["energy_target_dropped"] = round(float(self._edropped) / max(float(ecnt.sum()), 1.0), 5)
        if int(self._dead_batches):
            raise TrainingDivergedError(
                f"no proposal of a whole training batch had a finite weight (at or before step {self.step}): energy "
                f"{self.cfg.energy.name!r} is +inf or NaN on every proposal, so there is nothing to learn from; make "
                "the energy finite where the path's proposals land, or raise estimator.num_proposals")
        if not math.isfinite(loss) or ("energy_loss" in rec and not math.isfinite(rec["energy_loss"])):
            raise TrainingDivergedError(
                f"training diverged at step {self.step}: loss = {loss}. Check that the energy is finite on the "
                "proposals (it must not return NaN), lower train.lr, or set train.grad_clip.")
        self._reset_stats()
        return rec

    # ------------------------------------------------------------------ one step
    def draw_batch(self, B: int, gen: torch.Generator, host_rng: np.random.Generator,
                   proposals: torch.Generator | ProposalStreams | None = None) -> TrainingBatch:
        """B training points from the buffer and their regression targets (call under no_grad); every
        random draw comes from ``gen`` / ``host_rng``, the proposals' from ``proposals`` if given."""
        x1 = self.buffer.sample(B, gen)
        pg = gen if proposals is None else proposals
        boot = isinstance(self.estimator, BootstrapEstimator)
        if self.allocation is None:
            t, n_final = self.sample_times(B, gen, host_rng)
            x_t = self.comp.path.sample_xt(x1, t, gen)
            est = (self.estimator.estimate(x_t, t, pg, n_final=n_final) if boot else
                   self.estimator.estimate(x_t, t, pg))
        else:
            t, x_t, est = self._stratified_estimate(x1, B, gen, host_rng, pg, boot)
        x_e = t_e = e_target = e_weight = None
        if self.energy_net is not None:
            x_e, t_e, e_target, e_weight = self._energy_target(est, x_t, t, pg)
        return TrainingBatch(x_t=x_t, t=t, target=est.target, ess=est.ess, x_e=x_e, t_e=t_e, e_target=e_target,
                             e_weight=e_weight, log_mean_weight=est.log_mean_weight)

    def _stratified_estimate(self, x1: State, B: int, gen: torch.Generator, host_rng: np.random.Generator, pg,
                             boot: bool):
        """Rows stratified over the ESS time bins, stratum g estimated with self.allocation[g] proposals."""
        lo, hi = self.comp.path.train_time_range
        sizes = stratum_sizes(B, ESS_BINS, host_rng)
        cut = self._bootstrap_cut() if boot else None
        t, finals = stratified_times(sizes, lo, hi, gen, self.device, cut=cut, host_rng=host_rng)
        x_t = self.comp.path.sample_xt(x1, t, gen)
        parts, start = [], 0
        for g, n in enumerate(sizes):
            if n == 0:
                continue
            sl = slice(start, start + n)
            kw = {"n_final": finals[g]} if boot else {}
            parts.append(self.estimator.estimate(index(x_t, sl), t[sl], pg, num_proposals=self.allocation[g], **kw))
            start += n
        return t, x_t, Estimate.concat(parts)

    def _update_allocation(self, ess_bins: list[float | None]) -> None:
        """Smooth the logged per-bin ESS (half old, half new) and recompute the proposals per bin."""
        if self.allocation is None:
            return
        old = self._alloc_ess
        self._alloc_ess = [n if o is None else (o if n is None else 0.5 * (o + n)) for o, n in zip(old, ess_bins)]
        ec = self.cfg.estimator
        self.allocation = allocate_proposals(self._alloc_ess, ec.num_proposals, ec.proposal_allocation_max_ratio)

    def training_batch(self) -> TrainingBatch:
        """This step's batch (the data-parallel trainer draws its shards of the global batch here)."""
        return self.draw_batch(self.cfg.train.batch_size, self.gen, self.host_rng)

    def _batch_mean(self, v: torch.Tensor) -> torch.Tensor:
        """Mean of per-row values over the batch (the data-parallel trainer: this rank's share of it)."""
        return v.mean()

    def _sync_gradients(self) -> None:
        """Hook between backward and the optimizer step (the data-parallel trainer sums gradients here)."""

    def train_step(self) -> None:
        cfg = self.cfg
        if not self._checked_energy:
            self.estimator.energy = self._energy_for_check
        with torch.no_grad():
            b = self.training_batch()
        if not self._checked_energy:
            self.estimator.energy = self.comp.energy
            self._checked_energy = True
        out = self.model(b.x_t, b.t)
        loss = self._batch_mean(self.comp.generator.loss(out, b.target, b.x_t, b.t))
        total = loss
        eloss = erows = None
        if self.energy_net is not None:
            eloss, erows = self.energy_loss_fn(self.energy_net(b.x_e, b.t_e), b.e_target, b.t_e, b.e_weight)
            total = total + cfg.estimator.energy_loss_weight * eloss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._sync_gradients()
        # separate clips: a spike of the energy network's loss must not shrink the sampler's step
        if cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(self.model.parameters()), cfg.train.grad_clip)
        if self.energy_net is not None and cfg.estimator.energy_grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(self.energy_net.parameters()), cfg.estimator.energy_grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.energy_net is not None:
            self._update_ema()
        if self.model_ema is not None:
            self._update_sampler_ema()
        self._record(loss, eloss, b.t, b.ess,
                     None if erows is None else (erows, b.t_e, self.energy_loss_fn.valid_rows(b.e_target)),
                     b.log_mean_weight)

    def _energy_target(self, est, x_t: State, t: torch.Tensor, gen: torch.Generator | None = None):
        """Rows, times, targets and row weights (or None) of the energy network's regression.

        "bootstrap": the bridge estimate's own target on every row. "direct": −log mean e^{−E(x_1^k)}
        over K fresh proposals (K = energy_num_proposals, default num_proposals) on the first
        energy_batch_fraction of the rows; rows with
        t < energy_t_min take the bootstrapped target instead; energy_weighting = "variance" weights
        rows by 1 / (1 + v/s²) with v the target's delta-method variance."""
        ec = self.cfg.estimator
        if ec.energy_target == "bootstrap":
            return x_t, t, self.estimator.residual_target_from(est, x_t, t), None
        B = t.shape[0]
        n_e = max(1, int(math.ceil(ec.energy_batch_fraction * B)))
        # evenly spaced rows, not the first n_e: the rows are ordered by t (stratified) or bootstrapped
        # rows first and r = 1 rows last, and the network must learn E_r where it is queried, up to
        # r = cut + Δ (the first n_e rows of a bootstrapped batch stop at the cut)
        rows = slice(0, n_e) if n_e == B else torch.arange(n_e, device=t.device) * B // n_e
        x_e, t_e = index(x_t, rows), t[rows]
        k_e = ec.energy_num_proposals or ec.num_proposals
        direct = self.estimator.energy_regression_estimate(x_e, t_e, gen or self.gen, num_proposals=k_e)
        target, ess = -direct.log_mean_weight, direct.ess
        if ec.energy_t_min > 0:
            small = t_e < ec.energy_t_min
            boot = self.estimator.residual_target_from(est, x_t, t)[rows]
            target = torch.where(small, boot, target)
            ess = torch.where(small, est.ess[rows], ess)
        weight = None
        if ec.energy_weighting == "variance":
            s = self.energy_loss_fn.scale(self.energy_loss_fn.bin_of(t_e)) if ec.energy_normalize else 1.0
            weight = 1.0 / (1.0 + log_mean_variance(ess, k_e) / (s * s))
        return x_e, t_e, target, weight

    @torch.no_grad()
    def _update_ema(self) -> None:
        progress = max(self.step / max(1, self.total_steps), self._time_fraction())
        decay = self.cfg.estimator.energy_ema_decay if progress >= self.cfg.estimator.energy_ema_start else 0.0
        ema_p = list(self.energy_ema.parameters())
        p = [q.detach() for q in self.energy_net.parameters()]
        torch._foreach_lerp_(ema_p, p, 1.0 - decay)

    @torch.no_grad()
    def _update_sampler_ema(self) -> None:
        decay = min(self.cfg.train.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        ema_p = list(self.model_ema.parameters())
        torch._foreach_lerp_(ema_p, [q.detach() for q in self.model.parameters()], 1.0 - decay)
        for b_ema, b in zip(self.model_ema.buffers(), self.model.buffers()):
            b_ema.copy_(b)

    def refill_buffer(self) -> None:
        """Add freshly simulated model samples; rows with non-finite coordinates (a sampler that blew
        up) are left out, so one bad simulation cannot poison every later training batch, and so are
        rows whose energy is far above the buffer's quantiles (:mod:`egm_framework.buffer_guard`)."""
        tc = self.cfg.train
        x = self.simulate_for_buffer(tc.buffer_refresh, tc.buffer_sample_steps)
        from .states import tree_leaves

        ok = None
        for leaf in tree_leaves(x):
            if leaf.dtype.is_floating_point:
                fin = torch.isfinite(leaf.reshape(leaf.shape[0], -1)).all(dim=1)
                ok = fin if ok is None else ok & fin
        if ok is not None and not bool(ok.all()):  # one sync per refill, not in the step
            n_ok = int(ok.sum())
            self._log({"step": self.step, "outer": self.outer, "buffer_dropped_nonfinite": len(ok) - n_ok})
            if n_ok == 0:
                raise TrainingDivergedError(
                    f"every sample simulated for the buffer at step {self.step} has non-finite coordinates; "
                    "lower train.lr, set train.grad_clip or generator clip_norm, or use more integration steps")
            x = index(x, ok)
        x = self._drop_energy_outliers(x)
        self.buffer.add(x)

    def simulate_for_buffer(self, n: int, steps: int) -> State:
        """n fresh model samples for the buffer (the data-parallel trainer splits them across ranks)."""
        return self.sample(n, steps)

    @torch.no_grad()
    def _drop_energy_outliers(self, x: State) -> State:
        """Leave out refill rows with energies far above the buffer's (logged as buffer_dropped_outliers).
        Its energy evaluations (the refill's and as many buffer rows) are not in ``energy_evals``, which
        counts the training estimator's: budgets of B·K per step stay exact (``egm compare``)."""
        keep = self._energy_outlier_keep(x)
        n_keep = int(keep.sum())  # the same one sync per refill
        if n_keep == 0:  # nothing finite to compare (a broken energy): the first step's check reports it
            return x
        if n_keep < len(keep):
            self._log({"step": self.step, "outer": self.outer, "buffer_dropped_outliers": len(keep) - n_keep})
            x = index(x, keep)
        return x

    def _energy_outlier_keep(self, x: State) -> torch.Tensor:
        """Refill rows the buffer guard keeps (the data-parallel trainer makes every rank keep rank 0's)."""
        from .buffer_guard import energy_outlier_mask

        e = self.comp.energy(x)
        if not e.is_floating_point():  # a broken energy: the first training step's check reports it clearly
            return torch.ones(batch_size(x), dtype=torch.bool, device=self.device)
        e = e.float()
        ref = None
        if self.buffer.size > 0:
            n_ref = min(self.buffer.size, batch_size(x))
            ref = self.comp.energy(self.buffer.sample(n_ref, self.gen)).float()
        return energy_outlier_mask(e, ref)

    # ------------------------------------------------------------------ loop
    #: False on the ranks > 0 of a data-parallel run: they neither log, evaluate nor write files
    is_main = True

    def _out_of_time(self, t0: float) -> bool:
        limit = self.cfg.train.max_seconds
        return limit is not None and self.elapsed + time.perf_counter() - t0 > limit

    def fit(self, evaluate_at_end: bool = True) -> dict | None:
        if not self.is_main:  # the other ranks of a data-parallel run never touch the run folder
            return self._fit(evaluate_at_end)
        if not self.folder.locked:  # library use (Trainer(cfg, dir).fit()); the CLI took the lock already
            self.folder.open_for_writing()
        try:
            self.folder.clean_temporaries()
            self._write_config()
            return self._fit(evaluate_at_end)
        finally:
            self.folder.release_lock()

    def _fit(self, evaluate_at_end: bool) -> dict | None:
        tc = self.cfg.train
        bar = None
        if tc.progress and self.is_main:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.total_steps, initial=self.step, desc=self.cfg.name, dynamic_ncols=True,
                       file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30.0)
        latest: dict[str, Any] = {}
        try:
            while self.outer < tc.outer_iterations:
                t0 = self._t0 = time.perf_counter()
                self.refill_buffer()
                out_of_time = False
                for _ in range(tc.inner_iterations):
                    if self._out_of_time(t0):
                        out_of_time = True
                        break
                    self.train_step()
                    if self.step % tc.log_every == 0 or _ == tc.inner_iterations - 1:
                        self.elapsed += time.perf_counter() - t0
                        t0 = self._t0 = time.perf_counter()
                        rec = self._flush_stats()
                        self._log(rec)
                        if bar is not None:
                            bar.set_postfix(loss=f"{rec['loss']:.4g}", ess=f"{rec['ess']:.3f}", **latest)
                    if bar is not None:
                        bar.update(1)
                self.elapsed += time.perf_counter() - t0
                self._t0 = None
                self.outer += 1
                if (tc.eval_every and self.outer % tc.eval_every == 0 and self.outer < tc.outer_iterations
                        and self.is_main):
                    from .evaluation import evaluate_trainer
                    m = evaluate_trainer(self, num_samples=tc.eval_samples, steps=self.cfg.train.buffer_sample_steps,
                                         write=False)
                    self._log({"step": self.step, "outer": self.outer, "eval": m})
                    latest = {k: f"{m[k]:.3g}" for k in ("E-W1",) if k in m}
                if out_of_time:
                    if self._count:
                        self._log(self._flush_stats())
                    self.save_checkpoint()
                    if self.is_main:
                        print(f"train.max_seconds = {tc.max_seconds} reached after {self.step} steps; "
                              + ("evaluating" if evaluate_at_end else "checkpoint written"), file=sys.stderr)
                    break
                if self.outer % tc.checkpoint_every == 0 or self.outer == tc.outer_iterations:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
        if evaluate_at_end:
            from .evaluation import evaluate_trainer
            return evaluate_trainer(self)
        return None

    def _log(self, rec: dict) -> None:
        self.folder.append_metrics(rec)

    def _registry(self) -> Registry:
        from .registry import get_registry

        return self.registry or get_registry()

    @property
    def resolved_config(self) -> dict:
        """The config with every component parameter written out (what config.toml and checkpoints hold)."""
        if getattr(self, "_resolved", None) is None:
            from .provenance import resolved_config

            self._resolved = resolved_config(self.cfg, self._registry())
        return self._resolved

    def _write_config(self) -> None:
        """``config.toml`` with resolved component parameters and ``components.json`` (see
        :mod:`.provenance`), written by the lock holder whenever training starts (a resume may have
        changed harmless keys)."""
        from .provenance import component_provenance

        self.folder.write_config(self.resolved_config, component_provenance(self.cfg, self._registry(), self.comp.path))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        d = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.gen.get_state(),
            "host_rng": json.dumps(self.host_rng.bit_generator.state),
            "step": self.step, "outer": self.outer, "elapsed": self.elapsed,
            "energy_evals": self.estimator.energy_evals, "teacher_evals": self.teacher_evals,
            "sampler_proposal_evals": self.sampler_proposal_evals,
            "config": json.dumps(self.resolved_config),  # the config the weights were trained with
        }
        if self.energy_net is not None:
            d["energy_network"] = self.energy_net.state_dict()
            d["energy_ema"] = self.energy_ema.state_dict()
            d["energy_regression"] = self.energy_loss_fn.state_dict()
        if self.model_ema is not None:
            d["model_ema"] = self.model_ema.state_dict()
        if self.allocation is not None:
            d["proposal_allocation"] = json.dumps({"allocation": self.allocation, "ess": self._alloc_ess})
        return d

    def load_state_dict(self, d: dict, source: str = "the checkpoint") -> None:
        """Restore a checkpoint; one that does not fit the components built from the config (changed
        network or energy shapes, missing entries) is a clear :class:`CheckpointError`."""
        try:
            self._load_state_dict(d)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            what = f"lacks the entry {exc.args[0]!r}" if isinstance(exc, KeyError) else f"does not fit: {msg[:300]}"
            raise CheckpointError(
                f"{source} {what}; it was written for a different network or energy than config.toml builds (or is "
                "damaged): restore the run's config.toml, or train a new run") from None

    def _load_state_dict(self, d: dict) -> None:
        self.model.load_state_dict(d["model"])
        if self.model_ema is not None:
            # a checkpoint without it (EMA switched on at resume): the average starts from the weights
            self.model_ema.load_state_dict(d["model_ema"] if "model_ema" in d else d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.scheduler.load_state_dict(d["scheduler"])
        self.buffer.load_state_dict(d["buffer"], self.device)
        self.gen.set_state(d["generator"])
        self.host_rng.bit_generator.state = json.loads(d["host_rng"])
        if self.allocation is not None and "proposal_allocation" in d:
            alloc = json.loads(d["proposal_allocation"])
            if len(alloc["allocation"]) == ESS_BINS:
                self.allocation, self._alloc_ess = [int(k) for k in alloc["allocation"]], alloc["ess"]
        self.step, self.outer, self.elapsed = int(d["step"]), int(d["outer"]), float(d["elapsed"])
        self.estimator.energy_evals = int(d.get("energy_evals", 0))
        self.teacher_evals = int(d.get("teacher_evals", 0))
        self.sampler_proposal_evals = int(d.get("sampler_proposal_evals", 0))
        if self.energy_net is not None:
            self.energy_net.load_state_dict(d["energy_network"])
            self.energy_ema.load_state_dict(d["energy_ema"])
            if "energy_regression" in d:  # absent in checkpoints written before the robust regression
                self.energy_loss_fn.load_state_dict(d["energy_regression"])

    @property
    def checkpoint_path(self) -> Path:
        return self.folder.checkpoint_path

    def save_checkpoint(self) -> None:
        self.folder.save_checkpoint(self.state_dict())

    @classmethod
    def _from_folder(cls, folder: RunFolder, overrides: list[str], registry, device) -> "Trainer":
        """The trainer of a run folder, at its checkpoint; config.toml must describe the checkpoint."""
        from .config import apply_overrides

        from .provenance import check_recorded_components
        from .registry import get_registry

        folder.require_run()
        check_recorded_components(folder.path, registry or get_registry())
        saved = config_from_dict(folder.read_config_dict())
        state = folder.load_checkpoint()
        if isinstance(state.get("config"), str):  # checkpoints before the config was stored in them have none
            check_config_change(json.loads(state["config"]), saved.to_dict(),
                                f"config.toml in {folder.path} does not describe its checkpoint:",
                                "restore config.toml (or train a new run with the changed config)")
        cfg = saved
        if overrides:
            cfg = config_from_dict(apply_overrides(saved.to_dict(), list(overrides)))
            check_config_change(saved.to_dict(), cfg.to_dict(), "--set on resume:",
                                "start a new run with `egm train CONFIG --set ...` instead")
        trainer = cls(cfg, folder, registry=registry, device=device)
        trainer.load_state_dict(state, f"checkpoint {folder.checkpoint_path}")
        return trainer

    @classmethod
    def open(cls, run_dir: str | Path, registry: Registry | None = None, device: str | None = None) -> "Trainer":
        """A trained run for reading (sampling, evaluating): writes nothing to the run folder, so it
        works on a read-only folder and on a run that is still training."""
        return cls._from_folder(RunFolder(run_dir), [], registry, device)

    @classmethod
    def resume(cls, run_dir: str | Path, registry: Registry | None = None, device: str | None = None,
               overrides: list[str] = ()) -> "Trainer":
        """Continue a run: takes its lock, drops log lines written after the checkpoint (by a run that
        was killed), and records the overrides (only ones that keep the target, the space and the
        network shapes are accepted) in ``resumes.jsonl``; config.toml is rewritten when training starts."""
        folder = RunFolder(run_dir).require_run()
        folder.acquire_lock()
        try:
            trainer = cls._from_folder(folder, list(overrides), registry, device)
            folder.truncate_metrics(trainer.step)
            folder.record_resume(trainer.step, list(overrides))
        except BaseException:
            folder.release_lock()
            raise
        return trainer
