"""Learning to prompt: a frozen text backbone, a pool of keyed prompts and the head."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.models.text_prompt import (
    PromptPool,
    add_prompt,
    add_prompt_pool,
    remove_prompt,
    text_encoder,
)
from lifelong.strategies._align import align_after
from lifelong.strategies._current import masked_old_loss, old_classes
from lifelong.strategies.base import Batch, Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


@register("prompt")
class PromptTuning(Strategy):
    """Freeze a pretrained text backbone; learn a pool of keyed prompts and the head (L2P).

    Implements L2P (Wang et al., CVPR 2022, "Learning to Prompt for Continual Learning") on
    a sentence-transformers text backbone (`--model text:minilm`,
    `lifelong.models.pretrained`): a pool of `pool_size` prompts of `length` vectors, each
    with a learnable key. A text's query is the frozen backbone's own embedding of it (read
    from the feature cache); the `top_k` prompts whose keys are nearest to the query (cosine)
    are prepended to its token embeddings, and the prompted embedding feeds the head. The
    loss is the cross-entropy without the old classes the experience does not bring (L2P's
    logit masking, `mask`; it stops the shared head's recency bias) plus `lambda` times the
    query-key matching term (the summed cosine distance to the selected keys), which pulls
    keys towards the queries that chose them, so that later experiences come to pick
    other prompts. After each experience the head is realigned on features drawn from
    per-class Gaussians of the head's inputs (SLCA's classifier alignment, Zhang et al.,
    ICCV 2023; `align`), which calibrates classes of different experiences against each
    other (measured in benchmarks/results/text.md). Only the prompts, keys and head (and
    anything outside the backbone) train. With `pool_size=1` it is prompt tuning (Lester
    et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"): one prompt
    for every text. Serves the class, domain and task scenarios.

    When to use: class-incremental streams on a pretrained text backbone that must stay
    exactly as it is (removing the prompts, `PromptTuning.remove(model)`, gives back its
    outputs bit for bit), with a few thousand trainable parameters besides the head and no
    stored samples. Costlier per step than training the head alone: the transformer runs
    (forward and backward) on every batch, over `top_k * length` extra tokens.

    In a hybrid, `align` realigns the head in `end`, which therefore runs before the other
    strategies' `end` (`changes_model_at_end`): EWC's Fisher and anchor, SI and MAS read
    the aligned head whatever order the hybrid is written in.

    Hyper-parameters:
    * `length` (8): prompt vectors per prompt.
    * `pool_size` (10): prompts in the pool (L2P's M).
    * `top_k` (1): prompts selected per text (L2P's N), at most `pool_size`.
    * `lambda` (0.5): weight of the query-key matching term (L2P's lambda).
    * `mask` (true): the stream rows' cross-entropy leaves out the classes of earlier
      experiences that this one does not bring (rows other strategies append, e.g.
      replay's, score every class); false: every class.
    * `align` (20): epochs of classifier alignment after each experience (0: none; only for
      a model with a linear `head`, so not the task scenario's per-task heads).

    State: `added_` (whether the prompts exist) and `pooled_` (a pool, or the single prompt
    of a model saved before pools existed), which `rebuild` needs to recreate them before a
    checkpoint is loaded; `seen_classes_` (for `mask`) and `class_stats_` (per-class
    counts, means and variances, for `align`; statistics, never samples).
    """

    ranges = {"length": Range(ge=1), "pool_size": Range(ge=1), "top_k": Range(ge=1),
              "lambda_": Range(ge=0), "align": Range(ge=0)}  # fmt: skip
    needs_text_model = True
    changes_model_at_end = True  # classifier alignment (`align`)

    def __init__(
        self, length: int = 8, pool_size: int = 10, top_k: int = 1, lambda_: float = 0.5,
        mask: bool = True, align: int = 20,
    ) -> None:  # fmt: skip
        if top_k > pool_size:
            raise ValueError(f"prompt: top_k must be <= pool_size={pool_size}, got {top_k}")
        self.length, self.pool_size, self.top_k = length, pool_size, top_k
        self.lambda_, self.mask, self.align = lambda_, mask, align
        self.added_ = False
        self.class_stats_: list[Tensor] = []
        self.pooled_ = True
        self.seen_classes_: list[int] = []
        self._old: list[int] | None = None

    def _add(self, model: nn.Module) -> None:
        if self.pooled_:
            add_prompt_pool(model, self.pool_size, self.length, self.top_k)
        else:  # a single prompt (saved before pools existed)
            add_prompt(model, self.length)

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        if text_encoder(model).prompt is None:
            self._add(model)
            self.added_ = True
        old, self.seen_classes_ = old_classes(self.seen_classes_, experience)
        self._old = old if self.mask else None
        return model

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return masked_old_loss(out, batch, self._old)

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        pool = text_encoder(model).prompt
        if not isinstance(pool, PromptPool) or pool.match is None:
            return out.new_zeros(())
        match, pool.match = pool.match, None  # consumed: no graph is kept on the model
        return self.lambda_ * match

    def end(self, model: nn.Module, experience: Experience) -> None:
        self.class_stats_ = align_after(self.class_stats_, model, experience.train, self.align)

    def rebuild(self, model: nn.Module) -> nn.Module:
        if self.added_:
            self._add(model)
        return model

    @staticmethod
    def remove(model: nn.Module) -> nn.Module:
        """`model` without its prompts: the backbone's outputs as before, bit for bit."""
        if remove_prompt(model) is None:
            raise ValueError("the model has no prompt to remove")
        return model

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.added_ = bool(state.get("added_", False))
        self.pooled_ = bool(state.get("pooled_", False))  # older states: a single prompt
        self.class_stats_ = list(state.get("class_stats_", []))
        self.seen_classes_ = [int(c) for c in state.get("seen_classes_", [])]
