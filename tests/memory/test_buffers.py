"""Replay buffers: reservoir uniformity, vectorised updates, class balance, herding, storage."""

from __future__ import annotations

import io

import pytest
import torch

from lifelong.memory import (
    Buffer,
    ClassBalancedBuffer,
    HerdingBuffer,
    ReservoirBuffer,
    balanced_quota,
    make_buffer,
)


def _ids(n: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` samples whose input is their stream position (x `[n, 1]`, y = id % 10, t = 0)."""
    ids = torch.arange(start, start + n)
    return ids.float().unsqueeze(1), ids % 10, torch.zeros(n, dtype=torch.long)


def _feed(buf: Buffer, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        buf.add(*_ids(min(batch, n - start), start))


def _stored_ids(buf: Buffer) -> torch.Tensor:
    rows = buf.rows()
    assert rows is not None
    return rows.x[:, 0].long()


# -- reservoir -------------------------------------------------------------------------------
def test_reservoir_is_uniform_over_the_stream() -> None:
    """N=5000 ids in batches of 37 through 500 slots, 100 seeds: every block of 250 stream
    positions is kept 2,500 times in expectation (p = 0.1); the standard deviation is about
    45, so a 10% tolerance (over 5 sd) never fails by chance, while "keep the first" or
    "keep the last" (or any order bias) puts whole blocks at 0 or 25,000."""
    n, mem, reps, block = 5000, 500, 100, 250
    hits = torch.zeros(n)
    for seed in range(reps):
        torch.manual_seed(seed)
        buf = ReservoirBuffer(mem)
        _feed(buf, n, 37)
        ids = _stored_ids(buf)
        assert len(buf) == mem and ids.unique().numel() == mem
        hits[ids] += 1
    per_block = hits.view(-1, block).sum(1)
    expected = reps * block * mem / n
    assert ((per_block - expected).abs() < 0.1 * expected).all(), per_block.tolist()
    # the last experience-sized stretch is not favoured either (recency bias)
    assert abs(hits[-500:].mean() - reps * mem / n) < 0.1 * reps * mem / n


def test_reservoir_batched_update_equals_sequential_algorithm() -> None:
    """One vectorised add per batch gives exactly the buffer that algorithm R builds one
    sample at a time (same random draws): when several samples of a batch hit the same
    slot, the last one wins."""
    torch.manual_seed(3)
    batched = ReservoirBuffer(8)
    _feed(batched, 300, 64)  # batches far larger than the buffer: many collisions
    torch.manual_seed(3)
    single = ReservoirBuffer(8)
    _feed(single, 300, 1)
    assert torch.equal(_stored_ids(batched), _stored_ids(single))
    assert batched.seen_ == single.seen_ == 300


def test_reservoir_keeps_everything_until_full_without_randomness() -> None:
    buf = ReservoirBuffer(100)
    state = torch.get_rng_state()
    _feed(buf, 70, 16)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(_stored_ids(buf), torch.arange(70))


def test_extras_follow_their_rows() -> None:
    for buf in (ReservoirBuffer(50), ClassBalancedBuffer(50)):
        torch.manual_seed(0)
        for start in range(0, 1000, 32):
            x, y, t = _ids(32, start)
            buf.add(x, y, t, {"logits": x.repeat(1, 3) * 2})
        rows = buf.rows()
        assert rows is not None
        assert torch.equal(rows.extras["logits"], rows.x.repeat(1, 3) * 2)
        assert torch.equal(rows.y, rows.x[:, 0].long() % 10)


# -- storage ---------------------------------------------------------------------------------
def test_uint8_stays_uint8_and_10000_images_take_about_30_mb() -> None:
    buf = ReservoirBuffer(10_000)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    buf.add(x, torch.zeros(64, dtype=torch.long), torch.zeros(64, dtype=torch.long))
    assert buf.x_ is not None and buf.x_.dtype == torch.uint8
    assert tuple(buf.x_.shape) == (10_000, 3, 32, 32)
    assert 30.7e6 <= buf.nbytes() < 31.0e6  # 30.72 MB of images + 160 KB of labels/tasks
    rows = buf.sample(8)
    assert rows is not None and rows.x.dtype == torch.uint8
    assert any(torch.equal(rows.x[0], x[i]) for i in range(64))


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "herding"])
def test_storage_is_preallocated_and_never_grows(policy: str) -> None:
    """Per-step cost cannot grow with the stream: after the first insert no tensor of the
    buffer is reallocated or grows, however many experiences follow."""
    buf = make_buffer(policy, 40)
    kw = {"features": lambda x, t: torch.cat([x, x.sin()], 1)} if policy == "herding" else {}
    layout = None
    for exp in range(6):
        for start in range(0, 200, 50):  # 200 samples of 2 new classes per experience
            x, _, t = _ids(50, exp * 200 + start)
            y = torch.full((50,), 2 * exp) + torch.arange(50) % 2
            buf.add(x, y, t, **kw)  # type: ignore[call-arg]
        tensors = [buf.x_, buf.y_, buf.t_, getattr(buf, "rank_", None)]
        now = [(a.data_ptr(), tuple(a.shape)) for a in tensors if a is not None]
        layout = layout or now
        assert now == layout and len(buf) == 40
        assert buf.nbytes() == 40 * (4 + 8 + 8)
    counts = torch.bincount(buf.y_)  # type: ignore[arg-type]
    if policy != "reservoir":
        assert counts.min() >= 3 and counts.max() <= 4  # 40 rows over 12 classes


def test_mem_size_zero_means_no_memory() -> None:
    for policy in ("reservoir", "class_balanced", "herding"):
        buf = make_buffer(policy, 0)
        state = torch.get_rng_state()
        x, y, t = _ids(32)
        buf.add(x, y, t, features=lambda a, b: a) if policy == "herding" else buf.add(x, y, t)  # type: ignore[call-arg]
        assert len(buf) == 0 and buf.sample(10) is None and buf.rows() is None
        assert buf.nbytes() == 0
        assert torch.equal(torch.get_rng_state(), state)


def test_sample_draws_distinct_rows_with_the_global_rng() -> None:
    buf = ReservoirBuffer(20)
    _feed(buf, 20, 20)
    torch.manual_seed(1)
    a = buf.sample(8)
    torch.manual_seed(1)
    b = buf.sample(8)
    assert a is not None and b is not None and torch.equal(a.x, b.x)
    assert a.x[:, 0].unique().numel() == 8
    every = buf.sample(100)
    assert every is not None and sorted(every.x[:, 0].long().tolist()) == list(range(20))
    assert buf.sample(0) is None


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "herding"])
def test_state_dict_round_trip(policy: str) -> None:
    kw = {"features": lambda x, t: torch.cat([x, x.cos()], 1)} if policy == "herding" else {}
    torch.manual_seed(0)
    buf = make_buffer(policy, 30)
    for start in range(0, 120, 40):
        buf.add(*_ids(40, start), {"z": torch.randn(40, 2)}, **kw)  # type: ignore[call-arg]
    raw = io.BytesIO()
    torch.save(buf.state_dict(), raw)
    raw.seek(0)
    twin = make_buffer(policy, 30)
    twin.load_state_dict(torch.load(raw, weights_only=True))
    assert len(twin) == len(buf) and twin.seen_ == buf.seen_
    for b in (buf, twin):  # both continue identically
        torch.manual_seed(5)
        b.add(*_ids(40, 500), {"z": torch.ones(40, 2)}, **kw)  # type: ignore[call-arg]
    ra, rb = buf.rows(), twin.rows()
    assert ra is not None and rb is not None
    assert torch.equal(ra.x, rb.x) and torch.equal(ra.extras["z"], rb.extras["z"])
    with pytest.raises(ValueError, match="mem_size=30"):
        make_buffer(policy, 31).load_state_dict(buf.state_dict())


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="mem_size must be an integer >= 0"):
        ReservoirBuffer(-1)
    with pytest.raises(ValueError, match="unknown buffer policy 'fifo'"):
        make_buffer("fifo", 10)
    buf = ReservoirBuffer(10)
    buf.add(*_ids(4))
    with pytest.raises(ValueError, match="same first dimension"):
        buf.add(torch.zeros(3, 1), torch.zeros(2, dtype=torch.long), torch.zeros(3))
    with pytest.raises(ValueError, match="buffer holds x of shape"):
        buf.add(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ValueError, match="needs `features`"):
        HerdingBuffer(10).add(*_ids(4))


# -- class balance ---------------------------------------------------------------------------
def test_balanced_quota() -> None:
    q = balanced_quota(torch.tensor([20, 5, 20]), 10, torch.tensor([5, 5, 0]))
    assert q.tolist() == [4, 3, 3]  # the spare row stays with a class already in memory
    assert balanced_quota(torch.tensor([2, 100, 100]), 50, torch.zeros(3)).tolist() == [2, 24, 24]
    assert balanced_quota(torch.tensor([3, 4]), 50, torch.zeros(2)).tolist() == [3, 4]


def test_class_balanced_evicts_from_the_largest_class() -> None:
    torch.manual_seed(0)
    buf = ClassBalancedBuffer(12)
    x, _, t = _ids(30)
    buf.add(x, torch.zeros(30, dtype=torch.long), t)
    assert torch.bincount(buf.y_).tolist() == [12]  # type: ignore[arg-type]
    before = set(_stored_ids(buf).tolist())
    x, _, t = _ids(2, 100)
    buf.add(x, torch.ones(2, dtype=torch.long), t)  # a small new class keeps all it has
    assert torch.bincount(buf.y_).tolist() == [10, 2]  # type: ignore[arg-type]
    assert set(_stored_ids(buf).tolist()) - {100, 101} <= before
    x, _, t = _ids(30, 200)
    buf.add(x, torch.full((30,), 2), t)
    assert torch.bincount(buf.y_).tolist() == [5, 2, 5]  # type: ignore[arg-type]


def test_class_balanced_keeps_a_uniform_sample_within_a_returning_class() -> None:
    """A class offered in two halves (domain-incremental) ends up with about as many rows
    from each half, not only the first half's."""
    second = []
    for seed in range(20):
        torch.manual_seed(seed)
        buf = ClassBalancedBuffer(100)
        for start in (0, 1000):
            x, _, t = _ids(1000, start)
            buf.add(x, torch.zeros(1000, dtype=torch.long), t)
        second.append(float((_stored_ids(buf) >= 1000).float().mean()))
    assert 0.4 < sum(second) / len(second) < 0.6


def test_herding_buffer_keeps_the_herding_selection_and_shrinks_by_rank() -> None:
    from lifelong.memory.herding import herding_select

    torch.manual_seed(0)
    feats = torch.randn(60, 5)

    def features(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return feats[x[:, 0].long()]

    buf = HerdingBuffer(12)
    x, _, t = _ids(60)
    y = torch.arange(60) // 30  # classes 0 and 1, 30 samples each
    buf.add(x, y, t, features=features)
    for c in (0, 1):
        want = herding_select(feats[y == c], 6) + 30 * c
        got = _stored_ids(buf)[buf.y_ == c]  # type: ignore[index]
        ranks = buf.rank_[buf.y_ == c]  # type: ignore[index]
        assert torch.equal(got[ranks.argsort()], want)
    x2, _, t2 = _ids(30, 60)
    feats = torch.cat([feats, torch.randn(30, 5)])
    buf.add(x2, torch.full((30,), 2), t2, features=features)
    for c in (0, 1):  # each old class keeps its first 4 herding picks
        want = herding_select(feats[:60][y == c], 4) + 30 * c
        got = _stored_ids(buf)[buf.y_ == c]  # type: ignore[index]
        assert set(got.tolist()) == set(want.tolist())
