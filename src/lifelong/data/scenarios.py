"""Scenario builders: turn a train/test pair into a class-, domain- or task-incremental stream.

Every builder returns a validated `Stream`; bad input (mismatched shapes, labels outside
the declared classes, NaN/inf features, empty experiences, a task stream without task ids)
raises a `ValueError` naming the bad value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from lifelong.data.experience import SCENARIOS, Experience, Stream, TensorSet


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")


def _groups(
    classes: list[int],
    classes_per_experience: int | Sequence[int] | None,
    n_experiences: int | None,
    first_experience: int | None,
) -> list[list[int]]:
    n = len(classes)
    if isinstance(classes_per_experience, Sequence):
        sizes = [int(s) for s in classes_per_experience]
    else:
        rest = classes[first_experience:] if first_experience else classes
        if first_experience is not None and not 0 < first_experience < n:
            raise ValueError(
                f"first_experience must be in 1..{n - 1} classes, got {first_experience}"
            )
        if classes_per_experience is None:
            k = (n_experiences or 5) - (1 if first_experience else 0)
            if k < 1 or len(rest) % k:
                raise ValueError(
                    f"cannot split {len(rest)} classes evenly into {k} experiences; "
                    "pass classes_per_experience"
                )
            per = len(rest) // k
        else:
            per = int(classes_per_experience)
        if per < 1:
            raise ValueError(f"classes_per_experience must be >= 1, got {per}")
        sizes = ([first_experience] if first_experience else []) + [per] * math.ceil(
            len(rest) / per
        )
        sizes[-1] -= sum(sizes) - n
    if any(s < 1 for s in sizes) or sum(sizes) != n:
        raise ValueError(f"experience sizes {sizes} must be positive and cover all {n} classes")
    if n_experiences is not None and len(sizes) != n_experiences:
        raise ValueError(
            f"n_experiences={n_experiences} disagrees with the class split {sizes} "
            f"({len(sizes)} experiences)"
        )
    out, start = [], 0
    for s in sizes:
        out.append(classes[start : start + s])
        start += s
    return out


def split_by_class(
    train: TensorSet,
    test: TensorSet,
    *,
    scenario: str = "class",
    classes_per_experience: int | Sequence[int] | None = None,
    n_experiences: int | None = None,
    class_order: Sequence[int] | None = None,
    first_experience: int | None = None,
    name: str = "custom",
) -> Stream:
    """Class-incremental (or, with `scenario="task"`, task-incremental) stream.

    Classes are taken in `class_order` (default ascending) and grouped
    `classes_per_experience` at a time (an int, or one size per experience), or split
    evenly into `n_experiences`. `first_experience` gives a larger first experience
    (that many classes), the rest split evenly. In the task scenario experience i is task i.
    """
    _check_scenario(scenario)
    if scenario == "domain":
        raise ValueError(
            "split_by_class builds 'class' or 'task' streams; use permuted/rotated/by_domain"
        )
    present = sorted(set(train.y.unique().tolist()))
    order = list(class_order) if class_order is not None else present
    if sorted(order) != present:
        missing = sorted(set(present) - set(order))
        extra = sorted(set(order) - set(present))
        raise ValueError(
            f"class_order must list every class in the training data exactly once; "
            f"missing {missing}, not in the data {extra}"
        )
    groups = _groups(order, classes_per_experience, n_experiences, first_experience)
    exps = []
    for i, group in enumerate(groups):
        g = torch.tensor(group, device=train.y.device)
        tr = train[torch.isin(train.y, g).nonzero().squeeze(1)]
        te = test[torch.isin(test.y, g.to(test.y.device)).nonzero().squeeze(1)]
        task = i if scenario == "task" else 0
        tr = TensorSet(tr.x, tr.y, torch.full_like(tr.y, task))
        te = TensorSet(te.x, te.y, torch.full_like(te.y, task))
        exps.append(Experience(i, tr, te, tuple(sorted(group)), task))
    n_classes = max(present) + 1
    n_tasks = len(groups) if scenario == "task" else 1
    stream = Stream(name, scenario, tuple(exps), n_classes, n_tasks)  # type: ignore[arg-type]
    validate_stream(stream)
    return stream


def _domain_stream(
    name: str, pairs: Sequence[tuple[TensorSet, TensorSet]], scenario: str, info: dict[str, object]
) -> Stream:
    _check_scenario(scenario)
    if scenario == "class":
        raise ValueError("domain streams share their classes; use scenario 'domain' or 'task'")
    exps = []
    for i, (tr, te) in enumerate(pairs):
        task = i if scenario == "task" else 0
        tr = TensorSet(tr.x, tr.y, torch.full_like(tr.y, task))
        te = TensorSet(te.x, te.y, torch.full_like(te.y, task))
        classes = tuple(sorted(set(tr.y.unique().tolist())))
        exps.append(Experience(i, tr, te, classes, task))
    n_classes = max(max(e.classes) for e in exps if e.classes) + 1 if exps else 0
    n_tasks = len(exps) if scenario == "task" else 1
    stream = Stream(name, scenario, tuple(exps), n_classes, n_tasks, info=info)  # type: ignore[arg-type]
    validate_stream(stream)
    return stream


def permuted(
    train: TensorSet,
    test: TensorSet,
    n_experiences: int = 5,
    *,
    scenario: str = "domain",
    name: str = "permuted",
) -> Stream:
    """Domain-incremental stream of pixel permutations.

    Experience 0 is the identity; experience k permutes the flattened features with a fixed
    permutation drawn from a generator seeded by k, so every run sees the same domains.
    """
    d = int(torch.tensor(train.x.shape[1:]).prod())
    pairs = []
    for k in range(n_experiences):
        if k == 0:
            perm = torch.arange(d)
        else:
            perm = torch.randperm(d, generator=torch.Generator().manual_seed(k))

        def apply(s: TensorSet, perm: Tensor = perm) -> TensorSet:
            x = s.x.reshape(len(s), -1)[:, perm.to(s.x.device)].reshape(s.x.shape)
            return TensorSet(x, s.y, s.t)

        pairs.append((apply(train), apply(test)))
    return _domain_stream(name, pairs, scenario, {"permutation_seeds": list(range(n_experiences))})


def rotate_images(x: Tensor, degrees: float, image_shape: tuple[int, ...] | None = None) -> Tensor:
    """Rotate a batch of images by `degrees` (bilinear, zero fill), keeping their shape.

    `image_shape` reshapes flat features, e.g. `(28, 28)` for 784-long MNIST rows.
    """
    shape = x.shape
    img = x.reshape(len(x), *image_shape) if image_shape else x
    if img.ndim == 3:
        img = img.unsqueeze(1)
    if img.ndim != 4:
        raise ValueError(
            f"rotation needs images [N, (C,) H, W]; got features of shape {tuple(shape)}"
        )
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    mat = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=torch.float32, device=img.device)
    grid = torch.nn.functional.affine_grid(
        mat.expand(len(img), 2, 3), list(img.shape), align_corners=False
    )
    out = torch.nn.functional.grid_sample(img.float(), grid, align_corners=False)
    return out.to(x.dtype).reshape(shape)


def rotated(
    train: TensorSet,
    test: TensorSet,
    angles: Sequence[float] = (0, 20, 40, 60, 80),
    *,
    image_shape: tuple[int, ...] | None = None,
    scenario: str = "domain",
    name: str = "rotated",
) -> Stream:
    """Domain-incremental stream: experience k shows every image rotated by `angles[k]` degrees."""
    pairs = []
    for a in angles:
        pairs.append(
            tuple(TensorSet(rotate_images(s.x, a, image_shape), s.y, s.t) for s in (train, test))
        )
    return _domain_stream(name, pairs, scenario, {"angles": list(angles)})  # type: ignore[arg-type]


def by_domain(
    domains: Sequence[tuple[TensorSet, TensorSet]],
    *,
    scenario: str = "domain",
    name: str = "custom",
) -> Stream:
    """Domain-incremental stream from user-given domains: one `(train, test)` pair each.

    With `scenario="task"` each domain is a task with its own head.
    """
    if not domains:
        raise ValueError("by_domain needs at least one (train, test) domain")
    return _domain_stream(name, domains, scenario, {})


def blurred(stream: Stream, fraction: float, seed: int = 0) -> Stream:
    """Task-free variant with blurred boundaries.

    In each experience, `fraction` of the training samples are replaced by samples drawn
    (without replacement) from its neighbouring experiences, half from each side where both
    exist. Test sets are unchanged. `fraction=0` returns the stream as it is.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"blur fraction must be in [0, 1], got {fraction}")
    if fraction == 0 or len(stream) < 2:
        return stream
    g = torch.Generator().manual_seed(seed)
    exps = []
    for i, e in enumerate(stream.experiences):
        n = len(e.train)
        m = int(round(fraction * n))
        keep = torch.randperm(n, generator=g)[: n - m]
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < len(stream)]
        parts, left = [e.train[keep]], m
        for k, j in enumerate(nbrs):
            take = left if k == len(nbrs) - 1 else m // len(nbrs)
            src = stream.experiences[j].train
            take = min(take, len(src))
            parts.append(src[torch.randperm(len(src), generator=g)[:take]])
            left -= take
        tr = TensorSet.concat(parts)
        classes = tuple(sorted(set(tr.y.unique().tolist())))
        exps.append(replace(e, train=tr, classes=classes))
    info = dict(stream.info, blurred=fraction)
    return replace(stream, experiences=tuple(exps), info=info)


