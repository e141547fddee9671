"""The course's shared trained artifacts, built once and cached (``tinyir.cache``).

Several notebooks need the same models; each gets them from here, so every notebook also runs
alone (a missing artifact is rebuilt, deterministically) and none re-defines training code:

- :func:`pydocs_tokenizer`: a WordPiece vocabulary trained on the pydocs corpus.
- :func:`tiny_biencoder`: a fresh, untrained ``EncoderConfig.tiny`` bi-encoder on that
  vocabulary, for fast from-scratch training sweeps (notebooks 04, 05, 06, 07).
- :func:`validation_subset`: the fixed dev subset on which Part I compares numbers.
- :data:`FINETUNE_RECIPE` and :func:`finetuned_minilm`: all-MiniLM-L6-v2 fine-tuned with
  in-batch negatives on pydocs training pairs (notebook 03 trains it and shows its curve;
  05, 08, 10, 11, 14 load it).

Every cache key holds everything the artifact depends on: the dataset fingerprint, the recipe
and the seed (and a version number bumped when the building code changes meaning).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from tinyir.beir import BeirDataset, load_beir, training_pairs
from tinyir.biencoder import BiEncoder
from tinyir.cache import cached_model
from tinyir.device import seed_everything
from tinyir.encoder import Encoder, EncoderConfig
from tinyir.evaluate import dense_run
from tinyir.metrics import mean_metrics, per_query
from tinyir.pydocs import PYDOCS_DIR, dataset_fingerprint
from tinyir.tokenizer import Tokenizer
from tinyir.train import TrainConfig, TrainHistory, train_biencoder

_VERSION = 1  # bump when a builder below changes what it produces for the same key

# -----------------------------------------------------------------------------------------------
# The pydocs tokenizer and the tiny from-scratch bi-encoder

TOKENIZER_RECIPE = {"vocab_size": 8000, "min_frequency": 2, "lowercase": True}


def pydocs_tokenizer(folder: str | Path | None = None) -> Tokenizer:
    """A WordPiece tokenizer (``TOKENIZER_RECIPE``) trained on the corpus's passages; cached.

    Training reads every passage (title + text) of ``corpus.jsonl`` once (a few seconds); later
    calls load the saved ``tokenizer.json``, so every notebook sees the same ids.
    folder: a BEIR folder with a manifest (default: the pydocs dataset).
    """
    folder = PYDOCS_DIR if folder is None else folder
    key = {"artifact": "pydocs_tokenizer", "version": _VERSION,
           "data": dataset_fingerprint(folder), **TOKENIZER_RECIPE}

    def build() -> Tokenizer:
        return Tokenizer.train(load_beir(folder, "train").doc_texts(), **TOKENIZER_RECIPE)

    return cached_model("pydocs-tokenizer", key, build, load=Tokenizer.from_pretrained)


def tiny_biencoder(
    pooling: str = "mean",
    causal: bool = False,
    seed: int = 0,
    max_length: int = 128,
    normalize: bool = True,
    **config_overrides,
) -> BiEncoder:
    """A fresh (randomly initialised) tiny bi-encoder on the pydocs tokenizer, on the CPU.

    ``EncoderConfig.tiny`` (C=128, 2 layers, 4 heads) with ``vocab_size`` set to the tokenizer's;
    ``config_overrides`` change other fields (e.g. ``num_layers=4``). The same ``seed`` gives the
    same initial weights. Move it with ``.to(device)``.
    """
    tokenizer = pydocs_tokenizer()
    config = EncoderConfig.tiny(vocab_size=tokenizer.vocab_size, causal=causal, **config_overrides)
    if max_length > config.max_position:
        raise ValueError(
            f"max_length: expected at most max_position={config.max_position}, got {max_length}"
        )
    seed_everything(seed)
    encoder = Encoder(config)
    return BiEncoder(encoder, tokenizer, pooling=pooling, normalize=normalize,
                     max_length=max_length)


# -----------------------------------------------------------------------------------------------
# The Part I validation subset

VALIDATION = {"split": "dev", "n_queries": 200, "n_docs": 1000, "seed": 0}


def validation_subset(n_queries: int = VALIDATION["n_queries"],
                      n_docs: int = VALIDATION["n_docs"],
                      seed: int = VALIDATION["seed"]) -> BeirDataset:
    """The fixed dev subset Part I evaluates on: 200 dev queries, 1,000 passages (all judged ones
    plus random distractors). Numbers on it compare only with numbers on it."""
    return load_beir(PYDOCS_DIR, VALIDATION["split"]).subset(
        n_queries=n_queries, n_docs=n_docs, seed=seed)


# -----------------------------------------------------------------------------------------------
# MiniLM fine-tuned with in-batch negatives (notebook 03)


@dataclass(frozen=True)
class FinetuneRecipe:
    """Everything that decides the fine-tuned MiniLM: data, optimisation, evaluation, seed."""

    n_pairs: int = 1000            # (query, passage) pairs drawn from the pydocs train split
    epochs: int = 2
    batch_size: int = 32           # B: each query scores B passages (1 positive, B-1 negatives)
    lr: float = 5e-5
    temperature: float = 0.05      # sentence-transformers' scale = 20
    max_length_query: int = 32
    max_length_doc: int = 64
    warmup_ratio: float = 0.1
    seed: int = 0
    # evaluation after every epoch (and before training) on validation_subset(...)
    val_queries: int = VALIDATION["n_queries"]
    val_docs: int = VALIDATION["n_docs"]
    eval_max_length: int = 64

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            temperature=self.temperature, loss="infonce",
            max_length_query=self.max_length_query, max_length_doc=self.max_length_doc,
            warmup_ratio=self.warmup_ratio, seed=self.seed,
        )


FINETUNE_RECIPE = FinetuneRecipe()

EVAL_METRICS = ("recall@10", "ndcg@10", "mrr@10")


def finetune_examples(recipe: FinetuneRecipe = FINETUNE_RECIPE) -> list[tuple[str, str]]:
    """The recipe's training pairs: ``n_pairs`` drawn (seeded) from the train split's positives."""
    pairs = training_pairs(PYDOCS_DIR, "train")
    if not 1 <= recipe.n_pairs <= len(pairs):
        raise ValueError(f"recipe.n_pairs: expected an int in [1, {len(pairs)}], "
                         f"got {recipe.n_pairs!r}")
    return random.Random(recipe.seed).sample(pairs, recipe.n_pairs)


def validation_eval_fn(recipe: FinetuneRecipe = FINETUNE_RECIPE):
    """``eval_fn(model) -> {"recall@10", "ndcg@10", "mrr@10", "per_query"}`` on the recipe's
    validation subset (queries and passages truncated to ``eval_max_length`` tokens).
    ``per_query`` holds {metric: {query_id: value}} for every metric, so two evaluations of the
    history can be compared query by query (``tinyir.metrics.paired_bootstrap``)."""
    dataset = validation_subset(recipe.val_queries, recipe.val_docs)

    def eval_fn(model: BiEncoder) -> dict:
        run = dense_run(model, dataset, k=10, max_length=recipe.eval_max_length)
        metrics = mean_metrics(run, dataset.qrels, k_values=(10,))
        return {**{name: metrics[name] for name in EVAL_METRICS},
                "per_query": {name: per_query(run, dataset.qrels, name) for name in EVAL_METRICS}}

    return eval_fn


def train_finetuned_minilm(
    recipe: FinetuneRecipe = FINETUNE_RECIPE, progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[BiEncoder, TrainHistory]:
    """Fine-tune all-MiniLM-L6-v2 on the recipe with in-batch negatives (InfoNCE), evaluating on
    the validation subset before training and after every epoch. Not cached: see
    :func:`finetuned_minilm_run`."""
    from tinyir.device import get_device

    model = BiEncoder.minilm(device=device or get_device())
    history = train_biencoder(model, finetune_examples(recipe), recipe.train_config(),
                              eval_fn=validation_eval_fn(recipe), eval_before=True,
                              progress=progress)
    return model, history


@dataclass
class FinetuneRun:
    """A fine-tuned model, the history of the run that made it, and where it came from."""

    model: BiEncoder
    history: TrainHistory
    from_cache: bool = False

    def save_pretrained(self, folder: Path) -> None:
        self.model.save_pretrained(Path(folder) / "model")
        (Path(folder) / "history.json").write_text(json.dumps(self.history.to_dict()) + "\n")

    @classmethod
    def load(cls, folder: Path, device: str | torch.device | None = None) -> FinetuneRun:
        model = BiEncoder.from_pretrained(Path(folder) / "model", device=device)
        history = TrainHistory(**json.loads((Path(folder) / "history.json").read_text()))
        return cls(model, history, from_cache=True)


def _finetune_key(recipe: FinetuneRecipe, device: torch.device) -> dict:
    return {"artifact": "finetuned_minilm", "version": _VERSION, "base": "all-MiniLM-L6-v2",
            "data": dataset_fingerprint(PYDOCS_DIR), "device": device.type, **asdict(recipe)}


def finetuned_minilm_run(
    recipe: FinetuneRecipe = FINETUNE_RECIPE, progress: bool = True, retrain: bool = False,
) -> FinetuneRun:
    """The fine-tuned MiniLM with its training history: from the cache when present (the
    history is the one recorded when it was trained), trained and cached otherwise.
    ``retrain=True`` trains again even on a cache hit (the result is the same: training is
    seeded)."""
    from tinyir.device import get_device

    device = get_device()
    key = _finetune_key(recipe, device)

    def build() -> FinetuneRun:
        return FinetuneRun(*train_finetuned_minilm(recipe, progress=progress, device=device))

    if retrain:
        run = build()
        cached_model("finetuned-minilm", key, lambda: run, load=lambda path: run)
        return run
    return cached_model("finetuned-minilm", key, build,
                        load=lambda path: FinetuneRun.load(path, device=device))


def finetuned_minilm(progress: bool = True, recipe: FinetuneRecipe | None = None,
                     **overrides) -> BiEncoder:
    """all-MiniLM-L6-v2 fine-tuned on :data:`FINETUNE_RECIPE` (or ``recipe``, with field
    ``overrides``): loaded from the cache, or trained once (~1.5 min on a laptop CPU)."""
    recipe = replace(recipe or FINETUNE_RECIPE, **overrides)
    return finetuned_minilm_run(recipe, progress=progress).model
