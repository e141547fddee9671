"""Correct answers to every exercise, written differently from the reference solutions.

ALTERNATIVES maps each exercise id of solutions/ to the source of a cell that answers it another
way: explicit loops, float64 accumulation cast back, log-sum-exp by hand, NumPy instead of torch,
another batching. The grader must give them full marks (tests/test_grading_alternatives.py).
``build_alternative_student(dest)`` writes solutions/ with those cells swapped in.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from tinyir.grading import SOLUTIONS_DIR
from tinyir.grading.build import cell_tags

ALTERNATIVES: dict[str, str] = {}

# -- 01_pooling --------------------------------------------------------------------------------

ALTERNATIVES["pooling.mean_pooling"] = '''\
def mean_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens: one row at a time, accumulated in float64."""
    B, L, D = hidden.shape
    out = torch.zeros(B, D, dtype=torch.float64, device=hidden.device)
    for b in range(B):
        real = hidden[b][mask[b].bool()]  # (n_b, D): the real tokens only
        if real.shape[0] > 0:
            out[b] = real.double().sum(dim=0) / real.shape[0]
    return out.to(hidden.dtype)
'''

ALTERNATIVES["pooling.last_token_pooling"] = '''\
def last_token_pooling(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last real token of each row, found with nonzero(), one row at a time."""
    rows = []
    for b in range(hidden.shape[0]):
        positions = torch.nonzero(mask[b]).flatten()
        if positions.numel() == 0:
            rows.append(hidden.new_zeros(hidden.shape[-1]))
        else:
            rows.append(hidden[b, positions[-1]].clone())
    return torch.stack(rows)
'''

# -- 02_infonce --------------------------------------------------------------------------------

ALTERNATIVES["infonce.score_matrix"] = '''\
def score_matrix(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """All dot products at once with einsum, accumulated in float64, cast back."""
    return torch.einsum("bd,nd->bn", queries.double(), docs.double()).to(queries.dtype)
'''

ALTERNATIVES["infonce.info_nce"] = '''\
def info_nce(queries, positives, negatives=None, temperature=0.05):
    """InfoNCE with the log-sum-exp written out by hand (max subtracted for stability)."""
    def unit(x):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    candidates = positives
    if negatives is not None:
        candidates = torch.cat([positives, negatives.flatten(0, 1)], dim=0)  # (B + B*K, D)
    logits = torch.einsum("bd,nd->bn", unit(queries), unit(candidates)) / temperature
    top = logits.max(dim=1, keepdim=True).values.detach()  # (B, 1)
    log_sum_exp = top.squeeze(1) + torch.log(torch.exp(logits - top).sum(dim=1))  # (B,)
    return (log_sum_exp - torch.diagonal(logits)).mean()
'''

ALTERNATIVES["infonce.prediction_temperature"] = '''\
def _measure_prediction():
    """Measure the two entropies here instead of guessing the letter."""
    scores = torch.tensor([0.62, 0.41, 0.35, 0.20, 0.11, 0.05, -0.08, -0.21])
    entropy = {}
    for tau in (0.01, 10.0):
        p = torch.softmax(scores / tau, dim=-1)
        entropy[tau] = float(-(p * torch.log(p.clamp_min(1e-30))).sum())
    log_n = math.log(len(scores))
    return "a" if entropy[0.01] < 0.1 * log_n and entropy[10.0] > 0.9 * log_n else "b"


prediction_temperature = _measure_prediction()
del _measure_prediction
'''

ALTERNATIVES["infonce.softmax_entropy"] = '''\
def softmax_entropy(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """H = logsumexp(z) - sum(p * z), z = scores / temperature, in float64, cast back."""
    z = scores.double() / temperature
    p = torch.softmax(z, dim=-1)
    return (torch.logsumexp(z, dim=-1) - (p * z).sum(dim=-1)).to(scores.dtype)
'''

# -- 03_similarity_and_metrics -----------------------------------------------------------------

ALTERNATIVES["similarity.l2_normalize"] = '''\
def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Square, sum and root in float64; divide by max(norm, eps); cast back."""
    x64 = x.double()
    norm = torch.sqrt((x64 * x64).sum(dim=-1, keepdim=True))
    return (x64 / torch.maximum(norm, torch.full_like(norm, eps))).to(x.dtype)
'''

ALTERNATIVES["similarity.cosine_equals_dot"] = '''\
def cosine_equals_dot(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    """Plain Python floats: the dot product and both norms summed in a loop."""
    xs, ys = [float(v) for v in a.tolist()], [float(v) for v in b.tolist()]
    dot = sum(x * y for x, y in zip(xs, ys))
    norm_a = math.sqrt(sum(x * x for x in xs))
    norm_b = math.sqrt(sum(y * y for y in ys))
    return abs(dot / (norm_a * norm_b) - dot) <= atol
'''

ALTERNATIVES["metrics.ndcg_at_k"] = '''\
import numpy as np


def ndcg_at_k(ranking: list[str], relevance: dict[str, int], k: int = 10) -> float:
    """Gains and discounts as NumPy vectors; the ideal from the gains sorted with np.sort."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # rank 1..k
    gains = np.array([max(relevance.get(doc, 0), 0) for doc in ranking[:k]], dtype=np.float64)
    positive = np.array([g for g in relevance.values() if g > 0], dtype=np.float64)
    ideal = np.sort(positive)[::-1][:k]
    idcg = float(np.dot(ideal, discounts[:len(ideal)]))
    if idcg <= 0:
        return 0.0
    return float(np.dot(gains, discounts[:len(gains)])) / idcg
'''

ALTERNATIVES["colbert.max_sim"] = '''\
def max_sim(q, q_mask, d, d_mask):
    """One document at a time: keep only real tokens, then max and sum in float64."""
    real_q = q[q_mask.bool()].double()  # (n_q, D)
    scores = []
    for b in range(d.shape[0]):
        real_d = d[b][d_mask[b].bool()].double()  # (n_b, D)
        sims = real_q @ real_d.T  # (n_q, n_b)
        scores.append(sims.amax(dim=1).sum() if sims.shape[0] else sims.new_zeros(()))
    return torch.stack(scores).to(q.dtype)
'''

# -- 04_costs ----------------------------------------------------------------------------------

ALTERNATIVES["costs.index_size_bytes"] = '''\
def index_size_bytes(num_vectors: int, dim: int, bits_per_value: float) -> float:
    """Bytes per vector first, then times the number of vectors."""
    bytes_per_vector = dim * (bits_per_value / 8.0)
    return float(num_vectors) * bytes_per_vector
'''

ALTERNATIVES["costs.colbert_index"] = '''\
COLBERT_TOKENS_PER_DOC = 180  # a passage of ~180 word pieces
COLBERT_DIM = 128
COLBERT_BITS = 1  # binarized residuals
bytes_per_doc = COLBERT_TOKENS_PER_DOC * COLBERT_DIM * COLBERT_BITS / 8
colbert_index_gb = bytes_per_doc * NUM_DOCS / 1e9
del bytes_per_doc
'''

ALTERNATIVES["costs.cross_encoder_seconds"] = '''\
def cross_encoder_seconds(num_pairs: int, ms_per_pair: float) -> float:
    """Seconds per pair first, then times the pairs."""
    seconds_per_pair = ms_per_pair / 1000.0
    return seconds_per_pair * num_pairs
'''

ALTERNATIVES["costs.latency_answers"] = '''\
full_scan_hours = NUM_DOCS * 0.010 / 60 / 60  # 10 ms = 0.010 s per pair; 60 x 60 s an hour
rerank_top100_seconds = sum(0.010 for _ in range(100))  # one pair after another
'''

# -- 05_training_loop --------------------------------------------------------------------------

ALTERNATIVES["training.make_batches"] = '''\
def make_batches(pairs, batch_size, seed):
    """First fit in one pass: each pair goes to the first batch with room and no clash."""
    order = random.Random(seed).sample(range(len(pairs)), len(pairs))
    batches = []  # [indices, queries, passages]
    for i in order:
        query, passage = pairs[i]
        for indices, queries, passages in batches:
            if len(indices) < batch_size and query not in queries and passage not in passages:
                break
        else:
            indices, queries, passages = [], set(), set()
            batches.append((indices, queries, passages))
        indices.append(i)
        queries.add(query)
        passages.add(passage)
    return [indices for indices, _, _ in batches]
'''

ALTERNATIVES["training.train_step"] = '''\
def train_step(model, optimizer, queries, docs, temperature=0.05, max_length_query=32,
               max_length_doc=64):
    """Zero the gradients first; the loss as minus the mean diagonal of log_softmax."""
    optimizer.zero_grad(set_to_none=False)
    q = model(model.tokenize(queries, max_length_query))
    d = model(model.tokenize(docs, max_length_doc))
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    log_p = torch.log_softmax(torch.mm(q, d.t()) / temperature, dim=1)  # (B, B)
    loss = -torch.diagonal(log_p).mean()
    loss.backward()
    optimizer.step()
    return float(loss.detach())
'''

ALTERNATIVES["training.recall_at_k"] = '''\
import numpy as np


def recall_at_k(query_emb, doc_emb, relevant, k=10):
    """Scores in float64 NumPy; a stable argsort of the negated scores keeps ties in order."""
    scores = (query_emb.detach().double().cpu() @ doc_emb.detach().double().cpu().T).numpy()
    total = 0.0
    for row, rel in zip(scores, relevant):
        wanted = {int(j) for j in rel}
        if not wanted:
            continue  # recall 0, still counted in the mean
        top = np.argsort(-row, kind="stable")[:k]
        total += sum(1 for j in top.tolist() if j in wanted) / len(wanted)
    return total / len(scores)
'''

ALTERNATIVES["training.train"] = '''\
def train(model, pairs, evaluate, epochs=2, batch_size=32, lr=5e-5, temperature=0.05, seed=0,
          max_length_query=32, max_length_doc=64):
    """Epoch 0 is the evaluation before training; epochs 1.. train, then evaluate."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses, recalls = [], []
    for epoch in range(epochs + 1):
        if epoch > 0:
            model.train(True)
            batches = [b for b in make_batches(pairs, batch_size, seed + epoch) if len(b) >= 2]
            for batch in batches:
                losses.append(train_step(
                    model, optimizer, [pairs[i][0] for i in batch], [pairs[i][1] for i in batch],
                    temperature=temperature, max_length_query=max_length_query,
                    max_length_doc=max_length_doc))
        model.train(False)
        with torch.set_grad_enabled(False):
            recalls.append(float(evaluate(model)))
    return {"loss": losses, "recall": recalls}
'''

ALTERNATIVES["mining.mine_hard_negatives"] = '''\
import numpy as np


def mine_hard_negatives(query_emb, doc_emb, positives, num_negatives=3, relative_margin=0.05):
    """Scores in float64 NumPy; positives and filtered documents masked, then a stable sort."""
    scores = (query_emb.detach().double().cpu() @ doc_emb.detach().double().cpu().T).numpy()
    mined = []
    for row, pos in zip(scores, positives):
        pos = [int(j) for j in pos]
        allowed = np.ones(len(row), dtype=bool)
        allowed[pos] = False
        if relative_margin is not None:
            allowed &= row <= (1 - relative_margin) * row[pos].max()
        order = np.argsort(-row, kind="stable")
        mined.append([int(j) for j in order[allowed[order]][:num_negatives]])
    return mined
'''

# -- 06_two_stage_search -----------------------------------------------------------------------

ALTERNATIVES["twostage.build_index"] = '''\
def build_index(doc_emb) -> faiss.Index:
    """Normalize in float64 NumPy, cast to float32, add to the flat IP index in chunks."""
    if isinstance(doc_emb, torch.Tensor):
        doc_emb = doc_emb.detach().cpu().double().numpy()
    x = np.asarray(doc_emb, dtype=np.float64)
    norms = np.sqrt((x * x).sum(axis=1, keepdims=True))
    x = np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
    index = faiss.index_factory(x.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT)
    for start in range(0, x.shape[0], 16):
        index.add(x[start:start + 16])
    return index
'''

ALTERNATIVES["twostage.two_stage_search"] = '''\
def two_stage_search(query_emb, query_texts, index, doc_texts, rerank_fn, first_k=50,
                     final_k=10):
    """One query at a time: search it, rerank it; each stage's time summed over the queries."""
    if first_k < 1:
        raise ValueError(f"first_k must be at least 1, got {first_k}")
    if final_k < 1:
        raise ValueError(f"final_k must be at least 1, got {final_k}")
    if final_k > first_k:
        raise ValueError(f"final_k ({final_k}) must not exceed first_k ({first_k})")
    if isinstance(query_emb, torch.Tensor):
        query_emb = query_emb.detach().cpu().numpy()
    queries = np.ascontiguousarray(query_emb, dtype=np.float32)  # (Q, D)
    k = min(first_k, index.ntotal)
    seconds = {"first_stage": 0.0, "rerank": 0.0}
    ids = []
    for i, text in enumerate(query_texts):
        start = time.perf_counter()
        _, found = index.search(queries[i:i + 1], k)
        seconds["first_stage"] += time.perf_counter() - start
        start = time.perf_counter()
        candidates = [int(j) for j in found[0] if j >= 0]
        scores = rerank_fn(text, [doc_texts[j] for j in candidates])
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().numpy()
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        ids.append([candidates[c] for c in order[:final_k].tolist()])
        seconds["rerank"] += time.perf_counter() - start
    return ids, seconds
'''

ALTERNATIVES["twostage.extrapolate_latency"] = '''\
def extrapolate_latency(first_stage_seconds, n_docs, rerank_seconds, first_k, target_docs):
    """Per-document costs first, then times the target corpus."""
    first_stage_per_doc = first_stage_seconds / n_docs
    rerank_per_doc = rerank_seconds / first_k
    return {"two_stage": first_stage_per_doc * target_docs + rerank_seconds,
            "cross_encoder_only": rerank_per_doc * target_docs}
'''


def build_alternative_student(dest: Path) -> Path:
    """Write each notebook of solutions/ to dest with its exercise cells replaced by ALTERNATIVES.

    Cells are matched by the exercise id in their metadata; everything else is kept. Raises
    KeyError for an exercise that has no alternative. Returns dest.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        out = copy.deepcopy(nb)
        for cell in out["cells"]:
            exercise = cell_tags(cell).get("exercise")
            if cell.get("cell_type") == "code" and isinstance(exercise, str) and exercise:
                cell["source"] = ALTERNATIVES[exercise].splitlines(keepends=True)
                cell["outputs"] = []
                cell["execution_count"] = None
        (dest / path.name).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return dest
