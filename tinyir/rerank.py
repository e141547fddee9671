"""Cross-encoder reranking: read the query and the passage together, output one relevance score.

A bi-encoder embeds the query and the passage separately and compares two vectors; it never sees
them side by side. A cross-encoder feeds both through the transformer as one input,

    [CLS] query [SEP] passage [SEP]        token_type_ids: 0 ... 0 1 ... 1

so every query token attends to every passage token in every layer, and a head turns the
final [CLS] vector into one scalar. It is more accurate, and much slower: nothing can be
precomputed per passage, so scoring N passages costs N transformer passes at query time. Hence
retrieve-then-rerank: a cheap first stage (BM25 or a bi-encoder) picks the top ~100 passages,
the cross-encoder re-orders only those.

    model = CrossEncoder.minilm()                     # MiniLM encoder + fresh linear head
    history = train_cross_encoder(model, [(q, pos, [neg1, neg2, neg3]), ...], epochs=1)
    model.score([(q, d1), (q, d2)])                        # (2,) scores, higher = more relevant
    model.rerank(q, [d1, d2, d3], top_k=2)                 # [(candidate index, score), ...]

Head: ``pooling="pooler"`` is BERT's sequence classification, what the MS MARCO cross-encoders
(ms-marco-MiniLM-L-6-v2) use: the final [CLS] vector goes through BERT's pooler, a dense layer and
tanh, then a linear layer gives the score,

    score = w . tanh(W_p h_[CLS] + b_p) + b

The pair template puts [CLS] at position 0, its attention reads both segments, and the score does
not depend on how many padding or passage tokens there are. Such a model is saved as a Hugging
Face ``BertForSequenceClassification`` folder: ``sentence_transformers.CrossEncoder(folder)``
loads it and gives the same scores. ``pooling="cls"`` drops the pooler (a linear layer on
h_[CLS]); ``pooling="mean"`` (the masked mean over all tokens, MiniLM's bi-encoder pooling) is
there to compare.

``pooling="segments"``: the query's and the passage's tokens are still encoded *together* (full
cross-attention in every layer), then each segment is mean-pooled and L2-normalized, and the
linear head reads their element-wise product: score = w . (u * v) + b. With w = 1/tau in every
dimension (what :meth:`CrossEncoder.from_encoder` sets for this pooling) the score at step 0
is cos(u, v) / tau, a ranking a pretrained bi-encoder already makes meaningful; fine-tuning then
teaches the encoder to use the cross-attention and the head to reweight dimensions. A fresh
head on [CLS] or on the mean starts at random and, in our runs, needed more steps than a CPU
lesson affords (``tinyir.course.rerankers.CROSS_ENCODER_RECIPE`` records them). Shapes: B pairs,
T tokens, C hidden size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from tinyir.atomic import atomic_folder
from tinyir.batching import length_batches
from tinyir.encoder import Encoder
from tinyir.pooling import pool
from tinyir.pretrained import minilm_path
from tinyir.tokenizer import Tokenizer
from tinyir.train import TrainHistory, check_examples, epochs_of, fit
from tinyir.validate import check_choice, check_int_range, check_positive, check_type

CONFIG_FILE = "tinyir_cross_encoder.json"
TRUNCATION_STRATEGIES = ("longest_first", "only_second")
CROSS_ENCODER_POOLING = ("pooler", "cls", "mean", "segments")
# The head's weights in model.safetensors, under BertForSequenceClassification's names.
POOLER_NAMES = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")
CLASSIFIER_NAMES = ("classifier.weight", "classifier.bias")
SEGMENTS_INIT_SCALE = 20.0  # 1 / tau with tau = 0.05: the head starts as a scaled cosine
CROSS_ENCODER_LOSSES = ("listwise", "bce")

# -----------------------------------------------------------------------------------------------
# Pair encoding: [CLS] query [SEP] passage [SEP]


def pair_backend(
    tokenizer: Tokenizer, max_length: int, truncation: str = "longest_first"
) -> tokenizers.Tokenizer:
    """A copy of ``tokenizer``'s Rust backend that truncates pairs to ``max_length`` tokens.

    "longest_first" (Hugging Face's ``truncation=True``) removes one token at a time from the
    longer of the two texts, so a long passage is cut first and a short query is kept whole;
    "only_second" cuts the passage only (and fails if the query alone is too long).
    """
    check_type("tokenizer", tokenizer, Tokenizer, "a tinyir Tokenizer")
    check_choice("truncation", truncation, TRUNCATION_STRATEGIES)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 4:
        raise ValueError(
            f"max_length: expected an int >= 4 ([CLS] q [SEP] d [SEP]), got {max_length!r}"
        )
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend.to_str())
    backend.no_padding()
    backend.enable_truncation(max_length, strategy=truncation)
    return backend


def _check_pair_texts(queries: Sequence[str], docs: Sequence[str]) -> None:
    for name, texts in (("queries", queries), ("docs", docs)):
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"{name}: expected a list of str, got {type(texts).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}]: expected str, got {type(text).__name__}")
    if len(queries) != len(docs):
        raise ValueError(
            f"docs: expected one passage per query ({len(queries)}), got {len(docs)}"
        )
    if len(queries) == 0:
        raise ValueError("queries: expected at least one (query, passage) pair, got none")


def _pad_pairs(encodings: Sequence[tokenizers.Encoding], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded pairs: ``input_ids``, ``token_type_ids``, ``attention_mask`` (B, T)."""
    B, T = len(encodings), max(len(e.ids) for e in encodings)
    input_ids = np.full((B, T), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((B, T), dtype=np.int64)
    attention_mask = np.zeros((B, T), dtype=np.int64)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        input_ids[row, :n] = e.ids
        token_type_ids[row, :n] = e.type_ids
        attention_mask[row, :n] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "attention_mask": torch.from_numpy(attention_mask),
    }


def encode_pairs(
    tokenizer: Tokenizer,
    queries: Sequence[str],
    docs: Sequence[str],
    max_length: int = 256,
    truncation: str = "longest_first",
) -> dict[str, torch.Tensor]:
    """BERT pair encoding of ``(queries[i], docs[i])``, padded to the longest pair.

    Returns ``input_ids``, ``token_type_ids`` (0 for [CLS] query [SEP], 1 for passage [SEP]) and
    ``attention_mask``, each (B, T) long; equal to Hugging Face's
    ``AutoTokenizer(queries, docs, truncation=True, max_length=..., padding=True)``.
    """
    _check_pair_texts(queries, docs)
    backend = pair_backend(tokenizer, max_length, truncation)
    encodings = backend.encode_batch(list(zip(queries, docs, strict=True)))
    return _pad_pairs(encodings, tokenizer.pad_id)


# -----------------------------------------------------------------------------------------------
# The model


def _as_pairs(pairs_or_query, docs) -> tuple[list[str], list[str]]:
    """Accept ``[(q, d), ...]`` or ``(query, [d1, d2, ...])``; return (queries, docs) lists."""
    if docs is not None:
        if not isinstance(pairs_or_query, str):
            raise TypeError(
                f"query: expected a str when docs are given, got {type(pairs_or_query).__name__}"
            )
        if isinstance(docs, str) or not isinstance(docs, Sequence):
            raise TypeError(f"docs: expected a list of str, got {type(docs).__name__}")
        return [pairs_or_query] * len(docs), list(docs)
    if isinstance(pairs_or_query, str) or not isinstance(pairs_or_query, Sequence):
        raise TypeError(
            "pairs: expected a list of (query, passage) tuples, or score(query, docs), "
            f"got {type(pairs_or_query).__name__}"
        )
    queries, passages = [], []
    for i, pair in enumerate(pairs_or_query):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"pairs[{i}]: expected a (query, passage) pair, got {pair!r:.80}")
        queries.append(pair[0])
        passages.append(pair[1])
    return queries, passages


