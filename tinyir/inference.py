"""Faster CPU inference for a trained encoder: the same weights, multiplied in fewer bits.

Most of an encoder's work is its ``nn.Linear`` layers. Per token, a block of hidden size C
spends 4 C^2 multiply-adds on the attention projections and 8 C^2 on the feed-forward layers,
against 2 T C on attention itself (T tokens): for all-MiniLM-L6-v2 (C = 384) at T = 200 that
is 12 C^2 / (12 C^2 + 2 T C) = 92% in products with weights. Running those products in
fewer bits is faster where the CPU has instructions for it, and costs a little accuracy. Two
ways, both for inference only (no gradients) and both for the CPU (a GPU model raises
``ValueError``: on a GPU, use ``model.half()`` or ``torch.autocast("cuda")`` instead):

**int8 dynamic quantization** (:func:`quantize_dynamic_int8`). Each ``nn.Linear``
(``y = x W^T + b``, W: (N, K), x: (M, K) with M = B*T rows of the batch) becomes an int8 layer:

    weights, once, per output row j (symmetric):  s_j = max_k |W_jk| / 127.5
                                                  Wq_jk = clamp(round(W_jk / s_j), -128, 127)
    activations, at every call, one scale for the whole (M, K) input (affine, L = 255 or 127):
        lo = min(0, min x),  hi = max(0, max x),  a = (hi - lo) / L,  z = round(-lo / a)
        xq = clamp(round(x / a) + z, 0, L)                                           uint8
    product, summed exactly in int32, then scaled back:
        y_ij = a * s_j * sum_k (xq_ik - z) Wq_jk + b_j                               float32

The weights are quantized statically (once, stored as int8: 4x smaller); the activations
dynamically (their range is measured on each batch, so no calibration set is needed). The one
range per batch is the cost: the largest activation anywhere in the batch sets the step ``a``
for every token (BERT-family models have a few outlier dimensions: Dettmers et al.,
"LLM.int8()", 2022), and a text's embedding depends a little on the texts batched with it.

How many activation levels L is a hardware question. x86 CPUs without VNNI multiply uint8 by
int8 with an instruction (AVX2's vpmaddubsw) that adds each pair of products into int16 and
saturates: 255 * 128 * 2 = 65,280 overflows int16, 127 * 128 * 2 = 32,512 does not. So L = 127
(7 bits, PyTorch's default) unless the CPU has VNNI (AVX512_VNNI or AVX_VNNI: Intel Cascade Lake,
Alder Lake and later, AMD Zen 4 and later), which sums into int32, or runs the QNNPACK engine
(ARM, Apple), which accumulates in int32 too: then L = 255, which halves the rounding step (on
all-MiniLM-L6-v2 the embeddings' cosine to float32 goes from about 0.978 to 0.994 on average).
This is PyTorch's ``torch.ao.quantization.quantize_dynamic`` with per-channel weights; its engine
is fbgemm/oneDNN on x86 and QNNPACK on ARM; it raises ``RuntimeError`` where PyTorch has none.

**bfloat16** (:func:`to_bfloat16`). bf16 keeps float32's 8 exponent bits and 7 of its 23 mantissa
bits, so rounding to it is a relative error of at most 2^-8 = 0.4%, and nothing overflows that did
not overflow in float32. Under ``torch.autocast`` the matrix products (every ``nn.Linear``, and
the attention ``softmax(q k^T / sqrt(hs)) v``) take bf16 inputs and accumulate in float32, while
the weights stay float32 in memory, and the residual stream, LayerNorm, pooling and
normalization stay float32 (``x + f(x)`` with a float32 ``x`` is float32). The products run in
hardware on x86 CPUs with AVX512_BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD
Zen 4 and later) and ARM CPUs with the BF16 extension (e.g. Apple M2 and later). Elsewhere (AVX2
laptops, Apple M1) they are emulated: as precise, but usually slower than float32, so
:func:`to_bfloat16` warns; :func:`native_bfloat16` says which case this CPU is.

benchmarks/run_all.py (``--only encode_onnx``, ``--only encode_fast``) measures both against
ONNX Runtime and their nDCG@10 cost on pydocs; tests/test_inference.py bounds how far their
embeddings move.
"""

from __future__ import annotations

import copy
import functools
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from tinyir.biencoder import BiEncoder
from tinyir.validate import check_choice, check_type


def _check_cpu_model(model: object, cls: type = nn.Module, what: str = "an nn.Module") -> None:
    """``model`` is a ``cls`` whose parameters and buffers are all on the CPU."""
    check_type("model", model, cls, what)
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    if any(device.type != "cpu" for device in devices):
        raise ValueError(
            f"model: expected a model on the CPU (this is a CPU inference path), got tensors on "
            f"{sorted(str(d) for d in devices)}; move it with model.cpu(), or on a GPU use "
            f"model.half() or torch.autocast('cuda')"
        )


