"""The ColBERT model: an encoder, a linear projection, and an L2 norm per token, with masks.

Queries and documents are encoded to one normalized vector per token and scored with MaxSim
(``tinyir.maxsim``); the stored token vectors can be compressed (``tinyir.quantize``).
"""

from __future__ import annotations

import math
import random
import sys

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tinyir.batching import length_batches
from tinyir.maxsim import max_sim_matrix
from tinyir.train import TrainHistory, check_examples, epochs_of, first_steps, fit, make_batches
from tinyir.validate import check_positive, check_type

COLBERT_CONFIG_FILE = "tinyir_colbert.json"
PROJECTION_FILE = "projection.safetensors"


class ColBERT(torch.nn.Module):
    """Per-token embeddings for late interaction: encoder (B, T, C) -> projection (B, T, D) ->
    unit length per token, plus the mask of the tokens that are kept.

    Args:
        encoder: a tinyir ``Encoder``; tokenizer: its ``Tokenizer``.
        dim: D, the size of a stored token vector (ColBERT: 128); None keeps the encoder's C
            with no projection (zero-shot token embeddings).
        projection: optional ``nn.Linear(C, dim, bias=False)``; a fresh one (seeded) when None.
        query_max_length / doc_max_length: truncation, [CLS] and [SEP] included.
        skip_punctuation: drop punctuation tokens from documents (ColBERT's skiplist): they
            carry little meaning and would cost storage.

    The mask marks a token as kept when it is real (attention mask 1) and, in a document, not
    punctuation. Padding is never kept, so it can never win a MaxSim max.
    """

    def __init__(self, encoder, tokenizer, dim: int | None = 128,
                 projection: torch.nn.Linear | None = None, query_max_length: int = 32,
                 doc_max_length: int = 128, skip_punctuation: bool = True, seed: int = 0):
        super().__init__()
        from tinyir.encoder import Encoder
        from tinyir.tokenizer import Tokenizer

        check_type("encoder", encoder, Encoder, "a tinyir Encoder")
        check_type("tokenizer", tokenizer, Tokenizer, "a tinyir Tokenizer")
        C = encoder.config.hidden_size
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim: expected a positive int or None, got {dim!r}")
        if dim is not None and projection is None:
            projection = torch.nn.Linear(C, dim, bias=False)
            generator = torch.Generator().manual_seed(seed)
            bound = 1 / math.sqrt(C)  # nn.Linear's default range, drawn from a seeded generator
            with torch.no_grad():
                projection.weight.copy_((torch.rand(dim, C, generator=generator) * 2 - 1) * bound)
            projection = projection.to(encoder.device)
        if projection is not None and (
            not isinstance(projection, torch.nn.Linear) or projection.in_features != C
            or projection.bias is not None
        ):
            raise ValueError(f"projection: expected nn.Linear({C}, dim, bias=False), got {projection!r}")
        for name, value in (("query_max_length", query_max_length),
                            ("doc_max_length", doc_max_length)):
            if not isinstance(value, int) or not 2 <= value <= encoder.config.max_position:
                raise ValueError(
                    f"{name}: expected an int in [2, {encoder.config.max_position}], got {value!r}"
                )
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.projection = projection
        self.query_max_length = query_max_length
        self.doc_max_length = doc_max_length
        self.skip_punctuation = bool(skip_punctuation)
        skip = {tokenizer.backend.token_to_id(c) for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}
        self.register_buffer("skiplist", torch.tensor(sorted(i for i in skip if i is not None),
                                                      dtype=torch.long, device=encoder.device),
                             persistent=False)

    @classmethod
    def minilm(cls, dim: int | None = 128, seed: int = 0, **kwargs) -> ColBERT:
        """all-MiniLM-L6-v2's encoder and tokenizer with a fresh (seeded) projection to ``dim``."""
        from tinyir.encoder import Encoder
        from tinyir.pretrained import minilm_path
        from tinyir.tokenizer import Tokenizer

        encoder = Encoder.from_pretrained(minilm_path(), device=kwargs.pop("device", None))
        return cls(encoder, Tokenizer.minilm(), dim=dim, seed=seed, **kwargs).eval()

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def dim(self) -> int:
        """D, the size of one stored token vector."""
        return self.projection.out_features if self.projection is not None else (
            self.encoder.config.hidden_size)

    def tokenize(self, texts: list[str], is_query: bool) -> dict[str, Tensor]:
        """Texts -> ``input_ids``, ``attention_mask`` (B, T) on the model's device."""
        max_length = self.query_max_length if is_query else self.doc_max_length
        return {k: t.to(self.device) for k, t in self.tokenizer(texts, max_length).items()}

    def keep_mask(self, input_ids: Tensor, attention_mask: Tensor, is_query: bool) -> Tensor:
        """(B, T) bool: real tokens, minus punctuation in documents when ``skip_punctuation``."""
        keep = attention_mask.bool()
        if self.skip_punctuation and not is_query:
            keep = keep & ~torch.isin(input_ids, self.skiplist)
        return keep

    def token_embeddings(self, hidden: Tensor, input_ids: Tensor, attention_mask: Tensor,
                         is_query: bool) -> tuple[Tensor, Tensor]:
        """Encoder output hidden (B, T, C) -> (unit token vectors (B, T, D), keep mask (B, T)).

        Dropped positions hold zero vectors; the mask says which ones they are.
        """
        x = self.projection(hidden) if self.projection is not None else hidden  # (B, T, D)
        x = torch.nn.functional.normalize(x, dim=-1)
        keep = self.keep_mask(input_ids, attention_mask, is_query)  # (B, T)
        return x * keep.unsqueeze(-1).to(x.dtype), keep

    def forward(self, batch: dict[str, Tensor], is_query: bool) -> tuple[Tensor, Tensor]:
        """A tokenized batch -> (token vectors (B, T, D), keep mask (B, T)). Differentiable."""
        hidden = self.encoder(batch["input_ids"], batch["attention_mask"])  # (B, T, C)
        return self.token_embeddings(hidden, batch["input_ids"], batch["attention_mask"],
                                     is_query)

    @torch.inference_mode()
    def encode(self, texts: list[str], is_query: bool, batch_size: int = 64,
               progress: bool = False) -> tuple[Tensor, Tensor]:
        """Embed texts in batches: (N, L, D) token vectors and (N, L) bool mask, L = the longest
        text. Texts are grouped by length so a batch pads to its own longest text."""
        if not isinstance(texts, list) or not texts:
            raise ValueError("texts: expected a non-empty list of str")
        was_training = self.training
        self.eval()
        max_length = self.query_max_length if is_query else self.doc_max_length
        ids = self.tokenizer.encode_ids(texts, max_length)
        L = max(len(x) for x in ids)
        out = torch.zeros(len(texts), L, self.dim, device=self.device)
        mask = torch.zeros(len(texts), L, dtype=torch.bool, device=self.device)
        for rows in length_batches([len(x) for x in ids], batch_size, progress=progress,
                                   desc="encode tokens"):
            batch = {k: t.to(self.device) for k, t in self.tokenizer.pad([ids[i] for i in rows]).items()}
            emb, keep = self(batch, is_query)  # (b, T, D), (b, T)
            T = emb.shape[1]
            target = torch.tensor(rows, device=self.device)
            out[target, :T] = emb
            mask[target, :T] = keep
        self.train(was_training)
        return out, mask

    def encode_queries(self, texts: list[str], batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """(Q, Lq, D), (Q, Lq): see :meth:`encode`."""
        return self.encode(texts, is_query=True, batch_size=batch_size)

    def encode_docs(self, texts: list[str], batch_size: int = 64,
                    progress: bool = False) -> tuple[Tensor, Tensor]:
        """(N, Ld, D), (N, Ld): see :meth:`encode`."""
        return self.encode(texts, is_query=False, batch_size=batch_size,
                           progress=progress)

    def save_pretrained(self, folder) -> object:
        """Write encoder (config.json + model.safetensors), projection.safetensors, tokenizer.json
        and tinyir_colbert.json to ``folder`` atomically (a temporary folder, then one rename)."""
        import json
        from pathlib import Path

        from safetensors.torch import save_file

        from tinyir.atomic import atomic_folder

        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self.encoder.save_pretrained(tmp)
            self.tokenizer.save(tmp / "tokenizer.json")
            if self.projection is not None:
                weight = self.projection.weight.detach().cpu().contiguous()
                save_file({"weight": weight}, str(tmp / PROJECTION_FILE), {"format": "pt"})
            settings = {"dim": self.projection.out_features if self.projection is not None
                        else None, "query_max_length": self.query_max_length,
                        "doc_max_length": self.doc_max_length,
                        "skip_punctuation": self.skip_punctuation}
            (tmp / COLBERT_CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder, device: str | torch.device | None = None) -> ColBERT:
        """Load a folder written by :meth:`save_pretrained`, in eval mode."""
        import json
        from pathlib import Path

        from safetensors.torch import load_file

        from tinyir.encoder import Encoder
        from tinyir.tokenizer import Tokenizer

        folder = Path(folder)
        if not (folder / COLBERT_CONFIG_FILE).is_file():
            raise FileNotFoundError(f"folder: expected {folder / COLBERT_CONFIG_FILE}")
        settings = json.loads((folder / COLBERT_CONFIG_FILE).read_text())
        encoder = Encoder.from_pretrained(folder, device=device)
        projection = None
        if settings["dim"] is not None:
            projection = torch.nn.Linear(encoder.config.hidden_size, settings["dim"], bias=False)
            projection.load_state_dict(load_file(str(folder / PROJECTION_FILE)))
            projection = projection.to(encoder.device)
        model = cls(encoder, Tokenizer.from_file(folder / "tokenizer.json"), dim=settings["dim"],
                    projection=projection, query_max_length=settings["query_max_length"],
                    doc_max_length=settings["doc_max_length"],
                    skip_punctuation=settings["skip_punctuation"])
        return model.eval()


def train_projection(
    model: ColBERT,
    pairs: list[tuple[str, str]],
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> TrainHistory:
    """Train only ``model.projection`` (the encoder stays frozen) with in-batch MaxSim InfoNCE.

    The encoder runs once over every query and passage (no gradients); each step then projects a
    batch of B queries and B passages and takes cross-entropy over the (B, B) MaxSim matrix with
    the diagonal as labels (raw MaxSim scores as logits, as ColBERT trains). Cheap: an epoch costs
    a few small matmuls, not a transformer pass. Adam at a constant ``lr`` (:func:`tinyir.train.fit`
    without warm-up, decay, weight decay or clipping). Returns the history (the loss of every step).
    """
    if model.projection is None:
        raise ValueError("model: has no projection to train (dim=None)")
    if len(pairs) < 2:
        raise ValueError(f"pairs: expected at least 2 (query, passage) pairs, got {len(pairs)}")
    check_positive("batch_size", batch_size)
    queries = _frozen_states(model, [q for q, _ in pairs], is_query=True, progress=progress)
    docs = _frozen_states(model, [d for _, d in pairs], is_query=False, progress=progress)

    def step_loss(rows: list[int]) -> Tensor:
        q, q_keep = model.token_embeddings(*_stack(queries, rows), is_query=True)  # (B, Lq, D)
        d, d_keep = model.token_embeddings(*_stack(docs, rows), is_query=False)  # (B, Ld, D)
        scores = max_sim_matrix(q, q_keep, d, d_keep)  # (B, B)
        return torch.nn.functional.cross_entropy(scores, torch.arange(len(rows), device=scores.device))

    epochs_ = [[rows for rows in batches if len(rows) >= 2]  # a lone pair has no negative
               for batches in epochs_of(len(pairs), epochs, batch_size, seed)]
    return fit(model, epochs_, step_loss, lr=lr, params=model.projection.parameters(),
               warmup_ratio=0.0, decay=False, weight_decay=0.0, grad_clip=None, seed=seed,
               progress=progress, desc="train projection")


def in_batch_loss(model: ColBERT, queries: list[str], docs: list[str]) -> Tensor:
    """The loss of one ColBERT training step: cross-entropy over the (B, N) MaxSim matrix of B
    queries against N >= B passages, where ``docs[i]`` is query i's positive and every other
    passage (the other positives, then any hard negatives) is a negative. Differentiable
    through the projection and the encoder.
    """
    if not isinstance(queries, list) or not queries:
        raise ValueError("queries: expected a non-empty list of str")
    if not isinstance(docs, list) or len(docs) < len(queries):
        raise ValueError(f"docs: expected a list of at least len(queries) = {len(queries)} "
                         f"passages, positives first")
    q, q_keep = model(model.tokenize(queries, is_query=True), is_query=True)  # (B, Lq, D)
    d, d_keep = model(model.tokenize(docs, is_query=False), is_query=False)  # (N, Ld, D)
    scores = max_sim_matrix(q, q_keep, d, d_keep)  # (B, N), column i = query i's positive
    return torch.nn.functional.cross_entropy(scores, torch.arange(len(queries), device=scores.device))


def train_colbert(
    model: ColBERT,
    examples,
    epochs: int = 1,
    lr: float = 2e-5,
    *,
    projection_lr: float | None = 1e-3,
    batch_size: int = 32,
    warmup_ratio: float = 0.1,
    max_steps: int | None = None,
    seed: int = 0,
    save_to=None,
    resume: bool = False,
    progress: bool = True,
) -> TrainHistory:
    """Train ColBERT end to end: the encoder *and* the projection, through MaxSim.

    ``examples``: (query, positive) pairs or (query, positive, [K hard negatives]) triples, as
    :func:`tinyir.train.check_examples` reads them. Each step encodes B queries and B x (1 + K)
    passages with gradients and takes cross-entropy over the (B, B x (1 + K)) MaxSim matrix,
    row i's label being its own positive: the other queries' passages are in-batch negatives,
    as in ColBERTv2 (raw MaxSim sums as logits). AdamW, linear warm-up and decay
    (:func:`tinyir.train.fit`); ``projection_lr`` gives the fresh projection its own rate.
    """
    if model.projection is None:
        raise ValueError("model: has no projection to train (dim=None)")
    data, _ = check_examples(examples)
    check_positive("batch_size", batch_size)
    head = list(model.projection.parameters())
    body = [p for p in model.parameters() if all(p is not h for h in head)]
    groups = [{"params": body, "lr": lr},
              {"params": head, "lr": lr if projection_lr is None else projection_lr}]

    def step_loss(rows: list[int]) -> Tensor:
        queries = [data[i][0] for i in rows]
        docs = [data[i][1] for i in rows] + [n for i in rows for n in data[i][2]]
        return in_batch_loss(model, queries, docs)

    # The bi-encoder's batches (tinyir.train.make_batches: no text twice in a batch, so no
    # in-batch negative is a copy of a positive): same examples and seed, same batches.
    rng = random.Random(seed)
    epochs_ = [[b for b in make_batches(data, batch_size, rng) if len(b) > 1]
               for _ in range(epochs)]
    if max_steps is not None:
        epochs_ = first_steps(epochs_, max_steps)
    return fit(model, epochs_, step_loss, lr=lr, params=groups, warmup_ratio=warmup_ratio,
               seed=seed, save_to=save_to, resume=resume, progress=progress, desc="train colbert")


def _frozen_states(model: ColBERT, texts: list[str], is_query: bool,
                   progress: bool) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Each text's encoder output, input ids and attention mask, unpadded: (T, C), (T,), (T,)."""
    rows = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), 64), desc="encode " + ("q" if is_query else "d"),
                          unit="batch", file=sys.stderr, disable=not progress):
            batch = model.tokenize(texts[start:start + 64], is_query)
            hidden = model.encoder(batch["input_ids"], batch["attention_mask"])  # (b, T, C)
            for row, mask in enumerate(batch["attention_mask"]):
                rows.append((hidden[row].clone(), batch["input_ids"][row].clone(), mask.clone()))
    return rows


def _stack(rows: list[tuple[Tensor, Tensor, Tensor]], pick: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """The picked rows padded to their longest: hidden (B, T, C), input ids (B, T), mask (B, T)."""
    T = max(int(rows[i][2].sum()) for i in pick)
    return tuple(torch.stack([rows[i][part][:T] for i in pick]) for part in range(3))
