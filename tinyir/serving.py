"""Serving embeddings: dynamic batching, as Text Embeddings Inference (TEI) does it.

A GPU encodes 32 texts in about the time it takes to encode one, so a server collects the
requests that arrive close together into one batch. It closes a batch when the next request
would not fit (``max_batch_size`` texts, or ``max_batch_tokens`` padded tokens: batch size x
longest request) or when the oldest request has waited ``max_wait_ms``: a lone request is
served after at most that wait, never left behind.

Two differences from TEI, both named in notebook 13: TEI has no wait timer (it takes what is
waiting the moment the model is free: ``max_wait_ms=0`` here), and for the models it runs
without padding its ``--max-batch-tokens`` counts the *sum* of the texts' tokens, not batch size
x longest.

- ``DynamicBatcher``: the real thing, a worker thread that serves ``submit(text)`` calls from
  any thread with ``concurrent.futures.Future`` results.
- ``padding_waste``, ``length_buckets``: how many of the tokens a batch computes are padding,
  in arrival order or grouped by length.
- ``simulate_batching``: the same policy as a deterministic discrete-event simulation (no
  threads, no clocks), for plots of throughput and latency against batch size.

Batches are first-come first-served: a batch is always the oldest waiting requests, in order.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tinyir.validate import check_positive


@dataclass
class _Request:
    text: Any
    tokens: int
    arrival: float  # time.monotonic() seconds
    future: Future


def _fits(
    count: int, longest: int, tokens: int, max_batch_size: int, max_batch_tokens: int
) -> bool:
    """Does one more request of ``tokens`` fit a batch of ``count`` (longest ``longest``)?"""
    return count < max_batch_size and (count + 1) * max(longest, tokens) <= max_batch_tokens


class DynamicBatcher:
    """Collect concurrent requests into batches for one ``encode_fn`` call each.

        with DynamicBatcher(model.encode, max_batch_size=32) as batcher:
            future = batcher.submit("what is a bi-encoder?")   # from any thread
            embedding = future.result()                        # row of encode_fn's output

    encode_fn: takes a list of texts, returns one row per text (a list, array or tensor).
    token_count_fn: tokens of one text (``len`` counts characters; pass a tokenizer's count).
    A batch closes when the next request would exceed ``max_batch_size`` texts or
    ``max_batch_tokens`` padded tokens (batch size x its longest request), or when its oldest
    request has waited ``max_wait_ms``. An exception raised by ``encode_fn`` is set on the
    futures of that batch only. ``close()`` serves everything already submitted, then stops.
    """

    def __init__(
        self,
        encode_fn: Callable[[list[Any]], Sequence[Any]],
        max_batch_size: int = 32,
        max_batch_tokens: int = 8192,
        max_wait_ms: float = 5.0,
        token_count_fn: Callable[[Any], int] = len,
    ) -> None:
        check_positive("max_batch_size", max_batch_size)
        check_positive("max_batch_tokens", max_batch_tokens)
        if (
            isinstance(max_wait_ms, bool)
            or not isinstance(max_wait_ms, int | float)
            or (max_wait_ms < 0)
        ):
            raise ValueError(f"max_wait_ms: expected a non-negative number, got {max_wait_ms!r}")
        self.encode_fn = encode_fn
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_ms = max_wait_ms
        self.token_count_fn = token_count_fn
        self._queue: deque[_Request] = deque()
        self._condition = threading.Condition()
        self._closing = False
        self._batches = 0
        self._requests = 0
        self._real_tokens = 0
        self._padded_tokens = 0
        self._worker = threading.Thread(target=self._run, name="DynamicBatcher", daemon=True)
        self._worker.start()

    # -- public API -----------------------------------------------------------------------------

    def submit(self, text: Any) -> Future:
        """Queue ``text``; the returned future resolves to its row of ``encode_fn``'s output."""
        tokens = self.token_count_fn(text)
        if not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"token_count_fn: expected a non-negative int, got {tokens!r}")
        if tokens > self.max_batch_tokens:
            raise ValueError(
                f"text: has {tokens} tokens, more than max_batch_tokens={self.max_batch_tokens}; "
                "truncate it or raise max_batch_tokens"
            )
        future: Future = Future()
        with self._condition:
            if self._closing:
                raise RuntimeError("submit: the batcher is closed")
            self._queue.append(_Request(text, tokens, time.monotonic(), future))
            self._condition.notify()
        return future

    def queue_size(self) -> int:
        """Requests waiting for a batch (the signal an autoscaler watches)."""
        with self._condition:
            return len(self._queue)

    def stats(self) -> dict[str, float]:
        """{"batches", "requests", "mean_batch_size", "padding_waste"} so far.

        padding_waste = 1 - real tokens / padded tokens, over all batches run.
        """
        with self._condition:
            return {
                "batches": self._batches,
                "requests": self._requests,
                "mean_batch_size": self._requests / self._batches if self._batches else 0.0,
                "padding_waste": (
                    1 - self._real_tokens / self._padded_tokens if self._padded_tokens else 0.0
                ),
            }

    def close(self) -> None:
        """Stop accepting requests, serve the ones already queued (without waiting), stop."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._worker.join()

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- worker ---------------------------------------------------------------------------------

    def _fitting_prefix(self) -> int:
        """How many of the oldest queued requests fit one batch, in order."""
        count, longest = 0, 0
        for request in self._queue:
            if not _fits(
                count, longest, request.tokens, self.max_batch_size, self.max_batch_tokens
            ):
                break
            count, longest = count + 1, max(longest, request.tokens)
        return count

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a batch to close and take it off the queue; None once closed and drained."""
        with self._condition:
            while not self._queue and not self._closing:
                self._condition.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].arrival + self.max_wait_ms / 1000
            while True:
                count = self._fitting_prefix()
                full = count < len(self._queue) or count == self.max_batch_size
                remaining = deadline - time.monotonic()
                if full or self._closing or remaining <= 0:
                    break
                self._condition.wait(remaining)
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            # A future cancelled while it waited is dropped here.
            batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
            if batch:
                self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        try:
            rows = self.encode_fn([request.text for request in batch])
            if len(rows) != len(batch):
                raise ValueError(
                    f"encode_fn: expected {len(batch)} rows (one per text), got {len(rows)}"
                )
        except Exception as error:  # handed to the callers of this batch, not raised here
            for request in batch:
                request.future.set_exception(error)
        else:
            for request, row in zip(batch, rows, strict=True):
                request.future.set_result(row)
        lengths = [request.tokens for request in batch]
        with self._condition:
            self._batches += 1
            self._requests += len(batch)
            self._real_tokens += sum(lengths)
            self._padded_tokens += len(batch) * max(lengths)


