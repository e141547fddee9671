"""tinyir.testing: the tolerance rule, and assert_close on tensors, arrays and numbers."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import tinyir.testing
from tinyir.testing import TOLERANCE_FACTOR, assert_close, tolerance

EPS32 = float(np.finfo(np.float32).eps)


def test_tolerance_scales_with_eps_and_depth():
    assert tolerance() == (TOLERANCE_FACTOR * EPS32, TOLERANCE_FACTOR * EPS32)
    atol1, rtol1 = tolerance("float32", depth=1)
    atol6, rtol6 = tolerance("float32", depth=6)
    assert atol6 == pytest.approx(6 * atol1, rel=1e-12) and rtol6 == pytest.approx(6 * rtol1)
    # the same dtype spelled four ways
    assert tolerance(torch.float32) == tolerance(np.float32) == tolerance(np.dtype("float32"))
    assert tolerance("float64")[0] < tolerance("float32")[0] < tolerance("float16")[0]
    assert tolerance(torch.float16)[0] < tolerance(torch.bfloat16)[0]


def test_tolerance_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        tolerance("float32", depth=0)
    with pytest.raises(ValueError, match="depth"):
        tolerance("float32", depth=1.5)
    with pytest.raises(ValueError, match="dtype"):
        tolerance("int8")


def test_whole_minilm_budget_covers_the_reported_difference():
    # The 6-layer MiniLM comparison that failed atol=1e-5: 2.1e-5 on values up to about 6.
    atol, rtol = tolerance("float32", depth=6)
    assert 2.1e-5 < atol * 6.0
    assert 1e-3 > atol * 6.0  # a real bug (1e-2 off) is still caught


def test_assert_close_accepts_tensors_arrays_and_numbers():
    x = torch.linspace(-3, 3, 50)
    assert assert_close(x, x.clone()) == 0.0
    assert assert_close(x.numpy(), x) == 0.0
    assert assert_close(0.5 + 1e-7, 0.5) == pytest.approx(1e-7, rel=1e-6)
    assert assert_close([1.0, 2.0], np.array([1.0, 2.0 + 1e-7])) == pytest.approx(1e-7, rel=1e-3)
    assert_close(torch.tensor(1.0, dtype=torch.float64), np.float64(1.0), dtype="float64")


def test_assert_close_error_relative_to_scale_not_elementwise():
    expected = torch.tensor([6.0, 1e-4])
    # 1e-6 off on an element near 0 is rounding of the 6.0-sized sums: fine at scale 6
    assert_close(expected + torch.tensor([0.0, 1e-6]), expected)
    with pytest.raises(AssertionError):
        assert_close(expected + torch.tensor([0.0, 1e-6]), expected, scale=1e-4)


def test_assert_close_depth_loosens():
    expected = torch.ones(4)
    off = expected + 5 * TOLERANCE_FACTOR * EPS32  # 5 units of one layer's budget
    with pytest.raises(AssertionError):
        assert_close(off, expected, depth=1)
    assert_close(off, expected, depth=6)


def test_assert_close_dtype_is_the_least_precise_input():
    half = torch.tensor([1.0, 2.0], dtype=torch.float16)
    assert_close(half, torch.tensor([1.0, 2.0 + 1e-3]))  # float16: eps 9.8e-4
    with pytest.raises(AssertionError):
        assert_close(half.float(), torch.tensor([1.0, 2.0 + 1e-3]))
    with pytest.raises(AssertionError):  # float64 on request
        assert_close(1.0 + 1e-9, 1.0, dtype="float64")


def test_assert_close_message_names_the_worst_element():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    with pytest.raises(AssertionError) as error:
        assert_close(actual, expected, what="pooled vs loop", depth=2)
    message = str(error.value)
    assert message.startswith("pooled vs loop: ")
    assert "at index (1, 2)" in message and "actual 0.5" in message and "depth 2" in message
    assert "1 of 6 elements over" in message and "float32" in message


def test_assert_close_shape_and_nan():
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(torch.zeros(3), torch.zeros(4))
    with pytest.raises(AssertionError, match="NaN"):
        assert_close(torch.tensor([float("nan")]), torch.tensor([0.0]))
    with pytest.raises(TypeError, match="actual"):
        assert_close({"a": 1}, 1.0)


def test_testing_docstring_examples():
    assert doctest.testmod(tinyir.testing, raise_on_error=False).failed == 0
