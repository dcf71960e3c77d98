"""`check_strategy`: the conformance checks every strategy passes, for your own too.

    from lifelong.strategies import check_strategy
    check_strategy(MyMethod)            # or check_strategy("my-method(lambda=10)")

In the spirit of scikit-learn's `check_estimator`: a few seconds on tiny synthetic streams
(3 experiences, a small MLP, CPU, through `lifelong.Learner`). It raises `StrategyCheckError` (an `AssertionError`)
naming the failed check, one of `CHECKS`:

* `registered`: registered under its name, with a docstring, serving known scenarios;
* `ranges`: every numeric hyper-parameter declares a `Range` that holds its default, and an
  out-of-range value (or a choice outside its `Literal`) is refused, directly and from a
  spec, with one `name: ` prefix;
* `params`: hyper-parameters stored under their names, plain values, and they round-trip
  through `clone` and through `canonical_spec` re-parsed by `build_strategies`;
* `scenarios`: trains on 3 experiences in each scenario it serves; weights stay finite;
* `state_dict`: holds only tensors, numbers, strings, bools, None and lists/tuples/dicts
  of them, round-trips through `lifelong.serialize` and loads into a fresh instance;
* `determinism`: the same seed gives bit-identical weights;
* `resume`: a `Learner` saved after 2 experiences and loaded (`Learner.save` /
  `Learner.load`: a fresh model and strategy) continues bit-identically to the
  uninterrupted run.
"""

from __future__ import annotations

import copy
import inspect
import math
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import torch

from lifelong.config import TrainConfig
from lifelong.data.benchmarks import synthetic_data
from lifelong.data.experience import SCENARIOS, Stream, TensorSet
from lifelong.data.scenarios import permuted, split_by_class
from lifelong.data.text import encode_texts
from lifelong.learner import Learner
from lifelong.results import Result
from lifelong.serialize import read_state_dir, write_state_dir
from lifelong.spec import parse_one, spec_name
from lifelong.strategies.base import Strategy, canonical_spec
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import build_one, build_strategies, registry

CHECKS = ("registered", "ranges", "params", "scenarios", "state_dict", "determinism", "resume")
PLAIN = (bool, int, float, str, type(None))


class StrategyCheckError(AssertionError):
    """A strategy failed conformance check `check` (one of `CHECKS`)."""

    def __init__(self, strategy: str, check: str, message: str) -> None:
        super().__init__(f"check_strategy({strategy}) failed the {check!r} check: {message}")
        self.strategy, self.check = strategy, check


def check_strategy(target: type[Strategy] | Strategy | str) -> None:
    """Run every conformance check on a strategy class (built with its defaults), an
    instance (its hyper-parameters) or a spec like `"ewc(lambda=10)"`; see the module doc."""
    s = _instance(target)
    with torch.random.fork_rng(devices=[]):
        for check in CHECKS:
            try:
                _CHECK_FUNCS[check](s)
            except StrategyCheckError:
                raise
            except Exception as e:
                msg = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"
                raise StrategyCheckError(s.name, check, msg) from e


def _instance(target: type[Strategy] | Strategy | str) -> Strategy:
    if isinstance(target, Strategy):
        return target.clone()
    if isinstance(target, str):
        return build_one(*parse_one(target))
    if not (isinstance(target, type) and issubclass(target, Strategy)):
        raise TypeError(f"expected a Strategy class, instance or spec, got {target!r}")
    try:
        return target()
    except Exception as e:
        raise StrategyCheckError(target.name, "params", f"cannot build with defaults: {e}") from e


# -- checks without training ---------------------------------------------------------------
def _registered(s: Strategy) -> None:
    cls = type(s)
    assert registry().get(s.name) is cls, f"{cls.__name__} is not registered as {s.name!r}"
    assert (cls.__dict__.get("__doc__") or "").strip(), f"{cls.__name__} needs a docstring"
    unknown = set(cls.scenarios) - set(SCENARIOS)
    assert cls.scenarios and not unknown, f"scenarios {cls.scenarios!r}: expected {SCENARIOS}"


