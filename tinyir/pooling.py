"""Pooling: many token vectors (B, T, C) -> one text vector (B, C).

An encoder gives one vector per token; retrieval needs one vector per text. Three ways, each the
same formula as ``sentence_transformers.models.Pooling`` (tests/test_pooling.py compares them on
random inputs with random left and right padding):

    cls        the vector of the first real token ([CLS]); position 0 with right padding
    mean       the average of the real tokens' vectors: sum(h * m) / max(sum(m), 1e-9)
    lasttoken  the vector of the last real token (what decoder-style embedders use)

``mask`` is the tokenizer's ``attention_mask``: (B, T), 1 for a real token, 0 for padding.
A row whose mask is all zeros (no real token) gives: cls -> position 0's vector, mean -> zeros,
lasttoken -> zeros (as sentence-transformers does).

``l2_normalize`` scales each vector to length 1, so a dot product becomes a cosine similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLING_MODES = ("mean", "cls", "lasttoken")


def _check(hidden: object, mask: object) -> None:
    if not isinstance(hidden, torch.Tensor):
        raise TypeError(f"hidden: expected a torch.Tensor (B, T, C), got {type(hidden).__name__}")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a torch.Tensor (B, T), got {type(mask).__name__}")
    if hidden.dim() != 3:
        raise ValueError(f"hidden: expected a 3-D (B, T, C) tensor, got shape {tuple(hidden.shape)}")
    if mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"mask: expected shape (B, T) = {tuple(hidden.shape[:2])} to match hidden, "
            f"got {tuple(mask.shape)}"
        )
    if mask.device != hidden.device:
        raise ValueError(f"mask: on {mask.device} but hidden is on {hidden.device}")


def cls_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first real token's vector. hidden: (B, T, C) float, mask: (B, T). Returns (B, C).

    With right padding (the default) that is position 0, the [CLS] token. With left padding the
    first real token sits after the padding; like sentence-transformers we pick it there.
    """
    _check(hidden, mask)
    first = mask.to(torch.int32).argmax(dim=1)  # (B,) index of the first 1 (0 if none)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]  # (B, C)


def mean_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' vectors. hidden: (B, T, C) float, mask: (B, T). Returns (B, C).

    The count is clamped to 1e-9 so an all-padding row gives zeros instead of NaN. Half-precision
    inputs are summed in float32 (as sentence-transformers does) and returned in their dtype.
    Mean pooling as in Sentence-BERT (Reimers & Gurevych, EMNLP 2019, section 3).

    >>> hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])   # (B=1, T=3, C=2)
    >>> mask = torch.tensor([[1, 1, 0]])                                # the last token is padding
    >>> mean_pooling(hidden, mask)                                      # ((1+3)/2, (2+4)/2)
    tensor([[2., 3.]])
    """
    _check(hidden, mask)
    acc = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    summed = (hidden * m).sum(dim=1, dtype=acc)  # (B, C)
    count = m.sum(dim=1, dtype=acc).clamp(min=1e-9)  # (B, 1)
    return (summed / count).to(hidden.dtype)


def last_token_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last real token's vector. hidden: (B, T, C) float, mask: (B, T). Returns (B, C).

    Works with right padding (last 1 before the zeros) and left padding (position T - 1).
    """
    _check(hidden, mask)
    B, T = mask.shape
    has_token, from_end = mask.flip(1).max(dim=1)  # (B,): 1 if any real token; its distance to T-1
    last = T - 1 - from_end  # (B,) index of the last 1
    picked = hidden[torch.arange(B, device=hidden.device), last]  # (B, C)
    return picked * has_token.to(hidden.dtype).unsqueeze(-1)  # all-padding rows -> zeros


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool (B, T, C) to (B, C) with ``mode`` in ``"mean"``, ``"cls"``, ``"lasttoken"``."""
    if mode == "mean":
        return mean_pooling(hidden, mask)
    if mode == "cls":
        return cls_pooling(hidden, mask)
    if mode == "lasttoken":
        return last_token_pooling(hidden, mask)
    raise ValueError(f"mode: expected one of {POOLING_MODES}, got {mode!r}")


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row to unit L2 norm: x / max(||x||, eps). x: (..., C). Same as ``F.normalize``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    return F.normalize(x, p=2.0, dim=-1, eps=eps)
