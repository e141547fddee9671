"""Training loop: batches without duplicates, the loss falls, evaluation runs per epoch,
hard negatives and triplet/Matryoshka variants train, bad examples are named."""

from __future__ import annotations

import random

import pytest
import torch

from tinyir.biencoder import BiEncoder
from tinyir.encoder import Encoder, EncoderConfig
from tinyir.tokenizer import Tokenizer
from tinyir.train import TrainConfig, make_batches, train_biencoder

TOPICS = ["sum", "product", "sort", "mean", "median", "reshape", "transpose", "concatenate",
          "split", "stack", "clip", "round", "sqrt", "exp", "log", "sin"]


def toy_pairs() -> list[tuple[str, str]]:
    return [(f"how do i {t} an array", f"numpy.{t} compute the {t} of array elements")
            for t in TOPICS]


TOKENIZER = Tokenizer.train([t for pair in toy_pairs() for t in pair], vocab_size=200,
                            min_frequency=1)


def tiny_model(seed: int = 0) -> BiEncoder:
    torch.manual_seed(seed)
    tok = TOKENIZER
    config = EncoderConfig.tiny(vocab_size=tok.vocab_size, hidden_size=32, num_layers=1,
                                num_heads=2, intermediate_size=64, max_position=64, dropout=0.0)
    return BiEncoder(Encoder(config), tok, pooling="mean", normalize=True, max_length=32)


def test_batches_never_repeat_a_text():
    examples = [("q1", "p1", ()), ("q1", "p2", ()), ("q2", "p1", ()), ("q3", "p3", ())]
    batches = make_batches(examples, batch_size=4, rng=random.Random(0))
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]
    for batch in batches:
        texts = [t for i in batch for t in examples[i][:2]]
        assert len(texts) == len(set(texts)), batch


def test_infonce_training_lowers_loss_and_evaluates_each_epoch():
    model = tiny_model()
    calls = []

    def eval_fn(m):
        calls.append(m.training)
        return {"score": float(len(calls))}

    history = train_biencoder(model, toy_pairs(), TrainConfig(epochs=6, batch_size=8, lr=3e-3),
                              eval_fn=eval_fn, progress=False)
    assert len(history.losses) == 12  # 16 pairs / 8 per batch x 6 epochs
    assert history.losses[-1] < history.losses[0] * 0.7
    assert [e["epoch"] for e in history.evals] == list(range(7))
    assert calls == [False] * 7  # evaluated in eval mode
    assert not model.training


def test_training_is_seeded():
    a = train_biencoder(tiny_model(), toy_pairs(), TrainConfig(epochs=1, batch_size=8, lr=1e-3),
                        progress=False)
    b = train_biencoder(tiny_model(), toy_pairs(), TrainConfig(epochs=1, batch_size=8, lr=1e-3),
                        progress=False)
    assert a.losses == b.losses


@pytest.mark.parametrize("loss, extra", [("infonce", {}), ("triplet", {}),
                                         ("infonce", {"matryoshka_dims": (32, 16, 8)}),
                                         ("infonce", {"symmetric": True})])
def test_variants_with_hard_negatives_train(loss, extra):
    pairs = toy_pairs()
    triples = [(q, p, [pairs[(i + 1) % len(pairs)][1]]) for i, (q, p) in enumerate(pairs)]
    history = train_biencoder(tiny_model(), triples,
                              TrainConfig(epochs=4, batch_size=4, lr=3e-3, loss=loss, **extra),
                              progress=False)
    assert all(torch.isfinite(torch.tensor(history.losses)))
    assert sum(history.losses[-4:]) < sum(history.losses[:4])


def test_bad_examples_are_named():
    model = tiny_model()
    with pytest.raises(ValueError, match="examples"):
        train_biencoder(model, [], progress=False)
    with pytest.raises(ValueError, match=r"examples\[1\]"):
        train_biencoder(model, [("q", "p"), ("q",)], progress=False)
    with pytest.raises(ValueError, match="same number of negatives"):
        train_biencoder(model, [("q", "p", ["n"]), ("r", "s", [])], progress=False)
    with pytest.raises(ValueError, match="triplet"):
        train_biencoder(model, toy_pairs(), TrainConfig(loss="triplet"), progress=False)
    with pytest.raises(ValueError, match="temperature"):
        TrainConfig(temperature=0)


def test_a_lone_pair_is_not_a_batch():
    pairs = toy_pairs()[:9]  # 8 + 1 with batch_size 8: the last batch would hold one pair
    history = train_biencoder(tiny_model(), pairs, TrainConfig(epochs=1, batch_size=8),
                              progress=False)
    assert len(history.losses) == 1 and history.losses[0] > 0
