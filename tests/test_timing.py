"""tinyir.course.timing: the fastest of a few calls, the result kept, arguments checked."""

from __future__ import annotations

import pytest

from tinyir.course.timing import best_time, best_time_with_result


def test_counts_calls_and_keeps_the_result():
    calls = []
    seconds, result = best_time_with_result(lambda: calls.append(1) or len(calls), repeats=3,
                                            warmup=2)
    assert len(calls) == 5 and result == 5 and seconds >= 0.0
    assert best_time(lambda: None, repeats=1) >= 0.0


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": True}, {"warmup": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        best_time(lambda: None, **kwargs)
