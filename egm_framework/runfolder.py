"""A run folder and the rules for touching it, in one place.

    RUN/config.toml           the resolved config; always describes the checkpoint
    RUN/metrics.jsonl         one JSON object per log line (valid JSON: non-finite numbers are null)
    RUN/checkpoints/last.pt   the latest checkpoint (written atomically; it also holds the config)
    RUN/components.json       where each component came from (plugin, distribution, version)
    RUN/resumes.jsonl         one line per `egm train --resume`: the step and the overrides it applied
    RUN/.egm.lock             held (fcntl) by the one process training the run; holds its pid
    RUN/eval.json, report.md, samples.pt, ground_truth.pt, figures/   outputs of the evaluation

Rules:

* Only a writer holding the lock (``egm train``, ``egm train --resume``) changes config.toml,
  metrics.jsonl or the checkpoint; a second writer gets a clear error naming the holder's pid. The
  lock is an ``fcntl.flock`` on ``.egm.lock``: the kernel releases it when its holder dies, so a
  lock file left by a killed run is stale and is taken over.
* Reading (``egm sample``, ``egm evaluate``) never writes config.toml, metrics.jsonl or checkpoints;
  a read-only run folder can be sampled. ``egm evaluate`` writes only its own outputs, into the run
  folder or into ``--out``.
* Only the writer truncates metrics.jsonl (on resume, to the checkpoint's step).
* Files are replaced atomically (temporary file, fsync, rename); a failed write removes its
  temporary file and leaves the previous version in place.
* Nothing deletes a file it did not create: ``--force`` removes only the files named above.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import CheckpointError, EGMError

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoints/last.pt"
RESUMES = "resumes.jsonl"
LOCK = ".egm.lock"
#: what a run folder may hold that egm wrote (``--force`` removes these and nothing else)
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, RESUMES, "components.json", "eval.json", "report.md", "samples.pt",
             "ground_truth.pt")
RUN_DIRS = ("checkpoints", "figures")
#: keys that may change on resume: they change how long / how fast training runs, not what it learns
#: to sample from or the shapes in the checkpoint
RESUMABLE_KEYS = ("train.outer_iterations", "train.inner_iterations", "train.max_seconds", "train.lr",
                  "train.lr_final", "train.grad_clip", "train.device", "train.progress", "train.log_every",
                  "train.checkpoint_every", "train.eval_every", "train.eval_samples", "train.batch_size",
                  "train.buffer_refresh", "train.buffer_sample_steps", "train.ema_decay", "train.batch_shards", "train.proposal_shards",
                  "estimator.chunk_memory_mb", "estimator.num_proposals", "eval.*")

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


class RunFolderError(EGMError):
    """A run folder cannot be used as asked (in use, not writable, full, not a run)."""


def describe_os_error(exc: OSError, what: str, fix: str) -> RunFolderError:
    """A one-line error for a failed write: full disk and read-only folders get their own words."""
    if exc.errno in _NO_SPACE:
        return RunFolderError(f"no space left while writing {what} ({os.strerror(exc.errno)}); {fix}")
    if exc.errno in _READ_ONLY:
        return RunFolderError(f"cannot write {what}: the folder is read-only ({os.strerror(exc.errno)}); {fix}")
    return RunFolderError(f"cannot write {what}: {exc.strerror or exc}; {fix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, write) -> None:
    """Write through ``write(fh)`` to ``.NAME.tmp-PID`` in the same folder, fsync, rename over ``path``.
    If anything fails the temporary file is removed and ``path`` keeps its previous content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def torch_save(obj: Any, fh) -> None:
    """``torch.save`` to an open file; a failed write (full disk, file-size limit) raises the
    ``OSError`` itself, not the ``RuntimeError`` torch's zip writer wraps it in."""
    try:
        torch.save(obj, fh)
    except RuntimeError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            raise cause from None
        raise


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` atomically (see :func:`atomic_write`)."""
    atomic_write(Path(path), lambda fh: torch_save(obj, fh))


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, plus the list of where that happened."""
    def walk(v, where):
        if isinstance(v, float) and not math.isfinite(v):
            notes.append(f"{where} = {v}")
            return None
        if isinstance(v, dict):
            return {k: walk(e, f"{where}.{k}" if where else str(k)) for k, e in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(e, f"{where}[{i}]") for i, e in enumerate(v)]
        return v
    notes: list[str] = []
    return walk(obj, ""), notes


def dumps_json(obj: Any, **kw) -> str:
    """Strict JSON: non-finite numbers become null and are listed under ``"non_finite"``."""
    clean, notes = finite_json(obj)
    if notes and isinstance(clean, dict):
        clean["non_finite"] = notes
    return json.dumps(clean, allow_nan=False, **kw)


class RunFolder:
    """One run folder; see the module docstring for the rules it enforces."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ opening
    def require_run(self) -> "RunFolder":
        """Check that this is a run folder `egm train` created (for reading or resuming)."""
        if self.path.is_file():
            raise RunFolderError(f"{self.path} is a file, not a run folder; pass the folder `egm train` created")
        if not self.path.is_dir():
            raise RunFolderError(f"{self.path} is not a run folder (no such folder); pass the folder `egm train` "
                                 "created (see `ls runs/`)")
        if not self.config_path.is_file():
            raise RunFolderError(f"{self.path} is not a run folder (no config.toml); pass the folder `egm train` "
                                 "created")
        return self

    def prepare_new(self, *, force: bool = False, command: str = "egm train") -> None:
        """Make the folder for a new run. An existing non-empty folder is refused; with ``force``
        only the files egm writes into a run folder are removed (anything else is kept)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"--out {p} is an existing file, not a folder; choose a folder path for the run")
        if p.is_dir() and any(p.iterdir()):
            if not force:
                hint = (f"use `egm train --resume {p}` to continue it, " if self.config_path.exists() else "")
                raise RunFolderError(f"--out {p} already exists and is not empty; {hint}choose another --out, or "
                                     f"pass --force to `{command}` to replace the run files in it (other files "
                                     "are kept)")
            self.acquire_lock()
            self.remove_run_files()
            return
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise describe_os_error(exc, f"the run folder {p}", "choose another --out") from None
        self.acquire_lock()

    def open_for_writing(self) -> None:
        """Create the folder if needed and take the lock (library use: ``Trainer(cfg, dir).fit()``)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise describe_os_error(exc, f"the run folder {self.path}", "choose another folder") from None
        self.acquire_lock()

    def remove_run_files(self) -> list[Path]:
        """Remove the files egm writes into a run folder (and nothing else); needs the lock."""
        self._need_lock("replace the run files")
        removed = []
        for name in RUN_FILES:
            f = self.path / name
            if f.is_file():
                f.unlink()
                removed.append(f)
        figs = self.path / "figures"
        if figs.is_dir():
            for f in figs.glob("*.png"):
                f.unlink()
                removed.append(f)
        for f in self._stale_temporaries(all_pids=True):
            f.unlink()
        for d in RUN_DIRS:
            try:
                (self.path / d).rmdir()  # only if empty: other files in it are kept
            except OSError:
                pass
        return removed

    # ------------------------------------------------------------------ lock
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def lock_holder(self) -> int | None:
        try:
            return int(self.lock_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def acquire_lock(self) -> None:
        """Take the exclusive writer lock, or raise a clear error naming the process that holds it."""
        if self._lock_fd is not None:
            return
        import fcntl

        for _ in range(5):
            try:  # read-only descriptor: holding it keeps no file of the folder open for writing
                fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
            except OSError as exc:
                raise describe_os_error(exc, f"the lock file of run folder {self.path}",
                                        "training needs a writable run folder: fix its permissions or copy it "
                                        "elsewhere and resume the copy") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                pid = self.lock_holder()
                who = f"pid {pid}" if pid else "another process"
                raise RunFolderError(
                    f"run folder {self.path} is being written by another egm process ({who}); wait for it to "
                    f"finish or stop it, then `egm train --resume {self.path}` (reading it with `egm sample` "
                    "works meanwhile)") from None
            except OSError:  # no flock on this file system: fall back to the pid in the file
                pid = self.lock_holder()
                if pid and pid != os.getpid() and _pid_alive(pid):
                    os.close(fd)
                    raise RunFolderError(f"run folder {self.path} is being written by another egm process (pid "
                                         f"{pid}); wait for it to finish or stop it") from None
            # the file may have been removed by a holder releasing it between open and flock: retry
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            # a lock file left by a killed run (its flock died with it) is stale: take it over
            try:
                self.lock_path.write_text(f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            except OSError as exc:
                os.close(fd)
                raise describe_os_error(exc, f"the lock file of run folder {self.path}",
                                        "training needs a writable run folder") from None
            self._lock_fd = fd
            return
        raise RunFolderError(f"could not take the lock of run folder {self.path}; try again")  # pragma: no cover

    def release_lock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self.lock_path.unlink()
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    def _need_lock(self, what: str) -> None:
        if self._lock_fd is None:
            raise RunFolderError(f"internal: {what} in {self.path} needs the run folder's lock")  # a bug, not input

    # ------------------------------------------------------------------ config
    def read_config_dict(self) -> dict:
        from .config import load_config_dict

        return load_config_dict(self.config_path)

    def write_config(self, cfg_dict: dict, provenance: dict | None = None) -> None:
        """config.toml (and components.json: where each component came from, see :mod:`.provenance`)."""
        from .config import to_toml
        from .provenance import PROVENANCE_FILE

        self._need_lock("writing config.toml")
        self._write(self.config_path, to_toml(cfg_dict).encode(), CONFIG)
        if provenance is not None:
            self._write(self.path / PROVENANCE_FILE, (json.dumps(provenance, indent=2) + "\n").encode(), PROVENANCE_FILE)

    def record_resume(self, step: int, overrides: list[str]) -> None:
        self._need_lock("recording a resume")
        line = dumps_json({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "overrides": list(overrides)})
        self._append(self.path / RESUMES, line, RESUMES)

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, rec: dict) -> None:
        self._need_lock("writing metrics.jsonl")
        self._append(self.metrics_path, dumps_json(rec), METRICS)

    def read_metrics(self) -> tuple[list[dict], int]:
        """The log records, and how many lines were unreadable (a line cut by a kill, garbage)."""
        return read_jsonl(self.metrics_path)

    def truncate_metrics(self, step: int) -> int:
        """Keep the log lines up to ``step`` (the checkpoint's) and drop the rest, unreadable lines
        included; only the lock holder (``egm train --resume``) does this. Returns lines dropped."""
        self._need_lock("truncating metrics.jsonl")
        if not self.metrics_path.exists():
            return 0
        recs, bad = self.read_metrics()
        kept = [r for r in recs if isinstance(r.get("step", 0), (int, float)) and r.get("step", 0) <= step]
        data = "".join(dumps_json(r) + "\n" for r in kept).encode()
        self._write(self.metrics_path, data, METRICS)
        return len(recs) - len(kept) + bad

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, state: dict) -> None:
        self._need_lock("writing a checkpoint")
        try:
            atomic_save(state, self.checkpoint_path)
        except OSError as exc:
            raise describe_os_error(exc, f"checkpoint {self.checkpoint_path}",
                                    f"the previous checkpoint is kept; fix it and `egm train --resume {self.path}`"
                                    ) from None

    def load_checkpoint(self) -> dict:
        return load_checkpoint(self.checkpoint_path)

    def _stale_temporaries(self, all_pids: bool = False) -> Iterator[Path]:
        """``.NAME.tmp-PID`` files left by a writer that died mid-write (not by a live process)."""
        for d in (self.path, self.path / "checkpoints"):
            if not d.is_dir():
                continue
            for f in d.glob(".*.tmp-*"):
                pid = f.name.rsplit("-", 1)[-1]
                if all_pids or not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid)):
                    yield f

    def clean_temporaries(self) -> list[Path]:
        self._need_lock("cleaning temporary files")
        removed = []
        for f in list(self._stale_temporaries()):
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
        return removed

    # ------------------------------------------------------------------ outputs
    def writable(self) -> bool:
        """Whether files can be created in the folder (a probe, since root ignores permission bits)."""
        probe = self.path / f".egm-write-probe-{os.getpid()}"
        try:
            probe.touch()
            probe.unlink()
            return True
        except OSError:
            return False

    # ------------------------------------------------------------------ writes
    def _write(self, path: Path, data: bytes, what: str) -> None:
        try:
            atomic_write(path, lambda fh: fh.write(data))
        except OSError as exc:
            raise describe_os_error(exc, f"{what} in {self.path}",
                                    f"the last checkpoint is kept; fix it and `egm train --resume {self.path}`"
                                    ) from None

    def _append(self, path: Path, line: str, what: str) -> None:
        try:
            with open(path, "a") as fh:
                fh.write(line + "\n")
        except OSError as exc:
            raise describe_os_error(exc, f"{what} in {self.path}",
                                    f"the last checkpoint is kept; fix it and `egm train --resume {self.path}`"
                                    ) from None


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of a JSON-lines file, and how many lines were unreadable (skipped)."""
    path = Path(path)
    if not path.exists():
        return [], 0
    recs, bad = [], 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(rec, dict):
            recs.append(rec)
        else:
            bad += 1
    return recs, bad


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resumable(key: str) -> bool:
    """Whether ``key`` (e.g. ``train.lr``) may differ from the checkpoint's config."""
    return key == "name" or key in RESUMABLE_KEYS or any(
        p.endswith(".*") and key.startswith(p[:-1]) for p in RESUMABLE_KEYS)


def check_config_change(old: dict, new: dict, context: str, fix: str) -> list[str]:
    """Keys that differ between two resolved configs (``RunConfig.to_dict()``); a difference in a key
    that changes the target, the space or the network shapes is a :class:`ConfigError` naming it.
    A key that ``old`` lacks and ``new`` has at its default is no difference: options are added with
    a default that keeps the earlier behaviour, so a run written before the key existed still opens."""
    from .config import section_defaults
    from .errors import ConfigError

    a, b = _flat(json.loads(json.dumps(old))), _flat(json.loads(json.dumps(new)))
    defaults = _flat(json.loads(json.dumps(section_defaults())))
    for key, value in defaults.items():
        if key not in a and b.get(key) == value:
            a[key] = value
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    for key in changed:
        if not resumable(key):
            raise ConfigError(
                f"{context} {key} is {a.get(key)!r} in the checkpoint and {b.get(key)!r} now; the checkpoint "
                f"was trained for {key} = {a.get(key)!r} (it changes the target, the space, the network shapes or "
                f"the estimator), so {fix}")
    return changed


def load_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)``: a checkpoint can hold tensors and plain containers only, so
    a malicious file cannot run code; anything unreadable is one clear error."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train first (`egm train CONFIG`) or pass the run folder")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            d = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"cannot read checkpoint {path}: it holds Python objects other than tensors and plain "
                              "containers, so it is not loaded (loading it could run code); restore it from a copy "
                              "or train again") from None
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}: {first[:200]}); it is damaged "
                              "or not an egm checkpoint: restore it from a copy or train again") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(d).__name__}, not an egm checkpoint; restore it "
                              "from a copy or train again")
    return d
