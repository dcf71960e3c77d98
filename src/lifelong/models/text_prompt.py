"""Prompts for a pretrained text backbone, and their exact removal: one soft prompt (Lester
et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning") or a prompt pool
with learnable keys (L2P: Wang et al., CVPR 2022, "Learning to Prompt for Continual
Learning").

`add_prompt(model, length)` gives the model's `TextEncoder` a trainable `[length, hidden]`
prompt, prepended to every text's token embeddings (initialized from the embeddings of
randomly drawn vocabulary tokens, the paper's recommended start), and freezes the
transformer. `add_prompt_pool(model, pool_size, length, top_k)` gives it a `PromptPool`
instead: each text picks its own `top_k` prompts by key. `remove_prompt(model)` takes
either away: the encoder runs the very code path it ran before (`input_ids` straight into
the transformer), so its outputs come back bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.models.pretrained import TextEncoder, find_encoder


def text_encoder(model: nn.Module) -> TextEncoder:
    """The `TextEncoder` inside `model` (a text model, possibly wrapped by adapters)."""
    enc = find_encoder(model)
    if not isinstance(enc, TextEncoder):
        raise ValueError(
            f"prompt tuning needs a text backbone (text:...), got {type(enc).__name__}"
        )
    return enc


def _vocabulary_rows(enc: TextEncoder, *shape: int) -> Tensor:
    """Embeddings of randomly drawn vocabulary tokens, shaped `[*shape, hidden]`."""
    emb = enc.transformer.get_input_embeddings().weight
    ids = torch.randint(0, emb.shape[0], shape, device=emb.device)
    return emb[ids].detach().clone()


def add_prompt(model: nn.Module, length: int = 8) -> nn.Parameter:
    """Give `model`'s text encoder a trainable prompt of `length` vectors (replacing any
    earlier one) and freeze its transformer; return the prompt."""
    if length < 1:
        raise ValueError(f"prompt length must be >= 1, got {length}")
    enc = text_encoder(model)
    enc.transformer.requires_grad_(False)
    enc.prompt = nn.Parameter(_vocabulary_rows(enc, length))
    return enc.prompt


def frozen_query(enc: TextEncoder, x: Tensor) -> Tensor:
    """The encoder's outputs for texts `x` without any prompt, without gradient: L2P's
    query, the frozen pretrained model's own embedding of the input. While the transformer
    is frozen and as loaded they come from the feature cache (computed once per text)."""
    prompt = enc.prompt
    enc.prompt = None
    try:
        with torch.no_grad():
            return enc(x)
    finally:
        enc.prompt = prompt


class PromptPool(nn.Module):
    """L2P's prompt pool: `pool_size` prompts of `length` vectors, each with a learnable key.

    Called with the encoder and a batch of texts, it computes each text's query
    (`frozen_query`), picks the `top_k` prompts whose keys are nearest to it in cosine
    similarity and returns them concatenated, `[B, top_k * length, hidden]`, to be
    prepended to the text's token embeddings. The selection is not differentiable; the
    keys learn from the matching term `match` (the batch mean of the summed cosine
    distances between each query and its selected keys, from the latest call), which the
    strategy adds to the loss, so that texts alike come to share prompts and texts of other
    kinds (experiences) pick others. Prompts start as vocabulary embeddings, keys uniform
    in [-1, 1] (as L2P's code does).
    """

    match: Tensor | None

    def __init__(self, prompts: Tensor, top_k: int) -> None:
        super().__init__()
        pool_size, _, hidden = prompts.shape
        if not 1 <= top_k <= pool_size:
            raise ValueError(f"top_k must be in [1, pool_size={pool_size}], got {top_k}")
        self.prompts = nn.Parameter(prompts)
        self.keys = nn.Parameter(torch.empty(pool_size, hidden, device=prompts.device))
        nn.init.uniform_(self.keys, -1.0, 1.0)
        self.top_k = int(top_k)
        self.match = None

    def select(self, query: Tensor) -> Tensor:
        """Indices `[B, top_k]` of the prompts nearest to each query; sets `match`."""
        sim = F.normalize(query.to(self.keys.dtype), dim=1) @ F.normalize(self.keys, dim=1).t()
        top = sim.detach().topk(self.top_k, dim=1).indices
        self.match = (1.0 - sim.gather(1, top)).sum(1).mean()
        return top

    def forward(self, enc: TextEncoder, x: Tensor) -> Tensor:
        top = self.select(frozen_query(enc, x))
        return self.prompts[top].flatten(1, 2)


def add_prompt_pool(
    model: nn.Module, pool_size: int = 10, length: int = 8, top_k: int = 1
) -> PromptPool:
    """Give `model`'s text encoder a `PromptPool` (replacing any earlier prompt) and freeze
    its transformer; return the pool."""
    if pool_size < 1 or length < 1:
        raise ValueError(f"pool_size and length must be >= 1, got {pool_size} and {length}")
    enc = text_encoder(model)
    enc.transformer.requires_grad_(False)
    pool = PromptPool(_vocabulary_rows(enc, pool_size, length), top_k)
    enc.prompt = pool
    return pool


def remove_prompt(model: nn.Module) -> nn.Parameter | nn.Module | None:
    """Take the prompt (or pool) out of `model`'s text encoder (returned; None if none)."""
    enc = text_encoder(model)
    prompt, enc.prompt = enc.prompt, None
    return prompt
