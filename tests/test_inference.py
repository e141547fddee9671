"""tinyir.inference: int8 and bf16 CPU inference stay close to float32 and leave the model alone.

The bounds on the embeddings' cosine to float32 were measured on 1,000 pydocs dev texts (600
passages, 400 queries) with all-MiniLM-L6-v2, then loosened so that another CPU or BLAS stays
inside while a broken path (a wrong scale, unquantized garbage, a missing dequantization: cosines
near 0) does not:

    path            measured min / mean cosine     bound per text / mean
    int8, 8 bits    0.972 / 0.994                  0.95 / 0.985     (only where the CPU allows it)
    int8, 7 bits    0.943 / 0.977                  0.90 / 0.96
    bf16            0.99997 / 0.99998              0.999 / 0.9999

The int8 layer itself is checked against the formula of the module docstring.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import tinyir.inference as inference
from tinyir.beir import load_beir
from tinyir.biencoder import BiEncoder
from tinyir.inference import (
    BFloat16BiEncoder,
    Int8Linear,
    int8_full_range,
    quantize_dynamic_int8,
    to_bfloat16,
)
from tinyir.pydocs import PYDOCS_DIR
from tinyir.testing import assert_close

COSINE_BOUNDS = {  # (per text, mean), see the module docstring
    ("int8", 8): (0.95, 0.985),
    ("int8", 7): (0.90, 0.96),
    ("bf16", None): (0.999, 0.9999),
}


@pytest.fixture(scope="module")
def minilm() -> BiEncoder:
    return BiEncoder.minilm()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    ds = load_beir(PYDOCS_DIR, "dev")
    return ds.doc_texts()[::200][:40] + list(ds.queries.values())[:24]  # passages, then queries


@pytest.fixture(scope="module")
def reference(minilm, texts) -> torch.Tensor:
    return minilm.encode(texts, batch_size=32, progress=False)


def _check_cosines(embeddings: torch.Tensor, reference: torch.Tensor, key) -> None:
    per_text, mean = COSINE_BOUNDS[key]
    assert embeddings.dtype == torch.float32 and embeddings.shape == reference.shape
    cosines = (embeddings * reference).sum(dim=1)  # unit vectors: dot product = cosine
    assert cosines.min() >= per_text, f"{key}: min cosine {cosines.min():.5f} < {per_text}"
    assert cosines.mean() >= mean, f"{key}: mean cosine {cosines.mean():.5f} < {mean}"


@pytest.mark.parametrize("bits", [7, 8])
def test_int8_embeddings_stay_close_to_float32(minilm, texts, reference, bits):
    if bits == 8 and not int8_full_range():
        pytest.skip("8 activation bits need VNNI or QNNPACK (int8_full_range() is False)")
    quantized = quantize_dynamic_int8(minilm, activation_bits=bits)
    _check_cosines(quantized.encode(texts, batch_size=32, progress=False), reference,
                   ("int8", bits))


def test_int8_default_bits_follow_the_cpu(minilm):
    quantized = quantize_dynamic_int8(minilm)
    layers = [m for m in quantized.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == 6 * minilm.encoder.config.num_layers  # q, k, v, out, up, down
    assert {layer.activation_bits for layer in layers} == {8 if int8_full_range() else 7}


def test_bf16_embeddings_stay_close_to_float32(minilm, texts, reference):
    fast = to_bfloat16(minilm)
    assert isinstance(fast, BFloat16BiEncoder) and fast.encoder.dtype == torch.float32
    _check_cosines(fast.encode(texts, batch_size=32, progress=False), reference, ("bf16", None))


@pytest.mark.parametrize("bits", [7, 8])
def test_int8_linear_equals_the_formula(bits):
    """Activations on the grid (multiples of 1/16 spanning exactly L steps), so a = 1/16 and
    a * (xq - z) = x exactly: the layer must equal float math with its rounded weights."""
    if bits == 8 and not int8_full_range():
        pytest.skip("8 activation bits need VNNI or QNNPACK (int8_full_range() is False)")
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        linear = nn.Linear(64, 24)
    levels = 2**bits - 1
    lo = -(levels + 1) // 2  # -64 or -128: x spans [lo, lo + levels] / 16
    x = torch.randint(lo, lo + levels + 1, (40, 64), generator=gen).float() / 16
    x[0, :2] = torch.tensor([lo, lo + levels]) / 16

    layer = quantize_dynamic_int8(nn.Sequential(linear), activation_bits=bits)[0]
    w, b = linear.weight.detach(), linear.bias.detach()  # (N, K), (N,)
    weight = layer.weight()  # the stored int8 weights and their per-row scales
    s = weight.q_per_channel_scales().float()  # (N,)
    w_int = weight.int_repr().float()  # (N, K) in [-128, 127]
    assert_close(s, w.abs().amax(dim=1) / 127.5, what="s_j")
    rounded = w_int * s[:, None]  # (N, K) the weights the layer multiplies by
    beyond_half_a_step = ((rounded - w).abs() - s[:, None] / 2).clamp(min=0)
    assert_close(beyond_half_a_step, torch.zeros_like(beyond_half_a_step),
                 scale=float(w.abs().max()), what="|Wq * s - W| - s / 2")
    assert_close(layer(x), x @ rounded.T + b, depth=2, what="int8 layer vs formula")


def test_results_are_deterministic_and_the_model_untouched(minilm, texts):
    before = copy.deepcopy(minilm.state_dict())
    classes = [type(m) for m in minilm.modules()]
    quantized, fast = quantize_dynamic_int8(minilm), to_bfloat16(minilm)
    for model in (quantized, fast):  # same code path, same inputs: the same bits
        first = model.encode(texts[:16], batch_size=8, progress=False)
        assert torch.equal(first, model.encode(texts[:16], batch_size=8, progress=False))
    assert [type(m) for m in minilm.modules()] == classes
    after = minilm.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert type(minilm) is BiEncoder


def test_int8_works_on_any_module_with_linear_layers():
    from tiny_models import tiny_encoder

    encoder = tiny_encoder(vocab_size=50).eval()
    ids = torch.randint(1, 50, (3, 7), generator=torch.Generator().manual_seed(0))
    quantized = quantize_dynamic_int8(encoder)
    assert quantized(ids).shape == encoder(ids).shape == (3, 7, 32)
    assert encoder.training is False and quantized.training is False


def test_bad_inputs_name_the_argument(monkeypatch):
    with pytest.raises(TypeError, match="model"):
        quantize_dynamic_int8("all-MiniLM-L6-v2")
    with pytest.raises(TypeError, match="model: expected a tinyir BiEncoder"):
        to_bfloat16(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="model: expected nn.Linear layers"):
        quantize_dynamic_int8(nn.LayerNorm(4))
    with pytest.raises(ValueError, match="activation_bits"):
        quantize_dynamic_int8(nn.Linear(4, 4), activation_bits=4)
    # not on the CPU (a GPU model fails the same way; "meta" exists on every machine)
    with pytest.raises(ValueError, match="model: expected a model on the CPU"):
        quantize_dynamic_int8(nn.Linear(4, 4, device="meta"))
    monkeypatch.setattr(inference, "int8_full_range", lambda: False)
    with pytest.raises(ValueError, match="activation_bits: 8 needs"):
        quantize_dynamic_int8(nn.Linear(4, 4), activation_bits=8)


def test_bf16_warns_where_the_cpu_emulates_it(minilm, monkeypatch):
    monkeypatch.setattr(inference, "native_bfloat16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        to_bfloat16(minilm)
