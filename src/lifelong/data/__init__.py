"""Streams and scenarios: `Experience`, `Stream`, scenario builders, sources and benchmarks."""

from lifelong.data.benchmarks import BENCHMARKS, benchmark, get_benchmark
from lifelong.data.experience import SCENARIOS, Experience, Scenario, Stream, TensorSet
from lifelong.data.scenarios import (
    blurred,
    by_domain,
    online,
    permuted,
    rotate_images,
    rotated,
    split_by_class,
    validate_stream,
    with_validation,
)
from lifelong.data.sources import as_tensorset

__all__ = [
    "BENCHMARKS",
    "SCENARIOS",
    "Experience",
    "Scenario",
    "Stream",
    "TensorSet",
    "as_tensorset",
    "benchmark",
    "blurred",
    "by_domain",
    "get_benchmark",
    "online",
    "permuted",
    "rotate_images",
    "rotated",
    "split_by_class",
    "validate_stream",
    "with_validation",
]
