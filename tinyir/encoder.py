"""An encoder-only transformer (the BERT family) in one file, small enough to read in one sitting.

Token ids go in, one contextual vector per token comes out (pre-training it with masked-language
modelling is ``tinyir.mlm``). The classes appear in the order a reader needs them:

    EncoderConfig   the hyperparameters, with a tiny() preset that trains on a 2-core CPU
    Embeddings      word + position + token-type embeddings, then LayerNorm and dropout
    SelfAttention   multi-head attention; padded keys get zero weight; optional causal mask
    FeedForward     Linear -> exact (erf) GELU -> Linear
    Block           attention and feed-forward, each in a post-LN residual: LN(x + f(x))
    Encoder         embeddings + a stack of blocks; loads/saves BERT safetensors

Shapes in comments use B = batch size, T = sequence length (tokens), C = hidden size,
nh = number of heads, hs = head size = C // nh, V = vocabulary size.

The attention has two paths that compute the same numbers: ``F.scaled_dot_product_attention``
(fast, the default) and the explicit ``softmax(q @ k.T / sqrt(hs) + mask) @ v`` (readable, and it
can return the attention weights for plotting). With all-MiniLM-L6-v2's weights both paths match
``transformers.BertModel`` to 1e-5 (see tests/test_encoder.py).

Module names are readable (``layers.0.attention.query``); :func:`to_bert_name` and
:func:`from_bert_name` translate them to and from BERT's checkpoint names
(``encoder.layer.0.attention.self.query``), so a saved folder also loads in ``transformers``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from tinyir.atomic import atomic_file, write_atomic
from tinyir.validate import check_type

# -----------------------------------------------------------------------------------------------
# Config


@dataclass
class EncoderConfig:
    """Hyperparameters of the encoder. The defaults are the tiny CPU model (about 1.8M weights).

    ``dropout`` is used after the embeddings, on the attention weights and on each residual branch
    (BERT's ``hidden_dropout_prob`` and ``attention_probs_dropout_prob``, which are equal in
    every BERT-family checkpoint we load). ``causal=True`` lets each token see only itself and
    the tokens before it, as in a decoder; it is here for comparison, not for retrieval.
    """

    vocab_size: int = 8000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    causal: bool = False
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size: expected a multiple of num_heads={self.num_heads}, "
                f"got {self.hidden_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {self.dropout!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id: expected an id in [0, {self.vocab_size}), got {self.pad_token_id}"
            )

    @classmethod
    def tiny(cls, vocab_size: int = 8000, **overrides: Any) -> EncoderConfig:
        """A model that trains on a 2-core CPU in minutes: C=128, 2 layers, 4 heads, FFN 512."""
        return cls(vocab_size=vocab_size, **overrides)

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> EncoderConfig:
        """Read a BERT ``config.json`` (as a dict), e.g. all-MiniLM-L6-v2's."""
        check_type("config", config, dict, "a dict from config.json")
        activation = config.get("hidden_act", "gelu")
        if activation != "gelu":
            raise ValueError(f"config['hidden_act']: expected 'gelu' (exact, erf), got {activation!r}")
        position_type = config.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"config['position_embedding_type']: expected 'absolute', got {position_type!r}"
            )
        try:
            return cls(
                vocab_size=config["vocab_size"],
                hidden_size=config["hidden_size"],
                num_layers=config["num_hidden_layers"],
                num_heads=config["num_attention_heads"],
                intermediate_size=config["intermediate_size"],
                max_position=config["max_position_embeddings"],
                type_vocab_size=config.get("type_vocab_size", 2),
                layer_norm_eps=config.get("layer_norm_eps", 1e-12),
                dropout=config.get("hidden_dropout_prob", 0.1),
                causal=bool(config.get("is_decoder", False)),
                pad_token_id=config.get("pad_token_id") or 0,
            )
        except KeyError as err:
            raise ValueError(f"config: a BERT config.json needs the key {err.args[0]!r}") from err

    def to_hf_config(self) -> dict[str, Any]:
        """This config as a BERT ``config.json`` dict that ``transformers.BertConfig`` reads."""
        return {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_dropout_prob": self.dropout,
            "attention_probs_dropout_prob": self.dropout,
            "hidden_act": "gelu",
            "position_embedding_type": "absolute",
            "is_decoder": self.causal,
            "pad_token_id": self.pad_token_id,
            "initializer_range": 0.02,
            "tinyir_config": asdict(self),
        }


