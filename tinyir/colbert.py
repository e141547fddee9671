"""Late interaction (ColBERT): MaxSim scoring and residual compression of token embeddings.

A bi-encoder squeezes a text into one vector; ColBERT keeps one vector per token and scores a
query against a document with MaxSim: for every query token, the similarity of its best-matching
document token, summed over the query tokens.

    score(q, d) = sum_i max_j  q_i . d_j        (i over query tokens, j over document tokens)

Token embeddings are L2-normalized, so the dot product is a cosine. Shapes used below:
B queries, N documents, Lq query tokens, Ld document tokens, D dimensions, M stored tokens.

Masks are bool or 0/1 tensors, True/1 marking a real token and False/0 padding:
- a padded document position is filled with -inf before the max, so it never wins one (not 0:
  when every similarity is negative a 0 would beat all the real tokens);
- a padded query token adds nothing to the sum;
- a document with no real token scores -inf, so it ranks below every real document;
- a query with no real token scores 0 against every (non-empty) document.

Storing a vector per token is expensive, so ColBERTv2 compresses each one to the id of its
nearest k-means centroid plus the residual quantized to a few bits per dimension;
``ResidualCompressor`` is a simplified version of that scheme.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tinyir.validate import check_same_device, check_tensor

DEFAULT_DOC_CHUNK_SIZE = 256


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
    doc_chunk_size: int = DEFAULT_DOC_CHUNK_SIZE,
) -> Tensor:
    """MaxSim of every query against every document.

    q: (B, Lq, D) float, q_mask: (B, Lq) or None; d: (N, Ld, D) float, d_mask: (N, Ld) or None.
    Returns (B, N): scores[b, n] = sum over real query tokens i of max over real doc tokens j of
    q[b, i] . d[n, j]. Documents are scored ``doc_chunk_size`` at a time, so the similarity
    tensor in memory is at most (B, doc_chunk_size, Lq, Ld). Differentiable (for training with
    in-batch negatives).
    """
    check_tensor("q", q, "(B, L, D)", floating=True)
    check_tensor("d", d, "(N, L, D)", floating=True)
    _check_same_device_and_dim(q, d)
    if not isinstance(doc_chunk_size, int) or doc_chunk_size < 1:
        raise ValueError(f"doc_chunk_size: expected a positive int, got {doc_chunk_size!r}")
    q_mask = _mask_or_ones("q_mask", q_mask, q)  # (B, Lq)
    d_mask = _mask_or_ones("d_mask", d_mask, d)  # (N, Ld)

    chunks = []
    for start in range(0, d.shape[0], doc_chunk_size):
        d_chunk = d[start : start + doc_chunk_size]  # (n, Ld, D)
        sim = torch.einsum("bqd,nkd->bnqk", q, d_chunk)  # (B, n, Lq, Ld)
        chunks.append(
            _max_sim_from_similarities(
                sim,
                q_mask[:, None, :],  # (B, 1, Lq)
                d_mask[None, start : start + doc_chunk_size],  # (1, n, Ld)
            )
        )  # (B, n)
    if not chunks:  # no documents
        return q.new_zeros((q.shape[0], 0))
    return torch.cat(chunks, dim=1)  # (B, N)


def max_sim(
    q: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_mask: Tensor | None,
    doc_chunk_size: int = DEFAULT_DOC_CHUNK_SIZE,
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


# ----------------------------------------------------------------------------------------------
# Residual compression (ColBERTv2, simplified)


def kmeans(x: Tensor, n_centroids: int, n_iter: int = 20, seed: int = 0) -> Tensor:
    """Lloyd's k-means on ``x`` (M, D) float; returns centroids (n_centroids, D) on x's device.

    Starts from ``n_centroids`` distinct points drawn with ``seed``; a cluster that loses all its
    points keeps its previous centroid. Deterministic for a given seed and device.
    """
    check_tensor("x", x, "(L, D)", floating=True)
    if not isinstance(n_centroids, int) or not 1 <= n_centroids <= x.shape[0]:
        raise ValueError(
            f"n_centroids: expected an int in [1, {x.shape[0]}] (the number of points), "
            f"got {n_centroids!r}"
        )
    generator = torch.Generator().manual_seed(seed)
    first = torch.randperm(x.shape[0], generator=generator)[:n_centroids].to(x.device)
    centroids = x[first].clone()  # (K, D)
    for _ in range(n_iter):
        assignment = torch.cdist(x, centroids).argmin(dim=1)  # (M,)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)  # (K, D)
        counts = torch.bincount(assignment, minlength=n_centroids).unsqueeze(1)  # (K, 1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


def bytes_per_token(dim: int, bits: int, centroid_id_bytes: int = 4) -> int:
    """Bytes one compressed token takes: a centroid id plus ``dim`` residuals of ``bits`` bits.

    ColBERTv2 keeps the centroid id as int32, so 128 dims at 2 bits = 4 + 32 = 36 bytes, against
    256 bytes at fp16.
    """
    for name, value in (("dim", dim), ("bits", bits)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if not isinstance(centroid_id_bytes, int) or centroid_id_bytes < 0:
        raise ValueError(
            f"centroid_id_bytes: expected a non-negative int, got {centroid_id_bytes!r}"
        )
    return centroid_id_bytes + math.ceil(dim * bits / 8)


class ResidualCompressor:
    """Compress token embeddings to (nearest centroid, residual quantized to ``bits`` bits).

    Fit on a sample of token embeddings:

        compressor = ResidualCompressor.fit(tokens, n_centroids=256, bits=2)
        codes, residuals = compressor.compress(tokens)   # (M,) long, (M, D * bits / 8) uint8
        approx = compressor.decompress(codes, residuals)  # (M, D) float

    As in ColBERTv2, the residual values of all dimensions share one set of buckets: the
    2^bits - 1 cutoffs are quantiles of the residuals at i / 2^bits, and a bucket decompresses
    to the residuals' quantile at its middle, (i + 0.5) / 2^bits. The codes are packed 8 / bits
    per byte, first dimension in the most significant bits.
    """

    SUPPORTED_BITS = (1, 2, 4, 8)

    def __init__(
        self, centroids: Tensor, bucket_cutoffs: Tensor, bucket_weights: Tensor, bits: int
    ) -> None:
        """centroids: (K, D) float; bucket_cutoffs: (2^bits - 1,); bucket_weights: (2^bits,)."""
        if bits not in self.SUPPORTED_BITS:
            raise ValueError(f"bits: expected one of {self.SUPPORTED_BITS}, got {bits!r}")
        check_tensor("centroids", centroids, "(L, D)", floating=True)
        if bucket_cutoffs.shape != (2**bits - 1,) or bucket_weights.shape != (2**bits,):
            raise ValueError(
                f"bucket_cutoffs, bucket_weights: expected shapes ({2**bits - 1},) and "
                f"({2**bits},), got {tuple(bucket_cutoffs.shape)} and "
                f"{tuple(bucket_weights.shape)}"
            )
        if (centroids.shape[1] * bits) % 8 != 0:
            raise ValueError(
                f"centroids: expected D * bits to be a multiple of 8 so codes pack into bytes, "
                f"got D={centroids.shape[1]}, bits={bits}"
            )
        self.centroids = centroids
        self.bucket_cutoffs = bucket_cutoffs.to(centroids)
        self.bucket_weights = bucket_weights.to(centroids)
        self.bits = bits

    @classmethod
    def fit(
        cls,
        token_embeddings: Tensor,
        n_centroids: int,
        bits: int = 2,
        seed: int = 0,
        n_iter: int = 20,
    ) -> ResidualCompressor:
        """Fit centroids and residual buckets on ``token_embeddings`` (M, D) float."""
        check_tensor("token_embeddings", token_embeddings, "(L, D)", floating=True)
        if bits not in cls.SUPPORTED_BITS:
            raise ValueError(f"bits: expected one of {cls.SUPPORTED_BITS}, got {bits!r}")
        x = token_embeddings.float()
        centroids = kmeans(x, n_centroids, n_iter=n_iter, seed=seed)  # (K, D)
        nearest = torch.cdist(x, centroids).argmin(dim=1)  # (M,)
        residuals = (x - centroids[nearest]).flatten()  # (M * D,)
        levels = 2**bits
        cutoff_q = torch.arange(1, levels, device=x.device, dtype=x.dtype) / levels
        weight_q = (torch.arange(levels, device=x.device, dtype=x.dtype) + 0.5) / levels
        sample = _quantile_sample(residuals, seed)
        return cls(centroids, sample.quantile(cutoff_q), sample.quantile(weight_q), bits)

    def to(self, device: torch.device | str) -> ResidualCompressor:
        """A copy of this compressor with its tensors on ``device``."""
        return ResidualCompressor(
            self.centroids.to(device),
            self.bucket_cutoffs.to(device),
            self.bucket_weights.to(device),
            self.bits,
        )

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def _check_input(self, name: str, x: Tensor, ndim: int) -> None:
        if x.device != self.centroids.device:
            raise ValueError(
                f"{name}: expected a tensor on the compressor's device {self.centroids.device}, "
                f"got {x.device}; use compressor.to(device)"
            )
        if x.ndim != ndim:
            raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(x.shape)}")

    def compress(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (M, D) float -> (codes (M,) long centroid ids, residuals (M, D*bits/8) uint8)."""
        check_tensor("x", x, "(L, D)", floating=True)
        self._check_input("x", x, 2)
        if x.shape[1] != self.dim:
            raise ValueError(f"x: expected D={self.dim} (as fitted), got {x.shape[1]}")
        x = x.to(self.centroids.dtype)
        codes = torch.cdist(x, self.centroids).argmin(dim=1)  # (M,)
        residuals = x - self.centroids[codes]  # (M, D)
        buckets = torch.bucketize(residuals, self.bucket_cutoffs)  # (M, D) in [0, 2^bits)
        return codes, _pack(buckets, self.bits)

    def decompress(self, codes: Tensor, packed_residuals: Tensor) -> Tensor:
        """codes: (M,) long, packed_residuals: (M, D*bits/8) uint8 -> (M, D) float."""
        self._check_input("codes", codes, 1)
        self._check_input("packed_residuals", packed_residuals, 2)
        expected = (codes.shape[0], self.dim * self.bits // 8)
        if tuple(packed_residuals.shape) != expected:
            raise ValueError(
                f"packed_residuals: expected shape {expected}, got {tuple(packed_residuals.shape)}"
            )
        buckets = _unpack(packed_residuals, self.bits)  # (M, D)
        return self.centroids[codes] + self.bucket_weights[buckets]


def _quantile_sample(values: Tensor, seed: int, max_size: int = 1 << 20) -> Tensor:
    """``torch.quantile`` accepts at most 2^24 values; a 1M-value sample is plenty."""
    if values.numel() <= max_size:
        return values
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(values.numel(), (max_size,), generator=generator).to(values.device)
    return values[picks]


def _pack(buckets: Tensor, bits: int) -> Tensor:
    """buckets: (M, D) ints in [0, 2^bits) -> (M, D*bits/8) uint8, first value in the high bits."""
    per_byte = 8 // bits
    grouped = buckets.reshape(buckets.shape[0], -1, per_byte).to(torch.int32)  # (M, D/per, per)
    shifts = torch.arange(per_byte - 1, -1, -1, device=buckets.device, dtype=torch.int32) * bits
    return (grouped << shifts).sum(dim=-1).to(torch.uint8)


def _unpack(packed: Tensor, bits: int) -> Tensor:
    """Inverse of ``_pack``: (M, D*bits/8) uint8 -> (M, D) long."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte - 1, -1, -1, device=packed.device, dtype=torch.int32) * bits
    values = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & (2**bits - 1)  # (M, B, per)
    return values.reshape(packed.shape[0], -1).long()


# ==============================================================================================
# The ColBERT model: encoder -> linear projection -> L2 norm per token, with masks
# (appended section; the kernels above do not depend on it)

COLBERT_CONFIG_FILE = "tinyir_colbert.json"
PROJECTION_FILE = "projection.safetensors"


class ColBERT(torch.nn.Module):
    """Per-token embeddings for late interaction: encoder (B, T, C) -> projection (B, T, D) ->
    unit length per token, plus the mask of the tokens that are kept.

    Args:
        encoder: a tinyir ``Encoder``; tokenizer: its ``Tokenizer``.
        dim: D, the size of a stored token vector (ColBERT: 128); None keeps the encoder's C
            with no projection (zero-shot token embeddings).
        projection: optional ``nn.Linear(C, dim, bias=False)``; a fresh one (seeded) when None.
        query_max_length / doc_max_length: truncation, [CLS] and [SEP] included.
        skip_punctuation: drop punctuation tokens from documents (ColBERT's skiplist): they
            carry little meaning and would cost storage.

    The mask marks a token as kept when it is real (attention mask 1) and, in a document, not
    punctuation. Padding is never kept, so it can never win a MaxSim max.
    """

    def __init__(self, encoder, tokenizer, dim: int | None = 128,
                 projection: torch.nn.Linear | None = None, query_max_length: int = 32,
                 doc_max_length: int = 128, skip_punctuation: bool = True, seed: int = 0):
        super().__init__()
        from tinyir.encoder import Encoder
        from tinyir.tokenizer import Tokenizer

        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder: expected a tinyir Encoder, got {type(encoder).__name__}")
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer: expected a tinyir Tokenizer, got {type(tokenizer).__name__}")
        C = encoder.config.hidden_size
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim: expected a positive int or None, got {dim!r}")
        if dim is not None and projection is None:
            projection = torch.nn.Linear(C, dim, bias=False)
            generator = torch.Generator().manual_seed(seed)
            bound = 1 / math.sqrt(C)  # nn.Linear's default range, drawn from a seeded generator
            with torch.no_grad():
                projection.weight.copy_((torch.rand(dim, C, generator=generator) * 2 - 1) * bound)
            projection = projection.to(encoder.device)
        if projection is not None and (
            not isinstance(projection, torch.nn.Linear) or projection.in_features != C
            or projection.bias is not None
        ):
            raise ValueError(f"projection: expected nn.Linear({C}, dim, bias=False), got {projection!r}")
        for name, value in (("query_max_length", query_max_length),
                            ("doc_max_length", doc_max_length)):
            if not isinstance(value, int) or not 2 <= value <= encoder.config.max_position:
                raise ValueError(
                    f"{name}: expected an int in [2, {encoder.config.max_position}], got {value!r}"
                )
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.projection = projection
        self.query_max_length = query_max_length
        self.doc_max_length = doc_max_length
        self.skip_punctuation = bool(skip_punctuation)
        skip = {tokenizer.backend.token_to_id(c) for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}
        self.register_buffer("skiplist", torch.tensor(sorted(i for i in skip if i is not None),
                                                      dtype=torch.long, device=encoder.device),
                             persistent=False)

    @classmethod
    def from_minilm(cls, dim: int | None = 128, seed: int = 0, **kwargs) -> ColBERT:
        """all-MiniLM-L6-v2's encoder and tokenizer with a fresh (seeded) projection to ``dim``."""
        from tinyir.encoder import Encoder
        from tinyir.pretrained import minilm_path
        from tinyir.tokenizer import Tokenizer

        encoder = Encoder.from_pretrained(minilm_path(), device=kwargs.pop("device", None))
        return cls(encoder, Tokenizer.minilm(), dim=dim, seed=seed, **kwargs).eval()

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def dim(self) -> int:
        """D, the size of one stored token vector."""
        return self.projection.out_features if self.projection is not None else (
            self.encoder.config.hidden_size)

    def tokenize(self, texts: list[str], is_query: bool) -> dict[str, Tensor]:
        """Texts -> ``input_ids``, ``attention_mask`` (B, T) on the model's device."""
        max_length = self.query_max_length if is_query else self.doc_max_length
        return {k: t.to(self.device) for k, t in self.tokenizer(texts, max_length).items()}

    def keep_mask(self, input_ids: Tensor, attention_mask: Tensor, is_query: bool) -> Tensor:
        """(B, T) bool: real tokens, minus punctuation in documents when ``skip_punctuation``."""
        keep = attention_mask.bool()
        if self.skip_punctuation and not is_query:
            keep = keep & ~torch.isin(input_ids, self.skiplist)
        return keep

    def token_embeddings(self, hidden: Tensor, input_ids: Tensor, attention_mask: Tensor,
                         is_query: bool) -> tuple[Tensor, Tensor]:
        """Encoder output hidden (B, T, C) -> (unit token vectors (B, T, D), keep mask (B, T)).

        Dropped positions hold zero vectors; the mask says which ones they are.
        """
        x = self.projection(hidden) if self.projection is not None else hidden  # (B, T, D)
        x = torch.nn.functional.normalize(x, dim=-1)
        keep = self.keep_mask(input_ids, attention_mask, is_query)  # (B, T)
        return x * keep.unsqueeze(-1).to(x.dtype), keep

    def forward(self, batch: dict[str, Tensor], is_query: bool) -> tuple[Tensor, Tensor]:
        """A tokenized batch -> (token vectors (B, T, D), keep mask (B, T)). Differentiable."""
        hidden = self.encoder(batch["input_ids"], batch["attention_mask"])  # (B, T, C)
        return self.token_embeddings(hidden, batch["input_ids"], batch["attention_mask"],
                                     is_query)

    @torch.inference_mode()
    def encode(self, texts: list[str], is_query: bool, batch_size: int = 64,
               show_progress: bool = False) -> tuple[Tensor, Tensor]:
        """Embed texts in batches: (N, L, D) token vectors and (N, L) bool mask, L = the longest
        text. Texts are grouped by length so a batch pads to its own longest text."""
        import sys

        from tqdm.auto import tqdm

        if not isinstance(texts, list) or not texts:
            raise ValueError("texts: expected a non-empty list of str")
        was_training = self.training
        self.eval()
        max_length = self.query_max_length if is_query else self.doc_max_length
        ids = self.tokenizer.encode_ids(texts, max_length)
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        L = max(len(x) for x in ids)
        out = torch.zeros(len(texts), L, self.dim, device=self.device)
        mask = torch.zeros(len(texts), L, dtype=torch.bool, device=self.device)
        for start in tqdm(range(0, len(texts), batch_size), desc="encode tokens", unit="batch",
                          file=sys.stderr, disable=not show_progress):
            rows = order[start:start + batch_size]
            batch = {k: t.to(self.device) for k, t in self.tokenizer.pad([ids[i] for i in rows]).items()}
            emb, keep = self(batch, is_query)  # (b, T, D), (b, T)
            T = emb.shape[1]
            target = torch.tensor(rows, device=self.device)
            out[target, :T] = emb
            mask[target, :T] = keep
        self.train(was_training)
        return out, mask

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """(Q, Lq, D), (Q, Lq): see :meth:`encode`."""
        return self.encode(texts, is_query=True, batch_size=batch_size)

    def encode_docs(self, texts: list[str], batch_size: int = 64,
                    show_progress: bool = False) -> tuple[Tensor, Tensor]:
        """(N, Ld, D), (N, Ld): see :meth:`encode`."""
        return self.encode(texts, is_query=False, batch_size=batch_size,
                           show_progress=show_progress)

    def save_pretrained(self, folder) -> object:
        """Write encoder (config.json + model.safetensors), projection.safetensors, tokenizer.json
        and tinyir_colbert.json to ``folder`` atomically (a temporary folder, then one rename)."""
        import json
        from pathlib import Path

        from safetensors.torch import save_file

        from tinyir.atomic import atomic_folder

        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self.encoder.save_pretrained(tmp)
            self.tokenizer.save(tmp / "tokenizer.json")
            if self.projection is not None:
                weight = self.projection.weight.detach().cpu().contiguous()
                save_file({"weight": weight}, str(tmp / PROJECTION_FILE), {"format": "pt"})
            settings = {"dim": self.projection.out_features if self.projection is not None
                        else None, "query_max_length": self.query_max_length,
                        "doc_max_length": self.doc_max_length,
                        "skip_punctuation": self.skip_punctuation}
            (tmp / COLBERT_CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder, device: str | torch.device | None = None) -> ColBERT:
        """Load a folder written by :meth:`save_pretrained`, in eval mode."""
        import json
        from pathlib import Path

        from safetensors.torch import load_file

        from tinyir.encoder import Encoder
        from tinyir.tokenizer import Tokenizer

        folder = Path(folder)
        if not (folder / COLBERT_CONFIG_FILE).is_file():
            raise FileNotFoundError(f"folder: expected {folder / COLBERT_CONFIG_FILE}")
        settings = json.loads((folder / COLBERT_CONFIG_FILE).read_text())
        encoder = Encoder.from_pretrained(folder, device=device)
        projection = None
        if settings["dim"] is not None:
            projection = torch.nn.Linear(encoder.config.hidden_size, settings["dim"], bias=False)
            projection.load_state_dict(load_file(str(folder / PROJECTION_FILE)))
            projection = projection.to(encoder.device)
        model = cls(encoder, Tokenizer.from_file(folder / "tokenizer.json"), dim=settings["dim"],
                    projection=projection, query_max_length=settings["query_max_length"],
                    doc_max_length=settings["doc_max_length"],
                    skip_punctuation=settings["skip_punctuation"])
        return model.eval()


def train_projection(
    model: ColBERT,
    pairs: list[tuple[str, str]],
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train only ``model.projection`` (the encoder stays frozen) with in-batch MaxSim InfoNCE.

    The encoder runs once over every query and passage (no gradients); each step then projects a
    batch of B queries and B passages and takes cross-entropy over the (B, B) MaxSim matrix with
    the diagonal as labels (raw MaxSim scores as logits, as ColBERT trains). Cheap: an epoch costs
    a few small matmuls, not a transformer pass. Returns the loss of every step.
    """
    import random
    import sys

    from tqdm.auto import tqdm

    if model.projection is None:
        raise ValueError("model: has no projection to train (dim=None)")
    if len(pairs) < 2:
        raise ValueError(f"pairs: expected at least 2 (query, passage) pairs, got {len(pairs)}")
    queries, docs = [q for q, _ in pairs], [d for _, d in pairs]
    with torch.inference_mode():  # the frozen encoder's output, once
        cache = {}
        for name, texts, is_query in (("q", queries, True), ("d", docs, False)):
            states, masks, ids_all = [], [], []
            for start in tqdm(range(0, len(texts), 64), desc=f"encode {name}", unit="batch",
                              file=sys.stderr, disable=not progress):
                batch = model.tokenize(texts[start:start + 64], is_query)
                hidden = model.encoder(batch["input_ids"], batch["attention_mask"])  # (b, T, C)
                for row in range(hidden.shape[0]):
                    states.append(hidden[row].clone())
                    masks.append(batch["attention_mask"][row].clone())
                    ids_all.append(batch["input_ids"][row].clone())
            cache[name] = (states, masks, ids_all)

    def stack(name: str, rows: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        states, masks, ids_all = cache[name]
        T = max(int(masks[i].sum()) for i in rows)
        return (torch.stack([states[i][:T] for i in rows]),
                torch.stack([masks[i][:T] for i in rows]), torch.stack([ids_all[i][:T] for i in rows]))

    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.Adam(model.projection.parameters(), lr=lr)
    losses = []
    order = list(range(len(pairs)))
    steps = epochs * math.ceil(len(pairs) / batch_size)
    bar = tqdm(total=steps, desc="train projection", unit="step", file=sys.stderr,
               disable=not progress)
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            if len(rows) < 2:
                continue
            hq, mq, iq = stack("q", rows)
            hd, md, id_ = stack("d", rows)
            q, q_keep = model.token_embeddings(hq, iq, mq, is_query=True)  # (B, Lq, D)
            d, d_keep = model.token_embeddings(hd, id_, md, is_query=False)  # (B, Ld, D)
            scores = max_sim_matrix(q, q_keep, d, d_keep)  # (B, B)
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(rows), device=scores.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
    bar.close()
    model.eval()
    return losses
