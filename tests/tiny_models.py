"""A small encoder for tests that train or save models: one layer, 32 wide, no dropout (fast on a
CPU, deterministic for a seed)."""

from __future__ import annotations

import torch

from tinyir.encoder import Encoder, EncoderConfig


def tiny_encoder(vocab_size: int, seed: int = 0, **overrides) -> Encoder:
    torch.manual_seed(seed)
    settings = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                    max_position=64, dropout=0.0) | overrides
    return Encoder(EncoderConfig.tiny(vocab_size=vocab_size, **settings))
