"""The ``tinyir`` command line.

    tinyir data build [--force] [--out DIR]     build or validate the pydocs dataset
    tinyir eval --beir DIR --model bm25|minilm|PATH [--split test] [--max-length 256]
                [--batch-size 64] [--k 1000] [--device cpu|cuda] [--hybrid bm25]
                [--rerank PATH|course] [--rerank-depth 100]
    tinyir train --beir DIR --model minilm|PATH --out DIR [--split train] [--epochs 1]
                 [--max-steps N] [--batch-size 32] [--mini-batch M] [--nproc P]
                 [--hard-negatives K] [--loss infonce|triplet] [--max-length 128] [--lr 2e-5]
                 [--seed 0] [--resume]
    tinyir train-reranker --beir DIR --model minilm|PATH --out DIR [--split train] [--epochs 1]
                 [--max-steps N] [--batch-size 16] [--negatives 7] [--negatives-from bm25|minilm|PATH]
                 [--loss listwise|bce] [--pooling pooler|cls|mean|segments] [--max-length 256]
                 [--lr 3e-5] [--head-lr LR] [--seed 0] [--resume]
    tinyir storage --docs N --dim D --dtype fp32|fp16|bf16|int8|binary [--vectors-per-doc T]
                   [--index flat|hnsw|ivfpq] [--hnsw-m 32] [--pq-m M] [--nlist L]
    tinyir grading build [--check]              exercises/ from solutions/ (or check they agree)
    tinyir grade SUBMISSIONS_DIR --out grades.csv [--feedback DIR] [--jobs N] [--timeout S]
                 [--sandbox auto|bwrap|none]
                 [--memory-mb M] [--force] [--tests DIR]
    tinyir progress [--json] [--reset [--yes]]  quiz scores saved on this machine

Results go to stdout, the last line being one JSON object; progress bars and messages go to
stderr, so ``tinyir eval ... | tail -1 | python -m json.tool`` works.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def _cmd_data_build(args: argparse.Namespace) -> int:
    from tinyir.pydocs import PYDOCS_DIR, build_pydocs

    manifest = build_pydocs(args.out or PYDOCS_DIR, force=args.force, progress=not args.quiet)
    print(json.dumps({"name": manifest["name"], "counts": manifest["counts"]}))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from tinyir.evaluate import evaluate_beir

    rerank = args.rerank
    if rerank == "course":  # the course's reranker checkpoint, unpacked into the cache once
        from tinyir.course.checkpoints import unpacked

        rerank = unpacked("reranker", progress=not args.quiet)
    result = evaluate_beir(
        args.beir,
        model=args.model,
        split=args.split,
        k=args.k,
        max_length=args.max_length,
        batch_size=args.batch_size,
        device=_device(args.device),
        hybrid=args.hybrid,
        rerank=rerank,
        rerank_depth=args.rerank_depth,
        progress=not args.quiet,
    )
    summary = result.summary()
    if args.rerank == "course":
        summary["rerank"] = "course"
    print(json.dumps(summary))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import time

    from tinyir.evaluate import load_retriever_model
    from tinyir.train import TrainConfig, beir_examples, train_biencoder

    out = _check_out(args)
    if args.batch_size % args.nproc:
        raise ValueError(f"batch-size: expected a multiple of --nproc {args.nproc} (each "
                         f"process embeds batch-size / nproc pairs), got {args.batch_size}")
    if args.loss == "triplet" and not args.hard_negatives:
        raise ValueError("loss: 'triplet' needs a negative per pair: pass --hard-negatives 1")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         loss=args.loss, max_length_query=args.max_length,
                         max_length_doc=args.max_length, seed=args.seed,
                         mini_batch=args.mini_batch, max_steps=args.max_steps)
    model = load_retriever_model(args.model)
    model.encoder.embeddings.word_embeddings.requires_grad_(not args.freeze_word_embeddings)
    examples = beir_examples(args.beir, args.split, hard_negatives=args.hard_negatives,
                             model=model, progress=not args.quiet)
    start = time.perf_counter()
    if args.nproc == 1:
        losses = train_biencoder(model, examples, config, eval_before=False, save_to=out,
                                 resume=args.resume, progress=not args.quiet).losses
    else:
        losses = _train_processes(args, examples, config, out)
    print(json.dumps({"steps": len(losses), "seconds": round(time.perf_counter() - start, 2),
                      "final_loss": round(losses[-1], 5) if losses else None,
                      "examples": len(examples), "processes": args.nproc, "out": str(out)}))
    return 0


def _check_out(args: argparse.Namespace):
    """``--out`` and ``--resume`` agree: a new or empty folder, or a checkpoint to continue."""
    from pathlib import Path

    from tinyir.train import TRAINER_STATE

    out = Path(args.out)
    if args.resume and not (out / TRAINER_STATE).is_file():
        raise ValueError(f"resume: {out} holds no checkpoint ({TRAINER_STATE}) to continue")
    if not args.resume and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out: {out} exists and is not an empty folder; choose a new one, "
                         f"or pass --resume to continue the checkpoint in it")
    return out


def _cmd_train_reranker(args: argparse.Namespace) -> int:
    import time

    from tinyir.evaluate import load_retriever_model
    from tinyir.rerank import reranker_to_train, train_cross_encoder
    from tinyir.train import beir_examples

    out = _check_out(args)
    model = reranker_to_train(args.model, args.pooling, args.max_length, args.seed)
    model.encoder.embeddings.word_embeddings.requires_grad_(not args.freeze_word_embeddings)
    # Negatives: what the first stage ranks high for the query, minus its positives and likely
    # false negatives (tinyir.train.beir_examples), i.e. what the reranker will have to sort out.
    miner = "bm25" if args.negatives_from == "bm25" else load_retriever_model(args.negatives_from)
    examples = beir_examples(args.beir, args.split, hard_negatives=args.negatives, model=miner,
                             progress=not args.quiet)
    del miner
    start = time.perf_counter()
    history = train_cross_encoder(
        model, examples, epochs=args.epochs, lr=args.lr, head_lr=args.head_lr,
        batch_size=args.batch_size, loss=args.loss, max_steps=args.max_steps, seed=args.seed,
        save_to=out, resume=args.resume, progress=not args.quiet)
    losses = history.losses
    print(json.dumps({"steps": len(losses), "seconds": round(time.perf_counter() - start, 2),
                      "final_loss": round(losses[-1], 5) if losses else None,
                      "examples": len(examples), "pairs_per_step": args.batch_size * (1 + args.negatives),
                      "pooling": model.pooling, "out": str(out)}))
    return 0


def _train_processes(args: argparse.Namespace, examples: list, config, out) -> list[float]:
    """Data-parallel training in ``args.nproc`` local processes (gloo on CPUs, NCCL on GPUs, one
    GPU each); rank 0 writes the checkpoint, whose history holds every step's loss."""
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_train_worker, nprocs=args.nproc, join=True,
             args=(args.nproc, port, args.model, examples, config, str(out), args.resume,
                   not args.quiet, torch.cuda.device_count() >= args.nproc,
                   args.freeze_word_embeddings))
    return json.loads((out / "training.json").read_text())["history"]["losses"]


