"""The course's second-stage models, built once and cached (``tinyir.cache``).

- :func:`finetuned_cross_encoder`: notebook 03's fine-tuned MiniLM with a segments head (it starts
  as the cosine of the jointly encoded query and passage), fine-tuned as a reranker on pydocs
  training queries with BM25-mined hard negatives (notebook 10 trains it; 14 loads it).
- :func:`colbert_model`: a ColBERT on all-MiniLM-L6-v2's token embeddings (notebook 11 trains
  it; 14 loads it). See ``COLBERT_RECIPE`` for what is trained.

Both are rebuilt deterministically when the cache misses, so each notebook also runs alone.
Cache keys hold the dataset fingerprint, the recipe and a version bumped when a builder changes.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from tinyir.beir import load_beir, training_pairs
from tinyir.bm25 import BM25
from tinyir.cache import cached_model
from tinyir.colbert import ColBERT, train_projection
from tinyir.course.models import FINETUNE_RECIPE, finetuned_minilm
from tinyir.negatives import jaccard
from tinyir.pydocs import PYDOCS_DIR, dataset_fingerprint
from tinyir.rerank import CrossEncoder, train_cross_encoder

# Bump a builder's version when it changes what it produces for the same key.
_CROSS_ENCODER_VERSION = 3  # 3: one model.safetensors in BertForSequenceClassification names
_COLBERT_VERSION = 1

# -----------------------------------------------------------------------------------------------
# Training groups: (query, positive, [hard negatives]) from the train split


def bm25_training_groups(
    n_queries: int, num_negatives: int = 3, candidates: int = 30, near_duplicate: float = 0.8,
    seed: int = 0,
) -> list[tuple[str, str, list[str]]]:
    """``n_queries`` random train queries, each with one positive and ``num_negatives`` hard
    negatives: the best BM25-ranked passages of the whole corpus that are not a positive and
    not a near-duplicate of one (word Jaccard >= ``near_duplicate``: a likely false negative).

    A query with several positives keeps its first (by doc id); a query left with fewer than
    ``num_negatives`` negatives after filtering is skipped. Deterministic for a given seed.
    """
    ds = load_beir(PYDOCS_DIR, "train")
    doc_ids, texts = ds.doc_ids, ds.doc_texts()
    row = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    qids = sorted(ds.queries)
    qids = sorted(random.Random(seed).sample(qids, min(len(qids), int(n_queries * 1.1) + 8)))
    bm25 = BM25()
    bm25.index(texts, progress=False)
    _, top = bm25.search([ds.queries[q] for q in qids], k=candidates)  # (Q, candidates)
    groups = []
    for qid, ranked in zip(qids, top.tolist(), strict=True):
        positives = sorted(d for d, grade in ds.qrels[qid].items() if grade > 0)
        pos_rows = {row[d] for d in positives}
        negatives = []
        for j in ranked:
            if j in pos_rows or any(jaccard(texts[j], texts[p]) >= near_duplicate
                                    for p in pos_rows):
                continue
            negatives.append(texts[j])
            if len(negatives) == num_negatives:
                break
        if len(negatives) == num_negatives:
            groups.append((ds.queries[qid], texts[row[positives[0]]], negatives))
        if len(groups) == n_queries:
            break
    return groups


# -----------------------------------------------------------------------------------------------
# A trained model saved with the losses of its training run (for the notebooks' curves)


class _WithLosses:
    """Adapter for ``cached_model``: saves the model and ``train_log.json`` side by side."""

    def __init__(self, model, losses: list[float], seconds: float):
        self.model, self.losses, self.seconds = model, list(losses), float(seconds)

    def save_pretrained(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        log = {"losses": self.losses, "seconds": self.seconds}
        (Path(folder) / "train_log.json").write_text(json.dumps(log) + "\n")

    @classmethod
    def load(cls, folder: Path, load_model) -> _WithLosses:
        log = json.loads((Path(folder) / "train_log.json").read_text())
        return cls(load_model(folder), log["losses"], log["seconds"])

    def attach(self):
        """The model, with ``train_losses`` (one per step) and ``train_seconds`` attached."""
        self.model.train_losses = self.losses
        self.model.train_seconds = self.seconds
        return self.model


# -----------------------------------------------------------------------------------------------
# The fine-tuned cross-encoder

CROSS_ENCODER_RECIPE = {
    # Start from notebook 03's fine-tuned MiniLM and a head that reads the two segments: at step
    # 0 the score is cos(query tokens, passage tokens) / 0.05 of the jointly encoded pair, already
    # a ranking (nDCG@10 0.62 on BM25's top 20 of 60 dev queries, BM25 0.635); 25 steps lift it
    # to 0.69, and 75 steps did no better (0.67-0.69). A fresh head on [CLS] or on the mean
    # starts at random: with the mean, 75 steps of this recipe reached 0.58, still below BM25
    # (measured on this CPU, 2026-11-27; "cls" stayed at log 4 for 48 steps). One run each on 60
    # queries, no intervals: differences of a few hundredths are within the noise of 60 queries
    # (notebook 10 measures its claims with paired bootstrap intervals instead).
    "base": "finetuned_minilm",  # notebook 03's model; "minilm": all-MiniLM-L6-v2 as shipped
    "pooling": "segments",
    "max_length": 96,       # query + passage tokens: ~2 s per step of 32 pairs on 2 CPU cores
    "n_train_queries": 256,
    "num_negatives": 3,
    "negatives": "bm25 top-30, near-duplicates (Jaccard >= 0.8) dropped",
    "batch_size": 8,        # groups per step: 8 x (1 + 3) = 32 pairs, 32 steps
    "epochs": 1,
    "lr": 5e-5,
    "head_lr": 1e-3,
    "loss": "listwise",
    "seed": 0,
}


def finetuned_cross_encoder(progress: bool = True, recipe: dict | None = None) -> CrossEncoder:
    """Notebook 03's fine-tuned MiniLM + a segments head, fine-tuned as a reranker on BM25-mined
    hard negatives (``CROSS_ENCODER_RECIPE``).

    Built once (about 1 minute of training on a 2-core CPU: 32 steps, plus notebook 03's model
    if that is not cached yet), then loaded from the cache. Returned in eval mode on the CPU,
    with ``train_losses`` (the loss of every step) and ``train_seconds`` attached.
    """
    recipe = dict(CROSS_ENCODER_RECIPE, **(recipe or {}))
    key = {"artifact": "finetuned_cross_encoder", "version": _CROSS_ENCODER_VERSION,
           "data": dataset_fingerprint(PYDOCS_DIR), "base_recipe": str(FINETUNE_RECIPE), **recipe}

    def build() -> _WithLosses:
        groups = bm25_training_groups(recipe["n_train_queries"], recipe["num_negatives"],
                                      seed=recipe["seed"])
        settings = {"max_length": recipe["max_length"], "pooling": recipe["pooling"],
                    "seed": recipe["seed"]}
        if recipe["base"] == "finetuned_minilm":
            base = finetuned_minilm(progress=progress).to("cpu")
            model = CrossEncoder.from_encoder(base.encoder, base.tokenizer, **settings)
        elif recipe["base"] == "minilm":
            model = CrossEncoder.minilm(**settings)
        else:
            raise ValueError(f"recipe['base']: expected 'finetuned_minilm' or 'minilm', "
                             f"got {recipe['base']!r}")
        history = train_cross_encoder(model, groups, epochs=recipe["epochs"], lr=recipe["lr"],
                                      head_lr=recipe["head_lr"], batch_size=recipe["batch_size"],
                                      loss=recipe["loss"], seed=recipe["seed"], progress=progress)
        return _WithLosses(model, history.losses, history.seconds)

    saved = cached_model("cross-encoder", key, build,
                         load=lambda path: _WithLosses.load(path, CrossEncoder.from_pretrained),
                         verbose=progress)
    return saved.attach()


# -----------------------------------------------------------------------------------------------
# The ColBERT model

COLBERT_RECIPE = {
    "base": "all-MiniLM-L6-v2 (frozen)",
    "dim": 128,
    "query_max_length": 32,
    "doc_max_length": 128,
    "skip_punctuation": True,
    "n_train_pairs": 512,
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "loss": "in-batch MaxSim InfoNCE, projection only",
    "seed": 0,
}


def colbert_model(progress: bool = True, recipe: dict | None = None) -> ColBERT:
    """A ColBERT on all-MiniLM-L6-v2 (``COLBERT_RECIPE``): the encoder frozen, a linear
    projection 384 -> 128 trained with in-batch MaxSim InfoNCE on pydocs training pairs.

    Training only the projection costs one encoder pass over the training pairs (no backward
    through the transformer), so it is built in well under a minute and then loaded from the
    cache. Returned in eval mode on the CPU, with ``train_losses`` and ``train_seconds``.
    """
    recipe = dict(COLBERT_RECIPE, **(recipe or {}))
    key = {"artifact": "colbert_model", "version": _COLBERT_VERSION,
           "data": dataset_fingerprint(PYDOCS_DIR), **recipe}

    def build() -> _WithLosses:
        pairs = training_pairs(PYDOCS_DIR, "train")
        random.Random(recipe["seed"]).shuffle(pairs)
        model = ColBERT.minilm(
            dim=recipe["dim"], seed=recipe["seed"], query_max_length=recipe["query_max_length"],
            doc_max_length=recipe["doc_max_length"], skip_punctuation=recipe["skip_punctuation"])
        start = time.perf_counter()  # the encoder's pass over the pairs included
        history = train_projection(model, pairs[:recipe["n_train_pairs"]],
                                   epochs=recipe["epochs"], lr=recipe["lr"],
                                   batch_size=recipe["batch_size"], seed=recipe["seed"],
                                   progress=progress)
        return _WithLosses(model, history.losses, time.perf_counter() - start)

    saved = cached_model("colbert", key, build,
                         load=lambda path: _WithLosses.load(path, ColBERT.from_pretrained),
                         verbose=progress)
    return saved.attach()
