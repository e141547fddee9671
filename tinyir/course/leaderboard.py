"""Published MTEB figures as data, each with its source, and what a lesson computes from them.

Every score here belongs to one leaderboard: **MTEB(eng, v1)**, the "classic" English benchmark of
56 datasets in 7 task categories (the leaderboard now calls it "English Legacy"). Its average is
the mean over the 56 *datasets*, so a category weighs by its number of datasets (retrieval 15/56).
The leaderboard was later revised to MTEB(eng, v2), a different set of 41 tasks: its scores are on
another scale, so a v1 figure and a v2 figure are never compared here.

Sources (read through the course's search tools; none is fetched at run time):

- the eight categories and their main metrics: the MTEB leaderboard's task configuration
  (huggingface.co/spaces/mteb/leaderboard, config.yaml) and the MTEB paper (Muennighoff et al.,
  2022, arXiv 2210.07316); datasets per category in v1: the BGE model card's column headers
  "Average (56) | Retrieval (15) | Clustering (11) | Pair Classification (3) | Reranking (4) |
  STS (10) | Summarization (1) | Classification (12)";
- the models' rows: the source named in each row.

Parameter counts of the BERT-architecture models are *derived* (``bert_parameters``) from their
shape, stated in the row, and checked against a real checkpoint (all-MiniLM-L6-v2, which the course
loads) in ``tests/test_leaderboard.py``. They count what the embedding uses; the checkpoints also
ship BERT's pooler layer (hidden^2 + hidden more), which is why cards quote 22.7M, 33.4M, 109M and
335M. Where a source gives no figure (OpenAI does not publish sizes), the field is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean

from tinyir.storage import storage_cost
from tinyir.validate import check_choice, check_positive

BENCHMARK = "MTEB(eng, v1)"  # 56 English datasets; not comparable with MTEB(eng, v2) (41 tasks)
BENCHMARK_SOURCE = ("mteb/benchmarks/benchmarks.py (embeddings-benchmark/mteb): MTEB(eng, v1), "
                    "alias 'MTEB(eng, classic)', display name 'English Legacy'; its successor "
                    "MTEB(eng, v2) is a different set of tasks")


@dataclass(frozen=True)
class Category:
    name: str
    measures: str          # what the task asks of the embeddings
    metric: str            # the category's main score, as the leaderboard reports it
    datasets: int          # datasets of this category in MTEB(eng, v1)


CATEGORIES: tuple[Category, ...] = (
    Category("classification", "a logistic regression (100 iterations max) trained on the train "
             "split's embeddings labels the test split", "accuracy", 12),
    Category("clustering", "k-means on the embeddings; do the clusters match the gold labels?",
             "V-measure", 11),
    Category("pair classification", "are two texts duplicates/paraphrases? thresholding their "
             "similarity", "average precision of the cosine similarity", 3),
    Category("reranking", "order a query's given candidates (relevant and not) by cosine",
             "MAP", 4),
    Category("retrieval", "find a query's relevant documents in a whole corpus (BEIR datasets)",
             "nDCG@10", 15),
    Category("STS", "score sentence pairs; compare with human similarity grades",
             "Spearman correlation of the cosine similarities", 10),
    Category("summarization", "score machine summaries by similarity to human ones; compare with "
             "human grades", "Spearman correlation of the cosine similarities", 1),
    Category("bitext mining", "find each sentence's translation in another language",
             "F1", 0),  # multilingual only: no bitext dataset in the English benchmark
)
CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)


def bert_parameters(layers: int, hidden: int, intermediate: int, vocab: int = 30522,
                    positions: int = 512, token_types: int = 2, pooler: bool = False) -> int:
    """Parameters of a BERT encoder: embeddings (+ LayerNorm), ``layers`` x (attention, FFN, two
    LayerNorms), and BERT's pooler (a hidden x hidden dense layer) when ``pooler``.

    >>> bert_parameters(6, 384, 1536)                 # all-MiniLM-L6-v2, as the course loads it
    22565376
    >>> bert_parameters(12, 768, 3072, pooler=True)   # BERT-base, the checkpoint's 109M
    109482240
    """
    for name, value in (("layers", layers), ("hidden", hidden), ("intermediate", intermediate),
                        ("vocab", vocab), ("positions", positions), ("token_types", token_types)):
        check_positive(name, value)
    embeddings = (vocab + positions + token_types) * hidden + 2 * hidden
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden
    ffn = hidden * intermediate + intermediate + intermediate * hidden + hidden + 2 * hidden
    return embeddings + layers * (attention + ffn) + (hidden * hidden + hidden if pooler else 0)


@dataclass(frozen=True)
class Published:
    """One model's row: MTEB(eng, v1) scores on the 0-100 scale the leaderboard prints."""

    model: str
    average: float                 # mean over the 56 datasets
    retrieval: float | None        # mean nDCG@10 over the 15 retrieval datasets (None: not given)
    dim: int                       # embedding dimension
    params: int | None             # parameters (None: not published)
    year: int                      # when the figure was published
    source: str
    categories: dict[str, float] = field(default_factory=dict)  # per-category means, if given