def segment_product(
    hidden: torch.Tensor, mask: torch.Tensor, token_type_ids: torch.Tensor
) -> torch.Tensor:
    """(B, T, C) token vectors of ``[CLS] q [SEP] d [SEP]`` pairs -> (B, C) u * v, where u and v
    are the L2-normalized masked means of segment 0 ([CLS] q [SEP]) and segment 1 (d [SEP]).
    Summed over C it is cos(u, v). Padding (mask 0) is in neither segment."""
    if token_type_ids is None:
        raise ValueError("token_type_ids: the segments pooling needs them (0 = query, 1 = passage)")
    real = mask.bool()
    first = (real & (token_type_ids == 0)).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    second = (real & (token_type_ids == 1)).unsqueeze(-1).to(hidden.dtype)
    if (second.sum(dim=1) == 0).any():
        raise ValueError("token_type_ids: every pair needs at least one passage token (type 1)")
    u = (hidden * first).sum(dim=1) / first.sum(dim=1).clamp(min=1)  # (B, C)
    v = (hidden * second).sum(dim=1) / second.sum(dim=1)
    return F.normalize(u, dim=-1) * F.normalize(v, dim=-1)


class CrossEncoder(nn.Module):
    """Encoder + head: ``[CLS] q [SEP] d [SEP]`` -> one relevance score (a logit).

    Args:
        encoder: the transformer, (B, T) ids + token types -> (B, T, C).
        tokenizer: its WordPiece tokenizer (pairs are encoded with the Rust backend's template).
        max_length: a pair is truncated to this many tokens, longest text first (the passage).
        pooling: "cls" (default: the [CLS] vector), "pooler" (BERT's pooler on [CLS], then the
            head: BertForSequenceClassification), "mean" (masked mean over all tokens) or
            "segments" (the head reads u * v, the unit means of the query and passage tokens).
        head: optional ``nn.Linear(C, 1)``; a fresh one (BERT init, N(0, 0.02)) when None.
        pooler: with "pooler", optional ``nn.Linear(C, C)``; a fresh one when None.
    """

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Tokenizer,
        max_length: int = 256,
        pooling: str = "cls",
        head: nn.Linear | None = None,
        pooler: nn.Linear | None = None,
    ):
        super().__init__()
        check_type("encoder", encoder, Encoder, "a tinyir Encoder")
        check_type("tokenizer", tokenizer, Tokenizer, "a tinyir Tokenizer")
        check_choice("pooling", pooling, CROSS_ENCODER_POOLING)
        if encoder.config.type_vocab_size < 2:
            raise ValueError("encoder: a cross-encoder needs type_vocab_size >= 2 (two segments)")
        check_int_range("max_length", max_length, 4, encoder.config.max_position,
                        " (the encoder's max_position)")
        C = encoder.config.hidden_size
        if head is None:
            head = nn.Linear(C, 1)
            nn.init.normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
            head = head.to(encoder.device)
        if not isinstance(head, nn.Linear) or head.in_features != C or head.out_features != 1:
            raise ValueError(f"head: expected nn.Linear({C}, 1), got {head!r}")
        if pooling != "pooler" and pooler is not None:
            raise ValueError(f"pooler: only pooling='pooler' has one, got pooling={pooling!r}")
        if pooling == "pooler" and pooler is None:
            pooler = nn.Linear(C, C)
            nn.init.normal_(pooler.weight, std=0.02)
            nn.init.zeros_(pooler.bias)
            pooler = pooler.to(encoder.device)
        if pooler is not None and (not isinstance(pooler, nn.Linear) or pooler.in_features != C
                                   or pooler.out_features != C):
            raise ValueError(f"pooler: expected nn.Linear({C}, {C}), got {pooler!r}")
        self.encoder = encoder
        self.pooler = pooler
        self.tokenizer = tokenizer
        self.head = head
        self.pooling = pooling
        self.max_length = max_length
        self._backend = pair_backend(tokenizer, max_length)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @classmethod
    def minilm(
        cls, max_length: int = 256, pooling: str = "cls", seed: int = 0,
        device: str | torch.device | None = None,
    ) -> CrossEncoder:
        """all-MiniLM-L6-v2's encoder and tokenizer with a fresh head (see :meth:`from_encoder`);
        with "pooler", MiniLM's own pretrained pooler (dense + tanh on [CLS]) under it."""
        encoder = Encoder.from_pretrained(minilm_path(), device=device)
        pooler = _read_pooler(minilm_path() / "model.safetensors", encoder) \
            if pooling == "pooler" else None
        return cls.from_encoder(encoder, Tokenizer.minilm(), max_length, pooling, seed, pooler)

    @classmethod
    def from_encoder(
        cls, encoder: Encoder, tokenizer: Tokenizer, max_length: int = 256, pooling: str = "cls",
        seed: int = 0, pooler: nn.Linear | None = None,
    ) -> CrossEncoder:
        """A cross-encoder on ``encoder`` (e.g. a fine-tuned bi-encoder's) with a fresh head.

        With "cls", "pooler" or "mean" the head is random (seeded, N(0, 0.02)): its scores mean
        nothing until :func:`train_cross_encoder` has run ("pooler": ``pooler``, or a seeded
        fresh one). With "segments" it is ``SEGMENTS_INIT_SCALE`` in every dimension: the score
        starts as cos(query segment, passage segment) / tau of the jointly encoded pair.
        Returned in eval mode, on the encoder's device.
        """
        generator = torch.Generator().manual_seed(seed)
        C = encoder.config.hidden_size
        head = nn.Linear(C, 1)
        with torch.no_grad():
            if pooling == "segments":  # score = cos(u, v) / tau at step 0
                head.weight.fill_(SEGMENTS_INIT_SCALE)
            else:
                head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.02)
            head.bias.zero_()
            if pooling == "pooler" and pooler is None:
                pooler = nn.Linear(C, C)
                pooler.weight.copy_(torch.randn(pooler.weight.shape, generator=generator) * 0.02)
                pooler.bias.zero_()
        pooler = pooler.to(encoder.device) if pooler is not None else None
        return cls(encoder, tokenizer, max_length, pooling, head.to(encoder.device), pooler).eval()

    def tokenize(self, queries: Sequence[str], docs: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pairs -> ``input_ids``, ``token_type_ids``, ``attention_mask`` (B, T) on the device."""
        _check_pair_texts(queries, docs)
        encodings = self._backend.encode_batch(list(zip(queries, docs, strict=True)))
        batch = _pad_pairs(encodings, self.tokenizer.pad_id)
        return {name: t.to(self.device) for name, t in batch.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A tokenized batch of pairs -> scores (B,), differentiable (training calls this)."""
        mask = batch["attention_mask"]
        hidden = self.encoder(batch["input_ids"], mask, batch.get("token_type_ids"))  # (B, T, C)
        if self.pooling == "segments":
            pooled = segment_product(hidden, mask, batch["token_type_ids"])  # (B, C)
        elif self.pooling == "pooler":
            pooled = torch.tanh(self.pooler(hidden[:, 0]))  # (B, C), BERT's pooled output
        else:
            pooled = pool(hidden, mask, self.pooling)  # (B, C)
        return self.head(pooled).squeeze(-1)  # (B,)

    @torch.inference_mode()
    def score(
        self,
        pairs,
        docs: Sequence[str] | None = None,
        batch_size: int = 32,
        progress: bool = False,
    ) -> torch.Tensor:
        """Relevance scores of ``[(query, passage), ...]``, or of ``score(query, docs)``.

        Returns (N,) float32 on the CPU, row i = pair i (an empty list gives an empty tensor).
        Pairs are sorted by token count and scored ``batch_size`` at a time, so each batch pads
        only to its own longest pair; the scores equal scoring each pair alone (up to float
        rounding; tests/test_rerank.py checks it).
        """
        queries, passages = _as_pairs(pairs, docs)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        N = len(queries)
        out = torch.empty(N, dtype=torch.float32)
        if N == 0:
            return out
        _check_pair_texts(queries, passages)
        was_training = self.training
        self.eval()
        encodings = self._backend.encode_batch(list(zip(queries, passages, strict=True)))
        for rows in length_batches([len(e.ids) for e in encodings], batch_size,
                                   progress=progress, desc="rerank"):
            batch = _pad_pairs([encodings[i] for i in rows], self.tokenizer.pad_id)
            batch = {name: t.to(self.device) for name, t in batch.items()}
            out[torch.tensor(rows)] = self(batch).float().cpu()
        self.train(was_training)
        return out

    def rerank(
        self, query: str, candidates: Sequence[str], top_k: int | None = None, batch_size: int = 32
    ) -> list[tuple[int, float]]:
        """Order ``candidates`` by cross-encoder score: ``[(candidate index, score), ...]``.

        Best first, at most ``top_k`` (all when None; a ``top_k`` larger than the number of
        candidates returns them all). An empty candidate list returns ``[]``.
        """
        if not isinstance(query, str):
            raise TypeError(f"query: expected str, got {type(query).__name__}")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)
                                  or top_k < 1):
            raise ValueError(f"top_k: expected an int >= 1 or None, got {top_k!r}")
        if len(candidates) == 0:
            return []
        scores = self.score(query, list(candidates), batch_size=batch_size)  # (N,)
        k = len(candidates) if top_k is None else min(top_k, len(candidates))
        # Stable order: equal scores keep the candidates' (first-stage) order.
        order = sorted(range(len(candidates)), key=lambda i: -scores[i].item())[:k]
        return [(i, scores[i].item()) for i in order]

    # -------------------------------------------------------------------------------------------
    # saving and loading: safetensors + JSON, no pickles

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the model to ``folder`` atomically (a temporary folder, then one rename).

        Files: ``config.json`` + ``model.safetensors`` (BertForSequenceClassification's names:
        ``bert.*`` for the encoder and the pooler, ``classifier.*`` for the head),
        ``tokenizer.json`` + ``tokenizer_config.json`` and ``tinyir_cross_encoder.json``
        (max_length, pooling). With ``pooling="pooler"`` the folder is a Hugging Face
        sequence-classification model with one label, and ``sentence_transformers.CrossEncoder``
        loads it (raw logits: its activation is set to Identity). Other poolings load only in
        tinyir: sentence-transformers would put a fresh pooler under their head (transformers
        reports ``bert.pooler.dense.*`` MISSING) and score with it. An existing ``folder`` is
        replaced.
        """
        folder = Path(folder)
        weights = {f"bert.{n}": t for n, t in self.encoder.bert_state_dict().items()}
        weights |= dict(zip(CLASSIFIER_NAMES, (self.head.weight, self.head.bias), strict=True))
        if self.pooler is not None:
            weights |= dict(zip(POOLER_NAMES, (self.pooler.weight, self.pooler.bias), strict=True))
        config = self.encoder.config.to_hf_config()
        if self.pooling == "pooler":
            config |= {"architectures": ["BertForSequenceClassification"],
                       "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
                       "sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}
        with atomic_folder(folder) as tmp:
            tensors = {n: t.detach().cpu().contiguous() for n, t in weights.items()}
            save_file(tensors, str(tmp / "model.safetensors"), {"format": "pt"})
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            self.tokenizer.save_pretrained(tmp, model_max_length=self.max_length)
            settings = {"max_length": self.max_length, "pooling": self.pooling}
            (tmp / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device | None = None
    ) -> CrossEncoder:
        """Load a folder written by :meth:`save_pretrained`, in eval mode; also a Hugging Face
        BERT cross-encoder with one label and a ``tokenizer.json`` (e.g. ms-marco-MiniLM-L-6-v2:
        pooling "pooler", max_length its tokenizer's ``model_max_length``)."""
        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"folder: expected {folder / 'tokenizer.json'}, it does not exist")
        settings = _read_json(folder / CONFIG_FILE) or _hf_cross_encoder_settings(folder)
        encoder = Encoder.from_pretrained(folder, device=device)  # skips pooler and classifier
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            if not set(CLASSIFIER_NAMES) <= set(f.keys()):
                raise ValueError(f"folder: {folder / 'model.safetensors'} holds no "
                                 f"{' / '.join(CLASSIFIER_NAMES)} (not a cross-encoder)")
            classifier = [f.get_tensor(n) for n in CLASSIFIER_NAMES]
        head = _linear(classifier, encoder)
        pooler = _read_pooler(folder / "model.safetensors", encoder) \
            if settings["pooling"] == "pooler" else None
        max_length = min(settings["max_length"], encoder.config.max_position)
        model = cls(encoder, Tokenizer.from_file(folder / "tokenizer.json"), max_length,
                    settings["pooling"], head, pooler)
        return model.eval()

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, max_length={self.max_length}"