# -----------------------------------------------------------------------------------------------
# Model


class Embeddings(nn.Module):
    """Token id -> vector: word + position + token type, then LayerNorm and dropout."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position, C)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, C)
        self.layer_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None):
        T = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # (B, T, C)
        if token_type_ids is None:  # one sentence: every token has type 0, add that one row
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings.weight[:T]  # (T, C) broadcast over B
        return self.dropout(self.layer_norm(x))  # (B, T, C)


class SelfAttention(nn.Module):
    """Multi-head self-attention where every token looks at every (unpadded) token."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        C = config.hidden_size
        self.num_heads = config.num_heads
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        self.out = nn.Linear(C, C)
        self.dropout_p = config.dropout
        self.attn_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, use_sdpa: bool = True,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C); mask: additive, (B, 1, 1, T) or (B, 1, T, T), 0 = attend, very negative
        = ignore (or None: attend everywhere). Returns (B, T, C) and, when asked, (B, nh, T, T)."""
        B, T, C = x.shape
        nh, hs = self.num_heads, C // self.num_heads
        q = self.query(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = self.value(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)

        weights = None
        if use_sdpa and not return_weights:
            # fast path: a fused kernel, never materialises the (T, T) matrix when it can avoid it
            dropout_p = self.dropout_p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        else:
            # readable path: the same computation, step by step
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
            if mask is not None:
                att = att + mask  # padded (and, if causal, future) keys -> very negative
            att = F.softmax(att, dim=-1)  # each row sums to 1 over the keys
            weights = att if return_weights else None
            y = self.attn_dropout(att) @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble all heads side by side
        return self.out(y), weights


class FeedForward(nn.Module):
    """The position-wise MLP: C -> intermediate_size -> C with exact (erf) GELU."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))  # (B, T, C) -> (B, T, intermediate) -> (B, T, C)


