"""Published model figures: consistent with each other and with what the course can measure."""

from __future__ import annotations

import json

import pytest

from tinyir.biencoder import BiEncoder
from tinyir.course.models_published import (
    BGE_LARGE,
    EMBEDDING_MODELS,
    LLAMA2_7B,
    LLAMA2_70B,
    BertConfig,
    by_dimension,
)
from tinyir.pretrained import minilm_path


def test_dimensions_and_grouping():
    dims = {m.name: m.dim for m in EMBEDDING_MODELS}
    assert dims["all-MiniLM-L6-v2"] == 384 and dims["text-embedding-3-large"] == 3072
    assert all(m.source for m in EMBEDDING_MODELS)
    groups = by_dimension()
    assert list(groups) == sorted(groups)
    assert groups[1024] == ["bge-large-en-v1.5", "e5-large-v2"]
    assert sum(len(names) for names in groups.values()) == len(EMBEDDING_MODELS)


def test_minilm_dimension_matches_the_installed_config():
    config = json.loads((minilm_path() / "config.json").read_text())
    assert config["hidden_size"] == next(m.dim for m in EMBEDDING_MODELS
                                         if m.name == "all-MiniLM-L6-v2")


def test_bert_parameter_formula_on_real_weights():
    # The formula must count the installed MiniLM's parameters exactly (no pooler there) ...
    config = json.loads((minilm_path() / "config.json").read_text())
    minilm = BertConfig("minilm", config["num_hidden_layers"], config["hidden_size"],
                        config["intermediate_size"], config["vocab_size"],
                        config["max_position_embeddings"], config["type_vocab_size"], 0.0, "")
    encoder = BiEncoder.minilm(device="cpu").encoder
    assert minilm.params() == sum(p.numel() for p in encoder.parameters())
    assert minilm.layers * minilm.layer_params == sum(
        p.numel() for n, p in encoder.named_parameters() if "embeddings" not in n)
    # ... and land on the published 335M of bge-large once BERT's pooler is counted.
    assert BGE_LARGE.params(pooler=True) == pytest.approx(BGE_LARGE.published_params, rel=0.005)


def test_kv_cache_per_token():
    assert LLAMA2_7B.kv_bytes_per_token() == 2 * 32 * 4096 * 2 == 512 * 1024  # 0.5 MiB
    assert LLAMA2_70B.head_dim == 128
    assert LLAMA2_70B.kv_bytes_per_token() == 2 * 80 * 8 * 128 * 2  # grouped-query attention
    assert LLAMA2_7B.kv_bytes_per_token(bytes_per_value=1) == 256 * 1024


def test_agrees_with_the_leaderboard_table_where_both_list_a_model():
    # Two course modules hold published dimensions; they must never disagree.
    from tinyir.course import leaderboard

    theirs = {row.model: row.dim for row in leaderboard.published()}
    shared = {m.name: m.dim for m in EMBEDDING_MODELS if m.name in theirs}
    assert len(shared) >= 5
    assert shared == {name: theirs[name] for name in shared}
    bge = next(row for row in leaderboard.published() if row.model == BGE_LARGE.name)
    assert bge.params == BGE_LARGE.params()
