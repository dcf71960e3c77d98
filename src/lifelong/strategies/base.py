"""The `Strategy` base class: a few optional hooks that each return a value, and `Batch`.

A strategy overrides only the hooks it needs; the training loop calls a hook only on the
strategies that override it (so an unused hook costs nothing per step). Hyper-parameters
are the constructor's arguments, stored under the same names (scikit-learn style);
learned state lives in attributes ending in `_` and round-trips through `state_dict`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience, TensorSet
from lifelong.models.functional import forward
from lifelong.spec import format_value, spec_name
from lifelong.strategies.ranges import Range, checked_init

#: Hooks a hybrid may override at most once: two strategies that both replace the
#: training data, the loss, the gradients or the prediction cannot be combined.
EXCLUSIVE_HOOKS = ("train_data", "loss", "grads", "predict")
ALL_HOOKS = (
    "train_data",
    "begin",
    "batch",
    "loss",
    "penalty",
    "grads",
    "after_step",
    "end",
    "predict",
)


@dataclass
class Batch:
    """One training batch. Rows `[:n_stream]` come from the stream; strategies may append
    rows (replay) after them and keep per-row extras (e.g. stored logits) in `extras`."""

    x: Tensor
    y: Tensor
    t: Tensor
    n_stream: int
    extras: dict[str, Tensor] = field(default_factory=dict)


class Strategy:
    """Base class of every continual-learning method. All hooks are optional.

    Class attributes:
    * `scenarios`: the scenarios the method serves (others are refused when a run starts).
    * `sees_whole_stream`: only for oracle baselines (joint): `train_data` then receives
      every experience of the stream, not just the ones seen so far.
    * `compile_safe`: the method allows the compiled step (`lifelong.compiled`): its
      `loss`/`penalty` are tensor code `torch.compile` can trace, and one graph serves every
      step of a run (the model's structure does not change between experiences). Its
      `batch`, `grads` and `after_step` hooks still run eagerly around the compiled parts.
    * `ranges`: the allowed values of numeric hyper-parameters, by argument name, e.g.
      `{"lambda_": Range(ge=0)}` (a subclass inherits its bases' and adds its own); choices
      are `Literal[...]` annotations. Every constructor checks its arguments against both
      (`lifelong.strategies.ranges`).
    """

    name: ClassVar[str] = "strategy"
    ranges: ClassVar[dict[str, Range]] = {}
    scenarios: ClassVar[tuple[str, ...]] = ("class", "domain", "task")
    sees_whole_stream: ClassVar[bool] = False
    compile_safe: ClassVar[bool] = False
    #: `grads` projects the gradient (GEM, A-GEM): the loop steps with plain SGD
    projects_gradients: ClassVar[bool] = False
    #: `train_data` trains on past experiences' data (cumulative): a `Learner` keeps it
    uses_past_data: ClassVar[bool] = False
    #: its state holds training samples (a replay memory, exemplars): a saved model's
    #: manifest says so, and an export for prediction leaves them out (`prediction_state`)
    stores_samples: ClassVar[bool] = False
    #: it works on a pretrained text backbone only (`text:...` models; prompt tuning)
    needs_text_model: ClassVar[bool] = False
    #: its `end` changes the model (classifier alignment): in a hybrid it runs before the
    #: other strategies' `end`, which snapshot the model (EWC's anchor, LwF's teacher), so
    #: the hybrid does not depend on the order it is written in
    changes_model_at_end: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = checked_init(cls.__dict__["__init__"])  # type: ignore[method-assign]
        own = cls.__dict__.get("ranges", {})
        unknown = sorted(set(own) - set(cls.param_names()))
        if unknown:
            raise TypeError(f"{cls.__name__}.ranges names no constructor argument: {unknown}")
        merged: dict[str, Range] = {}  # a subclass declares only what it adds or changes
        for base in reversed(cls.__bases__):
            merged.update(getattr(base, "ranges", {}))
        cls.ranges = {**merged, **own}

    # -- hooks ---------------------------------------------------------------------------
    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> TensorSet:
        """Replace what is trained on during `experience` (cumulative, joint, GDumb)."""
        return experience.train

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        """Adapt the model before training on `experience`; return the model to train.

        If the returned model has other trainable parameters, the loop rebuilds the optimizer.
        """
        return model

    def batch(self, batch: Batch) -> Batch:
        """Return the batch to train on (replay mixes memory samples in)."""
        return batch

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        """Replace the cross-entropy loss (ER-ACE, iCaRL)."""
        return torch.nn.functional.cross_entropy(out, batch.y)

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        """A term added to the loss (EWC, SI, LwF, DER)."""
        return out.new_zeros(())

    def grads(self, model: nn.Module) -> None:
        """Project the gradients in `p.grad` after `backward` (GEM, A-GEM)."""

    def after_step(self, model: nn.Module) -> None:
        """Per-step bookkeeping after the optimizer step (SI)."""

    def end(self, model: nn.Module, experience: Experience) -> None:
        """After training on `experience`: Fisher, buffer fill, pruning."""

    def predict(self, model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        """Replace inference: return predicted class ids for inputs `x` with task ids `t`."""
        return forward(model, x, t).argmax(1)

    # -- state ---------------------------------------------------------------------------
    def rebuild(self, model: nn.Module) -> nn.Module:
        """Give a freshly built base model the architecture this strategy's (loaded) state
        implies, e.g. PNN's columns, before the trained weights are loaded into it.

        Only strategies whose `begin` changes the model's structure override it; the
        checkpoint loader calls it after `load_state_dict`.
        """
        return model

    def state_dict(self) -> dict[str, Any]:
        """Learned state: every attribute whose name ends in `_` (tensors, numbers, lists)."""
        return {
            k: v
            for k, v in vars(self).items()
            if k.endswith("_") and not k.startswith("_") and k not in self.get_params()
        }

    def prediction_state(self) -> dict[str, Any] | None:
        """The part of the state that prediction needs, holding no training samples (what
        an export for prediction keeps; None: nothing). By default the whole state of a
        strategy that predicts itself or rebuilds the architecture, else None."""
        if self.overrides("predict") or self.overrides("rebuild"):
            return self.state_dict()
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` (or `prediction_state`) returned."""
        for k, v in state.items():
            setattr(self, k, v)

    # -- hyper-parameters ----------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """Constructor argument names (the hyper-parameters)."""
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items() if n != "self" and p.kind in kinds]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to the constructor."""
        return {k: getattr(self, k) for k in self.param_names()}

    def clone(self) -> Strategy:
        """A fresh, untrained strategy with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def overrides(self, hook: str) -> bool:
        """Whether this strategy replaces the base class's `hook`."""
        return getattr(type(self), hook) is not getattr(Strategy, hook)

    def __repr__(self) -> str:
        return f"<{canonical_spec([self])}>"


def canonical_spec(strategies: list[Strategy]) -> str:
    """Names as registered, parameters sorted, only those that differ from their default."""
    if not strategies:
        return "naive"
    parts = []
    for s in strategies:
        sig = inspect.signature(type(s).__init__)
        diff = []
        for arg, value in sorted(s.get_params().items(), key=lambda kv: spec_name(kv[0])):
            default = sig.parameters[arg].default
            if default is inspect.Parameter.empty or value != default:
                diff.append(f"{spec_name(arg)}={format_value(value)}")
        parts.append(f"{s.name}({','.join(diff)})" if diff else s.name)
    return "+".join(parts)


class Hooks:
    """For each hook, the strategies that override it (in hybrid order)."""

    def __init__(self, strategies: Sequence[Strategy]) -> None:
        for hook in ALL_HOOKS:
            setattr(self, hook, [s for s in strategies if s.overrides(hook)])
        self.end.sort(key=lambda s: not s.changes_model_at_end)  # stable: then hybrid order

    train_data: list[Strategy]
    begin: list[Strategy]
    batch: list[Strategy]
    loss: list[Strategy]
    penalty: list[Strategy]
    grads: list[Strategy]
    after_step: list[Strategy]
    end: list[Strategy]
    predict: list[Strategy]


def step_loss(
    model: nn.Module, loss_hook: Strategy | None, penalties: Sequence[Strategy], batch: Batch
) -> Tensor:
    """The loss of one training step, written once for every step engine: the model's
    outputs on the batch, the loss (a strategy's `loss`, else cross-entropy) and every
    strategy's `penalty`."""
    out = forward(model, batch.x, batch.t)
    loss = (
        loss_hook.loss(model, batch, out)
        if loss_hook is not None
        else torch.nn.functional.cross_entropy(out, batch.y)
    )
    for s in penalties:
        loss = loss + s.penalty(model, batch, out)
    return loss
