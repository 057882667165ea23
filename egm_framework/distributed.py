"""Data-parallel training with ``torch.distributed``, launched by ``torchrun`` (no launcher of our own).

    torchrun --nproc-per-node N -m egm_framework.cli train CONFIG.toml --out RUN_DIR

Every rank holds the whole model, optimizer and replay buffer; they train one model together:

* **The global batch is split into shards, not into ranks.** ``train.batch_size`` B is cut into S =
  ``train.batch_shards`` shards (default: the number of ranks when the run starts, recorded in the
  run's config.toml) of sizes ⌊B/S⌋ or ⌊B/S⌋+1 (the first B mod S shards get the extra row). Shard s
  owns one random stream (a ``torch.Generator`` and a host ``numpy`` generator) seeded from
  (train.seed, s); shard 0's stream is the single-process trainer's own, so S = 1 is exactly
  ``egm train``. Rank r handles shards r, r+W, r+2W, … (W ranks). Which rows, times, x_t and proposals
  a step draws depends on S and the seed only, never on W: the same run on 1 rank and on 2 ranks
  takes the same steps (up to floating-point summation order).
* **Gradients are summed over ranks** with one all-reduce per step (both networks, one flat buffer
  per dtype): each rank's loss is its rows' share of the global mean (Σ_local / B; the energy
  network's robust loss all-gathers the (target, time bin, valid) rows of every rank, padded to a
  fixed bound, so its running per-bin median / MAD are the global batch's exactly, and sums its
  row-weight normalizer over the ranks), so the sum is the one-process gradient.
  Clipping, Adam, the cosine schedule and the EMA then run identically on every rank; parameters are
  broadcast from rank 0 once at the start. (DistributedDataParallel is not used: it would wrap the
  modules, change their state-dict keys, and overlap nothing worth overlapping, since an EGM step
  is dominated by the B·K energy evaluations, not by the backward pass.)
* **The buffer refill** (``train.buffer_refresh`` samples) is split into the same S shards, each
  simulated with its shard's stream by the rank that owns it, and all-gathered in shard order; the
  buffer guard's verdict (energy outliers left out) is rank 0's, broadcast, so every rank's buffer
  stays identical. The dead-batch check (no finite weight in a whole step's batch) looks at the
  global batch.
* **Rank 0 alone** touches the run folder, through :class:`~egm_framework.runfolder.RunFolder`: it
  takes the lock, logs, writes config.toml, checkpoints (once per checkpoint event), evaluates and
  writes the report. Shard random states are gathered into the checkpoint, so it holds no trace of
  W: a run resumes on any number of ranks M ≤ S (``--set train.batch_shards=M`` re-splits it; the new
  shards' streams start fresh). Every rank reads the same config.toml and checkpoint (the other ranks
  only read); their steps are checked equal.
* **A rank that dies** (SIGKILL, out of memory) makes torchrun stop the others; each surviving rank
  reports in one line where the run stopped and how to resume it.

``train.parallel = "proposals"`` splits the other axis, for energies so expensive that one row's K
proposals are the bottleneck: every rank draws the whole batch from shard 0's stream (identical on
all ranks) and its share of each row's K proposals from its own proposal streams (K split into
``train.proposal_shards`` shards, default the number of ranks, like the batch above). The chunked
online-softmax statistics (running max m, Σ e^{ℓ−m}, Σ e^{2(ℓ−m)}, weighted target) of the ranks are
merged exactly — an all-reduce MAX of m, each rank's sums rescaled by e^{m_rank − m}, an all-reduce
SUM — so every rank holds the one-process estimate; gradients (identical up to rounding) are
averaged to keep the ranks bit-identical. The buffer refill is not split in this mode.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist

from .assembly import resolve_device
from .config import RunConfig
from .errors import CheckpointError, ConfigError, EGMError
from .estimators import ProposalStreams
from .states import State, batch_size, cat, tree_leaves, tree_map
from .runfolder import RunFolder
from .trainer import Trainer, TrainingBatch

__all__ = ["DataParallelTrainer", "RankFailureError", "launched_world", "shard_sizes", "shard_seed", "shutdown"]


class RankFailureError(EGMError):
    """Another rank of a data-parallel run failed (or the launcher stopped this one)."""


class _Terminated(BaseException):
    """torchrun's SIGTERM (a BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it)."""


