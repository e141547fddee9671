"""The chapter's numeric claims, each checked: measured by the course, or derived with the
arithmetic shown, and given a verdict.

A verdict is one of

    holds                       the figure is right as stated
    holds only if ...           right under an assumption the claim leaves out (named)
    wrong                       and the right figure is given

Each check is a small function returning a :class:`Claim`; ``ledger(...)`` collects them and
``to_markdown`` renders the table notebook 14 shows. Inputs a lesson measures (tokens per
passage, the reranker's gain) are arguments, so the table is computed from the same numbers the
lessons print; the defaults are the chapter's own sizes. Latency on GPUs the course cannot run
is *derived*: FLOPs per pair at the stated sizes over a stated GPU's throughput, labelled so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyir.quantize import bytes_per_token
from tinyir.storage import format_bytes, required_assumption, storage_cost

HOLDS, ASSUMPTION, WRONG = "holds", "holds only if", "wrong"

# Published throughput used for the derived latencies: NVIDIA A100 SXM, dense fp16/bf16 tensor
# cores, 312 TFLOP/s (NVIDIA A100 datasheet); a transformer forward reaches a fraction of it.
A100_FLOPS = 312e12
UTILIZATION = 0.4


@dataclass(frozen=True)
class Claim:
    claim: str          # as the chapter states it
    where: str          # the notebook that teaches it
    kind: str           # "measured", "derived" or "published" (figures read from a source)
    found: str          # what the course measured or derived, with the arithmetic
    verdict: str        # HOLDS, ASSUMPTION or WRONG
    right: str = ""     # the condition (ASSUMPTION) or the right figure (WRONG)

    def as_dict(self) -> dict:
        return asdict(self)


def forward_flops(params_non_embedding: float, tokens: int, layers: int, hidden: int) -> float:
    """FLOPs of one encoder forward pass: 2 per weight per token for the matmuls, plus
    attention's two (T x T x C) products per layer (QK^T and AV)."""
    return 2 * params_non_embedding * tokens + 4 * layers * tokens**2 * hidden


def storage_claim() -> Claim:
    """"200 GB vs 800 GB for 100M documents at 1024 vs 4096 dimensions"."""
    sizes = {(d, t): storage_cost(100_000_000, d, dtype=t).bytes / 1e9
             for d in (1024, 4096) for t in ("fp16", "fp32")}
    found = (f"100M x 1024 dims: {sizes[1024, 'fp16']:.0f} GB at fp16, {sizes[1024, 'fp32']:.0f} GB"
             f" at fp32; x 4096: {sizes[4096, 'fp16']:.0f} GB / {sizes[4096, 'fp32']:.0f} GB")
    return Claim("200 GB vs 800 GB for 100M documents at 1024 vs 4096 dims", "12", "derived",
                 found, ASSUMPTION, "the vectors are stored at fp16 (2 bytes per dimension); "
                 "at fp32 it is 410 GB vs 1.6 TB")


def colbert_bits_claim(dim: int = 128) -> Claim:
    """"~32 bits per token after ColBERTv2 compression"."""
    two, one = bytes_per_token(dim, 2), bytes_per_token(dim, 1)
    found = (f"{dim} dims x 2 bits = {dim * 2 // 8} bytes of residual + a 4-byte centroid id = "
             f"{two} bytes ({8 * two} bits); at 1 bit {one} bytes ({8 * one} bits); fp16: "
             f"{2 * dim} bytes")
    return Claim("~32 bits per token after ColBERTv2 compression", "11", "derived", found, WRONG,
                 f"about {one}-{two} bytes ({8 * one}-{8 * two} bits) per token: 32 is the "
                 f"residual's bytes at 2 bits, not bits")


