"""The key reference of ``docs/configuration.md``, generated from the attrs config classes.

    python -m egm_framework.config_reference --write docs/configuration.md    (or: make docs)
    python -m egm_framework.config_reference --check docs/configuration.md    exit 1 if out of date

Each key's type and default come from its attrs field, the allowed values from its validator
(``config._num`` / ``config._choice`` attach them), and its meaning from the ``#:`` comment above
the field in ``egm_framework/config.py``. **Adding a key**: write the field with a ``#:`` comment,
run ``make docs``; ``tests/test_docs.py`` fails while the reference in the docs is out of date or a
key has no description.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from pathlib import Path

import attrs

from . import config

BEGIN = ("<!-- BEGIN KEY REFERENCE: generated from egm_framework/config.py by `make docs` "
         "(python -m egm_framework.config_reference --write docs/configuration.md); do not edit by hand -->")
END = "<!-- END KEY REFERENCE -->"

#: descriptions of the keys that predate the ``#:`` convention (a ``#:`` comment in config.py wins)
LEGACY = {
    "estimator.num_proposals": "K, proposals per training point",
    "estimator.delta": "bootstrap step Δ: proposals go to r = min(t + Δ, 1)",
    "estimator.energy_ema_decay": "decay of the exponential moving average of the energy network",
    "estimator.energy_loss_weight": "weight of the energy-network loss in the total loss",
    "train.batch_size": "training points x_t per gradient step",
    "train.outer_iterations": "buffer refreshes (each followed by inner_iterations steps)",
    "train.inner_iterations": "gradient steps per buffer refresh",
    "train.lr": "Adam learning rate at the start of the cosine schedule",
    "train.grad_clip": "global gradient-norm clipping; unset: none",
    "train.buffer_size": "replay-buffer capacity (model samples x_1)",
    "train.buffer_refresh": "model samples simulated into the buffer per outer iteration",
    "train.seed": "seed of network initialization and of every training draw",
    "train.device": "\"auto\" (CUDA if available), \"cpu\", \"cuda\", \"cuda:N\" or \"mps\"",
    "train.progress": "show a progress bar on stderr",
    "eval.num_samples": "model samples, and size of each of the two ground-truth sets",
    "eval.sample_steps": "integration steps of the sampler (unused by exact samplers)",
    "eval.seed": "seed of the evaluation's model samples",
    "eval.figures": "write figures into the run folder",
}


def _field_comments(cls) -> dict[str, str]:
    """``#:`` comments directly above each field of ``cls`` in its source."""
    lines, _ = inspect.getsourcelines(cls)
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
            continue
        if pending:
            try:
                node = ast.parse(s).body[0] if s and not s.startswith(("@", "def ")) else None
            except SyntaxError:
                node = None
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                out[node.target.id] = " ".join(pending)
        pending = []
    return out


def _allowed(field) -> str:
    validators = field.validator
    if validators is None:
        return ""
    vs = getattr(validators, "_validators", None) or [validators]
    return "; ".join(getattr(v, "allowed", "") for v in vs if getattr(v, "allowed", ""))


def _default(field) -> str:
    d = field.default
    if isinstance(d, attrs.Factory):  # type: ignore[arg-type]
        return ""
    if d is None:
        return "unset"
    return f"`{config._toml_value(d)}`"


def key_rows(cls) -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, allowed, meaning) of each field of a section class."""
    comments = _field_comments(cls)
    rows = []
    for f in attrs.fields(cls):
        key = f"{cls.SECTION}.{f.name}"
        meaning = comments.get(f.name) or LEGACY.get(key, "")
        rows.append((f.name, str(f.type).replace("|", "or"), _default(f), _allowed(f), meaning))
    return rows


def undocumented_keys() -> list[str]:
    return [f"{cls.SECTION}.{r[0]}" for cls in config._SECTION_CLASSES.values() for r in key_rows(cls) if not r[4]]


def render() -> str:
    out = [BEGIN, "", "### Top level", "", "| key | type | meaning |", "|---|---|---|",
           "| `name` | str | run name (default `\"run\"`; the default run folder is `runs/<name>-<time>`) |", "",
           "### Component sections", "",
           "`[" + "]`, `[".join(config.COMPONENT_SECTIONS) + "]`: `name` (the registry name) plus that component's "
           "parameters, checked against its factory when it is built. `egm components KIND --params` lists every "
           "registered component's parameters with their defaults; the run folder's `config.toml` records them "
           "resolved, defaults included. `[energy_network]` is required when `estimator.kind = \"bootstrap\"`.", ""]
    for section, cls in config._SECTION_CLASSES.items():
        out += [f"### `[{section}]`", "", "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for key, typ, default, allowed, meaning in key_rows(cls):
            out.append(f"| `{key}` | {typ} | {default} | {allowed} | {meaning.replace('|', chr(92) + '|')} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def splice(text: str) -> str:
    """``text`` with the block between the markers replaced by :func:`render` (appended if absent)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + render() + tail
    return text.rstrip("\n") + "\n\n## Key reference\n\n" + render() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m egm_framework.config_reference")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="FILE", help="update the generated block of FILE in place")
    g.add_argument("--check", metavar="FILE", help="exit 1 if FILE's generated block is out of date")
    args = p.parse_args(argv)
    if args.write or args.check:
        path = Path(args.write or args.check)
        text = path.read_text()
        new = splice(text)
        if args.check:
            if new != text:
                print(f"{path}: key reference out of date; run `make docs`", file=sys.stderr)
                return 1
            return 0
        path.write_text(new)
        return 0
    print(render())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
