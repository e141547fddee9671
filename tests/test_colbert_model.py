"""The ColBERT model: projection + per-token L2 norm, masks (padding, punctuation), save/load."""

from __future__ import annotations

import pytest
import torch

from tinyir.colbert import ColBERT, train_projection
from tinyir.encoder import Encoder, EncoderConfig
from tinyir.maxsim import max_sim
from tinyir.testing import assert_close
from tinyir.tokenizer import Tokenizer

# the tiny encoder's 2 layers, the projection, the normalization: unit vectors, scale 1
TOKEN_DEPTH = 4
DOCS = ["numpy.cumsum(a, axis=None): cumulative sum.", "Join two paths.", "x"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.minilm()


def tiny_colbert(tokenizer, dim=16, **kwargs) -> ColBERT:
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=tokenizer.vocab_size, dropout=0.0)
    return ColBERT(Encoder(config), tokenizer, dim=dim, doc_max_length=32, **kwargs).eval()


def test_tokens_are_unit_vectors_and_masks_drop_padding_and_punctuation(tokenizer):
    model = tiny_colbert(tokenizer)
    emb, keep = model.encode_docs(DOCS)
    batch = tokenizer(DOCS, max_length=32)
    assert emb.shape == (3, batch["input_ids"].shape[1], 16)
    assert not keep[batch["attention_mask"] == 0].any(), "padding was kept"
    punctuation = torch.isin(batch["input_ids"], model.skiplist)
    assert punctuation[0].sum() >= 5 and not keep[punctuation].any()
    norms = emb.norm(dim=-1)
    assert_close(norms[keep], torch.ones(int(keep.sum())), what="token norms")
    assert (norms[~keep] == 0).all()
    q, q_keep = model.encode_queries(DOCS[:1])  # queries keep their punctuation
    assert q_keep.sum() == tokenizer(DOCS[:1], max_length=32)["attention_mask"].sum()


def test_batched_encoding_equals_one_by_one(tokenizer):
    model = tiny_colbert(tokenizer)
    emb, keep = model.encode_docs(DOCS, batch_size=2)
    for i, text in enumerate(DOCS):
        one, one_keep = model.encode_docs([text])
        L = one.shape[1]
        assert_close(emb[i, :L], one[0], depth=TOKEN_DEPTH, scale=1.0, what=f"doc {i} alone vs batched")
        assert torch.equal(keep[i, :L], one_keep[0]) and not keep[i, L:].any()


def test_without_projection_tokens_are_normalized_hidden_states(tokenizer):
    model = tiny_colbert(tokenizer, dim=None, skip_punctuation=False)
    assert model.dim == 128
    batch = model.tokenize(DOCS[1:2], is_query=False)
    hidden = model.encoder(batch["input_ids"], batch["attention_mask"])
    emb, _ = model(batch, is_query=False)
    assert_close(emb, torch.nn.functional.normalize(hidden, dim=-1), what="normalized hidden")


def test_save_load_round_trip(tokenizer, tmp_path):
    model = tiny_colbert(tokenizer)
    loaded = ColBERT.from_pretrained(model.save_pretrained(tmp_path / "cb"))
    assert loaded.dim == 16 and loaded.doc_max_length == 32
    for a, b in zip(model.encode_docs(DOCS), loaded.encode_docs(DOCS), strict=True):
        assert torch.equal(a, b)  # same weights, same code path: exact


def test_same_seed_same_projection(tokenizer):
    assert torch.equal(tiny_colbert(tokenizer).projection.weight,
                       tiny_colbert(tokenizer).projection.weight)


def test_train_projection_lowers_the_loss_and_leaves_the_encoder_alone(tokenizer):
    model = tiny_colbert(tokenizer, dim=8)
    before = {n: p.clone() for n, p in model.encoder.named_parameters()}
    pairs = [("sum of elements", "cumsum sum elements"), ("open a file", "open file"),
             ("sort a list", "sorted list"), ("random number", "random integer"),
             ("join paths", "path join"), ("read bytes", "read binary bytes")]
    losses = train_projection(model, pairs, epochs=40, lr=1e-2, batch_size=6, progress=False).losses
    assert sum(losses[-5:]) / 5 < losses[0] - 0.2, (losses[0], losses[-5:])
    for name, p in model.encoder.named_parameters():
        assert torch.equal(p, before[name]), name
    q, qm = model.encode_queries([q for q, _ in pairs])
    d, dm = model.encode_docs([d for _, d in pairs])
    scores = max_sim(q, qm, d, dm)  # (6, 6)
    assert (scores.argmax(dim=1) == torch.arange(6)).float().mean() >= 0.5


PAIRS = [("sum of elements", "cumsum sum elements"), ("open a file", "open file"),
         ("sort a list", "sorted list"), ("random number", "random integer"),
         ("join paths", "path join"), ("read bytes", "read binary bytes")]


