"""Training sweeps on the tiny bi-encoder: one setting changes, the budget stays the same.

Notebooks 04 (temperature), 06 (pooling) and 07 (Matryoshka) each train several tiny models that
differ in one setting and compare them on the Part I validation subset. They share this helper so
every run of a sweep gets exactly the same data, steps, learning rate and seed:

    budget = SweepBudget(n_pairs=2560)
    runs = [train_tiny(f"tau={t}", temperature=t, budget=budget) for t in (0.01, 0.05, 1.0)]
    runs[0].metrics["recall@10"], runs[0].history.losses

:func:`train_tiny` builds a fresh :func:`tinyir.course.models.tiny_biencoder` (same seed, so the
same initial weights for every setting), trains it with :func:`tinyir.train.train_biencoder` on the
budget's training pairs and evaluates it once at the end. :func:`softmax_stats` measures how sharp
a softmax over candidates is, which is what temperature changes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch

from tinyir.beir import BeirDataset, training_pairs
from tinyir.biencoder import BiEncoder
from tinyir.evaluate import dense_run
from tinyir.metrics import mean_metrics, per_query
from tinyir.pydocs import PYDOCS_DIR
from tinyir.train import TrainConfig, TrainHistory, train_biencoder


@dataclass(frozen=True)
class SweepBudget:
    """What every run of a sweep shares: data, optimisation and evaluation settings.

    One epoch over ``n_pairs`` pairs at ``batch_size`` is ``n_pairs // batch_size`` steps
    (about 0.2 s each for the tiny model on a 2-core CPU at the defaults).
    """

    n_pairs: int = 2560            # (query, passage) pairs drawn (seeded) from the train split
    epochs: int = 1
    batch_size: int = 64           # each query scores 64 passages: 1 positive, 63 negatives
    lr: float = 1e-3               # a from-scratch tiny model takes a large learning rate
    max_length_query: int = 32
    max_length_doc: int = 64
    eval_max_length: int = 64      # queries and passages are cut to this at evaluation
    warmup_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_pairs", "epochs", "batch_size", "max_length_query", "max_length_doc",
                     "eval_max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a number > 0, got {self.lr!r}")

    @property
    def steps(self) -> int:
        """Optimizer steps per run (batches never repeat a text, so a few may be short)."""
        return self.epochs * math.ceil(self.n_pairs / self.batch_size)

    def train_config(self, temperature: float = 0.05,
                     matryoshka_dims: tuple[int, ...] | None = None) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, temperature=temperature,
            matryoshka_dims=matryoshka_dims, max_length_query=self.max_length_query,
            max_length_doc=self.max_length_doc, warmup_ratio=self.warmup_ratio, seed=self.seed,
        )


@dataclass
class SweepRun:
    """One trained model of a sweep: its label, settings, history and final metrics."""

    label: str
    settings: dict
    model: BiEncoder
    history: TrainHistory
    metrics: dict[str, float] = field(default_factory=dict)
    # {metric: {query_id: value}} on the evaluation queries, for paired comparisons of runs
    by_query: dict[str, dict[str, float]] = field(default_factory=dict)

    def row(self) -> dict:
        """A flat dict for a results table: label, settings, metrics, seconds."""
        return {"label": self.label, **self.settings, **self.metrics,
                "seconds": round(self.history.seconds, 1)}


def sweep_examples(budget: SweepBudget) -> list[tuple[str, str]]:
    """The budget's training pairs: ``n_pairs`` drawn with ``budget.seed`` from the train split."""
    pairs = training_pairs(PYDOCS_DIR, "train")
    if budget.n_pairs > len(pairs):
        raise ValueError(f"budget.n_pairs: expected at most {len(pairs)}, got {budget.n_pairs}")
    return random.Random(budget.seed).sample(pairs, budget.n_pairs)


