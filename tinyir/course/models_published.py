"""Published figures the lessons compute from, each with its source: embedding dimensions of
well-known models (the chapter's section 9.6), model configurations, and one GPU's datasheet.

Nothing here is measured by the course. A lesson that uses a figure computes from it and says
where it came from; a lesson that can measure the same thing (MiniLM's size, from the installed
weights) measures it instead and checks the published figure against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyir.course.claims import A100_FLOPS


@dataclass(frozen=True)
class EmbeddingModel:
    name: str
    dim: int            # dimensions of the embedding the model returns by default
    source: str         # where the dimension is published
    shortenable: bool = False  # the provider lets you request fewer dimensions (Matryoshka)


EMBEDDING_MODELS: tuple[EmbeddingModel, ...] = (
    EmbeddingModel("all-MiniLM-L6-v2", 384,
                   "sentence-transformers/all-MiniLM-L6-v2 model card and config.json "
                   "(hidden_size 384); the installed copy's config says the same"),
    EmbeddingModel("bge-base-en-v1.5", 768, "BAAI/bge-base-en-v1.5 config.json (hidden_size 768)"),
    EmbeddingModel("bge-large-en-v1.5", 1024,
                   "BAAI/bge-large-en-v1.5 config.json (hidden_size 1024)"),
    EmbeddingModel("e5-large-v2", 1024, "intfloat/e5-large-v2 config.json (hidden_size 1024)"),
    EmbeddingModel("text-embedding-ada-002", 1536,
                   "OpenAI, 'New and improved embedding model' (Dec 2022): 1536 dimensions"),
    EmbeddingModel("text-embedding-3-small", 1536,
                   "OpenAI, 'New embedding models and API updates' (25 Jan 2024): 1536 "
                   "dimensions, shortened with the API's `dimensions` parameter", True),
    EmbeddingModel("text-embedding-3-large", 3072,
                   "OpenAI, 'New embedding models and API updates' (25 Jan 2024): 3072 "
                   "dimensions, shortened with the API's `dimensions` parameter", True),
    EmbeddingModel("e5-mistral-7b-instruct", 4096,
                   "intfloat/e5-mistral-7b-instruct model card: 32 layers, embedding size 4096"),
    EmbeddingModel("NV-Embed-v2", 4096,
                   "nvidia/NV-Embed-v2 model card: Mistral-7B with latent-attention pooling, "
                   "embedding dimension 4096"),
)


@dataclass(frozen=True)
class BertConfig:
    """The sizes of a BERT-family encoder, as its config.json states them."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    positions: int
    token_types: int
    published_params: float = float("nan")  # the count its model page states (rounded)
    source: str = ""

    @property
    def layer_params(self) -> int:
        """One layer: Q, K, V, O (4 h^2 + 4 h), the MLP (2 h I + I + h), two LayerNorms (4 h)."""
        h, i = self.hidden, self.intermediate
        return 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h

    def params(self, pooler: bool = False) -> int:
        """All parameters (:func:`tinyir.course.leaderboard.bert_parameters`); ``pooler`` adds
        BERT's (h x h + h) pooler, which a model page counts but mean-pooled embeddings never use."""
        from tinyir.course.leaderboard import bert_parameters

        return bert_parameters(self.layers, self.hidden, self.intermediate, self.vocab,
                               self.positions, self.token_types, pooler=pooler)


BGE_LARGE = BertConfig(
    "bge-large-en-v1.5", layers=24, hidden=1024, intermediate=4096, vocab=30522, positions=512,
    token_types=2, published_params=335e6,
    source="BAAI/bge-large-en-v1.5 config.json; '335M params' on its Hugging Face page "
           "(the count includes BERT's pooler, which embedding does not use)")


@dataclass(frozen=True)
class DecoderConfig:
    """A decoder-only LLM's sizes: what its weights and its KV cache take."""

    name: str
    params: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int   # < heads with grouped-query attention: fewer keys and values to cache
    source: str

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        """KV cache per token: a key and a value (2) per layer, kv_heads x head_dim wide each."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_value


LLAMA2_7B = DecoderConfig(
    "Llama-2-7B", params=7e9, layers=32, hidden=4096, heads=32, kv_heads=32,
    source="meta-llama/Llama-2-7b-hf config.json (Touvron et al. 2023): 32 layers, hidden 4096, "
           "32 heads, no grouped-query attention; params: the nominal 7B (the checkpoint has 6.7B)")
LLAMA2_70B = DecoderConfig(
    "Llama-2-70B", params=70e9, layers=80, hidden=8192, heads=64, kv_heads=8,
    source="meta-llama/Llama-2-70b-hf config.json (Touvron et al. 2023): 80 layers, hidden 8192, "
           "64 heads, 8 key-value heads (grouped-query attention); params: the nominal 70B "
           "(the checkpoint has 69B)")


@dataclass(frozen=True)
class GPU:
    name: str
    flops_dense_bf16: float  # FLOP/s, tensor cores, no sparsity
    hbm_bytes_per_s: float
    memory_bytes: float
    source: str


A100_80GB = GPU(
    "A100 80GB SXM", flops_dense_bf16=A100_FLOPS, hbm_bytes_per_s=2.039e12, memory_bytes=80e9,
    source="NVIDIA A100 datasheet: 312 TFLOP/s BF16/FP16 dense (the figure tinyir.course.claims "
           "uses), 80 GB HBM2e at 2,039 GB/s")

# vLLM stores the KV cache in blocks of this many tokens (its `--block-size` default on CUDA);
# PagedAttention: Kwon et al., "Efficient Memory Management for Large Language Model Serving
# with PagedAttention", SOSP 2023.
VLLM_BLOCK_TOKENS = 16


def by_dimension(models: tuple[EmbeddingModel, ...] = EMBEDDING_MODELS) -> dict[int, list[str]]:
    """The models grouped by their dimension, smallest first: {384: ["all-MiniLM-L6-v2"], ...}."""
    groups: dict[int, list[str]] = {}
    for model in sorted(models, key=lambda m: m.dim):
        groups.setdefault(model.dim, []).append(model.name)
    return groups