def _linear(tensors: Sequence[torch.Tensor], encoder: Encoder) -> nn.Linear:
    """An ``nn.Linear`` holding (weight, bias), on the encoder's device."""
    weight, bias = tensors
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.load_state_dict({"weight": weight, "bias": bias})
    return layer.to(encoder.device)


def _read_pooler(path: Path, encoder: Encoder) -> nn.Linear:
    """BERT's pooler (dense C -> C) from a checkpoint's ``[bert.]pooler.dense.*``."""
    C = encoder.config.hidden_size
    with safe_open(str(path), "pt") as f:
        names = set(f.keys())
        for prefix in ("bert.", ""):
            wanted = [prefix + name.removeprefix("bert.") for name in POOLER_NAMES]
            if set(wanted) <= names:
                tensors = [f.get_tensor(n) for n in wanted]
                break
        else:
            raise ValueError(f"folder: {path} holds no pooler.dense weights (pooling='pooler')")
    if tuple(tensors[0].shape) != (C, C):
        raise ValueError(f"folder: {path}'s pooler is {tuple(tensors[0].shape)}, expected ({C}, {C})")
    return _linear(tensors, encoder)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _hf_cross_encoder_settings(folder: Path) -> dict:
    """pooling / max_length of a Hugging Face BERT cross-encoder folder (no tinyir config)."""
    config = _read_json(folder / "config.json")
    architectures = config.get("architectures") or []
    labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
    if "BertForSequenceClassification" not in architectures or labels != 1:
        raise ValueError(
            f"folder: expected a tinyir cross-encoder ({CONFIG_FILE}) or a Hugging Face "
            f"BertForSequenceClassification with one label, got architectures {architectures} "
            f"with {labels} labels in {folder / 'config.json'}")
    max_length = _read_json(folder / "tokenizer_config.json").get("model_max_length", 512)
    return {"pooling": "pooler", "max_length": int(min(max_length, 512))}