def launched_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not launched by it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (they are set by torchrun); "
                          "launch with `torchrun --nproc-per-node N -m egm_framework.cli train ...`") from None


def shard_sizes(n: int, shards: int) -> list[int]:
    """Rows of each shard when n rows are split into ``shards``: the first n mod shards get one more."""
    q, rem = divmod(n, shards)
    return [q + (1 if s < rem else 0) for s in range(shards)]


def shard_seed(seed: int, shard: int, stream: int = 0) -> int:
    """Seed of a shard's torch stream: for batch shards (stream 0) the run seed itself for shard 0, a
    SeedSequence child otherwise; proposal shards (stream 1) are children of their own."""
    if shard == 0 and stream == 0:
        return seed
    key = (shard,) if stream == 0 else (shard, stream)
    a, b = np.random.SeedSequence(seed, spawn_key=key).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _looks_distributed(exc: BaseException) -> bool:
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset", "peer"))


class DataParallelTrainer(Trainer):
    """The trainer for ``egm train``: one process, or one rank of a torchrun job (module docstring).

    With one rank and one shard it is the plain :class:`Trainer`, step for step."""

    def __init__(self, cfg: RunConfig, run_dir, registry=None, device: str | None = None):
        self.rank, self.world, local_rank = launched_world()
        dev = resolve_device(device or cfg.train.device)
        if self.world > 1:
            if dev.type == "cuda":
                if local_rank >= torch.cuda.device_count():
                    raise ConfigError(f"local rank {local_rank} has no GPU of its own (this node has "
                                      f"{torch.cuda.device_count()}); launch at most that many processes per node")
                dev = torch.device("cuda", local_rank)
                torch.cuda.set_device(dev)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        cfg = self._resolve_shards(cfg)
        shards = cfg.train.batch_shards
        super().__init__(cfg, run_dir, registry=registry, device=str(dev))
        self.is_main = self.rank == 0
        self.shards = shards
        self.owned = list(range(self.rank, shards, self.world))
        self.rngs: dict[int, tuple[torch.Generator, np.random.Generator]] = {}
        for s in self.owned:
            if s == 0:
                self.rngs[s] = (self.gen, self.host_rng)
            else:
                g = torch.Generator(device=self.device)
                g.manual_seed(shard_seed(cfg.train.seed, s))
                self.rngs[s] = (g, np.random.default_rng(np.random.SeedSequence(cfg.train.seed, spawn_key=(s,))))
        self.by_proposals = cfg.train.parallel == "proposals"
        if self.by_proposals:  # every rank draws the whole batch from shard 0's stream, its proposals from its own
            P = cfg.train.proposal_shards
            self.proposal_sizes = shard_sizes(cfg.estimator.num_proposals, P)
            self.proposal_rngs = {p: torch.Generator(device=self.device) for p in range(self.rank, P, self.world)}
            for p, g in self.proposal_rngs.items():
                g.manual_seed(shard_seed(cfg.train.seed, p, stream=1))
        self._synced_fraction = 0.0
        #: per step since the last log line: did this rank's rows have a finite weight (the dead-batch
        #: check needs the global batch: dead only if no rank's rows had one)
        self._alive_steps: list[torch.Tensor] = []
        if self.world > 1:
            self._comm_device = self.device if dev.type == "cuda" else torch.device("cpu")
            with torch.no_grad():
                for t in self._replicated_tensors():
                    dist.broadcast(t, 0)
            signal.signal(signal.SIGTERM, self._on_sigterm)
            if self.energy_loss_fn is not None and not self.by_proposals:
                self.energy_loss_fn.reduce_sum = self._all_reduce_sum
                most = max(sum(shard_sizes(cfg.train.batch_size, shards)[r::self.world]) for r in range(self.world))
                self.energy_loss_fn.gather_rows = lambda rows: torch.cat(self._all_gather_padded(rows, most))

    def _resolve_shards(self, cfg: RunConfig) -> RunConfig:
        """cfg with train.batch_shards (and proposal_shards) resolved and checked against the rank count."""
        tc = cfg.train
        by_proposals = tc.parallel == "proposals"
        key = "proposal_shards" if by_proposals else "batch_shards"
        if by_proposals and (tc.batch_shards or 1) != 1:
            raise ConfigError(f"train.batch_shards = {tc.batch_shards} with train.parallel = \"proposals\": the ranks "
                              "split each row's proposals, not the batch; leave batch_shards out")
        if not by_proposals and tc.proposal_shards is not None:
            raise ConfigError("train.proposal_shards is used only with train.parallel = \"proposals\"; leave it out "
                              "or set train.parallel = \"proposals\"")
        est = cfg.estimator
        if by_proposals:
            for name in ("final_num_proposals", "energy_num_proposals"):
                value = getattr(est, name)
                if value is not None and value != est.num_proposals:
                    raise ConfigError(
                        f"estimator.{name} = {value} with train.parallel = \"proposals\": the ranks split one K = "
                        f"estimator.num_proposals = {est.num_proposals} for every row, so a second K is not supported "
                        f"there; leave estimator.{name} out, or use train.parallel = \"batch\"")
            if est.sampler_proposals > 0:
                raise ConfigError(
                    f"estimator.sampler_proposals = {est.sampler_proposals} with train.parallel = \"proposals\": the "
                    "ranks split the path's proposals of every row, not the sampler's; set estimator.sampler_proposals "
                    "= 0, or use train.parallel = \"batch\"")
            if est.sampler_bridges:
                raise ConfigError(
                    "estimator.sampler_bridges = true with train.parallel = \"proposals\": the ranks split the path's "
                    "proposals of every row, not the sampler's; set estimator.sampler_bridges = false, or use "
                    "train.parallel = \"batch\"")
        shards = getattr(tc, key) or self.world
        tc = attrs.evolve(tc, **({"batch_shards": 1, "proposal_shards": shards} if by_proposals else
                                 {"batch_shards": shards}))
        if shards < self.world:
            raise ConfigError(
                f"train.{key} = {shards}: the {'proposals are' if by_proposals else 'batch is'} split into {shards} "
                f"shard(s), so at most {shards} rank(s) can share them, but {self.world} were launched; launch ≤ "
                f"{shards} processes, or pass --set train.{key}={self.world} (on resume this re-splits them; the new "
                "shards' random streams start fresh)")
        if cfg.estimator.proposal_allocation != "uniform" and (shards > 1 or self.world > 1):
            raise ConfigError(
                f"estimator.proposal_allocation = {cfg.estimator.proposal_allocation!r} is not supported with "
                f"{'several ranks' if self.world > 1 else f'train.{key} = {shards}'} yet (each shard would allocate "
                "its proposals from its own ESS, so results would depend on the split); set "
                "estimator.proposal_allocation = \"uniform\", or train in one process with one shard")
        sizes = {"estimator.num_proposals": cfg.estimator.num_proposals} if by_proposals else {
            "train.batch_size": tc.batch_size, "train.buffer_refresh": tc.buffer_refresh}
        for name, value in sizes.items():
            if value < shards:
                raise ConfigError(f"{name} = {value} is smaller than train.{key} = {shards}; every shard needs at "
                                  "least one")
        return attrs.evolve(cfg, train=tc)

    # ------------------------------------------------------------------ helpers
    @property
    def _sharded(self) -> bool:
        """Each rank holds only part of the batch (or one process several shards of it)."""
        return self.shards > 1 or (self.world > 1 and not self.by_proposals)

    def _proposal_streams(self) -> ProposalStreams:
        return ProposalStreams(segments=[(g, self.proposal_sizes[p]) for p, g in self.proposal_rngs.items()],
                               combine=self._combine_proposals if self.world > 1 else None)

    def _combine_proposals(self, m, s, s2, acc):
        """Merge the ranks' online-softmax statistics of the same rows exactly: rescale each rank's sums
        to the global running maximum, then add them up (one max and one sum all-reduce)."""
        top = m.detach().to(self._comm_device, copy=True)
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        top = top.to(m.device)
        zero = torch.zeros_like(m)
        f = torch.where(torch.isfinite(m), torch.exp(torch.where(torch.isfinite(m), m, zero)
                                                     - torch.where(torch.isfinite(top), top, zero)), zero)
        leaves = tree_leaves(acc) if acc is not None else []
        scaled = [s * f, s2 * f * f] + [a * f.view(-1, *([1] * (a.dim() - 1))).to(a.dtype) for a in leaves]
        packed = self._all_reduce_sum(torch.cat([x.reshape(-1).double() for x in scaled]))
        out, off = [], 0
        for x in scaled:
            out.append(packed[off: off + x.numel()].to(x.dtype).view_as(x))
            off += x.numel()
        it = iter(out[2:])
        return top, out[0], out[1], (tree_map(lambda _: next(it), acc) if acc is not None else None)

    def _replicated_tensors(self) -> list[torch.Tensor]:
        mods = [m for m in (self.model, self.model_ema, self.energy_net, self.energy_ema) if m is not None]
        return [t.data for m in mods for t in (*m.parameters(), *m.buffers())]

    @staticmethod
    def _on_sigterm(signum, frame):  # noqa: ARG004
        raise _Terminated("stopped by the launcher (torchrun stops every rank when one of them fails)")

    def _all_gather_padded(self, mine: torch.Tensor, most: int) -> list[torch.Tensor]:
        """Every rank's ``mine`` (at most ``most`` rows), each zero-padded to ``most`` rows: all_gather
        needs equal sizes, and a fixed bound needs no exchange of sizes (no host synchronization)."""
        padded = mine.new_zeros((most, *mine.shape[1:]))
        padded[: mine.shape[0]] = mine
        out = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(out, padded)
        return out

    def _gather_shards(self, local: list[State], sizes: list[int]) -> State:
        """All shards in shard order on every rank, from each rank's own shards ``local`` (owned order)."""
        if self.world == 1:
            return cat(local) if len(local) > 1 else local[0]
        W, S = self.world, self.shards
        rows = [sum(sizes[s] for s in range(r, S, W)) for r in range(W)]
        most = max(rows)
        per_shard = [tree_leaves(x) for x in local]

        def gather_leaf(i: int) -> torch.Tensor:
            out = self._all_gather_padded(torch.cat([leaves[i] for leaves in per_shard]), most)
            pieces: dict[int, torch.Tensor] = {}
            for r in range(W):
                off = 0
                for s in range(r, S, W):
                    pieces[s] = out[r][off: off + sizes[s]]
                    off += sizes[s]
            return torch.cat([pieces[s] for s in range(S)])

        gathered = iter([gather_leaf(i) for i in range(len(per_shard[0]))])
        return tree_map(lambda _: next(gathered), local[0])

    # ------------------------------------------------------------------ the step
    def training_batch(self) -> TrainingBatch:
        if self.by_proposals:
            return self.draw_batch(self.cfg.train.batch_size, self.gen, self.host_rng, self._proposal_streams())
        if not self._sharded:
            return super().training_batch()
        sizes = shard_sizes(self.cfg.train.batch_size, self.shards)
        parts = [self.draw_batch(sizes[s], *self.rngs[s]) for s in self.owned]
        if len(parts) == 1:
            return parts[0]

        def join(name: str) -> Any:
            vals = [getattr(p, name) for p in parts]
            return None if vals[0] is None else cat(vals)

        return TrainingBatch(**{f.name: join(f.name) for f in attrs.fields(TrainingBatch)})

    def _batch_mean(self, v: torch.Tensor) -> torch.Tensor:
        """This rank's share of the global batch mean of per-row values: Σ_local v / B."""
        if not self._sharded:
            return super()._batch_mean(v)
        return v.sum() / self.cfg.train.batch_size

    def _all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        y = x.detach().to(self._comm_device, copy=True)
        dist.all_reduce(y)
        return y.to(x.device)

    def _sync_gradients(self) -> None:
        if self.world == 1:
            return
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        for dtype in sorted({g.dtype for g in grads}, key=str):
            group = [g for g in grads if g.dtype == dtype]
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            if self.by_proposals:  # every rank computed the same loss: average
                flat /= self.world
            off = 0
            for g in group:
                g.copy_(flat[off: off + g.numel()].view_as(g))
                off += g.numel()

    def _flush_stats(self) -> dict:
        if self.world == 1:
            return super()._flush_stats()
        # the ranks' sums of this log interval, added up (float64 keeps the energy-evaluation count exact)
        names = ("_loss_sum", "_eloss_sum", "_ess_sum", "_ess_cnt", "_eloss_bin_sum", "_eloss_bin_cnt", "_edropped")
        parts = [getattr(self, k).reshape(-1) for k in names]
        alive = torch.stack(self._alive_steps).double() if self._alive_steps else torch.zeros(0, dtype=torch.float64,
                                                                                            device=self.device)
        self._alive_steps = []
        evals = torch.tensor([float(self.estimator.energy_evals)], dtype=torch.float64, device=self.device)
        packed = self._all_reduce_sum(torch.cat([p.double() for p in parts] + [alive, evals]))
        if self.by_proposals:  # the same statistics on every rank; only the energy evaluations add up
            packed[:-1] /= self.world
        off = 0
        for k, p in zip(names, parts):
            setattr(self, k, packed[off: off + p.numel()].to(p.dtype).view_as(getattr(self, k)))
            off += p.numel()
        if alive.numel():  # a step is dead when no rank's rows had a finite weight
            self._dead_batches = (packed[off: off + alive.numel()] == 0).sum().to(self._dead_batches.dtype)
        rec = super()._flush_stats()
        rec["energy_evals"] = int(packed[-1])
        return rec

    def _record(self, loss, eloss, t, ess, eloss_rows=None, log_mean_weight=None) -> None:
        super()._record(loss, eloss, t, ess, eloss_rows, log_mean_weight)
        if self.world > 1 and not self.by_proposals and log_mean_weight is not None:
            self._alive_steps.append(torch.isfinite(log_mean_weight).any())

    def _energy_outlier_keep(self, x: State) -> torch.Tensor:
        """Rank 0's verdict on every rank (the refill is gathered, so identical everywhere, but the guard's
        reference rows come from shard 0's stream, which only rank 0 holds; with the proposal split every
        rank draws them, keeping its copy of that stream in step)."""
        if self.world == 1:
            return super()._energy_outlier_keep(x)
        if self.is_main or self.by_proposals:
            keep = super()._energy_outlier_keep(x)
        else:
            keep = torch.ones(batch_size(x), dtype=torch.bool, device=self.device)
        flag = keep.to(self._comm_device, torch.uint8)
        dist.broadcast(flag, 0)
        return flag.to(self.device).bool()

    def simulate_for_buffer(self, n: int, steps: int) -> State:
        if not self._sharded:
            return super().simulate_for_buffer(n, steps)
        sizes = shard_sizes(n, self.shards)
        local = [self.sample(sizes[s], steps, generator=self.rngs[s][0]) for s in self.owned]
        return self._gather_shards(local, sizes)

    # ------------------------------------------------------------------ time budget: rank 0's clock
    def _out_of_time(self, t0: float) -> bool:
        if self.world == 1 or self.cfg.train.max_seconds is None:
            return super()._out_of_time(t0)
        flags = torch.tensor([float(super()._out_of_time(t0)), Trainer._time_fraction(self)],
                             dtype=torch.float64, device=self._comm_device)
        dist.broadcast(flags, 0)
        self._synced_fraction = float(flags[1])
        return bool(flags[0] > 0)

    def _time_fraction(self) -> float:
        if self.world == 1 or self.cfg.train.max_seconds is None:
            return super()._time_fraction()
        return self._synced_fraction

    # ------------------------------------------------------------------ rank 0 alone writes
    def _log(self, rec: dict) -> None:
        if self.is_main:
            super()._log(rec)

    def _write_config(self) -> None:
        if self.is_main:
            super()._write_config()

    @classmethod
    def resume(cls, run_dir, registry=None, device: str | None = None, overrides: list[str] = ()) -> "Trainer":
        """Rank 0 resumes as one process does (takes the lock, truncates the log, records the resume);
        the other ranks only read the same config and checkpoint."""
        if launched_world()[0] == 0:
            return super().resume(run_dir, registry=registry, device=device, overrides=overrides)
        return cls._from_folder(RunFolder(run_dir), list(overrides), registry, device)

    def fit(self, evaluate_at_end: bool = True) -> dict | None:
        try:
            if self.world == 1:
                return super().fit(evaluate_at_end=evaluate_at_end)
            super().fit(evaluate_at_end=False)
            # all ranks leave the group together (a rank that leaves while another still talks to it can
            # abort that one); the evaluation needs no other rank
            dist.barrier()
            shutdown()
        except (_Terminated, RuntimeError) as exc:
            if self.world > 1:  # torchrun's SIGTERM may follow a lost peer: it must not cut this report short
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                except _Terminated:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if isinstance(exc, _Terminated):
                raise RankFailureError(self._stopped_message(str(exc))) from None
            if self.world > 1 and _looks_distributed(exc):
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # gloo: "[file:line] Read error …"
                raise RankFailureError(self._stopped_message(f"lost contact with another rank ({first})")) from None
            raise
        if evaluate_at_end and self.is_main:
            from .evaluation import evaluate_trainer

            return evaluate_trainer(self)
        return None

    def _stopped_message(self, why: str) -> str:
        return (f"rank {self.rank} of {self.world}: training stopped at step {self.step}: {why}. The last "
                f"checkpoint in {self.run_dir / 'checkpoints'} is kept; resume with `torchrun --nproc-per-node N "
                f"-m egm_framework.cli train --resume {self.run_dir}` (any N ≤ train.batch_shards = {self.shards})")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        d = super().state_dict()
        mine = {s: (g.get_state(), json.dumps(h.bit_generator.state)) for s, (g, h) in self.rngs.items()}
        if self.world > 1:
            everyone: list[Any] = [None] * self.world
            dist.all_gather_object(everyone, mine)
            for part in everyone:
                mine.update(part)
        if self.world > 1:  # each rank counts its own energy evaluations; the checkpoint holds the total
            d["energy_evals"] = int(self._all_reduce_sum(torch.tensor([float(self.estimator.energy_evals)],
                                                                      dtype=torch.float64))[0])
        d["batch_shards"] = self.shards
        d["shard_rngs"] = [{"generator": mine[s][0], "host_rng": mine[s][1]} for s in range(1, self.shards)]
        if self.by_proposals:
            streams = {p: g.get_state() for p, g in self.proposal_rngs.items()}
            if self.world > 1:
                everyone = [None] * self.world
                dist.all_gather_object(everyone, streams)
                for part in everyone:
                    streams.update(part)
            d["proposal_rngs"] = [streams[p] for p in range(len(self.proposal_sizes))]
        return d

    def load_state_dict(self, d: dict, source: str = "the checkpoint") -> None:
        super().load_state_dict(d, source)  # shard 0's streams are the trainer's own generators
        if not self.is_main:
            self.estimator.energy_evals = 0  # rank 0 carries the total so far
        for p, g in getattr(self, "proposal_rngs", {}).items():
            if p < len(d.get("proposal_rngs", [])):
                g.set_state(d["proposal_rngs"][p])
        saved = d.get("shard_rngs", [])
        old = int(d.get("batch_shards", 1 + len(saved)))
        if self.is_main and old != self.shards:
            what = (f"shards {old}..{self.shards - 1} start fresh random streams" if self.shards > old
                    else f"the streams of shards {self.shards}..{old - 1} are dropped")
            print(f"note: the checkpoint was trained with train.batch_shards = {old}; continuing with {self.shards} "
                  f"({what})", file=sys.stderr)
        for s, (g, h) in self.rngs.items():
            if 1 <= s <= len(saved):
                g.set_state(saved[s - 1]["generator"])
                h.bit_generator.state = json.loads(saved[s - 1]["host_rng"])
        if self.world > 1:
            steps = torch.tensor([self.step, self.outer], dtype=torch.int64, device=self._comm_device)
            ref = steps.clone()
            dist.broadcast(ref, 0)
            if not torch.equal(steps, ref):
                raise CheckpointError(
                    f"rank {self.rank} read a checkpoint at step {self.step}, rank 0 one at step {int(ref[0])}: "
                    f"every rank must see the same run folder {self.run_dir} (a filesystem shared by all nodes)")

    def save_checkpoint(self) -> None:
        d = self.state_dict()  # a collective: every rank takes part, rank 0 alone writes
        if self.is_main:
            self.folder.save_checkpoint(d)
