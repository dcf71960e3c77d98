"""GEM, A-GEM and iCaRL, and herding selection.

The QP solver is checked against brute-force enumeration of active sets; projections are
checked to violate no constraint, on random instances and inside real runs; herding and
nearest-mean-of-exemplars on toys with known answers; each method against naive.
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import statistics

import pytest
import torch
from torch import nn

from lifelong.data import get_benchmark
from lifelong.experiment.run import RunConfig, run
from lifelong.memory.herding import herding_select
from lifelong.models import build_model
from lifelong.strategies.agem import AGEM, agem_project
from lifelong.strategies.gem import (
    GEM,
    balanced_rows,
    flat_grad,
    gem_project,
    loss_grad,
    solve_nonneg_qp,
    trainable_params,
)
from lifelong.strategies.icarl import ICaRL
from lifelong.strategies.naive import Naive
from lifelong.train import TrainConfig, train_experience

# -- the QP solver -------------------------------------------------------------------------


def _objective(Q: torch.Tensor, c: torch.Tensor, u: torch.Tensor) -> float:
    return float(0.5 * u @ Q @ u + c @ u)


def _brute_force(Q: torch.Tensor, c: torch.Tensor) -> float:
    """Minimum over every active set S of the unconstrained optimum on S, where feasible."""
    k, best = len(c), math.inf
    for r in range(k + 1):
        for free in itertools.combinations(range(k), r):
            u = torch.zeros(k, dtype=torch.float64)
            if free:
                idx = list(free)
                u[idx] = torch.linalg.pinv(Q[idx][:, idx]) @ -c[idx]
            if bool((u >= -1e-9).all()):
                best = min(best, _objective(Q, c, u.clamp_min(0)))
    return best


def _instance(k: int, p: int, gen: torch.Generator, degenerate: str) -> tuple[torch.Tensor, ...]:
    """Past gradients A [k, p] (optionally degenerate) and a current gradient g [p]."""
    A = torch.randn(k, p, generator=gen, dtype=torch.float64)
    if degenerate == "duplicate" and k > 1:
        A[1] = A[0]
    elif degenerate == "parallel" and k > 2:
        A[2] = -3 * A[0]
    elif degenerate == "zero":
        A[-1] = 0
    elif degenerate == "low_rank":  # more constraints than dimensions
        A = A[:, :2] @ torch.randn(2, p, generator=gen, dtype=torch.float64)
    g = torch.randn(p, generator=gen, dtype=torch.float64) * 2
    return A, g


@pytest.mark.parametrize("degenerate", ["none", "duplicate", "parallel", "zero", "low_rank"])
def test_qp_matches_brute_force_and_meets_kkt(degenerate: str) -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        k, p = 1 + trial % 6, 2 + trial % 7
        A, g = _instance(k, p, gen, degenerate)
        margin = 0.5 * (trial % 2)
        Q, c = A @ A.T, A @ g + margin * (A @ A.T).sum(1)
        u = solve_nonneg_qp(Q, c)
        scale = 1.0 + float(Q.abs().max()) + float(c.abs().max())
        assert bool((u >= 0).all())
        assert bool((Q @ u + c >= -1e-8 * scale).all()), "dual feasibility (KKT) violated"
        assert abs(float(u @ (Q @ u + c))) <= 1e-8 * scale * (1 + float(u.abs().sum()))
        assert _objective(Q, c, u) <= _brute_force(Q, c) + 1e-9 * scale


def test_qp_refuses_bad_shapes_and_handles_empty() -> None:
    with pytest.raises(ValueError, match="expected Q"):
        solve_nonneg_qp(torch.eye(3), torch.zeros(2))
    assert solve_nonneg_qp(torch.zeros(0, 0), torch.zeros(0)).shape == (0,)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_gem_projection_violates_no_constraint(margin: float) -> None:
    gen = torch.Generator().manual_seed(1)
    for trial in range(40):
        A, g = _instance(1 + trial % 8, 50, gen, ["none", "duplicate", "zero"][trial % 3])
        A, g = A.float(), g.float()
        z = gem_project(g, A, margin)
        tol = 1e-4 * float(A.norm(dim=1).max()) * float(z.norm() + 1)
        assert bool((A @ z >= -tol).all())


def test_gem_projection_is_the_closest_feasible_vector() -> None:
    """With margin 0 the projection solves the primal: no feasible vector is closer to g."""
    gen = torch.Generator().manual_seed(2)
    A, g = _instance(3, 4, gen, "none")
    A[0] = -g + 0.1 * A[0]  # make sure some constraint is violated
    z = gem_project(g, A, 0.0)
    assert bool((A @ z >= -1e-9).all())
    best = float((z - g).norm())
    for _ in range(2000):  # random feasible candidates never beat it
        cand = z + 0.3 * torch.randn(4, generator=gen, dtype=torch.float64)
        if bool((A @ cand >= 0).all()):
            assert float((cand - g).norm()) >= best - 1e-9
    ok = torch.randn(4, dtype=torch.float64)
    assert torch.allclose(gem_project(ok, ok[None] * 2, 0.0), ok)  # nothing to fix


# -- A-GEM ---------------------------------------------------------------------------------


def test_agem_projection() -> None:
    gen = torch.Generator().manual_seed(3)
    for _ in range(50):
        g, ref = torch.randn(20, generator=gen), torch.randn(20, generator=gen)
        z = agem_project(g, ref)
        assert float(z @ ref) >= -1e-5 * float(ref.norm() * g.norm())
        if float(g @ ref) >= 0:
            assert torch.equal(z, g)
        else:  # the component along ref is removed, the rest kept
            assert torch.allclose(z, g - (g @ ref) / (ref @ ref) * ref)
    assert torch.equal(agem_project(torch.ones(3), torch.zeros(3)), torch.ones(3))


# -- projections inside real runs ----------------------------------------------------------


class _CheckedGEM(GEM):
    """GEM that recomputes every constraint after its own projection."""

    checked = 0

    def grads(self, model: nn.Module) -> None:
        super().grads(model)
        if not self.mem_x_:
            return
        params = trainable_params(model)
        z = flat_grad(params)
        for x, y, t in zip(self.mem_x_, self.mem_y_, self.mem_t_):
            gk = loss_grad(model, params, x, y, t)
            assert float(z @ gk) >= -1e-4 * float(z.norm() * gk.norm())
        _CheckedGEM.checked += 1


class _CheckedAGEM(AGEM):
    """A-GEM that checks its update against the reference gradient it drew."""

    checked = 0

    def grads(self, model: nn.Module) -> None:
        assert self.mem_y_ is not None or self.mem_x_ is None
        if self.mem_x_ is None or self.mem_y_ is None or self.mem_t_ is None:
            return
        state = torch.random.get_rng_state()
        super().grads(model)
        torch.random.set_rng_state(state)  # redraw the same reference batch
        idx = torch.randperm(len(self.mem_y_))[: self.sample_size]
        params = trainable_params(model)
        ref = loss_grad(model, params, self.mem_x_[idx], self.mem_y_[idx], self.mem_t_[idx])
        z = flat_grad(params)
        assert float(z @ ref) >= -1e-4 * float(z.norm() * ref.norm())
        _CheckedAGEM.checked += 1


def _train_stream(strategy, scenario: str = "class", seed: int = 0) -> float:
    stream = get_benchmark("synthetic", scenario)
    torch.manual_seed(seed)
    model = build_model("mlp", stream, hidden=(32,))
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.1)
    gen, opt = torch.Generator().manual_seed(seed), None
    for i, exp in enumerate(stream):
        model, opt = train_experience(model, [strategy], exp, stream[: i + 1], opt, cfg, gen)
    return float(sum(run_eval(model, strategy, stream)) / len(stream))


def run_eval(model: nn.Module, strategy, stream) -> list[float]:
    from lifelong.train import Evaluator

    return Evaluator(stream).row(model, [strategy])


@pytest.mark.parametrize("scenario", ["class", "task", "domain"])
def test_no_constraint_violated_during_training(scenario: str) -> None:
    _CheckedGEM.checked = _CheckedAGEM.checked = 0
    gem = _CheckedGEM(mem_size=60)
    _train_stream(gem, scenario)
    _train_stream(_CheckedAGEM(mem_size=60, sample_size=16), scenario)
    assert _CheckedGEM.checked > 0 and _CheckedAGEM.checked > 0
    if scenario == "class":
        assert gem.n_projections_ > 0  # the constraints were active, not vacuous


# -- memories ------------------------------------------------------------------------------


def test_balanced_rows_and_agem_memory_budget() -> None:
    y = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    idx = balanced_rows(y, 9)
    assert len(set(idx.tolist())) == 9 and torch.bincount(y[idx]).tolist() == [3, 3, 3]
    counts = torch.bincount(y[balanced_rows(y, 12)]).tolist()
    assert counts[1] == 3 and sorted(counts[::2]) == [4, 5]  # class 1 has only 3 rows
    stream = get_benchmark("synthetic", "class")
    agem = AGEM(mem_size=50)
    for exp in stream:
        agem.end(nn.Identity(), exp)
    assert agem.mem_owner_ is not None and agem.mem_y_ is not None
    assert torch.bincount(agem.mem_owner_).tolist() == [16, 16, 16]
    assert torch.bincount(agem.mem_y_).tolist() == [8] * 6


# -- herding -------------------------------------------------------------------------------


def _herding_reference(features: torch.Tensor, n: int) -> list[int]:
    """The definition, one candidate at a time."""
    f = torch.nn.functional.normalize(features.double(), dim=1)
    mu, chosen, total = f.mean(0), [], torch.zeros(f.shape[1], dtype=torch.float64)
    for k in range(1, n + 1):
        dists = {i: float(((mu - (total + f[i]) / k) ** 2).sum()) for i in range(len(f))}
        i = min((i for i in dists if i not in chosen), key=lambda i: (dists[i], i))
        chosen.append(i)
        total += f[i]
    return chosen


def test_herding_picks_the_central_exemplars() -> None:
    angles = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0]) * math.pi / 180
    feats = torch.stack([torch.cos(angles), torch.sin(angles)], 1) * torch.tensor(
        [[1.0], [3.0], [0.5], [2.0], [7.0]]  # norms must not matter
    )
    assert herding_select(feats, 1).tolist() == [2]  # the row on the mean direction
    assert sorted(herding_select(feats, 3).tolist()) == [1, 2, 3]
    assert sorted(herding_select(feats, 5).tolist()) == [0, 1, 2, 3, 4]
    assert herding_select(feats, 0).tolist() == []


def test_herding_matches_definition_and_converges_to_the_mean() -> None:
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(200, 8, generator=gen) + 1.5
    assert herding_select(feats, 30).tolist() == _herding_reference(feats, 30)
    f = torch.nn.functional.normalize(feats, dim=1)
    mu = f.mean(0)
    order = herding_select(feats, 200)
    errs = [float((f[order[:k]].mean(0) - mu).norm()) for k in (5, 20, 80, 200)]
    assert errs[0] > errs[1] > errs[2] > errs[3] and errs[3] < 1e-5
    random_err = statistics.mean(
        float((f[torch.randperm(200, generator=gen)[:20]].mean(0) - mu).norm()) for _ in range(50)
    )
    assert errs[1] < random_err / 3
    assert sorted(order.tolist()) == list(range(200))  # a permutation: every row once


def test_herding_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must be"):
        herding_select(torch.randn(4, 2), 5)
    with pytest.raises(ValueError, match="features must be"):
        herding_select(torch.randn(4), 2)


# -- iCaRL ---------------------------------------------------------------------------------


class _Identity(nn.Module):
    """A model whose features are its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Identity()
        self.head = nn.Linear(2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_icarl_nearest_mean_of_exemplars() -> None:
    icarl = ICaRL(mem_size=20)
    icarl.classes_ = [7, 3, 5]
    icarl.class_means_ = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = torch.tensor([[2.0, 0.1], [0.2, 5.0], [-3.0, -0.5], [0.9, 1.0], [0.1, 0.0]])
    pred = icarl.predict(_Identity(), x, torch.zeros(5, dtype=torch.long))
    assert pred.tolist() == [7, 3, 5, 3, 7]
    # means are built from normalised exemplar features, then normalised
    icarl = ICaRL(mem_size=4)
    icarl.classes_ = [0, 1]
    icarl.ex_x_ = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, -2.0], [0.0, -1.0]])
    icarl.ex_y_ = torch.tensor([0, 0, 1, 1])
    icarl._update_means(_Identity())
    assert icarl.class_means_ is not None
    expected = torch.tensor([[1.0, 1.0], [0.0, -1.0]]) / torch.tensor([[2**0.5], [1.0]])
    assert torch.allclose(icarl.class_means_, expected)


