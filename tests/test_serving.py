"""Dynamic batching: ordering, limits, deadlines, errors, and the deterministic simulation.

Timing bounds are generous (10x or more) so the tests hold on a busy 2-core machine; batch
shapes are made deterministic with a long max_wait_ms, so batches close by size, not by time.
"""

from __future__ import annotations

import threading
import time

import pytest

from tinyir.serving import (
    DynamicBatcher,
    length_buckets,
    padding_waste,
    simulate_batching,
)

LONG_WAIT_MS = 5_000  # batches close by size long before this deadline


class RecordingEncoder:
    """encode_fn that records every batch and returns one tagged row per text."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> list[str]:
        with self.lock:
            self.batches.append(list(texts))
        time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"cannot encode {self.fail_on!r}")
        return [f"emb:{text}" for text in texts]


def test_results_map_back_to_their_requests_under_concurrency():
    encoder = RecordingEncoder(delay_s=0.002)
    results: dict[str, str] = {}
    with DynamicBatcher(encoder, max_batch_size=8, max_wait_ms=2) as batcher:

        def client(worker: int) -> None:
            futures = {f"w{worker}-{i}": batcher.submit(f"w{worker}-{i}") for i in range(40)}
            for text, future in futures.items():
                results[text] = future.result(timeout=30)

        threads = [threading.Thread(target=client, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 240
    assert all(result == f"emb:{text}" for text, result in results.items())
    assert all(len(batch) <= 8 for batch in encoder.batches)
    # each client's requests are served in the order it submitted them
    served = [text for batch in encoder.batches for text in batch]
    for w in range(6):
        mine = [text for text in served if text.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}" for i in range(40)]


def test_batches_are_first_come_first_served_and_respect_max_batch_size():
    encoder = RecordingEncoder()
    with DynamicBatcher(encoder, max_batch_size=4, max_wait_ms=LONG_WAIT_MS) as batcher:
        futures = [batcher.submit(str(i)) for i in range(10)]
        [future.result(timeout=30) for future in futures[:8]]
    assert [text for batch in encoder.batches for text in batch] == [str(i) for i in range(10)]
    assert [len(batch) for batch in encoder.batches] == [4, 4, 2]  # the last 2 drained by close


def test_token_budget_counts_padded_tokens():
    encoder = RecordingEncoder()
    texts = ["a" * n for n in (10, 10, 30, 5, 5, 5, 40, 1)]
    with DynamicBatcher(
        encoder, max_batch_size=32, max_batch_tokens=60, max_wait_ms=LONG_WAIT_MS
    ) as batcher:
        futures = [batcher.submit(text) for text in texts]
    assert all(future.done() for future in futures)
    for batch in encoder.batches:
        assert len(batch) * max(len(text) for text in batch) <= 60
    # 10, 10 fit (2 x 10); adding 30 needs 3 x 30 = 90 -> close; 30, 5 = 60; then 5, 5, ...
    assert [[len(t) for t in batch] for batch in encoder.batches] == [
        [10, 10],
        [30, 5],
        [5, 5],
        [40],
        [1],
    ]


def test_a_lone_request_is_served_after_the_deadline():
    encoder = RecordingEncoder()
    with DynamicBatcher(encoder, max_batch_size=32, max_wait_ms=20) as batcher:
        # served at all, although the batch never fills: the deadline closed it (the timeout
        # only guards against a hang; how fast is benchmarks/' business, not a unit test's)
        assert batcher.submit("alone").result(timeout=10) == "emb:alone"
        assert batcher.queue_size() == 0
    assert encoder.batches == [["alone"]]


def test_requests_close_together_share_a_batch():
    encoder = RecordingEncoder()
    with DynamicBatcher(encoder, max_batch_size=32, max_wait_ms=500) as batcher:
        futures = [batcher.submit(t) for t in ("a", "b", "c")]
        assert [f.result(timeout=10) for f in futures] == ["emb:a", "emb:b", "emb:c"]
    assert encoder.batches == [["a", "b", "c"]]


def test_close_drains_the_queue_and_refuses_new_requests():
    encoder = RecordingEncoder(delay_s=0.01)
    batcher = DynamicBatcher(encoder, max_batch_size=4, max_wait_ms=LONG_WAIT_MS)
    futures = [batcher.submit(str(i)) for i in range(18)]
    batcher.close()
    assert [future.result(timeout=0) for future in futures] == [f"emb:{i}" for i in range(18)]
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("late")


def test_encode_error_reaches_only_its_batch():
    encoder = RecordingEncoder(fail_on="bad")
    with DynamicBatcher(encoder, max_batch_size=2, max_wait_ms=LONG_WAIT_MS) as batcher:
        futures = [batcher.submit(t) for t in ("a", "bad", "c", "d")]
        with pytest.raises(RuntimeError, match="cannot encode"):
            futures[0].result(timeout=10)
        with pytest.raises(RuntimeError, match="cannot encode"):
            futures[1].result(timeout=10)
        assert [f.result(timeout=10) for f in futures[2:]] == ["emb:c", "emb:d"]
        later = [batcher.submit(t) for t in ("e", "f")]
        assert [f.result(timeout=10) for f in later] == ["emb:e", "emb:f"]  # the worker lives on


def test_wrong_number_of_rows_is_an_error_on_the_futures():
    with DynamicBatcher(
        lambda texts: ["only one"], max_batch_size=2, max_wait_ms=LONG_WAIT_MS
    ) as batcher:
        futures = [batcher.submit(t) for t in ("a", "b")]
        with pytest.raises(ValueError, match="encode_fn: expected 2 rows"):
            futures[0].result(timeout=10)


def test_queue_size_and_stats():
    release = threading.Event()
    started = threading.Event()

    def blocking_encode(texts):
        started.set()
        release.wait(timeout=30)
        return texts

    with DynamicBatcher(blocking_encode, max_batch_size=2, max_wait_ms=LONG_WAIT_MS) as batcher:
        first = [batcher.submit(t) for t in ("a", "aaa")]  # 1 + 3 real, 2 x 3 padded
        assert started.wait(timeout=10)
        rest = [batcher.submit(t) for t in ("bb", "bb", "c")]
        assert batcher.queue_size() == 3
        release.set()
    [f.result(timeout=0) for f in first + rest]  # close() served the lone "c" without waiting
    stats = batcher.stats()
    assert stats["batches"] == 3
    assert stats["requests"] == 5
    assert stats["mean_batch_size"] == pytest.approx(5 / 3)
    # real 4 + 4 + 1 = 9 tokens, padded 6 + 4 + 1 = 11
    assert stats["padding_waste"] == pytest.approx(1 - 9 / 11)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(len, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        DynamicBatcher(len, max_wait_ms=-1)
    with DynamicBatcher(lambda texts: texts, max_batch_tokens=8) as batcher:
        with pytest.raises(ValueError, match="max_batch_tokens"):
            batcher.submit("x" * 9)


# ----------------------------------------------------------------------------------------------
# Pure helpers


def test_padding_waste_by_hand():
    assert padding_waste([1, 9, 1, 9], batch_size=2) == pytest.approx(1 - 20 / 36)
    assert padding_waste([1, 9, 1, 9], batch_size=2, sort=True) == 0.0
    assert padding_waste([4, 2, 3], batch_size=3) == pytest.approx(1 - 9 / 12)
    assert padding_waste([5, 5, 5], batch_size=1) == 0.0
    assert padding_waste([], batch_size=4) == 0.0


def test_length_buckets():
    assert length_buckets([5, 30, 12, 200], [16, 64]) == [[0, 2], [1], [3]]
    assert length_buckets([16, 17], [16]) == [[0], [1]]
    with pytest.raises(ValueError, match="boundaries"):
        length_buckets([1], [64, 16])


def constant_service(batch_size: int, longest: int) -> float:
    return 3.0


def test_simulation_by_hand():
    result = simulate_batching(
        [0, 1, 2, 10], [10, 10, 10, 10], constant_service, max_batch_size=2, max_wait_ms=5
    )
    # batch [0, 1] is full at t=1 -> done 4; request 2 waits to its deadline 7 -> done 10;
    # request 3 arrives at 10, waits to 15 -> done 18
    assert result.batch_sizes == [2, 1, 1]
    assert result.start_ms == [1, 1, 7, 15]
    assert result.latency_ms == [4, 3, 8, 8]
    assert result.throughput_per_s == pytest.approx(1000 * 4 / 18)
    assert result.p99_latency_ms == 8


def test_simulation_token_budget_closes_the_batch():
    result = simulate_batching([0, 1], [10, 30], constant_service, max_batch_tokens=50)
    assert result.batch_sizes == [1, 1]
    # closed at t=1 when the 30-token request arrived; that one then waits to its deadline 6
    assert result.start_ms == [1, 6]


def test_simulation_is_deterministic_and_batching_raises_throughput():
    arrivals = [0.5 * i for i in range(400)]  # 2000 requests/s
    lengths = [20 + (7 * i) % 100 for i in range(400)]

    def service(batch_size: int, longest: int) -> float:
        return 4.0 + 0.002 * batch_size * longest  # fixed launch cost + per padded token

    runs = {b: simulate_batching(arrivals, lengths, service, max_batch_size=b) for b in (1, 8, 32)}
    assert simulate_batching(arrivals, lengths, service, max_batch_size=8) == runs[8]
    assert runs[1].throughput_per_s < runs[8].throughput_per_s < runs[32].throughput_per_s
    assert runs[32].mean_latency_ms < runs[1].mean_latency_ms  # batch size 1 overloads
    assert max(runs[32].batch_sizes) <= 32


def test_simulation_bad_inputs():
    with pytest.raises(ValueError, match="arrival_times_ms"):
        simulate_batching([1, 0], [1, 1], constant_service)
    with pytest.raises(ValueError, match="lengths"):
        simulate_batching([0, 1], [1], constant_service)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        simulate_batching([0], [100], constant_service, max_batch_tokens=10)
