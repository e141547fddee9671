"""`tinyir train`: fine-tunes a bi-encoder on any BEIR folder's train split; writes a checkpoint
that tinyir and sentence-transformers both load; reports one JSON line; refuses bad input by
name and leaves nothing behind; trains in two local processes; resumes."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import tiny_encoder

from tinyir.beir import write_beir
from tinyir.biencoder import BiEncoder
from tinyir.cli import main
from tinyir.tokenizer import Tokenizer

TOPICS = ["sum", "product", "sort", "mean", "median", "reshape", "transpose", "concatenate",
          "split", "stack", "clip", "round", "sqrt", "exp", "log", "sin"]
CORPUS = {f"numpy.{t}": {"title": f"numpy.{t}", "text": f"Compute the {t} of array elements."}
          for t in TOPICS}
QUERIES = {f"q{i}": f"how do i {t} an array" for i, t in enumerate(TOPICS)}
QRELS = {"train": {f"q{i}": {f"numpy.{t}": 1} for i, t in enumerate(TOPICS[:12])},
         "test": {f"q{i}": {f"numpy.{t}": 1} for i, t in enumerate(TOPICS[12:], start=12)}}


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beir") / "toy"
    write_beir(folder, CORPUS, QUERIES, QRELS)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small bi-encoder folder (MiniLM's vocabulary, a 1-layer 32-wide encoder)."""
    tokenizer = Tokenizer.minilm()
    model = BiEncoder(tiny_encoder(tokenizer.vocab_size), tokenizer, pooling="mean",
                      normalize=True, max_length=32)
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


def _train(beir, model, out, *extra) -> list[str]:
    return ["train", "--beir", str(beir), "--model", str(model), "--out", str(out),
            "--batch-size", "4", "--max-length", "24", "--lr", "1e-3", "--quiet", *extra]


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_trains_and_writes_a_folder_both_libraries_load(beir, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train(beir, tiny_model, out, "--epochs", "2")) == 0
    result = _last_json(capsys)
    assert result["steps"] == 6 and result["examples"] == 12 and result["out"] == str(out)
    assert result["final_loss"] > 0 and result["processes"] == 1
    history = json.loads((out / "training.json").read_text())
    assert history["epochs_done"] == 2 and len(history["history"]["losses"]) == 6
    trained = BiEncoder.from_pretrained(out)
    start = BiEncoder.from_pretrained(tiny_model)
    texts = list(QUERIES.values())
    assert not torch.equal(trained.encode(texts, progress=False), start.encode(texts, progress=False))
    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_tensor=True)
    assert (theirs - trained.encode(texts, progress=False)).abs().max() <= 1e-5


def test_max_steps_hard_negatives_and_the_cache(beir, tmp_path, capsys):
    # MiniLM mines: an untrained model ranks negatives above positives, and the false-negative
    # filter (5% under the best positive) rightly drops them all.
    args = _train(beir, "minilm", tmp_path / "run", "--epochs", "3", "--max-steps", "4",
                  "--hard-negatives", "1", "--mini-batch", "3", "--loss", "triplet")
    assert main(args) == 0
    result = _last_json(capsys)
    assert result["steps"] == 4 and result["examples"] >= 10


@pytest.mark.parametrize("problem, message", [
    ("no split", "qrels/train.tsv not found"),
    ("unknown id", "corpus-id 'numpy.nothing' not found"),
    ("empty split", "has no query with a relevant passage"),
    ("not a model", "config.json"),
    ("out exists", "exists and is not an empty folder"),
    ("resume nothing", "holds no checkpoint"),
    ("odd batch", "batch-size: expected a multiple of --nproc 3"),
])
def test_bad_input_is_named_and_leaves_nothing(beir, tiny_model, tmp_path, capsys, problem,
                                               message):
    folder, model, out, extra = beir, tiny_model, tmp_path / "run", []
    if problem in ("no split", "unknown id", "empty split"):
        folder = tmp_path / "bad"
        qrels = {"test": QRELS["test"]}
        if problem == "unknown id":
            write_beir(folder, CORPUS, QUERIES, qrels)
            (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                        "q1\tnumpy.nothing\t1\n")
        elif problem == "empty split":
            write_beir(folder, CORPUS, QUERIES, {**qrels, "train": {"q1": {"numpy.sum": 0}}})
        else:
            write_beir(folder, CORPUS, QUERIES, qrels)
    elif problem == "not a model":
        model = tmp_path / "empty-model"
        model.mkdir()
    elif problem == "out exists":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif problem == "resume nothing":
        extra = ["--resume"]
    elif problem == "odd batch":
        extra = ["--nproc", "3"]
    assert main(_train(folder, model, out, *extra)) == 2
    err = capsys.readouterr().err
    assert "tinyir train: error:" in err and message in err, err
    if problem == "out exists":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not out.exists()