def test_icarl_keeps_a_herding_exemplar_budget_and_distils() -> None:
    stream = get_benchmark("synthetic", "class")
    icarl = ICaRL(mem_size=30)
    _train_stream(icarl)
    assert icarl.ex_y_ is not None and icarl.prev_model_ is not None
    assert torch.bincount(icarl.ex_y_).tolist() == [5] * 6  # 30 // 6 per class
    assert icarl.classes_ == [0, 1, 2, 3, 4, 5]
    assert set(icarl.prev_model_) == set(build_model("mlp", stream, hidden=(32,)).state_dict())


def test_icarl_refuses_other_scenarios_and_bad_values() -> None:
    with pytest.raises(ValueError, match="'icarl' serves the class"):
        run(RunConfig(benchmark="synthetic", scenario="task", strategy="icarl"))
    with pytest.raises(ValueError, match="mem_size"):
        ICaRL(mem_size=0)
    with pytest.raises(ValueError, match="replay_ratio"):
        ICaRL(replay_ratio=-1.0)
    with pytest.raises(ValueError, match="mem_size"):
        GEM(mem_size=0)
    with pytest.raises(ValueError, match="margin"):
        GEM(margin=-0.1)
    with pytest.raises(ValueError, match="sample_size"):
        AGEM(sample_size=0)


