"""MaxSim as one fused GPU kernel (Triton): similarities live in on-chip memory, tile by tile.

``tinyir.maxsim.max_sim_matrix`` computes every query-token x document-token similarity, a chunk
of documents at a time, writes them to memory, then reads them back for the max. On a GPU that
round trip is the cost: for B queries of Lq tokens against N documents of Ld tokens in D
dimensions the similarities are B * N * Lq * Ld numbers, B * Lq / D times the document tokens'
N * Ld * D (8x them for 32 queries of 32 tokens at D = 128), written once and read back.

The fused kernel never writes a similarity. One program scores one (query, document) pair:

    best[i] = -inf                                   for each query token i (in registers)
    for each tile of BLOCK_L document tokens j:      (loaded once from memory)
        s = q @ tile.T                               (Lq, BLOCK_L), on the tensor cores
        s[:, padded j] = -inf                        padding never wins the max
        best = max(best, s.max(over j))              the running max
    score = sum over real query tokens i of best[i]  (padded query tokens add nothing)
    score = -inf if the document has no real token

so what it reads is the query (once per program, from cache) and the document's tokens; what it
writes is one float. Same masks and the same semantics as ``max_sim_matrix`` (tests check one
against the other). Programs are numbered with the query fastest, so the B programs that read
one document run side by side and the document comes from the GPU's L2 cache after the first.

Forward only (ColBERT search, reranking): training uses ``max_sim_matrix``, which autograd
differentiates. On a machine without a GPU the same kernel runs in Triton's interpreter (CPU
tensors, numpy underneath) when Python starts with ``TRITON_INTERPRET=1``: slow, but it executes
every line, which is how the course tests it (tests/test_maxsim_triton.py). Triton ships for
Linux only; ``available()`` says whether it is here.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

from tinyir.maxsim import _check_same_device_and_dim, _mask_or_ones
from tinyir.validate import check_tensor

# Document tokens per tile: 64 for 16-bit inputs, 32 for float32, so that the tiles Triton
# keeps in flight (3 stages) take at most 48 KiB of shared memory: several programs fit on each
# multiprocessor. float32 (multiplied without tensor cores) needs 8 warps to hold its tile
# without spilling registers on Hopper. tests/test_maxsim_triton.py compiles them and checks.
BLOCK_L = {torch.float16: 64, torch.bfloat16: 64, torch.float32: 32}
NUM_WARPS = {torch.float16: 4, torch.bfloat16: 4, torch.float32: 8}
_TRITON_TYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def available() -> bool:
    """True when Triton can be imported (Linux; on a CUDA machine it comes with torch)."""
    return importlib.util.find_spec("triton") is not None


def use_fused(device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """Whether MaxSim on ``device`` should go through the fused kernel: on CUDA from Ampere
    (compute capability 8.0) on, when Triton is installed, and on the CPU only inside Triton's
    interpreter (tests). Older GPUs keep ``max_sim_matrix``: for Turing (sm75) Triton 3.9 compiles
    this kernel without tensor-core instructions (checked by compiling it), where cuBLAS's
    matrix products in ``max_sim_matrix`` use them."""
    if not available() or dtype not in _TRITON_TYPES:
        return False
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1" and interpreting()


def _kernel_source():
    import triton.language as tl

    def max_sim_kernel(q_ptr, q_mask_ptr, d_ptr, d_mask_ptr, out_ptr,
                       B, N, Lq, Ld, D,
                       BLOCK_Q: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
                       PRECISION: tl.constexpr):
        pid = tl.program_id(0)
        b = pid % B  # the query: fastest, so programs sharing a document run together
        n = (pid // B).to(tl.int64)  # the document (int64: N * Ld * D can pass 2**31)
        i = tl.arange(0, BLOCK_Q)  # query tokens
        k = tl.arange(0, BLOCK_D)  # dimensions
        q_in = (i[:, None] < Lq) & (k[None, :] < D)
        q = tl.load(q_ptr + b * Lq * D + i[:, None] * D + k[None, :], mask=q_in, other=0.0)

        best = tl.full((BLOCK_Q,), float("-inf"), dtype=tl.float32)  # running max per token
        seen_real = tl.zeros((BLOCK_L,), dtype=tl.int32)  # does the document have a real token?
        doc = d_ptr + n * Ld * D
        for start in range(0, Ld, BLOCK_L):
            j = start + tl.arange(0, BLOCK_L)  # this tile's document tokens
            real = tl.load(d_mask_ptr + n * Ld + j, mask=j < Ld, other=0) != 0
            tile = tl.load(doc + j[:, None] * D + k[None, :],
                           mask=(j[:, None] < Ld) & (k[None, :] < D), other=0.0)
            sim = tl.dot(q, tl.trans(tile), input_precision=PRECISION)  # (BLOCK_Q, BLOCK_L)
            sim = tl.where(real[None, :], sim, float("-inf"))  # padding never wins
            best = tl.maximum(best, tl.max(sim, axis=1))
            seen_real = seen_real | real.to(tl.int32)

        q_real = tl.load(q_mask_ptr + b * Lq + i, mask=i < Lq, other=0) != 0
        score = tl.sum(tl.where(q_real, best, 0.0), axis=0)  # padded query tokens add nothing
        score = tl.where(tl.max(seen_real, axis=0) > 0, score, float("-inf"))
        tl.store(out_ptr + b * N + n, score)

    return max_sim_kernel


@functools.cache
def _kernel():
    """The kernel, compiled for the GPU (or interpreted, under TRITON_INTERPRET=1)."""
    import triton

    return triton.jit(_kernel_source())


def interpreting() -> bool:
    """True when Triton runs kernels in its interpreter (TRITON_INTERPRET=1 when Python started:
    Triton reads it as it builds its own library, so setting it later does not work)."""
    import triton

    return bool(triton.knobs.runtime.interpret)


def _block(size: int) -> int:
    """The power of two >= size, at least 16 (the smallest shape tl.dot accepts)."""
    return max(16, 1 << max(0, size - 1).bit_length())


def _constants(Lq: int, D: int, dtype: torch.dtype) -> dict:
    """The kernel's compile-time constants for these shapes and this dtype."""
    # float32 inputs are multiplied in full float32 ("ieee"), not TF32; 16-bit ignore it.
    precision = "ieee" if dtype == torch.float32 else "tf32"
    return {"BLOCK_Q": _block(Lq), "BLOCK_L": BLOCK_L[dtype], "BLOCK_D": _block(D),
            "PRECISION": precision}



