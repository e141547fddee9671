"""Smaller embeddings: int8 and binary quantization, rescoring, Matryoshka truncation.

Three ways to shrink an index of (N, D) fp32 embeddings, and the trick that recovers quality:

- int8: per dimension, map the calibration range [min, max] onto 256 buckets (4x smaller).
- binary: keep only the sign of each dimension, 8 dimensions per byte (32x smaller); compare
  with the Hamming distance (count the differing bits).
- Matryoshka: keep the first ``dim`` dimensions of a model trained for it, then renormalize.
- rescoring: retrieve ``oversample * k`` candidates with the cheap binary index, then rescore
  only those with the float query against int8 (or float) document vectors and keep the top k.
- residual compression of token vectors (ColBERTv2, Santhanam et al., NAACL 2022, simplified):
  the id of the nearest k-means centroid plus the residual quantized to a few bits per
  dimension (``ResidualCompressor``; ``bytes_per_token`` is its storage arithmetic).

The formulas match sentence-transformers' ``quantize_embeddings`` (precision "int8" and
"ubinary"); the tests compare the outputs. Shapes: N documents, Q queries, D dimensions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tinyir.validate import check_choice, check_same_device, check_tensor

INT8_LEVELS = 255  # 256 buckets, 0..255, stored shifted to -128..127
INT8_SHIFT = 128
BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits order: first dimension -> high bit


# ----------------------------------------------------------------------------------------------
# int8


def int8_ranges(calibration: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension (scale, offset) from calibration embeddings (N, D) float.

    offset = min over the calibration set, scale = (max - min) / 255 (1 where max == min), as in
    sentence-transformers. Returns two (D,) float32 tensors.
    """
    check_tensor("calibration", calibration, "(N, D)", floating=True)
    if calibration.shape[0] < 2:
        raise ValueError(
            f"calibration: expected at least 2 embeddings to measure ranges, "
            f"got {calibration.shape[0]}"
        )
    calibration = calibration.float()
    offset = calibration.amin(dim=0)  # (D,)
    scale = (calibration.amax(dim=0) - offset) / INT8_LEVELS  # (D,)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return scale, offset


