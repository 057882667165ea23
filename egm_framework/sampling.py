"""``egm sample``: samples of a trained run written to a ``.pt`` or ``.npz`` file.

Small requests are drawn in one go. Large ones are streamed: each chunk of ``CHUNK`` samples is
written into memory-mapped ``.npy`` files next to the output as soon as it is drawn (memory stays at
one chunk), then packed into the output; a disk-space estimate is checked before anything is drawn.
The output appears atomically under its name only when complete; an existing file is replaced only
with ``--force``. The random stream is the same as ``Trainer.sample`` (chunks of ``CHUNK``), so a
streamed file equals an unstreamed one for the same seed.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from .budget import check_disk_fits, fmt_bytes
from .errors import ConfigError
from .runfolder import atomic_write, describe_os_error, torch_save
from .states import to_saveable

#: samples drawn per chunk (equal to Trainer.sample's chunk, which keeps the random stream identical)
CHUNK = 5000


def check_output_path(out: Path, force: bool) -> Path:
    if out.suffix not in (".pt", ".npz"):
        raise ConfigError(f"-o {out}: use a .pt or .npz file name")
    if out.is_dir():
        raise ConfigError(f"-o {out} is a folder; pass a file name ending in .pt or .npz")
    if out.exists() and not force:
        raise ConfigError(f"-o {out} already exists; pass --force to overwrite it, or choose another file name")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"-o {out}: {parent} is a file, not a folder; choose another output path")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"-o {out}: cannot write into {parent} (no permission); choose another output path")
    return out


def save_samples(data: dict[str, torch.Tensor], out: Path) -> None:
    """Write ``data`` (a saveable state) to ``out`` (.npz or .pt) atomically."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npz":
            atomic_write(out, lambda fh: np.savez(fh, **{k: v.numpy() for k, v in data.items()}))
        else:
            atomic_write(out, lambda fh: torch_save(data, fh))
    except OSError as exc:
        raise describe_os_error(exc, f"samples to {out}", "free space, or write to another disk with -o") from None


def write_samples(trainer, n: int, steps: int, generator: torch.Generator, out: Path, chunk: int = CHUNK) -> None:
    """Draw ``n`` samples and write them to ``out`` (see the module docstring)."""
    fix = "free space, lower -n, or write to another disk with -o"
    try:
        first = to_saveable(trainer.sample(min(chunk, n), steps, generator=generator))
        per_sample = sum(v[0].numel() * v.element_size() for v in first.values())
        streamed = n > chunk
        # streamed: the .npy parts and the packed output exist side by side until the end
        check_disk_fits(out, per_sample * n * (2 if streamed else 1), f"{n} samples ({fmt_bytes(per_sample)} each)",
                        fix)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not streamed:
            save_samples(first, out)
            return
        _stream(trainer, n, steps, generator, out, chunk, first)
    except OSError as exc:
        raise describe_os_error(exc, f"samples to {out}", fix) from None


def _stream(trainer, n: int, steps: int, generator: torch.Generator, out: Path, chunk: int,
            first: dict[str, torch.Tensor]) -> None:
    parts = {k: out.with_name(f".{out.name}.tmp-{os.getpid()}-{k}.npy") for k in first}
    bar = None
    try:
        arrays = {k: np.lib.format.open_memmap(parts[k], mode="w+", dtype=v.numpy().dtype, shape=(n, *v.shape[1:]))
                  for k, v in first.items()}
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"sampling to {out.name}", unit="samples", file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0)
        done, x = 0, first
        while True:
            m = next(iter(x.values())).shape[0]
            for k, v in x.items():
                arrays[k][done:done + m] = v.numpy()
            done += m
            bar.update(m)
            if done >= n:
                break
            x = to_saveable(trainer.sample(min(chunk, n - done), steps, generator=generator))
        for a in arrays.values():
            a.flush()
        del arrays
        if out.suffix == ".npz":  # an .npz is a zip of .npy files: store the parts as they are
            def pack(fh):
                with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                    for k, p in parts.items():
                        zf.write(p, arcname=f"{k}.npy")
            atomic_write(out, pack)
        else:  # tensors backed by the memory-mapped parts: torch.save reads them page by page
            data = {k: torch.from_numpy(np.load(p, mmap_mode="r+")) for k, p in parts.items()}
            atomic_write(out, lambda fh: torch_save(data, fh))
    finally:
        if bar is not None:
            bar.close()
        for p in parts.values():
            try:
                p.unlink()
            except OSError:
                pass
