"""Storage-cost calculator: how many bytes an index of embeddings needs.

The arithmetic is the whole lesson: ``docs x vectors_per_doc x dim x bytes_per_dim`` for the
vectors, plus what the index adds on top (graph links for HNSW; ids and codebooks for IVF-PQ).
Every number the calculator prints comes with the assumptions that produced it, so a reader
can check a figure quoted in a paper or a blog post and find the one assumption it needs.

Units are decimal, as the book uses them: 1 kB = 1000 B, 1 MB = 1000 kB, 1 GB = 1000 MB.
``StorageCost.human`` shows 3 significant figures (1M x 1024 fp32 = 4,096,000,000 B = "4.1 GB");
``format_bytes(n, significant=1)`` gives the book's round figure ("4 GB").

The index overheads follow FAISS's memory layout and are checked against serialized FAISS
indexes in ``tests/test_storage.py``:

- flat (``IndexFlat``): the raw vectors only; a vector's id is its position.
- hnsw (``IndexHNSWFlat``): the vectors plus, per vector, the neighbour lists as int32 ids
  (2*M slots on level 0, M slots on each upper level), its level (int32) and an offset into the
  neighbour array (int64). A vector reaches level >= l with probability (1/M)^l, so on average
  it has 1/(M-1) upper levels and 2*M + M/(M-1) neighbour slots.
- ivfpq (``IndexIVFPQ``): per vector a PQ code of ``pq_m * pq_bits / 8`` bytes and an id of
  ``id_bytes`` bytes in its inverted list; once, the coarse centroids (nlist x dim fp32) and
  the PQ codebooks (pq_m x 2^pq_bits x dim/pq_m fp32).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from tinyir.validate import check_choice, check_positive

BYTES_PER_DIM: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "binary": 1 / 8}
INDEX_TYPES = ("flat", "hnsw", "ivfpq")
UNITS = ("B", "kB", "MB", "GB", "TB", "PB")

HNSW_ID_BYTES = 4  # FAISS stores HNSW neighbours as int32 (storage_idx_t)
HNSW_LEVEL_BYTES = 4  # levels: one int32 per vector
HNSW_OFFSET_BYTES = 8  # offsets: one size_t per vector into the neighbour array
FP32_BYTES = 4  # FAISS keeps centroids and codebooks in fp32


def format_bytes(num_bytes: float, significant: int = 3) -> str:
    """Write a byte count in decimal units with ``significant`` significant figures.

    Trailing zeros are dropped: 4_096_000_000 -> "4.1 GB", 2_048_000_000 -> "2.05 GB",
    800_000_000 -> "800 MB"; with ``significant=1``: "4 GB", "2 GB", "1 GB".
    """
    if num_bytes < 0:
        raise ValueError(f"num_bytes: expected a non-negative number, got {num_bytes!r}")
    if not isinstance(significant, int) or significant < 1:
        raise ValueError(f"significant: expected a positive int, got {significant!r}")
    if num_bytes == 0:
        return "0 B"
    unit_index = min(int(math.log10(num_bytes) // 3), len(UNITS) - 1)
    value = _round_significant(num_bytes / 1000**unit_index, significant)
    if value >= 1000 and unit_index < len(UNITS) - 1:  # 999.6 MB rounds to 1000 MB -> 1 GB
        unit_index += 1
        value = _round_significant(num_bytes / 1000**unit_index, significant)
    decimals = max(0, significant - 1 - math.floor(math.log10(value)))
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {UNITS[unit_index]}"


def _round_significant(value: float, significant: int) -> float:
    return round(value, significant - 1 - math.floor(math.log10(value)))


@dataclass
class StorageCost:
    """The result of ``storage_cost``: the total, its parts, and how it was computed.

    ``breakdown`` has "vectors" (the vectors or their codes) and "index_overhead" (everything
    the index adds); ``overhead_parts`` splits the overhead further. ``bytes`` is their sum.
    """

    bytes: int
    human: str
    breakdown: dict[str, int]
    overhead_parts: dict[str, int]
    inputs: dict[str, object]
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """A JSON-serializable dict with every field."""
        return asdict(self)


def _check_dtype(dtype: str) -> None:
    check_choice("dtype", dtype, BYTES_PER_DIM)


def bytes_per_vector(dim: int, dtype: str = "fp32") -> int:
    """Bytes one ``dim``-dimensional vector takes at ``dtype``, rounded up to whole bytes.

    Binary vectors are packed 8 dimensions per byte, so 1024 dims -> 128 bytes and 100 dims ->
    13 bytes (the last byte is padded, as ``np.packbits`` does).
    """
    check_positive("dim", dim)
    _check_dtype(dtype)
    return math.ceil(dim * BYTES_PER_DIM[dtype])


def hnsw_links_per_vector(hnsw_m: int) -> float:
    """Expected neighbour slots per vector in a FAISS HNSW graph: 2*M + M/(M-1).

    Level 0 holds 2*M neighbours; each upper level holds M. A vector reaches level >= l with
    probability (1/M)^l, so the expected number of upper levels is sum_l (1/M)^l = 1/(M-1).
    """
    check_positive("hnsw_m", hnsw_m)
    if hnsw_m < 2:
        raise ValueError(f"hnsw_m: expected an int >= 2, got {hnsw_m!r}")
    return 2 * hnsw_m + hnsw_m / (hnsw_m - 1)


def storage_cost(
    docs: int,
    dim: int,
    dtype: str = "fp32",
    vectors_per_doc: float = 1,
    index: str = "flat",
    hnsw_m: int = 32,
    pq_m: int | None = None,
    pq_bits: int = 8,
    nlist: int | None = None,
    id_bytes: int = 8,
) -> StorageCost:
    """Bytes needed to store ``docs`` documents of ``vectors_per_doc`` vectors of ``dim`` dims.

    docs: number of documents. dim: dimensions per vector. dtype: one of ``BYTES_PER_DIM``.
    vectors_per_doc: 1 for a single-vector model, the mean token count for ColBERT (may be
    fractional; the vector count is rounded up). index: "flat", "hnsw" or "ivfpq".
    hnsw_m: HNSW's M (neighbours per upper level). pq_m: PQ sub-quantizers (bytes per code at
    8 bits); default ``dim // 16``, must divide ``dim``. pq_bits: bits per sub-quantizer code.
    nlist: IVF lists; default ``round(4 * sqrt(vectors))``, FAISS's rule-of-thumb lower end.
    id_bytes: bytes per id stored in an IVF inverted list (FAISS uses int64).

    Returns a ``StorageCost``; ``storage_cost(1_000_000, 1024).bytes == 4_096_000_000``.
    """
    check_positive("docs", docs)
    check_positive("dim", dim)
    _check_dtype(dtype)
    check_positive("vectors_per_doc", vectors_per_doc, integer=False)
    check_choice("index", index, INDEX_TYPES)
    num_vectors = math.ceil(docs * vectors_per_doc)
    inputs: dict[str, object] = {
        "docs": docs,
        "dim": dim,
        "dtype": dtype,
        "vectors_per_doc": vectors_per_doc,
        "index": index,
    }
    assumptions = [
        "decimal units: 1 kB = 1000 B, 1 MB = 1000 kB, 1 GB = 1000 MB",
        f"{docs:,} docs x {vectors_per_doc:g} vectors/doc = {num_vectors:,} vectors",
    ]
    overhead_parts: dict[str, int] = {}

    if index == "ivfpq":
        # The vectors are replaced by their PQ codes; dtype does not enter.
        pq_m = _default_pq_m(dim) if pq_m is None else pq_m
        check_positive("pq_m", pq_m)
        if dim % pq_m != 0:
            raise ValueError(f"pq_m: expected a divisor of dim={dim}, got {pq_m!r}")
        check_positive("pq_bits", pq_bits)
        check_positive("id_bytes", id_bytes)
        nlist = max(1, round(4 * math.sqrt(num_vectors))) if nlist is None else nlist
        check_positive("nlist", nlist)
        code_bytes = math.ceil(pq_m * pq_bits / 8)
        vector_bytes = num_vectors * code_bytes
        overhead_parts = {
            "ids": num_vectors * id_bytes,
            "coarse_centroids": nlist * dim * FP32_BYTES,
            "pq_codebooks": 2**pq_bits * dim * FP32_BYTES,  # pq_m x 2^bits x (dim / pq_m)
        }
        inputs.update(pq_m=pq_m, pq_bits=pq_bits, nlist=nlist, id_bytes=id_bytes)
        assumptions += [
            f"vectors stored as PQ codes of {pq_m} x {pq_bits} bits = {code_bytes} B "
            f"(dtype {dtype!r} does not matter)",
            f"each vector's id stored in its inverted list: {id_bytes} B",
            f"{nlist} coarse centroids and {pq_m} x {2**pq_bits} PQ centroids, all fp32",
        ]
    else:
        per_vector = bytes_per_vector(dim, dtype)
        vector_bytes = num_vectors * per_vector
        assumptions.append(
            f"{dim} dims x {BYTES_PER_DIM[dtype]:g} B ({dtype}) = {per_vector} B per vector"
        )
        if index == "flat":
            assumptions.append("flat index: raw vectors only, a vector's id is its position")
        else:
            links = hnsw_links_per_vector(hnsw_m)
            overhead_parts = {
                "hnsw_links": math.ceil(num_vectors * links * HNSW_ID_BYTES),
                "hnsw_levels_and_offsets": num_vectors * (HNSW_LEVEL_BYTES + HNSW_OFFSET_BYTES),
            }
            inputs["hnsw_m"] = hnsw_m
            assumptions += [
                f"HNSW M={hnsw_m}: 2*M={2 * hnsw_m} int32 neighbours on level 0 plus M per "
                f"upper level, {links:.2f} slots per vector on average (FAISS IndexHNSWFlat)",
                "per vector also one int32 level and one int64 offset",
            ]

    overhead = sum(overhead_parts.values())
    total = vector_bytes + overhead
    return StorageCost(
        bytes=total,
        human=format_bytes(total),
        breakdown={"vectors": vector_bytes, "index_overhead": overhead},
        overhead_parts=overhead_parts,
        inputs=inputs,
        assumptions=assumptions,
    )


def _default_pq_m(dim: int) -> int:
    if dim % 16 != 0:
        raise ValueError(
            f"pq_m: the default dim // 16 needs dim to be a multiple of 16, got dim={dim}; "
            "pass pq_m explicitly"
        )
    return dim // 16


def storage_table(
    docs: int,
    dim: int,
    dtypes: tuple[str, ...] = ("fp32", "fp16", "int8", "binary"),
    **kwargs: object,
) -> list[dict[str, object]]:
    """One row per dtype: {"dtype", "bytes", "human", "vectors", "index_overhead"}.

    ``kwargs`` go to ``storage_cost`` (vectors_per_doc, index, hnsw_m, ...). Used by the
    notebook's table and the storage widget.
    """
    rows = []
    for dtype in dtypes:
        cost = storage_cost(docs, dim, dtype=dtype, **kwargs)
        rows.append({"dtype": dtype, "bytes": cost.bytes, "human": cost.human, **cost.breakdown})
    return rows


def solve_for(
    target_bytes: float,
    unknown: str,
    docs: float | None = None,
    dim: float | None = None,
    vectors_per_doc: float | None = None,
    bytes_per_dim: float | None = None,
    dtype: str | None = None,
) -> float:
    """Solve ``target_bytes = docs x vectors_per_doc x dim x bytes_per_dim`` for ``unknown``.

    unknown: "docs", "dim", "vectors_per_doc" or "bytes_per_dim"; leave that argument None and
    give the others (``vectors_per_doc`` defaults to 1, ``dtype`` may stand for
    ``bytes_per_dim``). Raw vectors only, no index overhead. Returns the (possibly fractional)
    value, e.g. 80 GB for 1M docs x 200 tokens at fp32 needs dim = 100.
    """
    check_positive("target_bytes", target_bytes, integer=False)
    factors = {
        "docs": docs,
        "dim": dim,
        "vectors_per_doc": vectors_per_doc,
        "bytes_per_dim": bytes_per_dim,
    }
    check_choice("unknown", unknown, factors)
    if dtype is not None:
        _check_dtype(dtype)
        if bytes_per_dim is not None or unknown == "bytes_per_dim":
            raise ValueError(
                "dtype: give either dtype or bytes_per_dim, and not dtype when solving for "
                f"bytes_per_dim; got dtype={dtype!r}, bytes_per_dim={bytes_per_dim!r}"
            )
        factors["bytes_per_dim"] = BYTES_PER_DIM[dtype]
    if factors["vectors_per_doc"] is None and unknown != "vectors_per_doc":
        factors["vectors_per_doc"] = 1
    if factors[unknown] is not None:
        raise ValueError(
            f"{unknown}: it is the unknown, so leave it None; got {factors[unknown]!r}"
        )
    product = 1.0
    for name, value in factors.items():
        if name == unknown:
            continue
        if value is None:
            raise ValueError(f"{name}: needed to solve for {unknown!r}, got None")
        check_positive(name, value, integer=False)
        product *= value
    return target_bytes / product


@dataclass
class RequiredAssumption:
    """What a quoted storage figure implies: see ``required_assumption``."""

    target_bytes: float
    stated_bytes: float
    factor: float
    required_bytes_per_vector: float
    dims_at: dict[str, float]
    explanation: list[str]


def required_assumption(
    target_bytes: float,
    docs: int,
    vectors_per_doc: float = 1,
    stated_bytes_per_vector: float | None = None,
) -> RequiredAssumption:
    """Find the bytes per vector a quoted figure needs, and the dims that gives at each dtype.

    Example: "~80 GB for 1M docs x 200 tokens at 32 bits per token" states 4 B per token, which
    gives 0.8 GB, a factor 100 short; 80 GB needs 400 B per token: 100 dims at fp32, 200 at
    fp16, 400 at int8. ``stated_bytes_per_vector`` is optional; without it ``stated_bytes`` and
    ``factor`` are NaN.
    """
    check_positive("target_bytes", target_bytes, integer=False)
    check_positive("docs", docs)
    check_positive("vectors_per_doc", vectors_per_doc, integer=False)
    num_vectors = docs * vectors_per_doc
    required = target_bytes / num_vectors
    dims_at = {dtype: required / size for dtype, size in BYTES_PER_DIM.items()}
    explanation = [
        f"{format_bytes(target_bytes)} / ({docs:,} docs x {vectors_per_doc:g} vectors/doc) "
        f"= {required:g} B per vector",
        "that is " + ", ".join(f"{dims:g} dims at {dtype}" for dtype, dims in dims_at.items()),
    ]
    stated = factor = math.nan
    if stated_bytes_per_vector is not None:
        check_positive("stated_bytes_per_vector", stated_bytes_per_vector, integer=False)
        stated = num_vectors * stated_bytes_per_vector
        factor = target_bytes / stated
        explanation.insert(
            0,
            f"stated {stated_bytes_per_vector:g} B per vector gives {format_bytes(stated)}, "
            f"a factor {factor:g} from {format_bytes(target_bytes)}",
        )
    return RequiredAssumption(
        target_bytes=target_bytes,
        stated_bytes=stated,
        factor=factor,
        required_bytes_per_vector=required,
        dims_at=dims_at,
        explanation=explanation,
    )