def test_train_colbert_trains_encoder_and_projection_through_maxsim(tokenizer, tmp_path):
    from tinyir.colbert import train_colbert

    model = tiny_colbert(tokenizer, dim=8)
    before = {n: p.clone() for n, p in model.named_parameters()}
    # each negative is another pair's positive: make_batches keeps such pairs apart
    examples = [(q, d, [PAIRS[(i + 1) % len(PAIRS)][1]]) for i, (q, d) in enumerate(PAIRS)]
    history = train_colbert(model, examples, epochs=30, lr=1e-3, projection_lr=1e-2,
                            batch_size=6, progress=False, save_to=tmp_path / "ck")
    losses = history.losses
    assert len(losses) >= 30 and sum(losses[-5:]) / 5 < losses[0] - 0.3, (losses[0], losses[-5:])
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "projection.weight" in moved and any(n.startswith("encoder.") for n in moved)
    assert not model.training
    loaded = ColBERT.from_pretrained(tmp_path / "ck")  # fit's checkpoint is a ColBERT folder
    q, qm = model.encode_queries([q for q, _ in PAIRS])
    q2, qm2 = loaded.encode_queries([q for q, _ in PAIRS])
    assert torch.equal(q, q2) and torch.equal(qm, qm2)


def test_train_colbert_step_is_in_batch_maxsim_cross_entropy(tokenizer):
    """Oracle: the loss of one step, computed by a loop over queries and candidate passages."""
    from tinyir.colbert import train_colbert

    model = tiny_colbert(tokenizer, dim=8)
    examples = [(q, d, [PAIRS[i + 3][1]]) for i, (q, d) in enumerate(PAIRS[:3])]  # one batch
    expected_model = tiny_colbert(tokenizer, dim=8).train()
    docs = [d for _, d, _ in examples] + [n[0] for _, _, n in examples]
    logits = []
    for q_text, _, _ in examples:
        q, qk = expected_model(expected_model.tokenize([q_text], True), True)
        row = []
        for d_text in docs:
            d, dk = expected_model(expected_model.tokenize([d_text], False), False)
            sims = q[0][qk[0]] @ d[0][dk[0]].T  # (real query tokens, kept doc tokens)
            row.append(sims.max(dim=1).values.sum())
        logits.append(torch.stack(row))
    expected = torch.nn.functional.cross_entropy(torch.stack(logits), torch.arange(3))
    # one step, no warm-up: the first loss is computed before any update
    history = train_colbert(model, examples, epochs=1, batch_size=3, warmup_ratio=0.0,
                            progress=False)
    assert_close(history.losses[0], expected.item(), depth=TOKEN_DEPTH + 2, scale=1.0,
                 what="first step's loss vs loop")


def test_in_batch_loss_is_the_loop_and_reaches_the_encoder(tokenizer):
    """in_batch_loss (what each training step minimizes, and what lesson 11 writes out) equals
    the per-pair loop, and its gradient reaches the encoder as well as the projection."""
    from tinyir.colbert import in_batch_loss

    model = tiny_colbert(tokenizer, dim=8)
    queries, docs = [q for q, _ in PAIRS[:3]], [d for _, d in PAIRS[:4]]  # 3 positives + 1 extra
    logits = []
    for q_text in queries:
        q, qk = model(model.tokenize([q_text], True), True)
        row = []
        for d_text in docs:
            d, dk = model(model.tokenize([d_text], False), False)
            row.append((q[0][qk[0]] @ d[0][dk[0]].T).max(dim=1).values.sum())
        logits.append(torch.stack(row))
    expected = torch.nn.functional.cross_entropy(torch.stack(logits), torch.arange(3))
    loss = in_batch_loss(model, queries, docs)
    assert_close(loss, expected, depth=TOKEN_DEPTH + 2, scale=1.0, what="in_batch_loss vs loop")
    loss.backward()
    assert model.projection.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    with pytest.raises(ValueError, match="docs"):
        in_batch_loss(model, queries, docs[:2])  # fewer passages than queries: no positive for one
    with pytest.raises(ValueError, match="queries"):
        in_batch_loss(model, [], docs)


@pytest.mark.cuda
def test_cuda_encoding_matches_cpu(tokenizer, tmp_path):
    model = tiny_colbert(tokenizer)
    cpu, cpu_keep = model.encode_docs(DOCS)
    gpu_model = ColBERT.from_pretrained(model.save_pretrained(tmp_path / "cb"), device="cuda")
    gpu, gpu_keep = gpu_model.encode_docs(DOCS)
    assert gpu.device.type == "cuda" and torch.equal(gpu_keep.cpu(), cpu_keep)
    assert_close(gpu.cpu(), cpu, depth=TOKEN_DEPTH, scale=1.0, what="CUDA vs CPU")
