"""Streams, scenario builders, sources and the bad-input errors of the core."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong.data import (
    BENCHMARKS,
    TensorSet,
    as_tensorset,
    blurred,
    by_domain,
    get_benchmark,
    online,
    permuted,
    rotate_images,
    rotated,
    split_by_class,
    validate_stream,
    with_validation,
)
from lifelong.data.benchmarks import synthetic_data


@pytest.fixture
def blobs() -> tuple[TensorSet, TensorSet]:
    return synthetic_data(n_classes=6, dim=8, per_class=20, test_per_class=5)


def test_split_by_class_any_order_and_sizes(blobs):
    tr, te = blobs
    s = split_by_class(tr, te, class_order=[5, 3, 1, 0, 2, 4], classes_per_experience=[3, 2, 1])
    assert [e.classes for e in s] == [(1, 3, 5), (0, 2), (4,)]
    assert s.scenario == "class" and s.n_classes == 6 and len(s) == 3
    for e in s:
        assert set(e.train.y.tolist()) == set(e.classes) == set(e.test.y.tolist())
        assert e.task == 0 and (e.train.t == 0).all()
    assert sum(len(e.train) for e in s) == len(tr)


def test_split_by_class_larger_first_experience(blobs):
    tr, te = blobs
    s = split_by_class(tr, te, first_experience=4, n_experiences=3)
    assert [len(e.classes) for e in s] == [4, 1, 1]


def test_task_split_gives_task_ids(blobs):
    tr, te = blobs
    s = split_by_class(tr, te, scenario="task", classes_per_experience=2)
    assert s.n_tasks == 3
    assert [e.task for e in s] == [0, 1, 2]
    assert all((e.test.t == e.task).all() for e in s)


def test_permuted_first_is_identity_and_fixed(blobs):
    tr, te = blobs
    a = permuted(tr, te, 3)
    b = permuted(tr, te, 3)
    assert torch.equal(a[0].train.x, tr.x)
    assert not torch.equal(a[1].train.x, tr.x)
    assert torch.equal(a[2].train.x, b[2].train.x)
    # a permutation only moves features around
    assert torch.equal(a[1].train.x.sort(1).values, tr.x.sort(1).values)


def test_rotation_by_zero_is_identity_and_90_moves_pixels():
    img = torch.zeros(1, 8, 8)
    img[0, 1, 4] = 1.0
    assert torch.allclose(rotate_images(img, 0.0), img, atol=1e-6)
    r = rotate_images(img, 90.0)
    assert r.shape == img.shape and not torch.allclose(r, img)
    tr = TensorSet(torch.rand(4, 64), torch.tensor([0, 1, 0, 1]), torch.zeros(4, dtype=torch.long))
    s = rotated(tr, tr, (0, 45), image_shape=(8, 8))
    assert s.scenario == "domain" and s[1].train.x.shape == (4, 64)


def test_by_domain_and_blurred_and_online(blobs):
    tr, te = blobs
    s = by_domain([(tr, te), (TensorSet(tr.x + 1, tr.y, tr.t), te)])
    assert s.scenario == "domain" and len(s) == 2
    c = split_by_class(tr, te, classes_per_experience=2)
    b = blurred(c, 0.2, seed=0)
    for e_old, e_new in zip(c, b, strict=True):
        assert len(e_new.train) == len(e_old.train)
        own = torch.isin(e_new.train.y, torch.tensor(e_old.classes)).sum().item()
        assert own == len(e_old.train) - round(0.2 * len(e_old.train))
    assert blurred(c, 0.0) is c
    o = online(c, batch_size=5)
    assert o.online and o.info["online_batch_size"] == 5


def test_validation_split_is_carved_from_train(blobs):
    tr, te = blobs
    s = with_validation(split_by_class(tr, te, classes_per_experience=2), 0.25)
    for e in s:
        assert e.valid is not None and len(e.valid) == 10 and len(e.train) == 30


def test_sources_numpy_and_dataset():
    x = np.random.default_rng(0).normal(size=(10, 3))
    y = np.arange(10) % 2
    s = as_tensorset(x, y)
    assert s.x.dtype == torch.float32 and s.y.dtype == torch.long
    ds = torch.utils.data.TensorDataset(torch.rand(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    s2 = as_tensorset(ds)
    assert len(s2) == 6 and s2.y.tolist() == [0, 1, 2, 0, 1, 2]
    u8 = as_tensorset(np.zeros((2, 4), dtype=np.uint8), np.array([0, 1]))
    assert u8.x.dtype == torch.uint8


# -- bad input: each message names the bad value ------------------------------------------


def _set(x: torch.Tensor, y: list[int]) -> TensorSet:
    yy = torch.tensor(y)
    return TensorSet(x, yy, torch.zeros_like(yy))


def test_mismatched_feature_shapes():
    a = _set(torch.rand(4, 3), [0, 1, 0, 1])
    b = _set(torch.rand(4, 5), [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\(5,\).*\(3,\)"):
        by_domain([(a, a), (b, b)])


def test_labels_outside_declared_classes():
    tr = _set(torch.rand(4, 3), [0, 1, 0, 1])
    s = split_by_class(tr, tr, classes_per_experience=1)
    from dataclasses import replace

    bad = replace(s, n_classes=1)
    with pytest.raises(ValueError, match=r"labels \[1\] are outside"):
        validate_stream(bad)


def test_nan_features_are_refused():
    x = torch.rand(4, 3)
    x[2, 1] = float("nan")
    tr = _set(x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="experience 0 train sample 1 has NaN or inf"):
        split_by_class(tr, _set(torch.rand(4, 3), [0, 1, 0, 1]), classes_per_experience=1)


def test_empty_experience():
    tr = _set(torch.rand(4, 3), [0, 0, 1, 1])
    te = _set(torch.rand(2, 3), [0, 0])  # no test sample of class 1
    with pytest.raises(ValueError, match="experience 1 has an empty test set"):
        split_by_class(tr, te, classes_per_experience=1)


def test_task_stream_without_task_ids():
    from lifelong.data import Stream

    tr = _set(torch.rand(4, 3), [0, 1, 0, 1])
    plain = by_domain([(tr, tr), (tr, tr)])  # both experiences carry task 0
    with pytest.raises(ValueError, match="needs task ids: every experience has task 0"):
        validate_stream(Stream("x", "task", plain.experiences, 2, 2))


def test_labels_must_be_whole_numbers():
    with pytest.raises(ValueError, match=r"whole numbers.*0\.5"):
        as_tensorset(np.zeros((2, 2)), np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="disagree on the number of samples: 3 features, 2 labels"):
        as_tensorset(np.zeros((3, 2)), np.array([0, 1]))


def test_unknown_benchmark_and_scenario():
    with pytest.raises(ValueError, match="unknown benchmark 'nope'.*split-mnist-5k"):
        get_benchmark("nope")
    with pytest.raises(ValueError, match="does not define the 'domain' scenario"):
        get_benchmark("split-mnist-5k", "domain")
    with pytest.raises(ValueError, match="unknown scenario 'sideways'"):
        split_by_class(*synthetic_data(), scenario="sideways")


def test_registered_benchmarks_build():
    assert {
        "split-mnist-5k",
        "permuted-mnist-5k",
        "rotated-mnist-5k",
        "split-digits",
        "synthetic",
    } <= set(BENCHMARKS)
    s = get_benchmark("split-digits", "task")
    assert len(s) == 5 and s.n_tasks == 5 and s.input_shape == (64,)


@pytest.mark.slow
def test_mnist5k_benchmarks_shape():
    s = get_benchmark("split-mnist-5k", "class")
    assert sum(len(e.train) for e in s) == 4000 and sum(len(e.test) for e in s) == 1000
    assert [e.classes for e in s] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert all(len(e.test) == 200 for e in s)  # stratified: 100 per class
    p = get_benchmark("permuted-mnist-5k", "domain")
    assert len(p) == 5 and p[0].classes == tuple(range(10))
    r = get_benchmark("rotated-mnist-5k", "domain")
    assert r.info["angles"] == [0, 20, 40, 60, 80]
