"""Replay memory: fixed-size buffers that keep a sample of the stream for later replay.

* `ReservoirBuffer`: uniform over the whole stream (Vitter's reservoir sampling).
* `ClassBalancedBuffer`: an equal share per class seen, evicting from the largest class.
* `HerdingBuffer`: class-balanced, each class's rows chosen by herding on features (iCaRL).

`make_buffer(policy, mem_size)` builds one by name. Every buffer preallocates its storage
(in the source dtype, on the source device) on the first insert, updates it without
per-sample Python loops, samples with torch's global RNG, and has `state_dict` /
`load_state_dict` (tensors and numbers only). `mem_size=0` means "no memory".
"""

from __future__ import annotations

from typing import Literal

from lifelong.memory.balanced import (
    ClassBalancedBuffer,
    FeatureFn,
    HerdingBuffer,
    balanced_quota,
    top_per_group,
)
from lifelong.memory.buffers import Buffer, ReservoirBuffer, Rows

Policy = Literal["reservoir", "class_balanced", "herding"]
POLICIES: tuple[str, ...] = ("reservoir", "class_balanced", "herding")


def make_buffer(policy: str, mem_size: int) -> Buffer:
    """A buffer of `mem_size` rows filled by `policy` (reservoir, class_balanced, herding)."""
    if policy == "reservoir":
        return ReservoirBuffer(mem_size)
    if policy == "class_balanced":
        return ClassBalancedBuffer(mem_size)
    if policy == "herding":
        return HerdingBuffer(mem_size)
    raise ValueError(f"unknown buffer policy {policy!r}; expected one of {', '.join(POLICIES)}")


__all__ = [
    "POLICIES",
    "Buffer",
    "ClassBalancedBuffer",
    "FeatureFn",
    "HerdingBuffer",
    "Policy",
    "ReservoirBuffer",
    "Rows",
    "balanced_quota",
    "make_buffer",
    "top_per_group",
]
