"""Plugin code seen through a guard: an exception raised inside an energy becomes one clear error
naming the energy, instead of a traceback from deep inside training or evaluation."""

from __future__ import annotations

import torch

from .errors import EGMError, EnergyEvaluationError


def _reraise(name: str, what: str, exc: Exception):
    if isinstance(exc, (EGMError, MemoryError, torch.OutOfMemoryError, KeyboardInterrupt)):
        raise exc
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    raise EnergyEvaluationError(f"energy {name!r} raised {type(exc).__name__} in {what}"
                                f"{': ' + first if first else ''}; fix the energy (see `egm components energy` "
                                "for where it comes from)") from None


class GuardedEnergy:
    """Calls through to ``energy``; exceptions from ``__call__``, ``ground_truth``, ``observables``
    and ``extra_metrics`` become an :class:`EnergyEvaluationError`. ``NotImplementedError`` from
    ``ground_truth`` (no ground truth) passes unchanged. Every other attribute is the energy's."""

    def __init__(self, energy, name: str):
        self._energy = energy
        self._name = name

    def __call__(self, x):
        try:
            return self._energy(x)
        except Exception as exc:  # noqa: BLE001
            _reraise(self._name, "__call__", exc)

    def ground_truth(self, *args, **kwargs):
        try:
            return self._energy.ground_truth(*args, **kwargs)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001
            _reraise(self._name, "ground_truth (sampling the reference set)", exc)

    def observables(self, x):
        try:
            return self._energy.observables(x)
        except Exception as exc:  # noqa: BLE001
            _reraise(self._name, "observables", exc)

    def extra_metrics(self, *args, **kwargs):
        try:
            return self._energy.extra_metrics(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            _reraise(self._name, "extra_metrics", exc)

    def __getattr__(self, item):
        return getattr(self._energy, item)

    def __repr__(self) -> str:
        return repr(self._energy)


def guarded_energy(energy, name: str):
    return energy if isinstance(energy, GuardedEnergy) else GuardedEnergy(energy, name)