def compile_for(capability: int, dtype: torch.dtype = torch.float16, Lq: int = 32, D: int = 128):
    """Compile the kernel for a GPU architecture (80: Ampere, 90: Hopper) on any Linux machine,
    GPU or not: Triton's compiler and ptxas ship in its wheel. Returns Triton's compiled kernel
    (``.asm["ptx"]``, ``.asm["cubin"]``, ``.metadata``). Tests use it to check what the
    interpreter cannot: that the kernel builds for real GPUs, on their tensor cores."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    pointer = "*" + _TRITON_TYPES[dtype]
    signature = {"q_ptr": pointer, "q_mask_ptr": "*i8", "d_ptr": pointer, "d_mask_ptr": "*i8",
                 "out_ptr": "*fp32", "B": "i32", "N": "i32", "Lq": "i32", "Ld": "i32", "D": "i32"}
    constants = _constants(Lq, D, dtype)
    signature.update(dict.fromkeys(constants, "constexpr"))
    source = ASTSource(fn=_kernel(), signature=signature, constexprs=constants)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32),
                          options={"num_warps": NUM_WARPS[dtype], "enable_fp_fusion": True})


def fused_max_sim_matrix(
    q: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_mask: Tensor | None,
) -> Tensor:
    """MaxSim of every query against every document, in one kernel launch.

    q: (B, Lq, D), q_mask: (B, Lq) or None; d: (N, Ld, D), d_mask: (N, Ld) or None; float16,
    bfloat16 or float32, on a CUDA device (or on the CPU under ``TRITON_INTERPRET=1``). Returns (B, N)
    float32 scores, accumulated in float32 (float32 inputs are multiplied in full float32, not
    TF32). The same scores as ``tinyir.maxsim.max_sim_matrix``; not differentiable.
    """
    check_tensor("q", q, "(B, L, D)", floating=True)
    check_tensor("d", d, "(N, L, D)", floating=True)
    _check_same_device_and_dim(q, d)
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"q: expected float16, bfloat16 or float32, got {q.dtype}")
    if torch.is_grad_enabled() and (q.requires_grad or d.requires_grad):
        raise ValueError("q, d: the fused kernel has no backward; train with "
                         "tinyir.maxsim.max_sim_matrix, or score under torch.no_grad()")
    if not available():
        raise RuntimeError("fused_max_sim_matrix needs Triton (Linux: make install adds it)")
    wanted = "cpu" if interpreting() else "cuda"
    if q.device.type != wanted:
        raise ValueError(f"q: expected tensors on {wanted} (CUDA, or the CPU when Python starts "
                         f"with TRITON_INTERPRET=1), got {q.device}")
    if q.dtype == torch.bfloat16 and wanted == "cpu":
        # numpy has no bfloat16, and the interpreter gets its products wrong; float32 holds every
        # product of two bfloat16 numbers exactly, so the scores are the GPU kernel's.
        q, d = q.float(), d.float()
    q_mask = _mask_or_ones("q_mask", q_mask, q).to(torch.int8).contiguous()  # (B, Lq)
    d_mask = _mask_or_ones("d_mask", d_mask, d).to(torch.int8).contiguous()  # (N, Ld)
    (B, Lq, D), (N, Ld, _) = q.shape, d.shape
    out = torch.empty((B, N), dtype=torch.float32, device=q.device)
    if B * N == 0:
        return out
    if Ld == 0:  # no document has a real token
        return out.fill_(float("-inf"))
    _kernel()[(B * N,)](
        q.contiguous(), q_mask, d.contiguous(), d_mask, out, B, N, Lq, Ld, D,
        **_constants(Lq, D, q.dtype), num_warps=NUM_WARPS[q.dtype], enable_fp_fusion=True,
    )
    return out
