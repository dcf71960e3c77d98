"""The compiled training step (`compile=True`) and bf16 precision: same results as eager.

On CPU the compiled step computes what the eager loop computes, but inductor fuses
operations, which changes float rounding in the last bits; over many SGD steps that can
move a few test predictions. On the tiny synthetic benchmark the accuracy matrices must
agree to one test sample per cell, the weights to 1e-4; on split-mnist-5k (slow) the
final accuracy to 0.02.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from lifelong import compiled, config
from lifelong.compiled import Update, _update, update_rule
from lifelong.config import TrainConfig, compile_unavailable
from lifelong.experiment.run import RunConfig, run, run_id, run_learner
from lifelong.strategies.registry import registry

TINY: dict[str, Any] = dict(benchmark="synthetic", model="mlp(hidden=(32,))")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_compile = pytest.mark.skipif(
    compile_unavailable("cpu") is not None, reason=f"{compile_unavailable('cpu')}"
)
#: the library's own strategies (test modules register others in the same session)
OURS = sorted(
    n
    for n, c in registry().items()
    if c.__module__.startswith("lifelong.") and not c.needs_text_model  # text: tests/text
)
SAFE = [n for n in OURS if registry()[n].compile_safe]
SPECS = {"replay": "replay(mem_size=40)", "der": "der(mem_size=40)", "derpp": "derpp(mem_size=40)",
         "er-ace": "er-ace(mem_size=40)", "agem": "agem(mem_size=40,sample_size=16)",
         "gdumb": "gdumb(mem_size=60)"}  # fmt: skip


def _scenario(name: str) -> str:
    return "class" if "class" in registry()[name].scenarios else registry()[name].scenarios[0]


def _pair(device: str = "cpu", **kw: Any) -> tuple[dict[str, Any], dict[str, Any], int]:
    """An eager and a compiled run of the same config, and how many compiled steps ran."""
    calls = []
    original = compiled.CompiledStep.__call__

    def spy(self: compiled.CompiledStep, batch: Any) -> None:
        calls.append(1)
        original(self, batch)

    cfg = RunConfig.from_dict({**TINY, **kw, "device": device})
    eager_learner, eager = run_learner(cfg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiled.CompiledStep, "__call__", spy)
        comp_learner, comp = run_learner(
            dataclasses.replace(cfg, train=cfg.train.replace(compile=True))
        )
    eager["_model"], comp["_model"] = eager_learner.model, comp_learner.model
    return eager, comp, len(calls)


def _assert_close(eager: dict[str, Any], comp: dict[str, Any], cell: float) -> None:
    a, b = torch.tensor(eager["accuracy_matrix"]), torch.tensor(comp["accuracy_matrix"])
    assert (a - b).abs().max().item() <= cell + 1e-9, (a, b)
    for (k, p), q in zip(
        eager["_model"].state_dict().items(), comp["_model"].state_dict().values()
    ):
        if p.is_floating_point():
            torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-4, msg=k)


@needs_compile
def test_compiled_naive_matches_eager() -> None:
    eager, comp, steps = _pair(strategy="naive")
    assert steps == 3 * 2 * 4  # 3 experiences x 2 epochs x 4 batches of 120 samples
    _assert_close(eager, comp, cell=1 / 40)  # one of the 40 test samples per experience
    assert comp["params"]["compile"] is True and eager["params"]["compile"] is False


@needs_compile
@pytest.mark.slow
@pytest.mark.parametrize("name", SAFE)
def test_compile_safe_strategy_matches_eager(name: str) -> None:
    eager, comp, steps = _pair(strategy=SPECS.get(name, name), scenario=_scenario(name))
    assert steps > 0
    _assert_close(eager, comp, cell=1 / 40)


@needs_compile
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in OURS if n not in SAFE])
def test_strategy_not_marked_compile_safe_still_matches_when_forced(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evidence for the flags: the strategies left unmarked (for speed or per-experience
    graphs, see `lifelong.compiled`) also give the eager results when forced through."""
    monkeypatch.setattr(registry()[name], "compile_safe", True)
    spec = {"gem": "gem(mem_size=16)", "icarl": "icarl(mem_size=40)"}.get(name, name)
    eager, comp, steps = _pair(strategy=spec, scenario=_scenario(name))
    assert steps > 0
    _assert_close(eager, comp, cell=1 / 40)


@needs_compile
@pytest.mark.slow
def test_compiled_adam_and_bf16_match_eager() -> None:
    eager, comp, steps = _pair(strategy="replay(mem_size=40)", optimizer="adam", lr=0.001)
    assert steps > 0
    _assert_close(eager, comp, cell=1 / 40)
    eager, comp, steps = _pair(strategy="naive", precision="bf16")
    assert steps > 0  # bf16 rounds coarsely: same accuracy within a few samples
    diff = abs(eager["final_average_accuracy"] - comp["final_average_accuracy"])
    assert diff <= 0.05


def test_not_compile_safe_strategy_trains_eagerly_with_a_warning() -> None:
    assert not registry()["gem"].compile_safe
    cfg = RunConfig(**TINY, strategy="gem(mem_size=16)")
    eager = run(cfg)
    with pytest.warns(RuntimeWarning, match="gem is not compile-safe; training eagerly"):
        comp = run(dataclasses.replace(cfg, train=TrainConfig(compile=True)))
    assert comp["accuracy_matrix"] == eager["accuracy_matrix"]


