"""Training: the one scaffold (`fit`) equals a plain hand-written loop, saves a checkpoint per
epoch; the bi-encoder's batches have no duplicates, its loss falls, evaluation runs per epoch,
hard negatives and triplet/Matryoshka variants train, bad examples are named."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tinyir.biencoder import BiEncoder
from tinyir.encoder import Encoder, EncoderConfig
from tinyir.testing import assert_close
from tinyir.tokenizer import Tokenizer
from tinyir.train import (
    TrainConfig,
    epochs_of,
    fit,
    make_batches,
    train_biencoder,
    warmup_linear_schedule,
)

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


# -- the scaffold ------------------------------------------------------------------------------


def _regression(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(40, 5, generator=g), torch.randn(40, 1, generator=g)
    torch.manual_seed(seed)
    return torch.nn.Linear(5, 1), x, y


def test_fit_is_the_plain_loop():
    """Same seed, same batches: fit's weights equal a hand-written AdamW loop's, bit for bit
    (one code path), with warm-up, decay and clipping."""
    epochs = epochs_of(40, epochs=3, batch_size=8, seed=1)
    model, x, y = _regression()
    history = fit(model, epochs, lambda rows: ((model(x[rows]) - y[rows]) ** 2).mean(), lr=0.05,
                  warmup_ratio=0.2, weight_decay=0.01, grad_clip=0.5, progress=False)

    ref, x, y = _regression()
    optimizer = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.01)
    total, warmup = 15, 3
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else (total - s) / (total - warmup))
    losses = []
    for batches in epochs:
        for rows in batches:
            loss = ((ref(x[rows]) - y[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    assert history.losses == losses
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)
    assert not model.training


def test_constant_schedule():
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    schedule = warmup_linear_schedule(optimizer, total_steps=10, warmup_ratio=0.0, decay=False)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == [1.0] * 10


def test_epochs_of_covers_each_item_once_per_epoch_and_stops_at_max_steps():
    epochs = epochs_of(10, epochs=3, batch_size=4, seed=0)
    assert [len(b) for b in epochs] == [3, 3, 3]
    for batches in epochs:
        assert sorted(i for batch in batches for i in batch) == list(range(10))
    assert epochs != [epochs[0]] * 3  # shuffled again each epoch
    assert epochs_of(10, 3, 4, seed=0) == epochs  # and deterministic
    cut = epochs_of(10, epochs=3, batch_size=4, seed=0, max_steps=4)
    assert cut == [epochs[0], epochs[1][:1]]


def test_fit_evaluates_and_saves_each_epoch(tmp_path):
    model = tiny_model()
    seen = []

    def eval_fn(m):
        assert not m.training and not torch.is_grad_enabled()
        seen.append(len(history_files()))
        return {"norm": float(m.encode(["how do i sum an array"], progress=False).norm())}

    def history_files():
        return sorted(tmp_path.glob("ckpt/training.json"))

    history = train_biencoder(model, toy_pairs(), TrainConfig(epochs=2, batch_size=8),
                              eval_fn=eval_fn, save_to=tmp_path / "ckpt", progress=False)
    assert [e["epoch"] for e in history.evals] == [0, 1, 2]
    assert seen == [0, 0, 1]  # epoch 1 is evaluated before its checkpoint is written
    saved = json.loads((tmp_path / "ckpt" / "training.json").read_text())
    assert saved["epochs_done"] == 2
    assert saved["history"]["losses"] == history.losses and len(saved["history"]["evals"]) == 3
    loaded = BiEncoder.from_pretrained(tmp_path / "ckpt")
    texts = [q for q, _ in toy_pairs()]
    assert torch.equal(loaded.encode(texts, progress=False), model.encode(texts, progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folder left


def test_fit_rejects_a_bad_learning_rate():
    model, x, y = _regression()
    with pytest.raises(ValueError, match="lr"):
        fit(model, [[[0, 1]]], lambda rows: model(x[rows]).sum(), lr=0.0)


# -- gradient caching and processes -----------------------------------------------------------


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _dropout_model(dropout: float) -> BiEncoder:
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=TOKENIZER.vocab_size, hidden_size=32, num_layers=2,
                                num_heads=2, intermediate_size=64, max_position=64,
                                dropout=dropout)
    return BiEncoder(Encoder(config), TOKENIZER, pooling="mean", normalize=True, max_length=32)


def _triples(n: int = 8):
    pairs = toy_pairs()
    # Each negative is another topic's passage, reworded: no text repeats, so batches are full.
    return [(q, p, (pairs[(i + 3) % len(pairs)][1] + " instead",))
            for i, (q, p) in enumerate(pairs[:n])]


@pytest.mark.parametrize("extra", [{}, {"symmetric": True}, {"loss": "triplet"},
                                   {"matryoshka_dims": (8, 16, 32)}])
def test_cached_step_has_the_full_batch_gradient(extra):
    """GradCache in mini-batches of 3 texts: the same loss and the same weight gradients as one
    full-batch step (8 queries, 8 positives, 8 hard negatives), by the tolerance rule."""
    from tinyir.train import cached_step_loss, plain_step_loss

    batch = _triples()
    plain_config = TrainConfig(**extra)
    cached_config = TrainConfig(mini_batch=3, **extra)
    plain, cached = _dropout_model(0.0).train(), _dropout_model(0.0).train()
    expected_loss = plain_step_loss(plain, batch, 1, plain_config)
    expected_loss.backward()
    loss = cached_step_loss(cached, batch, 1, cached_config)
    assert not loss.requires_grad
    assert_close(loss, expected_loss, depth=4, what="cached loss")
    expected = _grads(plain)
    got = _grads(cached)
    assert got.keys() == expected.keys()
    scale = max(float(g.abs().max()) for g in expected.values())  # a key bias's is ~0 (exactly,
    for name in expected:                                         # in exact arithmetic)
        assert_close(got[name], expected[name], depth=8, scale=scale, what=f"gradient of {name}")


def test_cached_step_replays_dropout():
    """With dropout on, the second (gradient) pass must draw the masks of the first: the cached
    gradients equal those of embedding the same mini-batches with gradients in one pass."""
    from tinyir.train import _batch_loss, _texts, cached_step_loss

    batch, config = _triples(), TrainConfig(mini_batch=4)
    reference, cached = _dropout_model(0.3).train(), _dropout_model(0.3).train()
    queries, docs = _texts(batch)
    torch.manual_seed(5)
    parts = [reference(reference.tokenize(t[i:i + 4], 32)) for t in (queries, docs)
             for i in range(0, len(t), 4)]
    embeddings = torch.cat(parts)
    _batch_loss(embeddings[:8], embeddings[8:], 1, config).backward()
    torch.manual_seed(5)
    cached_step_loss(cached, batch, 1, config)
    expected = _grads(reference)
    scale = max(float(g.abs().max()) for g in expected.values())
    for name, grad in _grads(cached).items():
        assert_close(grad, expected[name], depth=8, scale=scale, what=f"gradient of {name} with dropout")


def test_training_with_a_cache_is_training_without():
    plain, cached = _dropout_model(0.0), _dropout_model(0.0)
    examples = _triples(16)
    train_biencoder(plain, examples, TrainConfig(epochs=2, batch_size=8, lr=1e-3), progress=False)
    train_biencoder(cached, examples, TrainConfig(epochs=2, batch_size=8, lr=1e-3, mini_batch=5),
                    progress=False)
    for (name, a), b in zip(plain.state_dict().items(), cached.state_dict().values(), strict=True):
        assert_close(b, a, depth=16, scale=max(1.0, float(a.abs().max())), what=name)


def _train_in_process(rank: int, world: int, port: int, out: str, mini_batch) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        model = _dropout_model(0.0)
        if rank == 1:  # a different start: training must begin from rank 0's weights
            torch.nn.init.normal_(model.encoder.embeddings.word_embeddings.weight)
        history = train_biencoder(model, _triples(16), TrainConfig(
            epochs=2, batch_size=8, lr=1e-3, mini_batch=mini_batch), progress=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  f"{out}/rank{rank}.safetensors")
        Path(f"{out}/rank{rank}.json").write_text(json.dumps(history.losses))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("mini_batch", [None, 3])
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, mini_batch):
    """Two gloo processes on localhost, each embedding half of every batch of 8 and gathering the
    other half with gradients, end where one process with batches of 8 ends (tolerance rule)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_train_in_process, args=(2, port, str(tmp_path), mini_batch), nprocs=2, join=True)
    alone = _dropout_model(0.0)
    history = train_biencoder(alone, _triples(16), TrainConfig(epochs=2, batch_size=8, lr=1e-3),
                              progress=False)
    for rank in range(2):
        losses = json.loads((tmp_path / f"rank{rank}.json").read_text())
        state = load_file(tmp_path / f"rank{rank}.safetensors")
        assert len(losses) == len(history.losses) == 4
        assert_close(torch.tensor(losses), torch.tensor(history.losses), depth=8,
                     what="the loss of every step")
        for name, a in alone.state_dict().items():
            assert_close(state[name], a, depth=16, scale=max(1.0, float(a.abs().max())),
                         what=name)