@pytest.mark.parametrize("make", [lambda: ICaRL(mem_size=30), lambda: GEM(20), lambda: AGEM(60)])
def test_state_dict_round_trip_continues_identically(make) -> None:
    stream = get_benchmark("synthetic", "class")
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    torch.manual_seed(0)
    model, s = build_model("mlp", stream, hidden=(32,)), make()
    gen, opt = torch.Generator().manual_seed(0), None
    for i in range(2):
        model, opt = train_experience(model, [s], stream[i], stream[: i + 1], opt, cfg, gen)
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    buf.seek(0)
    twin = make()
    twin.load_state_dict(torch.load(buf, weights_only=True))
    copy_model = copy.deepcopy(model)
    outs = []
    for m, strat in ((model, s), (copy_model, twin)):
        torch.manual_seed(5)
        m, _ = train_experience(
            m, [strat], stream[2], stream[:3], None, cfg, torch.Generator().manual_seed(5)
        )
        outs.append(run_eval(m, strat, stream))
    assert outs[0] == outs[1]


# -- against naive -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: GEM(20), lambda: AGEM(60, 32), lambda: ICaRL(mem_size=30)]
)
def test_beats_naive_on_a_small_class_stream(make) -> None:
    naive = statistics.mean(_train_stream(Naive(), seed=s) for s in (0, 1))
    ours = statistics.mean(_train_stream(make(), seed=s) for s in (0, 1))
    assert ours > naive + 0.1, (ours, naive)