_BGE_CARD = ("BAAI/bge-large-en-v1.5 model card (Hugging Face; also FlagEmbedding's README), "
             "MTEB table 'Average (56) | Retrieval (15) | ...'")
_BERT_NOTE = "params derived: bert_parameters({}), no pooler"


def _bge_row(model: str, dim: int, shape: tuple[int, int, int] | None, scores: tuple[float, ...],
             year: int = 2023) -> Published:
    """A row of the BGE card's table: dim, then Average, Retrieval, Clustering, Pair
    Classification, Reranking, STS, Summarization, Classification, in the card's order."""
    average, retrieval, clu, pair, rerank, sts, summ, cls = scores
    categories = {"retrieval": retrieval, "clustering": clu, "pair classification": pair,
                  "reranking": rerank, "STS": sts, "summarization": summ, "classification": cls}
    params = bert_parameters(*shape) if shape else None
    source = _BGE_CARD + (f"; {_BERT_NOTE.format(', '.join(map(str, shape)))}" if shape else "")
    return Published(model, average, retrieval, dim, params, year, source, categories)


_ROWS: tuple[Published, ...] = (
    Published("all-MiniLM-L6-v2", 56.26, 41.95, 384, bert_parameters(6, 384, 1536), 2022,
              "MTEB leaderboard (huggingface.co/spaces/mteb/leaderboard), MTEB(eng, v1) tab; "
              + _BERT_NOTE.format("6, 384, 1536") + ", equal to the weights the course loads"),
    _bge_row("bge-small-en-v1.5", 384, (12, 384, 1536),
             (62.17, 51.68, 43.82, 84.92, 58.36, 81.59, 30.12, 74.14)),
    _bge_row("bge-base-en-v1.5", 768, (12, 768, 3072),
             (63.55, 53.25, 45.77, 86.55, 58.86, 82.4, 31.07, 75.53)),
    _bge_row("bge-large-en-v1.5", 1024, (24, 1024, 4096),
             (64.23, 54.29, 46.08, 87.12, 60.03, 83.11, 31.61, 75.97)),
    _bge_row("e5-large-v2", 1024, (24, 1024, 4096),
             (62.25, 50.56, 44.49, 86.03, 56.61, 82.05, 30.19, 75.24)),
    _bge_row("text-embedding-ada-002", 1536, None,
             (60.99, 49.25, 45.9, 84.89, 56.32, 80.97, 30.8, 70.93)),
    Published("text-embedding-3-small", 62.3, None, 1536, None, 2024,
              "OpenAI, 'New embedding models and API updates' (2024-01-25): MTEB average 62.3% "
              "(ada-002: 61.0%); default dimension 1536; no retrieval column, no size"),
    Published("text-embedding-3-large", 64.6, None, 3072, None, 2024,
              "OpenAI, 'New embedding models and API updates' (2024-01-25): MTEB average 64.6%; "
              "dimension 3072; no retrieval column, no size"),
    Published("NV-Embed-v1", 69.32, 59.36, 4096, 7_100_000_000, 2024,
              "NV-Embed paper (Lee et al., arXiv 2405.17428), abstract: 69.32 on the 56 tasks, "
              "59.36 on the 15 retrieval tasks (No. 1 as of 2024-05-24); NVIDIA API model card: "
              "dimension 4096, 7.1 billion parameters"),
    Published("NV-Embed-v2", 72.31, 62.65, 4096, 7_850_000_000, 2024,
              "nvidia/NV-Embed-v2 model card (Hugging Face): 72.31 across 56 tasks, 62.65 on the "
              "15 retrieval tasks (No. 1 as of 2024-08-30), embedding dimension 4096; 7.85B "
              "parameters per the Hugging Face model page"),
)

COLUMNS = ("average", "retrieval", "dim", "params")


def published() -> list[Published]:
    """The table, one row per model, in no particular order (a new list each call)."""
    return list(_ROWS)


def _rows(rows: list[Published] | None) -> list[Published]:
    rows = published() if rows is None else list(rows)
    if not rows:
        raise ValueError("rows: expected at least one Published row, got an empty table")
    return rows


def ranking(by: str, rows: list[Published] | None = None) -> list[str]:
    """Model names, best first, by the column ``by`` ("average", "retrieval", "dim", "params").
    Rows without that column (``None``) are left out. Ties keep the table's order."""
    check_choice("by", by, COLUMNS)
    rows = _rows(rows)
    have = [r for r in rows if getattr(r, by) is not None]
    return [r.model for r in sorted(have, key=lambda r: -getattr(r, by))]


