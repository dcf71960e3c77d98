"""Prompt tuning: a frozen text backbone, a trainable prompt and the head."""

from __future__ import annotations

from typing import Any

from torch import nn

from lifelong.data.experience import Experience
from lifelong.models.text_prompt import add_prompt, remove_prompt, text_encoder
from lifelong.strategies.base import Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


@register("prompt")
class PromptTuning(Strategy):
    """Freeze a pretrained text backbone; train a soft prompt prepended to its input and the head.

    Implements prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient
    Prompt Tuning"): `length` vectors of the transformer's width are prepended to every
    text's token embeddings; only they and the head (and anything outside the backbone)
    train. For text models only (`--model text:minilm`, `lifelong.models.pretrained`).
    Serves the class, domain and task scenarios.

    When to use: a pretrained text backbone that must stay exactly as it is (removing the
    prompt, `PromptTuning.remove(model)`, gives back its outputs bit for bit), with a
    budget of a few thousand trainable parameters besides the head. Costlier per step than
    training the head alone: the transformer runs (forward and backward) on every batch.

    Hyper-parameters:
    * `length` (8): prompt vectors prepended to each text.

    State: `added_` (whether the prompt exists), which `rebuild` needs to recreate it before
    a checkpoint is loaded.
    """

    ranges = {"length": Range(ge=1)}
    needs_text_model = True

    def __init__(self, length: int = 8) -> None:
        self.length = length
        self.added_ = False

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        if text_encoder(model).prompt is None:
            add_prompt(model, self.length)
            self.added_ = True
        return model

    def rebuild(self, model: nn.Module) -> nn.Module:
        if self.added_:
            add_prompt(model, self.length)
        return model

    @staticmethod
    def remove(model: nn.Module) -> nn.Module:
        """`model` without its prompt: the backbone's outputs as before, bit for bit."""
        if remove_prompt(model) is None:
            raise ValueError("the model has no prompt to remove")
        return model

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.added_ = bool(state.get("added_", False))
