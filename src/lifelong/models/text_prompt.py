"""Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt
Tuning") on a pretrained text backbone, and its exact removal.

`add_prompt(model, length)` gives the model's `TextEncoder` a trainable `[length, hidden]`
prompt, prepended to every text's token embeddings (initialized from the embeddings of
randomly drawn vocabulary tokens, the paper's recommended start), and freezes the
transformer. `remove_prompt(model)` takes it away: the encoder runs the very code path it
ran before (`input_ids` straight into the transformer), so its outputs come back bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from lifelong.models.pretrained import TextEncoder, find_encoder


def text_encoder(model: nn.Module) -> TextEncoder:
    """The `TextEncoder` inside `model` (a text model, possibly wrapped by adapters)."""
    enc = find_encoder(model)
    if not isinstance(enc, TextEncoder):
        raise ValueError(
            f"prompt tuning needs a text backbone (text:...), got {type(enc).__name__}"
        )
    return enc


def add_prompt(model: nn.Module, length: int = 8) -> nn.Parameter:
    """Give `model`'s text encoder a trainable prompt of `length` vectors (replacing any
    earlier one) and freeze its transformer; return the prompt."""
    if length < 1:
        raise ValueError(f"prompt length must be >= 1, got {length}")
    enc = text_encoder(model)
    emb = enc.transformer.get_input_embeddings().weight
    ids = torch.randint(0, emb.shape[0], (length,), device=emb.device)
    enc.transformer.requires_grad_(False)
    enc.prompt = nn.Parameter(emb[ids].detach().clone())
    return enc.prompt


def remove_prompt(model: nn.Module) -> nn.Parameter | None:
    """Take the prompt out of `model`'s text encoder (returned; None if it had none)."""
    enc = text_encoder(model)
    prompt, enc.prompt = enc.prompt, None
    return prompt
