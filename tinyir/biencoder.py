"""The bi-encoder: text -> one unit vector, so relevance becomes a dot product.

A bi-encoder encodes queries and documents separately with the same network:

    text --Tokenizer--> (B, T) ids --Encoder--> (B, T, C) --pool--> (B, C) --l2_normalize--> (B, C)

Documents can then be embedded once, offline, and a query is scored against all of them with one
matrix product. :class:`BiEncoder` bundles the four steps; ``forward`` is the differentiable path
used in training, ``encode`` the fast batched path used for indexing.

``BiEncoder.minilm()`` is all-MiniLM-L6-v2 exactly as sentence-transformers runs it (mean pooling,
normalised, 256 tokens): tests/test_biencoder.py checks the embeddings agree to 1e-5.

Saved folders look like a Hugging Face / sentence-transformers model: ``config.json`` and
``model.safetensors`` (BERT names), ``tokenizer.json``, plus ``tinyir.json`` with the pooling
mode, the normalize flag and max_length, and the sentence-transformers module files
(``modules.json``, ``1_Pooling/config.json``...) so ``SentenceTransformer(folder)`` loads it too.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tinyir.atomic import atomic_folder
from tinyir.batching import length_batches
from tinyir.encoder import Encoder
from tinyir.pooling import POOLING_MODES, l2_normalize, pool
from tinyir.pretrained import minilm_path
from tinyir.tokenizer import Tokenizer, check_texts
from tinyir.validate import check_choice, check_int_range, check_type

TINYIR_CONFIG = "tinyir.json"

# Texts are sorted by character length, then tokenized this many batches at a time and re-sorted
# by token count, so padding stays minimal without holding every text's tokens in memory.
_BATCHES_PER_CHUNK = 16


class BiEncoder(nn.Module):
    """Encoder + pooling (+ L2 normalisation) + the tokenizer that feeds it.

    Args:
        encoder: the transformer, (B, T) ids -> (B, T, C).
        tokenizer: turns texts into the encoder's ids.
        pooling: "mean", "cls" or "lasttoken" (see :mod:`tinyir.pooling`).
        normalize: scale every embedding to unit length (dot product = cosine).
        max_length: texts are truncated to this many tokens, [CLS] and [SEP] included.
    """

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Tokenizer,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 256,
    ):
        super().__init__()
        check_type("encoder", encoder, Encoder, "a tinyir Encoder")
        check_type("tokenizer", tokenizer, Tokenizer, "a tinyir Tokenizer")
        check_choice("pooling", pooling, POOLING_MODES)
        if tokenizer.vocab_size > encoder.config.vocab_size:
            raise ValueError(
                f"tokenizer: has {tokenizer.vocab_size} ids but the encoder's vocab_size is "
                f"{encoder.config.vocab_size}"
            )
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.max_length = self._check_max_length(max_length)

    def _check_max_length(self, max_length: Any) -> int:
        check_int_range("max_length", max_length, 2, self.encoder.config.max_position,
                        " (the encoder's max_position)")
        return max_length

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def embedding_dim(self) -> int:
        """C, the size of one embedding."""
        return self.encoder.config.hidden_size

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Texts -> ``{"input_ids", "attention_mask"}``, (B, T) on the model's device."""
        max_length = self.max_length if max_length is None else self._check_max_length(max_length)
        batch = self.tokenizer(texts, max_length=max_length)
        return {name: t.to(self.device) for name, t in batch.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A tokenized batch (``input_ids``, ``attention_mask``: (B, T)) -> embeddings (B, C).

        Differentiable: this is what a training loop calls.
        """
        if not isinstance(batch, dict) or "input_ids" not in batch:
            raise TypeError(
                "batch: expected a dict with 'input_ids' and 'attention_mask' (from tokenize), "
                f"got {type(batch).__name__}"
                + (f" with keys {sorted(batch)}" if isinstance(batch, dict) else "")
            )
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(batch["input_ids"])
        hidden = self.encoder(batch["input_ids"], mask, batch.get("token_type_ids"))  # (B, T, C)
        embeddings = pool(hidden, mask, self.pooling)  # (B, C)
        return l2_normalize(embeddings) if self.normalize else embeddings

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        max_length: int | None = None,
        progress: bool | None = None,
        device: str | torch.device | None = None,
        convert_to_numpy: bool = False,
    ) -> torch.Tensor | np.ndarray:
        """Embed ``texts`` in batches, without gradients. Returns (N, C), row i = texts[i].

        Texts are grouped by length so each batch pads to its own longest text only, then put
        back in the original order. ``device`` moves the model there first (it stays there).
        The progress bar (stderr) shows when N > batch_size, unless ``progress=False``.
        The result lives on the model's device, or is a NumPy array with ``convert_to_numpy``.
        """
        texts = check_texts(texts)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        max_length = self.max_length if max_length is None else self._check_max_length(max_length)
        if device is not None:
            self.to(device)
        modes = {module: module.training for module in self.modules()}
        self.eval()
        N = len(texts)
        show = N > batch_size if progress is None else bool(progress)

        out = torch.empty(N, self.embedding_dim, dtype=self.encoder.dtype, device=self.device)
        # Tokenize a chunk of texts at a time (longest by characters first), so that the token
        # lists of a huge corpus never sit in memory at once; batch each chunk by token count.
        chunk = batch_size * _BATCHES_PER_CHUNK
        with tqdm(total=math.ceil(N / batch_size), desc="encode", unit="batch", file=sys.stderr,
                  disable=not show) as bar:  # one step per batch, across the chunks
            for rows in length_batches([len(t) for t in texts], chunk):
                ids = self.tokenizer.encode_ids([texts[i] for i in rows], max_length)
                for picked in length_batches([len(x) for x in ids], batch_size):
                    batch = self.tokenizer.pad([ids[j] for j in picked])
                    batch = {name: t.to(self.device, non_blocking=True) for name, t in batch.items()}
                    target = torch.tensor([rows[j] for j in picked], device=self.device)
                    out[target] = self(batch)  # (b, C) written back to the original rows
                    bar.update(1)
        for module, training in modes.items():  # put back train/eval exactly as they were
            module.train(training)
        return out.cpu().numpy() if convert_to_numpy else out

    # -------------------------------------------------------------------------------------------
    # loading and saving

    @classmethod
    def minilm(cls, device: str | torch.device | None = None) -> BiEncoder:
        """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling, normalised, 256 tokens."""
        return cls.from_pretrained(minilm_path(), device=device)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device | None = None) -> BiEncoder:
        """Load a folder written by :meth:`save_pretrained`, or a sentence-transformers folder.

        The model comes back in eval mode (call ``.train()`` before fine-tuning).

        Pooling, normalize and max_length come from ``tinyir.json`` when present, otherwise from
        sentence-transformers' ``1_Pooling/config.json``, ``modules.json`` and
        ``sentence_bert_config.json`` (defaults: mean, no normalisation, 512 tokens).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"folder: expected a model folder, {folder} is not a directory")
        encoder = Encoder.from_pretrained(folder, device=device)
        if (folder / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
        elif (folder / "vocab.txt").is_file():
            lowercase = _read_json(folder / "tokenizer_config.json").get("do_lower_case", True)
            tokenizer = Tokenizer.from_vocab(folder / "vocab.txt", lowercase=lowercase)
        else:
            raise FileNotFoundError(f"folder: {folder} has neither tokenizer.json nor vocab.txt")
        settings = _read_json(folder / TINYIR_CONFIG) or _sentence_transformers_settings(folder)
        max_length = min(settings.get("max_length") or 512, encoder.config.max_position)
        model = cls(
            encoder,
            tokenizer,
            pooling=settings.get("pooling", "mean"),
            normalize=settings.get("normalize", False),
            max_length=max_length,
        )
        return model.eval()

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the model to ``folder`` atomically (a temporary folder, then one rename).

        Files: config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
        tinyir.json, and sentence-transformers' modules.json / sentence_bert_config.json /
        1_Pooling/config.json. No pickles. An existing ``folder`` is replaced.
        """
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self.encoder.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp, model_max_length=self.encoder.config.max_position)
            settings = {"pooling": self.pooling, "normalize": self.normalize,
                        "max_length": self.max_length}
            _write_json(tmp / TINYIR_CONFIG, settings)
            _write_sentence_transformers_files(tmp, self.embedding_dim, self.pooling,
                                               self.normalize, self.max_length)
        return folder

    def extra_repr(self) -> str:
        return (f"pooling={self.pooling!r}, normalize={self.normalize}, "
                f"max_length={self.max_length}, vocab_size={self.tokenizer.vocab_size}")


# -----------------------------------------------------------------------------------------------
# folder files


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


_ST_POOLING_KEYS = {  # sentence-transformers' 1_Pooling/config.json flags, ours <-> theirs
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


def _sentence_transformers_settings(folder: Path) -> dict[str, Any]:
    """Pooling / normalize / max_length from a sentence-transformers folder's module files."""
    modules = json.loads((folder / "modules.json").read_text()) if (
        folder / "modules.json").is_file() else []
    settings: dict[str, Any] = {
        "normalize": any(m.get("type", "").endswith(".Normalize") for m in modules),
        "max_length": _read_json(folder / "sentence_bert_config.json").get("max_seq_length"),
    }
    pooling_dir = next(
        (m["path"] for m in modules if m.get("type", "").endswith(".Pooling")), "1_Pooling"
    )
    pooling_config = _read_json(folder / pooling_dir / "config.json")
    if "pooling_mode" in pooling_config:  # newer sentence-transformers
        settings["pooling"] = pooling_config["pooling_mode"]
    else:
        on = [mode for mode, key in _ST_POOLING_KEYS.items() if pooling_config.get(key)]
        other = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v
                 and k not in _ST_POOLING_KEYS.values()]
        if len(on) > 1 or other:
            raise ValueError(
                f"folder: {folder / pooling_dir} asks for pooling {on + other}; "
                f"tinyir supports exactly one of {POOLING_MODES}"
            )
        settings["pooling"] = on[0] if on else "mean"
    return settings


def _write_sentence_transformers_files(
    folder: Path, dim: int, pooling: str, normalize: bool, max_length: int
) -> None:
    """modules.json and friends, so ``SentenceTransformer(folder)`` builds the same pipeline."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(parents=True, exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": max_length, "do_lower_case": False})
    pooling_config = {"word_embedding_dimension": dim}
    pooling_config |= {key: mode == pooling for mode, key in _ST_POOLING_KEYS.items()}
    _write_json(folder / "1_Pooling" / "config.json", pooling_config)
