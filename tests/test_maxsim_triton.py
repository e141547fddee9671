"""The fused MaxSim kernel (tinyir.maxsim_triton): in Triton's interpreter on any Linux machine,
compiled on CUDA when a GPU is here. Both against ``tinyir.maxsim.max_sim_matrix``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinyir import maxsim_triton
from tinyir.maxsim import max_sim_matrix
from tinyir.testing import assert_close

HERE = Path(__file__).resolve().parent
needs_triton = pytest.mark.skipif(not maxsim_triton.available(),
                                  reason="needs Triton (Linux only; make install adds it)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Triton ships for Linux only")
def test_triton_is_installed_on_linux():
    assert maxsim_triton.available(), "make install puts triton==3.9.0 in the venv on Linux"


@needs_triton
def test_kernel_in_the_interpreter():
    """Every line of the kernel, executed by Triton's interpreter on CPU tensors."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "triton_interpreted_cases.py")],
        env=env, cwd=HERE.parent, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


@needs_triton
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="checks the compiled path")
def test_cpu_tensors_are_refused_outside_the_interpreter():
    q, d = torch.randn(1, 2, 16), torch.randn(3, 4, 16)
    with pytest.raises(ValueError, match="q: expected tensors on cuda"):
        maxsim_triton.fused_max_sim_matrix(q, None, d, None)


@pytest.mark.cuda
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_compiled_kernel_matches_max_sim_on_cuda(dtype):
    generator = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(8, 32, 128, generator=generator), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(300, 180, 128, generator=generator), dim=-1)
    q_mask = torch.arange(32)[None] < torch.randint(1, 33, (8,), generator=generator)[:, None]
    d_mask = torch.arange(180)[None] < torch.randint(1, 181, (300,), generator=generator)[:, None]
    q, d = q.to(dtype), d.to(dtype)
    expected = max_sim_matrix(q.float(), q_mask, d.float(), d_mask)  # exact 16-bit products
    got = maxsim_triton.fused_max_sim_matrix(q.cuda(), q_mask.cuda(), d.cuda(), d_mask.cuda())
    assert got.device.type == "cuda"
    assert_close(got.cpu(), expected, depth=2, what=f"fused kernel on CUDA, {dtype}")


class _Queries:
    """A stand-in ColBERT: fixed token vectors for any query text, on a chosen device."""

    def __init__(self, q, q_mask):
        self.q, self.q_mask = q, q_mask

    def encode_queries(self, texts):
        return self.q[: len(texts)], self.q_mask[: len(texts)]

    def parameters(self):
        return iter(())


@pytest.mark.cuda
@needs_triton
def test_colbert_search_uses_the_fused_kernel_on_cuda(monkeypatch):
    from tinyir.retrievers import ColBERTRetriever

    generator = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(4, 8, 32, generator=generator), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(50, 40, 32, generator=generator), dim=-1)
    q_mask, d_mask = torch.ones(4, 8, dtype=torch.bool), torch.ones(50, 40, dtype=torch.bool)
    calls = []
    fused = maxsim_triton.fused_max_sim_matrix
    monkeypatch.setattr(maxsim_triton, "fused_max_sim_matrix",
                        lambda *args: calls.append(1) or fused(*args))
    on_gpu = ColBERTRetriever(_Queries(q.cuda(), q_mask.cuda()), doc_tokens=d, doc_mask=d_mask)
    on_cpu = ColBERTRetriever(_Queries(q, q_mask), doc_tokens=d, doc_mask=d_mask)
    texts = ["a", "b", "c", "d"]
    scores_gpu, ids_gpu = on_gpu.retrieve(texts, k=5)
    scores_cpu, ids_cpu = on_cpu.retrieve(texts, k=5)
    assert calls, "ColBERT search on CUDA did not use the fused kernel"
    assert (ids_gpu == ids_cpu).all()
    assert_close(scores_gpu, scores_cpu, depth=2, what="ColBERT search, fused on CUDA vs chunked on CPU")


def _resource_usage(cubin: bytes) -> dict[str, int]:
    """Registers, stack and local memory per thread of a cubin, read by the cuobjdump that ships
    in Triton's wheel (spilled registers show as stack / local memory)."""
    import tempfile

    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.cubin"
        path.write_bytes(cubin)
        out = subprocess.run([str(tool), "--dump-resource-usage", str(path)], capture_output=True,
                             text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if "REG:" in ln)
    return {key: int(value) for key, value in
            (item.split(":")[:2] for item in line.split() if item.count(":") == 1)}


@needs_triton
@pytest.mark.parametrize("capability", [80, 90], ids=["ampere", "hopper"])
def test_kernel_compiles_for_real_gpus(capability):
    """What the interpreter cannot check: the kernel builds for Ampere and Hopper (no GPU needed:
    Triton's compiler and ptxas ship in its wheel), 16-bit inputs run on the tensor cores, and
    the tiles in flight take at most 48 KiB of shared memory, with no register spilled."""
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        compiled = maxsim_triton.compile_for(capability, dtype)
        assert compiled.asm["cubin"], f"no cubin for sm_{capability}, {dtype}"
        uses_tensor_cores = "mma" in compiled.asm["ptx"]
        assert uses_tensor_cores == (dtype != torch.float32), (capability, dtype)
        assert compiled.metadata.shared <= 48 * 1024, (capability, dtype, compiled.metadata.shared)
        usage = _resource_usage(compiled.asm["cubin"])
        assert usage["STACK"] == 0 and usage["LOCAL"] == 0, (capability, dtype, usage)
    odd = maxsim_triton.compile_for(capability, torch.float16, Lq=5, D=24)  # padded blocks
    assert odd.asm["cubin"]