def quantize_int8(
    x: Tensor,
    calibration: Tensor | None = None,
    scale: Tensor | None = None,
    offset: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """x: (N, D) float -> (codes (N, D) int8, scale (D,), offset (D,)).

    Ranges come from ``scale``/``offset`` if given (to quantize queries like the corpus), else
    from ``calibration`` (M, D), else from ``x`` itself. Bucket = floor((x - offset) / scale),
    clipped to [0, 255], stored minus 128 as int8: exactly sentence-transformers'
    ``quantize_embeddings(x, "int8", calibration_embeddings=calibration)``. Values outside the
    calibration range clip to the first or last bucket.
    """
    check_tensor("x", x, "(N, D)", floating=True)
    if (scale is None) != (offset is None):
        raise ValueError("scale, offset: give both or neither")
    if scale is None:
        source = x if calibration is None else calibration
        if calibration is not None:
            check_same_device(x=x, calibration=calibration)
            if calibration.shape[1] != x.shape[1]:
                raise ValueError(
                    f"calibration: expected D={x.shape[1]} (as x), got {calibration.shape[1]}"
                )
        scale, offset = int8_ranges(source)
    check_same_device(x=x, scale=scale, offset=offset)
    for name, value in (("scale", scale), ("offset", offset)):
        if value.shape != (x.shape[1],):
            raise ValueError(f"{name}: expected shape ({x.shape[1]},), got {tuple(value.shape)}")
    buckets = torch.floor((x.float() - offset) / scale).clamp(0, INT8_LEVELS)  # (N, D)
    codes = (buckets - INT8_SHIFT).to(torch.int8)
    return codes, scale, offset


def dequantize_int8(codes: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    """codes: (N, D) int8, scale, offset: (D,) -> (N, D) float32 at the bucket centres.

    We return the centre of each bucket, offset + (bucket + 0.5) * scale, where
    sentence-transformers returns its lower edge: the centre halves the worst-case error to
    scale / 2 for values inside the calibration range and removes the downward bias.
    """
    check_tensor("codes", codes, "(N, D)")
    if codes.dtype != torch.int8:
        raise TypeError(f"codes: expected dtype torch.int8, got {codes.dtype}")
    check_same_device(codes=codes, scale=scale, offset=offset)
    buckets = codes.float() + INT8_SHIFT  # (N, D) in [0, 255]
    return offset + (buckets + 0.5) * scale


# ----------------------------------------------------------------------------------------------
# binary


def quantize_binary(x: Tensor) -> Tensor:
    """x: (N, D) float -> (N, ceil(D / 8)) uint8: bit = 1 where x > 0, packed 8 per byte.

    Bit order is ``np.packbits``' (dimension 0 in the most significant bit of byte 0), the same
    as sentence-transformers' precision="ubinary". If D is not a multiple of 8, the last byte is
    padded with zero bits, as ``np.packbits`` does; zero bits on both sides never add to a
    Hamming distance.
    """
    check_tensor("x", x, "(N, D)", floating=True)
    n, dim = x.shape
    bits = (x > 0).to(torch.uint8)  # (N, D)
    padding = -dim % 8
    bits = F.pad(bits, (0, padding))  # (N, 8 * ceil(D / 8))
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=x.device)
    return (bits.reshape(n, -1, 8) * weights).sum(dim=-1, dtype=torch.uint8)  # (N, D/8)


def _popcount_table(device: torch.device) -> Tensor:
    """(256,) table: number of 1 bits in each byte value."""
    values = torch.arange(256, device=device)
    return sum((values >> shift) & 1 for shift in range(8))


def hamming_distances(q_bits: Tensor, d_bits: Tensor, doc_chunk_size: int = 4096) -> Tensor:
    """q_bits: (Q, B) uint8, d_bits: (N, B) uint8 -> (Q, N) int64 Hamming distances.

    XOR the bytes, then count the 1 bits of each byte with a 256-entry lookup table. Documents
    go ``doc_chunk_size`` at a time, so memory stays at (Q, doc_chunk_size, B) bytes.
    """
    for name, value in (("q_bits", q_bits), ("d_bits", d_bits)):
        check_tensor(name, value, "(N, D)")
        if value.dtype != torch.uint8:
            raise TypeError(f"{name}: expected packed bits of dtype torch.uint8, got {value.dtype}")
    check_same_device(q_bits=q_bits, d_bits=d_bits)
    if q_bits.shape[1] != d_bits.shape[1]:
        raise ValueError(
            f"d_bits: expected {q_bits.shape[1]} bytes per vector (as q_bits), "
            f"got {d_bits.shape[1]}"
        )
    table = _popcount_table(q_bits.device)
    chunks = []
    for start in range(0, d_bits.shape[0], doc_chunk_size):
        differing = q_bits[:, None, :] ^ d_bits[None, start : start + doc_chunk_size]  # (Q, n, B)
        chunks.append(table[differing.long()].sum(dim=-1))  # (Q, n)
    if not chunks:
        return torch.zeros(q_bits.shape[0], 0, dtype=torch.long, device=q_bits.device)
    return torch.cat(chunks, dim=1)  # (Q, N)


def hamming_search(
    q_bits: Tensor, d_bits: Tensor, k: int, doc_chunk_size: int = 4096
) -> tuple[Tensor, Tensor]:
    """The k nearest documents by Hamming distance.

    q_bits: (Q, B) uint8, d_bits: (N, B) uint8. Returns (distances (Q, k) int64 ascending,
    ids (Q, k) int64); equal distances are ordered by document id, so results are deterministic.
    """
    distances = hamming_distances(q_bits, d_bits, doc_chunk_size)  # (Q, N)
    n_docs = d_bits.shape[0]
    if not isinstance(k, int) or not 1 <= k <= n_docs:
        raise ValueError(
            f"k: expected an int in [1, {n_docs}] (the number of documents), got {k!r}"
        )
    # distance * N + id is unique per document: its order is by distance, then by id
    ids = torch.arange(n_docs, device=d_bits.device)
    keys = distances * n_docs + ids  # (Q, N)
    best = keys.topk(k, dim=1, largest=False).values  # (Q, k), ascending
    return best // n_docs, best % n_docs


# ----------------------------------------------------------------------------------------------
# rescoring


def rescore(
    query_float: Tensor,
    candidate_ids: Tensor,
    docs: Tensor,
    k: int,
    scale: Tensor | None = None,
    offset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Re-rank candidates by the float query's dot product with better document vectors.

    query_float: (Q, D) float; candidate_ids: (Q, K') int64, -1 marking a missing candidate;
    docs: (N, D) float, or (N, D) int8 codes together with their ``scale`` and ``offset`` (only
    the candidates are dequantized). Returns (scores (Q, k) float descending, ids (Q, k)).
    """
    check_tensor("query_float", query_float, "(N, D)", floating=True)
    check_tensor("candidate_ids", candidate_ids, "(N, D)")
    check_tensor("docs", docs, "(N, D)")
    check_same_device(query_float=query_float, candidate_ids=candidate_ids, docs=docs)
    if candidate_ids.shape[0] != query_float.shape[0]:
        raise ValueError(
            f"candidate_ids: expected Q={query_float.shape[0]} rows (one per query), "
            f"got {candidate_ids.shape[0]}"
        )
    if docs.shape[1] != query_float.shape[1]:
        raise ValueError(
            f"docs: expected D={query_float.shape[1]} (as the query), got {docs.shape[1]}"
        )
    if not isinstance(k, int) or not 1 <= k <= candidate_ids.shape[1]:
        raise ValueError(
            f"k: expected an int in [1, {candidate_ids.shape[1]}] (the candidates per query), "
            f"got {k!r}"
        )
    missing = candidate_ids < 0  # (Q, K')
    candidates = docs[candidate_ids.clamp(min=0)]  # (Q, K', D)
    if docs.dtype == torch.int8:
        if scale is None or offset is None:
            raise ValueError("scale, offset: needed to dequantize int8 docs, got None")
        candidates = dequantize_int8(candidates.flatten(0, 1), scale, offset).view(candidates.shape)
    elif not docs.is_floating_point():
        raise TypeError(f"docs: expected float or int8 vectors, got {docs.dtype}")
    scores = torch.einsum("qd,qkd->qk", query_float.float(), candidates.float())  # (Q, K')
    scores = scores.masked_fill(missing, float("-inf"))
    top_scores, order = scores.topk(k, dim=1)  # (Q, k)
    return top_scores, candidate_ids.gather(1, order)


def binary_search_with_rescore(
    query_float: Tensor,
    doc_bits: Tensor,
    rescore_docs: Tensor,
    k: int,
    oversample: int = 4,
    scale: Tensor | None = None,
    offset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Retrieve ``oversample * k`` candidates by Hamming distance, rescore them, keep k.

    query_float: (Q, D) float; doc_bits: (N, D/8) uint8 from ``quantize_binary``;
    rescore_docs: (N, D) float or int8 (with ``scale``, ``offset``). Returns (scores, ids), (Q, k).
    """
    if not isinstance(oversample, int) or oversample < 1:
        raise ValueError(f"oversample: expected a positive int, got {oversample!r}")
    n_candidates = min(oversample * k, doc_bits.shape[0])
    _, candidate_ids = hamming_search(quantize_binary(query_float), doc_bits, n_candidates)
    return rescore(query_float, candidate_ids, rescore_docs, k, scale=scale, offset=offset)


# ----------------------------------------------------------------------------------------------
# Matryoshka and sizes


def matryoshka_truncate(x: Tensor, dim: int, renormalize: bool = True) -> Tensor:
    """x: (..., D) float -> (..., dim): the first ``dim`` dimensions, L2-normalized again.

    Only meaningful for models trained with a Matryoshka loss, which packs the most information
    into the leading dimensions.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point torch.Tensor, got {type(x).__name__}")
    if not isinstance(dim, int) or not 1 <= dim <= x.shape[-1]:
        raise ValueError(f"dim: expected an int in [1, {x.shape[-1]}], got {dim!r}")
    truncated = x[..., :dim]
    return F.normalize(truncated, dim=-1) if renormalize else truncated


# ----------------------------------------------------------------------------------------------
# Residual compression of token vectors (ColBERTv2, simplified)


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
        check_choice("bits", bits, self.SUPPORTED_BITS)
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
        check_choice("bits", bits, cls.SUPPORTED_BITS)
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
