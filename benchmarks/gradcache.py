"""Gradient caching against the plain step: peak memory and time of one training step of
all-MiniLM-L6-v2 on a batch of 1,024 (query, passage) pairs, printed as one JSON object.

Each configuration runs in its own process (peak memory is the process's peak resident set, less
that of a process that loaded the same model and batch and took no step), one warm-up step and
then the best of ``--repeats`` timed steps:

- plain: one forward and backward over all 2,048 texts (the activations of all of them at once);
- cached: ``TrainConfig(mini_batch=32)`` (tinyir.train.cached_step_loss): embeddings without
  gradients, the loss's gradient w.r.t. them, then 32 texts at a time with gradients.

Reported as ratios (cached / plain). Memory falls with the mini-batch. In FLOPs the cache costs
one extra forward pass (about 4/3 of the plain step: a forward is about a third of a step); on
a CPU it can still be faster, because the plain step's activations for 2,048 texts (about 12 GB at
32 tokens) are written and read back from main memory, while a mini-batch's stay small (measured
on the 2-core development machine, 2026-11-30: memory 0.039x, time 0.76x). On a GPU the plain step
at 1,024 may not fit at all: that is what the cache is for.

Usage: python benchmarks/gradcache.py [--batch 1024] [--mini-batch 32] [--max-length 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def child(mode: str, batch: int, mini_batch: int, max_length: int, repeats: int) -> dict:
    import torch

    from tinyir.beir import training_pairs
    from tinyir.biencoder import BiEncoder
    from tinyir.pydocs import PYDOCS_DIR
    from tinyir.train import TrainConfig, cached_step_loss, plain_step_loss

    pairs = training_pairs(PYDOCS_DIR, "train")[:batch]
    examples = [(q, p, ()) for q, p in pairs]
    model = BiEncoder.minilm().train()
    config = TrainConfig(max_length_query=max_length, max_length_doc=max_length,
                         mini_batch=mini_batch if mode == "cached" else None)
    step = cached_step_loss if mode == "cached" else plain_step_loss
    times = []
    if mode != "baseline":
        for i in range(repeats + 1):
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            loss = step(model, examples, 0, config)
            if loss.requires_grad:
                loss.backward()
            if i:  # the first step warms up
                times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "pairs": len(examples), "seconds": min(times) if times else None,
            "peak_mib": peak_kib / 1024, "threads": torch.get_num_threads()}


def run(mode: str, args) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--batch", str(args.batch),
               "--mini-batch", str(args.mini_batch), "--max-length", str(args.max_length),
               "--repeats", str(args.repeats)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--mini-batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.mini_batch, args.max_length,
                               args.repeats)))
        return
    base, plain, cached = (run(mode, args) for mode in ("baseline", "plain", "cached"))
    plain_mib, cached_mib = (r["peak_mib"] - base["peak_mib"] for r in (plain, cached))
    print(json.dumps({"gradcache": {
        "pairs": plain["pairs"], "mini_batch": args.mini_batch, "max_length": args.max_length,
        "plain_step_mib": round(plain_mib), "cached_step_mib": round(cached_mib),
        "peak_memory_ratio": round(cached_mib / plain_mib, 3),
        "plain_seconds": round(plain["seconds"], 2), "cached_seconds": round(cached["seconds"], 2),
        "time_ratio": round(cached["seconds"] / plain["seconds"], 3),
    }}))


if __name__ == "__main__":
    main()
