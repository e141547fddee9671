"""Grading tests for 01_pooling.ipynb: masked mean pooling and last-token pooling.

Stricter than the notebook's self-checks: other shapes, left, right and mixed padding, bool
masks, float64, rows without a real token, huge values at padded positions, inputs left intact.
The references are plain loops written here, independent of the student's code and of tinyir.
"""

from __future__ import annotations

import torch

from tinyir.grading.checks import assert_close, check

NOTEBOOK = "01_pooling.ipynb"
# tinyir's own answers: the student's process cannot call them while this notebook is graded.
REFERENCES = [
    "tinyir.pooling:mean_pooling",
    "tinyir.pooling:last_token_pooling",
    "tinyir.pooling:pool",
]

SHAPES = {  # case name -> ((B, L, D), padding side)
    "right 3x7x5": ((3, 7, 5), "right"),
    "left 4x6x3": ((4, 6, 3), "left"),
    "mixed sides 5x9x2": ((5, 9, 2), "mixed"),
    "one token 1x1x4": ((1, 1, 4), "right"),
    "D=1 6x3x1": ((6, 3, 1), "left"),
}
CASES = {name: {"shape": shape, "padding": padding} for name, (shape, padding) in SHAPES.items()}


def random_batch(shape: tuple[int, int, int], padding: str, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden (B, L, D) and a (B, L) long mask with 1..L real tokens per row.

    padding: "right" (real tokens first), "left" (padding first) or "mixed" (alternating rows).
    Row 0 has no padding and, when B > 1, the last row has one real token.
    """
    B, L, D = shape
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, L, D, generator=g).to(dtype)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    if B > 1:
        lengths[-1] = 1
    positions = torch.arange(L)
    right = positions[None, :] < lengths[:, None]  # (B, L)
    left = positions[None, :] >= (L - lengths)[:, None]  # (B, L)
    if padding == "right":
        mask = right
    elif padding == "left":
        mask = left
    else:
        mask = torch.where((torch.arange(B) % 2 == 0)[:, None], right, left)
    return hidden, mask.long()


def reference_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    B, L, D = hidden.shape
    out = torch.zeros(B, D, dtype=torch.float64)
    for b in range(B):
        rows = [hidden[b, pos].double() for pos in range(L) if mask[b, pos]]
        if rows:
            out[b] = torch.stack(rows).mean(dim=0)
    return out


def reference_last(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    B, L, D = hidden.shape
    out = torch.zeros(B, D, dtype=torch.float64)
    for b in range(B):
        real = [pos for pos in range(L) if mask[b, pos]]
        if real:
            out[b] = hidden[b, real[-1]].double()
    return out


AFTER_CALL = "tinyir.grading.probes:args_after_call"  # the arguments as the call left them


# -- mean_pooling ------------------------------------------------------------------------------


@check("pooling.mean_pooling", cases=CASES)
def mean_matches_reference(mean_pooling, shape, padding):
    """Random batches, right, left and mixed padding, against a loop."""
    hidden, mask = random_batch(shape, padding)
    got = mean_pooling(hidden.clone(), mask.clone())
    assert_close(got, reference_mean(hidden, mask), f"mean_pooling on a {padding}-padded batch "
                 f"of shape {shape}")


@check("pooling.mean_pooling")
def mean_bool_mask(mean_pooling):
    """A bool attention mask works like a 0/1 one."""
    hidden, mask = random_batch((4, 5, 3), "mixed", seed=1)
    got = mean_pooling(hidden.clone(), mask.bool())
    assert_close(got, reference_mean(hidden, mask), "mean_pooling with a bool mask")


@check("pooling.mean_pooling")
def mean_float64(mean_pooling):
    """float64 inputs keep float64 precision."""
    hidden, mask = random_batch((3, 6, 4), "right", seed=2, dtype=torch.float64)
    got = mean_pooling(hidden.clone(), mask.clone())
    assert_close(got, reference_mean(hidden, mask), "mean_pooling in float64", atol=1e-10,
                 rtol=1e-10)


@check("pooling.mean_pooling")
def mean_row_without_tokens_is_zero(mean_pooling):
    """A row whose mask is all zeros gives zeros, not NaN."""
    hidden, mask = random_batch((3, 4, 2), "right", seed=3)
    mask[1] = 0
    got = mean_pooling(hidden.clone(), mask.clone())
    assert_close(got, reference_mean(hidden, mask), "mean_pooling with an all-padding row")


@check("pooling.mean_pooling")
def mean_ignores_padding_values(mean_pooling):
    """Huge values at padded positions change nothing."""
    hidden, mask = random_batch((4, 6, 3), "mixed", seed=4)
    hidden[mask == 0] = 1e6
    got = mean_pooling(hidden.clone(), mask.clone())
    assert_close(got, reference_mean(hidden, mask), "mean_pooling with 1e6 at padded positions")


@check("pooling.mean_pooling")
def mean_leaves_inputs_unchanged(mean_pooling, remote):
    """hidden and mask are not modified in place."""
    hidden, mask = random_batch((3, 5, 2), "left", seed=5)
    hidden_copy, mask_copy = hidden.clone(), mask.clone()
    got, (hidden, mask) = remote.new(AFTER_CALL, mean_pooling, hidden, mask)
    assert_close(got, reference_mean(hidden_copy, mask_copy), "mean_pooling's output")
    assert_close(hidden, hidden_copy, "hidden after the call (it must not be modified)")
    assert_close(mask, mask_copy, "mask after the call (it must not be modified)")


# -- last_token_pooling ------------------------------------------------------------------------


@check("pooling.last_token_pooling", cases=CASES)
def last_matches_reference(last_token_pooling, shape, padding):
    """Random batches, right, left and mixed padding, against a loop."""
    hidden, mask = random_batch(shape, padding, seed=10)
    got = last_token_pooling(hidden.clone(), mask.clone())
    assert_close(got, reference_last(hidden, mask), f"last_token_pooling on a {padding}-padded "
                 f"batch of shape {shape}")


@check("pooling.last_token_pooling")
def last_bool_mask(last_token_pooling):
    """A bool attention mask works like a 0/1 one."""
    hidden, mask = random_batch((5, 4, 3), "mixed", seed=11)
    got = last_token_pooling(hidden.clone(), mask.bool())
    assert_close(got, reference_last(hidden, mask), "last_token_pooling with a bool mask")


@check("pooling.last_token_pooling")
def last_no_padding(last_token_pooling):
    """Without padding the last token is position L - 1."""
    hidden = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(12))
    mask = torch.ones(3, 5, dtype=torch.long)
    got = last_token_pooling(hidden.clone(), mask)
    assert_close(got, hidden[:, -1], "last_token_pooling without padding")


@check("pooling.last_token_pooling")
def last_row_without_tokens_is_zero(last_token_pooling):
    """A row whose mask is all zeros gives zeros."""
    hidden, mask = random_batch((3, 4, 2), "left", seed=13)
    mask[2] = 0
    got = last_token_pooling(hidden.clone(), mask.clone())
    assert_close(got, reference_last(hidden, mask), "last_token_pooling with an all-padding row")


@check("pooling.last_token_pooling")
def last_float64(last_token_pooling):
    """float64 inputs keep float64 precision (held to float64's tolerance)."""
    hidden, mask = random_batch((4, 7, 3), "mixed", seed=14, dtype=torch.float64)
    got = last_token_pooling(hidden.clone(), mask.clone())
    assert_close(got, reference_last(hidden, mask), "last_token_pooling in float64")  # a gather


@check("pooling.last_token_pooling")
def last_leaves_inputs_unchanged(last_token_pooling, remote):
    """hidden and mask are not modified in place."""
    hidden, mask = random_batch((3, 5, 2), "mixed", seed=15)
    hidden_copy, mask_copy = hidden.clone(), mask.clone()
    got, (hidden, mask) = remote.new(AFTER_CALL, last_token_pooling, hidden, mask)
    assert_close(got, reference_last(hidden_copy, mask_copy), "last_token_pooling's output")
    assert_close(hidden, hidden_copy, "hidden after the call (it must not be modified)")
    assert_close(mask, mask_copy, "mask after the call (it must not be modified)")
