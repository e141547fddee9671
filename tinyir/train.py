"""Small training loops for bi-encoders: contrastive fine-tuning that fits a laptop CPU.

    history = train_biencoder(model, examples, TrainConfig(epochs=2, batch_size=32),
                              eval_fn=lambda m: evaluate_model(m, dev_subset))

``examples`` are (query, positive) pairs, or (query, positive, [negatives...]) triples with the
same number of hard negatives each. Each step embeds a batch of B queries and B positives (plus
B*K negatives) and takes one optimizer step on the loss chosen in ``TrainConfig``:

- "infonce": :func:`tinyir.losses.info_nce`: every other positive in the batch is a negative.
- "triplet": :func:`tinyir.losses.triplet_loss` on (query, positive, first negative).

With ``matryoshka_dims`` the loss is summed over truncated prefixes of the embedding
(:func:`tinyir.losses.matryoshka_loss`).

Batches never hold the same query or the same passage twice (like sentence-transformers'
``NoDuplicatesBatchSampler``): a duplicate would be a false negative of itself.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from tinyir.device import seed_everything
from tinyir.losses import info_nce, matryoshka_loss, triplet_loss

LOSSES = ("infonce", "triplet")


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 2e-5
    temperature: float = 0.05          # sentence-transformers' scale=20
    loss: str = "infonce"              # "infonce" or "triplet"
    symmetric: bool = False            # also the passage -> query direction (InfoNCE only)
    triplet_margin: float = 0.5        # on euclidean distance between unit vectors (<= 2)
    matryoshka_dims: tuple[int, ...] | None = None
    max_length_query: int = 64
    max_length_doc: int = 128
    warmup_ratio: float = 0.1          # linear warm-up over this fraction of the steps
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "max_length_query", "max_length_doc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {self.temperature!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a number > 0, got {self.lr!r}")


@dataclass
class TrainHistory:
    """What happened: the loss of every step and the metrics of every evaluation."""

    losses: list[float] = field(default_factory=list)    # one per step
    evals: list[dict] = field(default_factory=list)      # {"epoch": e, metric: value, ...}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _as_example(item, index: int) -> tuple[str, str, tuple[str, ...]]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(
            f"examples[{index}]: expected (query, positive) or (query, positive, negatives), "
            f"got {item!r:.80}"
        )
    query, positive = item[0], item[1]
    negatives = tuple(item[2]) if len(item) == 3 else ()
    if not all(isinstance(t, str) for t in (query, positive, *negatives)):
        raise TypeError(f"examples[{index}]: expected strings, got {item!r:.80}")
    return query, positive, negatives


def make_batches(
    examples: Sequence[tuple[str, str, tuple[str, ...]]], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, then fill batches greedily so that no batch repeats a query or a passage.

    Returns lists of indices into ``examples``; an example that clashes with the batch being
    filled waits for the next one. Every example lands in exactly one batch.
    """
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    waiting = order
    while waiting:
        batch, seen, rest = [], set(), []
        for i in waiting:
            query, positive, negatives = examples[i]
            texts = {query, positive, *negatives}
            if len(batch) < batch_size and not texts & seen:
                batch.append(i)
                seen |= texts
            else:
                rest.append(i)
        batches.append(batch)
        waiting = rest
    return batches


def warmup_linear_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to zero."""
    warmup = max(1, int(warmup_ratio * total_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def train_biencoder(
    model,
    examples: Sequence,
    config: TrainConfig | None = None,
    *,
    eval_fn: Callable[[object], dict] | None = None,
    eval_before: bool = True,
    progress: bool = True,
) -> TrainHistory:
    """Fine-tune a :class:`tinyir.biencoder.BiEncoder` in place; returns the history.

    eval_fn(model) -> {metric: value} runs before training (``eval_before``) and after each
    epoch, with the model in eval mode. The model is left in eval mode.
    """
    config = config or TrainConfig()
    if len(examples) == 0:
        raise ValueError("examples: expected at least one (query, positive) pair, got none")
    data = [_as_example(item, i) for i, item in enumerate(examples)]
    n_negatives = {len(negs) for _, _, negs in data}
    if len(n_negatives) > 1:
        raise ValueError(
            f"examples: every example needs the same number of negatives, got counts {sorted(n_negatives)}"
        )
    K = n_negatives.pop()
    if config.loss == "triplet" and K == 0:
        raise ValueError("examples: loss='triplet' needs (query, positive, [negative, ...]) triples")

    seed_everything(config.seed)
    rng = random.Random(config.seed)
    epoch_batches = [make_batches(data, config.batch_size, rng) for _ in range(config.epochs)]
    if K == 0:  # a lone pair has no in-batch negative: its loss is 0 and its step is wasted
        epoch_batches = [[b for b in batches if len(b) > 1] for batches in epoch_batches]
    total_steps = sum(len(b) for b in epoch_batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = warmup_linear_schedule(optimizer, total_steps, config.warmup_ratio)
    history = TrainHistory()
    start = time.perf_counter()

    def evaluate(epoch: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            metrics = dict(eval_fn(model))
        history.evals.append({"epoch": epoch, **metrics})
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"epoch {epoch}: {shown}", file=sys.stderr)

    if eval_before:
        evaluate(0)
    bar = tqdm(total=total_steps, desc="train", unit="step", file=sys.stderr, disable=not progress)
    for epoch, batches in enumerate(epoch_batches, start=1):
        model.train()
        for batch in batches:
            loss = _step_loss(model, [data[i] for i in batch], K, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            history.losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{history.losses[-1]:.3f}")
        evaluate(epoch)
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _step_loss(model, batch: list[tuple[str, str, tuple[str, ...]]], K: int,
               config: TrainConfig) -> torch.Tensor:
    """Embed one batch and return its loss (B queries, B positives, B*K negatives)."""
    # The model's own max_length caps both (a tiny model may have few positions).
    q_len = min(config.max_length_query, model.max_length)
    d_len = min(config.max_length_doc, model.max_length)
    queries = model(model.tokenize([q for q, _, _ in batch], q_len))  # (B, C)
    docs = [p for _, p, _ in batch] + [n for _, _, negs in batch for n in negs]
    doc_emb = model(model.tokenize(docs, d_len))  # (B + B*K, C)
    B = len(batch)
    positives, negatives = doc_emb[:B], doc_emb[B:].reshape(B, K, -1) if K else None
    if config.loss == "triplet":
        def loss_fn(q, p, negatives=None):
            return triplet_loss(q, p, negatives[:, 0], margin=config.triplet_margin)
        kwargs = {}
    else:
        loss_fn = info_nce
        kwargs = {"temperature": config.temperature, "symmetric": config.symmetric}
    if config.matryoshka_dims:
        return matryoshka_loss(loss_fn, queries, positives, dims=config.matryoshka_dims,
                               negatives=negatives, **kwargs)
    return loss_fn(queries, positives, negatives=negatives, **kwargs)
