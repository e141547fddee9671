"""Training: one scaffold for every model, and the bi-encoder's loss step.

Every model here trains the same way; only the loss of one batch differs. :func:`fit` owns what
is common (the way sentence-transformers' and Hugging Face's trainers do):

    seed -> AdamW -> for each epoch: for each batch: loss = step_loss(batch)
                                                     zero_grad, backward, clip, step, schedule
                     evaluate, save a checkpoint

with a linear warm-up over ``warmup_ratio`` of the steps, then a linear decay to zero (or a
constant rate). The bi-encoder (:func:`train_biencoder`, below), the cross-encoder
(:func:`tinyir.rerank.train_cross_encoder`) and ColBERT (:func:`tinyir.colbert.train_projection`)
each build their batches and supply their ``step_loss``.

The bi-encoder:

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

import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tinyir.atomic import atomic_folder
from tinyir.device import seed_everything
from tinyir.losses import info_nce, matryoshka_loss, triplet_loss
from tinyir.validate import check_choice, check_positive

Batch = TypeVar("Batch")

# -----------------------------------------------------------------------------------------------
# The scaffold


@dataclass
class TrainHistory:
    """What happened: the loss of every step and the metrics of every evaluation."""

    losses: list[float] = field(default_factory=list)    # one per step
    evals: list[dict] = field(default_factory=list)      # {"epoch": e, metric: value, ...}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def warmup_linear_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float, decay: bool = True
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to zero
    (``decay=False``: the full rate to the end)."""
    warmup = max(1, int(warmup_ratio * total_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not decay:
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def fit(
    model: torch.nn.Module,
    epochs: Sequence[Sequence[Batch]],
    step_loss: Callable[[Batch], torch.Tensor],
    *,
    lr: float,
    params: Iterable | None = None,
    warmup_ratio: float = 0.1,
    decay: bool = True,
    weight_decay: float = 0.01,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    eval_before: bool = False,
    save_to: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
) -> TrainHistory:
    """Train ``model`` in place: one AdamW step on ``step_loss(batch)`` for every batch of
    every epoch (``epochs[e]`` is the list of epoch e's batches). Returns the history.

    ``params``: parameters or parameter groups to optimize (default: all of the model's; groups
    may carry their own ``lr``). ``eval_fn(model) -> {metric: value}`` runs in eval mode without
    gradients after each epoch (and before the first with ``eval_before``). ``save_to``: after
    each epoch a checkpoint folder, written atomically (the previous one stays until the new one
    is complete): the model's ``save_pretrained`` files, ``training.json`` (epochs done, the
    history) and ``trainer_state.safetensors`` (weights, optimizer moments, the CPU's RNG; no pickles).
    ``resume``: continue from the checkpoint in ``save_to`` (same epochs and settings), to the
    same weights as an uninterrupted run. The model is left in eval mode.

    Under ``torch.distributed`` (one process per device, each given its share of every batch by
    the caller) the processes start from rank 0's weights and average their gradients before
    each step, as DDP does; only rank 0 shows progress, evaluates and saves.
    A ``step_loss`` may back-propagate itself (gradient caching) and return a detached loss.
    """
    check_positive("lr", lr, integer=False)
    seed_everything(seed)
    rank, world = process_group()
    if world > 1:  # every process starts from rank 0's weights, as DDP does
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, src=0)
    progress, eval_fn = (progress, eval_fn) if rank == 0 else (False, None)
    total_steps = sum(len(batches) for batches in epochs)
    optimizer = torch.optim.AdamW(model.parameters() if params is None else params, lr=lr,
                                  weight_decay=weight_decay)
    scheduler = warmup_linear_schedule(optimizer, total_steps, warmup_ratio, decay)
    history, done = TrainHistory(), 0
    if resume and save_to is not None and (Path(save_to) / TRAINER_STATE).is_file():
        done, history = _load_checkpoint(Path(save_to), model, optimizer, scheduler)
    start = time.perf_counter() - history.seconds
    if eval_before and done == 0:
        _evaluate(model, eval_fn, 0, history)
    bar = tqdm(total=total_steps, initial=sum(len(b) for b in epochs[:done]), desc=desc,
               unit="step", file=sys.stderr, disable=not progress)
    for epoch, batches in enumerate(epochs, start=1):
        if epoch <= done:
            continue
        model.train()
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = step_loss(batch)
            if loss.requires_grad:  # a cached step has back-propagated already
                loss.backward()
            if world > 1:
                _average_gradients(model, world)
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            history.losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{history.losses[-1]:.3f}")
        _evaluate(model, eval_fn, epoch, history)
        history.seconds = time.perf_counter() - start
        if save_to is not None and rank == 0:
            _save_checkpoint(Path(save_to), model, optimizer, scheduler, epoch, history)
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


TRAINER_STATE = "trainer_state.safetensors"


def _save_checkpoint(folder: Path, model, optimizer, scheduler, epochs_done: int,
                     history: TrainHistory) -> None:
    tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, moments in state["state"].items():
        tensors |= {f"optimizer.{index}.{k}": v.detach().cpu().clone() for k, v in moments.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    schedule = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta = {"epochs_done": epochs_done, "history": history.to_dict(),
            "param_groups": state["param_groups"], "scheduler": schedule}
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp)
        save_file(tensors, str(tmp / TRAINER_STATE))
        (tmp / "training.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _load_checkpoint(folder: Path, model, optimizer, scheduler) -> tuple[int, TrainHistory]:
    meta = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    tensors = load_file(str(folder / TRAINER_STATE))
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items()
                           if k.startswith("model.")})
    moments: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            moments.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": moments, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict({**meta["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    torch.set_rng_state(tensors["rng.cpu"])
    return meta["epochs_done"], TrainHistory(**meta["history"])


