"""Masked-language-model pre-training (BERT's MLM): the head, the model, the masking rule.

    MLMHead         dense -> GELU -> LayerNorm -> vocabulary logits, tied to the word embeddings
    MaskedLM        Encoder + MLMHead with the masked-language-model loss
    mask_tokens     BERT's 80/10/10 masking rule (Devlin et al. 2019, "BERT: Pre-training of
                    Deep Bidirectional Transformers for Language Understanding", section 3.1)

Saved folders use ``BertForMaskedLM``'s names, so ``transformers`` loads them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from tinyir.atomic import atomic_folder
from tinyir.encoder import Encoder, EncoderConfig, init_bert_weights, read_config, read_weights


class MLMHead(nn.Module):
    """Hidden states -> vocabulary logits: dense -> GELU -> LayerNorm -> decoder.

    The decoder's weight *is* the word-embedding matrix (tied): predicting a token reuses the
    vector that represents it at the input. Only the bias (V,) is new.
    """

    def __init__(self, config: EncoderConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        init_bert_weights(self.dense)
        nn.init.zeros_(self.decoder.bias)
        self.decoder.weight = word_embeddings.weight  # tied: the very same Parameter object

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(F.gelu(self.dense(hidden)))  # (B, T, C)
        return self.decoder(x)  # (B, T, V)


class MaskedLM(nn.Module):
    """Encoder + MLMHead. ``forward(input_ids, attention_mask, labels) -> (logits, loss)``.

    ``labels`` holds the original id at masked positions and -100 elsewhere (see
    :func:`mask_tokens`); the loss is the cross-entropy over the masked positions only.
    """

    def __init__(self, config: EncoderConfig, use_sdpa: bool = True):
        super().__init__()
        self.encoder = Encoder(config, use_sdpa=use_sdpa)
        self.head = MLMHead(config, self.encoder.embeddings.word_embeddings)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self.encoder(input_ids, attention_mask)  # (B, T, C)
        logits = self.head(hidden)  # (B, T, V)
        if labels is None:
            return logits, None
        if labels.shape != input_ids.shape:
            raise ValueError(
                f"labels: expected the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(labels.shape)}"
            )
        # A batch with no masked position gives NaN (0 / 0), as in Hugging Face.
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return logits, loss

    def save_pretrained(self, folder: str | Path) -> Path:
        """Save as ``BertForMaskedLM`` does: ``bert.``-prefixed encoder + ``cls.predictions.*``,
        atomically (a temporary folder, then one rename; an existing ``folder`` is replaced).

        The decoder weight is not stored (it is the word-embedding matrix); loaders re-tie it.
        """
        weights = {f"bert.{n}": t for n, t in self.encoder.bert_state_dict().items()}
        weights["cls.predictions.transform.dense.weight"] = self.head.dense.weight
        weights["cls.predictions.transform.dense.bias"] = self.head.dense.bias
        weights["cls.predictions.transform.LayerNorm.weight"] = self.head.layer_norm.weight
        weights["cls.predictions.transform.LayerNorm.bias"] = self.head.layer_norm.bias
        weights["cls.predictions.bias"] = self.head.decoder.bias
        weights = {n: t.detach().contiguous().cpu() for n, t in weights.items()}
        config = self.encoder.config.to_hf_config() | {"architectures": ["BertForMaskedLM"]}
        with atomic_folder(folder) as tmp:
            save_file(weights, str(tmp / "model.safetensors"), {"format": "pt"})
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return Path(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device | None = None) -> MaskedLM:
        """Load a folder written by :meth:`save_pretrained` (or by ``BertForMaskedLM``).

        A plain encoder folder (no ``cls.predictions.*``) loads too, with a freshly initialised
        head; use :meth:`Encoder.from_pretrained` on an MLM folder to keep just the encoder.
        """
        folder = Path(folder)
        config = EncoderConfig.from_hf_config(read_config(folder))
        model = cls(config).to(device or "cpu")
        weights = read_weights(folder, model.encoder.device)
        model.encoder.load_bert_state_dict(weights, source=str(folder))
        head = {
            "cls.predictions.transform.dense.weight": model.head.dense.weight,
            "cls.predictions.transform.dense.bias": model.head.dense.bias,
            "cls.predictions.transform.LayerNorm.weight": model.head.layer_norm.weight,
            "cls.predictions.transform.LayerNorm.bias": model.head.layer_norm.bias,
            "cls.predictions.bias": model.head.decoder.bias,
        }
        with torch.no_grad():
            for name, parameter in head.items():
                if name in weights:
                    parameter.copy_(weights[name])
        return model.eval()


def mask_tokens(
    input_ids: torch.Tensor,
    tokenizer: Any,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule. Returns (masked input_ids, labels), both (B, T) long.

    Each non-special token is chosen with probability ``prob``. Of the chosen ones 80% become
    ``[MASK]``, 10% a random token and 10% stay as they are; ``labels`` holds the original id at
    chosen positions and -100 (ignored by the loss) everywhere else. Special tokens ([PAD],
    [CLS], [SEP], [MASK]) are never chosen. ``tokenizer`` is a :class:`tinyir.tokenizer.Tokenizer`
    (anything with ``pad_id``, ``cls_id``, ``sep_id``, ``mask_id`` and ``vocab_size``).
    ``input_ids`` is not modified.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids)
        raise ValueError(f"input_ids: expected a 2-D (B, T) tensor, got {shape}")
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob: expected a float in (0, 1), got {prob!r}")
    for attribute in ("pad_id", "cls_id", "sep_id", "mask_id", "vocab_size"):
        if not hasattr(tokenizer, attribute):
            raise TypeError(f"tokenizer: expected an object with .{attribute} (a Tokenizer)")

    def uniform(shape: torch.Size) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=input_ids.device)

    special = torch.tensor(
        [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id],
        device=input_ids.device,
    )
    chosen = (uniform(input_ids.shape) < prob) & ~torch.isin(input_ids, special)  # (B, T)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    draw = uniform(input_ids.shape)  # one draw decides mask (< 0.8) / random (< 0.9) / keep
    to_mask = chosen & (draw < 0.8)
    to_random = chosen & (draw >= 0.8) & (draw < 0.9)
    random_ids = torch.randint(
        tokenizer.vocab_size, input_ids.shape, generator=generator, device=input_ids.device
    )
    masked = torch.where(to_mask, torch.full_like(input_ids, tokenizer.mask_id), input_ids)
    masked = torch.where(to_random, random_ids.to(input_ids.dtype), masked)
    return masked, labels


__all__ = ["MLMHead", "MaskedLM", "mask_tokens"]