def test_compile_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._dynamo

    from lifelong.train import TrainConfig

    monkeypatch.setattr(torch._dynamo.eval_frame, "is_dynamo_supported", lambda: False)
    with pytest.raises(ValueError, match="compile=True is not possible here: .*Python"):
        TrainConfig(compile=True)
    TrainConfig(compile=False)  # eager training is unaffected
    monkeypatch.undo()
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(config.shutil, "which", lambda name: None)
    assert "C++ compiler" in str(compile_unavailable("cpu"))


def test_update_rule_refuses_what_it_does_not_implement() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    assert isinstance(update_rule(torch.optim.SGD(p, lr=0.1, momentum=0.9)), Update)
    assert isinstance(update_rule(torch.optim.Adam(p, lr=0.1, weight_decay=0.1)), Update)
    for opt in (
        torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.5),
        torch.optim.SGD(p, lr=0.1, maximize=True),
        torch.optim.Adam(p, amsgrad=True),
        torch.optim.AdamW(p),
        torch.optim.RMSprop(p),
    ):
        assert isinstance(update_rule(opt), str), opt


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.Adam(ps, lr=0.01),
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    ],
)
def test_update_equals_torch_optim(make: Any) -> None:
    """The update the compiled step traces, run eagerly, against torch.optim (5 steps);
    the second parameter gets no gradient at step 2, which torch.optim skips."""
    torch.manual_seed(0)
    ref = [nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))]
    ours = [nn.Parameter(p.detach().clone()) for p in ref]
    opt_ref, opt_ours = make(ref), make(ours)
    rule = update_rule(opt_ours)
    assert isinstance(rule, Update)
    state = compiled._optimizer_state(opt_ours, ours, rule)
    for step in range(5):
        grads = [torch.randn_like(p) for p in ref]
        used = (True, step != 2)
        for p, g, u in zip(ref, grads, used):
            p.grad = g if u else None
        opt_ref.step()
        _update(ours, [g if u else None for g, u in zip(grads, used)], state, rule, used)
        for a, b in zip(ref, ours):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_precision_and_compile_shape_the_run_id() -> None:
    base = RunConfig()
    ids = {run_id(dataclasses.replace(base, train=TrainConfig(**kw)), "naive", "fp") for kw in (
        {}, {"precision": "bf16"}, {"compile": True})}  # fmt: skip
    assert len(ids) == 3
    # the defaults leave the id of earlier versions (flat, without these fields) unchanged
    import hashlib
    import json

    later = ("precision", "compile", "eval_batch_size", "reset_optimizer")
    key = {k: v for k, v in dataclasses.asdict(base).items()
           if k not in ("device", "threads", "train")}  # fmt: skip
    key.update({k: v for k, v in base.train.to_dict().items() if k not in later})
    key.update(strategy="naive", data="fp")
    old = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert run_id(base, "naive", "fp") == old


def test_bf16_trains_to_a_similar_accuracy() -> None:
    fp32 = run(RunConfig(**TINY, strategy="naive"))
    bf16 = run(RunConfig(**TINY, strategy="naive", train=TrainConfig(precision="bf16")))
    assert bf16["params"]["precision"] == "bf16"
    assert abs(bf16["final_average_accuracy"] - fp32["final_average_accuracy"]) <= 0.1


def test_config_and_command_line_options(tmp_path: Any) -> None:
    from lifelong.cli import build_parser
    from lifelong.experiment.config import ConfigError, cli_overrides, load_config

    args = build_parser().parse_args(["compare", "--precision", "bf16", "--compile"])
    cfg = load_config(None, cli_overrides(args))
    assert {(c.train.precision, c.train.compile) for c in cfg.run_configs()} == {("bf16", True)}
    path = tmp_path / "e.yaml"
    path.write_text("strategies: [naive]\nsweep: {precision: [fp32, bf16]}\n")
    assert [c.train.precision for c in load_config(path).run_configs()] == ["fp32"] * 3 + [
        "bf16"
    ] * 3
    for bad, msg in (("precision: fp16", "unknown precision 'fp16'; expected one of fp32, bf16"),
                     ("compile: yes please", "compile must be true or false")):  # fmt: skip
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=msg):
            load_config(path)


@needs_compile
@pytest.mark.slow
def test_reference_protocol_compiled_and_bf16_accuracy() -> None:
    """split-mnist-5k, MLP 784-400-400-10, SGD momentum 0.9: the compiled run's final
    accuracy is the eager one's within 0.02 (same seed); bf16's within 0.03."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        eager = run(RunConfig(strategy="replay(mem_size=500)"))
        comp = run(RunConfig(strategy="replay(mem_size=500)", train=TrainConfig(compile=True)))
        bf16 = run(RunConfig(strategy="replay(mem_size=500)", train=TrainConfig(precision="bf16")))
    acc = eager["final_average_accuracy"]
    assert abs(comp["final_average_accuracy"] - acc) <= 0.02
    assert abs(bf16["final_average_accuracy"] - acc) <= 0.03


@CUDA
@pytest.mark.parametrize("name", SAFE)
def test_compiled_on_cuda_matches_eager(name: str) -> None:
    """The CUDA-graph path: runs, and agrees with eager CUDA training (CUDA kernels may
    round differently run to run, so within a few test samples per cell)."""
    eager, comp, steps = _pair("cuda", strategy=SPECS.get(name, name), scenario=_scenario(name))
    assert steps > 0
    a, b = torch.tensor(eager["accuracy_matrix"]), torch.tensor(comp["accuracy_matrix"])
    assert (a - b).abs().max().item() <= 3 / 40, (a, b)


@CUDA
def test_compiled_bf16_on_cuda() -> None:
    eager, comp, steps = _pair("cuda", strategy="naive", precision="bf16")
    assert steps > 0
    assert abs(eager["final_average_accuracy"] - comp["final_average_accuracy"]) <= 0.05
