"""Batches of similar length: the one encode loop of the bi-encoder, ColBERT and the reranker.

Padding a batch to its longest text wastes compute on every shorter one. Sorting the texts by
length first (longest first, so a memory problem shows at once) makes each batch pad only to its
own longest text; the results are written back to the rows they came from, so the caller sees
the original order. This is what sentence-transformers' ``encode`` does, and, per request, what
an embedding server's batcher does (``tinyir.serving``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

from tqdm.auto import tqdm

from tinyir.validate import check_positive


def length_batches(lengths: Sequence[int], batch_size: int, *, progress: bool = False,
                   desc: str = "encode") -> Iterator[list[int]]:
    """Yield the row indices of ``lengths`` in batches of ``batch_size``, longest first.

    Each batch holds rows of similar length; scatter each batch's results back to its indices.
    progress: a progress bar on stderr, one step per batch.
    """
    check_positive("batch_size", batch_size)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep order
    with tqdm(total=-(-len(order) // batch_size), desc=desc, unit="batch", file=sys.stderr,
              disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]
            bar.update(1)
