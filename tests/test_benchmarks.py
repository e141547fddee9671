"""The GPU benchmark script runs end to end (at toy sizes on the CPU), and says so plainly when
there is no GPU. Its numbers are only meaningful on a GPU (make bench-gpu)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_dry_run(tmp_path):
    from tinyir import maxsim_triton

    env = {**os.environ, "TRITON_INTERPRET": "1" if maxsim_triton.available() else "0"}
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--repeats", "1",
                          "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results == json.loads(run.stdout)
    assert results["dry_run"] is True
    assert {"encode", "maxsim_1_query", "maxsim_32_queries", "search"} <= set(results)
    assert results["encode"]["bfloat16_batch32_texts_per_s"] > 0
    for key in ("maxsim_1_query", "maxsim_32_queries"):
        assert results[key]["chunked_seconds"] > 0 and results[key]["reference_seconds"] > 0
        if maxsim_triton.available():  # the interpreted kernel went through the same steps
            assert results[key]["fused_seconds"] > 0
    assert results["search"]["same_ids_fraction"] > 0.99


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without GPU")
def test_gpu_benchmark_without_a_gpu_says_so(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "no CUDA GPU here" in run.stderr and "--dry-run" in run.stderr
    assert not (tmp_path / "x.json").exists()


def test_gpu_benchmark_rejects_bad_arguments():
    run = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--repeats: expected an int >= 1" in run.stderr