def _bad_value(r: Range, integer: bool) -> float:
    """A value just outside range `r` (an integer for an integer parameter)."""
    low = r.ge - 1 if r.ge is not None else r.gt
    if low is not None:
        return math.floor(low) if integer else low
    high = r.le + 1 if r.le is not None else r.lt
    assert high is not None
    return math.ceil(high) if integer else high


def _ranges(s: Strategy) -> None:
    cls, sig = type(s), inspect.signature(type(s).__init__)
    hints = typing.get_type_hints(cls.__init__)
    for arg in cls.param_names():
        hint, key, default = hints.get(arg), spec_name(arg), sig.parameters[arg].default
        numeric = {int, float} & {hint, *get_args(hint)}
        if numeric and arg not in cls.ranges:
            raise AssertionError(f"{key} is numeric but {cls.__name__}.ranges declares no Range")
        if arg in cls.ranges:
            r = cls.ranges[arg]
            ok = default is None or default is inspect.Parameter.empty or default in r
            assert ok, f"the default {key}={default!r} is outside its range ({r.describe()})"
            if r != Range():
                _refused(s, arg, _bad_value(r, int in numeric and float not in numeric))
        choices = [get_args(a) for a in (hint, *get_args(hint)) if get_origin(a) is Literal]
        if choices:
            _refused(s, arg, "not-a-choice")


def _refused(s: Strategy, arg: str, bad: Any) -> None:
    """`bad` for `arg` is refused directly and from a spec, with a single prefix."""
    key, params = spec_name(arg), s.get_params()
    build: list[Callable[[], object]] = [
        lambda: type(s)(**{**params, arg: bad}),
        lambda: build_one(s.name, {key: bad}),
    ]
    for how, make in zip(("directly", "from a spec"), build):
        try:
            make()
        except ValueError as e:
            msg = str(e)
            once = msg.startswith(f"{s.name}: {key}") and f"{s.name}: {s.name}:" not in msg
            assert once, (
                f"{key}={bad!r} ({how}) raised {msg!r}; expected '{s.name}: {key} ...' "
                "with one prefix"
            )
        else:
            raise AssertionError(f"{key}={bad!r} is out of range but was accepted ({how})")


def _params(s: Strategy) -> None:
    params = s.get_params()
    for k, v in params.items():
        values = v if isinstance(v, tuple) else (v,)
        assert all(isinstance(x, PLAIN) for x in values), (
            f"hyper-parameter {k}={v!r}: expected plain values (numbers, str, bool, None, tuples)"
        )
    c = s.clone()
    assert type(c) is type(s) and c is not s, "clone() must return a new instance"
    assert c.get_params() == params, f"clone() has {c.get_params()}, expected {params}"
    spec = canonical_spec([s])
    built = build_strategies(spec) if s.name != "naive" else [s]
    assert len(built) == 1 and type(built[0]) is type(s), f"spec {spec!r} builds {built}"
    assert built[0].get_params() == params, (
        f"spec {spec!r} gives {built[0].get_params()}, expected {params}"
    )


# -- training ------------------------------------------------------------------------------
def tiny_stream(scenario: str, text: bool = False) -> Stream:
    """3 experiences of 2 Gaussian-blob classes (8 features, 12 rows per class); with
    `text`, each row written as a short text of its rounded features."""
    tr, te = synthetic_data(n_classes=6, dim=8, per_class=12, test_per_class=4)
    if text:
        tr, te = _as_text(tr), _as_text(te)
    if scenario == "domain":
        return permuted(tr, te, 3, name="check")
    return split_by_class(tr, te, scenario=scenario, classes_per_experience=2, name="check")


def _as_text(data: TensorSet) -> TensorSet:
    texts = [" ".join(f"{v:+.0f}" for v in row) for row in data.x.tolist()]
    return TensorSet(torch.from_numpy(encode_texts(texts, 48)), data.y, data.t)


def _learner(s: Strategy, scenario: str, seed: int = 0) -> Learner:
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.05, momentum=0.0)
    model = "text:minilm(max_tokens=16)" if s.needs_text_model else "mlp(hidden=(16,))"
    return Learner(model, s, config=cfg, scenario=scenario, seed=seed)