def test_gem_helps_in_the_domain_scenario() -> None:
    naive = _train_stream(Naive(), "domain")
    assert _train_stream(GEM(20), "domain") > naive + 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spec", ["gem", "agem", "icarl"])
def test_runs_on_cuda(spec: str) -> None:
    row = run(
        RunConfig(benchmark="synthetic", strategy=spec, device="cuda", train=TrainConfig(epochs=1))
    )
    assert row["status"] == "ok" and row["final_average_accuracy"] > 0.5
    feats = torch.randn(50, 4, device="cuda")
    assert herding_select(feats, 10).device.type == "cuda"


@pytest.mark.slow
@pytest.mark.parametrize("spec,floor", [("gem", 0.75), ("icarl", 0.75)])
def test_reference_protocol_accuracy(spec: str, floor: float) -> None:
    accs = [
        run(RunConfig(strategy=spec, scenario="class", seed=s))["final_average_accuracy"]
        for s in range(3)
    ]
    naive = run(RunConfig(strategy="naive", scenario="class", seed=0))["final_average_accuracy"]
    assert statistics.mean(accs) >= floor > naive + 0.3, (accs, naive)


def test_gem_mem_size_is_the_total_shared_by_the_experiences() -> None:
    stream = get_benchmark("synthetic", "class")
    gem = GEM(mem_size=50)
    sizes = []
    for exp in stream:
        gem.end(nn.Identity(), exp)
        sizes.append([len(y) for y in gem.mem_y_])
    assert sizes == [[50], [25, 25], [17, 17, 16]]  # the total is mem_size throughout
    for y in gem.mem_y_:  # each share stays balanced over its experience's classes
        counts = torch.bincount(y)
        assert int(counts[counts > 0].max() - counts[counts > 0].min()) <= 1
    tiny = GEM(mem_size=2)
    for exp in stream:
        tiny.end(nn.Identity(), exp)
    assert [len(y) for y in tiny.mem_y_] == [1, 1, 0]  # an empty share is no constraint
