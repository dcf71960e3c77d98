"""`Learner`: a model and its continual-learning state, learning from each new batch.

    learner = Learner("mlp", "replay(mem_size=200)", config=TrainConfig(epochs=2))
    learner.learn(x_day1, y_day1)        # one experience of data arriving now
    learner.learn(x_day2, y_day2)        # new classes are welcome: the head grows
    learner.predict(x_new)
    learner.save("models/today")         # one folder: tensors + JSON, no pickles
    Learner.load("models/today").learn(x_day3, y_day3)   # continues bit for bit

`fit_stream(stream)` runs the one stream loop of the library (`lifelong.loop.stream_loop`:
train each experience, fill the accuracy matrix); `lifelong.run`, tuning and the benchmarks
call it. Sizing and building the model is `lifelong.learner_model`; the masked outputs
that predictions come from, `lifelong.learner_predict`; the saved payload,
`lifelong.learner_state`; what it knows (tasks, classes, names), `lifelong.learner_classes`.
The learner owns its random state: the global torch generator is set to the learner's
state while it trains and put back afterwards, so what else the process does never changes
what it learns.
What a saved learner holds is described in docs/architecture.md and `lifelong.checkpoint`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.checkpoint import json_info, read_learner, write_learner
from lifelong.config import TrainConfig
from lifelong.data.columns import align_columns, table_columns
from lifelong.data.experience import Experience, Stream
from lifelong.inputs import (
    LabelMap,
    prediction_inputs,
    prediction_tasks,
    resolve_device,
    to_tensorset,
)
from lifelong.learner_classes import LearnedClasses
from lifelong.learner_model import build_for, check_width, model_sizes
from lifelong.learner_predict import masked_logits, scored_sets
from lifelong.learner_state import learner_payload, restore_learner
from lifelong.loop import OnEpoch, stream_loop
from lifelong.models.heads import grow_outputs
from lifelong.results import LearnSummary, Result
from lifelong.strategies.base import Strategy, canonical_spec
from lifelong.strategies.registry import build_strategies, check_serves
from lifelong.train import Evaluator, predict, train_experience

ModelArg = nn.Module | str | Callable[..., nn.Module]
OnExperience = Callable[["Learner", "Result"], None]


class Learner(LearnedClasses):
    """A model plus its continual-learning state (strategies, optimizer, random state,
    the classes and tasks seen), learning one experience at a time.

    `model`: an `nn.Module`, a model spec (`"mlp"`, `"mlp(hidden=(256,))"`,
    `"pkg.mod:factory(width=64)"`) or a factory; a spec is built when the first data
    arrives (its input shape and classes decide the size). `strategy`: a spec
    (`"ewc(lambda=100)"`, `"replay+lwf"`), a `Strategy` or a list of them (a hybrid).
    `scenario`: "class", "domain" or "task" (task ids at training and prediction time).
    `head`: "fixed" (sized for the classes known when built, grown when new ones arrive)
    or "grow" (a classifier that grows from the start).
    """

    def __init__(
        self,
        model: ModelArg,
        strategy: str | Strategy | list[Strategy] = "naive",
        *,
        config: TrainConfig | None = None,
        scenario: str = "class",
        head: str = "fixed",
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if scenario not in ("class", "domain", "task"):
            raise ValueError(f"unknown scenario {scenario!r}; expected class, domain or task")
        if head not in ("fixed", "grow"):
            raise ValueError(f"unknown head {head!r}; expected 'fixed' or 'grow'")
        self.config = config if config is not None else TrainConfig()
        self.strategies = build_strategies(strategy)
        check_serves(self.strategies, scenario)  # so every stream of `scenario` is served
        self.scenario, self.head, self.seed = scenario, head, int(seed)
        self.device = resolve_device(device)
        self.model_spec = model if isinstance(model, str) else None
        self._factory = None if isinstance(model, nn.Module) else model
        self.model: nn.Module | None = (
            model.to(self.device) if isinstance(model, nn.Module) else None
        )
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator().manual_seed(self.seed)
        self._rng: Tensor | None = None  # the learner's global-generator state between calls
        self._cuda_rng: Tensor | None = None
        self.labels = LabelMap()
        self.seen: list[Experience] = []  # data kept only for strategies that need it
        self.input_shape: tuple[int, ...] | None = None
        self.dtype: torch.dtype = torch.get_default_dtype()
        self.info: dict[str, Any] = {}
        self.built_for: dict[str, int] = {}  # n_classes / n_tasks the model was built with
        self.n_classes, self.n_tasks = 0, 0
        self.name = "learner"
        self.extra_config: dict[str, Any] = {}
        self.for_prediction = False  # loaded from an export: predicts, does not learn

    # -- what it knows (tasks, classes, their names: `LearnedClasses`) --------------------
    @property
    def spec(self) -> str:
        """The canonical strategy spec of this learner's hybrid."""
        return canonical_spec(self.strategies)

    # -- learning --------------------------------------------------------------------------
    def learn(self, x: Any, y: Any = None, *, task: Any = None) -> LearnSummary:
        """Train on one new experience: `x`, `y` as tensors or arrays (or a `TensorSet`,
        a torch `Dataset` of (x, y[, task]) items, an `Experience`). New classes (and new
        task ids in the task scenario) are welcome. Bad input is refused with a
        `ValueError` before anything changes."""
        t0 = time.perf_counter()
        self._check_learns()
        columns = table_columns(x)
        x = align_columns(x, self.feature_names, where="the DataFrame")
        data, kind, names = to_tensorset(
            x, y, task, scenario=self.scenario, input_shape=self.input_shape, labels=self.labels
        )
        if columns and self.input_shape is None and self.feature_names is None:
            self.info["feature_names"] = columns
        tasks = data.t.unique().tolist()
        if len(tasks) > 1:
            raise ValueError(f"one learn() call trains one task; got task ids {tasks}")
        classes = tuple(int(c) for c in data.y.unique().tolist())
        check_width(self.model, data, classes, self.device)
        self.labels.add(kind, names)
        before = set(self.class_ids)
        exp = Experience(len(self.seen), data, data[:0], classes, int(tasks[0]))
        with self._own_rng():
            self._ensure_model(exp)
            exp = exp.to(self.device)
            self._train(exp, [*self.seen, exp])
        self._remember(exp)
        return LearnSummary(
            exp.index,
            len(data),
            time.perf_counter() - t0,
            self.class_ids,
            tuple(c for c in classes if c not in before),
        )

    def fit_stream(
        self,
        stream: Stream,
        on_experience: OnExperience | None = None,
        *,
        result: Result | None = None,
        progress: Callable[[str], None] | None = None,
        evaluate: bool = True,
    ) -> Result:
        """Train on each experience of `stream` in turn, evaluating on every experience's
        test set after each (the accuracy matrix; `evaluate=False` skips it, e.g. while
        tuning on validation data). `on_experience(learner, result)` runs after each
        experience (a checkpoint); `result` continues an interrupted pass."""
        if stream.scenario != self.scenario:
            raise ValueError(
                f"the stream is {stream.scenario!r} but the learner is {self.scenario!r}"
            )
        self._check_learns()
        st = result if result is not None else Result()
        if stream.experiences[0].train.x.device != self.device:
            stream = stream.to(self.device)
        if self.model is None or not self.seen:
            self.info = json_info(stream.info)
            self.name = stream.name
        with self._own_rng():
            self._ensure_model(stream)
        evaluator = Evaluator(stream, self.config.eval_batch_size) if evaluate else None
        offset = len(self.seen) - st.next_experience
        exps = [e if not offset else replace(e, index=e.index + offset) for e in stream]

        def train(exp: Experience, seen: list[Experience], on_epoch: OnEpoch) -> None:
            with self._own_rng():
                self._train(exp, seen, on_epoch)
            self._remember(exp)

        def rows() -> list[list[float]]:
            assert evaluator is not None
            return [evaluator.row(self._model(), self.strategies)]

        stream_loop(
            exps,
            self.seen[:offset],
            any(s.sees_whole_stream for s in self.strategies),
            train,
            rows if evaluate else None,
            [st],
            None if on_experience is None else lambda i: on_experience(self, st),
            progress,
            self.device,
        )
        return st

    def _train(
        self,
        exp: Experience,
        seen: Sequence[Experience],
        on_epoch: OnEpoch | None = None,
    ) -> None:
        self.model, self.optimizer = train_experience(
            self._model(),
            self.strategies,
            exp,
            seen,
            self.optimizer,
            self.config,
            self.generator,
            on_epoch,
        )

    def _check_learns(self) -> None:
        if self.for_prediction:
            raise ValueError(
                "this model was exported for prediction: it holds no training state "
                "(memory, optimizer); go on learning from the full save (a run's model/)"
            )

    def _remember(self, exp: Experience) -> None:
        """Keep what later experiences need of `exp`: its classes and task, and its data
        only when a strategy trains on past data (cumulative)."""
        if not any(getattr(s, "uses_past_data", False) for s in self.strategies):
            empty = exp.train[:0]
            exp = Experience(exp.index, empty, empty, exp.classes, exp.task)
        self.seen.append(exp)

    # -- the model ---------------------------------------------------------------------------
    def _model(self) -> nn.Module:
        if self.model is None:
            raise ValueError("this learner has not learned anything yet: call learn() first")
        return self.model

    def _ensure_model(self, data: Experience | Stream) -> None:
        """Build the model from its spec on the first data, and grow its head for new
        classes and tasks (in the learner's random state)."""
        size = model_sizes(data, self.name, self.scenario)
        if self.input_shape is None:
            self.input_shape, self.dtype = size.shape, size.dtype
        if self.model is None:
            self.model = self._build(size.skeleton).to(self.device)
            self.built_for = {"n_classes": size.n_classes, "n_tasks": size.n_tasks}
        elif grow_outputs(self.model, size.n_classes, size.n_tasks):
            self.model.to(self.device)
        self.n_classes = max(self.n_classes, size.n_classes)
        self.n_tasks = max(self.n_tasks, size.n_tasks)

    def _build(self, skeleton: Stream) -> nn.Module:
        return build_for(self._factory, skeleton, self.head)

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with the global torch generators set to this learner's state (seeded with
        `seed` at first), then store that state and put the caller's back."""
        cuda = self.device.type == "cuda"
        devices = [self.device] if cuda else []
        with torch.random.fork_rng(devices=devices):
            if self._rng is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self._rng)
                if cuda and self._cuda_rng is not None:
                    torch.cuda.set_rng_state(self._cuda_rng, self.device)
            try:
                yield
            finally:
                self._rng = torch.get_rng_state()
                if cuda:
                    self._cuda_rng = torch.cuda.get_rng_state(self.device)

    # -- prediction ----------------------------------------------------------------------------
    def _inputs(self, x: Any) -> Tensor:
        if self.input_shape is None:
            raise ValueError("this learner has not learned anything yet: call learn() first")
        x = align_columns(x, self.feature_names, where="the inputs")
        return prediction_inputs(x, self.input_shape).to(self.device, self.dtype)

    def _tasks(self, task: Any, n: int) -> Tensor:
        return prediction_tasks(task, n, self.scenario, tuple(self.tasks)).to(self.device)

    @torch.no_grad()
    def predict(self, x: Any, task: Any = None, batch_size: int = 1024) -> Tensor:
        """Predicted class ids (a CPU LongTensor) for inputs of shape `(N, *input_shape)`;
        `task` (an int or one id per sample) in the task scenario only. Only classes it
        has learned are predicted."""
        model, xs = self._model(), self._inputs(x)
        ts = self._tasks(task, len(xs))
        if any(s.overrides("predict") for s in self.strategies):
            return predict(model, self.strategies, xs, ts, batch_size).cpu()
        return self._logits(model, xs, ts, batch_size).argmax(1).cpu()

    @torch.no_grad()
    def predict_proba(self, x: Any, task: Any = None, batch_size: int = 1024) -> Tensor:
        """Class probabilities `(N, n_outputs)`: column `c` is class id `c` (0 for classes
        not learned yet). Refused when a strategy replaces prediction (e.g. iCaRL's
        nearest-mean classifier)."""
        owners = [s.name for s in self.strategies if s.overrides("predict")]
        if owners:
            raise ValueError(
                f"strategy {owners[0]!r} replaces prediction, so the model's outputs are not "
                "its class probabilities; use predict()"
            )
        model, xs = self._model(), self._inputs(x)
        ts = self._tasks(task, len(xs))
        return torch.softmax(self._logits(model, xs, ts, batch_size), 1).cpu()

    def _logits(self, model: nn.Module, xs: Tensor, ts: Tensor, batch_size: int) -> Tensor:
        """The model's outputs in eval mode, classes never learned masked out."""
        learned = None if self.scenario == "task" else self.class_ids  # task heads mask
        return masked_logits(model, xs, ts, batch_size, self.n_classes, learned)

    def evaluate(self, test_sets: Stream | Sequence[Any]) -> list[float]:
        """Accuracy on each test set: a `Stream` (each experience's test set), or a list
        of `TensorSet`s, `Experience`s (their test sets) or `(x, y[, task])` tuples."""
        out = []
        for x, y, t in scored_sets(test_sets, self.scenario == "task"):
            if len(x) == 0:
                out.append(math.nan)
                continue
            ids, _, _ = LabelMap(self.labels.kind, list(self.labels.names)).encode(y, len(x))
            out.append(float((self.predict(x, task=t) == ids).double().mean()))
        return out

    # -- saving --------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything `load` needs, as nested tensors and JSON-able values."""
        return learner_payload(self)

    def save(
        self, path: str | os.PathLike[str], *, for_prediction: bool = False, **extra: Any
    ) -> Path:
        """Write the learner to folder `path` (atomically: a crash leaves the previous
        save); `extra` entries are stored beside (e.g. a run's progress). `for_prediction`:
        an export that predicts the same but holds no training samples (no memory,
        optimizer or past data), so it cannot go on learning."""
        return write_learner(path, {**learner_payload(self, for_prediction), **extra})

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        model: nn.Module | Callable[..., nn.Module] | None = None,
    ) -> Learner:
        """Load a saved learner (a folder written by `save`, a run's `RUN_DIR` or its
        `model/` or `checkpoint/`). A learner built from an `nn.Module` object (not a
        spec) needs `model`: a fresh module of the same architecture, or its factory."""
        dev = resolve_device(device)
        payload, where = read_learner(path, dev)
        return restore_learner(cls, payload, where, dev, model)

    def __repr__(self) -> str:
        what = self.model_spec or type(self.model).__name__
        return (
            f"<Learner {what} {self.spec} {self.scenario}: {len(self.seen)} experiences, "
            f"{len(self.class_ids)} classes>"
        )


__all__ = ["LearnSummary", "Learner", "Result", "resolve_device", "stream_loop"]
