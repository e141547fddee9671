"""The course's shipped checkpoints: packed as float16 minus the token table they share with
all-MiniLM-L6-v2, checked by sha256, unpacked to folders both libraries load, and each one
reproducing the dev metric its manifest records."""

from __future__ import annotations

import json

import pytest
import torch

from tinyir.course import checkpoints
from tinyir.pydocs import PYDOCS_DIR, dataset_fingerprint
from tinyir.rerank import CrossEncoder
from tinyir.testing import assert_close

QUERY = "Return the cumulative sum of the elements along a given axis."
DOCS = ["numpy.cumsum cumsum(a, axis=None) Return the cumulative sum of the elements.",
        "os.path.join join(a, *p) Join two or more pathname components.", "x"]


@pytest.fixture()
def root(tmp_path, monkeypatch):
    """Checkpoints written to and read from a temporary folder instead of the package."""
    monkeypatch.setattr(checkpoints, "CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setenv("TINYIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "checkpoints"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A cross-encoder folder whose token table is MiniLM's, as a frozen-table run leaves it."""
    model = CrossEncoder.minilm(max_length=48, pooling="pooler", seed=1)
    return model, model.save_pretrained(tmp_path_factory.mktemp("trained") / "ce")


def test_pack_drops_the_shared_table_and_unpacks_to_the_same_scores(root, trained):
    model, folder = trained
    (folder / "training.json").write_text("{}")
    packed = checkpoints.pack(folder, "toy", {"name": "toy", "recipe": {"kind": "cross-encoder"}})
    manifest = json.loads((packed / checkpoints.MANIFEST).read_text())
    assert manifest["shared_name"] == "bert.embeddings.word_embeddings.weight"
    assert manifest["weights_bytes"] < 0.6 * (folder / "model.safetensors").stat().st_size
    assert checkpoints.shipped() == ["toy"]
    loaded = CrossEncoder.from_pretrained(checkpoints.unpacked("toy"))
    # float16 weights: the scores move by rounding only
    assert_close(loaded.score(QUERY, DOCS), model.score(QUERY, DOCS), depth=8,
                 dtype=torch.float16, what="unpacked fp16 vs trained fp32")
    assert torch.equal(loaded.encoder.embeddings.word_embeddings.weight,
                       model.encoder.embeddings.word_embeddings.weight)
    assert checkpoints.unpacked("toy") == checkpoints.unpacked("toy")  # cached: unpacked once


def test_a_damaged_or_unshareable_checkpoint_is_refused(root, trained, tmp_path):
    model, folder = trained
    packed = checkpoints.pack(folder, "toy", {"recipe": {"kind": "cross-encoder"}})
    weights = packed / "model.fp16.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="sha256 is not the manifest's"):
        checkpoints.unpack("toy", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight[0, 0] += 1  # a table that was trained
    moved = model.save_pretrained(tmp_path / "moved")
    with pytest.raises(ValueError, match="--freeze-word-embeddings"):
        checkpoints.pack(moved, "moved", {})
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight[0, 0] -= 1
    with pytest.raises(FileNotFoundError, match="no checkpoint 'nothing'"):
        checkpoints.load("nothing")


@pytest.mark.slow
@pytest.mark.parametrize("name", checkpoints.shipped())
def test_each_shipped_checkpoint_reproduces_its_dev_metric(name):
    manifest = checkpoints.read_manifest(name)
    assert manifest["data"] == dataset_fingerprint(PYDOCS_DIR), "pydocs changed since training"
    assert manifest["weights_bytes"] <= checkpoints.MAX_BYTES
    for key in ("command", "recipe", "seed", "steps", "hardware", "seconds", "dev_fp32", "dev"):
        assert key in manifest, key
    got = checkpoints.dev_metrics(checkpoints.load(name))
    for metric, recorded in manifest["dev"].items():
        # 100 queries: float rounding that swaps two near-tied passages moves a mean by ~0.001
        assert abs(got[metric] - recorded) <= 0.005, (name, metric, got[metric], recorded)
    # float16 cost (almost) nothing: shipped vs trained, as recorded when packing
    assert abs(manifest["dev"]["ndcg@10"] - manifest["dev_fp32"]["ndcg@10"]) <= 0.01


def test_every_recipe_has_a_kind_and_the_shipped_ones_a_recipe():
    assert {r["kind"] for r in checkpoints.RECIPES.values()} == {"cross-encoder", "colbert",
                                                                  "biencoder"}
    assert set(checkpoints.shipped()) <= set(checkpoints.RECIPES)
