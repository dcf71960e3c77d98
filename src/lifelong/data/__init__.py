"""Streams and scenarios: `Experience`, `Stream`, scenario builders, sources and benchmarks."""

from lifelong.data.benchmarks import BENCHMARKS, benchmark, get_benchmark
from lifelong.data.disk import DiskSet, Transform
from lifelong.data.experience import SCENARIOS, Experience, Scenario, Stream, TensorSet
from lifelong.data.files import stream_from_files
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
from lifelong.data.standard import data_root  # registers the full standard benchmarks

__all__ = [
    "BENCHMARKS",
    "DiskSet",
    "SCENARIOS",
    "Experience",
    "Scenario",
    "Stream",
    "TensorSet",
    "Transform",
    "as_tensorset",
    "benchmark",
    "blurred",
    "by_domain",
    "data_root",
    "get_benchmark",
    "online",
    "permuted",
    "rotate_images",
    "rotated",
    "split_by_class",
    "stream_from_files",
    "validate_stream",
    "with_validation",
]
