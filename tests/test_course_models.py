"""The course's cached artifacts: built deterministically, keyed by data and recipe, and loaded
back from the cache (identical weights, no retraining). Runs on a tiny BEIR folder."""

from __future__ import annotations

import json

import pytest
import torch

from tinyir.beir import load_beir, write_beir
from tinyir.course import models
from tinyir.testing import assert_close

TOPICS = ["sum", "product", "sort", "mean", "median", "reshape", "transpose", "concatenate",
          "split", "stack", "clip", "round"]


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A 12-passage BEIR folder (8 train queries, 4 dev queries) with a manifest, set as the
    course dataset, and an empty cache."""
    corpus = {f"numpy.{t}": {"title": f"numpy.{t}",
                             "text": f"{t}(a, axis=None)\nCompute the {t} of the array elements."}
              for t in TOPICS}
    queries = {f"q-{t}": f"How do I {t} the values of an array?" for t in TOPICS}
    qrels = {"train": {f"q-{t}": {f"numpy.{t}": 1} for t in TOPICS[:8]},
             "dev": {f"q-{t}": {f"numpy.{t}": 1} for t in TOPICS[8:]}}
    folder = tmp_path / "data"
    write_beir(folder, corpus, queries, qrels)
    (folder / "manifest.json").write_text(json.dumps({"sha256": {"corpus.jsonl": "tiny"}}))
    monkeypatch.setattr(models, "PYDOCS_DIR", folder)
    monkeypatch.setenv("TINYIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


TINY_RECIPE = models.FinetuneRecipe(n_pairs=8, epochs=1, batch_size=4, max_length_query=16,
                                    max_length_doc=16, val_queries=4, val_docs=12,
                                    eval_max_length=16)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_tokenizer_is_cached_and_tiny_biencoder_is_seeded(tiny_data, monkeypatch):
    first = models.pydocs_tokenizer()
    entries = list((tiny_data / "cache").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("pydocs-tokenizer-")

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was retrained despite the cache")

    monkeypatch.setattr(models.Tokenizer, "train", no_training)
    second = models.pydocs_tokenizer()
    texts = ["Compute the cumulative sum of the array elements."]
    assert first(texts, max_length=32)["input_ids"].tolist() == \
        second(texts, max_length=32)["input_ids"].tolist()

    a, b = models.tiny_biencoder(seed=0), models.tiny_biencoder(seed=0)
    c = models.tiny_biencoder(seed=1)
    assert same_weights(a, b) and not same_weights(a, c)
    assert a.encoder.config.vocab_size == a.tokenizer.vocab_size
    assert a.encoder.config.hidden_size == 128 and a.pooling == "mean" and a.normalize
    emb = a.encode(["numpy.sum adds", "sort a list"])
    assert emb.shape == (2, 128)
    assert_close(emb.norm(dim=1), torch.ones(2), what="embedding norms")

    causal = models.tiny_biencoder(pooling="lasttoken", causal=True, num_layers=1)
    assert causal.encoder.config.causal and causal.pooling == "lasttoken"
    assert len(causal.encoder.layers) == 1
    with pytest.raises(ValueError, match="max_length"):
        models.tiny_biencoder(max_length=10_000)


def test_validation_subset_is_fixed(tiny_data):
    a = models.validation_subset(n_queries=3, n_docs=8)
    b = models.validation_subset(n_queries=3, n_docs=8)
    assert a.queries == b.queries and list(a.corpus) == list(b.corpus)
    assert a.split == "dev" and len(a.queries) == 3 and len(a.corpus) == 8
    assert set(a.queries) <= set(load_beir(tiny_data / "data", "dev").queries)


def test_finetuned_minilm_trains_deterministically_then_loads_from_cache(tiny_data, monkeypatch):
    examples = models.finetune_examples(TINY_RECIPE)
    assert len(examples) == 8 and examples == models.finetune_examples(TINY_RECIPE)

    run = models.finetuned_minilm_run(TINY_RECIPE, progress=False)
    assert not run.from_cache
    assert [e["epoch"] for e in run.history.evals] == [0, 1]  # before training, after epoch 1
    assert set(models.EVAL_METRICS) <= set(run.history.evals[0])
    assert len(run.history.losses) == 2  # 8 pairs / batch 4
    # Training changed the weights.
    assert not same_weights(run.model, models.BiEncoder.minilm())

    # Same recipe and seed, trained again without the cache: the same weights.
    again, _ = models.train_finetuned_minilm(TINY_RECIPE, progress=False)
    assert same_weights(run.model, again)

    # A cache hit loads the same weights and history, and never trains.
    def no_training(*args, **kwargs):
        raise AssertionError("trained despite the cache")

    monkeypatch.setattr(models, "train_biencoder", no_training)
    cached = models.finetuned_minilm_run(TINY_RECIPE, progress=False)
    assert cached.from_cache and same_weights(run.model, cached.model)
    assert cached.history.evals == run.history.evals
    assert cached.history.losses == run.history.losses
    model = models.finetuned_minilm(progress=False, recipe=TINY_RECIPE)
    assert same_weights(run.model, model)

    # A different recipe is a different entry: it would train.
    with pytest.raises(AssertionError, match="trained despite the cache"):
        models.finetuned_minilm(progress=False, recipe=TINY_RECIPE, lr=1e-4)


def test_recipe_rejects_too_many_pairs(tiny_data):
    with pytest.raises(ValueError, match="n_pairs"):
        models.finetune_examples(models.FinetuneRecipe(n_pairs=1000))