def test_a_run_resumed_from_its_checkpoint_ends_where_an_uninterrupted_one_does(tmp_path):
    """Stopped after epoch 1 (an error in epoch 2's evaluation), resumed from the checkpoint on a
    freshly initialised model: bit-identical weights and losses to three epochs in one go, with
    dropout on (the RNG state travels in the checkpoint)."""
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-3)

    def stop_at_epoch_2(model):
        if stop_at_epoch_2.calls == 1:
            raise KeyboardInterrupt
        stop_at_epoch_2.calls += 1
        return {}

    stop_at_epoch_2.calls = 0
    straight = _dropout_model(0.2)
    expected = train_biencoder(straight, _triples(16), config, eval_before=False, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_biencoder(_dropout_model(0.2), _triples(16), config, eval_fn=stop_at_epoch_2,
                        eval_before=False, save_to=tmp_path / "ckpt", progress=False)
    assert json.loads((tmp_path / "ckpt" / "training.json").read_text())["epochs_done"] == 1
    fresh = _dropout_model(0.2)
    torch.nn.init.normal_(fresh.encoder.embeddings.word_embeddings.weight)  # not the start
    resumed = train_biencoder(fresh, _triples(16), config, eval_before=False,
                              save_to=tmp_path / "ckpt", resume=True, progress=False)
    assert resumed.losses == expected.losses
    for name, value in straight.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    loaded = BiEncoder.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.encode(["sum an array"], progress=False),
                       straight.encode(["sum an array"], progress=False))