def test_a_model_that_is_not_a_folder_is_refused_by_the_parser(beir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(_train(beir, tmp_path / "missing", tmp_path / "run"))
    assert "expected 'minilm' or the folder of a saved bi-encoder" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes(beir, tiny_model, tmp_path, capsys):
    assert main(_train(beir, tiny_model, tmp_path / "run", "--nproc", "2", "--epochs", "1")) == 0
    result = _last_json(capsys)
    assert result["processes"] == 2 and result["steps"] == 3
    assert BiEncoder.from_pretrained(tmp_path / "run").max_length == 32


# --- tinyir train-reranker: same conventions, a cross-encoder folder both libraries load


def _train_reranker(beir, model, out, *extra) -> list[str]:
    return ["train-reranker", "--beir", str(beir), "--model", str(model), "--out", str(out),
            "--batch-size", "2", "--negatives", "2", "--max-length", "32", "--lr", "1e-3",
            "--quiet", *extra]


def test_train_reranker_writes_a_folder_both_libraries_load(beir, tiny_model, tmp_path, capsys):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from tinyir.rerank import CrossEncoder
    from tinyir.testing import assert_close

    out = tmp_path / "reranker"
    args = _train_reranker(beir, tiny_model, out, "--epochs", "2")  # BM25 mines the negatives
    assert main(args) == 0
    result = _last_json(capsys)
    steps = 2 * -(-result["examples"] // 2)
    assert result["steps"] == steps and result["pooling"] == "pooler"
    assert result["pairs_per_step"] == 6 and result["final_loss"] > 0
    assert json.loads((out / "training.json").read_text())["epochs_done"] == 2
    trained = CrossEncoder.from_pretrained(out)
    pairs = [(QUERIES["q0"], CORPUS[d]["text"]) for d in list(CORPUS)[:5]]
    ours = trained.score(pairs)
    theirs = torch.as_tensor(STCrossEncoder(str(out), device="cpu").predict(pairs))
    assert_close(theirs, ours, depth=3, what="sentence-transformers vs tinyir")

    # only a frozen table stays as it was
    start = BiEncoder.from_pretrained(tiny_model).encoder.embeddings.word_embeddings.weight
    assert not torch.equal(trained.encoder.embeddings.word_embeddings.weight, start)
    frozen = tmp_path / "frozen"
    assert main(_train_reranker(beir, tiny_model, frozen, "--freeze-word-embeddings")) == 0
    table = CrossEncoder.from_pretrained(frozen).encoder.embeddings.word_embeddings.weight
    assert torch.equal(table, start)

    # --resume continues the checkpoint: a third epoch on top of the two
    assert main(_train_reranker(beir, out, out, "--epochs", "3", "--resume")) == 0
    history = json.loads((out / "training.json").read_text())
    assert history["epochs_done"] == 3 and len(history["history"]["losses"]) == 3 * steps // 2


@pytest.mark.parametrize("problem, message", [
    ("not a model", "config.json"),
    ("pooling mismatch", "is a cross-encoder with pooling 'pooler'; got 'mean'"),
    ("out exists", "exists and is not an empty folder"),
    ("no split", "qrels/train.tsv not found"),
])
def test_train_reranker_refuses_bad_input_by_name(beir, tiny_model, tmp_path, capsys, problem,
                                                  message):
    from tinyir.rerank import CrossEncoder

    folder, model, out, extra = beir, tiny_model, tmp_path / "run", []
    if problem == "not a model":
        model = tmp_path / "empty-model"
        model.mkdir()
    elif problem == "pooling mismatch":
        base = BiEncoder.from_pretrained(tiny_model)
        model = CrossEncoder.from_encoder(base.encoder, base.tokenizer, 32, "pooler")
        model = model.save_pretrained(tmp_path / "ce")
        extra = ["--pooling", "mean"]
    elif problem == "out exists":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif problem == "no split":
        folder = tmp_path / "bad"
        write_beir(folder, CORPUS, QUERIES, {"test": QRELS["test"]})
    assert main(_train_reranker(folder, model, out, *extra)) == 2
    err = capsys.readouterr().err
    assert "tinyir train-reranker: error:" in err and message in err, err
    if problem == "out exists":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not out.exists()
