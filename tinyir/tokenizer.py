"""WordPiece tokenization: text -> token ids -> padded (B, T) tensors.

BERT-family models read text through a WordPiece vocabulary. The pipeline has four steps, all
done by the Rust ``tokenizers`` library that this module wraps:

1. normalize   clean control characters, put spaces around CJK characters, lowercase
2. pre-split   on whitespace and punctuation ("don't!" -> "don", "'", "t", "!")
3. WordPiece   greedy longest-match into vocabulary pieces ("tokenizer" -> "token", "##izer")
4. post-process  wrap every text as ``[CLS] ... [SEP]``

:class:`Tokenizer` loads MiniLM's vocabulary (ids equal Hugging Face's ``AutoTokenizer``, which the
tests check), loads any BERT ``vocab.txt``, or trains a small vocabulary on your own corpus. Calling
it on a list of texts returns ``input_ids`` and ``attention_mask`` as (B, T) LongTensors, padded to
the longest text of the batch (never to a fixed length: padding is wasted compute).

Truncation follows Hugging Face: a text longer than ``max_length`` keeps its first
``max_length - 2`` pieces and still ends with ``[SEP]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tokenizers
import torch
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from tinyir.atomic import atomic_file, write_atomic
from tinyir.pretrained import minilm_path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _bert_pipeline(model: models.Model, lowercase: bool) -> tokenizers.Tokenizer:
    """Wrap a WordPiece ``model`` in BERT's normalizer, pre-tokenizer and decoder."""
    backend = tokenizers.Tokenizer(model)
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _add_cls_sep(backend: tokenizers.Tokenizer) -> None:
    """Register the special tokens (so "[MASK]" in a text is one token, as in Hugging Face) and
    install the ``[CLS] $A [SEP]`` post-processor (and BERT's pair template)."""
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )


