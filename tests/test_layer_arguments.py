"""Layer constructor arguments: sizes and windows are checked, never truncated or divided by."""

from __future__ import annotations

import numpy as np
import pytest

import nnx


@pytest.mark.parametrize("args", [(0, 5), (5, 0), (-1, 5), (2.5, 5), (True, 5)])
def test_linear_refuses_sizes_that_are_not_positive_ints(args):
    with pytest.raises(ValueError, match="Linear"):
        nnx.Linear(*args)


def test_linear_accepts_numpy_integers():
    layer = nnx.Linear(np.int64(3), np.int32(2))
    assert layer.weight.shape == (2, 3)


@pytest.mark.parametrize(
    "kernel", [2.7, (2.7, 2.7), (3, 2.5), "3", (3, 3, 3), 0, (True, 2), np.float64(3.0)]
)
def test_conv_and_pools_refuse_non_integer_windows(kernel):
    for make in (
        lambda: nnx.Conv2d(1, 1, kernel),
        lambda: nnx.MaxPool2d(kernel),
        lambda: nnx.AvgPool2d(kernel),
    ):
        with pytest.raises(ValueError, match="kernel_size"):
            make()


@pytest.mark.parametrize("arg", ["stride", "padding"])
def test_conv_refuses_fractional_stride_and_padding(arg):
    with pytest.raises(ValueError, match=arg):
        nnx.Conv2d(1, 1, 3, **{arg: 1.5})


def test_conv_accepts_numpy_integers_and_refuses_fractional_channels():
    layer = nnx.Conv2d(np.int64(2), 3, (np.int64(3), 2), stride=np.int32(1))
    assert layer.kernel_size == (3, 2) and layer.weight.shape == (3, 2, 3, 2)
    with pytest.raises(ValueError, match="channel"):
        nnx.Conv2d(1.5, 3, 3)