class Block(nn.Module):
    """One transformer layer, post-LN as in BERT: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.ln_attention = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ln_ffn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, use_sdpa: bool = True,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attention(x, mask, use_sdpa, return_weights)
        x = self.ln_attention(x + self.dropout(a))  # (B, T, C)
        x = self.ln_ffn(x + self.dropout(self.ffn(x)))  # (B, T, C)
        return x, weights


class Encoder(nn.Module):
    """The BERT-style encoder: ``forward(input_ids (B, T), attention_mask (B, T)) -> (B, T, C)``.

    ``use_sdpa`` picks the attention path used by default (``forward`` can override it per call).
    """

    def __init__(self, config: EncoderConfig, use_sdpa: bool = True):
        super().__init__()
        check_type("config", config, EncoderConfig, "an EncoderConfig")
        self.config = config
        self.use_sdpa = use_sdpa
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.apply(init_bert_weights)

    @property
    def device(self) -> torch.device:
        return self.embeddings.word_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.word_embeddings.weight.dtype

    def attention_bias(self, attention_mask: torch.Tensor | None, T: int) -> torch.Tensor | None:
        """The additive mask every layer adds to its (B, nh, T, T) scores.

        0 where a query may look at a key, the dtype's most negative value where it may not
        (a padded key, or a later key when causal). Shape (B, 1, 1, T), or (B, 1, T, T) when
        causal; None when nothing is masked, which lets SDPA take its fastest kernel.
        """
        allowed = None  # bool, True = attend
        # Skipping an all-ones mask is checked on the CPU only: on a GPU, reading the answer
        # back would stall every forward pass.
        if attention_mask is not None and (attention_mask.device.type != "cpu"
                                           or not bool(attention_mask.all())):
            allowed = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        if self.config.causal:
            causal = torch.ones(T, T, dtype=torch.bool, device=self.device).tril()  # (T, T)
            allowed = causal if allowed is None else allowed & causal  # (B, 1, T, T)
        if allowed is None:
            return None
        # A finite "minus infinity" keeps a fully masked row finite (uniform weights, not NaN).
        bias = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        return bias.masked_fill_(~allowed, torch.finfo(self.dtype).min)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        use_sdpa: bool | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """input_ids, attention_mask (1 = token, 0 = padding), token_type_ids: (B, T) integers.

        Returns the last hidden state (B, T, C); with ``return_attention=True`` (which uses the
        explicit path) also a list with each layer's attention weights, (B, nh, T, T).
        Rows at padded positions hold numbers too; pooling ignores them.
        """
        _check_inputs(self, input_ids, attention_mask, token_type_ids)
        use_sdpa = self.use_sdpa if use_sdpa is None else use_sdpa
        mask = self.attention_bias(attention_mask, input_ids.shape[1])
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        attentions = []
        for block in self.layers:
            x, weights = block(x, mask, use_sdpa, return_attention)
            attentions.append(weights)
        return (x, attentions) if return_attention else x

    # -------------------------------------------------------------------------------------------
    # loading and saving (safetensors + config.json, the Hugging Face folder layout)

    def bert_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under BERT's names (``encoder.layer.0.attention.self.query.weight``...)."""
        return {to_bert_name(name): t for name, t in self.state_dict().items()}

    def load_bert_state_dict(self, weights: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Load weights named as in a BERT checkpoint (an optional ``bert.`` prefix is fine).

        Raises ``ValueError`` listing missing and unexpected names, and shape mismatches.
        """
        ours, original = {}, {}
        for name, tensor in weights.items():
            if name.removeprefix("bert.").startswith(_IGNORED_BERT_PREFIXES):
                continue
            ours[from_bert_name(name)] = tensor
            original[from_bert_name(name)] = name
        expected = self.state_dict()
        missing = [to_bert_name(n) for n in sorted(set(expected) - set(ours))]
        unexpected = [original[n] for n in sorted(set(ours) - set(expected))]
        if missing or unexpected:
            raise ValueError(
                f"{source}: does not fit this Encoder: missing {missing[:8]}"
                f"{' ...' if len(missing) > 8 else ''} ({len(missing)} in all), unexpected "
                f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)} in all)"
            )
        wrong = [
            f"{to_bert_name(n)}: expected {tuple(expected[n].shape)}, got {tuple(t.shape)}"
            for n, t in ours.items() if t.shape != expected[n].shape
        ]
        if wrong:
            raise ValueError(f"{source}: shapes do not fit the config: {wrong[:8]}")
        self.load_state_dict(ours, strict=True)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device | None = None, use_sdpa: bool = True
    ) -> Encoder:
        """Load ``config.json`` + ``model.safetensors`` (BERT names) from ``folder``, in eval mode."""
        folder = Path(folder)
        config = EncoderConfig.from_hf_config(read_config(folder))
        device = torch.device(device) if device is not None else torch.device("cpu")
        with torch.device("meta"):  # no time spent on random init that we overwrite anyway
            model = cls(config, use_sdpa=use_sdpa)
        model = model.to_empty(device=device)
        model.load_bert_state_dict(read_weights(folder, device), source=str(folder))
        return model.eval()

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (BERT names, no pickles) to ``folder``.

        ``transformers.BertModel.from_pretrained(folder)`` reads them too (it warns that the
        unused NSP pooler is freshly initialised).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {n: t.detach().contiguous().cpu() for n, t in self.bert_state_dict().items()}
        with atomic_file(folder / "model.safetensors") as tmp:
            save_file(weights, str(tmp), {"format": "pt"})
        write_atomic(folder / "config.json", json.dumps(self.config.to_hf_config(), indent=2) + "\n")
        return folder


# -----------------------------------------------------------------------------------------------
# Argument checks and checkpoint names (below the model, out of its reading path)


def _check_inputs(
    model: Encoder, input_ids: Any, attention_mask: Any, token_type_ids: Any
) -> None:
    """The forward pass's argument checks (shapes, dtypes, device, id range on the CPU)."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids: expected a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ValueError(
            f"input_ids: expected a 2-D (B, T) tensor, got shape {tuple(input_ids.shape)}"
        )
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or (
        input_ids.dtype == torch.bool
    ):
        raise TypeError(f"input_ids: expected an integer tensor, got dtype {input_ids.dtype}")
    B, T = input_ids.shape
    if B == 0 or T == 0:
        raise ValueError(f"input_ids: expected B >= 1 and T >= 1, got shape {(B, T)}")
    if T > model.config.max_position:
        raise ValueError(
            f"input_ids: sequence length {T} exceeds max_position={model.config.max_position}; "
            f"truncate with the tokenizer's max_length"
        )
    if input_ids.device != model.device:
        raise ValueError(
            f"input_ids: on {input_ids.device} but the model is on {model.device}; "
            f"move it with input_ids.to(model.device)"
        )
    # The id range is checked where it costs no device sync (on the CPU, where the ids come
    # from the tokenizer); on a GPU, reading min/max back would stall every forward pass.
    if input_ids.device.type == "cpu":
        low, high = torch.aminmax(input_ids)
        if int(low) < 0 or int(high) >= model.config.vocab_size:
            raise ValueError(
                f"input_ids: expected ids in [0, {model.config.vocab_size}), "
                f"got min {int(low)} and max {int(high)}"
            )
    for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.shape != input_ids.shape:
            raise ValueError(
                f"{name}: expected the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
        if tensor.device != model.device:
            raise ValueError(
                f"{name}: on {tensor.device} but the model is on {model.device}; "
                f"move it with {name}.to(model.device)"
            )
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
            raise TypeError(f"{name}: expected an integer or bool tensor, got {tensor.dtype}")


# BERT checkpoint names <-> ours, one table read both ways ({i} is the layer number).
# Embeddings keep BERT's names except LayerNorm -> layer_norm.
_BERT_NAMES = (  # (our prefix, BERT's prefix)
    ("embeddings.layer_norm.", "embeddings.LayerNorm."),
    ("layers.{i}.attention.query.", "encoder.layer.{i}.attention.self.query."),
    ("layers.{i}.attention.key.", "encoder.layer.{i}.attention.self.key."),
    ("layers.{i}.attention.value.", "encoder.layer.{i}.attention.self.value."),
    ("layers.{i}.attention.out.", "encoder.layer.{i}.attention.output.dense."),
    ("layers.{i}.ln_attention.", "encoder.layer.{i}.attention.output.LayerNorm."),
    ("layers.{i}.ffn.up.", "encoder.layer.{i}.intermediate.dense."),
    ("layers.{i}.ffn.down.", "encoder.layer.{i}.output.dense."),
    ("layers.{i}.ln_ffn.", "encoder.layer.{i}.output.LayerNorm."),
)
# Weights a BERT checkpoint may hold that this encoder does not use: the pooler, the old
# position_ids buffer, the pre-training heads, a sequence-classification head (a cross-encoder's:
# tinyir.rerank reads the pooler and the classifier itself).
_IGNORED_BERT_PREFIXES = ("pooler.", "embeddings.position_ids", "cls.", "classifier.")


def to_bert_name(name: str) -> str:
    """``layers.0.attention.query.weight`` -> ``encoder.layer.0.attention.self.query.weight``."""
    return _rename(name, _BERT_NAMES)


def from_bert_name(name: str) -> str:
    """The inverse of :func:`to_bert_name`; also drops a leading ``bert.``."""
    return _rename(name.removeprefix("bert."), [(bert, ours) for ours, bert in _BERT_NAMES])


def _rename(name: str, table) -> str:
    """Replace the first matching prefix of ``table`` ((from, to) pairs); else keep ``name``."""
    for source, target in table:
        match = re.match(re.escape(source).replace(r"\{i\}", r"(\d+)"), name)
        if match:
            return target.replace("{i}", "".join(match.groups())) + name[match.end():]
    return name


def read_config(folder: Path) -> dict[str, Any]:
    """``folder``'s Hugging Face config.json, as a dict."""
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"folder: expected {path} (a BERT config.json), it does not exist")
    return json.loads(path.read_text())


def read_weights(folder: Path, device: torch.device | str) -> dict[str, torch.Tensor]:
    """``folder``'s model.safetensors, by checkpoint name, on ``device`` (no pickles)."""
    path = folder / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"folder: expected {path} (safetensors weights), it does not exist")
    return load_file(str(path), device=str(device))


def init_bert_weights(module: nn.Module) -> None:
    """BERT's initialisation: N(0, 0.02) for weights, zero biases, LayerNorm = identity."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


__all__ = [
    "Block",
    "Embeddings",
    "Encoder",
    "EncoderConfig",
    "FeedForward",
    "SelfAttention",
    "from_bert_name",
    "init_bert_weights",
    "read_config",
    "read_weights",
    "to_bert_name",
]

