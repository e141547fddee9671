"""tinyir.biencoder: BiEncoder.minilm().encode equals sentence-transformers' all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tinyir.biencoder import BiEncoder
from tinyir.encoder import Encoder, EncoderConfig
from tinyir.pretrained import minilm_path
from tinyir.testing import assert_close
from tinyir.tokenizer import Tokenizer

TEXTS = [
    "What is dense retrieval?",
    "hi",
    "Rerankers read the query and the document together, so they are slower but sharper. " * 25,
    "BM25 counts exact word matches.",
    "x",
    "Late interaction keeps one vector per token and scores with MaxSim over the query tokens.",
    "A bi-encoder embeds queries and documents separately; relevance is a dot product. " * 3,
]


def _sentence_transformer(folder):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


@pytest.fixture(scope="module")
def minilm() -> BiEncoder:
    return BiEncoder.minilm()


@pytest.fixture(scope="module")
def st_model():
    return _sentence_transformer(minilm_path())


# 6 encoder layers, then mean pooling and L2 normalization; unit vectors: scale 1
EMBEDDING_DEPTH = 6 + 2


def st_encode(model, texts, batch_size=3):
    return model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                        normalize_embeddings=False, show_progress_bar=False)


def test_minilm_settings_follow_its_folder(minilm):
    assert (minilm.pooling, minilm.normalize, minilm.max_length) == ("mean", True, 256)
    assert minilm.embedding_dim == 384 and minilm.tokenizer.vocab_size == 30522


@pytest.mark.parametrize("batch_size", [3, 64])
def test_encode_equals_sentence_transformers(minilm, st_model, batch_size):
    assert len(minilm.tokenizer.encode_ids([TEXTS[2]], max_length=10_000)[0]) > 256  # truncated
    expected = st_encode(st_model, TEXTS, batch_size)
    got = minilm.encode(TEXTS, batch_size=batch_size, progress=False)
    assert got.shape == (len(TEXTS), 384) and got.dtype == torch.float32
    assert_close(got, expected, depth=EMBEDDING_DEPTH, scale=1.0,
                 what="tinyir vs sentence-transformers")
    assert_close(got.norm(dim=1), torch.ones(len(TEXTS)), what="norms")


def test_encode_restores_the_original_order(minilm):
    forward = minilm.encode(TEXTS, batch_size=2, progress=False)
    backward = minilm.encode(TEXTS[::-1], batch_size=2, progress=False)
    # other batches, other padding: another code path, so a tolerance, not equality
    assert_close(backward, forward.flip(0), depth=EMBEDDING_DEPTH, scale=1.0, what="reversed")
    one = minilm.encode([TEXTS[5]], progress=False)
    assert_close(one[0], forward[5], depth=EMBEDDING_DEPTH, scale=1.0, what="alone vs batched")


def test_forward_is_differentiable_and_equals_encode(minilm):
    batch = minilm.tokenize(TEXTS[:3])
    embeddings = minilm(batch)
    assert embeddings.requires_grad and embeddings.shape == (3, 384)
    embeddings[:, 0].sum().backward()
    grad = minilm.encoder.layers[0].attention.query.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    minilm.zero_grad(set_to_none=True)
    assert_close(embeddings.detach(), minilm.encode(TEXTS[:3]), depth=EMBEDDING_DEPTH, scale=1.0,
                 what="forward (autograd) vs encode (inference)")


def test_progress_bar_and_numpy(minilm, capsys):
    minilm.encode(TEXTS, batch_size=2)
    assert "encode" in capsys.readouterr().err  # N > batch_size: a bar on stderr
    minilm.encode(TEXTS, batch_size=2, progress=False)
    minilm.encode(TEXTS[:2], batch_size=64)
    assert capsys.readouterr().err == ""
    array = minilm.encode(TEXTS[:2], convert_to_numpy=True)
    assert isinstance(array, np.ndarray) and array.shape == (2, 384)


def test_max_length_argument_truncates(minilm):
    short = minilm.encode([TEXTS[2]], max_length=16)
    assert not torch.allclose(short, minilm.encode([TEXTS[2]]), atol=1e-3)
    expected = minilm(minilm.tokenize([TEXTS[2]], max_length=16))
    assert_close(short, expected.detach(), depth=EMBEDDING_DEPTH, scale=1.0,
                 what="encode vs forward at max_length=16")


def test_save_load_round_trip(minilm, tmp_path):
    folder = tmp_path / "model"
    minilm.save_pretrained(folder)
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tinyir.json",
            "modules.json", "1_Pooling/config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl", ".pth")) for n in names)  # no pickles
    assert json.loads((folder / "tinyir.json").read_text()) == {
        "pooling": "mean", "normalize": True, "max_length": 256}
    again = BiEncoder.from_pretrained(folder)
    assert torch.equal(again.encode(TEXTS), minilm.encode(TEXTS))

    minilm.save_pretrained(folder)  # overwriting an existing folder works, leaves no temp dirs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    st_reloaded = _sentence_transformer(folder)  # sentence-transformers reads our folder too
    assert_close(st_encode(st_reloaded, TEXTS), minilm.encode(TEXTS), depth=EMBEDDING_DEPTH,
                 scale=1.0, what="sentence-transformers on our folder vs tinyir")


def test_tiny_model_from_scratch(tmp_path):
    corpus = ["the cat sat on the mat", "dense vectors for retrieval", "a query and a document"]
    tok = Tokenizer.train(corpus * 5, vocab_size=80)
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig.tiny(vocab_size=tok.vocab_size, max_position=64))
    for pooling in ("mean", "cls", "lasttoken"):
        model = BiEncoder(encoder, tok, pooling=pooling, normalize=False, max_length=64)
        out = model.encode(corpus)
        assert out.shape == (3, 128)
        assert model.training  # encode() restores the mode it found
    model.save_pretrained(tmp_path / "tiny")
    again = BiEncoder.from_pretrained(tmp_path / "tiny")
    assert (again.pooling, again.normalize, again.max_length) == ("lasttoken", False, 64)
    assert torch.equal(again.encode(corpus), model.eval().encode(corpus))


def test_bad_inputs(minilm):
    with pytest.raises(ValueError, match="texts: expected at least one text"):
        minilm.encode([])
    with pytest.raises(TypeError, match=r"texts\[2\]: expected str, got NoneType"):
        minilm.encode(["a", "b", None])
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1"):
        minilm.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match=r"max_length: expected an int in \[2, 512\]"):
        minilm.encode(["a"], max_length=1000)
    with pytest.raises(TypeError, match="batch: expected a dict"):
        minilm(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="pooling: expected one of"):
        BiEncoder(minilm.encoder, minilm.tokenizer, pooling="max")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        BiEncoder.from_pretrained("/nonexistent/folder")


@pytest.mark.cuda
def test_cuda_encode_matches_cpu(minilm):
    gpu = BiEncoder.minilm(device="cuda")
    got = gpu.encode(TEXTS, batch_size=3)
    assert got.device.type == "cuda"
    assert_close(got.cpu(), minilm.encode(TEXTS), depth=EMBEDDING_DEPTH, scale=1.0,
                 what="CUDA vs CPU")
    moved = BiEncoder.minilm()
    assert moved.encode(TEXTS[:2], device="cuda").device.type == "cuda"