def train_tiny(
    label: str,
    *,
    pooling: str = "mean",
    causal: bool = False,
    temperature: float = 0.05,
    matryoshka_dims: tuple[int, ...] | None = None,
    budget: SweepBudget | None = None,
    dataset: BeirDataset | None = None,
    examples: list[tuple[str, str]] | None = None,
    progress: bool = True,
) -> SweepRun:
    """Train a fresh tiny bi-encoder with one setting changed; evaluate it once at the end.

    pooling, causal: the encoder (see :func:`tinyir.course.models.tiny_biencoder`).
    temperature, matryoshka_dims: the loss (see :class:`tinyir.train.TrainConfig`).
    dataset: where to evaluate (default :func:`tinyir.course.models.validation_subset`).
    examples: training pairs (default :func:`sweep_examples` of the budget); pass them in to
        skip re-reading the split on every run.
    Returns a :class:`SweepRun` whose ``metrics`` hold recall@10, ndcg@10 and mrr@10, and
    ``by_query`` the same metrics per evaluation query (for ``tinyir.metrics.paired_bootstrap``).
    """
    from tinyir.course.models import tiny_biencoder, validation_subset

    budget = budget or SweepBudget()
    dataset = dataset if dataset is not None else validation_subset()
    examples = examples if examples is not None else sweep_examples(budget)
    max_length = max(budget.max_length_query, budget.max_length_doc, budget.eval_max_length)
    model = tiny_biencoder(pooling=pooling, causal=causal, seed=budget.seed,
                           max_length=max_length)
    config = budget.train_config(temperature=temperature, matryoshka_dims=matryoshka_dims)
    history = train_biencoder(model, examples, config, eval_before=False, progress=progress)
    run = dense_run(model, dataset, 10, max_length=budget.eval_max_length)
    names = ("recall@10", "ndcg@10", "mrr@10")
    metrics = mean_metrics(run, dataset.qrels, k_values=(10,))
    settings = {"pooling": pooling, "causal": causal, "temperature": temperature,
                "matryoshka_dims": matryoshka_dims}
    return SweepRun(label, settings, model, history, {k: metrics[k] for k in names},
                    {k: per_query(run, dataset.qrels, k) for k in names})


def softmax_stats(scores: torch.Tensor, positive: torch.Tensor, temperature: float) -> dict:
    """How sharp ``softmax(scores / temperature)`` over each row's candidates is.

    scores: (B, N) similarities, one row per query. positive: (B,) the column of each row's
    positive. For softmax cross-entropy the gradient on logit j is ``p_j - y_j``, so the
    negatives' share of the push is their probability mass.
    Returns means over the B rows of:
        entropy            of the softmax, in nats (log N when uniform)
        p_positive         probability of the positive
        hardest_share      p(hardest negative) / sum of the negatives' p: the fraction of the
                           gradient on the negatives that goes to the single hardest one
                           (1 / (N - 1) when spread evenly, 1 when all on it)
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError(f"scores: expected a (B, N) tensor, got {getattr(scores, 'shape', scores)}")
    B, N = scores.shape
    if N < 2:
        raise ValueError(f"scores: expected at least 2 candidates per row, got N={N}")
    if not isinstance(positive, torch.Tensor) or positive.shape != (B,):
        raise ValueError(f"positive: expected a (B,) = ({B},) tensor of column indices, "
                         f"got {getattr(positive, 'shape', positive)}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    logits = scores.double() / temperature
    p = logits.softmax(dim=-1)  # (B, N)
    entropy = -(p * logits.log_softmax(dim=-1)).sum(-1)  # (B,)
    rows = torch.arange(B)
    is_negative = torch.ones_like(p, dtype=torch.bool)
    is_negative[rows, positive] = False
    negative_scores = scores.double().masked_fill(~is_negative, -math.inf)
    hardest = negative_scores.argmax(dim=-1)  # (B,) column of the highest-scoring negative
    negative_mass = (p * is_negative).sum(-1).clamp(min=1e-300)
    return {
        "entropy": entropy.mean().item(),
        "p_positive": p[rows, positive].mean().item(),
        "hardest_share": (p[rows, hardest] / negative_mass).mean().item(),
    }

