"""Errors that the CLI reports as one clear message (exit status 2, no traceback)."""

from __future__ import annotations

import difflib
from typing import Iterable


class EGMError(Exception):
    """Base class: the message says what was wrong and how to fix it."""


class ConfigError(EGMError, ValueError):
    """A configuration value is invalid; the message names the key path and the allowed range."""


class UnknownComponentError(EGMError, LookupError):
    pass


class DuplicateComponentError(EGMError):
    pass


class PluginLoadError(EGMError):
    pass


class EnergyEvaluationError(EGMError, ValueError):
    """An energy returned the wrong shape or non-finite values."""


class CheckpointError(EGMError):
    pass


def did_you_mean(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
