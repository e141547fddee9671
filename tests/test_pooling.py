"""tinyir.pooling: every mode equals sentence-transformers' Pooling module on the same inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinyir.pooling import cls_pooling, l2_normalize, last_token_pooling, mean_pooling, pool
from tinyir.testing import assert_close

B, T, C = 7, 11, 16


def random_batch(padding_side: str, seed: int = 0, dtype=torch.float32):
    """Random hidden states and a mask with random lengths 1..T, padded on one side."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, C, generator=g).to(dtype)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T  # one row without padding
    positions = torch.arange(T)
    if padding_side == "right":
        mask = (positions[None, :] < lengths[:, None]).long()
    else:
        mask = (positions[None, :] >= T - lengths[:, None]).long()
    return hidden, mask


def st_pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    from sentence_transformers.sentence_transformer.modules import Pooling

    features = {"token_embeddings": hidden, "attention_mask": mask}
    return Pooling(hidden.shape[-1], pooling_mode=mode)(features)["sentence_embedding"]


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("mode", ["mean", "cls", "lasttoken"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_sentence_transformers(mode, padding_side, seed):
    hidden, mask = random_batch(padding_side, seed)
    expected = st_pool(hidden, mask, mode)
    got = pool(hidden, mask, mode)
    assert got.shape == (B, C)
    assert_close(got, expected, what=f"{mode} pooling vs sentence-transformers")


def test_modes_pick_the_right_positions():
    hidden, mask = random_batch("right")
    lengths = mask.sum(1)
    assert torch.equal(cls_pooling(hidden, mask), hidden[:, 0])
    assert torch.equal(last_token_pooling(hidden, mask), hidden[torch.arange(B), lengths - 1])
    row = 3
    assert_close(mean_pooling(hidden, mask)[row], hidden[row, : lengths[row]].mean(0),
                 what="masked mean vs slice mean")
    hidden, mask = random_batch("left")
    assert torch.equal(last_token_pooling(hidden, mask), hidden[:, -1])
    first = T - mask.sum(1)
    assert torch.equal(cls_pooling(hidden, mask), hidden[torch.arange(B), first])


def test_mean_pooling_in_half_precision_matches():
    hidden, mask = random_batch("right", dtype=torch.bfloat16)
    got = mean_pooling(hidden, mask)
    assert got.dtype == torch.bfloat16
    assert_close(got, st_pool(hidden, mask, "mean"), what="bfloat16 mean vs sentence-transformers")


def test_all_zero_mask_row():
    """Documented: mean -> zeros, lasttoken -> zeros, cls -> position 0 (as sentence-transformers)."""
    hidden, mask = random_batch("right")
    mask[2] = 0
    assert torch.equal(mean_pooling(hidden, mask)[2], torch.zeros(C))
    assert torch.equal(last_token_pooling(hidden, mask)[2], torch.zeros(C))
    assert torch.equal(cls_pooling(hidden, mask)[2], hidden[2, 0])
    for mode in ("mean", "cls", "lasttoken"):
        assert_close(pool(hidden, mask, mode), st_pool(hidden, mask, mode), what=mode)


def test_bool_mask_works_like_long():
    hidden, mask = random_batch("left")
    for mode in ("mean", "cls", "lasttoken"):
        assert torch.equal(pool(hidden, mask.bool(), mode), pool(hidden, mask, mode))


def test_l2_normalize_equals_f_normalize():
    x = torch.randn(5, C)
    x[1] = 0.0  # a zero vector stays zero instead of NaN
    assert torch.equal(l2_normalize(x), F.normalize(x, p=2, dim=-1))
    assert torch.equal(l2_normalize(x)[1], torch.zeros(C))
    assert_close(l2_normalize(x)[0].norm(), 1.0, depth=2, what="norm after normalizing")


def test_bad_inputs():
    hidden, mask = random_batch("right")
    with pytest.raises(ValueError, match="mode: expected one of"):
        pool(hidden, mask, "max")
    with pytest.raises(ValueError, match=r"mask: expected shape \(B, T\)"):
        mean_pooling(hidden, mask[:, :-1])
    with pytest.raises(ValueError, match="hidden: expected a 3-D"):
        cls_pooling(hidden[0], mask[0])
    with pytest.raises(TypeError, match="hidden: expected a torch.Tensor"):
        last_token_pooling(hidden.tolist(), mask)
    with pytest.raises(TypeError, match="mask: expected a torch.Tensor"):
        mean_pooling(hidden, mask.tolist())
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        l2_normalize([1.0, 2.0])


@pytest.mark.cuda
def test_cuda_keeps_device():
    hidden, mask = random_batch("left")
    for mode in ("mean", "cls", "lasttoken"):
        got = pool(hidden.cuda(), mask.cuda(), mode)
        assert got.device.type == "cuda"
        assert_close(got.cpu(), pool(hidden, mask, mode), what=f"{mode}: CUDA vs CPU")
    assert l2_normalize(hidden.cuda()).device.type == "cuda"
    with pytest.raises(ValueError, match="mask: on cpu but hidden is on cuda"):
        mean_pooling(hidden.cuda(), mask)
