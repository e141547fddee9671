"""Course artifacts for notebooks 10, 11 and 14: mined training groups and the cached models
(built here with tiny recipes, in a temporary cache)."""

from __future__ import annotations

import pytest

from tinyir.beir import load_beir
from tinyir.colbert import ColBERT
from tinyir.course.rerankers import (
    COLBERT_RECIPE,
    CROSS_ENCODER_RECIPE,
    bm25_training_groups,
    colbert_model,
    finetuned_cross_encoder,
)
from tinyir.negatives import jaccard
from tinyir.pydocs import PYDOCS_DIR
from tinyir.rerank import CrossEncoder
from tinyir.testing import assert_close

pytestmark = pytest.mark.skipif(not (PYDOCS_DIR / "corpus.jsonl").is_file(),
                                reason="data/pydocs is not built (tinyir data build)")


def test_bm25_groups_have_true_hard_negatives():
    groups = bm25_training_groups(12, num_negatives=3, seed=0)
    assert len(groups) == 12
    assert groups == bm25_training_groups(12, num_negatives=3, seed=0)  # deterministic
    ds = load_beir(PYDOCS_DIR, "train")
    texts = {t for t in ds.doc_texts()}
    by_query = {text: qid for qid, text in ds.queries.items()}
    positives_of = {qid: {ds.corpus[d]["title"] + " " + ds.corpus[d]["text"]
                          for d, g in ds.qrels[qid].items() if g > 0} for qid in ds.qrels}
    for query, positive, negatives in groups:
        assert len(negatives) == 3 and len(set(negatives)) == 3
        assert positive in texts and all(n in texts for n in negatives)
        positives = positives_of[by_query[query]]
        assert positive in positives
        assert not set(negatives) & positives
        assert all(jaccard(n, positive) < 0.8 for n in negatives)


def test_cross_encoder_is_built_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYIR_CACHE_DIR", str(tmp_path))
    tiny = {"n_train_queries": 8, "batch_size": 4, "max_length": 32, "base": "minilm"}
    built = finetuned_cross_encoder(progress=False, recipe=tiny)
    assert isinstance(built, CrossEncoder) and len(built.train_losses) == 2
    loaded = finetuned_cross_encoder(progress=False, recipe=tiny)
    assert loaded.train_losses == built.train_losses
    pairs = [("Return the cumulative sum.", "numpy.cumsum cumsum(a)"), ("join", "os.path.join")]
    # MiniLM's 6 layers, then the segments head (mean, normalize, product, linear)
    assert_close(loaded.score(pairs), built.score(pairs), depth=6 + 3, what="loaded vs built")
    assert built.pooling == CROSS_ENCODER_RECIPE["pooling"] == "segments"
    assert CROSS_ENCODER_RECIPE["loss"] == "listwise"
    with pytest.raises(ValueError, match="base"):
        finetuned_cross_encoder(progress=False, recipe={**tiny, "base": "bert"})


def test_colbert_is_built_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYIR_CACHE_DIR", str(tmp_path))
    tiny = {"n_train_pairs": 16, "epochs": 2, "batch_size": 8, "doc_max_length": 32}
    built = colbert_model(progress=False, recipe=tiny)
    assert isinstance(built, ColBERT) and built.dim == COLBERT_RECIPE["dim"]
    assert len(built.train_losses) == 4
    loaded = colbert_model(progress=False, recipe=tiny)
    for a, b in zip(built.encode_docs(["numpy.cumsum(a, axis=None)"]),
                    loaded.encode_docs(["numpy.cumsum(a, axis=None)"]), strict=True):
        assert_close(a, b, depth=6 + 2, scale=1.0, what="loaded vs built ColBERT")
