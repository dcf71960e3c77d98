"""Display labels of a sweep's rows: the name a run goes by in the printed table, the
report and `results.csv`.

A row's `strategy` is its canonical spec, which leaves out the parameters at their
defaults (`replay` is `replay(mem_size=500)`) and says nothing of the training settings.
Where a parameter varies among rows, every row's label shows its value:
`replay(mem_size=200)` and `replay(mem_size=500)`; `naive [lr=0.01]` and `naive [lr=0.05]`.
Only labels are made here: a row's `strategy`, its `run_id` and the run keys stay as they
are (the `results.json` contract of docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lifelong.experiment.config import SWEEPABLE
from lifelong.spec import format_value, parse_one, split_top_level

Components = list[tuple[str, dict[str, Any]]]


def varying_settings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Training settings that differ between rows (a sweep over them), in a fixed order."""
    seen: dict[str, set[str]] = {k: set() for k in SWEEPABLE}
    for r in rows:
        for k in SWEEPABLE:
            seen[k].add(repr(_params(r).get(k)))
    return [k for k in SWEEPABLE if len(seen[k]) > 1]


def row_labels(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One display label per row: its strategy spec with every hyper-parameter that varies
    among the rows of the same strategies written out, then `[setting=value ...]` for the
    training settings that vary."""
    parsed = [_components(str(r.get("strategy"))) for r in rows]
    shapes: dict[tuple[str, ...], list[int]] = {}
    for i, parts in enumerate(parsed):
        if parts is not None:
            shapes.setdefault(tuple(name for name, _ in parts), []).append(i)
    labels = [str(r.get("strategy")) for r in rows]
    for shape, members in shapes.items():
        keys = _varying_params(shape, [rows[i] for i in members])
        for i in members:
            labels[i] = _render(parsed[i] or [], keys, _params(rows[i]))
    settings = varying_settings(rows)
    if settings:
        for i, r in enumerate(rows):
            p = _params(r)
            labels[i] += " [" + " ".join(f"{k}={p.get(k)}" for k in settings) + "]"
    return labels


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return row.get("params") or {}


def _components(spec: str) -> Components | None:
    """`[(name, params), ...]` of a hybrid spec, or None when it does not parse."""
    try:
        return [parse_one(part) for part in split_top_level(spec, "+")]
    except ValueError:
        return None


def _varying_params(shape: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    """The `name.param` keys of the strategies in `shape` whose values differ among the
    `rows` that record them (a failed run's row records no hyper-parameters)."""
    keys = sorted({k for r in rows for k in _params(r) if k.split(".")[0] in shape})
    return [k for k in keys if len({repr(p[k]) for r in rows if k in (p := _params(r))}) > 1]


def _render(parts: Components, keys: list[str], params: dict[str, Any]) -> str:
    """The spec with the values of `keys` (`name.param`) added from the row's params."""
    out = []
    for name, given in parts:
        shown = dict(given)
        for key in keys:
            strategy, _, param = key.partition(".")
            if strategy == name and key in params:
                value = params[key]
                shown[param] = tuple(value) if isinstance(value, list) else value
        inner = ",".join(f"{k}={format_value(v)}" for k, v in sorted(shown.items()))
        out.append(f"{name}({inner})" if inner else name)
    return "+".join(out)