def _train_worker(rank: int, world: int, port: int, model_name: str, examples: list, config,
                  out: str, resume: bool, progress: bool, cuda: bool, freeze: bool) -> None:
    import torch
    import torch.distributed as dist

    from tinyir.evaluate import load_retriever_model
    from tinyir.train import train_biencoder

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                            init_method=f"tcp://127.0.0.1:{port}")
    try:
        device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
        model = load_retriever_model(model_name, device=device)
        model.encoder.embeddings.word_embeddings.requires_grad_(not freeze)
        train_biencoder(model, examples, config, eval_before=False, save_to=out, resume=resume,
                        progress=progress and rank == 0)
    finally:
        dist.destroy_process_group()


def _cmd_storage(args: argparse.Namespace) -> int:
    from tinyir.storage import storage_cost

    cost = storage_cost(
        args.docs, args.dim, dtype=args.dtype, vectors_per_doc=args.vectors_per_doc,
        index=args.index, hnsw_m=args.hnsw_m, pq_m=args.pq_m, nlist=args.nlist,
    )
    for line in cost.assumptions:
        print(f"# {line}")
    print(json.dumps(cost.to_dict()))
    return 0


def _cmd_grading_build(args: argparse.Namespace) -> int:
    from tinyir.grading import build_exercises, check_exercises_in_sync

    if args.check:
        problems = check_exercises_in_sync()
        for problem in problems:
            print(problem)
        print(json.dumps({"in_sync": not problems, "problems": len(problems)}))
        return 1 if problems else 0
    written = build_exercises()
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    print(json.dumps({"exercises": [path.name for path in written]}))
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from tinyir.grading import format_summary, grade
    from tinyir.grading.sandbox import choose_sandbox

    rows = grade(
        args.submissions, args.out, feedback_dir=args.feedback, jobs=args.jobs,
        timeout=args.timeout, memory_mb=args.memory_mb, force=args.force,
        extra_tests=args.tests, progress=not args.quiet, sandbox=args.sandbox,
    )
    print(format_summary(rows))
    warning = choose_sandbox(args.sandbox).warning
    if warning:
        print(f"\nWARNING: {warning}")
    return 0