def colbert_storage_claim(tokens_per_passage: float = 100.0, colbert_dim: int = 128,
                          single_dim: int = 768) -> Claim:
    """"ColBERT needs 100x-500x more storage" (than one vector per passage)."""
    same_width = tokens_per_passage
    narrow = tokens_per_passage * colbert_dim / single_dim
    compressed = tokens_per_passage * bytes_per_token(colbert_dim, 2) / (2 * single_dim)
    found = (f"{tokens_per_passage:.0f} stored tokens per passage, both at fp16: {same_width:.0f}x "
             f"at the same width, {narrow:.0f}x with {colbert_dim}-d tokens vs a {single_dim}-d "
             f"vector, {compressed:.1f}x after 2-bit residual compression")
    return Claim("ColBERT needs 100x-500x more storage", "11", "measured", found, ASSUMPTION,
                 "token vectors as wide as the single vector and passages of 100-500 tokens; "
                 f"at ColBERT's {colbert_dim} dims it is tokens x {colbert_dim}/{single_dim}")


def gpu_latency_claim(tokens: int = 512) -> Claim:
    """"5-50 ms per pair on a GPU, so 0.5-5 s per top-100 query sequentially" (derived)."""
    models = {  # non-embedding parameters, layers, hidden size
        "MiniLM-L6 (22M)": (10.6e6, 6, 384),
        "BERT-large size (335M; bge-reranker-large's encoder is this size)": (302e6, 24, 1024),
    }
    parts, ms = [], {}
    for name, (params, layers, hidden) in models.items():
        flops = forward_flops(params, tokens, layers, hidden)
        ms[name] = 1000 * flops / (A100_FLOPS * UTILIZATION)
        parts.append(f"{name}: {flops / 1e9:.0f} GFLOPs per {tokens}-token pair = "
                     f"{ms[name]:.2f} ms on an A100 at {UTILIZATION:.0%} of 312 TFLOP/s")
    large, small = ms[list(models)[1]], ms[list(models)[0]]
    return Claim("5-50 ms per pair on a GPU, so 0.5-5 s per top-100 query sequentially", "10",
                 "derived", "; ".join(parts), ASSUMPTION,
                 f"a large reranker runs one pair at a time, at a few percent of the GPU's "
                 f"throughput; batched, a top-100 query takes about {100 * large / 1000:.2f} s "
                 f"for the large model and {100 * small:.0f} ms for MiniLM")


def in_batch_negatives_claim(batch: int = 1024, hard: int = 0) -> Claim:
    """"A batch of 1024 gives 1023 negatives"."""
    per_query = batch * (1 + hard) - 1
    found = (f"each query is scored against the batch's {batch} positives (its own + {batch - 1} "
             f"others); with K hard negatives per pair, {batch} x (1 + K) - 1 candidates "
             f"(K = 1: {batch * 2 - 1})")
    verdict = HOLDS if hard == 0 else ASSUMPTION
    return Claim("a batch of 1024 gives 1023 negatives", "03", "derived", found, verdict,
                 "" if hard == 0 else f"no hard negatives; with {hard} there are {per_query}")


def masking_claim(rate: float | None = None) -> Claim:
    """"Mask 15%" (BERT's masked-language-model rate)."""
    import inspect

    from tinyir.mlm import mask_tokens

    if rate is None:  # the course's pre-training default, read from the code
        rate = inspect.signature(mask_tokens).parameters["prob"].default
    return Claim("mask 15% of tokens", "01", "derived",
                 f"tinyir.mlm masks {rate:.0%} of tokens (of those 80% [MASK], 10% random, 10% "
                 f"kept), BERT's recipe", HOLDS if abs(rate - 0.15) < 1e-9 else WRONG)


def eighty_gb_claim() -> Claim:
    """"1M documents of ~200 tokens at 32 bits per token take ~80 GB" (lesson 12's check)."""
    need = required_assumption(80e9, 1_000_000, vectors_per_doc=200, stated_bytes_per_vector=4)
    found = (f"1M x 200 tokens x 4 B (32 bits) = {format_bytes(need.stated_bytes)}, a factor "
             f"{need.factor:g} short; 80 GB needs {need.required_bytes_per_vector:g} B per token")
    return Claim("~80 GB for 1M documents of ~200 tokens at 32 bits per token", "12", "derived",
                 found, ASSUMPTION, f"\"32 bits\" is per dimension of a "
                 f"{need.dims_at['fp32']:g}-dim fp32 vector per token (or "
                 f"{need.dims_at['fp16']:g} dims at fp16), not per token")


