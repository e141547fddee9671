"""MaxSim, late interaction's score (ColBERT): one vector per token, not one per text.

A bi-encoder squeezes a text into one vector; ColBERT keeps one vector per token and scores a
query against a document with MaxSim: for every query token, the similarity of its best-matching
document token, summed over the query tokens.

    score(q, d) = sum_i max_j  q_i . d_j        (i over query tokens, j over document tokens)

Token embeddings are L2-normalized, so the dot product is a cosine. Shapes used below:
B queries, N documents, Lq query tokens, Ld document tokens, D dimensions.

Masks are bool or 0/1 tensors, True/1 marking a real token and False/0 padding:
- a padded document position is filled with -inf before the max, so it never wins one (not 0:
  when every similarity is negative a 0 would beat all the real tokens);
- a padded query token adds nothing to the sum;
- a document with no real token scores -inf, so it ranks below every real document;
- a query with no real token scores 0 against every (non-empty) document.

The model that makes the token vectors is in ``tinyir.colbert``; their compression in
``tinyir.quantize``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tinyir.validate import check_positive, check_same_device, check_tensor

# Elements of one chunk's similarity matrix (B*Lq, n*Ld) when doc_chunk_size is None: 2M float32
# values (8 MiB), near the CPU's cache. On a 2-core Xeon, 2**18 to 2**22 ran within 20% of each
# other, all 1.4-1.7x faster than the plain formula at 16 and 32 queries; the 2,000-document
# benchmark's plain formula holds 1G values (make bench, key maxsim).
SIM_BUDGET = 2**21


def _check_same_device_and_dim(q: Tensor, d: Tensor) -> None:
    check_same_device(q=q, d=d)
    if q.shape[-1] != d.shape[-1]:
        raise ValueError(
            f"d: expected token dimension D={q.shape[-1]} (as in q), got {d.shape[-1]}"
        )
    if q.dtype != d.dtype:
        raise TypeError(f"d: expected dtype {q.dtype} (as q), got {d.dtype}")


def _mask_or_ones(name: str, mask: Tensor | None, x: Tensor) -> Tensor:
    """Return ``mask`` as bool, shape ``x.shape[:-1]``; all True when ``mask`` is None."""
    if mask is None:
        return torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or None, got {type(mask).__name__}")
    if mask.shape != x.shape[:-1]:
        raise ValueError(f"{name}: expected shape {tuple(x.shape[:-1])}, got {tuple(mask.shape)}")
    if mask.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device}, got {mask.device}")
    return mask.bool()


def _max_sim_from_similarities(sim: Tensor, q_mask: Tensor, d_mask: Tensor) -> Tensor:
    """Reduce similarities ``sim`` (..., Lq, Ld) to MaxSim scores (...).

    q_mask broadcasts to (..., Lq) and d_mask to (..., Ld).
    """
    if not bool(d_mask.all()):
        sim = sim.masked_fill(~d_mask.unsqueeze(-2), float("-inf"))  # padding never wins the max
    best = sim.amax(dim=-1)  # (..., Lq): best document token per query token
    best = torch.where(q_mask, best, torch.zeros((), dtype=best.dtype, device=best.device))
    scores = best.sum(dim=-1)  # (...)
    # A document without real tokens scores -inf, even against an empty query.
    has_tokens = d_mask.any(dim=-1)
    return scores.masked_fill(~has_tokens, float("-inf"))


def max_sim_matrix(
    q: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_mask: Tensor | None,
    doc_chunk_size: int | None = None,
) -> Tensor:
    """MaxSim of every query against every document.

    q: (B, Lq, D) float, q_mask: (B, Lq) or None; d: (N, Ld, D) float, d_mask: (N, Ld) or None.
    Returns (B, N): scores[b, n] = sum over real query tokens i of max over real doc tokens j of
    q[b, i] . d[n, j]. Differentiable (for training with in-batch negatives).

    Documents are scored ``doc_chunk_size`` at a time (by default as many as keep one chunk's
    similarities under ``SIM_BUDGET`` elements), so memory stays at (B * Lq, doc_chunk_size * Ld)
    however many documents there are, where the plain formula ``einsum("bqd,nkd->bnqk")`` holds
    all (B, N, Lq, Ld) at once. Each chunk is one matrix product of every query token against
    every document token; a chunk small enough to stay in the CPU's cache is also faster than
    writing all similarities to memory and reading them back for the max (``make bench``,
    key ``maxsim``).
    """
    check_tensor("q", q, "(B, L, D)", floating=True)
    check_tensor("d", d, "(N, L, D)", floating=True)
    _check_same_device_and_dim(q, d)
    if doc_chunk_size is not None:
        check_positive("doc_chunk_size", doc_chunk_size)
    q_mask = _mask_or_ones("q_mask", q_mask, q)  # (B, Lq)
    d_mask = _mask_or_ones("d_mask", d_mask, d)  # (N, Ld)
    (B, Lq, D), (N, Ld, _) = q.shape, d.shape
    if doc_chunk_size is None:
        doc_chunk_size = max(1, SIM_BUDGET // max(1, B * Lq * Ld))

    q_tokens = q.reshape(B * Lq, D)  # every query token of every query, one row each
    # Written chunk by chunk: no small result outlives its chunk to split the freed similarity
    # buffer, which would make the allocator take fresh memory for every chunk.
    scores = q.new_empty((B, N))
    for start in range(0, N, doc_chunk_size):
        d_chunk, m_chunk = d[start : start + doc_chunk_size], d_mask[start : start + doc_chunk_size]
        n = d_chunk.shape[0]
        sim = q_tokens @ d_chunk.reshape(n * Ld, D).T  # (B*Lq, n*Ld): all token pairs
        sim = sim.view(B, Lq, n, Ld).transpose(1, 2)  # (B, n, Lq, Ld), a view
        scores[:, start : start + n] = _max_sim_from_similarities(
            sim, q_mask[:, None, :], m_chunk[None])  # masks (B, 1, Lq), (1, n, Ld) -> (B, n)
    return scores


def max_sim_reference(q: Tensor, d: Tensor) -> Tensor:
    """The plain formula, all at once: (B, Lq, D) x (N, Ld, D) -> (B, N), no masks.

    Holds every similarity (B, N, Lq, Ld) in memory: 4.2 GB in float32 for 32 queries of 32
    tokens against 2,000 documents of 512. The benchmarks' reference for ``max_sim_matrix``.
    """
    return torch.einsum("bqd,nkd->bnqk", q, d).amax(dim=-1).sum(dim=-1)


def max_sim(
    q: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_mask: Tensor | None,
    doc_chunk_size: int | None = None,
) -> Tensor:
    """MaxSim of one query, or a batch of queries, against N documents.

    q: (Lq, D) or (B, Lq, D) float, q_mask: (Lq,) / (B, Lq) or None;
    d: (N, Ld, D) float, d_mask: (N, Ld) or None.
    Returns (N,) for one query, (B, N) for a batch. See ``max_sim_matrix``.
    Late interaction, from ColBERT (Khattab & Zaharia, SIGIR 2020, eq. 3).

    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])     # one query of 2 tokens, D = 2
    >>> d = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])    # one document of 2 tokens
    >>> max_sim(q, None, d, None)                       # max(1, 0.6) + max(0, 0.8)
    tensor([1.8000])
    """
    if isinstance(q, Tensor) and q.ndim == 2:
        if q_mask is not None and isinstance(q_mask, Tensor):
            q_mask = q_mask.unsqueeze(0)
        return max_sim_matrix(q.unsqueeze(0), q_mask, d, d_mask, doc_chunk_size)[0]
    return max_sim_matrix(q, q_mask, d, d_mask, doc_chunk_size)


def max_sim_pairs(
    q: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_mask: Tensor | None,
) -> Tensor:
    """MaxSim of query b against document b only.

    q: (B, Lq, D) float, q_mask: (B, Lq) or None; d: (B, Ld, D) float, d_mask: (B, Ld) or None.
    Returns (B,): the diagonal of ``max_sim_matrix(q, q_mask, d, d_mask)``.
    """
    check_tensor("q", q, "(B, L, D)", floating=True)
    check_tensor("d", d, "(N, L, D)", floating=True)
    _check_same_device_and_dim(q, d)
    if q.shape[0] != d.shape[0]:
        raise ValueError(f"d: expected B={q.shape[0]} documents (one per query), got {d.shape[0]}")
    q_mask = _mask_or_ones("q_mask", q_mask, q)  # (B, Lq)
    d_mask = _mask_or_ones("d_mask", d_mask, d)  # (B, Ld)
    sim = torch.einsum("bqd,bkd->bqk", q, d)  # (B, Lq, Ld)
    return _max_sim_from_similarities(sim, q_mask, d_mask)  # (B,)


def max_sim_alignment(
    q: Tensor,
    d: Tensor,
    d_mask: Tensor | None = None,
) -> Tensor:
    """For each query token, the index of the document token that wins its max (for heatmaps).

    q: (Lq, D) float, d: (Ld, D) float, d_mask: (Ld,) or None. Returns (Lq,) long indices into
    d's tokens, never a padded position. Raises ValueError if d has no real token.
    """
    check_tensor("q", q, "(L, D)", floating=True)
    check_tensor("d", d, "(L, D)", floating=True)
    _check_same_device_and_dim(q, d)
    d_mask = _mask_or_ones("d_mask", d_mask, d)  # (Ld,)
    if not bool(d_mask.any()):
        raise ValueError("d_mask: expected at least one real document token, got none")
    sim = (q @ d.T).masked_fill(~d_mask, float("-inf"))  # (Lq, Ld)
    return sim.argmax(dim=-1)  # (Lq,)