def _cmd_progress(args: argparse.Namespace) -> int:
    from tinyir.course.quiz import ProgressStore, bank_names

    store = ProgressStore()
    if args.reset:
        if not args.yes:
            try:
                reply = input(f"Delete every saved quiz score in {store.path}? [y/N] ")
            except EOFError:
                reply = ""
            if reply.strip().lower() not in ("y", "yes"):
                print("Nothing deleted.", file=sys.stderr)
                return 1
        removed = store.reset()
        print(json.dumps({"path": str(store.path), "reset": removed}))
        return 0
    quizzes = store.load()
    names = sorted(set(bank_names()) | set(quizzes))
    if args.json:
        print(json.dumps({"path": str(store.path), "quizzes": quizzes,
                          "not_started": [n for n in names if n not in quizzes]}))
        return 0
    print(f"Quiz scores in {store.path}")
    print(f"{'notebook':<34} {'best':>6} {'last':>6} {'attempts':>9}  last answered")
    for name in names:
        entry = quizzes.get(name)
        if entry is None:
            print(f"{name:<34} {'-':>6} {'-':>6} {0:>9}  not started")
            continue
        total = entry.get("total", "?")
        best, last = f"{entry.get('best', 0)}/{total}", f"{entry.get('last', 0)}/{total}"
        print(f"{name:<34} {best:>6} {last:>6} {entry.get('attempts', 0):>9}  "
              f"{entry.get('updated', '')}")
    return 0


def _device(name: str | None):
    if name is None:
        return None
    from tinyir.device import get_device

    return get_device(name)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _model_name(text: str) -> str:
    if text in ("bm25", "minilm") or os.path.isdir(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected 'bm25', 'minilm' or the folder of a saved bi-encoder, got {text!r}"
    )


