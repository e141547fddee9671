"""The fused MaxSim kernel run line by line in Triton's interpreter, against ``max_sim_matrix``.

Not collected on its own (no test_ prefix): tests/test_maxsim_triton.py runs this file in a
fresh Python started with TRITON_INTERPRET=1, the only way to turn the interpreter on.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tinyir.maxsim import max_sim_matrix
from tinyir.maxsim_triton import fused_max_sim_matrix, interpreting
from tinyir.testing import assert_close


def test_runs_in_the_interpreter():
    assert interpreting(), "start Python with TRITON_INTERPRET=1"


def random_batch(seed, b, n, lq, ld, dim, negative=False):
    generator = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(b, lq, dim, generator=generator), dim=-1)
    d = F.normalize(torch.randn(n, ld, dim, generator=generator), dim=-1)
    if negative:  # every similarity negative: a padded 0 would win a max it must not
        q, d = q.abs(), -d.abs()
    q_mask = torch.arange(lq)[None, :] < torch.randint(1, lq + 1, (b,), generator=generator)[:, None]
    d_mask = torch.arange(ld)[None, :] < torch.randint(1, ld + 1, (n,), generator=generator)[:, None]
    # padded positions hold garbage that must not matter
    q = torch.where(q_mask[..., None], q, torch.full_like(q, 7.0))
    d = torch.where(d_mask[..., None], d, torch.full_like(d, 7.0))
    return q, q_mask, d, d_mask


SHAPES = [  # (B, N, Lq, Ld, D): tiles cut mid-document, blocks wider than the data, one token
    (3, 5, 7, 70, 24),
    (2, 4, 32, 128, 128),
    (1, 3, 5, 130, 16),
    (4, 2, 17, 1, 8),
]


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_max_sim_matrix(shape, negative):
    q, q_mask, d, d_mask = random_batch(sum(shape), *shape, negative=negative)
    got = fused_max_sim_matrix(q, q_mask, d, d_mask)
    assert got.shape == shape[:2] and got.dtype == torch.float32
    assert_close(got, max_sim_matrix(q, q_mask, d, d_mask), depth=2, what=f"fused vs chunked {shape}")
    if negative:
        assert (got < 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_accumulate_in_float32(dtype):
    q, q_mask, d, d_mask = random_batch(1, 3, 4, 9, 80, 32)
    q, d = q.to(dtype), d.to(dtype)
    got = fused_max_sim_matrix(q, q_mask, d, d_mask)
    # products of two 16-bit floats are exact in float32: the same scores as float32 MaxSim
    expected = max_sim_matrix(q.float(), q_mask, d.float(), d_mask)
    assert_close(got, expected, depth=2, what=f"{dtype} inputs, float32 sums")


def test_masks_default_to_all_real_tokens():
    q, _, d, _ = random_batch(2, 2, 3, 4, 66, 16)
    assert_close(fused_max_sim_matrix(q, None, d, None), max_sim_matrix(q, None, d, None),
                 depth=2, what="no masks")


def test_empty_document_scores_minus_inf_and_empty_query_scores_zero():
    q = -torch.ones(1, 2, 3)
    d = torch.ones(2, 4, 3)
    d_mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])  # doc 1 has no real token
    scores = fused_max_sim_matrix(q, None, d, d_mask)
    assert scores[0, 0].item() == pytest.approx(-6.0)
    assert scores[0, 1].item() == -math.inf
    empty_query = fused_max_sim_matrix(q, torch.zeros(1, 2), d, d_mask)
    assert empty_query[0].tolist() == [0.0, -math.inf]
    no_tokens_at_all = fused_max_sim_matrix(q, None, torch.ones(2, 0, 3), None)
    assert no_tokens_at_all.tolist() == [[-math.inf, -math.inf]]
    assert fused_max_sim_matrix(q, None, torch.ones(0, 4, 3), None).shape == (1, 0)


def test_refuses_what_it_cannot_do():
    q, q_mask, d, d_mask = random_batch(3, 2, 3, 4, 5, 8)
    with pytest.raises(ValueError, match="no backward"):
        fused_max_sim_matrix(q.requires_grad_(), q_mask, d, d_mask)
    with pytest.raises(TypeError, match="q: expected float16, bfloat16 or float32"):
        fused_max_sim_matrix(q.detach().double(), q_mask, d.double(), d_mask)
    with pytest.raises(ValueError, match="d_mask: expected shape"):
        fused_max_sim_matrix(q.detach(), q_mask, d, d_mask[:, :2])


def test_colbert_search_goes_through_the_kernel(monkeypatch):
    """ColBERTRetriever.score dispatches to the fused kernel where it runs (here: interpreted)."""
    from tinyir import maxsim_triton
    from tinyir.retrievers import ColBERTRetriever

    q, q_mask, d, d_mask = random_batch(4, 3, 20, 6, 70, 16)
    retriever = ColBERTRetriever(None, doc_tokens=d, doc_mask=d_mask)
    calls = []
    fused = maxsim_triton.fused_max_sim_matrix
    monkeypatch.setattr(maxsim_triton, "fused_max_sim_matrix",
                        lambda *args: calls.append(1) or fused(*args))
    with torch.inference_mode():
        got = retriever.score(q, q_mask)
    assert calls == [1]
    assert_close(got, max_sim_matrix(q, q_mask, d, d_mask), depth=2, what="ColBERT search scores")