def _full_run(s: Strategy, scenario: str, seed: int = 0) -> tuple[Learner, list[float]]:
    """A fresh learner with a clone of `s`, trained on the 3 experiences of a tiny stream."""
    learner = _learner(s.clone(), scenario, seed)
    result = learner.fit_stream(tiny_stream(scenario, s.needs_text_model))
    return learner, result.matrix[-1]


def _scenarios(s: Strategy) -> None:
    for scenario in type(s).scenarios:
        learner, row = _full_run(s, scenario)
        weights = learner.model.state_dict() if learner.model is not None else {}
        bad = [n for n, p in weights.items() if not bool(torch.isfinite(p).all())]
        assert not bad, f"{scenario} scenario: weights {bad} are not finite"
        assert all(0.0 <= a <= 1.0 for a in row), f"{scenario} scenario: accuracies {row}"


def check_plain(value: Any, where: str = "state") -> None:
    """Assert `value` holds only tensors, numbers, str, bool, None and lists/tuples/dicts
    (with str/int keys) of them."""
    if isinstance(value, (torch.Tensor, *PLAIN)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r} is not a str/int"
            check_plain(v, f"{where}.{k}")
        return
    raise AssertionError(f"{where} holds a {type(value).__name__}; expected tensors, plain values")


def assert_same(a: Any, b: Any, where: str) -> None:
    """Assert nested state `a` equals `b` exactly (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        ok = isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b.to(a.device))
        assert ok, f"{where} differs"
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {b!r} vs {a!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b or (a != a and b != b), f"{where}: {b!r} instead of {a!r}"


def _state_dict(s: Strategy) -> None:
    learner, _ = _full_run(s, type(s).scenarios[0])
    [trained] = learner.strategies or [s]
    state = trained.state_dict()
    check_plain(state, "state_dict()")
    with tempfile.TemporaryDirectory() as tmp:
        write_state_dir(Path(tmp) / "state", {"state": state})
        loaded = read_state_dir(Path(tmp) / "state")["state"]
    assert_same(state, loaded, "state_dict() after write_state_dir/read_state_dir")
    twin = s.clone()
    twin.load_state_dict(loaded)
    assert_same(state, twin.state_dict(), "state_dict() of a fresh instance after loading")


def _weights(learner: Learner) -> dict[str, Any]:
    return {} if learner.model is None else learner.model.state_dict()


def _determinism(s: Strategy) -> None:
    scenario = type(s).scenarios[0]
    (a, row_a), (b, row_b) = _full_run(s, scenario), _full_run(s, scenario)
    assert_same(_weights(a), _weights(b), "weights of two runs with the same seed")
    assert row_a == row_b, f"accuracies of two runs with the same seed: {row_a} vs {row_b}"


def _resume(s: Strategy) -> None:
    """`Learner.save` after 2 experiences, `Learner.load`, train the 3rd: as uninterrupted."""
    scenario = type(s).scenarios[0]
    stream, whole = tiny_stream(scenario, s.needs_text_model), _learner(s.clone(), scenario)
    saved: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:

        def save(learner: Learner, result: Result) -> None:
            if result.next_experience == 2:
                learner.save(Path(tmp) / "saved")
                saved["result"] = copy.deepcopy(result)

        done = whole.fit_stream(stream, save)
        resumed = Learner.load(Path(tmp) / "saved")
    again = resumed.fit_stream(stream, result=saved["result"])
    assert_same(_weights(whole), _weights(resumed), "weights after resuming (vs uninterrupted)")
    for a, b in zip(whole.strategies, resumed.strategies):
        assert_same(a.state_dict(), b.state_dict(), "state_dict() after resuming")
    assert done.matrix == again.matrix, "accuracies differ after resuming"


_CHECK_FUNCS: dict[str, Callable[[Strategy], None]] = {
    "registered": _registered,
    "params": _params,
    "ranges": _ranges,
    "scenarios": _scenarios,
    "state_dict": _state_dict,
    "determinism": _determinism,
    "resume": _resume,
}

__all__ = ["CHECKS", "StrategyCheckError", "assert_same", "check_plain", "check_strategy"]
