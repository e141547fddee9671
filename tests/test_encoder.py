"""tinyir.encoder and tinyir.mlm: token outputs equal transformers.BertModel on all-MiniLM-L6-v2's
weights; the MLM head and loss equal BertForMaskedLM's."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from tinyir.encoder import Encoder, EncoderConfig, from_bert_name, to_bert_name
from tinyir.mlm import MaskedLM, mask_tokens
from tinyir.pretrained import minilm_path
from tinyir.testing import assert_close
from tinyir.tokenizer import Tokenizer

TEXTS = [
    "What is dense retrieval?",
    "Rerankers score a query and a document together with a cross-encoder.",
    "hi",
    "Mean pooling averages the token vectors of a text, ignoring the padding. " * 30,  # > 256
    "BM25 is a strong lexical baseline.",
]


def _transformers():
    os.environ["HF_HUB_OFFLINE"] = "1"
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.minilm()


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return Encoder.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def hf_bert():
    return _transformers().BertModel.from_pretrained(str(minilm_path())).eval()


@pytest.fixture(scope="module")
def batch(tok):
    return tok(TEXTS, max_length=256)


def assert_close_on_tokens(actual, expected, mask, *, depth: int, what: str = "") -> float:
    """tinyir.testing.assert_close on the real tokens: padded positions carry no meaning."""
    real = mask.bool()
    return assert_close(actual[real], expected[real], depth=depth, what=what)


MINILM_LAYERS = 6


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_parity_with_bert_model(minilm, hf_bert, batch, use_sdpa):
    with torch.inference_mode():
        expected = hf_bert(**batch).last_hidden_state
        got = minilm(batch["input_ids"], batch["attention_mask"], use_sdpa=use_sdpa)
    assert got.shape == (len(TEXTS), 256, 384)
    assert_close_on_tokens(got, expected, batch["attention_mask"], depth=MINILM_LAYERS,
                           what=f"tinyir vs BertModel (use_sdpa={use_sdpa})")


def test_parity_with_token_type_ids(minilm, hf_bert, tok):
    b = tok(["a query", "a longer second text here"])
    token_type_ids = torch.zeros_like(b["input_ids"])
    token_type_ids[:, 2:] = 1
    with torch.inference_mode():
        expected = hf_bert(**b, token_type_ids=token_type_ids).last_hidden_state
        got = minilm(b["input_ids"], b["attention_mask"], token_type_ids)
    assert_close_on_tokens(got, expected, b["attention_mask"], depth=MINILM_LAYERS,
                           what="tinyir vs BertModel with token types")


def test_explicit_path_returns_attention_weights(minilm, batch):
    with torch.inference_mode():
        hidden, attentions = minilm(batch["input_ids"], batch["attention_mask"],
                                    return_attention=True)
        fast = minilm(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"]
    assert len(attentions) == 6 and attentions[0].shape == (len(TEXTS), 12, 256, 256)
    assert_close(attentions[3].sum(-1), torch.ones(len(TEXTS), 12, 256), what="softmax rows")
    padded_keys = (mask == 0)[:, None, None, :].expand_as(attentions[0])
    assert attentions[0][padded_keys].abs().max() == 0  # padded keys get no weight at all
    assert_close_on_tokens(hidden, fast, mask, depth=MINILM_LAYERS, what="explicit vs SDPA")


def test_padding_does_not_change_real_tokens(minilm, tok):
    alone = tok(["hi"])
    padded = tok(["hi", "a much longer text that forces padding onto the first one"])
    with torch.inference_mode():
        a = minilm(**alone)[0]
        b = minilm(**padded)[0, : a.shape[0]]
    assert_close(a, b, depth=MINILM_LAYERS, what="alone vs padded in a batch")


def test_causal_differs_and_ignores_later_tokens(minilm, tok):
    causal = Encoder(dataclasses.replace(minilm.config, causal=True))
    causal.load_state_dict(minilm.state_dict())
    causal.eval()
    a = tok(["the cat sat on the mat"])
    b = tok(["the cat sat on the rug"])
    with torch.inference_mode():
        bidirectional = minilm(**a)
        out_a, out_b = causal(**a), causal(**b)
        explicit = causal(**a, use_sdpa=False)
    assert (out_a - bidirectional).abs().max() > 1e-2  # causal is a different model
    assert_close(out_a[:, :6], out_b[:, :6], depth=MINILM_LAYERS, what="causal prefix")
    assert (out_a[:, 6] - out_b[:, 6]).abs().max() > 1e-3  # "mat" vs "rug" differs
    assert_close(out_a, explicit, depth=MINILM_LAYERS, what="causal SDPA vs explicit")
    batch = tok(["a b", "a b c d e"], padding_side="left")  # causal + padding stays finite
    with torch.inference_mode():
        assert torch.isfinite(causal(**batch)).all()


def test_tiny_config_trains():
    config = EncoderConfig.tiny(vocab_size=100)
    assert (config.hidden_size, config.num_layers, config.num_heads) == (128, 2, 4)
    assert config.intermediate_size == 512
    torch.manual_seed(0)
    model = Encoder(config)
    ids = torch.randint(5, 100, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    out = model(ids, mask)
    assert out.shape == (3, 10, 128)
    out.sum().backward()
    assert model.layers[0].attention.query.weight.grad is not None


def test_from_hf_config_reads_minilm():
    config = EncoderConfig.from_hf_config(json.loads((minilm_path() / "config.json").read_text()))
    assert (config.vocab_size, config.hidden_size, config.num_layers) == (30522, 384, 6)
    assert (config.num_heads, config.intermediate_size, config.max_position) == (12, 1536, 512)
    assert config.causal is False and config.layer_norm_eps == 1e-12
    assert EncoderConfig.from_hf_config(config.to_hf_config()) == config
    with pytest.raises(ValueError, match="hidden_act"):
        EncoderConfig.from_hf_config({**config.to_hf_config(), "hidden_act": "relu"})
    with pytest.raises(ValueError, match="hidden_size: expected a multiple of num_heads"):
        EncoderConfig(hidden_size=100, num_heads=3)


def test_names_round_trip():
    assert to_bert_name("layers.3.attention.value.bias") == "encoder.layer.3.attention.self.value.bias"
    assert to_bert_name("layers.0.ln_ffn.weight") == "encoder.layer.0.output.LayerNorm.weight"
    names = Encoder(EncoderConfig.tiny(vocab_size=50)).state_dict()
    assert all(from_bert_name(to_bert_name(n)) == n for n in names)
    assert from_bert_name("bert.encoder.layer.1.intermediate.dense.weight") == "layers.1.ffn.up.weight"


def test_save_and_load_round_trip_and_transformers_reads_it(tmp_path):
    torch.manual_seed(0)
    model = Encoder(EncoderConfig.tiny(vocab_size=60, max_position=32)).eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    again = Encoder.from_pretrained(tmp_path)
    ids = torch.randint(0, 60, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.inference_mode():
        ours = model(ids, mask)
        assert torch.equal(again(ids, mask), ours)
        bert = _transformers().BertModel.from_pretrained(str(tmp_path)).eval()
        theirs = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert_close_on_tokens(ours, theirs, mask, depth=model.config.num_layers,
                           what="tiny tinyir vs BertModel")


def test_loads_bert_prefix_and_reports_bad_keys(tmp_path, minilm):
    from safetensors.torch import save_file

    weights = {f"bert.{k}": v.contiguous() for k, v in minilm.bert_state_dict().items()}
    weights["cls.predictions.bias"] = torch.zeros(30522)  # an MLM head: ignored by Encoder
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((minilm_path() / "config.json").read_text())
    loaded = Encoder.from_pretrained(tmp_path)
    assert torch.equal(loaded.layers[5].ffn.down.weight, minilm.layers[5].ffn.down.weight)

    del weights["bert.encoder.layer.2.attention.self.key.weight"]
    weights["bert.encoder.layer.9.surprise.weight"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['encoder.layer.2.attention.self.key.weight'\]"
                                         r".*unexpected \['bert.encoder.layer.9.surprise.weight'\]"):
        Encoder.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        Encoder.from_pretrained(tmp_path / "nowhere")


def test_bad_inputs(minilm, batch):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with pytest.raises(ValueError, match=r"input_ids: expected a 2-D \(B, T\) tensor"):
        minilm(ids[0], mask[0])
    with pytest.raises(TypeError, match="input_ids: expected an integer tensor, got dtype torch.float32"):
        minilm(ids.float(), mask)
    with pytest.raises(TypeError, match="input_ids: expected a torch.Tensor, got list"):
        minilm(ids.tolist(), mask)
    with pytest.raises(ValueError, match="attention_mask: expected the shape of input_ids"):
        minilm(ids, mask[:, :-1])
    with pytest.raises(ValueError, match="exceeds max_position=512"):
        minilm(torch.zeros(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids: expected ids in \[0, 30522\)"):
        minilm(torch.tensor([[101, 40000, 102]]))
    on_meta = torch.zeros(1, 4, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match="input_ids: on meta but the model is on cpu"):
        minilm(on_meta)
    with pytest.raises(ValueError, match="attention_mask: on meta but the model is on cpu"):
        minilm(ids, torch.ones(ids.shape, dtype=torch.long, device="meta"))


def test_mask_tokens_follows_80_10_10(tok):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (64, 128))
    ids[:, 0], ids[:, -1], ids[:4, 100:-1] = tok.cls_id, tok.sep_id, tok.pad_id
    before = ids.clone()
    masked, labels = mask_tokens(ids, tok, prob=0.15, generator=g)
    assert torch.equal(ids, before)  # input untouched
    chosen = labels != -100
    special = (ids == tok.cls_id) | (ids == tok.sep_id) | (ids == tok.pad_id)
    assert not chosen[special].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])
    rate = chosen.sum() / (~special).sum()
    assert 0.13 < rate < 0.17
    as_mask = (masked[chosen] == tok.mask_id).float().mean()
    kept = (masked[chosen] == ids[chosen]).float().mean()
    assert 0.76 < as_mask < 0.84 and 0.07 < kept < 0.13
    again = mask_tokens(ids, tok, prob=0.15, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], masked) and torch.equal(again[1], labels)
    with pytest.raises(ValueError, match="prob"):
        mask_tokens(ids, tok, prob=1.5)


def test_masked_lm_learns_and_matches_bert_for_masked_lm(tmp_path, tok):
    torch.manual_seed(0)
    corpus = Tokenizer.train(["the cat sat on the mat", "a dog ate the bone"] * 10, vocab_size=60)
    model = MaskedLM(EncoderConfig.tiny(vocab_size=corpus.vocab_size, max_position=32))
    assert model.head.decoder.weight is model.encoder.embeddings.word_embeddings.weight  # tied
    batch = corpus(["the cat sat on the mat", "a dog ate the bone"])
    masked, labels = mask_tokens(batch["input_ids"], corpus, prob=0.3,
                                 generator=torch.Generator().manual_seed(1))
    labels[0, 2] = batch["input_ids"][0, 2]  # at least one target
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        _, loss = model(masked, batch["attention_mask"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

    model.eval().save_pretrained(tmp_path)
    again = MaskedLM.from_pretrained(tmp_path)
    with torch.inference_mode():
        ours, _ = model(batch["input_ids"], batch["attention_mask"])
        assert torch.equal(again(batch["input_ids"], batch["attention_mask"])[0], ours)
        bert = _transformers().BertForMaskedLM.from_pretrained(str(tmp_path)).eval()
        theirs = bert(**batch).logits
    # the encoder's layers, then the MLM head (dense + GELU + LayerNorm + tied decoder)
    assert_close_on_tokens(ours, theirs, batch["attention_mask"],
                           depth=model.encoder.config.num_layers + 2, what="MaskedLM vs BERT")


@pytest.mark.cuda
def test_cuda_matches_cpu_and_checks_device(minilm, batch):
    gpu = Encoder.from_pretrained(minilm_path(), device="cuda")
    with torch.inference_mode():
        expected = minilm(**batch)
        got = gpu(**{k: v.cuda() for k, v in batch.items()})
    assert got.device.type == "cuda"
    assert_close_on_tokens(got.cpu(), expected, batch["attention_mask"], depth=MINILM_LAYERS,
                           what="CUDA vs CPU")
    with pytest.raises(ValueError, match="input_ids: on cpu but the model is on cuda"):
        gpu(**batch)
