"""Classifier alignment (SLCA: Zhang et al., ICCV 2023, "SLCA: Slow Learner with Classifier
Alignment for Continual Learning on a Pre-trained Model", sec. 3.3), shared by `adapter`
and `prompt`.

Training on the current classes only (`_current`) leaves the old classes' head rows as
they were, but nothing then compares new classes with old ones: the head's scores of
different experiences are not calibrated against each other. After each experience the
features the head sees (its input, caught by a forward hook, so adapters, prompts and task
routing are all in them) of the experience's training data are summarized per class by a
mean and a per-feature variance; then the head alone is retrained on features drawn from
every seen class's Gaussian, with the cross-entropy over the seen classes. Only these
statistics are kept (two vectors per class), never the samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.experience import TensorSet
from lifelong.models.functional import forward
from lifelong.models.heads import MASKED_LOGIT

Stats = tuple[Tensor, Tensor, Tensor]  # counts [C], means [C, D], variances [C, D]

#: features drawn per seen class for each alignment epoch, and the batch they are cut in
DRAWN_PER_CLASS = 64
BATCH = 64
LR = 0.01


def head_of(model: nn.Module) -> nn.Module | None:
    """The linear head on the features (`model.head`, looking inside wrappers such as
    LoRA's `LoRAModel.model`), or None when the model has none."""
    for m in (model, getattr(model, "model", None)):
        head = getattr(m, "head", None) if m is not None else None
        if isinstance(head, nn.Module) and any(p.requires_grad for p in head.parameters()):
            return head
    return None


@torch.no_grad()
def head_inputs(
    model: nn.Module, head: nn.Module, data: TensorSet, chunk: int = 64
) -> tuple[Tensor, int]:
    """The features `head` receives for `data` (eval mode, no gradient), `[N, D]`, on the
    CPU, and the number of classes it scores."""
    caught: list[Tensor] = []
    width = [0]

    def catch(m: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        caught.append(inp[0].detach().flatten(1).float().cpu())
        width[0] = int(out.shape[1])

    handle = head.register_forward_hook(catch)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(data), chunk):
            forward(model, data.x[i : i + chunk], data.t[i : i + chunk])
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(caught), width[0]


def update_stats(stats: Stats, feats: Tensor, y: Tensor, width: int) -> Stats:
    """Per-class `(counts [C], means [C, D], variances [C, D])` with the rows `feats` of
    classes `y` pooled in (a class seen again, as in the domain scenario, keeps the
    statistics of all its experiences: the head is aligned to every domain seen)."""
    counts, means, variances = stats
    dim = feats.shape[1]
    if means.shape != (width, dim):  # first call, or the head grew
        grown = [torch.zeros(width), torch.zeros(width, dim), torch.ones(width, dim)]
        k = min(len(counts), width) if means.shape[1:] == (dim,) else 0
        for new, old in zip(grown, (counts, means, variances)):
            if k:
                new[:k] = old[:k]
        counts, means, variances = grown
    counts, means, variances = counts.clone(), means.clone(), variances.clone()
    for c in y.unique().tolist():
        rows = feats[y.cpu() == c]  # feats are on the CPU (`head_inputs`)
        n_old, n_new = float(counts[c]), float(len(rows))
        mean = (n_old * means[c] + rows.sum(0)) / (n_old + n_new)
        second = n_old * (variances[c] + means[c].square()) + rows.square().sum(0)
        counts[c] = n_old + n_new
        means[c] = mean
        variances[c] = (second / (n_old + n_new) - mean.square()).clamp(min=0) + 1e-4
    return counts, means, variances


def align_head(head: nn.Module, stats: Stats, epochs: int) -> None:
    """Retrain `head` on features drawn from each seen class's Gaussian (diagonal), `epochs`
    passes of `DRAWN_PER_CLASS` draws per class, SGD with momentum, over the seen classes."""
    counts, means, variances = stats
    seen = (counts > 0).nonzero().flatten()
    if len(seen) < 2 or epochs <= 0:
        return
    params = [p for p in head.parameters() if p.requires_grad]
    device = params[0].device
    allowed = torch.zeros(len(counts), dtype=torch.bool, device=device)
    allowed[seen.to(device)] = True
    opt = torch.optim.SGD(params, lr=LR, momentum=0.9)
    labels = seen.repeat_interleave(DRAWN_PER_CLASS)
    was_training = head.training
    head.train()
    for _ in range(epochs):
        noise = torch.randn(len(labels), means.shape[1])
        feats = (means[labels] + noise * variances[labels].sqrt()).to(device)
        order = torch.randperm(len(labels))
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            out = head(feats[idx.to(device)])
            out = out.masked_fill(~allowed[: out.shape[1]], MASKED_LOGIT)
            loss = F.cross_entropy(out, labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    head.train(was_training)


def align_after(
    stats: list[Tensor], model: nn.Module, data: TensorSet, epochs: int
) -> list[Tensor]:
    """After training on `data`: its classes' statistics (`update_stats`) into `stats`
    (`[]` at first: `[counts, means, variances]`), then `epochs` of `align_head`; returns
    the new statistics. A no-op (returns `stats`) without epochs or a linear head."""
    head = head_of(model)
    if epochs <= 0 or head is None or len(data) == 0:
        return stats
    feats, width = head_inputs(model, head, data)
    empty = (torch.zeros(0), torch.zeros(0, 0), torch.zeros(0, 0))
    old = (stats[0], stats[1], stats[2]) if len(stats) == 3 else empty
    new = update_stats(old, feats, data.y, max(width, int(data.y.max()) + 1))
    align_head(head, new, epochs)
    return list(new)
