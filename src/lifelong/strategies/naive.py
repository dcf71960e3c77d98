"""Naive fine-tuning: train on each experience as it comes, with nothing against forgetting."""

from __future__ import annotations

from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import register


@register("naive")
class Naive(Strategy):
    """Plain fine-tuning, the lower bound every method must beat. No hyper-parameters.

    A hybrid that includes `naive` is the hybrid without it.
    """

    compile_safe = True