def online(stream: Stream, batch_size: int = 10) -> Stream:
    """Online mode: the loop makes a single pass over each experience in batches of `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"online batch_size must be >= 1, got {batch_size}")
    return replace(stream, online=True, info=dict(stream.info, online_batch_size=batch_size))


def with_validation(stream: Stream, fraction: float = 0.1, seed: int = 0) -> Stream:
    """Carve a validation split (`experience.valid`) out of each experience's training data."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    exps = []
    for e in stream.experiences:
        perm = torch.randperm(len(e.train), generator=g)
        m = max(1, int(round(fraction * len(e.train))))
        if m >= len(e.train):
            raise ValueError(
                f"experience {e.index} has too few samples ({len(e.train)}) to validate"
            )
        exps.append(replace(e, train=e.train[perm[m:]], valid=e.train[perm[:m]]))
    return replace(stream, experiences=tuple(exps))


def _shape(s: TensorSet) -> tuple[int, ...]:
    shape = getattr(s, "sample_shape", None)
    return tuple(shape) if shape is not None else tuple(s.x.shape[1:])


def validate_stream(stream: Stream) -> None:
    """Refuse streams that would give silently wrong results, naming the bad value."""
    if not stream.experiences:
        raise ValueError(f"stream {stream.name!r} has no experiences")
    _check_scenario(stream.scenario)
    shape = _shape(stream.experiences[0].train)
    for e in stream.experiences:
        for part, s in (("train", e.train), ("test", e.test)):
            if len(s) == 0:
                raise ValueError(f"experience {e.index} has an empty {part} set")
            if _shape(s) != shape:
                raise ValueError(
                    f"experience {e.index} {part} features have shape {_shape(s)}, "
                    f"but experience 0 has {tuple(shape)}"
                )
            in_memory = isinstance(s, TensorSet)  # disk-backed sets check while caching
            if in_memory and s.x.is_floating_point() and not torch.isfinite(s.x).all():
                bad = int((~torch.isfinite(s.x)).flatten(1).any(1).nonzero()[0, 0])
                raise ValueError(
                    f"experience {e.index} {part} sample {bad} has NaN or inf features"
                )
            labels = set(s.y.unique().tolist())
            outside = sorted(lab for lab in labels if not 0 <= lab < stream.n_classes)
            if outside:
                raise ValueError(
                    f"experience {e.index} {part} labels {outside} are outside the declared "
                    f"classes 0..{stream.n_classes - 1}"
                )
            if part == "train" and not labels <= set(e.classes):
                raise ValueError(
                    f"experience {e.index} train labels {sorted(labels - set(e.classes))} are "
                    f"not among its declared classes {list(e.classes)}"
                )
    if stream.scenario == "task":
        tasks = [e.task for e in stream.experiences]
        if len(stream) > 1 and len(set(tasks)) == 1:
            raise ValueError(
                "a task-incremental stream needs task ids: every experience has task "
                f"{tasks[0]}; give each experience its own task id"
            )
        if max(tasks) >= stream.n_tasks:
            raise ValueError(f"task id {max(tasks)} is outside 0..{stream.n_tasks - 1}")