# -----------------------------------------------------------------------------------------------
# Training


def cross_encoder_loss(scores: torch.Tensor, loss: str = "listwise") -> torch.Tensor:
    """Loss of a (B, 1 + K) score matrix whose column 0 is each query's positive.

    "listwise": softmax cross-entropy over the 1 + K candidates of each query (the positive must
    out-score its own negatives; ``log(1 + K)`` at a constant score). "bce": each pair on its own,
    sigmoid binary cross-entropy with label 1 for the positive, 0 for the negatives.
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores: expected shape (B, 1 + K) with K >= 1, got {tuple(scores.shape)}")
    if loss == "listwise":
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return F.cross_entropy(scores, target)
    if loss == "bce":
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(scores, labels)
    raise ValueError(f"loss: expected one of {CROSS_ENCODER_LOSSES}, got {loss!r}")


def train_cross_encoder(
    model: CrossEncoder,
    examples: Sequence,
    epochs: int = 1,
    lr: float = 3e-5,
    *,
    head_lr: float | None = None,
    batch_size: int = 8,
    loss: str = "listwise",
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    max_steps: int | None = None,
    seed: int = 0,
    eval_fn=None,
    save_to: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainHistory:
    """Fine-tune ``model`` in place on ``(query, positive, [negatives...])`` groups.

    Each step scores ``batch_size`` groups, i.e. ``batch_size * (1 + K)`` pairs, and takes one
    AdamW step on :func:`cross_encoder_loss` (listwise softmax CE by default: it compares the
    positive with its own hard negatives, the decision a reranker makes). Every group needs the
    same number K >= 1 of negatives. Linear warm-up then linear decay; ``max_steps`` stops early.
    ``head_lr`` (default: ``lr``) gives the fresh head its own, larger learning rate: at the
    encoder's 5e-5 a randomly initialised head barely moves in a few dozen steps.
    ``save_to`` / ``resume``: a checkpoint after each epoch, and continuing from it
    (:func:`tinyir.train.fit`). Returns a :class:`tinyir.train.TrainHistory` (the loss of every
    step); the model is left in eval mode.
    """
    check_choice("loss", loss, CROSS_ENCODER_LOSSES)
    data, _ = check_examples(examples, min_negatives=1)
    check_positive("epochs", epochs)
    check_positive("batch_size", batch_size)
    head = list(model.head.parameters())
    body = [p for p in model.parameters() if all(p is not h for h in head)]
    groups = [{"params": body, "lr": lr}, {"params": head, "lr": lr if head_lr is None else head_lr}]

    def step_loss(batch: list[int]) -> torch.Tensor:
        queries = [data[i][0] for i in batch for _ in range(1 + len(data[i][2]))]
        docs = [d for i in batch for d in (data[i][1], *data[i][2])]
        scores = model(model.tokenize(queries, docs)).view(len(batch), -1)  # (B, 1 + K)
        return cross_encoder_loss(scores, loss)

    return fit(model, epochs_of(len(data), epochs, batch_size, seed, max_steps), step_loss,
               lr=lr, params=groups, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
               grad_clip=grad_clip, seed=seed, eval_fn=eval_fn, save_to=save_to, resume=resume,
               progress=progress, desc="train cross-encoder")



def reranker_to_train(
    model: str | Path, pooling: str | None = None, max_length: int | None = None, seed: int = 0,
    device: str | torch.device | None = None,
) -> CrossEncoder:
    """The cross-encoder a training run starts from (``tinyir train-reranker --model``).

    ``model``: "minilm" (all-MiniLM-L6-v2 with its pooler and a fresh head), a cross-encoder
    folder (continued as it is; ``pooling`` must then be None or its own), or a bi-encoder folder
    (its encoder and tokenizer, a fresh head; with "pooler", the folder's pooler when it has
    one). ``pooling`` defaults to "pooler" (BERT's sequence classification), ``max_length`` to
    256 (a cross-encoder folder's own).
    """
    from tinyir.biencoder import BiEncoder

    check_choice("pooling", pooling, (None, *CROSS_ENCODER_POOLING))
    if model == "minilm":
        return CrossEncoder.minilm(max_length or 256, pooling or "pooler", seed, device)
    folder = Path(model)
    if not folder.is_dir():
        raise ValueError(f"model: expected 'minilm' or a model folder, got {model!r} (no such folder)")
    if (folder / CONFIG_FILE).is_file() or "BertForSequenceClassification" in (
            _read_json(folder / "config.json").get("architectures") or []):
        found = CrossEncoder.from_pretrained(folder, device=device)
        if pooling not in (None, found.pooling):
            raise ValueError(f"pooling: {folder} is a cross-encoder with pooling "
                             f"{found.pooling!r}; got {pooling!r}")
        return CrossEncoder(found.encoder, found.tokenizer, max_length or found.max_length,
                            found.pooling, found.head, found.pooler).eval()
    base = BiEncoder.from_pretrained(folder, device=device)
    pooling = pooling or "pooler"
    pooler = None
    if pooling == "pooler":
        try:
            pooler = _read_pooler(folder / "model.safetensors", base.encoder)
        except ValueError:  # a tinyir bi-encoder has none: a fresh one
            pooler = None
    return CrossEncoder.from_encoder(base.encoder, base.tokenizer, max_length or 256, pooling,
                                     seed, pooler)
