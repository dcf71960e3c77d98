"""The metric formulas of DESIGN.md, on hand-computed matrices."""

from __future__ import annotations

import pytest

from lifelong import metrics

R = [
    [0.9, 0.1, 0.0],
    [0.5, 0.8, 0.2],
    [0.4, 0.6, 0.7],
]


def test_final_average_accuracy():
    assert metrics.final_average_accuracy(R) == pytest.approx((0.4 + 0.6 + 0.7) / 3)


def test_average_forgetting():
    # j=0: max(0.9, 0.5) - 0.4 = 0.5; j=1: max(0.1, 0.8) - 0.6 = 0.2
    assert metrics.average_forgetting(R) == pytest.approx((0.5 + 0.2) / 2)


def test_backward_transfer():
    assert metrics.backward_transfer(R) == pytest.approx(((0.4 - 0.9) + (0.6 - 0.8)) / 2)


def test_forward_transfer():
    b = [0.1, 0.05, 0.1]
    # j=1: R[0][1] - b1 = 0.1 - 0.05; j=2: R[1][2] - b2 = 0.2 - 0.1
    assert metrics.forward_transfer(R, b) == pytest.approx((0.05 + 0.1) / 2)
    assert metrics.forward_transfer(R, None) is None


def test_single_experience_and_bad_shapes():
    assert metrics.average_forgetting([[0.5]]) is None
    assert metrics.backward_transfer([[0.5]]) is None
    with pytest.raises(ValueError, match="square"):
        metrics.final_average_accuracy([[0.1, 0.2]])
    with pytest.raises(ValueError, match="one accuracy per experience"):
        metrics.forward_transfer(R, [0.1])


def test_curve_and_mean_std():
    assert metrics.accuracy_curve(R) == pytest.approx([0.9, 0.65, (0.4 + 0.6 + 0.7) / 3])
    assert metrics.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert metrics.mean_std([None]) == (None, None)
