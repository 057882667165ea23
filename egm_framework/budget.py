"""Size estimates made from shapes before anything large is allocated.

A run whose replay buffer, network or proposal chunk cannot fit is refused up front with the
estimate and the keys to change, instead of growing until the machine dies. The estimate is a lower
bound of what training holds at once (activations of the network are not counted); it only has to
catch runs that are hopeless, not predict memory to the byte. The buffer and proposal parts are
checked before any network is built; a network too large to allocate fails at once (the allocator
refuses it) and is reported as such; the full estimate is checked again with the network's size.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .errors import EGMError

#: bytes per coordinate assumed for a state (torch.long tokens; float states take half)
STATE_ELEMENT_BYTES = 8


class ResourceError(EGMError):
    """A run or an output would not fit in memory or on disk."""


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def _numel(shape: Any) -> int:
    if isinstance(shape, torch.Size) or (isinstance(shape, tuple) and all(isinstance(s, int) for s in shape)):
        return int(math.prod(shape))
    if isinstance(shape, (tuple, list)):
        return sum(_numel(s) for s in shape)
    return int(shape)


def state_bytes(space) -> int:
    """Bytes of one state of ``space`` (an upper bound: 8 bytes per coordinate)."""
    return _numel(space.event_shape) * STATE_ELEMENT_BYTES


def available_memory(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (None when it cannot be read)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # noqa: BLE001
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def parameter_total(module) -> int | None:
    return sum(p.numel() for p in module.parameters()) if module is not None else None


def build_within_memory(make, what: str):
    """``make()``, with a failed allocation (a network larger than the memory) as a clear error."""
    try:
        return make()
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and "alloc" not in str(exc):
            raise
        detail = str(exc).split("DefaultCPUAllocator:")[-1].strip().splitlines()[0][:160]
        raise ResourceError(f"{what} does not fit in memory ({detail}); make it smaller (its hidden size, "
                            "channels or layers) or the state smaller (e.g. energy.L)") from None


def training_estimate(cfg, space, network_params: int | None, energy_network_params: int | None) -> dict[str, int]:
    """What training holds at once, by part, in bytes."""
    tc, est = cfg.train, cfg.estimator
    sb = state_bytes(space)
    parts = {
        f"replay buffer (train.buffer_size {tc.buffer_size} x {fmt_bytes(sb)} per state)": tc.buffer_size * sb,
        f"buffer refill (train.buffer_refresh {tc.buffer_refresh} states, simulated)": 3 * tc.buffer_refresh * sb,
        # the estimator chunks the K proposals to estimator.chunk_memory_mb, but one proposal per row
        # (B of them, with the energy's temporaries) is the least it can hold
        f"proposals (train.batch_size {tc.batch_size} x at least one proposal of {fmt_bytes(sb)})":
            max(int(est.chunk_memory_mb * 2**20), tc.batch_size * sb * 8),
        f"training batch (train.batch_size {tc.batch_size})": 4 * tc.batch_size * sb,
    }
    if network_params:
        parts[f"network ({network_params:,} parameters, with gradients and Adam state)"] = 16 * network_params
    if energy_network_params:
        parts[f"energy network ({energy_network_params:,} parameters, with EMA, gradients and Adam state)"] = (
            20 * energy_network_params)
    return parts


def check_training_fits(cfg, space, device: torch.device, network_params: int | None,
                        energy_network_params: int | None) -> None:
    parts = training_estimate(cfg, space, network_params, energy_network_params)
    total = sum(parts.values())
    free = available_memory(device)
    if free is None or total <= free:
        return
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:2]
    detail = "; ".join(f"{name}: {fmt_bytes(b)}" for name, b in top)
    raise ResourceError(
        f"this run needs at least {fmt_bytes(total)} of memory on {device.type}, more than the {fmt_bytes(free)} "
        f"available ({detail}); make the state smaller (e.g. energy.L), or lower train.buffer_size, "
        "train.batch_size or the network size")


def check_disk_fits(path: Path, nbytes: int, what: str, fix: str) -> None:
    """Refuse to start writing ``nbytes`` to ``path``'s file system when it has less room."""
    folder = Path(path).parent if not Path(path).is_dir() else Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if nbytes > free:
        raise ResourceError(f"{what} needs about {fmt_bytes(nbytes)} on disk, more than the {fmt_bytes(free)} free "
                            f"at {folder}; {fix}")