def _reranker(text: str) -> str:
    if text == "course" or os.path.isdir(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected 'course' or the folder of a saved cross-encoder, got {text!r}")


def _trainable_model(text: str) -> str:
    if text == "minilm" or os.path.isdir(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected 'minilm' or the folder of a saved bi-encoder, got {text!r}")


def _reranker_base(text: str) -> str:
    if text == "minilm" or os.path.isdir(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected 'minilm' or the folder of a saved cross-encoder or bi-encoder, got {text!r}")


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``train`` and ``train-reranker`` share: data, output folder, length, seed, resume."""
    parser.add_argument("--beir", required=True, help="BEIR-format folder with a training split")
    parser.add_argument("--split", default="train", help="qrels split to train on (default: train)")
    parser.add_argument("--out", required=True, help="checkpoint folder (written after each epoch)")
    parser.add_argument("--epochs", type=_positive_int, default=1, help="(default 1)")
    parser.add_argument("--max-steps", type=_positive_int, default=None, help="stop after N steps")
    parser.add_argument("--freeze-word-embeddings", action="store_true",
                        help="keep the token embedding table as it is (a checkpoint can then "
                             "share it with the starting model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyir", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="the course dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    build = data_commands.add_parser("build", help="build or validate data/pydocs")
    build.add_argument("--out", default=None, help="output folder (default: data/pydocs)")
    build.add_argument("--force", action="store_true", help="rebuild even if the manifest matches")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_cmd_data_build)

    ev = commands.add_parser("eval", help="evaluate a retriever on a BEIR folder")
    ev.add_argument("--beir", required=True, help="BEIR-format folder (corpus.jsonl, ...)")
    ev.add_argument("--split", default="test", help="qrels split (default: test)")
    ev.add_argument("--model", required=True, type=_model_name, help="bm25, minilm or a folder")
    ev.add_argument("--max-length", type=_positive_int, default=256, help="tokens (default 256)")
    ev.add_argument("--batch-size", type=_positive_int, default=64, help="(default 64)")
    ev.add_argument("--k", type=_positive_int, default=1000, help="documents kept per query")
    ev.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ev.add_argument("--hybrid", choices=("bm25",), default=None,
                    help="fuse the model's ranking with BM25's (reciprocal rank fusion)")
    ev.add_argument("--rerank", type=_reranker, default=None,
                    help="a cross-encoder folder, or 'course' (the course's reranker checkpoint)")
    ev.add_argument("--rerank-depth", type=_positive_int, default=100,
                    help="first-stage documents reranked per query (default 100)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=_cmd_eval)

    tr = commands.add_parser("train", help="fine-tune a bi-encoder on a BEIR folder's split")
    _training_arguments(tr)
    tr.add_argument("--model", required=True, type=_trainable_model,
                    help="minilm (all-MiniLM-L6-v2) or a saved bi-encoder folder")
    tr.add_argument("--batch-size", type=_positive_int, default=32,
                    help="pairs per step, all processes together (default 32)")
    tr.add_argument("--mini-batch", type=_positive_int, default=None,
                    help="GradCache: embed M texts at a time, same gradients (default: all)")
    tr.add_argument("--nproc", type=_positive_int, default=1,
                    help="data-parallel processes on this machine (default 1)")
    tr.add_argument("--hard-negatives", type=int, default=0,
                    help="K mined negatives per pair (default 0: in-batch only)")
    tr.add_argument("--loss", choices=("infonce", "triplet"), default="infonce")
    tr.add_argument("--max-length", type=_positive_int, default=128, help="tokens (default 128)")
    tr.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default 2e-5)")
    tr.set_defaults(func=_cmd_train)

    rr = commands.add_parser("train-reranker",
                             help="fine-tune a cross-encoder on a BEIR folder's split")
    _training_arguments(rr)
    rr.add_argument("--model", required=True, type=_reranker_base,
                    help="minilm, a cross-encoder folder (continued) or a bi-encoder folder")
    rr.add_argument("--batch-size", type=_positive_int, default=16,
                    help="queries per step, each with its positive and its negatives (default 16)")
    rr.add_argument("--negatives", type=_positive_int, default=7,
                    help="K hard negatives per positive pair (default 7)")
    rr.add_argument("--negatives-from", type=_model_name, default="bm25",
                    help="the first stage that mines them: bm25 (default), minilm or a folder")
    rr.add_argument("--loss", choices=("listwise", "bce"), default="listwise",
                    help="softmax over 1 + K candidates (default), or per-pair BCE")
    rr.add_argument("--pooling", choices=("pooler", "cls", "mean", "segments"), default=None,
                    help="the head (default pooler: BERT's, sentence-transformers loads it)")
    rr.add_argument("--max-length", type=_positive_int, default=None,
                    help="query + passage tokens (default 256, or the model folder's)")
    rr.add_argument("--lr", type=float, default=3e-5, help="peak learning rate (default 3e-5)")
    rr.add_argument("--head-lr", type=float, default=None,
                    help="the fresh head's learning rate (default: --lr)")
    rr.set_defaults(func=_cmd_train_reranker)

    st = commands.add_parser("storage", help="bytes needed to store an embedding index")
    st.add_argument("--docs", type=_positive_int, required=True, help="number of documents")
    st.add_argument("--dim", type=_positive_int, required=True, help="dimensions per vector")
    st.add_argument("--dtype", default="fp32", help="fp32, fp16, bf16, int8 or binary")
    st.add_argument("--vectors-per-doc", type=float, default=1.0,
                    help="1 for one vector per document; tokens per document for ColBERT")
    st.add_argument("--index", default="flat", help="flat, hnsw or ivfpq")
    st.add_argument("--hnsw-m", type=_positive_int, default=32, help="HNSW's M (default 32)")
    st.add_argument("--pq-m", type=_positive_int, default=None, help="PQ sub-quantizers")
    st.add_argument("--nlist", type=_positive_int, default=None, help="IVF lists")
    st.set_defaults(func=_cmd_storage)

    grading = commands.add_parser("grading", help="build the student release of the exercises")
    grading_commands = grading.add_subparsers(dest="grading_command", required=True)
    gb = grading_commands.add_parser("build", help="exercises/ from solutions/")
    gb.add_argument("--check", action="store_true",
                    help="only report whether exercises/ matches a fresh build (exit 1 if not)")
    gb.set_defaults(func=_cmd_grading_build)

    gr = commands.add_parser("grade", help="grade a folder of student notebooks")
    gr.add_argument("submissions", help="folder with one sub-folder of notebooks per student")
    gr.add_argument("--out", required=True, help="CSV to write (grades.csv)")
    gr.add_argument("--feedback", default=None, help="folder for per-student feedback files")
    gr.add_argument("--jobs", type=_positive_int, default=1, help="students graded at once")
    gr.add_argument("--timeout", type=float, default=120.0,
                    help="seconds per notebook, all cells and checks together (default 120)")
    gr.add_argument("--memory-mb", type=_positive_int, default=2048,
                    help="memory of all the processes of a notebook's run (default 2048)")
    gr.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default="auto",
                    help="auto: bubblewrap when it works here, else none (and say so loudly)")
    gr.add_argument("--force", action="store_true", help="regrade students already graded")
    gr.add_argument("--tests", default=None, help="folder of private grading tests")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    gr.set_defaults(func=_cmd_grade)

    pr = commands.add_parser("progress", help="quiz scores saved on this machine")
    pr.add_argument("--json", action="store_true", help="one JSON object (for scripts)")
    pr.add_argument("--reset", action="store_true", help="delete every saved score (asks first)")
    pr.add_argument("--yes", action="store_true", help="with --reset: do not ask")
    pr.set_defaults(func=_cmd_progress)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"tinyir {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
