"""Cross-encoder: pair encoding vs Hugging Face, batching, rerank edge cases, save/load, training."""

from __future__ import annotations

import pytest
import torch

from tinyir.encoder import Encoder, EncoderConfig
from tinyir.pretrained import minilm_path
from tinyir.rerank import (
    CrossEncoder,
    cross_encoder_loss,
    encode_pairs,
    train_cross_encoder,
)
from tinyir.testing import assert_close, tolerance
from tinyir.tokenizer import Tokenizer

QUERY = "Return the cumulative sum of the elements along a given axis."
DOCS = [
    "numpy.cumsum cumsum(a, axis=None, dtype=None, out=None) Parameters a : array_like",
    "numpy.cumprod cumprod(a, axis=None) Return the cumulative product of elements.",
    "os.path.join join(a, *p) Join two or more pathname components.",
    "torch.nn.Linear Applies an affine linear transformation to the incoming data: y = xA^T + b",
    "x",
]


# tinyir.testing depths: the tiny encoder's 2 layers + the head; segments add mean + normalize
CLS_DEPTH = 3
SEGMENTS_DEPTH = 5


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Tokenizer:
    return Tokenizer.minilm()


@pytest.fixture(scope="module")
def tiny_model(minilm_tokenizer) -> CrossEncoder:
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=minilm_tokenizer.vocab_size, dropout=0.0)
    return CrossEncoder(Encoder(config), minilm_tokenizer, max_length=48).eval()


@pytest.mark.parametrize("max_length", [12, 40, 256])
def test_pair_encoding_equals_hugging_face(minilm_tokenizer, max_length):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(minilm_path()))
    queries = [QUERY, "join paths", "a" * 3]
    docs = [DOCS[0] * 3, DOCS[2], DOCS[4]]
    ours = encode_pairs(minilm_tokenizer, queries, docs, max_length=max_length)
    theirs = hf(queries, docs, truncation=True, max_length=max_length, padding=True,
                return_tensors="pt")
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[name], theirs[name]), name
    # The long passage was cut, the short query kept whole, and the template is BERT's.
    ids = ours["input_ids"][0].tolist()
    assert ids[0] == minilm_tokenizer.cls_id and ids.count(minilm_tokenizer.sep_id) == 2
    assert ours["token_type_ids"][0, : ids.index(minilm_tokenizer.sep_id) + 1].sum() == 0


def test_only_second_truncation_equals_hugging_face(minilm_tokenizer):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(minilm_path()))
    queries, docs = [QUERY * 2], [DOCS[1] * 4]
    ours = encode_pairs(minilm_tokenizer, queries, docs, max_length=40, truncation="only_second")
    theirs = hf(queries, docs, truncation="only_second", max_length=40, return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])


def test_encode_pairs_rejects_bad_input(minilm_tokenizer):
    with pytest.raises(ValueError, match="docs"):
        encode_pairs(minilm_tokenizer, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="truncation"):
        encode_pairs(minilm_tokenizer, ["a"], ["b"], truncation="middle")


def test_batched_scores_equal_one_by_one(tiny_model):
    batched = tiny_model.score(QUERY, DOCS, batch_size=3)  # mixed lengths: padding in batches
    alone = torch.stack([tiny_model.score([(QUERY, d)], batch_size=1)[0] for d in DOCS])
    assert batched.shape == (len(DOCS),)
    assert_close(batched, alone, depth=CLS_DEPTH, what="batched vs one by one")
    pairs = tiny_model.score([(QUERY, d) for d in DOCS])
    assert_close(pairs, batched, depth=CLS_DEPTH, what="pairs vs query + docs")


def test_rerank_orders_by_score_and_clamps_k(tiny_model):
    scores = tiny_model.score(QUERY, DOCS)
    ranked = tiny_model.rerank(QUERY, DOCS, top_k=100)  # k larger than the candidates: clamps
    assert len(ranked) == len(DOCS)
    assert [i for i, _ in ranked] == sorted(range(len(DOCS)), key=lambda i: -scores[i].item())
    assert [i for i, _ in tiny_model.rerank(QUERY, DOCS, top_k=2)] == [i for i, _ in ranked[:2]]


def test_rerank_of_no_candidates_is_empty(tiny_model):
    assert tiny_model.rerank(QUERY, [], top_k=10) == []
    assert tiny_model.score([]).shape == (0,)
    with pytest.raises(ValueError, match="top_k"):
        tiny_model.rerank(QUERY, DOCS, top_k=0)


def test_save_load_round_trip(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "ce")
    tiny_model.save_pretrained(folder)  # overwriting an existing folder works
    loaded = CrossEncoder.from_pretrained(folder)
    assert loaded.max_length == tiny_model.max_length and loaded.pooling == tiny_model.pooling
    assert torch.equal(loaded.score(QUERY, DOCS), tiny_model.score(QUERY, DOCS))  # same path
    assert not list(tmp_path.glob(".ce.*")), "temporary folders were left behind"