@dataclass(frozen=True)
class RankComparison:
    """Two rankings of the same models (those with both columns)."""

    by_a: str
    by_b: str
    rank_a: dict[str, int]         # model -> rank by by_a (1 = best)
    rank_b: dict[str, int]
    spearman: float                # rank correlation of the two orders (1 = identical)
    left_out: list[str]            # models missing a column

    @property
    def moved(self) -> list[str]:
        """The models whose rank differs, in by_a's order."""
        return [m for m in sorted(self.rank_a, key=self.rank_a.get)
                if self.rank_a[m] != self.rank_b[m]]


def compare_rankings(by_a: str = "average", by_b: str = "retrieval",
                     rows: list[Published] | None = None) -> RankComparison:
    """Rank the models that have both columns by each; Spearman's rho of the two orders,
    1 - 6 sum(d^2) / (n (n^2 - 1)) with d the rank differences (ties broken by table order).

    Needs at least two models with both columns.
    """
    check_choice("by_a", by_a, COLUMNS)
    check_choice("by_b", by_b, COLUMNS)
    rows = _rows(rows)
    both = [r for r in rows if getattr(r, by_a) is not None and getattr(r, by_b) is not None]
    if len(both) < 2:
        raise ValueError(f"rows: need at least two models with both {by_a!r} and {by_b!r}, "
                         f"got {len(both)}")
    rank_a = {m: i for i, m in enumerate(ranking(by_a, both), start=1)}
    rank_b = {m: i for i, m in enumerate(ranking(by_b, both), start=1)}
    n = len(both)
    d2 = sum((rank_a[m] - rank_b[m]) ** 2 for m in rank_a)
    left_out = [r.model for r in rows if r not in both]
    return RankComparison(by_a, by_b, rank_a, rank_b, 1 - 6 * d2 / (n * (n * n - 1)), left_out)


def top(by: str = "average", rows: list[Published] | None = None) -> Published:
    """The row with the highest ``by`` (rows without it are left out)."""
    check_choice("by", by, COLUMNS)
    rows = _rows(rows)
    best = ranking(by, rows)
    if not best:
        raise ValueError(f"rows: no row has a {by!r} figure")
    return next(r for r in rows if r.model == best[0])


def top_average(rows: list[Published] | None = None) -> tuple[str, float, str]:
    """(model, MTEB(eng, v1) average, source) of the best average: the figure behind "top MTEB
    scores are around 70"."""
    row = top("average", rows)
    return row.model, row.average, row.source


def dataset_weighted_average(category_scores: dict[str, float]) -> float:
    """The leaderboard's average from per-category means: each category weighs by its number of
    datasets in MTEB(eng, v1) (sum n_c * s_c / sum n_c), not 1/7 each.

    category_scores: {category name: mean score}; must cover the 7 English categories.
    """
    english = [c for c in CATEGORIES if c.datasets > 0]
    for name in category_scores:
        check_choice("category_scores key", name, CATEGORY_NAMES)
    missing = [c.name for c in english if c.name not in category_scores]
    if missing:
        raise ValueError(f"category_scores: missing {missing}; the average needs all of "
                         f"{[c.name for c in english]}")
    total = sum(c.datasets for c in english)
    return sum(c.datasets * category_scores[c.name] for c in english) / total


def unweighted_category_mean(category_scores: dict[str, float]) -> float:
    """The mean of the category means, 1/7 each: what the leaderboard's average is *not*."""
    if not category_scores:
        raise ValueError("category_scores: expected at least one category, got none")
    return fmean(category_scores.values())


def bytes_per_million(row: Published, dtype: str = "fp32") -> int:
    """Bytes of the raw vectors of 1M documents at ``row.dim`` dimensions (``tinyir.storage``)."""
    return storage_cost(1_000_000, row.dim, dtype).bytes


# ------------------------------------------------------------------------------------------------
# Cross-encoder rerankers named in the chapter, with the figures their documentation publishes.

@dataclass(frozen=True)
class PublishedReranker:
    model: str
    ndcg10_trec_dl19: float        # nDCG@10 on TREC Deep Learning 2019 (passage)
    mrr10_msmarco_dev: float       # MRR@10 on MS MARCO passage dev
    layers: int
    source: str


_ST_TABLE = ("sentence-transformers documentation, pretrained cross-encoders table (also the "
             "model card): 'NDCG@10 (TREC DL 19) | MRR@10 (MS Marco Dev)'")
RERANKERS: tuple[PublishedReranker, ...] = (
    PublishedReranker("cross-encoder/ms-marco-MiniLM-L-6-v2", 74.30, 39.01, 6, _ST_TABLE),
    PublishedReranker("cross-encoder/ms-marco-MiniLM-L-12-v2", 74.31, 39.02, 12, _ST_TABLE),
)


def published_rerankers() -> list[PublishedReranker]:
    """The rerankers' published figures (a new list each call)."""
    return list(RERANKERS)
