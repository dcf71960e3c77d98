"""Hand-written PyTorch loops for the speed suite: each does naive training plus one
strategy's own extra work in the simplest correct way (a concatenated replay batch, an extra
teacher forward pass, a quadratic penalty, a reference gradient), on device-resident data,
with evaluation on every experience after each one.

They are references for timing only; they share no training code with lifelong.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data import Stream

EPOCHS, BATCH, LR, MOMENTUM = 2, 32, 0.01, 0.9
MEM, MEM_BATCH, AGEM_SAMPLE = 500, 32, 256


def mlp(n_in: int, n_out: int) -> nn.Module:
    """The reference MLP 784-400-400-10."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, 400),
        nn.ReLU(),
        nn.Linear(400, 400),
        nn.ReLU(),
        nn.Linear(400, n_out),
    )


class Reservoir:
    """A plain reservoir buffer (x, y, logits) with a vectorised update."""

    def __init__(self, size: int) -> None:
        self.size, self.seen = size, 0
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        self.z: Tensor | None = None

    def add(self, x: Tensor, y: Tensor, z: Tensor | None = None) -> None:
        if self.x is None:
            self.x = x.new_empty((self.size, *x.shape[1:]))
            self.y = y.new_empty(self.size)
            self.z = None if z is None else z.new_empty((self.size, *z.shape[1:]))
        n = len(x)
        pos = torch.arange(self.seen, self.seen + n, device=x.device)
        slot = torch.where(
            pos < self.size, pos, (torch.rand(n, device=x.device) * (pos + 1)).long()
        )
        keep = slot < self.size
        self.x[slot[keep]] = x[keep]
        self.y[slot[keep]] = y[keep]  # type: ignore[index]
        if z is not None:
            self.z[slot[keep]] = z[keep]  # type: ignore[index]
        self.seen += n

    def sample(self, k: int) -> tuple[Tensor, Tensor, Tensor | None]:
        n = min(self.seen, self.size)
        idx = torch.randint(0, n, (k,), device=self.x.device)  # type: ignore[union-attr]
        return self.x[idx], self.y[idx], None if self.z is None else self.z[idx]  # type: ignore[index]


def _flat_grad(model: nn.Module) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _set_grad(model: nn.Module, g: Tensor) -> None:
    i = 0
    for p in model.parameters():
        n = p.numel()
        p.grad.copy_(g[i : i + n].view_as(p))
        i += n


def plain(
    stream: Stream, seed: int, device: torch.device, extra: str, model_name: str = "mlp"
) -> tuple[float, list[list[float]]]:
    """Train through `stream` with the extra work named `extra`; return (seconds, matrix).

    `model_name` other than "mlp" takes that architecture from `lifelong.models` (only the
    module: the loop here stays hand-written)."""
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if model_name == "mlp":
        model = mlp(int(torch.tensor(stream.input_shape).prod()), stream.n_classes).to(device)
    else:
        from lifelong.models import build_model

        model = build_model(model_name, stream).to(device)
    trains = [(e.train.x.to(device), e.train.y.to(device)) for e in stream]
    tests = [(e.test.x.to(device), e.test.y.to(device)) for e in stream]
    buf = Reservoir(MEM)
    teacher: nn.Module | None = None
    anchor: list[Tensor] = []
    importance: list[Tensor] = []

    def evaluate() -> list[float]:
        model.eval()
        with torch.no_grad():
            row = [(model(x).argmax(1) == y).float().mean().item() for x, y in tests]
        model.train()
        return row

    evaluate()
    matrix = []
    for k, (x, y) in enumerate(trains):
        if extra == "cumulative":
            x, y = (
                torch.cat([t[0] for t in trains[: k + 1]]),
                torch.cat([t[1] for t in trains[: k + 1]]),
            )
        if extra == "joint":
            x, y = (
                (torch.cat([t[0] for t in trains]), torch.cat([t[1] for t in trains]))
                if k == 0
                else (x[:0], y[:0])
            )
        if extra == "lwf" and k > 0:
            teacher = copy.deepcopy(model).eval()
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        step: Callable[[Tensor, Tensor], None] = _make_step(
            extra, model, opt, buf, teacher, anchor, importance, k
        )
        for _ in range(EPOCHS if len(x) else 0):
            order = torch.randperm(len(x), generator=gen).to(device)
            for i in range(0, len(x), BATCH):
                idx = order[i : i + BATCH]
                step(x[idx], y[idx])
        if extra == "ewc":
            _fisher_consolidate(model, x, y, anchor, importance)
        if extra == "si":
            _si_consolidate(model, anchor, importance)
        matrix.append(evaluate())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t_start, matrix