def process_group() -> tuple[int, int]:
    """(this process's rank, the number of processes) under ``torch.distributed``; (0, 1) alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _average_gradients(model: torch.nn.Module, world: int) -> None:
    """What DistributedDataParallel does after backward: every gradient, averaged over the
    processes (here one all-reduce per tensor; DDP buckets them and overlaps with backward)."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= world


def _evaluate(model: torch.nn.Module, eval_fn, epoch: int, history: TrainHistory) -> None:
    if eval_fn is None:
        return
    model.eval()
    with torch.no_grad():
        metrics = dict(eval_fn(model))
    history.evals.append({"epoch": epoch, **metrics})
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"epoch {epoch}: {shown}", file=sys.stderr)


def epochs_of(n_items: int, epochs: int, batch_size: int, seed: int,
              max_steps: int | None = None) -> list[list[list[int]]]:
    """The batches of each epoch: ``range(n_items)`` shuffled again each epoch and cut into
    batches of ``batch_size`` (the last may be smaller). ``max_steps`` keeps only the first
    batches overall (and drops the epochs left empty)."""
    rng, order, out = random.Random(seed), list(range(n_items)), []
    for _ in range(epochs):
        rng.shuffle(order)
        out.append([order[i:i + batch_size] for i in range(0, n_items, batch_size)])
    return out if max_steps is None else first_steps(out, max_steps)


def first_steps(epochs: list[list], max_steps: int) -> list[list]:
    """The first ``max_steps`` batches, in their epochs; the epochs left empty are dropped."""
    kept, left = [], max_steps
    for batches in epochs:
        if left > 0:
            kept.append(batches[:left])
            left -= len(kept[-1])
    return kept


# -----------------------------------------------------------------------------------------------
# The bi-encoder

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
    mini_batch: int | None = None      # GradCache: embed this many texts at a time (None: all)
    max_steps: int | None = None       # stop after this many steps (all epochs together)

    def __post_init__(self):
        check_choice("loss", self.loss, LOSSES)
        for name in ("epochs", "batch_size", "max_length_query", "max_length_doc"):
            check_positive(name, getattr(self, name))
        for name in ("temperature", "lr"):
            check_positive(name, getattr(self, name), integer=False)
        for name in ("mini_batch", "max_steps"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))


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