def test_minilm_has_a_seeded_fresh_head():
    a, b = CrossEncoder.minilm(max_length=32), CrossEncoder.minilm(max_length=32)
    assert torch.equal(a.head.weight, b.head.weight)
    assert a.encoder.config.hidden_size == 384 and a.pooling == "cls"


# --- pooling="pooler": BERT's sequence classification, a folder sentence-transformers loads


@pytest.fixture(scope="module")
def minilm_pooler() -> CrossEncoder:
    return CrossEncoder.minilm(max_length=40, pooling="pooler", seed=3)


def test_pooler_head_is_berts_pooled_output_then_the_linear_head(minilm_pooler):
    """Oracle: transformers' BertModel pooler_output (tanh(W h_CLS + b)) of the same pairs."""
    from transformers import BertModel

    from tinyir.rerank import encode_pairs

    bert = BertModel.from_pretrained(str(minilm_path())).eval()  # MiniLM's pretrained pooler
    batch = encode_pairs(minilm_pooler.tokenizer, [QUERY] * 3, DOCS[:3], max_length=40)
    with torch.no_grad():
        pooled = bert(**batch).pooler_output  # (3, 384)
        expected = minilm_pooler.head(pooled).squeeze(-1)
        got = minilm_pooler(batch)
    assert_close(got, expected, depth=8, what="pooler head vs transformers' BertModel")


def test_pooler_folder_loads_in_sentence_transformers_with_the_same_scores(minilm_pooler, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    folder = minilm_pooler.save_pretrained(tmp_path / "ce")
    pairs = [(QUERY, d) for d in DOCS] + [("short", DOCS[0] * 20)]  # one pair truncated
    ours = minilm_pooler.score(pairs)
    theirs = torch.as_tensor(STCrossEncoder(str(folder), device="cpu").predict(pairs))
    assert_close(theirs, ours, depth=8, what="sentence-transformers vs tinyir scores")
    back = CrossEncoder.from_pretrained(folder)
    assert back.pooling == "pooler" and back.max_length == 40
    assert torch.equal(back.score(pairs), ours)  # same code path: bit-identical


def test_a_hugging_face_cross_encoder_folder_loads_without_tinyirs_config(minilm_pooler, tmp_path):
    from tinyir.rerank import CONFIG_FILE

    folder = minilm_pooler.save_pretrained(tmp_path / "hf")
    (folder / CONFIG_FILE).unlink()  # what a folder from the Hugging Face hub looks like
    loaded = CrossEncoder.from_pretrained(folder)
    assert loaded.pooling == "pooler" and loaded.max_length == 40  # tokenizer_config's length
    assert torch.equal(loaded.score(QUERY, DOCS), minilm_pooler.score(QUERY, DOCS))


def test_a_folder_that_is_not_a_cross_encoder_is_refused(tmp_path):
    from tinyir.biencoder import BiEncoder

    folder = BiEncoder.minilm().save_pretrained(tmp_path / "bi")
    with pytest.raises(ValueError, match="BertForSequenceClassification with one label"):
        CrossEncoder.from_pretrained(folder)


def test_minilm_pooler_is_the_pretrained_one(minilm_pooler):
    from safetensors.torch import load_file

    weights = load_file(str(minilm_path() / "model.safetensors"))
    assert torch.equal(minilm_pooler.pooler.weight, weights["pooler.dense.weight"])
    with pytest.raises(ValueError, match="pooler: only pooling='pooler'"):
        CrossEncoder(minilm_pooler.encoder, minilm_pooler.tokenizer, pooling="cls",
                     pooler=minilm_pooler.pooler)


@pytest.fixture(scope="module")
def tiny_segments(minilm_tokenizer) -> CrossEncoder:
    torch.manual_seed(1)
    config = EncoderConfig.tiny(vocab_size=minilm_tokenizer.vocab_size, dropout=0.0)
    head = torch.nn.Linear(config.hidden_size, 1)
    torch.nn.init.normal_(head.weight)
    return CrossEncoder(Encoder(config), minilm_tokenizer, max_length=48, pooling="segments",
                        head=head).eval()


def test_segments_head_is_a_linear_map_of_the_segment_cosine_terms(tiny_segments):
    """Oracle: split each pair's token vectors by segment with a Python loop, mean, normalize."""
    model = tiny_segments
    batch = model.tokenize([QUERY] * len(DOCS), DOCS)
    with torch.no_grad():
        hidden = model.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        got = model(batch)
    for i in range(len(DOCS)):
        rows = {0: [], 1: []}
        for t in range(hidden.shape[1]):
            if batch["attention_mask"][i, t]:
                rows[int(batch["token_type_ids"][i, t])].append(hidden[i, t])
        u, v = (torch.nn.functional.normalize(torch.stack(rows[s]).mean(0), dim=0) for s in (0, 1))
        expected = model.head(u * v)
        assert_close(got[i], expected[0], depth=3, what=f"segments head vs loop, pair {i}")


def test_segments_batched_scores_equal_one_by_one_and_survive_save_load(tiny_segments, tmp_path):
    batched = tiny_segments.score(QUERY, DOCS, batch_size=3)  # padding in the batches
    alone = torch.stack([tiny_segments.score([(QUERY, d)], batch_size=1)[0] for d in DOCS])
    assert_close(batched, alone, depth=SEGMENTS_DEPTH, what="segments: batched vs one by one")
    loaded = CrossEncoder.from_pretrained(tiny_segments.save_pretrained(tmp_path / "seg"))
    assert loaded.pooling == "segments"
    assert torch.equal(loaded.score(QUERY, DOCS, batch_size=3), batched)  # same path


def test_segments_minilm_starts_as_scaled_cosine():
    """At step 0 the head is 1/tau in every dimension: the score is cos(u, v) / tau."""
    from tinyir.rerank import SEGMENTS_INIT_SCALE, segment_product

    model = CrossEncoder.minilm(max_length=32, pooling="segments")
    assert torch.all(model.head.weight == SEGMENTS_INIT_SCALE) and model.head.bias.item() == 0
    batch = model.tokenize([QUERY] * 2, DOCS[:2])
    with torch.no_grad():
        hidden = model.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        cos = segment_product(hidden, batch["attention_mask"], batch["token_type_ids"]).sum(-1)
        assert_close(model(batch), SEGMENTS_INIT_SCALE * cos, depth=2, what="head vs scaled cosine")
    assert cos.abs().max() <= 1 + tolerance(depth=3)[0]  # mean, normalize, dot product


def test_segment_product_rejects_missing_segments():
    from tinyir.rerank import segment_product

    hidden, mask = torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="token_type_ids"):
        segment_product(hidden, mask, None)
    with pytest.raises(ValueError, match="token_type_ids"):
        segment_product(hidden, mask, torch.zeros(2, 4, dtype=torch.long))  # no passage tokens