def check_texts(texts: object, name: str = "texts") -> list[str]:
    """Return ``texts`` as a list; ``ValueError`` if it is empty, ``TypeError`` naming the index
    of the first item that is not a str (or if ``texts`` itself is a str, not a list)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name}: expected a list of str, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError(f"{name}: expected at least one text, got an empty {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{index}]: expected str, got {type(text).__name__}")
    return list(texts)


class Tokenizer:
    """A BERT WordPiece tokenizer that returns padded torch tensors.

    Build one with :meth:`minilm`, :meth:`from_vocab`, :meth:`from_file` or :meth:`train`, then
    call it: ``tok(["a text", "another"]) -> {"input_ids": (B, T), "attention_mask": (B, T)}``.
    """

    def __init__(self, backend: tokenizers.Tokenizer):
        if not isinstance(backend, tokenizers.Tokenizer):
            raise TypeError(f"backend: expected a tokenizers.Tokenizer, got {type(backend).__name__}")
        missing = [t for t in SPECIAL_TOKENS if backend.token_to_id(t) is None]
        if missing:
            raise ValueError(f"backend: vocabulary lacks the special tokens {missing}")
        # A saved tokenizer.json may carry fixed padding/truncation (MiniLM's pads to 128): drop
        # them, this class pads to the longest text and truncates per call.
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.pad_id = backend.token_to_id("[PAD]")
        self.unk_id = backend.token_to_id("[UNK]")
        self.cls_id = backend.token_to_id("[CLS]")
        self.sep_id = backend.token_to_id("[SEP]")
        self.mask_id = backend.token_to_id("[MASK]")

    # ----------------------------------------------------------------------------------------
    # constructors

    @classmethod
    def minilm(cls) -> Tokenizer:
        """all-MiniLM-L6-v2's tokenizer (30,522 lowercase WordPiece pieces), from its folder."""
        return cls.from_file(minilm_path() / "tokenizer.json")

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load a ``tokenizer.json`` written by :meth:`save` or by Hugging Face."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: expected a tokenizer.json file, {path} does not exist")
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    @classmethod
    def from_vocab(cls, path: str | Path, lowercase: bool = True) -> Tokenizer:
        """Build a BERT tokenizer from a ``vocab.txt`` (one piece per line, line number = id)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: expected a vocab.txt file, {path} does not exist")
        model = models.WordPiece.from_file(str(path), unk_token="[UNK]")
        backend = _bert_pipeline(model, lowercase)
        missing = [t for t in SPECIAL_TOKENS if backend.token_to_id(t) is None]
        if missing:
            raise ValueError(f"path: vocabulary {path} lacks the special tokens {missing}")
        _add_cls_sep(backend)
        return cls(backend)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        min_frequency: int = 2,
        lowercase: bool = True,
    ) -> Tokenizer:
        """Learn a WordPiece vocabulary of at most ``vocab_size`` pieces from ``texts``.

        The five special tokens get ids 0-4 (``[PAD]`` = 0), then every character of the corpus
        (as a word start and as a ``##`` continuation), then the learned merges; a ``vocab_size``
        smaller than that alphabet is exceeded rather than leaving characters out. Pieces seen
        fewer than ``min_frequency`` times are not merged. Training is deterministic: the same
        texts give the same ids.
        """
        if not isinstance(texts, (str, Sequence)):  # a generator or other iterable
            texts = list(texts)
        texts = check_texts(texts)
        if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size: expected an int > {len(SPECIAL_TOKENS)}, got {vocab_size!r}"
            )
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"min_frequency: expected an int >= 1, got {min_frequency!r}")
        # The Rust trainer breaks ties between equally frequent merges by token id, and it numbers
        # the characters in hash-map order, which changes from run to run. Numbering every
        # character ourselves first (sorted, passed as extra initial tokens) makes the result
        # deterministic; the model is then rebuilt from the learned vocabulary alone.
        backend = _bert_pipeline(models.WordPiece(unk_token="[UNK]"), lowercase)
        first_chars, inner_chars = set(), set()
        for text in texts:
            for word, _ in backend.pre_tokenizer.pre_tokenize_str(
                backend.normalizer.normalize_str(text)
            ):
                first_chars.add(word[0])
                inner_chars.update(word[1:])
        alphabet = sorted(first_chars) + ["##" + c for c in sorted(inner_chars)]
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS) + alphabet,
            continuing_subword_prefix="##",
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        vocab = backend.get_vocab(with_added_tokens=True)
        backend = _bert_pipeline(models.WordPiece(vocab, unk_token="[UNK]"), lowercase)
        _add_cls_sep(backend)
        return cls(backend)

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as one ``tokenizer.json`` (a folder gets ``folder/tokenizer.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(path))
        return path

    def save_pretrained(self, folder: str | Path, model_max_length: int | None = None) -> Path:
        """Write ``folder/tokenizer.json`` atomically, as every model of the course saves itself
        (``from_pretrained(folder)`` reads it back); returns ``folder``.

        With ``model_max_length`` also Hugging Face's ``tokenizer_config.json`` (special tokens,
        lowercasing, and the length ``AutoTokenizer(..., truncation=True)`` cuts at), so
        transformers and sentence-transformers tokenize as tinyir does."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / "tokenizer.json") as tmp:
            self.backend.save(str(tmp))
        if model_max_length is not None:
            config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase,
                      "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                      "cls_token": "[CLS]", "mask_token": "[MASK]",
                      "model_max_length": model_max_length}
            write_atomic(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Tokenizer:
        """The tokenizer a ``save_pretrained(folder)`` wrote."""
        return cls.from_file(Path(folder) / "tokenizer.json")

    # ----------------------------------------------------------------------------------------
    # encoding

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece pieces of one text, without ``[CLS]``/``[SEP]`` (as HF's ``tokenize``)."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode_ids(self, texts: Sequence[str], max_length: int = 256) -> list[list[int]]:
        """Token ids of each text, ``[CLS] ... [SEP]``, truncated to ``max_length``, unpadded."""
        texts = check_texts(texts)
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(
                f"max_length: expected an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}"
            )
        encodings = self.backend.encode_batch(texts)
        ids = [e.ids for e in encodings]
        # Truncate after the fact, as HF does: keep max_length - 1 pieces, then put [SEP] back.
        return [x if len(x) <= max_length else x[: max_length - 1] + [self.sep_id] for x in ids]

    def pad(self, ids: Sequence[Sequence[int]], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad lists of ids to the longest one: ``input_ids`` and ``attention_mask``, (B, T) long."""
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side: expected 'right' or 'left', got {padding_side!r}")
        if len(ids) == 0:
            raise ValueError("ids: expected at least one list of ids, got an empty sequence")
        lengths = [len(x) for x in ids]
        B, T = len(ids), max(lengths)
        input_ids = np.full((B, T), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((B, T), dtype=np.int64)
        for row, (x, n) in enumerate(zip(ids, lengths, strict=True)):
            span = slice(0, n) if padding_side == "right" else slice(T - n, T)
            input_ids[row, span] = x
            attention_mask[row, span] = 1
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
        }

    def __call__(
        self, texts: Sequence[str], max_length: int = 256, padding_side: str = "right"
    ) -> dict[str, torch.Tensor]:
        """Tokenize a batch: ``input_ids`` and ``attention_mask``, both (B, T) LongTensors.

        T is the longest text of the batch after truncation to ``max_length``; padding uses
        ``pad_id`` with mask 0, on the right (default) or on the left (for last-token pooling).
        """
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side: expected 'right' or 'left', got {padding_side!r}")
        return self.pad(self.encode_ids(texts, max_length), padding_side)

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Turn ids back into text (lowercased, with WordPiece pieces glued back together)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @property
    def lowercase(self) -> bool:
        """Whether the normalizer lowercases text (True for MiniLM)."""
        normalizer = json.loads(self.backend.to_str()).get("normalizer") or {}
        return bool(normalizer.get("lowercase", False))

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"