def train_biencoder(
    model,
    examples: Sequence,
    config: TrainConfig | None = None,
    *,
    eval_fn: Callable[[object], dict] | None = None,
    eval_before: bool = True,
    save_to: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainHistory:
    """Fine-tune a :class:`tinyir.biencoder.BiEncoder` in place with :func:`fit`; returns the
    history. eval_fn(model) -> {metric: value} runs before training (``eval_before``) and after
    each epoch, with the model in eval mode. The model is left in eval mode.
    """
    config = config or TrainConfig()
    data, K = check_examples(examples)
    if config.loss == "triplet" and K == 0:
        raise ValueError("examples: loss='triplet' needs (query, positive, [negative, ...]) triples")
    rng = random.Random(config.seed)
    epochs = [make_batches(data, config.batch_size, rng) for _ in range(config.epochs)]
    if K == 0:  # a lone pair has no in-batch negative: its loss is 0 and its step is wasted
        epochs = [[b for b in batches if len(b) > 1] for batches in epochs]
    rank, world = process_group()
    if world > 1:  # each process embeds its slice of every (global) batch
        epochs = [[_share(b, rank, world) for b in batches if len(b) >= world]
                  for batches in epochs]
    if config.max_steps is not None:
        epochs = first_steps(epochs, config.max_steps)
    step = cached_step_loss if config.mini_batch else plain_step_loss
    return fit(model, epochs, lambda batch: step(model, [data[i] for i in batch], K, config),
               lr=config.lr, warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
               grad_clip=config.grad_clip, seed=config.seed, eval_fn=eval_fn,
               eval_before=eval_before, save_to=save_to, resume=resume, progress=progress)


def check_examples(examples: Sequence, min_negatives: int = 0) -> tuple[list, int]:
    """``examples`` as (query, positive, negatives) triples, and their one number K of negatives.

    Each item is (query, positive) or (query, positive, [negatives...]), all strings; every
    item has the same K, at least ``min_negatives``. Errors name the item.
    """
    if len(examples) == 0:
        raise ValueError("examples: expected at least one (query, positive) pair, got none")
    data = [_as_example(item, i) for i, item in enumerate(examples)]
    counts = {len(negatives) for _, _, negatives in data}
    if len(counts) > 1:
        raise ValueError(f"examples: every example needs the same number of negatives, "
                         f"got counts {sorted(counts)}")
    K = counts.pop()
    if K < min_negatives:
        raise ValueError(f"examples: expected (query, positive, [negatives...]) with at least "
                         f"{min_negatives} negative(s) each, got {K}")
    return data, K


def _as_example(item, index: int) -> tuple[str, str, tuple[str, ...]]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(f"examples[{index}]: expected (query, positive) or (query, positive, "
                         f"negatives), got {item!r:.80}")
    query, positive = item[0], item[1]
    negatives = tuple(item[2]) if len(item) == 3 else ()
    if not all(isinstance(t, str) for t in (query, positive, *negatives)):
        raise TypeError(f"examples[{index}]: expected strings, got {item!r:.80}")
    return query, positive, negatives


def beir_examples(folder: str | Path, split: str = "train", *, hard_negatives: int = 0,
                  model=None, progress: bool = True) -> list[tuple]:
    """Training examples from a BEIR folder: every positive (query, passage) pair of ``split``;
    with ``hard_negatives=K``, each with the K passages ``model`` ranks highest that are not
    positives of its query (:func:`tinyir.negatives.mine_hard_negatives`: top 30, a 5% relative
    margin under the best positive and word-Jaccard near-duplicates >= 0.8 dropped as likely
    false negatives). ``model="bm25"`` mines with BM25 instead (top 30 minus positives and
    near-duplicates: BM25 scores have no scale a margin could use). A pair with fewer than K
    negatives left is dropped (said on stderr).
    Raises naming what is wrong: no such split, an empty one, ids that do not resolve.
    """
    from tinyir.beir import load_beir
    from tinyir.negatives import mine_hard_negatives, negatives_from_ranking

    ds = load_beir(folder, split)  # validates every line and every id
    if not ds.qrels:
        raise ValueError(f"split: {split!r} of {folder} has no query with a relevant passage")
    doc_ids, texts = ds.doc_ids, ds.doc_texts()
    text_of = dict(zip(doc_ids, texts, strict=True))
    pairs = [(qid, doc_id) for qid in sorted(ds.qrels) for doc_id in sorted(ds.qrels[qid])
             if ds.qrels[qid][doc_id] > 0]
    if hard_negatives == 0:
        return [(ds.queries[qid], text_of[doc_id]) for qid, doc_id in pairs]
    check_positive("hard_negatives", hard_negatives)
    row = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    query_ids = sorted(ds.qrels)
    positives = [[row[d] for d, grade in ds.qrels[q].items() if grade > 0] for q in query_ids]
    query_texts = [ds.queries[q] for q in query_ids]
    if isinstance(model, str) and model == "bm25":
        from tinyir.bm25 import BM25

        depth = min(30 + max(len(p) for p in positives), len(texts))
        scores, top = BM25().index(texts, progress=progress).search(query_texts, k=depth)
        mined = negatives_from_ranking(scores.tolist(), top.tolist(), positives, hard_negatives,
                                       doc_texts=texts, near_duplicate=0.8)
    else:
        doc_embeddings = model.encode(texts, progress=progress)
        query_embeddings = model.encode(query_texts, progress=progress)
        mined = mine_hard_negatives(
            torch.nn.functional.normalize(query_embeddings, dim=-1),
            torch.nn.functional.normalize(doc_embeddings, dim=-1), positives, hard_negatives,
            candidates=30, relative_margin=0.05, doc_texts=texts, near_duplicate=0.8)
    negatives = dict(zip(query_ids, mined, strict=True))
    examples = [(ds.queries[q], text_of[d], tuple(texts[j] for j in negatives[q]))
                for q, d in pairs if len(negatives[q]) == hard_negatives]
    if len(examples) < len(pairs):
        print(f"{len(pairs) - len(examples)} of {len(pairs)} pairs dropped: fewer than "
              f"{hard_negatives} hard negatives left after the false-negative filters",
              file=sys.stderr)
    if not examples:
        raise ValueError(f"hard_negatives: no pair keeps {hard_negatives} negatives; ask for fewer")
    return examples


def _share(batch: list[int], rank: int, world: int) -> list[int]:
    """This process's contiguous slice of a global batch, cut to a multiple of ``world`` (all
    processes must gather tensors of one size)."""
    size = len(batch) // world
    return batch[rank * size:(rank + 1) * size]


def _gather(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x``, concatenated in rank order, with gradients flowing back to each
    process's own part (identity outside ``torch.distributed``)."""
    if process_group()[1] == 1:
        return x
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(x))


def _texts(batch: list[tuple[str, str, tuple[str, ...]]]) -> tuple[list[str], list[str]]:
    """(the B queries, the B positives followed by the B*K negatives)."""
    return ([q for q, _, _ in batch],
            [p for _, p, _ in batch] + [n for _, _, negatives in batch for n in negatives])


def _batch_loss(queries: torch.Tensor, docs: torch.Tensor, K: int,
                config: TrainConfig) -> torch.Tensor:
    """The loss of an embedded batch: queries (B, C), docs (B + B*K, C), positives first. Under
    torch.distributed each part is gathered first, so every anchor sees every process's docs."""
    B = len(queries)
    queries, positives, negatives = _gather(queries), _gather(docs[:B]), _gather(docs[B:])
    negatives = negatives.reshape(len(queries), K, -1) if K else None
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


def _lengths(model, config: TrainConfig) -> tuple[int, int]:
    # The model's own max_length caps both (a tiny model may have few positions).
    return (min(config.max_length_query, model.max_length),
            min(config.max_length_doc, model.max_length))


def plain_step_loss(model, batch: list[tuple[str, str, tuple[str, ...]]], K: int,
               config: TrainConfig) -> torch.Tensor:
    """Embed one batch and return its loss (B queries, B positives, B*K negatives)."""
    q_len, d_len = _lengths(model, config)
    queries, docs = _texts(batch)
    return _batch_loss(model(model.tokenize(queries, q_len)),  # (B, C)
                       model(model.tokenize(docs, d_len)), K, config)  # (B + B*K, C)


def cached_step_loss(model, batch: list[tuple[str, str, tuple[str, ...]]], K: int,
                      config: TrainConfig) -> torch.Tensor:
    """The same loss and gradients as :func:`plain_step_loss`, with the memory of ``mini_batch``
    texts: GradCache (Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning Batch Size
    under Memory Limited Setup", RepL4NLP 2021).

    1. embed every mini-batch without gradients (remembering the RNG state it started from);
    2. compute the loss on the whole batch from those embeddings, and its gradient with respect
       to the embeddings only (a (B + B + B*K, C) tensor: small);
    3. embed each mini-batch again, with gradients and the same RNG state (same dropout), and
       back-propagate its slice of that gradient into the weights.
    Back-propagates itself; returns the loss, detached.
    """
    q_len, d_len = _lengths(model, config)
    queries, docs = _texts(batch)
    M = config.mini_batch
    chunks = [(texts[i:i + M], length) for texts, length in ((queries, q_len), (docs, d_len))
              for i in range(0, len(texts), M)]
    states, cached = [], []
    with torch.no_grad():
        for texts, length in chunks:
            states.append(_rng_state())
            cached.append(model(model.tokenize(texts, length)))  # (m, C)
    embeddings = torch.cat(cached).requires_grad_()  # (B + B + B*K, C): a leaf
    loss = _batch_loss(embeddings[:len(queries)], embeddings[len(queries):], K, config)
    loss.backward()  # the gradient w.r.t. the embeddings, cached in embeddings.grad
    grads = embeddings.grad.split([len(texts) for texts, _ in chunks])
    for (texts, length), state, grad in zip(chunks, states, grads, strict=True):
        with _rng_restored(state):
            model(model.tokenize(texts, length)).backward(grad)
    return loss.detach()


def _rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


class _rng_restored:
    """Run a block from a saved RNG state, then continue from where the stream was before."""

    def __init__(self, state: tuple):
        self.state = state

    def __enter__(self):
        self.saved = _rng_state()
        torch.set_rng_state(self.state[0])
        if self.state[1] is not None:
            torch.cuda.set_rng_state_all(self.state[1])

    def __exit__(self, *exc):
        torch.set_rng_state(self.saved[0])
        if self.saved[1] is not None:
            torch.cuda.set_rng_state_all(self.saved[1])
