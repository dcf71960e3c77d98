"""`lifelong.Learner`: learn batch by batch, grow for new classes, refuse bad input without
changing anything, save and load to continue bit for bit (every strategy, fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lifelong import Learner, TrainConfig
from lifelong.data import split_by_class
from lifelong.data.benchmarks import synthetic_data
from lifelong.data.experience import Stream
from lifelong.strategies import registry

FAST = TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.9)
#: small settings so that every strategy trains in well under a second per experience
SMALL = {
    "replay": "replay(mem_size=40)",
    "der": "der(mem_size=40)",
    "derpp": "derpp(mem_size=40)",
    "er-ace": "er-ace(mem_size=40)",
    "gdumb": "gdumb(mem_size=40)",
    "icarl": "icarl(mem_size=40)",
    "agem": "agem(mem_size=40,sample_size=16)",
    "ewc": "ewc(fisher_samples=32)",
    "online-ewc": "online-ewc(fisher_samples=32)",
}


def five_experiences(scenario: str) -> Stream:
    """10 classes of Gaussian blobs in 5 experiences of 2 classes."""
    train, test = synthetic_data(n_classes=10, dim=12, per_class=30, test_per_class=10)
    return split_by_class(train, test, scenario=scenario, classes_per_experience=2, name="blobs")


def scenario_of(name: str) -> str:
    scenarios = registry()[name].scenarios
    return "class" if "class" in scenarios else scenarios[0]


def spec_of(name: str) -> str:
    return SMALL.get(name, name)


def feed(learner: Learner, stream: Stream, parts: range) -> None:
    for i in parts:
        learner.learn(stream[i])


def test_learns_from_arrays_and_grows_for_new_classes() -> None:
    train, _ = synthetic_data(n_classes=6, dim=8, per_class=20)
    x, y = train.x.numpy(), train.y.numpy()
    learner = Learner("mlp(hidden=(16,))", "replay(mem_size=30)", config=FAST)
    first = learner.learn(x[y < 2], y[y < 2])
    assert first.classes == (0, 1) and first.samples == int((y < 2).sum())
    later = learner.learn(x[y >= 4], y[y >= 4])  # classes 4 and 5: never seen before
    assert later.new_classes == (4, 5) and learner.classes == (0, 1, 4, 5)
    assert learner.predict_proba(x[:3]).shape == (3, 6)
    assert set(learner.predict(x).tolist()) <= {0, 1, 4, 5}


def test_string_labels_get_ids_and_names() -> None:
    train, _ = synthetic_data(n_classes=3, dim=4, per_class=10)
    names = np.array(["cat", "dog", "owl"])[train.y.numpy()]
    learner = Learner("mlp(hidden=(8,))", config=FAST)
    learner.learn(train.x[:20], names[:20])
    learner.learn(train.x[20:], names[20:])
    assert learner.class_names == ["cat", "dog", "owl"]
    assert learner.class_name(int(learner.predict(train.x[:1])[0])) in {"cat", "dog", "owl"}
    with pytest.raises(ValueError, match="labels are integers .* strings before"):
        learner.learn(train.x[:4], train.y[:4])


def test_new_task_ids_get_new_heads() -> None:
    stream = five_experiences("task")
    learner = Learner("mlp(hidden=(16,))", config=FAST, scenario="task")
    for i in range(3):
        learner.learn(stream[i].train.x, stream[i].train.y, task=i)
    assert sorted(learner.tasks) == [0, 1, 2]
    pred = learner.predict(stream[2].test.x, task=2)
    assert set(pred.tolist()) <= set(stream[2].classes)
    with pytest.raises(ValueError, match=r"unknown task id\(s\) \[4\]"):
        learner.predict(stream[2].test.x, task=4)


def _snapshot(learner: Learner) -> dict[str, Any]:
    state = learner.state()
    state.pop("rng")
    return state


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda x, y: (x[:, :5], y), r"features must have shape \(N, 12\)"),
        (lambda x, y: (x, y.float()), "labels must be integers or strings, got dtype float32"),
        (
            lambda x, y: (x.index_put((torch.tensor([3]),), torch.tensor(float("nan"))), y),
            "features must be finite: sample 3 holds nan",
        ),
        (lambda x, y: (x[:0], y[:0]), "empty batch"),
        (lambda x, y: (x, y[:-1]), r"labels must be one per sample"),
        (lambda x, y: (x.to(torch.complex64), y), "real numbers"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(bad: Any, match: str) -> None:
    stream = five_experiences("class")
    learner = Learner("mlp(hidden=(16,))", "derpp(mem_size=20)", config=FAST)
    feed(learner, stream, range(2))
    before = _snapshot(learner)
    x, y = bad(stream[2].train.x, stream[2].train.y)
    with pytest.raises(ValueError, match=match):
        learner.learn(x, y)
    assert _same(before, _snapshot(learner))


def test_task_id_outside_the_task_scenario_is_refused() -> None:
    stream = five_experiences("class")
    learner = Learner("mlp(hidden=(16,))", config=FAST)
    with pytest.raises(ValueError, match="takes no task id"):
        learner.learn(stream[0].train.x, stream[0].train.y, task=1)
    assert learner.model is None and not learner.seen


def test_own_random_state_is_independent_of_the_process() -> None:
    stream = five_experiences("class")
    a, b = (Learner("mlp(hidden=(16,))", "replay(mem_size=30)", config=FAST) for _ in "ab")
    feed(a, stream, range(3))
    for i in range(3):
        torch.rand(17)  # someone else draws from the global generator in between
        b.learn(stream[i])
    assert _same(a.model.state_dict(), b.model.state_dict())


def test_fit_stream_matches_learning_experience_by_experience() -> None:
    stream = five_experiences("class")
    a = Learner("mlp(hidden=(16,))", "ewc(fisher_samples=32)", config=FAST)
    result = a.fit_stream(stream)
    assert len(result.matrix) == 5 and result.metrics()["final_average_accuracy"] is not None
    b = Learner("mlp(hidden=(16,))", "ewc(fisher_samples=32)", config=FAST)
    b.fit_stream(stream.__class__(**{**stream.__dict__, "experiences": stream.experiences[:2]}))
    b.fit_stream(stream.__class__(**{**stream.__dict__, "experiences": stream.experiences[2:]}))
    assert _same(a.model.state_dict(), b.model.state_dict())
    assert a.evaluate(stream) == b.evaluate(stream)


def test_model_object_needs_a_model_to_load(tmp_path: Path) -> None:
    from lifelong.models.mlp import MLP

    stream = five_experiences("class")
    learner = Learner(MLP(12, 10, (16,)), "lwf", config=FAST)
    feed(learner, stream, range(2))
    learner.save(tmp_path / "l")
    with pytest.raises(ValueError, match="pass model="):
        Learner.load(tmp_path / "l")
    again = Learner.load(tmp_path / "l", model=MLP(12, 10, (16,)))
    x = stream[0].test.x
    assert torch.equal(again.predict(x), learner.predict(x))


CONTINUE = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[2])
    from test_learner import five_experiences, scenario_of, feed
    from lifelong import Learner
    out = {}
    for name, folder in json.loads(sys.argv[1]).items():
        learner = Learner.load(folder)
        stream = five_experiences(scenario_of(name))
        feed(learner, stream, range(2, 5))
        xs = torch.cat([e.test.x for e in stream])
        ts = torch.cat([e.test.t for e in stream])
        task = ts if learner.scenario == "task" else None
        out[name] = learner.predict(xs, task=task).tolist()
        torch.save(learner.model.state_dict(), folder + ".weights")
    print(json.dumps(out))
    """
)


