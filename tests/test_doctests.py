"""The hand-computed examples in the docstrings of the course's formulas are run, so they stay
true: MaxSim, InfoNCE, mean pooling, nDCG, the tolerance rule, the paired bootstrap, BM25."""

from __future__ import annotations

import doctest

import pytest

import tinyir.bm25
import tinyir.losses
import tinyir.maxsim
import tinyir.metrics
import tinyir.pooling
import tinyir.testing


@pytest.mark.parametrize("module", [tinyir.maxsim, tinyir.losses, tinyir.pooling, tinyir.metrics,
                                    tinyir.testing, tinyir.bm25], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0
