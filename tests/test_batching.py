"""length_batches: every row once, longest first, each batch of similar length."""

from __future__ import annotations

import pytest

from tinyir.batching import length_batches


def test_longest_first_every_row_once():
    lengths = [3, 9, 1, 9, 4, 7, 2]
    batches = list(length_batches(lengths, 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)
    assert batches[0][:2] == [1, 3]  # ties keep their input order: the result is deterministic


def test_empty_and_bad_batch_size():
    assert list(length_batches([], 4)) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(length_batches([1, 2], 0))