# ----------------------------------------------------------------------------------------------
# what the CPU can do


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 "flags", ARM "Features"); empty elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return frozenset()
    return frozenset(cpuinfo.read_text(errors="replace").split())


def int8_full_range() -> bool:
    """True when int8 products may use all 256 activation levels without saturating: an x86 CPU
    with AVX512_VNNI or AVX_VNNI, or PyTorch's QNNPACK engine (ARM). False when unknown."""
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni"}) or (
        torch.backends.quantized.engine == "qnnpack")


@functools.cache
def native_bfloat16() -> bool:
    """True when this CPU multiplies bfloat16 in hardware: x86 AVX512_BF16 or AMX-BF16, or ARM's
    BF16 extension. Read from /proc/cpuinfo (Linux) or sysctl (macOS); False when unknown.

    It says what the CPU has, not how well a given PyTorch build uses it: measure (make bench).
    """
    if sys.platform == "darwin":
        try:
            answer = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
                                    capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return answer.strip() == "1"
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})  # "bf16": ARM's flag


# ----------------------------------------------------------------------------------------------
# int8


class Int8Linear(torch.ao.nn.quantized.dynamic.Linear):
    """PyTorch's dynamically quantized linear layer, with L = 2**activation_bits - 1 levels."""

    activation_bits = 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(  # quantize x, int8 product, scale back, add b
            x, self._packed_params._packed_params, reduce_range=self.activation_bits == 7)
        return y.to(x.dtype)


def quantize_dynamic_int8(model: nn.Module, activation_bits: int | None = None) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a dynamically quantized int8 one.

    model: any CPU module with ``nn.Linear`` layers (a ``BiEncoder``, an ``Encoder``, a
    ``CrossEncoder``...); it is not changed. activation_bits: 8 or 7 activation bits, or None
    for 8 where :func:`int8_full_range` says the CPU allows it, else 7 (8 elsewhere raises).
    Returns the copy in eval mode, for inference only: its int8 layers have no gradients, and it
    cannot be saved with ``save_pretrained`` (save the float32 model and quantize after loading;
    quantizing takes a fraction of a second). The math is in the module docstring.
    """
    _check_cpu_model(model)
    check_choice("activation_bits", activation_bits, (None, 7, 8))
    if activation_bits == 8 and not int8_full_range():
        raise ValueError(
            "activation_bits: 8 needs a CPU whose int8 products cannot saturate (x86 with "
            "AVX512_VNNI or AVX_VNNI, or the QNNPACK engine); this one may: use 7 or None"
        )
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"model: expected nn.Linear layers to quantize, {type(model).__name__} "
                         "has none")
    if torch.backends.quantized.engine == "none":
        raise RuntimeError(
            "quantize_dynamic_int8: this PyTorch build has no quantized engine for this CPU "
            f"(supported: {torch.backends.quantized.supported_engines}); use to_bfloat16 or float32"
        )
    with warnings.catch_warnings():
        # torch 2.13 marks torch.ao.quantization and quantized tensors deprecated in favour of
        # the separate torchao package (not a course dependency); both still work in 2.13.
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated",
                                DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel",
                                UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            mapping={nn.Linear: Int8Linear}, inplace=False,
        )
    bits = activation_bits or (8 if int8_full_range() else 7)
    for module in quantized.modules():
        if isinstance(module, Int8Linear):
            module.activation_bits = bits
    return quantized.eval()


# ----------------------------------------------------------------------------------------------
# bfloat16


class BFloat16BiEncoder(BiEncoder):
    """A :class:`BiEncoder` whose matrix products run in bfloat16 (``torch.autocast`` on the CPU).

    Same weights (float32), same ``encode``; ``save_pretrained`` writes the float32 model. Only
    ``forward`` differs: the encoder runs under autocast, and the embeddings come back float32.
    """

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            embeddings = super().forward(batch)  # (B, C); pooled and normalized in float32
        return embeddings.float()


def to_bfloat16(model: BiEncoder) -> BFloat16BiEncoder:
    """A copy of the bi-encoder ``model`` (on the CPU) that multiplies in bfloat16, in eval mode.

    ``model`` is not changed. Fast only on CPUs with native bf16 (see :func:`native_bfloat16`);
    elsewhere it is as precise but usually slower than float32, and warns (``RuntimeWarning``).
    """
    _check_cpu_model(model, BiEncoder, "a tinyir BiEncoder")
    if not native_bfloat16():
        warnings.warn(
            "to_bfloat16: this CPU has no native bfloat16 (AVX512_BF16, AMX or ARM BF16); the "
            "results are correct but likely slower than float32 here",
            RuntimeWarning, stacklevel=2,
        )
    return BFloat16BiEncoder(
        copy.deepcopy(model.encoder), copy.deepcopy(model.tokenizer), pooling=model.pooling,
        normalize=model.normalize, max_length=model.max_length,
    ).eval()