# ----------------------------------------------------------------------------------------------
# Pure helpers for the notebook's plots


def _check_lengths(lengths: Sequence[int]) -> list[int]:
    lengths = list(lengths)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in lengths):
        raise ValueError(f"lengths: expected non-negative ints, got {lengths!r}")
    return lengths


def padding_waste(lengths: Sequence[int], batch_size: int, sort: bool = False) -> float:
    """Fraction of computed tokens that are padding when batching ``batch_size`` at a time.

    Batches are consecutive runs of ``lengths`` in arrival order, or, with ``sort=True``, of the
    lengths sorted (what length bucketing approaches). Each batch pads to its longest request:
    waste = 1 - sum(lengths) / sum(batch size x longest). [1, 9, 1, 9] in batches of 2 wastes
    1 - 20 / 36 = 0.44 in arrival order and 0 sorted.
    """
    lengths = _check_lengths(lengths)
    check_positive("batch_size", batch_size)
    if sort:
        lengths = sorted(lengths)
    padded = sum(
        len(lengths[i : i + batch_size]) * max(lengths[i : i + batch_size])
        for i in range(0, len(lengths), batch_size)
    )
    return 1 - sum(lengths) / padded if padded else 0.0


def length_buckets(lengths: Sequence[int], boundaries: Sequence[int]) -> list[list[int]]:
    """Group request indices by length: bucket i holds boundaries[i-1] < length <= boundaries[i].

    boundaries: strictly increasing. Returns len(boundaries) + 1 lists of indices, in arrival
    order; the last holds the lengths above the last boundary. lengths [5, 30, 12, 200] with
    boundaries [16, 64] -> [[0, 2], [1], [3]].
    """
    lengths = _check_lengths(lengths)
    boundaries = list(boundaries)
    if any(b >= c for b, c in zip(boundaries, boundaries[1:], strict=False)):
        raise ValueError(f"boundaries: expected strictly increasing values, got {boundaries!r}")
    buckets: list[list[int]] = [[] for _ in range(len(boundaries) + 1)]
    for index, length in enumerate(lengths):
        bucket = next((i for i, b in enumerate(boundaries) if length <= b), len(boundaries))
        buckets[bucket].append(index)
    return buckets


