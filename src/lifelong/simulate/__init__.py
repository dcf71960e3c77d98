"""Simulate production: replay a stream through a real deployment under each update
policy and compare them prequentially (each batch is predicted before it is learned).

    from lifelong.simulate import simulate
    result = simulate("sea-abrupt", out="sim", label_delay=1)
    result["policies"]["triggered"]["accuracy"], result["policies"]["triggered"]["updates"]

Writes `out/simulation.json` (every tick of every policy) and `out/accuracy.png`.
Streams: `lifelong.simulate.streams` (MNIST-5k with rotations, river's SEA and Agrawal
through `ConceptDriftStream`, stable versions). See docs/architecture.md. Heavy parts
(numpy, torch, river, SQLAlchemy) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifelong.simulate.engine import default_policies
    from lifelong.simulate.run import simulate
    from lifelong.simulate.streams import STREAMS, ProductionStream, make_stream

_LAZY = {
    "simulate": "lifelong.simulate.run",
    "default_policies": "lifelong.simulate.engine",
    "STREAMS": "lifelong.simulate.streams",
    "ProductionStream": "lifelong.simulate.streams",
    "make_stream": "lifelong.simulate.streams",
}
__all__ = ["simulate", "default_policies", "STREAMS", "ProductionStream", "make_stream"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lifelong.simulate' has no attribute {name!r}")
