"""tinyir.tokenizer: ids equal Hugging Face's AutoTokenizer on MiniLM's vocabulary."""

from __future__ import annotations

import os

import pytest
import torch

from tinyir.pretrained import minilm_path
from tinyir.tokenizer import SPECIAL_TOKENS, Tokenizer

TEXTS = [
    "Hello, World!",
    "Naïve café résumé — déjà vu; don't panic?",
    "日本語のテキストと English mixed",
    "",
    "   \t\n  ",
    "A tokenizer splits unbelievably-long-words into ##pieces (e.g. 'tokenization').",
    "emoji 🙂 and control\x00chars\u200b and numbers 3.14159",
    "dense retrieval " * 400,  # > 512 tokens: truncated, never a crash
]

CORPUS = [
    "the cat sat on the mat",
    "the dog ate my homework",
    "a cat and a dog are friends",
    "retrieval with dense embeddings and sparse bm25",
    "the retriever returns the top documents for each query",
] * 20


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.minilm()


@pytest.fixture(scope="module")
def hf():
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("max_length", [256, 512, 16])
def test_ids_equal_hugging_face(tok, hf, padding_side, max_length):
    hf.padding_side = padding_side
    expected = hf(TEXTS, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    got = tok(TEXTS, max_length=max_length, padding_side=padding_side)
    assert got["input_ids"].dtype == torch.long and got["attention_mask"].dtype == torch.long
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["attention_mask"], expected["attention_mask"])


def test_truncation_keeps_sep_and_pads_to_longest_only(tok):
    batch = tok(["short", "word " * 1000], max_length=256)
    assert batch["input_ids"].shape == (2, 256)
    assert batch["input_ids"][1, 0] == tok.cls_id and batch["input_ids"][1, -1] == tok.sep_id
    short = tok(["short", "a b"], max_length=256)
    assert short["input_ids"].shape == (2, 4)  # [CLS] a b [SEP]: the longest, not 256
    assert short["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_left_padding_puts_pads_first(tok):
    batch = tok(["a", "a b c"], padding_side="left")
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch["input_ids"][0, :2].tolist() == [tok.pad_id, tok.pad_id]


def test_tokenize_and_special_ids(tok, hf):
    for text in TEXTS[:7]:
        assert tok.tokenize(text) == hf.tokenize(text)
    assert tok.tokenize("Tokenizers") == ["token", "##izer", "##s"]
    assert tok.vocab_size == len(hf) == 30522
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert tok.lowercase is True
    assert tok.decode(tok(["Hello there"])["input_ids"][0]) == "hello there"


def test_from_vocab_equals_tokenizer_json(tok):
    from_vocab = Tokenizer.from_vocab(minilm_path() / "vocab.txt", lowercase=True)
    assert torch.equal(from_vocab(TEXTS)["input_ids"], tok(TEXTS)["input_ids"])


def test_save_and_reload(tok, tmp_path):
    path = tok.save(tmp_path)
    assert path == tmp_path / "tokenizer.json"
    again = Tokenizer.from_file(path)
    assert torch.equal(again(TEXTS)["input_ids"], tok(TEXTS)["input_ids"])


def test_train_is_deterministic_and_small():
    a = Tokenizer.train(CORPUS, vocab_size=120, min_frequency=2)
    b = Tokenizer.train(iter(CORPUS), vocab_size=120, min_frequency=2)
    assert a.backend.get_vocab() == b.backend.get_vocab()
    assert a.vocab_size <= 120
    assert [a.backend.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    batch = a(["the cat retrieves zebras"])  # unseen word: pieces or [UNK], never a crash
    assert batch["input_ids"][0, 0] == a.cls_id and batch["input_ids"][0, -1] == a.sep_id
    assert "cat" in a.tokenize("the cat")
    uppercase = Tokenizer.train(CORPUS, vocab_size=120, lowercase=False)
    assert uppercase.lowercase is False and a.lowercase is True


def test_bad_inputs(tok):
    with pytest.raises(ValueError, match="texts: expected at least one text"):
        tok([])
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, got int"):
        tok(["ok", 3])
    with pytest.raises(TypeError, match="expected a list of str, got str"):
        tok("a single string")
    with pytest.raises(ValueError, match="padding_side"):
        tok(["a"], padding_side="middle")
    with pytest.raises(ValueError, match="max_length"):
        tok(["a"], max_length=1)
    with pytest.raises(TypeError, match="text: expected str"):
        tok.tokenize(None)
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(CORPUS, vocab_size=3)
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        Tokenizer.from_vocab("/nonexistent/vocab.txt")


def test_save_pretrained_round_trip(tmp_path):
    from tinyir.tokenizer import Tokenizer

    tok = Tokenizer.train(["sort a list in place", "the cumulative sum of an array"] * 20,
                          vocab_size=120, min_frequency=1)
    folder = tok.save_pretrained(tmp_path / "tok")
    assert [p.name for p in folder.iterdir()] == ["tokenizer.json"]
    again = Tokenizer.from_pretrained(folder)
    texts = ["sort the array", "cumulative list"]
    assert again.encode_ids(texts) == tok.encode_ids(texts)