def mteb_top_claim() -> Claim:
    """"Top MTEB scores are around 70", against the published figures of
    :mod:`tinyir.course.leaderboard`."""
    from tinyir.course import leaderboard

    model, score, _ = leaderboard.top_average()
    best_retrieval = leaderboard.top("retrieval")
    found = (f"top {leaderboard.BENCHMARK} average in the course's table: {model} {score:.2f}; "
             f"top retrieval column: {best_retrieval.model} {best_retrieval.retrieval:.2f}")
    return Claim("top MTEB scores are around 70", "08", "published", found, ASSUMPTION,
                 f"it is the {leaderboard.BENCHMARK} average over 56 English datasets (as of "
                 f"2024); the retrieval column tops out near {best_retrieval.retrieval:.0f}, and "
                 f"MTEB(eng, v2) is another scale")


def cross_encoder_cost_claim(ratio: float, candidates: int) -> Claim:
    """"Cross-encoders are 100x slower per pair", from a measured ratio: the cross-encoder's
    time per candidate over the bi-encoder's at query time, when one query embedding and a dot
    product per candidate serve ``candidates`` candidates."""
    check = ratio >= 100
    return Claim("cross-encoders are 100x slower per pair", "10, 14", "measured",
                 f"{ratio:,.0f}x per candidate at query time on this CPU, {candidates:,} "
                 f"candidates sharing one query embedding", ASSUMPTION,
                 "the ratio compares a transformer pass per pair with a dot product per pair "
                 "plus one shared query pass, so it grows with the candidates scored per query "
                 f"({'above' if check else 'below'} 100x here); counting the bi-encoder's "
                 "offline passage encoding, a pair costs about the same in both")


def reranker_claims(first_stage: float, reranked: float, low: float, high: float,
                    stage: str = "dense") -> Claim:
    """"Cross-encoders are 5x-10x more accurate at the top", from a measured paired interval."""
    found = (f"on the pydocs test split, {stage} nDCG@10 {first_stage:.3f} -> {reranked:.3f} "
             f"reranked: {reranked - first_stage:+.3f} [{low:+.3f}, {high:+.3f}] (paired "
             f"bootstrap), a factor of {reranked / first_stage:.2f}")
    return Claim("cross-encoders are 5x-10x more accurate at the top", "14", "measured", found,
                 WRONG, "gains are points of nDCG@10, here the interval above; no metric "
                        "bounded by 1 can grow 5x from a first stage that already ranks well")


def ledger(**measured) -> list[Claim]:
    """Every check; ``measured`` passes the lessons' numbers (``tokens_per_passage``,
    ``cross_encoder_cost=(ratio, candidates)``, ``reranker=(first_stage, reranked, low, high)``)
    where a claim needs them."""
    rows = [storage_claim(), colbert_bits_claim(),
            colbert_storage_claim(measured.get("tokens_per_passage", 100.0)),
            eighty_gb_claim(), gpu_latency_claim(), in_batch_negatives_claim(), masking_claim(),
            mteb_top_claim()]
    if "cross_encoder_cost" in measured:
        rows.append(cross_encoder_cost_claim(*measured["cross_encoder_cost"]))
    if "reranker" in measured:
        rows.append(reranker_claims(*measured["reranker"]))
    return rows


def to_markdown(rows: list[Claim]) -> str:
    lines = ["| claim | where | kind | what the course finds | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        verdict = r.verdict + (f": {r.right}" if r.right else "")
        lines.append(f"| {r.claim} | {r.where} | {r.kind} | {r.found} | {verdict} |")
    return "\n".join(lines)
