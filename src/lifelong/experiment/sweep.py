"""The grid of a sweep: each strategy spec times the values of its swept keys.

A sweep key `name.param` (e.g. `replay.mem_size: [100, 500]`) sets that parameter of
strategy `name` in every spec that contains it; a key naming a training setting (`lr`,
`epochs`, ...) applies to every run. Several keys form their Cartesian product.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from lifelong.spec import parse_one, split_top_level


def expand_sweep(
    specs: Sequence[str], sweep: Mapping[str, Sequence[Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Each strategy spec times the grid of its swept values -> `(canonical spec, settings)`.

    `name.param` keys set that parameter of strategy `name` in every spec containing it
    (overriding a value the spec gives); other keys are training settings for every run.
    Duplicates (after canonicalisation) are dropped, order kept.
    """
    from lifelong.strategies.registry import build_strategies, canonical_spec

    parsed = [[parse_one(p) for p in split_top_level(s, "+")] for s in specs]
    for key in sweep:
        name = key.split(".", 1)[0]
        if "." in key and not any(name == n for parts in parsed for n, _ in parts):
            raise ValueError(
                f"{key!r} sweeps strategy {name!r}, which is in none of the strategies "
                f"({', '.join(specs)})"
            )
    out: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for parts in parsed:
        names = {n for n, _ in parts}
        keys = [k for k in sweep if "." not in k or k.split(".", 1)[0] in names]
        for combo in itertools.product(*(sweep[k] for k in keys)):
            chosen = dict(zip(keys, combo))
            text = "+".join(_spec_text(n, {**p, **_params_for(n, chosen)}) for n, p in parts)
            spec = canonical_spec(build_strategies(text))
            settings = {k: v for k, v in chosen.items() if "." not in k}
            out.setdefault((spec, repr(sorted(settings.items()))), (spec, settings))
    return list(out.values())


def _params_for(name: str, chosen: Mapping[str, Any]) -> dict[str, Any]:
    return {k.split(".", 1)[1]: v for k, v in chosen.items() if k.split(".", 1)[0] == name}


def _spec_text(name: str, params: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return "none" if v is None else repr(v)

    body = ",".join(f"{k}={fmt(v)}" for k, v in params.items())
    return f"{name}({body})" if body else name