def test_saved_after_two_experiences_continues_bit_for_bit_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    names = sorted(
        n
        for n, c in registry().items()
        if c.__module__.startswith("lifelong.") and not c.needs_text_model  # text: tests/text
    )
    folders, expected, weights = {}, {}, {}
    for name in names:
        stream = five_experiences(scenario_of(name))
        whole = Learner("mlp(hidden=(16,))", spec_of(name), config=FAST, scenario=stream.scenario)
        feed(whole, stream, range(5))
        xs = torch.cat([e.test.x for e in stream])
        ts = torch.cat([e.test.t for e in stream])
        expected[name] = whole.predict(xs, task=ts if stream.scenario == "task" else None)
        weights[name] = whole.model.state_dict()
        cut = Learner("mlp(hidden=(16,))", spec_of(name), config=FAST, scenario=stream.scenario)
        feed(cut, stream, range(2))
        folders[name] = str(cut.save(tmp_path / name))
    proc = subprocess.run(
        [sys.executable, "-c", CONTINUE, json.dumps(folders), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in names:
        assert got[name] == expected[name].tolist(), name
        loaded = torch.load(folders[name] + ".weights", weights_only=True)
        assert _same(dict(weights[name]), dict(loaded)), name


def test_a_runs_saved_model_goes_on_learning(tmp_path: Path) -> None:
    import lifelong
    from lifelong.experiment.run import RunConfig, run

    stream = five_experiences("class")
    cfg = RunConfig(
        benchmark="blobs", strategy="replay(mem_size=30)", model="mlp(hidden=(16,))", train=FAST
    )
    row = run(cfg, stream=stream, run_dir=tmp_path / "run")
    learner = lifelong.load(tmp_path / "run")
    assert learner.classes == tuple(range(10)) and learner.optimizer is not None
    assert learner.evaluate(stream) == row["accuracy_matrix"][-1]
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.learn(stream[0].train.x, stream[0].train.y)
    assert not _same(before, learner.model.state_dict())


def test_datasets_tensorsets_and_arrays_train_the_same() -> None:
    from torch.utils.data import TensorDataset

    stream = five_experiences("class")
    data = stream[0].train
    forms = [
        ((data.x, data.y), {}),
        ((data.x.numpy(), data.y.numpy()), {}),
        ((data,), {}),
        ((TensorDataset(data.x, data.y),), {}),
    ]
    states = []
    for args, kw in forms:
        learner = Learner("mlp(hidden=(16,))", "lwf", config=FAST)
        learner.learn(*args, **kw)
        states.append(learner.model.state_dict())
    assert all(_same(states[0], s) for s in states[1:])