@dataclass
class SimulationResult:
    """What ``simulate_batching`` measured; times in milliseconds."""

    start_ms: list[float]  # per request: when its batch started
    finish_ms: list[float]  # per request: when its batch finished
    latency_ms: list[float]  # per request: finish - arrival
    batch_sizes: list[int] = field(default_factory=list)
    throughput_per_s: float = 0.0  # requests / (last finish - first arrival)
    mean_latency_ms: float = 0.0
    p50_latency_ms: float = 0.0
    p99_latency_ms: float = 0.0
    padding_waste: float = 0.0


def _percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``percent`` % at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def simulate_batching(
    arrival_times_ms: Sequence[float],
    lengths: Sequence[int],
    service_ms: Callable[[int, int], float],
    max_batch_size: int = 32,
    max_batch_tokens: int = 8192,
    max_wait_ms: float = 5.0,
) -> SimulationResult:
    """Replay ``DynamicBatcher``'s policy on a timeline: one worker, no threads, no sleeping.

    arrival_times_ms: non-decreasing, one per request; lengths: tokens per request.
    service_ms(batch_size, longest) -> milliseconds to encode one batch, e.g.
    ``lambda b, longest: 2 + 0.01 * b * longest``. When the worker is free and a request waits,
    it takes the oldest waiting requests in order until the next would not fit (then it starts
    at once) or until the oldest request's deadline (arrival + max_wait_ms). Same inputs, same
    result.
    """
    arrivals = [float(t) for t in arrival_times_ms]
    lengths = _check_lengths(lengths)
    if len(arrivals) != len(lengths):
        raise ValueError(f"lengths: expected one per arrival ({len(arrivals)}), got {len(lengths)}")
    if any(b < a for a, b in zip(arrivals, arrivals[1:], strict=False)):
        raise ValueError("arrival_times_ms: expected non-decreasing times")
    check_positive("max_batch_size", max_batch_size)
    check_positive("max_batch_tokens", max_batch_tokens)
    if max_wait_ms < 0:
        raise ValueError(f"max_wait_ms: expected a non-negative number, got {max_wait_ms!r}")
    too_long = [n for n in lengths if n > max_batch_tokens]
    if too_long:
        raise ValueError(f"lengths: {too_long[0]} is more than max_batch_tokens={max_batch_tokens}")

    n = len(arrivals)
    start = [0.0] * n
    finish = [0.0] * n
    batch_sizes: list[int] = []
    real_tokens = padded_tokens = 0
    worker_free = -math.inf
    first = 0  # oldest request not yet served
    while first < n:
        opens = max(worker_free, arrivals[first])  # the worker sees the oldest request
        deadline = max(opens, arrivals[first] + max_wait_ms)
        count, longest, closes = 0, 0, deadline
        while first + count < n:
            nxt = first + count
            if arrivals[nxt] > deadline:  # arrives after the batch closed
                break
            if not _fits(count, longest, lengths[nxt], max_batch_size, max_batch_tokens):
                closes = max(opens, arrivals[nxt])  # the batch is full when this one arrives
                break
            count, longest = count + 1, max(longest, lengths[nxt])
            if count == max_batch_size:
                closes = max(opens, arrivals[nxt])
                break
        done = closes + service_ms(count, longest)
        for i in range(first, first + count):
            start[i], finish[i] = closes, done
        batch_sizes.append(count)
        real_tokens += sum(lengths[first : first + count])
        padded_tokens += count * longest
        worker_free = done
        first += count

    latency = [f - a for f, a in zip(finish, arrivals, strict=True)]
    span_ms = max(finish) - arrivals[0] if n else 0.0
    return SimulationResult(
        start_ms=start,
        finish_ms=finish,
        latency_ms=latency,
        batch_sizes=batch_sizes,
        throughput_per_s=1000 * n / span_ms if span_ms > 0 else 0.0,
        mean_latency_ms=sum(latency) / n if n else 0.0,
        p50_latency_ms=_percentile(latency, 50) if n else 0.0,
        p99_latency_ms=_percentile(latency, 99) if n else 0.0,
        padding_waste=1 - real_tokens / padded_tokens if padded_tokens else 0.0,
    )