def _make_step(extra, model, opt, buf, teacher, anchor, importance, k):  # type: ignore[no-untyped-def]
    params = list(model.parameters())
    if extra == "si":  # path integral of this experience: start, previous step, running sum
        _si_state[:] = [
            [p.detach().clone() for p in params],
            [p.detach().clone() for p in params],
            [torch.zeros_like(p) for p in params],
        ]

    def step(xb: Tensor, yb: Tensor) -> None:
        xs, ys = xb, yb
        if extra == "replay" and buf.seen:
            mx, my, _ = buf.sample(MEM_BATCH)
            xs, ys = torch.cat([xb, mx]), torch.cat([yb, my])
        out = model(xs)
        loss = F.cross_entropy(out, ys)
        if extra in ("der", "derpp") and buf.seen:
            mx, _, mz = buf.sample(MEM_BATCH)
            loss = loss + 0.3 * F.mse_loss(model(mx), mz)
        if extra == "derpp" and buf.seen:  # DER++: a second memory batch with its labels
            mx2, my2, _ = buf.sample(MEM_BATCH)
            loss = loss + F.cross_entropy(model(mx2), my2)
        if extra == "lwf" and teacher is not None:
            with torch.no_grad():
                t = teacher(xb)
            loss = (
                loss
                + F.kl_div(F.log_softmax(out / 2, 1), F.softmax(t / 2, 1), reduction="batchmean")
                * 4
            )
        if extra in ("ewc", "si") and anchor:
            loss = loss + sum(
                (w * (p - a) ** 2).sum() for p, a, w in zip(params, anchor, importance)
            )
        if extra == "agem" and buf.seen:
            mx, my, _ = buf.sample(AGEM_SAMPLE)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(mx), my).backward()
            g_ref = _flat_grad(model).clone()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if extra == "agem" and buf.seen:
            g = _flat_grad(model)
            dot = g @ g_ref
            if dot < 0:
                _set_grad(model, g - dot / (g_ref @ g_ref) * g_ref)
        opt.step()
        if extra == "si":
            with torch.no_grad():
                _, prev, path = _si_state
                for p, q, w in zip(params, prev, path):
                    w.add_(p.grad * (q - p))  # w += -g * delta
                    q.copy_(p)
        if extra in ("replay", "agem"):
            buf.add(xb, yb)
        if extra in ("der", "derpp"):
            buf.add(xb, yb, out[: len(xb)].detach())

    return step


_si_state: list[list[Tensor]] = []


def _fisher_consolidate(model, x, y, anchor, importance) -> None:  # type: ignore[no-untyped-def]
    """EWC: the diagonal Fisher from per-sample gradients of the true label's log-likelihood
    on 256 samples (`torch.func`, eval mode), added to the importance; anchor at the end."""
    from torch.func import functional_call, grad, vmap

    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def nll(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, {**p, **buffers}, (xi[None],)), yi[None])

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    n = min(len(x), 256)
    for i in range(0, n, 32):
        g = per_sample(params, x[i : i + 32], y[i : i + 32])
        for name in fisher:
            fisher[name] += g[name].square().sum(0) / n
    model.train()
    old = importance or [torch.zeros_like(p) for p in params.values()]
    importance[:] = [w + 25 * f for w, f in zip(old, fisher.values())]
    anchor[:] = [p.detach().clone() for p in model.parameters()]


def _si_consolidate(model, anchor, importance) -> None:  # type: ignore[no-untyped-def]
    """SI: importance += relu(path / (total change^2 + xi)); anchor at the end."""
    start, _, path = _si_state
    now = [p.detach().clone() for p in model.parameters()]
    omega = [(w / ((t - s).square() + 0.1)).clamp_min(0) for w, t, s in zip(path, now, start)]
    old = importance or [torch.zeros_like(o) for o in omega]
    importance[:] = [a + 10 * o for a, o in zip(old, omega)]
    anchor[:] = now