def test_listwise_loss_is_cross_entropy_and_log_k_at_constant_scores():
    scores = torch.zeros(4, 5)
    assert cross_encoder_loss(scores).item() == pytest.approx(torch.log(torch.tensor(5.0)).item())
    scores = torch.randn(4, 5)
    expected = -torch.log_softmax(scores, dim=1)[:, 0].mean()
    assert_close(cross_encoder_loss(scores), expected, depth=2, what="listwise vs log-softmax")
    bce = cross_encoder_loss(scores, "bce")
    labels = torch.zeros(4, 5)
    labels[:, 0] = 1
    assert_close(
        bce, torch.nn.functional.binary_cross_entropy(torch.sigmoid(scores), labels), depth=2,
        what="bce vs sigmoid + binary_cross_entropy")


def test_training_lowers_the_loss_on_a_toy_set(minilm_tokenizer):
    torch.manual_seed(0)
    config = EncoderConfig.tiny(vocab_size=minilm_tokenizer.vocab_size, dropout=0.0)
    model = CrossEncoder(Encoder(config), minilm_tokenizer, max_length=32)
    examples = [
        ("sum of elements", "cumsum sum of elements", ["open a file", "join paths"]),
        ("open a file", "open file descriptor", ["sum of elements", "sort a list"]),
        ("sort a list", "sorted list order", ["open a file", "random number"]),
        ("random number", "random integer generator", ["sort a list", "sum of elements"]),
    ]

    def loss_now() -> float:
        with torch.no_grad():
            groups = [(q, [p, *n]) for q, p, n in examples]
            scores = torch.stack([model.score(q, docs) for q, docs in groups])
            return cross_encoder_loss(scores).item()

    before = loss_now()
    history = train_cross_encoder(model, examples, epochs=15, lr=1e-3, batch_size=4,
                                  warmup_ratio=0.0, progress=False)
    assert len(history.losses) == 15
    assert loss_now() < before - 0.3, (before, loss_now())
    with pytest.raises(ValueError, match="negative"):
        train_cross_encoder(model, [("q", "p", [])], progress=False)


@pytest.mark.cuda
@pytest.mark.parametrize("head", ["cls", "segments"])
def test_cuda_scores_match_cpu(tiny_model, tiny_segments, tmp_path, head):
    source = tiny_model if head == "cls" else tiny_segments
    cpu = source.score(QUERY, DOCS)
    model = CrossEncoder.from_pretrained(source.save_pretrained(tmp_path / "ce"), device="cuda")
    assert model.device.type == "cuda" and model.pooling == source.pooling
    depth = CLS_DEPTH if head == "cls" else SEGMENTS_DEPTH
    assert_close(model.score(QUERY, DOCS), cpu, depth=depth, what="CUDA vs CPU")
